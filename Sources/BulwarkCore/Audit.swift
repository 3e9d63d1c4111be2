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
    /// The target, or `noTarget` for a record about no resource on a target (a refusal).
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
    // Times are kept to the millisecond, as the record states them (`Timestamp`): a record
    // read back from its JSON or its trailers equals the one that was written.
    public var detectedAt: Date { didSet { detectedAt = Timestamp.recorded(detectedAt) } }
    public var appliedAt: Date? { didSet { appliedAt = appliedAt.map(Timestamp.recorded) } }
    public var verifiedAt: Date? { didSet { verifiedAt = verifiedAt.map(Timestamp.recorded) } }
    public var desiredCommit: Revision
    public var approver: String?
    public var error: String?
    /// For drift deferred by a change window: when the next window opens.
    public var nextWindowAt: Date? { didSet { nextWindowAt = nextWindowAt.map(Timestamp.recorded) } }
    /// What the driver said about the fix (versions before and after, where a package came from).
    public var notes: [String]?
    /// What must still be restarted (services, or `reboot`) for the fix to take effect.
    public var needsRestart: String?
    /// The finding whose proposal set the desired value (from the resource's annotations).
    public var finding: FindingCitation? = nil
    /// What became of that finding's proposal, when this record is about it: `reopened` (the
    /// scanner reported the finding open again after its fix was verified), as `Bulwark-Proposal`.
    public var proposal: String? = nil
    /// On an applied record: the last revision accepted with no weakening pending
    /// (`DesiredState.acceptedRevision`, `none` when there was none), as `Bulwark-Baseline`.
    public var baseline: String? = nil
    /// On `bulwark revert`'s record: the id of the verified fix it undid, as `Bulwark-Reverts`.
    /// Such a record is no fix (it puts back a value the policy does not want, under a waiver):
    /// `report` counts it in no MTTR, and it opens no drift.
    public var reverts: String? = nil
    /// `Bulwark-Baseline` when no revision was accepted yet.
    public static let noBaseline = "none"

    public init(
        id: String, controller: String, target: String, resource: String, kind: String, name: String,
        severity: Severity, risk: Int, mode: Mode, decision: Decision, result: RemediationResult?, reason: String?,
        changes: [Change], detectedAt: Date, appliedAt: Date?, verifiedAt: Date?, desiredCommit: Revision,
        approver: String?, error: String?, nextWindowAt: Date? = nil
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
        self.detectedAt = Timestamp.recorded(detectedAt)
        self.appliedAt = appliedAt.map(Timestamp.recorded)
        self.verifiedAt = verifiedAt.map(Timestamp.recorded)
        self.desiredCommit = desiredCommit
        self.approver = approver
        self.error = error
        self.nextWindowAt = nextWindowAt.map(Timestamp.recorded)
    }

    /// The controller and target of a record that is about no resource on a target: a refused
    /// revision, a finding's refused change, a tampered audit branch.
    public static let noTarget = "-"

    /// What a refused revision's record says before its errors.
    public static let revisionRefused = "revision refused; the last good revision stays in force"

    /// The record of a refused revision: nothing acted on it. Its id is stable for the same
    /// revision and errors, so a revision refused on every pass is recorded once. `what` says
    /// what was refused (`accept` refuses a proposal's branch, not a revision in force).
    public static func refusal(revision: Revision, errors: [String], at date: Date, what: String = revisionRefused) -> AuditRecord {
        let shown = errors.prefix(20).map { oneLine($0) } + (errors.count > 20 ? ["… and \(errors.count - 20) more"] : [])
        let id = AuditID.stable((["refused", revision.description] + errors).joined(separator: "\u{1}"))
        return AuditRecord(
            id: id, controller: noTarget, target: noTarget, resource: "Revision/\(revision.short)", kind: "Revision",
            name: revision.short, severity: .high, risk: 0, mode: .enforce, decision: .refused, result: nil,
            reason: what + ": " + shown.joined(separator: "; "),
            changes: [], detectedAt: date, appliedAt: nil, verifiedAt: nil, desiredCommit: revision,
            approver: nil, error: nil)
    }

    /// The record of a person's command that was refused (`bulwark revert` that a safety guard
    /// refuses, `bulwark approve` of an id no record carries): nothing was changed. Its id is
    /// stable for `key` (the command and what it named, never the caller or the time), so that
    /// the same command refused again adds no record.
    public static func refusedCommand(_ key: [String], controller: String = noTarget, target: String = noTarget,
                                      resource: String, severity: Severity, reason: String, changes: [Change] = [],
                                      revision: Revision, at date: Date) -> AuditRecord {
        let parts = resource.split(separator: "/", maxSplits: 1).map(String.init)
        return AuditRecord(
            id: AuditID.stable((["refused-command"] + key).joined(separator: "\u{1}")), controller: controller, target: target,
            resource: resource, kind: parts.first ?? resource, name: parts.count == 2 ? parts[1] : resource, severity: severity,
            risk: 0, mode: .enforce, decision: .refused, result: nil, reason: oneLine(reason), changes: changes, detectedAt: date,
            appliedAt: nil, verifiedAt: nil, desiredCommit: revision, approver: nil, error: nil)
    }

    /// The record of a scanner finding whose proposed change was refused (it would lower the
    /// policy, or make the revision invalid): recorded once per source, finding and resource,
    /// so that an attempt to weaken policy through a finding is in git, not only in `ingest`'s
    /// output. `reason` names what was refused, never a value (a finding's evidence can be
    /// anything, a secret included), and is not part of the id: the same finding sent again
    /// with other evidence is not another record. `severity` is the resource's, as every record
    /// about a resource carries it (not the finding's, which the sender chooses).
    public static func refusedFinding(_ citation: FindingCitation, resource: String, severity: Severity, reason: String,
                                      revision: Revision, at date: Date) -> AuditRecord {
        let id = AuditID.stable(["refused-finding", citation.source ?? "", citation.id, resource].joined(separator: "\u{1}"))
        var record = AuditRecord(
            id: id, controller: noTarget, target: noTarget, resource: resource,
            kind: resource.split(separator: "/", maxSplits: 1).first.map(String.init) ?? "Finding",
            name: resource.split(separator: "/", maxSplits: 1).dropFirst().first.map(String.init) ?? citation.id,
            severity: severity, risk: 0, mode: .enforce, decision: .refused, result: nil,
            reason: "a finding's change was not proposed: " + oneLine(reason), changes: [], detectedAt: date, appliedAt: nil,
            verifiedAt: nil, desiredCommit: revision, approver: nil, error: nil)
        record.finding = citation
        return record
    }

    /// Where the record is stored on the audit branch: unique, so replays never conflict.
    public var path: String { Self.path(id: id, detectedAt: Timestamp.format(detectedAt)) }

    /// `audit/YYYY/MM/DD/HH/<c>/<d>/<id>.json`: by day and hour of detection, then fanned out on
    /// the id's last character `c` and the one before it `d` (random in a ULID, a hash in a
    /// stable id), so that no tree on a record's path grows large. Each audit commit rewrites
    /// the trees on its path: with one character, the 24,000 records of a 1,000-root pass (all
    /// in one hour) made every commit rewrite a leaf of about 750 entries, so a pass wrote
    /// O(records²) tree bytes. With two, a leaf holds records/1,024 entries (about 23 for that
    /// pass) and the two fan-out trees at most 32 each, however records spread over the hour;
    /// a minute folder instead would still pile a burst of fixes into one leaf.
    /// `detectedAt` is the time as the record states it (its `Bulwark-Detected-At` trailer).
    ///
    /// Records written before this layout are at `legacyPath`; a reader looks for both
    /// (`paths`), the new one first.
    public static func path(id: String, detectedAt: String) -> String {
        let second = id.dropLast().suffix(1)
        return "\(hourFolder(detectedAt))/\(id.suffix(1))/\(second.isEmpty ? "0" : second)/\(id).json"
    }

    /// `audit/YYYY/MM/DD/HH/<c>/<id>.json`: the layout written before `path`'s, fanned out on the
    /// id's last character only. Records already on audit branches are there; nothing new is.
    public static func legacyPath(id: String, detectedAt: String) -> String {
        "\(hourFolder(detectedAt))/\(id.suffix(1))/\(id).json"
    }

    /// Every path a record with this id and detection time may be stored at, the current layout
    /// first: a reader tries them in order, and `verify-audit` accepts these and nothing else.
    public static func paths(id: String, detectedAt: String) -> [String] {
        [path(id: id, detectedAt: detectedAt), legacyPath(id: id, detectedAt: detectedAt)]
    }

    private static func hourFolder(_ detectedAt: String) -> String {
        let date = String(detectedAt.prefix(10).map { $0 == "-" ? "/" : $0 })
        let hour = detectedAt.dropFirst(11).prefix(2)
        return "audit/\(date)/\(hour.count == 2 ? hour : "00")"
    }

    /// The record's file: what `JSONEncoder` with `[.prettyPrinted, .sortedKeys,
    /// .withoutEscapingSlashes]` makes of its `Encodable` form (`encoderJSON`), and a newline.
    public func json() -> [UInt8] {
        PrettyJSON.bytes(jsonValue) + [10]
    }

    /// The record as its JSON states it (`Encodable` form), for `PrettyJSON`.
    package var jsonValue: PrettyJSON.Value {
        typealias Value = PrettyJSON.Value
        var members: [(String, Value)] = [
            ("id", .string(id)), ("controller", .string(controller)), ("target", .string(target)),
            ("resource", .string(resource)), ("kind", .string(kind)), ("name", .string(name)),
            ("severity", .string(severity.rawValue)), ("risk", .integer(risk)), ("mode", .string(mode.rawValue)),
            ("decision", .string(decision.rawValue)),
            ("changes", .array(changes.map { change in
                var fields: [(String, Value)] = [("property", .string(change.property)), ("desired", .string(change.desired))]
                if let before = change.observedBefore { fields.append(("observedBefore", .string(before))) }
                if let after = change.observedAfter { fields.append(("observedAfter", .string(after))) }
                return .object(fields)
            })),
            ("detectedAt", .string(Timestamp.format(detectedAt))), ("desiredCommit", .string(desiredCommit.description)),
        ]
        if let result { members.append(("result", .string(result.rawValue))) }
        if let reason { members.append(("reason", .string(reason))) }
        if let appliedAt { members.append(("appliedAt", .string(Timestamp.format(appliedAt)))) }
        if let verifiedAt { members.append(("verifiedAt", .string(Timestamp.format(verifiedAt)))) }
        if let approver { members.append(("approver", .string(approver))) }
        if let error { members.append(("error", .string(error))) }
        if let nextWindowAt { members.append(("nextWindowAt", .string(Timestamp.format(nextWindowAt)))) }
        if let notes { members.append(("notes", .array(notes.map { .string($0) }))) }
        if let needsRestart { members.append(("needsRestart", .string(needsRestart))) }
        if let finding {
            var fields: [(String, Value)] = [("id", .string(finding.id))]
            if let source = finding.source { fields.append(("source", .string(source))) }
            if let firstSeen = finding.firstSeen { fields.append(("firstSeen", .string(firstSeen))) }
            if let priority = finding.priority { fields.append(("priority", .string(priority))) }
            members.append(("finding", .object(fields)))
        }
        if let reverts { members.append(("reverts", .string(reverts))) }
        return .object(members)
    }

    /// The record's file as `JSONEncoder` writes it: what `json()` must equal.
    func encoderJSON() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings, numbers and enums cannot fail.
        return Array((try? encoder.encode(self)) ?? Data()) + [10]
    }

    /// The record its JSON file states (what `json()` wrote, or an earlier version did).
    public init(json bytes: [UInt8]) throws {
        self = try JSONDecoder().decode(AuditRecord.self, from: Data(bytes))
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
        case .unobserved: "unobserved"
        case .resolved: "resolve"
        }
        func show(_ value: String?) -> String { Self.oneLine(value ?? "(unset)") }
        // A property's name too (a ConfigFile's key path is the manifest author's text).
        let first = changes.first.map { "\(Self.oneLine($0.property)) \(show($0.observedBefore)) -> \(show($0.desired))" } ?? ""
        let more = changes.count > 1 ? " (+\(changes.count - 1) more)" : ""
        var lines = ["\(verb)(\(resource)): \(target) \(first)\(more)", ""]
        for change in changes {
            var line = "\(Self.oneLine(change.property)): \(show(change.observedBefore)) -> \(show(change.desired))"
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
        if let baseline { trailers.append((.baseline, baseline)) }
        trailers.append((.detectedAt, Timestamp.format(detectedAt)))
        if let appliedAt { trailers.append((.appliedAt, Timestamp.format(appliedAt))) }
        if let verifiedAt { trailers.append((.verifiedAt, Timestamp.format(verifiedAt))) }
        if let approver { trailers.append((.approvedBy, Self.oneLine(approver))) }
        if let nextWindowAt { trailers.append((.nextWindow, Timestamp.format(nextWindowAt))) }
        if let needsRestart { trailers.append((.needsRestart, needsRestart)) }
        if let finding { trailers += finding.trailers }
        if let proposal { trailers.append((.proposal, proposal)) }
        if let reverts { trailers.append((.reverts, reverts)) }
        lines += trailers.map { "\($0.0.rawValue): \(Self.oneLine($0.1))" }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `text` with every control character, line or paragraph separator and bidirectional
    /// control made a space (`TerminalText.oneLine`). Checked on the bytes, not through the
    /// Unicode tables: it runs for every value of every record, and the tables' way was 2 % of a
    /// 20,000-fix pass's CPU.
    static func oneLine(_ text: String) -> String { TerminalText.oneLine(text) }
}

