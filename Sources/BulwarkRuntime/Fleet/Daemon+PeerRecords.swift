internal import BulwarkGit
import BulwarkCore
import Foundation
internal import Logging

extension Daemon {
    /// The verified fixes since `start` for the flap breaker, read from the audit branch and,
    /// for a controller replica, the other replicas' refs. With trusted signers or a keyring
    /// configured, a peer's record counts only when a trusted key signed it
    /// (`PeerRecordVerification`); each one left out is logged once and counted in
    /// `bulwark_peer_records_rejected_total{reason}`.
    func readFlapHistory(since start: Date) async throws -> FixHistory {
        let history = try await repository.recentFixes(since: start, peers: PeerRecordVerification(options.sourceVerification))
        for rejection in await repository.takePeerRejections() {
            logger.warning("a record is not counted by the flap breaker: no trusted key signed it",
                           metadata: ["ref": .string(rejection.ref), "record": .string(rejection.record),
                                      "commit": .string(rejection.commit.short), "reason": .string(rejection.reason),
                                      "detail": .string(rejection.detail)])
            meters.peerRecordRejected(reason: rejection.reason)
        }
        return history
    }
}
