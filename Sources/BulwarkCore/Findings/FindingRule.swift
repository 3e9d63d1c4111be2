internal import Foundation

/// What to do about findings that match (`kind: FindingRule`, under `finding-rules/`). Rules are
/// tried in name order; the first that matches decides. A finding no rule matches is reconciled
/// (the resources it names are re-observed and fixed now), as before rules existed.
public struct FindingRule: Sendable, Hashable {
    public enum Action: String, Sendable, Hashable, CaseIterable {
        /// Re-observe and fix the managed resources the finding names now.
        case reconcile
        /// Build a desired-state change from the finding (`change`) and commit it for review on
        /// `bulwark/proposals/<finding-id>`, or straight to the policy branch with `autoMerge`.
        case propose
        /// Record nothing and do nothing (a class of findings the team has decided about).
        case ignore
    }

    public struct Match: Sendable, Hashable {
        /// Globs (`*`, `?`) over the finding's source, control and resource; nil matches any.
        public var source: String?
        public var control: String?
        public var resource: String?
        /// The lowest severity that matches.
        public var severity: Severity?

        public init(source: String? = nil, control: String? = nil, resource: String? = nil, severity: Severity? = nil) {
            self.source = source
            self.control = control
            self.resource = resource
            self.severity = severity
        }
    }

    public var name: String
    public var match: Match
    public var action: Action
    /// The change of a `propose` rule.
    public var change: ChangeTemplate?
    /// Commit the tested change straight to the policy branch (for a class of findings safe to automate).
    public var autoMerge: Bool
    /// Per-priority SLAs for the findings this rule matches (default: `Priority.defaultSLA`).
    public var sla: SLAPolicy
    public var location: SourceLocation

    public init(name: String, match: Match, action: Action, change: ChangeTemplate? = nil, autoMerge: Bool = false,
                sla: SLAPolicy = SLAPolicy(), location: SourceLocation) {
        self.name = name
        self.match = match
        self.action = action
        self.change = change
        self.autoMerge = autoMerge
        self.sla = sla
        self.location = location
    }

    public func matches(_ finding: Finding) -> Bool {
        if let source = match.source, !Glob.matches(source, finding.source) { return false }
        if let control = match.control, !Glob.matches(control, finding.control) { return false }
        if let resource = match.resource, !Glob.matches(resource, finding.resource) { return false }
        if let severity = match.severity, finding.severity < severity { return false }
        return true
    }

    /// The first rule (in name order) that matches, if any.
    public static func first(for finding: Finding, in rules: [FindingRule]) -> FindingRule? {
        rules.sorted { $0.name < $1.name }.first { $0.matches(finding) }
    }
}

/// A desired-state change built from a finding's fields: which existing resource (`resource`,
/// `Kind/name`), which spec fields to set and which lists to add to. Values are templates:
/// `{{field}}` is replaced by the finding's field (see `TemplateField`).
public struct ChangeTemplate: Sendable, Hashable {
    public struct Operation: Sendable, Hashable {
        /// Below `spec`, dot-separated (`settings.PermitRootLogin`, `minVersion`).
        public var path: [String]
        public var value: String
        /// The rule wrote the value itself, plain, as a YAML boolean, null or number (`false`,
        /// `0`, not `"false"` nor `{{evidence}}`): it is written plain, keeping that type. Every
        /// other value, and any with a finding's text in it, is written as a quoted string.
        public var typed: Bool
        public init(path: [String], value: String, typed: Bool = false) {
            self.path = path
            self.value = value
            self.typed = typed
        }
    }

    public var resource: String
    public var set: [Operation]
    public var add: [Operation]
    /// When the policy has no such resource, propose a new manifest for it (spec from `set` and
    /// `add`) instead of nothing. Such a proposal is always for a person: never auto-merged.
    public var create: Bool

    public init(resource: String, set: [Operation] = [], add: [Operation] = [], create: Bool = false) {
        self.resource = resource
        self.set = set
        self.add = add
        self.create = create
    }

    /// The change with the finding's fields filled in. Throws naming the field the finding lacks.
    public func render(for finding: Finding) throws(TemplateError) -> ChangeTemplate {
        ChangeTemplate(resource: try Template.render(resource, finding),
                       set: try set.map { (op) throws(TemplateError) in try op.rendered(for: finding) },
                       add: try add.map { (op) throws(TemplateError) in try op.rendered(for: finding) },
                       create: create)
    }
}

extension ChangeTemplate.Operation {
    /// The operation with the finding's fields filled in; a value with a placeholder is never typed.
    func rendered(for finding: Finding) throws(TemplateError) -> Self {
        let value = try Template.render(self.value, finding)
        return Self(path: path, value: value, typed: typed && value == self.value && Template.placeholders(self.value) == [])
    }
}

