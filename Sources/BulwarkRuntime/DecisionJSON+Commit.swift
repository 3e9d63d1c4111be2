package import BulwarkCore
package import BulwarkGit
internal import Foundation

extension DecisionJSON {
    /// A record read back from its audit commit's trailers.
    package init(_ record: RecordedDecision, commit: CommitInfo) {
        self.init(id: record.id)
        self.commit = commit.id.hex
        summary = commit.summary
        // The body's `Reason:` and `Error:` lines (written by `AuditRecord.commitMessage`): a
        // record with no change (a refused revision, a tampered branch) says why only there.
        for line in commit.message.split(separator: "\n").dropFirst() {
            if reason == nil, line.hasPrefix("Reason: ") { reason = String(line.dropFirst("Reason: ".count)) }
            if error == nil, line.hasPrefix("Error: ") { error = String(line.dropFirst("Error: ".count)) }
        }
        controller = record.controller
        target = record.target
        resource = record.resource
        if let resource = record.resource, let slash = resource.firstIndex(of: "/") {
            kind = String(resource[..<slash])
            name = String(resource[resource.index(after: slash)...])
        }
        severity = record.severity
        mode = record.mode
        decision = record.decision
        result = record.result
        revision = record.desiredCommit
        approvedBy = record.approvedBy
        detectedAt = record.detectedAt
        appliedAt = record.appliedAt
        verifiedAt = record.verifiedAt
        nextWindowAt = record.nextWindow
        mttrSeconds = Self.mttr(detected: detectedAt, verified: verifiedAt, result: result)
    }
}
