package import BulwarkCore
package import BulwarkGit
package import BulwarkServer
package import Foundation
package import Logging
package import Metrics
package import Prometheus
package import Synchronization

/// What `/api/v1/status` and the status page show, as a value the server renders.
extension Daemon {
    package func statusJSON() -> [UInt8] {
        Array((try? Console.jsonEncoder().encode(status())) ?? Data("{}".utf8))
    }

    package struct Status: Encodable {
        /// Drift the last cycle left open, in `plan`'s vocabulary.
        package struct Item: Encodable {
            package var target: String
            package var resource: String
            package var controller: String
            package var severity: Severity
            package var risk: Int
            package var decision: Decision
            package var reason: String?
            package var changes: [DecisionJSON.Change]
        }
        package struct TargetInfo: Encodable {
            package var name: String
            package var adapter: String
            package var resources: Int
        }
        /// `JSONSchema.version` (docs/schemas/status.schema.json).
        package var schemaVersion = JSONSchema.version
        package var revision: String?
        /// A cycle is running or waiting to run.
        package var busy: Bool
        /// Cycles run since the start.
        package var cycles: Int
        package var ready: Bool
        package var readiness: String
        package var sourceError: String?
        package var lastCycleAt: Date?
        package var lastCycleSeconds: Double?
        package var lastCycleError: String?
        package var targets: [TargetInfo]
        package var openDrift: [Item]
        package var recent: [DecisionJSON]
        package var mttrLastDay: RemediationReport.Summary
        package var mttrLastWeek: RemediationReport.Summary
    }

    package func status(now: Date = Date()) -> Status {
        let (ready, reason) = readiness()
        var bound: [String: Int] = [:]
        for binding in state?.bindings ?? [] { bound[binding.target, default: 0] += 1 }
        let targets = (state?.targets.values.sorted { $0.name < $1.name } ?? []).map { target in
            Status.TargetInfo(name: target.name, adapter: target.adapter, resources: bound[target.name] ?? 0)
        }
        let openItems = open.values.sorted { ($0.risk, $1.binding) > ($1.risk, $0.binding) }.map {
            Status.Item(target: $0.binding.target, resource: $0.binding.resource.description, controller: $0.binding.controller,
                        severity: $0.severity, risk: $0.risk, decision: $0.decision, reason: $0.reason,
                        changes: $0.changes.map(DecisionJSON.Change.init))
        }
        return Status(
            revision: head?.hex, busy: working || pendingSource || pendingAll || !pendingBindings.isEmpty, cycles: cycles, ready: ready, readiness: reason, sourceError: sourceError,
            lastCycleAt: lastCycle?.at, lastCycleSeconds: lastCycle.map { RemediationReport.seconds($0.seconds) }, lastCycleError: lastCycle?.error,
            targets: targets, openDrift: openItems,
            recent: recent.reversed().prefix(30).map { DecisionJSON($0.record, commit: $0.commit) },
            mttrLastDay: RemediationReport(entries: history, since: now.addingTimeInterval(-86400), now: now, top: 0).mttr,
            mttrLastWeek: RemediationReport(entries: history, since: now.addingTimeInterval(-7 * 86400), now: now, top: 0).mttr)
    }

    package func statusPage() -> String { StatusPage.render(status(), repository: options.displayURL) }
}

extension RemediationReport.Entry {
    package init?(_ record: AuditRecord) {
        guard let detected = Timestamp.parse(record.detectedAt) else { return nil }
        self.init(target: record.target, resource: record.resource, controller: record.controller, severity: record.severity,
                  decision: record.decision, result: record.result, detectedAt: detected,
                  verifiedAt: record.verifiedAt.flatMap(Timestamp.parse))
    }
}
