public import Foundation

/// A scanner's finding, keyed on (resource, control). Where a controller owns the resource, the
/// finding triggers an immediate reconcile of it, and its first-observed time is the detection
/// time the MTTR clock starts from. Every format (`FindingFormat`) is read into this one type.
public struct Finding: Sendable, Hashable, Codable {
    /// What it is about: `Kind/name` or a resource's name, a target's name, or an identifier
    /// (an ARN, a package URL) that ends in a target's name.
    public var resource: String
    /// The target, when the scanner knows it.
    public var target: String?
    public var control: String
    public var firstObservedAt: Date
    public var title: String?
    /// The scanner's own id for the finding (stable across its runs), or one derived from
    /// (source, control, resource) when the format has none.
    public var id: String
    /// Who found it: `asff`, `prowler`, `ocsf`, `sarif:<tool>`, `garak`, `osv`, `trivy`, `grype`, `openscap`
    /// (or `xccdf` for another XCCDF scanner), `generic`.
    public var source: String
    public var severity: Severity
    /// A link to (or a locator of) the evidence: the scanner's page for the check, a file and line.
    public var evidence: String?
    /// The scanner says it is fixed (ASFF RESOLVED, OCSF status Resolved, a garak probe that passes).
    public var resolved: Bool
    /// A network address the finding names (an attacker's source address), for blocklist proposals.
    public var address: String?
    /// For a vulnerability: the advisory, the affected package and what is known of exploitation.
    public var vulnerability: Vulnerability?

    public init(resource: String, target: String? = nil, control: String, firstObservedAt: Date, title: String? = nil,
                id: String? = nil, source: String = "generic", severity: Severity = .medium, evidence: String? = nil,
                resolved: Bool = false, address: String? = nil, vulnerability: Vulnerability? = nil) {
        self.resource = resource
        self.target = target
        self.control = control
        self.firstObservedAt = firstObservedAt
        self.title = title
        self.id = id ?? AuditID.stable([source, control, resource, target ?? ""].joined(separator: "\u{1}"))
        self.source = source
        self.severity = severity
        self.evidence = evidence
        self.resolved = resolved
        self.address = address
        self.vulnerability = vulnerability
    }

    /// The finding with every text field on one line, its control characters, separators and
    /// bidirectional controls made spaces (`TerminalText.oneLine`): a scanner's document, or
    /// anyone who can post one, must not drive the terminal of whoever reads `ingest`'s report,
    /// reorder what a proposal's commit shows, or break a line of a record.
    var textMadeSafe: Finding {
        func safe(_ text: String) -> String { TerminalText.oneLine(text) }
        var finding = self
        finding.resource = safe(resource)
        finding.target = target.map(safe)
        finding.control = safe(control)
        finding.title = title.map(safe)
        finding.id = safe(id)
        finding.source = safe(source)
        finding.evidence = evidence.map(safe)
        finding.address = address.map(safe)
        if var vulnerability {
            vulnerability.id = safe(vulnerability.id)
            vulnerability.aliases = vulnerability.aliases.map(safe)
            if var package = vulnerability.package {
                package.ecosystem = safe(package.ecosystem)
                package.namespace = package.namespace.map(safe)
                package.name = safe(package.name)
                package.version = safe(package.version)
                package.fixedVersion = package.fixedVersion.map(safe)
                vulnerability.package = package
            }
            finding.vulnerability = vulnerability
        }
        return finding
    }

    /// Whether the finding is about this binding.
    public func matches(_ binding: Binding) -> Bool {
        if let target, target != binding.target { return false }
        if resource == binding.resource.description || resource == binding.resource.name { return true }
        if resource == binding.target { return true }
        for separator in ["/", ":"] where resource.hasSuffix(separator + binding.target) { return true }
        return false
    }
}

/// Why a findings document was refused.
public struct FindingError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// The document is well formed but larger than a limit allows (HTTP 413), not malformed (400).
    public var exceedsLimit: Bool
    public init(_ description: String, exceedsLimit: Bool = false) {
        self.description = description
        self.exceedsLimit = exceedsLimit
    }
}

/// The managed resources findings can name, indexed once per revision so that matching a
/// request's findings costs a few dictionary look-ups per finding, off the daemon's actor.
public struct FindingIndex: Sendable {
    private var byDescription: [String: [Binding]] = [:]
    private var byName: [String: [Binding]] = [:]
    private var byTarget: [String: [Binding]] = [:]
    /// By the benchmark rules their resources list (`ControlAnnotation`).
    private var byControl: [String: [Binding]] = [:]

