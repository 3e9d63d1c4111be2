public import Foundation

/// The trailers of an audit commit: written by `AuditRecord.commitMessage`, read back by every
/// reader of the audit branch (log, report, approve, revert, the flap history) through
/// `RecordedDecision`, so that no key is spelled twice.
public enum AuditTrailer: String, CaseIterable, Sendable {
    case id = "Bulwark-Id"
    case controller = "Bulwark-Controller"
    case target = "Bulwark-Target"
    case resource = "Bulwark-Resource"
    case severity = "Bulwark-Severity"
    case mode = "Bulwark-Mode"
    case decision = "Bulwark-Decision"
    case result = "Bulwark-Result"
    case desiredCommit = "Bulwark-Desired-Commit"
    /// On an applied record: the last revision accepted with no weakening pending when it was
    /// made (`DesiredState.acceptedRevision`), or `none`; what a new state directory compares
    /// weakenings with. The desired commit may hold a weakening still waiting for a second person.
    case baseline = "Bulwark-Baseline"
    case detectedAt = "Bulwark-Detected-At"
    case appliedAt = "Bulwark-Applied-At"
    case verifiedAt = "Bulwark-Verified-At"
    case approvedBy = "Bulwark-Approved-By"
    case nextWindow = "Bulwark-Next-Window"
    /// The Bulwark instance that wrote the record, and its sequence number: gap-free per instance,
    /// so that `bulwark verify-audit` finds a removed record.
    case instance = "Bulwark-Instance"
    case sequence = "Bulwark-Sequence"
    /// On an approval commit (not an audit record): the id of the held or blocked record it approves.
    case approves = "Bulwark-Approves"
    /// On a revert's waiver commit: the id of the fix it undoes.
    case reverts = "Bulwark-Reverts"
    /// What must still be restarted for an applied fix to take effect (`ssh`, `reboot`).
    case needsRestart = "Bulwark-Needs-Restart"
    /// On a record of a controller replica: the target's lease and its fencing token (`db-1 42`),
    /// checked right before the change was made.
    case lease = "Bulwark-Lease"
    /// The scanner finding a record's fix or a proposal answers, its source and first-seen time
    /// (the MTTR clock of findings starts there), and its priority (P1…P4).
    case finding = "Bulwark-Finding"
    case findingSource = "Bulwark-Finding-Source"
    case findingFirstSeen = "Bulwark-Finding-First-Seen"
    case priority = "Bulwark-Priority"
    /// On a policy commit built from a finding: `proposed` (on bulwark/proposals/<id>),
    /// `auto-merged`, `accepted` or `closed`; on an audit record, `reopened`: the scanner reported
    /// the finding open again after its accepted fix was verified.
    case proposal = "Bulwark-Proposal"

    /// Whether a commit trailer's key is one of Bulwark's (trailer keys compare case-insensitively, as git's do).
    public static func isBulwark(_ key: String) -> Bool { key.lowercased().hasPrefix("bulwark-") }
}

/// An audit record as its commit's trailers give it back: typed, with dates parsed once.
/// The full record (changes, values) is the JSON file the commit adds; readers of history need
/// only this.
public struct RecordedDecision: Sendable, Hashable {
    public var id: String
    public var controller: String?
    public var target: String?
    public var resource: String?
    public var severity: Severity?
    public var mode: Mode?
    public var decision: Decision?
    public var result: RemediationResult?
    public var desiredCommit: Revision?
    /// `Bulwark-Baseline`: `none`, or a commit; nil on a record written before it existed.
    public var baseline: String?
    public var detectedAt: Date?
    public var appliedAt: Date?
    public var verifiedAt: Date?
    public var approvedBy: String?
    public var nextWindow: Date?
    public var needsRestart: String?
    public var finding: String?
    public var findingSource: String?
    public var findingFirstSeen: Date?
    public var priority: String?
    /// `reopened` on the record of a finding reported open again after its fix was verified.
    public var proposal: String?
    /// `Bulwark-Reverts`: on `bulwark revert`'s record, the id of the fix it undid.
    public var reverts: String?

    /// Nil when the commit carries no `Bulwark-Id` (not an audit record).
    public init?(trailer value: (AuditTrailer) -> String?) {
        guard let id = value(.id) else { return nil }
        self.id = id
        controller = value(.controller)
        target = value(.target)
        resource = value(.resource)
        severity = value(.severity).flatMap(Severity.init(rawValue:))
        mode = value(.mode).flatMap(Mode.init(rawValue:))
        decision = value(.decision).flatMap(Decision.init(rawValue:))
        result = value(.result).flatMap(RemediationResult.init(rawValue:))
        desiredCommit = value(.desiredCommit).map { Revision($0) }
        baseline = value(.baseline)
        detectedAt = value(.detectedAt).flatMap(Timestamp.parse)
        appliedAt = value(.appliedAt).flatMap(Timestamp.parse)
        verifiedAt = value(.verifiedAt).flatMap(Timestamp.parse)
        approvedBy = value(.approvedBy)
        nextWindow = value(.nextWindow).flatMap(Timestamp.parse)
        needsRestart = value(.needsRestart)
        finding = value(.finding)
        findingSource = value(.findingSource)
        findingFirstSeen = value(.findingFirstSeen).flatMap(Timestamp.parse)
        priority = value(.priority)
        proposal = value(.proposal)
        reverts = value(.reverts)
    }

    /// A verified fix: applied and verified.
    public var isVerifiedFix: Bool { decision == .applied && result == .verified }
}
