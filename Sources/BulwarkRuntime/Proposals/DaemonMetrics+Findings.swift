import BulwarkCore
package import Foundation
package import Prometheus

extension DaemonMetrics {
    package static var findingsReceived: MetricNameDescriptor { family("bulwark_findings", "total",
                                         "Scanner findings received, by priority and what became of them") }
    package static var slaBreaches: MetricNameDescriptor { family("bulwark_finding_sla_breaches", "total",
                                   "Findings reported again while still open past their priority's remediation SLA, by priority") }

    /// The outcomes counted (bounded labels: priorities and `IntakeReport` outcomes).
    static let findingOutcomes: Set<String> = ["reconcile", "proposed", "merged", "already-proposed", "already-in-policy", "closed",
                                              "not-proposed", "nothing", "reopened"]

    package func findings(_ report: IntakeReport, now: Date = Date()) {
        for item in report.items {
            let outcome = Self.findingOutcomes.contains(item.outcome) ? item.outcome : "other"
            registry.makeCounter(descriptor: Self.findingsReceived, labels: [("priority", item.priority.rawValue), ("outcome", outcome)])
                .increment()
            if item.isOpenPastSLA(now: now) {
                registry.makeCounter(descriptor: Self.slaBreaches, labels: [("priority", item.priority.rawValue)]).increment()
            }
        }
    }
}
