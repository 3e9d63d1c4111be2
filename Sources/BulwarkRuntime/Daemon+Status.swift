package import BulwarkCore
package import BulwarkServer
internal import BulwarkGit
package import Foundation

/// What `/api/v1/status` and the status page show, as a value the server renders (`DaemonStatus`).
extension Daemon {
    package func status() -> DaemonStatus { status(now: Date()) }

    package func status(now: Date) -> DaemonStatus {
        let (ready, reason) = readiness()
        var bound: [String: Int] = [:]
        for binding in state?.bindings ?? [] { bound[binding.target, default: 0] += 1 }
        let targets = (state?.targets.values.sorted { $0.name < $1.name } ?? []).map { target in
            DaemonStatus.TargetInfo(name: target.name, adapter: target.adapter, resources: bound[target.name] ?? 0)
        }
        let openItems = open.values.sorted { ($0.risk, $1.binding) > ($1.risk, $0.binding) }.map {
            DaemonStatus.Item(target: $0.binding.target, resource: $0.binding.resource.description, controller: $0.binding.controller,
                        severity: $0.severity, risk: $0.risk, decision: $0.decision, reason: $0.reason,
                        changes: $0.changes.map(DecisionJSON.Change.init))
        }
        return DaemonStatus(
            schemaVersion: JSONSchema.version, revision: head.map { Revision($0) }, busy: working || pendingSource || pendingAll || !pendingBindings.isEmpty, cycles: cycles, ready: ready, readiness: reason, sourceError: sourceError,
            lastCycleAt: lastCycle?.at, lastCycleSeconds: lastCycle.map { RemediationReport.seconds($0.seconds) }, lastCycleError: lastCycle?.error,
            targets: targets, openDrift: openItems,
            recent: recent.reversed().prefix(30).map { DecisionJSON($0.record, commit: $0.commit) },
            mttrLastDay: history.summary(since: now.addingTimeInterval(-86400), until: now),
            mttrLastWeek: history.summary(since: now.addingTimeInterval(-7 * 86400), until: now),
            auditDivertedTo: auditDiverted)
    }
}

extension RemediationReport.Entry {
    package init?(_ record: AuditRecord) {
        self.init(target: record.target, resource: record.resource, controller: record.controller, severity: record.severity,
                  decision: record.decision, result: record.result, detectedAt: record.detectedAt,
                  verifiedAt: record.verifiedAt)
        foundAsDesired = Self.foundAsDesired(record)
    }
}
