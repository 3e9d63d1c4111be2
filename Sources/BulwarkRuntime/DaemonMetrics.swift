package import BulwarkCore
package import Foundation
package import Prometheus
import Synchronization

/// The daemon's metrics, in the daemon's own swift-prometheus registry (no process-wide
/// bootstrap), exposed at `/metrics`. Every family has `# HELP` and `# TYPE`; the series a
/// dashboard alerts on exist at 0 from the start; labels stay bounded (controllers, kinds,
/// severities and decisions come from the policy and the core's vocabulary).
package final class DaemonMetrics: Sendable {
    package let registry: PrometheusCollectorRegistry

    private struct State {
        /// The revision series in force: removed, not zeroed, when another takes over.
        package var revision: Gauge?
        package var openLabels: Set<[String]> = []
    }
    private let state = Mutex(State())

    package static let buckets: [Duration] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400]
        .map { Duration.milliseconds(Int64($0 * 1000)) }

    // The families, one place for their names and help.
    package static var driftDetected: MetricNameDescriptor { family("bulwark_drift_detected", "total",
                                      "Drift newly detected (a drift seen again before it is fixed is not counted again)") }
    package static var decisions: MetricNameDescriptor { family("bulwark_decisions", "total", "Decisions recorded in the audit branch, by decision") }
    package static var remediations: MetricNameDescriptor { family("bulwark_remediations", "total", "Fixes applied, by whether they verified") }
    package static var remediationSeconds: MetricNameDescriptor { family("bulwark_remediation", "seconds", "Time from detection to a verified fix") }
    package static var cycleSeconds: MetricNameDescriptor { family("bulwark_reconcile_duration", "seconds", "Duration of reconcile cycles, by controller") }
    package static var lastSuccess: MetricNameDescriptor { family("bulwark_last_successful_cycle_timestamp", "seconds",
                                    "Unix time at which the last cycle without errors finished") }
    package static var revisionInfo: MetricNameDescriptor { family("bulwark_source_revision_info", "", "The policy revision in force (value 1)") }
    package static var pushFailures: MetricNameDescriptor { family("bulwark_git_push_failures", "total", "Audit pushes that failed and were kept locally") }
    package static var observationFailures: MetricNameDescriptor { family("bulwark_observation_failures", "total",
                                            "Resources that could not be observed, by controller") }
    package static var notificationsDelivered: MetricNameDescriptor { family("bulwark_notifications_delivered", "total", "Notifications delivered") }
    package static var notificationFailures: MetricNameDescriptor { family("bulwark_notification_failures", "total", "Notification delivery attempts that failed") }
    package static var openDrift: MetricNameDescriptor { family("bulwark_open_drift", "", "Drift left open by the last cycle, by controller and severity") }
    package static var held: MetricNameDescriptor { family("bulwark_held_remediations", "", "Drift waiting for a person's approval") }
    package static var blocked: MetricNameDescriptor { family("bulwark_blocked_remediations", "", "Drift a safety guard blocked") }

    package static func family(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: unit, helpText: help)
    }

    package init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        // Series at 0 from the start.
        for decision in Decision.allCases { _ = registry.makeCounter(descriptor: Self.decisions, labels: [("decision", decision.rawValue)]) }
        for result in ["verified", "failed"] { _ = registry.makeCounter(descriptor: Self.remediations, labels: [("result", result)]) }
        _ = registry.makeDurationHistogram(descriptor: Self.remediationSeconds, labels: [], buckets: Self.buckets)
        _ = registry.makeCounter(descriptor: Self.pushFailures, labels: [])
        _ = registry.makeCounter(descriptor: Self.auditTampering, labels: [])
        _ = registry.makeCounter(descriptor: Self.notificationsDelivered, labels: [])
        _ = registry.makeCounter(descriptor: Self.notificationFailures, labels: [])
        _ = registry.makeGauge(descriptor: Self.lastSuccess, labels: [])
        _ = registry.makeGauge(descriptor: Self.held, labels: [])
        _ = registry.makeGauge(descriptor: Self.blocked, labels: [])
        startTrail()
    }

    /// A revision came into force: the per-controller series exist at 0 from now on.
    package func revision(_ hex: String, state desired: DesiredState) {
        let gauge = registry.makeGauge(descriptor: Self.revisionInfo, labels: [("revision", hex)])
        gauge.set(Double(1))
        let previous = state.withLock { state in
            defer { state.revision = gauge }
            return state.revision
        }
        if let previous, previous !== gauge { registry.unregisterGauge(previous) }
        var seen = Set<[String]>()
        for binding in desired.bindings {
            guard let resource = desired.resources[binding.resource],
                  seen.insert([binding.controller, binding.resource.kind, resource.severity.rawValue]).inserted else { continue }
            _ = registry.makeCounter(descriptor: Self.driftDetected, labels: driftLabels(binding, resource.severity))
        }
        for controller in desired.controllers.keys {
            _ = registry.makeCounter(descriptor: Self.observationFailures, labels: [("controller", controller)])
            _ = registry.makeDurationHistogram(descriptor: Self.cycleSeconds, labels: [("controller", controller)], buckets: Self.buckets)
        }
    }

    private func driftLabels(_ binding: Binding, _ severity: Severity) -> [(String, String)] {
        [("controller", binding.controller), ("kind", binding.resource.kind), ("severity", severity.rawValue)]
    }

    /// A drift the daemon had not seen open before.
    package func driftDetected(_ remediation: PlannedRemediation) {
        registry.makeCounter(descriptor: Self.driftDetected, labels: driftLabels(remediation.binding, remediation.severity)).increment()
    }

    package func recorded(_ record: AuditRecord) {
        registry.makeCounter(descriptor: Self.decisions, labels: [("decision", record.decision.rawValue)]).increment()
        guard record.decision == .applied, let result = record.result else { return }
        registry.makeCounter(descriptor: Self.remediations, labels: [("result", result.rawValue)]).increment()
        if result == .verified, let verified = record.verifiedAt {
            registry.makeDurationHistogram(descriptor: Self.remediationSeconds, labels: [], buckets: Self.buckets)
                .recordNanoseconds(Int64(max(0, verified.timeIntervalSince(record.detectedAt)) * 1e9))
        }
    }

    package func observationFailed(controller: String) {
        registry.makeCounter(descriptor: Self.observationFailures, labels: [("controller", controller)]).increment()
    }

    package func cycle(controller: String, seconds: Double) {
        registry.makeDurationHistogram(descriptor: Self.cycleSeconds, labels: [("controller", controller)], buckets: Self.buckets)
            .recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    package func cycleSucceeded(at date: Date) {
        registry.makeGauge(descriptor: Self.lastSuccess, labels: []).set(date.timeIntervalSince1970)
    }

    package func pushFailed() {
        registry.makeCounter(descriptor: Self.pushFailures, labels: []).increment()
    }

    package func notifications(delivered: Int, failed: Int) {
        registry.makeCounter(descriptor: Self.notificationsDelivered, labels: []).increment(by: Int64(delivered))
        registry.makeCounter(descriptor: Self.notificationFailures, labels: []).increment(by: Int64(failed))
    }

    /// Open drift by controller and severity (combinations that are gone drop to 0), and how
    /// much of it waits for a person (held) or was blocked by a guard.
    package func setOpen(_ items: [PlannedRemediation]) {
        var counts: [[String]: Int] = [:]
        for item in items { counts[[item.binding.controller, item.severity.rawValue], default: 0] += 1 }
        let previous = state.withLock { state in
            defer { state.openLabels.formUnion(counts.keys) }
            return state.openLabels
        }
        for key in previous.union(counts.keys) {
            registry.makeGauge(descriptor: Self.openDrift, labels: [("controller", key[0]), ("severity", key[1])])
                .set(Double(counts[key] ?? 0))
        }
        registry.makeGauge(descriptor: Self.held, labels: []).set(Double(items.filter { $0.decision == .held }.count))
        registry.makeGauge(descriptor: Self.blocked, labels: []).set(Double(items.filter { $0.decision == .blocked }.count))
    }
}
