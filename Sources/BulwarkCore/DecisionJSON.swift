package import Foundation

/// A decision as every JSON output shows it: `apply`'s records, `log`'s entries, the status
/// API's recent decisions and open drift. One vocabulary across commands, the same as `plan`'s:
/// `decision`, `result`, and per property `observed` (before any fix), `desired` and `verified`
/// (observed again after the fix); `revision` is the policy commit, times are RFC 3339 (`…At`,
/// `Date` through `Console.jsonEncoder`), durations are seconds (`…Seconds`).
///
/// This is a rendering only: the committed audit record keeps its own format (the JSON file and
/// the `Bulwark-*` trailers on the audit branch, see `AuditRecord` and `AuditTrailer`).
///
/// In the core (no I/O) so that every layer that shows a decision (the commands, the runtime's
/// reports, the HTTP server's status) shares it; the runtime adds the reading from an audit
/// commit (`DecisionJSON+Commit.swift`).
package struct DecisionJSON: Encodable, Sendable {
    package struct Change: Encodable, Sendable, Hashable {
        package var property: String
        /// The value before the fix, as observed when the drift was found.
        package var observed: String?
        package var desired: String
        /// The value observed again after the fix (its verification), when there was a fix.
        package var verified: String?

        package init(property: String, observed: String?, desired: String, verified: String? = nil) {
            self.property = property
            self.observed = observed
            self.desired = desired
            self.verified = verified
        }

        /// A drift as plans show it, sensitive values redacted.
        package init(_ drift: PropertyDrift) {
            self.init(property: drift.property, observed: drift.sensitive ? "[redacted]" : drift.observed, desired: drift.shownDesired)
        }
    }

    /// Set where the decision is a document of its own (each entry of `log --output json`).
    package var schemaVersion: Int?
    package var id: String
    /// The audit commit that records it, when there is one.
    package var commit: String?
    /// The audit commit's subject line (`log`).
    package var summary: String?
    package var controller: String?
    package var target: String?
    package var resource: String?
    package var kind: String?
    package var name: String?
    package var severity: Severity?
    package var risk: Int?
    package var mode: Mode?
    package var decision: Decision?
    package var result: RemediationResult?
    package var reason: String?
    package var error: String?
    /// Absent where only the commit's trailers were read (`log`).
    package var changes: [Change]?
    /// The policy revision (commit id) the decision was made against.
    package var revision: Revision?
    package var approvedBy: String?
    package var detectedAt: Date?
    package var appliedAt: Date?
    package var verifiedAt: Date?
    /// For drift deferred by a change window: when the next window opens.
    package var nextWindowAt: Date?
    /// Detection to verified fix.
    package var mttrSeconds: Double?
    /// `log` with a signing key or audit signers: true when no trusted key signed the record's
    /// commit (anyone who can push can write one); absent otherwise.
    package var untrusted: Bool?
    /// `log`: true when the record's commit is kept locally, not on the origin yet (the next
    /// `apply` or `run` pushes it); absent otherwise.
    package var keptLocally: Bool?

    /// A decision with only its id: the other fields are set by the caller.
    package init(id: String) {
        self.id = id
    }

    /// A record as written by this pass (or recovered), with its audit commit.
    package init(_ record: AuditRecord, commit: String?) {
        id = record.id
        self.commit = commit
        controller = record.controller
        target = record.target
        resource = record.resource
        kind = record.kind
        name = record.name
        severity = record.severity
        risk = record.risk
        mode = record.mode
        decision = record.decision
        result = record.result
        reason = record.reason
        error = record.error
        changes = record.changes.map {
            Change(property: $0.property, observed: $0.observedBefore, desired: $0.desired, verified: $0.observedAfter)
        }
        revision = record.desiredCommit
        approvedBy = record.approver
        detectedAt = record.detectedAt
        appliedAt = record.appliedAt
        verifiedAt = record.verifiedAt
        nextWindowAt = record.nextWindowAt
        mttrSeconds = Self.mttr(detected: detectedAt, verified: verifiedAt, result: result)
    }

    /// Detection to verified fix, in seconds (to the millisecond); nil unless verified.
    package static func mttr(detected: Date?, verified: Date?, result: RemediationResult?) -> Double? {
        guard let detected, let verified else { return nil }
        return MTTRSummary.seconds(max(0, verified.timeIntervalSince(detected)))
    }
}
