internal import BulwarkCore
internal import Foundation
internal import Metrics
internal import Prometheus
internal import Synchronization

/// The daemon's metrics, through swift-metrics with swift-prometheus as the backend, kept in
/// the daemon's own registry (no process-wide bootstrap) and exposed at `/metrics`.
final class DaemonMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let openLabels = Mutex<Set<[String]>>([])

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400]
            .map { Duration.milliseconds(Int64($0 * 1000)) }
        self.factory = factory
        Counter(label: "bulwark_git_push_failures_total", factory: factory).increment(by: 0)
    }

    func driftDetected(_ remediation: PlannedRemediation) {
        Counter(label: "bulwark_drift_detected_total",
                dimensions: [("controller", remediation.binding.controller), ("kind", remediation.binding.resource.kind),
                             ("severity", remediation.severity.rawValue)], factory: factory).increment()
    }

    func remediation(_ record: AuditRecord) {
        Counter(label: "bulwark_remediations_total",
                dimensions: [("decision", record.decision.rawValue), ("result", record.result?.rawValue ?? "none")],
                factory: factory).increment()
        if record.result == .verified, let detected = Timestamp.parse(record.detectedAt),
           let verified = record.verifiedAt.flatMap(Timestamp.parse) {
            Metrics.Timer(label: "bulwark_remediation_seconds", factory: factory)
                .recordNanoseconds(Int64(max(0, verified.timeIntervalSince(detected)) * 1e9))
        }
    }

    func cycle(controller: String, seconds: Double) {
        Metrics.Timer(label: "bulwark_reconcile_duration_seconds", dimensions: [("controller", controller)], factory: factory)
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    func revision(_ hex: String, active: Bool) {
        Gauge(label: "bulwark_source_revision_info", dimensions: [("revision", hex)], factory: factory).record(active ? 1 : 0)
    }

    func pushFailed() {
        Counter(label: "bulwark_git_push_failures_total", factory: factory).increment()
    }

    /// Open drift by controller and severity; combinations that are gone drop to 0.
    func setOpen(_ items: [(controller: String, severity: String)]) {
        var counts: [[String]: Int] = [:]
        for item in items { counts[[item.controller, item.severity], default: 0] += 1 }
        let previous = openLabels.withLock { labels in
            defer { labels.formUnion(counts.keys) }
            return labels
        }
        for key in previous.union(counts.keys) {
            Gauge(label: "bulwark_open_drift", dimensions: [("controller", key[0]), ("severity", key[1])], factory: factory)
                .record(counts[key] ?? 0)
        }
    }
}