// MARK: - Codable

/// The JSON file on the audit branch: every time as `Timestamp` text (`2026-11-22T10:00:00.142Z`),
/// whatever the encoder's date strategy, so the file is the same bytes as before times were
/// `Date`s, and files written by earlier versions read.
extension AuditRecord {
    enum CodingKeys: String, CodingKey {
        case id, controller, target, resource, kind, name, severity, risk, mode, decision, result, reason, changes
        case detectedAt, appliedAt, verifiedAt, desiredCommit, approver, error, nextWindowAt, notes, needsRestart, finding, baseline, reverts
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func time(_ key: CodingKeys) throws -> Date? {
            guard let text = try container.decodeIfPresent(String.self, forKey: key) else { return nil }
            guard let date = Timestamp.parse(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not an ISO 8601 time: \(text)")
            }
            return date
        }
        guard let detectedAt = try time(.detectedAt) else {
            throw DecodingError.keyNotFound(CodingKeys.detectedAt, .init(codingPath: container.codingPath, debugDescription: "no detectedAt"))
        }
        self.init(
            id: try container.decode(String.self, forKey: .id), controller: try container.decode(String.self, forKey: .controller),
            target: try container.decode(String.self, forKey: .target), resource: try container.decode(String.self, forKey: .resource),
            kind: try container.decode(String.self, forKey: .kind), name: try container.decode(String.self, forKey: .name),
            severity: try container.decode(Severity.self, forKey: .severity), risk: try container.decode(Int.self, forKey: .risk),
            mode: try container.decode(Mode.self, forKey: .mode), decision: try container.decode(Decision.self, forKey: .decision),
            result: try container.decodeIfPresent(RemediationResult.self, forKey: .result),
            reason: try container.decodeIfPresent(String.self, forKey: .reason),
            changes: try container.decode([Change].self, forKey: .changes),
            detectedAt: detectedAt, appliedAt: try time(.appliedAt), verifiedAt: try time(.verifiedAt),
            desiredCommit: try container.decode(Revision.self, forKey: .desiredCommit),
            approver: try container.decodeIfPresent(String.self, forKey: .approver),
            error: try container.decodeIfPresent(String.self, forKey: .error), nextWindowAt: try time(.nextWindowAt))
        notes = try container.decodeIfPresent([String].self, forKey: .notes)
        needsRestart = try container.decodeIfPresent(String.self, forKey: .needsRestart)
        finding = try container.decodeIfPresent(FindingCitation.self, forKey: .finding)
        baseline = try container.decodeIfPresent(String.self, forKey: .baseline)
        reverts = try container.decodeIfPresent(String.self, forKey: .reverts)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(controller, forKey: .controller)
        try container.encode(target, forKey: .target)
        try container.encode(resource, forKey: .resource)
        try container.encode(kind, forKey: .kind)
        try container.encode(name, forKey: .name)
        try container.encode(severity, forKey: .severity)
        try container.encode(risk, forKey: .risk)
        try container.encode(mode, forKey: .mode)
        try container.encode(decision, forKey: .decision)
        try container.encodeIfPresent(result, forKey: .result)
        try container.encodeIfPresent(reason, forKey: .reason)
        try container.encode(changes, forKey: .changes)
        try container.encode(Timestamp.format(detectedAt), forKey: .detectedAt)
        try container.encodeIfPresent(appliedAt.map(Timestamp.format), forKey: .appliedAt)
        try container.encodeIfPresent(verifiedAt.map(Timestamp.format), forKey: .verifiedAt)
        try container.encode(desiredCommit, forKey: .desiredCommit)
        try container.encodeIfPresent(approver, forKey: .approver)
        try container.encodeIfPresent(error, forKey: .error)
        try container.encodeIfPresent(nextWindowAt.map(Timestamp.format), forKey: .nextWindowAt)
        try container.encodeIfPresent(notes, forKey: .notes)
        try container.encodeIfPresent(needsRestart, forKey: .needsRestart)
        try container.encodeIfPresent(finding, forKey: .finding)
        try container.encodeIfPresent(baseline, forKey: .baseline)
        try container.encodeIfPresent(reverts, forKey: .reverts)
    }
}

