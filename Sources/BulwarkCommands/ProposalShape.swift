internal import BulwarkCore
internal import BulwarkRuntime
internal import Foundation

/// What a proposal commit says it is: `propose(<resource>): …` with one `Change: <file>: …` line
/// and the `Rule: <name>` that made it, as `ProposalEngine` writes them. Anyone who can push a
/// branch can write such a message, so `accept` trusts none of it: the file must be exactly what
/// that rule of the policy in force writes for that resource (`expectedFile`), nothing else in
/// the policy may differ, and nothing may be weaker than the policy in force.
struct ProposalShape {
    var resource: String
    var path: String
    var change: String
    /// The finding rule the proposal names (`Rule: <name>`).
    var rule: String

    init(message: String, branch: String) throws {
        let lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let subject = lines.first, subject.hasPrefix("propose("), let close = subject.range(of: "):") else {
            throw CommandError("\(branch)'s last commit is not a proposal Bulwark made (its subject is not `propose(<resource>): …`). Nothing was committed.")
        }
        resource = String(subject[subject.index(subject.startIndex, offsetBy: 8)..<close.lowerBound])
        let changes = lines.filter { $0.hasPrefix("Change: ") }
        guard changes.count == 1, let change = changes.first,
              let colon = change.dropFirst(8).range(of: ": ") else {
            throw CommandError("\(branch)'s last commit does not name the one file it changes (a `Change: <file>: …` line). Nothing was committed.")
        }
        path = String(change.dropFirst(8)[..<colon.lowerBound])
        self.change = String(change.dropFirst(8))
        guard let ruleLine = lines.first(where: { $0.hasPrefix("Rule: ") }) else {
            throw CommandError("\(branch)'s last commit does not name the finding rule that proposed it (a `Rule: <name>` line). Nothing was committed.")
        }
        rule = String(ruleLine.dropFirst(6))
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.first == "desired-state", !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
              path.hasSuffix(".yaml") || path.hasSuffix(".yml") else {
            throw CommandError("\(branch) changes \(path); a proposal only changes a YAML file under desired-state/. Nothing was committed.")
        }
    }

    /// Why the policy `after` is not `before` with this one resource changed or added, if it is not.
    func problem(from before: DesiredState, to after: DesiredState, registry: Registry) -> String? {
        guard let id = after.resources.keys.first(where: { $0.description == resource }) else {
            return "the policy with it has no resource \(resource)"
        }
        var others: [String] = []
        for key in Set(before.resources.keys).union(after.resources.keys) where key != id {
            if before.resources[key].map(Self.placeless) != after.resources[key].map(Self.placeless) { others.append(key.description) }
        }
        if !others.isEmpty {
            return "it also changes \(others.sorted().prefix(5).joined(separator: ", ")); a proposal changes one resource"
        }
        if before.targets.mapValues(Self.placeless) != after.targets.mapValues(Self.placeless)
            || before.controllers.mapValues(Self.placeless) != after.controllers.mapValues(Self.placeless)
            || before.waivers != after.waivers || before.approvals != after.approvals || before.notifiers != after.notifiers
            || before.findingRules != after.findingRules || before.pause != after.pause
            || before.maxChangesPerCycle != after.maxChangesPerCycle {
            return "it changes more of the policy than \(resource) (targets, controllers, waivers, approvals, notifiers, rules or limits)"
        }
        if let weaker = Weakening.compare(previous: before, current: after, registry: registry)[id] {
            return "it would weaken \(resource): " + weaker.changes.joined(separator: "; ")
        }
        return nil
    }

    private static let nowhere = SourceLocation(file: "", line: 0)
    private static func placeless(_ resource: Resource) -> Resource { var copy = resource; copy.location = nowhere; return copy }
    private static func placeless(_ target: Target) -> Target { var copy = target; copy.location = nowhere; return copy }
    private static func placeless(_ controller: ControllerConfig) -> ControllerConfig {
        var copy = controller; copy.location = nowhere; return copy
    }