extension ChangeTemplate {
    /// A path below `spec` as a rule writes it: names separated by dots, a name in double quotes
    /// taken whole (`properties."model_list[model_name=chat].litellm_params.guardrails"` names one
    /// property of a `ConfigFile`, whose property names are themselves paths). Nil when a name is
    /// empty, a quote is not closed, or a quote does not span a whole name.
    public static func path(_ text: String) -> [String]? {
        var components: [String] = []
        var current = ""
        var inQuotes = false, closedQuote = false
        for character in text {
            if character == "\"" {
                if inQuotes { inQuotes = false; closedQuote = true; continue }
                guard current.isEmpty, !closedQuote else { return nil }
                inQuotes = true
                continue
            }
            if character == ".", !inQuotes {
                guard !current.isEmpty else { return nil }
                components.append(current)
                current = ""
                closedQuote = false
                continue
            }
            guard !closedQuote else { return nil }
            current.append(character)
        }
        guard !inQuotes, !current.isEmpty else { return nil }
        components.append(current)
        return components
    }

    /// What this change does to `path`, as a proposal's `Change:` line says it (after `Change: `),
    /// `creating` the resource when it is new: `desired-state/x.yaml: set MaxAuthTries = 3`.
    public func changeLine(path: String, creating id: ResourceID?) -> String {
        "\(path): " + (id.map { "create \($0); " } ?? "")
            + (set.map { "set \(Self.pathText($0.path)) = \($0.value)" } + add.map { "add \($0.value) to \(Self.pathText($0.path))" })
                .joined(separator: "; ")
    }

    /// A path as a rule writes it (names with a dot in double quotes).
    public static func pathText(_ path: [String]) -> String {
        path.map { $0.contains(".") ? "\"\($0)\"" : $0 }.joined(separator: ".")
    }
}

public struct TemplateError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `{{field}}` placeholders over a finding's fields.
public enum Template {
    /// The fields a template may use.
    public static let fields = ["id", "source", "control", "resource", "target", "severity", "title", "address", "evidence",
                                "vulnerability", "cve", "package", "purl", "ecosystem", "installedVersion", "fixedVersion"]

    public static func value(_ field: String, of finding: Finding) -> String? {
        let package = finding.vulnerability?.package
        switch field {
        case "id": return finding.id
        case "source": return finding.source
        case "control": return finding.control
        case "resource": return finding.resource
        case "target": return finding.target
        case "severity": return finding.severity.rawValue
        case "title": return finding.title
        case "address": return finding.address
        case "evidence": return finding.evidence
        case "vulnerability": return finding.vulnerability?.id
        case "cve": return finding.vulnerability?.cve
        case "package": return package?.name
        case "purl": return package?.purl
        case "ecosystem": return package?.ecosystem
        case "installedVersion": return package.flatMap { $0.version.isEmpty ? nil : $0.version }
        case "fixedVersion": return package?.fixedVersion
        default: return nil
        }
    }

    /// The fields `text` uses; nil when a placeholder is malformed or unknown.
    public static func placeholders(_ text: String) -> [String]? {
        var result: [String] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else { return nil }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard fields.contains(name) else { return nil }
            result.append(name)
            rest = rest[close.upperBound...]
        }
        return result
    }

    public static func render(_ text: String, _ finding: Finding) throws(TemplateError) -> String {
        var output = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            output += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else { throw TemplateError("unclosed {{ in '\(quotedForMessage(text))'") }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard let value = value(name, of: finding), !value.isEmpty else {
                throw TemplateError("the finding has no \(name)")
            }
            output += value
            rest = rest[close.upperBound...]
        }
        return output + rest
    }
}

