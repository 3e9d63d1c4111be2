package import BulwarkCore
package import BulwarkGit
package import Foundation

/// A finding reported open again after its accepted proposal's fix was verified: the fix did not
/// hold (the drift came back, or the change does not fix what the scanner checks). Not proposed
/// again (the policy already carries the change, and its branch exists): the intake item's
/// outcome is `reopened`, the resources that cite the finding are reconciled, and an audit record
/// of each (decision `reported`, `Bulwark-Proposal: reopened`, the finding's trailers) says so,
/// once per verified fix, so that `bulwark report` lists it and counts the next fix's MTTR from it.
/// A finding reported open while its accepted fix is not verified yet is still waiting for that
/// fix: it stays `already-proposed` (or `already-in-policy` when auto-merged).
package struct ReopenedFindings {
    /// A verified fix of one binding citing a finding.
    package struct Fix: Sendable {
        package var record: String
        package var verifiedAt: Date
    }

    /// The last verified fix citing each finding, per binding (`target Kind/name`).
    package var fixes: [String: [String: Fix]] = [:]

    package init(fixes: [String: [String: Fix]] = [:]) { self.fixes = fixes }

    /// The verified fixes that cite a finding, from the whole audit history (every writer's ref).
    /// With a signing key or audit signers, only those a Bulwark signed: anyone who can push
    /// could write a "verified" fix of a finding, and Bulwark would then sign and push a record
    /// that the fix did not hold, and `report` list it open (as `report` counts, `RecordTrust`).
    package static func read(_ repository: PolicyRepository) async -> ReopenedFindings {
        var result = ReopenedFindings()
        guard let history = try? await repository.auditHistory() else { return result }
        var commits = history.filter { $0.recorded.map { $0.isVerifiedFix && $0.finding != nil } == true }
        if let split = await RecordTrust.split(commits, in: repository, verification: nil) { commits = split.trusted }
        for commit in commits {
            guard let recorded = commit.recorded, recorded.isVerifiedFix, let finding = recorded.finding,
                  let target = recorded.target, let resource = recorded.resource, let verified = recorded.verifiedAt else { continue }
            let key = target + " " + resource
            if let known = result.fixes[finding]?[key], known.verifiedAt >= verified { continue }
            result.fixes[finding, default: [:]][key] = Fix(record: recorded.id, verifiedAt: verified)
        }
        return result
    }

    /// The bindings of `citing` (those whose resource cites the finding) whose fix was verified:
    /// those the finding names when it names any, else all of them. Empty: not reopened.
    package func reopened(_ finding: Finding, citing: [Binding]) -> [(binding: Binding, fix: Fix)] {
        guard !finding.resolved, let known = fixes[finding.id] else { return [] }
        let named = citing.filter(finding.matches)
        return (named.isEmpty ? citing : named).sorted().compactMap { binding in
            known["\(binding.target) \(binding.resource)"].map { (binding, $0) }
        }
    }

    /// The audit record of a reopened finding on one binding: stable per verified fix, so a
    /// scanner that keeps reporting it records it once until the next fix.
    package static func record(_ finding: Finding, binding: Binding, fix: Fix, resource: Resource, mode: Mode, head: ObjectID,
                               now: Date) -> AuditRecord {
        let id = AuditID.stable(["reopened", finding.id, binding.description, fix.record].joined(separator: "\u{1}"))
        var record = AuditRecord(
            id: id, controller: binding.controller, target: binding.target, resource: binding.resource.description,
            kind: binding.resource.kind, name: binding.resource.name, severity: resource.severity, risk: 0, mode: mode,
            decision: .reported, result: nil,
            reason: "finding \(TerminalText.oneLine(finding.id)) from \(TerminalText.oneLine(finding.source)) is reported open again "
                + "after its fix was verified at \(Timestamp.format(fix.verifiedAt)) (record \(fix.record)): the fix did not hold",
            changes: [], detectedAt: now, appliedAt: nil, verifiedAt: nil, desiredCommit: Revision(head),
            approver: nil, error: nil)
        record.finding = FindingCitation(annotations: resource.annotations)
        record.proposal = "reopened"
        return record
    }
}