    public init(bindings: [Binding] = []) {
        for binding in bindings {
            byDescription[binding.resource.description, default: []].append(binding)
            byName[binding.resource.name, default: []].append(binding)
            byTarget[binding.target, default: []].append(binding)
        }
    }

    /// A revision's bindings, and the benchmark rules their resources list.
    public init(state: DesiredState) {
        self.init(bindings: state.bindings)
        for binding in state.bindings {
            for rule in state.resources[binding.resource].map(ControlAnnotation.rules) ?? [] { byControl[rule, default: []].append(binding) }
        }
    }

    /// The bindings each finding is about (`Finding.matches`), with the earliest first-observed
    /// time among the findings that name it.
    public func match(_ findings: [Finding]) -> [Binding: Date] {
        var matched: [Binding: Date] = [:]
        for finding in findings {
            // A compliance scanner's rule that resources carry out: those resources, on the host
            // it names if Bulwark knows it (not everything on that host).
            if let controlled = byControl[ControlAnnotation.rule(finding.control)] {
                let named = controlled.filter { binding in
                    finding.resource == binding.target || ["/", ":"].contains { finding.resource.hasSuffix($0 + binding.target) }
                }
                for binding in named.isEmpty ? controlled : named where finding.target == nil || finding.target == binding.target {
                    matched[binding] = min(matched[binding] ?? finding.firstObservedAt, finding.firstObservedAt)
                }
                continue
            }
            // An XCCDF rule result names a host, not a resource: no rule, no resource.
            if finding.source == "openscap" || finding.source == "xccdf" { continue }
            var candidates: [Binding] = (byDescription[finding.resource] ?? []) + (byName[finding.resource] ?? [])
                + (byTarget[finding.resource] ?? [])
            // An identifier (an ARN) that ends in a target's name after a separator.
            var rest = Substring(finding.resource)
            while let separator = rest.firstIndex(where: { $0 == "/" || $0 == ":" }) {
                rest = rest[rest.index(after: separator)...]
                candidates += byTarget[String(rest)] ?? []
            }
            for binding in candidates where finding.matches(binding) {
                matched[binding] = min(matched[binding] ?? finding.firstObservedAt, finding.firstObservedAt)
            }
        }
        return matched
    }
}

public enum FindingParser {
    public static let maxSize = 1 << 20
    /// Findings one document may hold: a scanner sends more in several requests.
    public static let maxFindings = 1000
    /// Resources one ASFF finding may name: a finding about more is not about a few resources.
    public static let maxResourcesPerFinding = 100
    /// Characters of a resource identifier, a target name or a control.
    public static let maxFieldLength = 2048
    /// Lines of a JSON Lines document (garak's report): most are not findings.
    public static let maxLines = 100_000

    /// Reads a findings document in any format Bulwark knows (see `FindingFormat.detect`): the
    /// generic format (`{"resource", "control", ...}` or a list), ASFF, OCSF 1.x (Prowler's
    /// output too), SARIF 2.1.0, garak's report JSONL, OSV, Trivy and Grype JSON, and OpenSCAP's
    /// XCCDF or ARF results (XML, up to `maxXMLSize`). A finding without a first-observed time
    /// was observed `now`; none is dated after `now`.
    public static func parse(_ bytes: [UInt8], contentType: String? = nil, now: Date = Date()) throws(FindingError) -> [Finding] {
        try document(bytes, contentType: contentType, now: now).findings
    }

    /// The format and the findings of a document, every text field on one line without
    /// controls (`Finding.textMadeSafe`).
    public static func document(_ bytes: [UInt8], contentType: String? = nil, now: Date = Date())
        throws(FindingError) -> (format: FindingFormat, findings: [Finding]) {
        let (format, findings) = try read(bytes, contentType: contentType, now: now)
        return (format, findings.map(\.textMadeSafe))
    }