// MARK: - Ids and time

public enum AuditID {
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    /// Whether `id` has the form of Bulwark's ids (`ulid`, `stable`): 26 characters of the
    /// alphabet (Crockford's base 32, upper case: no I, L, O or U).
    public static func isWellFormed(_ id: String) -> Bool {
        id.utf8.count == 26 && id.utf8.allSatisfy(alphabet.contains)
    }

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

    /// An error as a record's id tells one failure from another: every run of digits made `#`
    /// (a line number, a request id, a time, a pid), so that the same cause is recorded once,
    /// not once a pass or once a retry.
    public static func cause(_ message: String) -> String {
        var result = ""
        var inDigits = false
        for character in message {
            if character.isASCII, character.isNumber {
                if !inDigits { result.append("#") }
                inDigits = true
            } else {
                result.append(character)
                inDigits = false
            }
        }
        return result
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
        // 130 bits of room in 26 characters; the top two bits are zero. Written as ASCII bytes:
        // a drifted 100-root plan makes ids for 2,300 drifts, and building each from an array of
        // `Character`s was a tenth of its planning.
        let value = UInt128(high) << 64 | UInt128(low)
        return String(unsafeUninitializedCapacity: 26) { characters in
            for index in 0..<26 {
                // This character's lowest bit is bit 125 - 5 * index.
                characters[index] = alphabet[Int(truncatingIfNeeded: value >> (125 - 5 * index) & 31)]
            }
            return 26
        }
    }
}

