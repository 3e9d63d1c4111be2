package import BulwarkCore
import Crypto
import Foundation
package import Logging
import Synchronization

/// Where leases are kept (PostgreSQL: `PostgresLeaseStore`). Times are the store's own.
package protocol LeaseStore: Sendable {
    func heartbeat(_ replica: String, ttl: Duration) async throws
    func liveReplicas() async throws -> [String]
    /// The fencing token when `holder` now holds `target` (taken or renewed), nil when another live replica does.
    func acquire(_ target: String, holder: String, ttl: Duration) async throws -> Int64?
    func release(_ target: String, holder: String) async throws
    func holds(_ target: String, holder: String, token: Int64) async throws -> Bool
    func leave(_ replica: String) async throws
    /// Closes the connection (before the process exits).
    func close() async
}

/// One controller replica's leases: which of the shared targets it owns now, and the check made
/// right before each change (fencing).
///
/// Sharding: every replica computes the same owner for a target, the live replica with the
/// highest hash of (target, replica) (rendezvous hashing), and only tries to take the targets it
/// should own; it gives up those it should no longer own. When a replica dies, its heartbeat and
/// leases expire within `ttl`, the others stop counting it, and its targets go to them. A replica
/// acts on a target only while `holds` confirms, right before the change, that its token is
/// still the target's current, unexpired one: a replica that was paused past its lease (a long
/// GC, a stopped VM) and lost the target stops before acting.
package final class LeaseKeeper: Sendable {
    package let replica: String
    package let ttl: Duration
    private let store: any LeaseStore
    private let logger: Logger
    private struct State {
        var candidates: Set<String> = []
        var held: [String: Int64] = [:]
        /// The tokens the pass in flight was planned under (`beginPass`).
        var pass: [String: Int64] = [:]
        var live: [String] = []
        /// Targets taken since the last `takeNewlyHeld` (their previous owner's records are to be read).
        var newlyHeld: Set<String> = []
    }
    private let state = Mutex(State())

    package init(replica: String, ttl: Duration, store: any LeaseStore, logger: Logger) {
        self.replica = replica
        self.ttl = ttl
        self.store = store
        self.logger = logger
    }

    /// The targets shared among replicas (the revision's non-host targets).
    package func setCandidates(_ targets: Set<String>) {
        state.withLock { $0.candidates = targets }
    }

    /// The targets held now, with their tokens.
    package func held() -> [String: Int64] { state.withLock { $0.held } }

    /// Starts a pass: the targets held now, whose tokens the pass's changes are checked against
    /// (a lease lost and taken again meanwhile has a new token, and the pass stops on it).
    package func beginPass() -> [String: Int64] {
        state.withLock {
            $0.pass = $0.held
            return $0.held
        }
    }

    /// The targets taken since the last call (at start, every target taken), once: the pass
    /// that follows reads their previous owners' records first, for the flap breaker.
    package func takeNewlyHeld() -> Set<String> {
        state.withLock { state in
            defer { state.newlyHeld = [] }
            return state.newlyHeld.intersection(state.held.keys)
        }
    }

    /// `Bulwark-Lease: <target> <token>` for a record of a target of the pass in flight; nil for any other.
    package func trailer(for target: String) -> String? {
        state.withLock { $0.pass[target] }.map { "\(AuditTrailer.lease.rawValue): \(target) \($0)\n" }
    }

    /// The owner rendezvous hashing gives `target` among `replicas`.
    package static func owner(of target: String, among replicas: [String]) -> String? {
        replicas.max { score(target, $0) < score(target, $1) || (score(target, $0) == score(target, $1) && $0 > $1) }
    }

    private static func score(_ target: String, _ replica: String) -> UInt64 {
        let digest = SHA256.hash(data: Array((target + "\u{0}" + replica).utf8))
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// One round: heartbeat, then take or renew the targets this replica should own, and give up
    /// the others. Returns the targets newly taken (to be reconciled at once). When the store
    /// cannot be reached, nothing is held from then on: no change is made without a lease.
    @discardableResult
    package func round() async -> Set<String> {
        let (candidates, before) = state.withLock { ($0.candidates, $0.held) }
        do {
            try await store.heartbeat(replica, ttl: ttl)
            var live = try await store.liveReplicas()
            if !live.contains(replica) { live.append(replica) }
            var held: [String: Int64] = [:]
            for target in candidates.sorted() {
                if Self.owner(of: target, among: live) == replica {
                    if let token = try await store.acquire(target, holder: replica, ttl: ttl) { held[target] = token }
                } else if before[target] != nil {
                    try await store.release(target, holder: replica)
                }
            }
            for target in before.keys where !candidates.contains(target) { try await store.release(target, holder: replica) }
            let finalHeld = held
            let taken = Set(held.keys).subtracting(before.keys)
            state.withLock {
                $0.held = finalHeld
                $0.live = live
                $0.newlyHeld.formUnion(taken)
            }
            if !taken.isEmpty || held.count != before.count {
                logger.info("leases", metadata: ["replica": .string(replica), "held": .string(held.keys.sorted().joined(separator: ",")),
                                                 "live": .string(live.joined(separator: ","))])
            }
            return taken
        } catch {
            state.withLock { $0.held = [:] }
            logger.error("the lease store cannot be reached: no shared target is changed until it can",
                         metadata: ["error": .string("\(error)")])
            return []
        }
    }

    /// Right before a change to `target`: throws unless this replica still holds it with the token
    /// the pass was planned under (`beginPass`). Targets that are not shared pass.
    package func check(_ target: String) async throws {
        let (shared, token) = state.withLock { ($0.candidates.contains(target), $0.pass[target]) }
        guard shared else { return }
        guard let token else { throw LeaseLost(target: target, replica: replica, reason: "it holds no lease on it") }
        let holds: Bool
        do {
            holds = try await store.holds(target, holder: replica, token: token)
        } catch {
            throw LeaseLost(target: target, replica: replica, reason: "the lease store cannot confirm the lease (\(error))")
        }
        guard holds else {
            // Forget the lease only if it is the one that failed: a pass planned under an old token
            // must not make the replica drop the lease it has since taken again under a new one.
            state.withLock { if $0.held[target] == token { _ = $0.held.removeValue(forKey: target) } }
            throw LeaseLost(target: target, replica: replica, reason: "its lease (token \(token), which the pass was planned under) expired or was taken over")
        }
    }

    /// Gives every lease up (a graceful stop), so that the other replicas take over at once.
    package func leave() async {
        state.withLock {
            $0.held = [:]
            $0.pass = [:]
        }
        do { try await store.leave(replica) } catch {
            logger.warning("cannot give the leases up; they expire within the TTL", metadata: ["error": .string("\(error)")])
        }
        await store.close()
    }
}

/// A change refused because this replica no longer holds the target's lease.
package struct LeaseLost: Error, CustomStringConvertible {
    package var target: String
    package var replica: String
    package var reason: String
    package var description: String {
        "replica \(replica) stopped before changing \(target): \(reason)"
    }
}

/// The intent journal, with the lease checked before each intent: no change to a shared target
/// is begun unless this replica holds its lease right then. A failed check throws, and the core
/// then makes no further change in the pass.
package struct LeaseFencedJournal<Base: IntentJournal>: IntentJournal {
    package let base: Base
    package let leases: LeaseKeeper?

    package init(base: Base, leases: LeaseKeeper?) {
        self.base = base
        self.leases = leases
    }

    package func begin(_ record: AuditRecord) async throws {
        try await leases?.check(record.target)
        try await base.begin(record)
    }

    package func begin(_ records: [AuditRecord]) async throws {
        for target in Set(records.map(\.target)).sorted() { try await leases?.check(target) }
        try await base.begin(records)
    }

    package func end(_ id: String) async throws { try await base.end(id) }
    package func openIntents() async throws -> [AuditRecord] { try await base.openIntents() }
    /// With leases, each step's intents right before its change: the lease is checked then.
    package var intentsAhead: Int { leases == nil ? base.intentsAhead : 1 }
    package func trying(_ ids: [String]) async throws { try await base.trying(ids) }
    package func untriedIntents() async throws -> Set<String> { try await base.untriedIntents() }
}