    /// The lines removed and added, in order (a plain line diff by longest common subsequence,
    /// bounded: files larger than a few thousand lines are summarised).
    static func diff(_ old: [UInt8], _ new: [UInt8]) -> [String] {
        let a = String(decoding: old, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let b = String(decoding: new, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard a.count * b.count <= 4_000_000 else { return ["(\(a.count) lines before, \(b.count) after)"] }
        var lengths = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            for j in stride(from: b.count - 1, through: 0, by: -1) {
                lengths[i][j] = a[i] == b[j] ? lengths[i + 1][j + 1] + 1 : max(lengths[i + 1][j], lengths[i][j + 1])
            }
        }
        var (i, j, result) = (0, 0, [String]())
        while i < a.count || j < b.count {
            // A line removed before the one added in its place, as `diff` shows it.
            if i < a.count, j < b.count, a[i] == b[j] { i += 1; j += 1 }
            else if i < a.count, j == b.count || lengths[i + 1][j] >= lengths[i][j + 1] { result.append("- " + a[i]); i += 1 }
            else { result.append("+ " + b[j]); j += 1 }
        }
        return result
    }

    // MARK: - What the rule writes

    /// The file the proposal's rule writes, derived again from the policy in force: the rule its
    /// `Rule:` line names, its change with the values the proposal carries (each one matching the
    /// rule's template: a fixed value exactly, a `{{field}}` any text in its place), the finding's
    /// citation, and for a new resource its file, comment and the existing targets it is bound
    /// to. A branch whose file is not these bytes is not the rule's proposal: someone wrote it.
    /// Its `Change:` line must say what the file does (the values the file carries), since the
    /// accepted commit keeps it: a value changed by hand under a line naming another is refused.
    func expectedFile(in state: DesiredState, base: String?, proposed: String, finding: String?) throws
        -> (file: String, citation: FindingCitation) {
        func refuse(_ why: String) -> CommandError {
            CommandError("the branch is not what rule \(rule) proposes: \(why). Nothing was committed.")
        }
        guard let rule = state.findingRules.first(where: { $0.name == self.rule }), rule.action == .propose,
              let template = rule.change else {
            throw refuse("the policy in force has no finding rule \(self.rule) that proposes changes")
        }
        let parts = resource.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw refuse("\(resource) is not a resource") }
        let id = ResourceID(kind: parts[0], name: parts[1])
        guard Self.matches(template: template.resource, resource) else { throw refuse("it names \(resource), not \(template.resource)") }
        let document: YAMLNode
        do { document = try ManifestEdit.find(id, in: proposed) } catch { throw refuse(error.description) }
        let old = base.flatMap { try? ManifestEdit.find(id, in: $0) }
        var set: [ChangeTemplate.Operation] = []
        for operation in template.set {
            guard case .scalar(let value)? = Self.node(["spec"] + operation.path, in: document)?.value,
                  Self.matches(template: operation.value, value) else {
                throw refuse("spec.\(operation.path.joined(separator: ".")) is not the rule's \(operation.value)")
            }
            set.append(.init(path: operation.path, value: value, typed: operation.typed))
        }
        var add: [ChangeTemplate.Operation] = []
        for operation in template.add {
            guard case .sequence(let items)? = Self.node(["spec"] + operation.path, in: document)?.value else {
                throw refuse("spec.\(operation.path.joined(separator: ".")) is not a list")
            }
            let scalars = items.compactMap { if case .scalar(let text) = $0.value { text } else { nil } }
            var known: [String] = []
            if let old, case .sequence(let before)? = Self.node(["spec"] + operation.path, in: old)?.value {
                known = before.compactMap { if case .scalar(let text) = $0.value { text } else { nil } }
            }
            let added = scalars.filter { !known.contains($0) }
            guard added.count <= 1, let value = added.first ?? scalars.first(where: { Self.matches(template: operation.value, $0) }),
                  Self.matches(template: operation.value, value) else {
                throw refuse("spec.\(operation.path.joined(separator: ".")) gains \(added.count) items, not one that is the rule's \(operation.value)")
            }
            add.append(.init(path: operation.path, value: value, typed: operation.typed))
        }
        guard case .mapping(let pairs) = document.value,
              case .mapping(let metadata)? = pairs.first(where: { $0.key == "metadata" })?.value.value,
              case .mapping(let annotationPairs)? = metadata.first(where: { $0.key == "annotations" })?.value.value else {
            throw refuse("\(resource) cites no finding")
        }
        var annotations: [String: String] = [:]
        for pair in annotationPairs { if case .scalar(let text) = pair.value.value { annotations[pair.key] = text } }
        guard let citation = FindingCitation(annotations: annotations), citation.id == finding else {
            throw refuse("\(resource) does not cite the finding its commit names")
        }
        let change = ChangeTemplate(resource: resource, set: set, add: add, create: template.create)
        // As the message has it: each line made one line (`ProposalEngine`).
        let said = TerminalText.oneLine(change.changeLine(path: path, creating: old == nil ? id : nil))
        guard said == self.change else {
            throw refuse("its Change line says '\(quotedForMessage(self.change))', but its file makes '\(quotedForMessage(said))'")
        }
        do {
            if old != nil, let base {
                return (try ManifestEdit.apply(change, annotations: citation.annotations, to: id, in: base), citation)
            }
            guard template.create, base == nil, path == ManifestEdit.createdPath(for: id), state.resources[id] == nil else {
                throw refuse("\(resource) is not in \(path), and the rule creates no resource there")
            }
            guard case .mapping(let targetPairs)? = pairs.first(where: { $0.key == "targets" })?.value.value,
                  case .sequence(let names)? = targetPairs.first(where: { $0.key == "names" })?.value.value else {
                throw refuse("a new resource is bound to targets by name")
            }
            let targets = names.compactMap { if case .scalar(let text) = $0.value { text } else { nil } }
            guard targets.count == names.count, targets.allSatisfy({ state.targets[$0] != nil }) else {
                throw refuse("a new resource is bound only to targets of the policy")
            }
            return (try ManifestEdit.create(change, annotations: citation.annotations, for: id, targets: targets,
                                            comment: ManifestEdit.createdComment(finding: citation.id, source: citation.source ?? "", rule: rule.name)),
                    citation)
        } catch let error as ManifestEditError {
            throw refuse(error.description)
        }
    }

