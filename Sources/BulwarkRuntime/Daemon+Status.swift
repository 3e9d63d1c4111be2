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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array((try? encoder.encode(status())) ?? Data("{}".utf8))
    }

    package struct Status: Encodable {
        package struct Item: Encodable {
            package var target: String
            package var resource: String
            package var severity: String
            package var decision: String
            package var properties: [String]
        }
        package struct Recent: Encodable {
            package var id: String
            package var target: String
            package var resource: String
            package var decision: String
            package var result: String?
            package var commit: String?
            package var detectedAt: String
            package var verifiedAt: String?
        }
        package struct TargetInfo: Encodable {
            package var name: String
            package var adapter: String
            package var resources: Int
        }
        /// `JSONSchema.version` (docs/schemas/status.schema.json).
        package var schemaVersion = 1
        package var revision: String?
        /// A cycle is running or waiting to run.
        package var busy: Bool
        /// Cycles run since the start.
        package var cycles: Int
        package var ready: Bool
        package var readiness: String
        package var sourceError: String?
        package var lastCycleAt: String?
        package var lastCycleSeconds: Double?
        package var lastCycleError: String?
        package var targets: [TargetInfo]
        package var openDrift: [Item]
        package var recent: [Recent]
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
            Status.Item(target: $0.binding.target, resource: $0.binding.resource.description, severity: $0.severity.rawValue,
                        decision: $0.decision.rawValue, properties: $0.changes.map { "\($0.property): \($0.shownObserved) -> \($0.shownDesired)" })
        }
        return Status(
            revision: head?.hex, busy: working || pendingSource || pendingAll || !pendingBindings.isEmpty, cycles: cycles, ready: ready, readiness: reason, sourceError: sourceError,
            lastCycleAt: lastCycle.map { Timestamp.format($0.at) }, lastCycleSeconds: lastCycle.map { RemediationReport.seconds($0.seconds) }, lastCycleError: lastCycle?.error,
            targets: targets, openDrift: openItems,
            recent: recent.reversed().prefix(30).map { r in
                Status.Recent(id: r.record.id, target: r.record.target, resource: r.record.resource, decision: r.record.decision.rawValue,
                              result: r.record.result?.rawValue, commit: r.commit, detectedAt: r.record.detectedAt, verifiedAt: r.record.verifiedAt)
            },
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