    static func read(_ bytes: [UInt8], contentType: String?, now: Date) throws(FindingError) -> (format: FindingFormat, findings: [Finding]) {
        if isXML(contentType: contentType, bytes: bytes) { return (.xccdf, try xccdfDocument(bytes, now: now)) }
        guard bytes.count <= maxSize else { throw FindingError("the document is larger than \(maxSize) bytes", exceedsLimit: true) }
        // A UTF-8 byte-order mark (an editor's, PowerShell's) is no part of the document: without
        // it, JSON, JSON Lines and the words for a plain value all see the document's first byte.
        let bytes = bytes.starts(with: byteOrderMark) ? Array(bytes.dropFirst(byteOrderMark.count)) : bytes
        if FindingFormat.isJSONLines(contentType: contentType, bytes: bytes) {
            return (.garak, try garak(bytes, now: now))
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes), options: .fragmentsAllowed)
        } catch {
            if FindingFormat.looksLikeJSONLines(bytes) { return (.garak, try garak(bytes, now: now)) }
            throw FindingError("not valid JSON: \(jsonProblem(error, in: bytes))")
        }
        // Well-formed JSON that is no object or list (`null`, `"text"`, `3`) holds no finding.
        guard json is [String: Any] || json is [Any] else {
            throw FindingError("not a findings document: the document is \(jsonKind(bytes)), not an object or a list of findings")
        }
        let format = FindingFormat.detect(json, contentType: contentType)
        var findings: [Finding]
        switch format {
        case .generic, .asff: findings = try asffOrGeneric(json, now: now)
        case .ocsf: findings = try ocsf(json, now: now)
        case .sarif: findings = try sarif(json, now: now)
        case .osv: findings = try osv(json, now: now)
        case .trivy: findings = try trivy(json, now: now)
        case .grype: findings = try grype(json, now: now)
        case .garak: findings = try garak(bytes, now: now)
        case .xccdf: findings = try xccdf(bytes, now: now)
        }
        guard !findings.isEmpty else { throw FindingError("no findings in the document") }
        if format != .asff, format != .generic, findings.count > maxFindings {
            throw FindingError("the document holds \(findings.count) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
        }
        findings = findings.map { finding in
            var finding = finding
            finding.firstObservedAt = min(finding.firstObservedAt, now)
            return finding
        }
        return (format == .generic && findings.contains { $0.source == "asff" } ? .asff : format, findings)
    }

    /// Where and why the JSON parser stopped, in words: Foundation's own explanation
    /// (`NSDebugDescription`, "Invalid value around character 8."), with the character's line
    /// and column, never its error domain and code.
    static func jsonProblem(_ error: any Error, in bytes: [UInt8]) -> String {
        guard let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String, !detail.isEmpty else {
            return "the parser gave no reason"
        }
        var text = oneLine(detail)
        if text.hasSuffix(".") { text.removeLast() }
        // "around character N": N counts bytes from 0; people count lines and columns from 1.
        if let range = text.range(of: "around character "), let offset = Int(text[range.upperBound...].prefix { $0.isNumber }),
           offset >= 0, offset <= bytes.count {
            let before = bytes[..<offset]
            let line = before.count { $0 == 10 } + 1
            let column = offset - (before.lastIndex(of: 10).map { $0 + 1 } ?? 0) + 1
            text = String(text[..<range.lowerBound]) + "at line \(line), column \(column)"
        }
        return text.prefix(1).lowercased() + text.dropFirst()
    }

    /// UTF-8's byte-order mark, U+FEFF.
    static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// What a JSON document that is one plain value holds, in words, told by its first byte
    /// after a byte-order mark and JSON's blanks: "null", "a string", "a boolean", "a number".
    static func jsonKind(_ bytes: [UInt8]) -> String {
        let body = bytes.starts(with: byteOrderMark) ? bytes.dropFirst(byteOrderMark.count) : bytes[...]
        return switch body.first(where: { ![9, 10, 13, 32].contains($0) }) {
        case UInt8(ascii: "n"): "null"
        case UInt8(ascii: "\""): "a string"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): "a boolean"
        default: "a number"
        }
    }

    static func asffOrGeneric(_ json: Any, now: Date) throws(FindingError) -> [Finding] {
        let items: [Any]
        if let object = json as? [String: Any], let findings = object["Findings"] {
            guard let list = findings as? [Any] else { throw FindingError("Findings: expected a list") }
            items = list
        } else if let list = json as? [Any] {
            items = list
        } else {
            items = [json]
        }
        guard !items.isEmpty else { throw FindingError("no findings in the document") }
        guard items.count <= maxFindings else {
            throw FindingError("the document holds \(items.count) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
        }
        var result: [Finding] = []
        for (index, item) in items.enumerated() {
            guard let object = item as? [String: Any] else { throw FindingError("finding \(index): expected an object") }
            result += try (object["SchemaVersion"] != nil || object["Resources"] != nil)
                ? asff(object, index: index, now: now) : [generic(object, index: index, now: now)]
        }
        return result
    }

    static func generic(_ object: [String: Any], index: Int, now: Date) throws(FindingError) -> Finding {
        let allowed: Set<String> = ["resource", "target", "control", "firstObservedAt", "title", "severity", "id", "source", "evidence",
                                    "resolved", "address"]
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            // Quoted short and escaped: a field name is the sender's text, and this message is logged.
            throw FindingError("finding \(index): unknown field '\(quotedForMessage(unknown))'; allowed: \(allowed.sorted().joined(separator: ", "))")
        }
        guard let resource = object["resource"] as? String, !resource.isEmpty else {
            throw FindingError("finding \(index): resource: expected a non-empty string")
        }
        guard let control = object["control"] as? String, !control.isEmpty else {
            throw FindingError("finding \(index): control: expected a non-empty string")
        }
        for field in ["target", "id", "source", "evidence", "address", "title", "severity"] where object[field] != nil && !(object[field] is String) {
            throw FindingError("finding \(index): \(field): expected a string")
        }
        for (field, value) in [("resource", resource), ("control", control), ("target", object["target"] as? String ?? ""),
                               ("id", object["id"] as? String ?? ""), ("source", object["source"] as? String ?? ""),
                               ("address", object["address"] as? String ?? "")]
        where value.count > maxFieldLength {
            throw FindingError("finding \(index): \(field): longer than \(maxFieldLength) characters", exceedsLimit: true)
        }
        let source = (object["source"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? "generic"
        return Finding(resource: resource, target: object["target"] as? String, control: control,
                       firstObservedAt: try date(object["firstObservedAt"], field: "finding \(index): firstObservedAt", now: now),
                       title: (object["title"] as? String).map(clipped), id: (object["id"] as? String).flatMap { $0.isEmpty ? nil : $0 },
                       source: source, severity: severity(object["severity"] as? String),
                       evidence: (object["evidence"] as? String).map(clipped), resolved: object["resolved"] as? Bool ?? false,
                       address: object["address"] as? String)
    }

    static func asff(_ object: [String: Any], index: Int, now: Date) throws(FindingError) -> [Finding] {
        guard let resources = object["Resources"] as? [[String: Any]], !resources.isEmpty else {
            throw FindingError("finding \(index): Resources: expected a non-empty list of objects")
        }
        guard resources.count <= maxResourcesPerFinding else {
            throw FindingError("finding \(index): Resources: \(resources.count) resources; at most \(maxResourcesPerFinding) a finding",
                               exceedsLimit: true)
        }
        let compliance = object["Compliance"] as? [String: Any]
        guard let control = (compliance?["SecurityControlId"] as? String) ?? (object["GeneratorId"] as? String), !control.isEmpty else {
            throw FindingError("finding \(index): needs a non-empty Compliance.SecurityControlId or GeneratorId")
        }
        guard control.count <= maxFieldLength else {
            throw FindingError("finding \(index): SecurityControlId or GeneratorId: longer than \(maxFieldLength) characters", exceedsLimit: true)
        }
        let first = try date(object["FirstObservedAt"] ?? object["CreatedAt"], field: "finding \(index): FirstObservedAt", now: now)
        let label = ((object["Severity"] as? [String: Any])?["Label"] as? String)
        let workflow = ((object["Workflow"] as? [String: Any])?["Status"] as? String)?.uppercased()
        let resolved = workflow == "RESOLVED" || (object["RecordState"] as? String)?.uppercased() == "ARCHIVED"
            || (compliance?["Status"] as? String)?.uppercased() == "PASSED"
        let remediation = ((object["Remediation"] as? [String: Any])?["Recommendation"] as? [String: Any])?["Url"] as? String
        let evidence = remediation ?? (object["SourceUrl"] as? String)
        let baseID = (object["Id"] as? String).flatMap { $0.isEmpty || $0.count > maxFieldLength ? nil : $0 }
        var vulnerability: Vulnerability?
        if let vulnerabilities = object["Vulnerabilities"] as? [[String: Any]], let first = vulnerabilities.first {
            vulnerability = Vulnerability(asff: first)
        }
        return try resources.enumerated().map { (position, resource) throws(FindingError) -> Finding in
            guard let id = resource["Id"] as? String, !id.isEmpty else {
                throw FindingError("finding \(index): Resources[\(position)].Id: expected a non-empty string")
            }
            guard id.count <= maxFieldLength else {
                throw FindingError("finding \(index): Resources[\(position)].Id: longer than \(maxFieldLength) characters", exceedsLimit: true)
            }
            let findingID = baseID.map { resources.count == 1 ? $0 : $0 + "#" + String(position) }
            return Finding(resource: id, control: control, firstObservedAt: first, title: (object["Title"] as? String).map(clipped),
                           id: findingID, source: "asff", severity: severity(label), evidence: evidence.map(clipped), resolved: resolved,
                           vulnerability: vulnerability)
        }
    }

    static func date(_ value: Any?, field: String, now: Date) throws(FindingError) -> Date {
        guard let value else { return now }
        guard let text = value as? String, let date = Timestamp.parse(text) else {
            throw FindingError("\(field): expected an ISO 8601 time such as 2026-11-22T10:00:00Z")
        }
        return min(date, now)
    }
}
