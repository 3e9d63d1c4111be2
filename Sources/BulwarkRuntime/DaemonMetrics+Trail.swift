package import Prometheus

extension DaemonMetrics {
    package static var auditTampering: MetricNameDescriptor {
        family("bulwark_audit_tampering", "total",
               "Times the origin's audit branch no longer held the last audit commit this Bulwark pushed (rewritten or deleted)")
    }

    package func auditTampered() {
        registry.makeCounter(descriptor: Self.auditTampering, labels: []).increment()
    }

    package static var auditDiverted: MetricNameDescriptor {
        family("bulwark_audit_diverted", "",
               "1 while audit records go to a recovery branch because the origin's audit branch lost records this Bulwark pushed")
    }

    package func setAuditDiverted(_ diverted: Bool) {
        registry.makeGauge(descriptor: Self.auditDiverted, labels: []).set(Double(diverted ? 1 : 0))
    }
}

extension DaemonMetrics {
    package static var unpushedAuditCommits: MetricNameDescriptor {
        family("bulwark_unpushed_audit_commits", "", "Audit commits kept locally because the push to the origin failed")
    }

    package static var sourceFetchFailures: MetricNameDescriptor {
        family("bulwark_source_fetch_failures", "total", "Fetches of the policy origin that failed (the last fetched revision stays in force)")
    }

    /// All exist at 0 from the start (`init`).
    func startTrail() {
        _ = registry.makeGauge(descriptor: Self.unpushedAuditCommits, labels: [])
        _ = registry.makeCounter(descriptor: Self.sourceFetchFailures, labels: [])
        _ = registry.makeGauge(descriptor: Self.auditDiverted, labels: [])
    }

    package func setUnpushed(_ commits: Int) {
        registry.makeGauge(descriptor: Self.unpushedAuditCommits, labels: []).set(Double(commits))
    }

    package func sourceFetchFailed() {
        registry.makeCounter(descriptor: Self.sourceFetchFailures, labels: []).increment()
    }
}
