package import BulwarkCore
import Foundation

/// Intents a killed controller replica left open on shared targets. By the time it is back, the
/// target's lease has passed to another replica, which re-observed the target and fixed whatever
/// was still drifted (and recorded it on its own ref). Observing now could not tell this
/// replica's change from the other's, so such an intent is recorded `interrupted`, never
/// `verified`: a fix is claimed once, by the replica that holds the lease when it verifies.
package enum LeaseRecovery {
    /// Records and closes the open intents on `shared` targets; the others are left for the
    /// core's recovery. Returns how many were recorded.
    package static func resolve(journal: some IntentJournal, shared: Set<String>, audit: some AuditSink,
                                replica: String) async throws -> Int {
        var recorded = 0
        for var record in try await journal.openIntents() where shared.contains(record.target) {
            if try await !audit.contains(recordID: record.id) {
                record.result = .interrupted
                record.error = "replica \(replica) stopped during this fix; the lease on \(record.target) passed to another "
                    + "replica, which observed it again: its records (bulwark/audit-replicas/…) say what was done"
                record.verifiedAt = nil
                _ = try await audit.write(record)
                recorded += 1
            }
            try await journal.end(record.id)
        }
        return recorded
    }
}