/// Shell-style globs: `*` any run of characters, `?` one character; everything else literal.
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.unicodeScalars), t = Array(text.unicodeScalars)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] == "?" || p[pi] == t[ti] {
                pi += 1; ti += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi; mark = ti; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

// MARK: - Reading the kind

extension DesiredStateLoader {
    /// `kind: FindingRule`: `{match: {source, control, resource, severity}, action: reconcile|propose|ignore,
    /// autoMerge, change: {resource: Kind/name, set: {path: value}, add: {path: value}}, sla: {P1: 24h, …}}`.
    func readFindingRule(_ spec: SpecReader, name: String, location: SourceLocation) -> FindingRule? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["match", "action", "autoMerge", "change", "sla"])
        var ok = true
        var match = FindingRule.Match()
        if let reader = spec.field("match"), reader.entries() != nil {
            reader.allowOnly(["source", "control", "resource", "severity"])
            match.source = reader.field("source")?.string()
            match.control = reader.field("control")?.string()
            match.resource = reader.field("resource")?.string()
            if let severityReader = reader.field("severity") {
                if let text = severityReader.oneOf(Severity.allCases.map(\.rawValue)) { match.severity = Severity(rawValue: text) } else { ok = false }
            }
        }
        guard let actionText = spec.field("action", required: true)?.oneOf(FindingRule.Action.allCases.map(\.rawValue)),
              let action = FindingRule.Action(rawValue: actionText) else { return nil }
        let autoMerge = spec.field("autoMerge")?.bool() ?? false
        var change: ChangeTemplate?
        if let reader = spec.field("change") {
            change = readChangeTemplate(reader)
            if change == nil { ok = false }
        }
        if action == .propose, change == nil, spec.field("change") == nil {
            spec.fail("action propose needs a change: {resource: Kind/name, set: {...}} or add: {...}")
            ok = false
        }
        if action != .propose, spec.field("change") != nil { spec.field("change")?.fail("only a propose rule has a change") ; ok = false }
        if action != .propose, autoMerge { spec.field("autoMerge")?.fail("only a propose rule can be merged automatically"); ok = false }
        var sla = SLAPolicy()
        if let reader = spec.field("sla"), let entries = reader.entries() {
            for (key, value) in entries {
                guard let priority = Priority(rawValue: key) else {
                    value.fail("expected one of \(Priority.allCases.map(\.rawValue).joined(separator: ", ")), got '\(quotedForMessage(key))'")
                    ok = false
                    continue
                }
                if let seconds = duration(value, in: 60...366 * 86_400, example: "24h or 7d") { sla.limits[priority] = .seconds(seconds) } else { ok = false }
            }
        }
        guard ok else { return nil }
        return FindingRule(name: name, match: match, action: action, change: change, autoMerge: autoMerge, sla: sla, location: location)
    }

    private func readChangeTemplate(_ reader: SpecReader) -> ChangeTemplate? {
        guard reader.entries() != nil else { return nil }
        reader.allowOnly(["resource", "set", "add", "create"])
        guard let resourceReader = reader.field("resource", required: true), let resource = resourceReader.string() else { return nil }
        var ok = true
        let parts = resource.split(separator: "/", maxSplits: 1).map(String.init)
        if parts.count != 2 || registry.kinds[parts[0]] == nil {
            resourceReader.fail("expected Kind/name of a resource kind (\(registry.kindNames.joined(separator: ", "))), got '\(quotedForMessage(resource))'")
            ok = false
        } else if Template.placeholders(resource) == nil {
            resourceReader.fail("unknown or malformed placeholder; the fields are \(Template.fields.joined(separator: ", "))")
            ok = false
        }
        func operations(_ key: String) -> [ChangeTemplate.Operation] {
            guard let field = reader.field(key), let entries = field.entries() else { return [] }
            var result: [ChangeTemplate.Operation] = []
            for (path, value) in entries {
                guard let text = value.string() else { ok = false; continue }
                guard let components = ChangeTemplate.path(path), components.count <= 8 else {
                    value.fail("'\(quotedForMessage(path))' is not a path below spec (names separated by dots; "
                               + "a name with dots in double quotes, as properties.\"litellm_settings.callbacks\")")
                    ok = false
                    continue
                }
                guard Template.placeholders(text) != nil else {
                    value.fail("unknown or malformed placeholder; the fields are \(Template.fields.joined(separator: ", "))")
                    ok = false
                    continue
                }
                // Written plain in the rule and typed there (a boolean, null or a number): kept so.
                let typed = value.node.isPlain && Template.placeholders(text) == [] && PlainScalar(text).isTyped
                result.append(.init(path: components, value: text, typed: typed))
            }
            return result
        }
        let set = operations("set"), add = operations("add")
        // A ConfigFile's properties are named by paths into the file: `properties.a.b` would insert a
        // mapping `a: {b: …}` that replaces the file's whole value at `a` (a route, a settings block).
        if parts.first == "ConfigFile" {
            for operation in set + add where operation.path.first == "properties" && operation.path.count != 2 {
                reader.fail("'\(quotedForMessage(ChangeTemplate.pathText(operation.path)))': a ConfigFile property is one name below "
                            + "properties; write it in double quotes, as properties.\"\(operation.path.dropFirst().joined(separator: "."))\"")
                ok = false
            }
        }
        if set.isEmpty, add.isEmpty, ok { reader.fail("set or add at least one field"); ok = false }
        var create = false
        if let field = reader.field("create") {
            guard let value = field.bool() else { return nil }
            create = value
        }
        return ok ? ChangeTemplate(resource: resource, set: set, add: add, create: create) : nil
    }
}
