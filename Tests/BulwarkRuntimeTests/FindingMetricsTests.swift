@testable import BulwarkRuntime
import BulwarkCore
import Prometheus
import Testing

@Suite struct FindingMetricsTests {
    /// `bulwark_findings_total{outcome="reopened"}` is its own series, not `other`; a finding still
    /// waiting on its accepted proposal stays `already-proposed`.
    @Test func reopenedFindingsAreCountedInTheirOwnMetricSeries() {
        let registry = PrometheusCollectorRegistry()
        let meters = DaemonMetrics(registry: registry)
        func item(_ id: String, _ outcome: String) -> IntakeReport.Item {
            IntakeReport.Item(id: id, source: "ocsf", control: "c", resource: "local", severity: .medium, priority: .p4, score: 2,
                              firstSeen: "2026-11-01T00:00:00Z", slaDeadline: "2099-01-01T00:00:00Z", rule: "r", action: "propose",
                              outcome: outcome, detail: nil, branch: nil, commit: nil, reconciled: [])
        }
        let report = IntakeReport(format: "ocsf", findings: 2, items: [item("a", "reopened"), item("b", "already-proposed")])
        #expect(report.hasActions, "a reopened finding is exit 2 for ingest")
        #expect(!IntakeReport(format: "ocsf", findings: 1, items: [item("b", "already-proposed")]).hasActions)
        meters.findings(report)
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        let series = text.split(separator: "\n").filter { $0.hasPrefix("bulwark_findings_total{") }
        #expect(series.contains { $0.contains("outcome=\"reopened\"") && $0.hasSuffix(" 1") }, "\(series)")
        #expect(series.contains { $0.contains("outcome=\"already-proposed\"") && $0.hasSuffix(" 1") }, "\(series)")
        #expect(!series.contains { $0.contains("outcome=\"other\"") }, "\(series)")
    }
}
