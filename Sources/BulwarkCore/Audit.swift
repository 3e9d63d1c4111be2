public import Foundation

/// The record of one decision about one drifted resource, committed to the audit branch.
public struct AuditRecord: Sendable, Hashable, Codable {
    public struct Change: Sendable, Hashable, Codable {
        public var property: String
        public var desired: String
        public var observedBefore: String?
        public var observedAfter: String?

        public init(property: String, desired: String, observedBefore: String?, observedAfter: String?) {
            self.property = property
            self.desired = desired
            self.observedBefore = observedBefore
            self.observedAfter = observedAfter
        }
    }

    public var id: String
    public var controller: String
    public var target: String
    public var resource: String
    public var kind: String
    public var name: String
    public var severity: Severity
    public var risk: Int
    public var mode: Mode
    public var decision: Decision
    public var result: RemediationResult?
    public var reason: String?
    public var changes: [Change]
    public var detectedAt: String
    public var appliedAt: String?
    public var verifiedAt: String?
    public var desiredCommit: Revision
    public var approver: String?
    public var error: String?
    /// For drift deferred by a change window: when the next window opens.
    public var nextWindowAt: String?
    /// What the driver said about the fix (versions before and after, where a package came from).
    public var notes: [String]?
    /// What must still be restarted (services, or `reboot`) for the fix to take effect.
    public var needsRestart: String?
    /// The finding whose proposal set the desired value (from the resource's annotations).
    public var finding: FindingCitation? = nil
    /// What became of that finding's proposal, when this record is about it: `reopened` (the
    /// scanner reported the finding open again after its fix was verified), as `Bulwark-Proposal`.
    public var proposal: String? = nil

    public init(
        id: String, controller: String, target: String, resource: String, kind: String, name: String,
        severity: Severity, risk: Int, mode: Mode, decision: Decision, result: RemediationResult?, reason: String?,
        changes: [Change], detectedAt: String, appliedAt: String?, verifiedAt: String?, desiredCommit: Revision,
        approver: String?, error: String?, nextWindowAt: String? = nil
    ) {
        self.id = id
        self.controller = controller
        self.target = target
        self.resource = resource
        self.kind = kind
        self.name = name
        self.severity = severity
        self.risk = risk
        self.mode = mode
        self.decision = decision
        self.result = result
        self.reason = reason
        self.changes = changes
        self.detectedAt = detectedAt
        self.appliedAt = appliedAt
        self.verifiedAt = verifiedAt
        self.desiredCommit = desiredCommit
        self.approver = approver
        self.error = error
        self.nextWindowAt = nextWindowAt
    }

    /// The record of a refused revision: nothing acted on it. Its id is stable for the same
    /// revision and errors, so a revision refused on every pass is recorded once.
    public static func refusal(revision: Revision, errors: [String], at date: Date) -> AuditRecord {
        let shown = errors.prefix(20).map { oneLine($0) } + (errors.count > 20 ? ["… and \(errors.count - 20) more"] : [])
        let id = AuditID.stable((["refused", revision.description] + errors).joined(separator: "\u{1}"))
        return AuditRecord(
            id: id, controller: "-", target: "-", resource: "Revision/\(revision.short)", kind: "Revision",
            name: revision.short, severity: .high, risk: 0, mode: .enforce, decision: .refused, result: nil,
            reason: "revision refused; the last good revision stays in force: " + shown.joined(separator: "; "),
            changes: [], detectedAt: Timestamp.format(date), appliedAt: nil, verifiedAt: nil, desiredCommit: revision,
            approver: nil, error: nil)
    }

    /// Where the record is stored on the audit branch: unique, so replays never conflict.
    public var path: String { Self.path(id: id, detectedAt: detectedAt) }

    /// `audit/YYYY/MM/DD/HH/<c>/<id>.json`: by day and hour of detection, then fanned out on the
    /// id's last character (random, or a hash), so that no folder's tree grows large. Each
    /// audit commit rewrites the trees on its path; with 10,000 records in one day a flat day
    /// folder made every commit rewrite a 10,000-entry tree.
    public static func path(id: String, detectedAt: String) -> String {
        let date = detectedAt.prefix(10).replacingOccurrences(of: "-", with: "/")
        let hour = detectedAt.dropFirst(11).prefix(2)
        return "audit/\(date)/\(hour.count == 2 ? hour : "00")/\(id.suffix(1))/\(id).json"
    }

