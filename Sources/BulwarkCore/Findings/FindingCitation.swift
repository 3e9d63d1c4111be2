/// The finding a resource's desired value came from: written into the resource's annotations
/// by a proposal (`finding`, `finding-source`, `finding-first-seen`, `finding-priority`), and
/// carried by every audit record of that resource, so the audit trail cites the finding and
/// `bulwark report` measures MTTR from the finding's first-seen time.
public struct FindingCitation: Sendable, Hashable, Codable {
    public static let idKey = "finding", sourceKey = "finding-source", firstSeenKey = "finding-first-seen", priorityKey = "finding-priority"

    public var id: String
    public var source: String?
    public var firstSeen: String?
    public var priority: String?

    public init(id: String, source: String?, firstSeen: String?, priority: String?) {
        self.id = id
        self.source = source
        self.firstSeen = firstSeen
        self.priority = priority
    }

    public init?(annotations: [String: String]) {
        guard let id = annotations[Self.idKey], !id.isEmpty else { return nil }
        self.init(id: id, source: annotations[Self.sourceKey], firstSeen: annotations[Self.firstSeenKey],
                  priority: annotations[Self.priorityKey])
    }

    /// The annotations a proposal writes.
    public var annotations: [String: String] {
        var result = [Self.idKey: id]
        if let source { result[Self.sourceKey] = source }
        if let firstSeen { result[Self.firstSeenKey] = firstSeen }
        if let priority { result[Self.priorityKey] = priority }
        return result
    }

    /// The trailers a proposal commit carries for it (a first-seen time or priority that does not
    /// read as one is left out).
    public var trailers: [(AuditTrailer, String)] {
        var result: [(AuditTrailer, String)] = [(.finding, id)]
        if let source { result.append((.findingSource, source)) }
        if let firstSeen, Timestamp.parse(firstSeen) != nil { result.append((.findingFirstSeen, firstSeen)) }
        if let priority, Priority(rawValue: priority) != nil { result.append((.priority, priority)) }
        return result
    }
}
