public import struct Foundation.Date
internal import Foundation

/// A scanner's finding, keyed on (resource, control). Where a controller owns the resource, the
/// finding triggers an immediate reconcile of it, and its first-observed time is the detection
/// time the MTTR clock starts from.
public struct Finding: Sendable, Hashable, Codable {
    /// What it is about: `Kind/name` or a resource's name, a target's name, or an identifier
    /// (an ARN) that ends in a target's name.
    public var resource: String
    /// The target, when the scanner knows it.
    public var target: String?
    public var control: String
    public var firstObservedAt: Date
    public var title: String?

    public init(resource: String, target: String? = nil, control: String, firstObservedAt: Date, title: String? = nil) {
        self.resource = resource
        self.target = target
        self.control = control
        self.firstObservedAt = firstObservedAt
        self.title = title
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

    public init(bindings: [Binding] = []) {
        for binding in bindings {
            byDescription[binding.resource.description, default: []].append(binding)
            byName[binding.resource.name, default: []].append(binding)
            byTarget[binding.target, default: []].append(binding)
        }
    }

    /// The bindings each finding is about (`Finding.matches`), with the earliest first-observed
    /// time among the findings that name it.
    public func match(_ findings: [Finding]) -> [Binding: Date] {
        var matched: [Binding: Date] = [:]
        for finding in findings {
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

    /// Reads a generic finding (`{"resource", "control", "target"?, "firstObservedAt"?, "title"?}`),
    /// a list of them, or AWS Security Finding Format (`{"Findings": [...]}` or one ASFF finding).
    /// A finding without a first-observed time was observed `now`.
    public static func parse(_ bytes: [UInt8], now: Date = Date()) throws(FindingError) -> [Finding] {
        guard bytes.count <= maxSize else { throw FindingError("the document is larger than \(maxSize) bytes") }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes))
        } catch {
            throw FindingError("not valid JSON: \(error.localizedDescription)")
        }
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
        let allowed: Set<String> = ["resource", "target", "control", "firstObservedAt", "title", "severity"]
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
        if object["target"] != nil, !(object["target"] is String) { throw FindingError("finding \(index): target: expected a string") }
        for (field, value) in [("resource", resource), ("control", control), ("target", object["target"] as? String ?? "")]
        where value.count > maxFieldLength {
            throw FindingError("finding \(index): \(field): longer than \(maxFieldLength) characters", exceedsLimit: true)
        }
        return Finding(resource: resource, target: object["target"] as? String, control: control,
                       firstObservedAt: try date(object["firstObservedAt"], field: "finding \(index): firstObservedAt", now: now),
                       title: object["title"] as? String)
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
        return try resources.enumerated().map { (position, resource) throws(FindingError) -> Finding in
            guard let id = resource["Id"] as? String, !id.isEmpty else {
                throw FindingError("finding \(index): Resources[\(position)].Id: expected a non-empty string")
            }
            guard id.count <= maxFieldLength else {
                throw FindingError("finding \(index): Resources[\(position)].Id: longer than \(maxFieldLength) characters", exceedsLimit: true)
            }
            return Finding(resource: id, control: control, firstObservedAt: first, title: object["Title"] as? String)
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