    /// Whether the rule this proposal names fills any of its change from the finding (`{{field}}`).
    func takesValuesFromTheFinding(in state: DesiredState) -> Bool {
        guard let template = state.findingRules.first(where: { $0.name == rule })?.change else { return true }
        return ([template.resource] + template.set.map(\.value) + template.add.map(\.value)).contains { $0.contains("{{") }
    }

    /// The node at `path` below `document`'s top mapping.
    private static func node(_ path: [String], in document: YAMLNode) -> YAMLNode? {
        var node = document
        for key in path {
            guard case .mapping(let pairs) = node.value, let pair = pairs.first(where: { $0.key == key }) else { return nil }
            node = pair.value
        }
        return node
    }

    /// Whether `value` is what `template` renders to for some finding: its text outside `{{…}}`
    /// exactly, any non-empty text in place of each field.
    static func matches(template: String, _ value: String) -> Bool {
        var literals: [Substring] = []
        var rest = Substring(template)
        while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
            literals.append(rest[..<open.lowerBound])
            rest = rest[close.upperBound...]
        }
        literals.append(rest)
        guard literals.count > 1 else { return value == template }
        var remaining = Substring(value)
        guard remaining.hasPrefix(literals[0]) else { return false }
        remaining = remaining.dropFirst(literals[0].count)
        for (index, literal) in literals.enumerated().dropFirst() {
            if index == literals.count - 1 {
                return remaining.count > literal.count && remaining.hasSuffix(literal)
            }
            guard let found = remaining.dropFirst().range(of: literal) else { return false }
            remaining = remaining[found.upperBound...]
        }
        return false
    }
}
