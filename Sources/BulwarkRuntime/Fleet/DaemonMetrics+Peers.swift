package import Prometheus

extension DaemonMetrics {
    package static var peerRecordsRejected: MetricNameDescriptor {
        family("bulwark_peer_records_rejected", "total",
               "Other replicas' audit records the flap breaker did not count because no trusted key signed them, by reason (unsigned, untrusted)")
    }

    /// A peer replica's record left out of the flap history (`PeerRecordVerification`).
    package func peerRecordRejected(reason: String) {
        let label = ["unsigned", "untrusted"].contains(reason) ? reason : "untrusted"
        registry.makeCounter(descriptor: Self.peerRecordsRejected, labels: [("reason", label)]).increment()
    }
}
