package import BulwarkCore
import Foundation
internal import Logging

extension Daemon {
    /// Remembers, per binding a finding names, the highest priority of those findings: the next
    /// cycle plans that drift first (P1 first), so that a limit defers drift no scanner waits on.
    func prioritize(_ report: IntakeReport, reconcile: Set<Binding>) {
        for item in report.items where item.outcome == "reconcile" || item.outcome == "reopened" {
            for binding in reconcile where item.reconciled.contains(binding.description) {
                findingPriorities[binding] = min(findingPriorities[binding] ?? item.priority, item.priority)
            }
        }
    }

    /// `POST /api/v1/findings`: the finding rules of the revision in force decide (the same
    /// `FindingIntake` as `bulwark ingest`); the resources to reconcile are reconciled at once.
    /// Proposals are made here, on the daemon's actor, so they never race a cycle.
    package func findingsArrived(_ findings: [Finding], format: FindingFormat) async -> (matched: Int, report: (any Encodable & Sendable)?) {
        guard let state, let head else {
            let matched = findingIndex().match(findings)
            received(matched)
            return (matched.count, nil)
        }
        let intake = FindingIntake(registry: registry, repository: repository, reconciler: Reconciler(registry: registry, clock: clock.wall),
                                   now: clock.wall())
        let (report, reconcile) = await intake.run(findings, format: format, state: state, head: head)
        prioritize(report, reconcile: Set(reconcile.keys))
        received(reconcile)
        // An auto-merged fix is a new revision: load it now rather than at the next poll.
        if report.items.contains(where: { $0.outcome == "merged" }) { requestSource() }
        for item in report.items where item.outcome != "nothing" && item.outcome != "reconcile" {
            logger.info("finding", metadata: ["id": .string(item.id), "source": .string(item.source), "priority": .string(item.priority.rawValue),
                                              "outcome": .string(item.outcome), "branch": .string(item.branch ?? "-")])
        }
        meters.findings(report)
        // Findings still open past their SLA are announced (once each) to notifiers with `sla-breach`.
        if let outbox, Outbox.enqueueBreaches(report, now: clock.wall(), notifiers: notifiers, folder: outbox.folder) > 0 {
            notify.yield()
        }
        return (reconcile.count, report)
    }
}
