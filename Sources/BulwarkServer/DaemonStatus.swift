package import Foundation
package import BulwarkCore

/// What the daemon shows, as a value it hands the server: the server renders it as
/// `/api/v1/status` (JSON, docs/schemas/status.schema.json) and as the status page (HTML). The
/// daemon knows nothing of either rendering.
public struct DaemonStatus: Encodable, Sendable {
    /// Drift the last cycle left open, in `plan`'s vocabulary.
    public struct Item: Encodable, Sendable {
        package var target: String
        package var resource: String
        package var controller: String
        package var severity: Severity
        package var risk: Int
        package var decision: Decision
        package var reason: String?
        package var changes: [DecisionJSON.Change]

        package init(target: String, resource: String, controller: String, severity: Severity, risk: Int, decision: Decision,
                     reason: String?, changes: [DecisionJSON.Change]) {
            self.target = target
            self.resource = resource
            self.controller = controller
            self.severity = severity
            self.risk = risk
            self.decision = decision
            self.reason = reason
            self.changes = changes
        }
    }

    public struct TargetInfo: Encodable, Sendable {
        package var name: String
        package var adapter: String
        package var resources: Int

        package init(name: String, adapter: String, resources: Int) {
            self.name = name
            self.adapter = adapter
            self.resources = resources
        }
    }

    /// The JSON documents' version (`JSONSchema.version`).
    package var schemaVersion: Int
    /// The policy commit in force.
    package var revision: Revision?
    /// A cycle is running or waiting to run.
    package var busy: Bool
    /// Cycles run since the start.
    package var cycles: Int
    package var ready: Bool
    package var readiness: String
    package var sourceError: String?
    /// The recovery branch audit records go to while the origin's audit branch lost records
    /// Bulwark pushed; absent while they go to the audit branch.
    package var auditDivertedTo: String?
    package var lastCycleAt: Date?
    package var lastCycleSeconds: Double?
    package var lastCycleError: String?
    package var targets: [TargetInfo]
    package var openDrift: [Item]
    package var recent: [DecisionJSON]
    package var mttrLastDay: MTTRSummary
    package var mttrLastWeek: MTTRSummary

    package init(schemaVersion: Int, revision: Revision?, busy: Bool, cycles: Int, ready: Bool, readiness: String, sourceError: String?,
                 lastCycleAt: Date?, lastCycleSeconds: Double?, lastCycleError: String?, targets: [TargetInfo], openDrift: [Item],
                 recent: [DecisionJSON], mttrLastDay: MTTRSummary, mttrLastWeek: MTTRSummary, auditDivertedTo: String? = nil) {
        self.schemaVersion = schemaVersion
        self.revision = revision
        self.busy = busy
        self.cycles = cycles
        self.ready = ready
        self.readiness = readiness
        self.sourceError = sourceError
        self.auditDivertedTo = auditDivertedTo
        self.lastCycleAt = lastCycleAt
        self.lastCycleSeconds = lastCycleSeconds
        self.lastCycleError = lastCycleError
        self.targets = targets
        self.openDrift = openDrift
        self.recent = recent
        self.mttrLastDay = mttrLastDay
        self.mttrLastWeek = mttrLastWeek
    }
}