/// The one text form of a time in records, trailers and JSON: ISO 8601 in UTC with milliseconds.
public enum Timestamp {
    /// `2026-11-22T10:00:00.142Z`: the millisecond the time falls in (truncated, as Foundation's
    /// ISO 8601 style with fractional seconds does). A time read back from this text gives the
    /// same text again: Foundation's own style does not (a parsed `.331` is a `Double` a hair
    /// below it, which it printed as `.330` about half the time).
    public static func format(_ date: Date) -> String {
        let millis = milliseconds(date)
        let (seconds, fraction) = millis.quotientAndRemainder(dividingBy: 1000)
        let (whole, part) = fraction < 0 ? (seconds - 1, fraction + 1000) : (seconds, fraction)
        // 1970 to 9999 (every record's time) in arithmetic: Foundation's style formats through
        // a calendar that maps about 2 MiB of ICU data into the process on first use.
        if let text = civilText(seconds: whole, milliseconds: Int(part)) { return text }
        return foundationFormat(whole: whole, part: part, date: date)
    }

    /// The text Foundation's ISO 8601 style gives, with the milliseconds put in as `format` does:
    /// for times outside 1970 to 9999, and for the tests that hold `civilText` to it.
    static func foundationFormat(whole: Int64, part: Int64, date: Date) -> String {
        let text = Date(timeIntervalSince1970: Double(whole)).formatted(Date.ISO8601FormatStyle())
        guard text.hasSuffix("Z") else { return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)) }
        let digits = String(part)
        return text.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    /// Seconds since 1970 (not before) as `YYYY-MM-DDTHH:MM:SS.mmmZ` in the proleptic Gregorian
    /// calendar (days to a date as in Howard Hinnant's `civil_from_days`); nil past 9999.
    static func civilText(seconds: Int64, milliseconds: Int) -> String? {
        guard seconds >= 0, seconds < 253_402_300_800, (0..<1000).contains(milliseconds) else { return nil }
        let days = seconds / 86_400
        let second = Int(seconds % 86_400)
        let z = days + 719_468
        let era = z / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shifted = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * shifted + 2) / 5 + 1)
        let month = Int(shifted < 10 ? shifted + 3 : shifted - 9)
        let year = Int(yearOfEra + era * 400) + (month <= 2 ? 1 : 0)
        var bytes = [UInt8]()
        bytes.reserveCapacity(24)
        func put(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                bytes.append(UInt8(48 + rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        put(year, 4); bytes.append(45); put(month, 2); bytes.append(45); put(day, 2); bytes.append(84)
        put(second / 3600, 2); bytes.append(58); put(second / 60 % 60, 2); bytes.append(58); put(second % 60, 2)
        bytes.append(46); put(milliseconds, 3); bytes.append(90)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The time as a record states it: to the millisecond (`format` of it is `format` of `date`).
    public static func recorded(_ date: Date) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds(date)) / 1000)
    }

    /// Milliseconds since 1970, rounded down, allowing 10 µs for a time that is a millisecond
    /// in text but a hair below it as a `Double`.
    static func milliseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000 + 0.01).rounded(.down)
        // Beyond ±292 million years: clamped (no record is made then).
        return value.isFinite ? Int64(max(min(value, 9e15), -9e15)) : 0
    }

    /// An ISO 8601 time, with or without fractional seconds, to the millisecond (`recorded`): a
    /// record read back from its text equals the record that was written.
    public static func parse(_ text: String) -> Date? {
        if let millis = civilMilliseconds(text) { return Date(timeIntervalSince1970: Double(millis) / 1000) }
        guard let date = (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().parse(text)) else { return nil }
        return recorded(date)
    }

    /// A day written `YYYY-MM-DD` (or with a one-digit month or day), nothing before or after, that
    /// the calendar has (no February 30th, no February 29th outside leap years), from 1970 to
    /// 9999, as its first moment (00:00 UTC); nil for any other text. Foundation's ISO 8601
    /// style is not used: it reads `2027-01-05xyz` as January 5th and `2027-02-30` as March 2nd.
    public static func day(_ text: String) -> Date? {
        // A month or day of one digit (2027-1-5) is read as its two-digit form: a policy written so
        // before dates were read strictly still loads. Nothing else is taken.
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].utf8.count == 4, (1...2).contains(parts[1].utf8.count), (1...2).contains(parts[2].utf8.count),
              parts.allSatisfy({ $0.utf8.allSatisfy { (48...57).contains($0) } }) else { return nil }
        func two(_ part: Substring) -> String { part.count == 1 ? "0" + part : String(part) }
        let padded = "\(parts[0])-\(two(parts[1]))-\(two(parts[2]))"
        guard let millis = civilMilliseconds(padded + "T00:00:00Z") else { return nil }
        let day = Date(timeIntervalSince1970: Double(millis) / 1000)
        // Read back, the day is written as it was given: nothing was moved or dropped.
        return format(day).prefix(10) == padded ? day : nil
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS.mmmZ` from 1970 to 9999 (what `format`
    /// writes), as milliseconds since 1970; nil for any other text, which `parse` leaves to
    /// Foundation. A date that does not exist (February 30th) is nil here, too.
    static func civilMilliseconds(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count == 20 || bytes.count == 24, bytes[4] == 45, bytes[7] == 45, bytes[10] == 84,
              bytes[13] == 58, bytes[16] == 58, bytes[bytes.count - 1] == 90 else { return nil }
        func number(_ start: Int, _ count: Int) -> Int? {
            var value = 0
            for byte in bytes[start..<start + count] {
                guard (48...57).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            return value
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
              let minute = number(14, 2), let second = number(17, 2), (1970...9999).contains(year), (1...12).contains(month),
              hour < 24, minute < 60, second < 60 else { return nil }
        var millis = 0
        if bytes.count == 24 {
            guard bytes[19] == 46, let fraction = number(20, 3) else { return nil }
            millis = fraction
        }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let lengths = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard day >= 1, day <= lengths[month - 1] else { return nil }
        // days_from_civil (Howard Hinnant), for years from 1970.
        let y = year - (month <= 2 ? 1 : 0)
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return (Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second)) * 1000 + Int64(millis)
    }
}

extension Duration {
    /// The duration in seconds, fractions included.
    public var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
