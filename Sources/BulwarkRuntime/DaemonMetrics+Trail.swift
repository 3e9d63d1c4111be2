package import Prometheus

extension DaemonMetrics {
    package static var auditTampering: MetricNameDescriptor {
        family("bulwark_audit_tampering", "total",
               "Times the origin's audit branch no longer held the last audit commit this Bulwark pushed (rewritten or deleted)")
    }

    package func auditTampered() {
        registry.makeCounter(descriptor: Self.auditTampering, labels: []).increment()
    }
}
