internal import Foundation
internal import Logging

extension Daemon {
    /// A replica took `targets` over: it fetches the other replicas' audit refs and reads the
    /// flap breaker's history again, so that fixes the previous lease owner made count (a drift
    /// fixed twice by one replica and once by the next is fixed three times). When the origin
    /// cannot be reached, the refs fetched before are read, and the problem is logged.
    func readPreviousOwners(of targets: Set<String>) async {
        do {
            try await repository.fetchPeerReplicas()
        } catch {
            logger.warning("cannot fetch the other replicas' audit refs; the flap breaker counts the fixes fetched before",
                           metadata: ["targets": .string(targets.sorted().joined(separator: ",")), "error": .string("\(error)")])
        }
        flapHistory.invalidate()
    }
}