    public func json() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings, numbers and enums cannot fail.
        return Array((try? encoder.encode(self)) ?? Data()) + [10]
    }

    /// The commit message: a subject `git log --oneline` reads well, a body, and trailers
    /// that `git log --format='%(trailers)'` answers questions with.
    public var commitMessage: String {
        let verb: String = switch decision {
        case .applied: "remediate"
        case .held: "hold"
        case .waived: "waive"
        case .deferred: "defer"
        case .escalated: "escalate"
        case .reported: "report"
        case .blocked: "block"
        case .refused: "refuse"
        case .pruned: "prune"
        }
        func show(_ value: String?) -> String { Self.oneLine(value ?? "(unset)") }
        let first = changes.first.map { "\($0.property) \(show($0.observedBefore)) -> \(show($0.desired))" } ?? ""
        let more = changes.count > 1 ? " (+\(changes.count - 1) more)" : ""
        var lines = ["\(verb)(\(resource)): \(target) \(first)\(more)", ""]
        for change in changes {
            var line = "\(change.property): \(show(change.observedBefore)) -> \(show(change.desired))"
            if decision == .applied { line += ", now \(show(change.observedAfter))" }
            lines.append("- " + line)
        }
        if let reason { lines.append("Reason: " + Self.oneLine(reason)) }
        if let error { lines.append("Error: " + Self.oneLine(error)) }
        for note in notes ?? [] { lines.append("Note: " + Self.oneLine(note)) }
        lines.append("")
        var trailers: [(AuditTrailer, String)] = [
            (.id, id), (.controller, controller), (.target, target), (.resource, resource),
            (.severity, severity.rawValue), (.mode, mode.rawValue), (.decision, decision.rawValue),
        ]
        if let result { trailers.append((.result, result.rawValue)) }
        trailers.append((.desiredCommit, desiredCommit.description))
        trailers.append((.detectedAt, detectedAt))
        if let appliedAt { trailers.append((.appliedAt, appliedAt)) }
        if let verifiedAt { trailers.append((.verifiedAt, verifiedAt)) }
        if let approver { trailers.append((.approvedBy, Self.oneLine(approver))) }
        if let nextWindowAt { trailers.append((.nextWindow, nextWindowAt)) }
        if let needsRestart { trailers.append((.needsRestart, needsRestart)) }
        if let finding { trailers += finding.trailers }
        if let proposal { trailers.append((.proposal, proposal)) }
        lines += trailers.map { "\($0.0.rawValue): \(Self.oneLine($0.1))" }
        return lines.joined(separator: "\n") + "\n"
    }

    static func oneLine(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : Character($0) })
    }
}

// MARK: - Ids and time

public enum AuditID {
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    /// A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford base-32 characters,
    /// so ids sort by time.
    public static func ulid(at date: Date) -> String {
        var rng = SystemRandomNumberGenerator()
        let millis = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        let high = (millis << 16) | UInt64(rng.next() as UInt16)
        let low: UInt64 = rng.next()
        return encode(high: high, low: low)
    }

    /// The id of the record of a fix made under approval `approvalID`: derived from the approval,
    /// so that the audit branch tells whether an approval was used (it is used once).
    public static func approved(_ approvalID: String) -> String {
        stable("approved\u{1}" + approvalID)
    }

    /// A stable id for content (a decision that must be recorded once): the same text always
    /// gives the same id, in the same 26-character form as a ULID.
    public static func stable(_ text: String) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325
        var b: UInt64 = 0x6c62_272e_07bb_0142
        for byte in text.utf8 {
            a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = b &+ (a >> 29)
        }
        return encode(high: a, low: b)
    }

    private static func encode(high: UInt64, low: UInt64) -> String {
        // 130 bits of room in 26 characters; the top two bits are zero.
        var chars: [Character] = []
        chars.reserveCapacity(26)
        for index in 0..<26 {
            let bit = 125 - index * 5  // position of this character's lowest bit
            var value: UInt64 = 0
            for offset in 0..<5 {
                let position = bit + offset
                let set: Bool = position >= 128 ? false
                    : position >= 64 ? (high >> UInt64(position - 64)) & 1 == 1 : (low >> UInt64(position)) & 1 == 1
                if set { value |= 1 << UInt64(offset) }
            }
            chars.append(alphabet[Int(value)])
        }
        return String(chars)
    }
}

public enum Timestamp {
    /// `2026-11-22T10:00:00.142Z`.
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func parse(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().parse(text))
    }
}

extension Duration {
    /// The duration in seconds, fractions included.
    public var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
