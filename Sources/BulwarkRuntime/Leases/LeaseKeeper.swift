package import BulwarkCore
import Crypto
import Foundation
package import Logging
import Synchronization

/// Where leases are kept (PostgreSQL: `PostgresLeaseStore`). Times are the store's own. A holder
/// is one process (`ReplicaIdentity`: name and nonce), never just a name.
package protocol LeaseStore: Sendable {
    /// Announces `replica` as live; returns the other process's live heartbeat (writing nothing)
    /// when another process already holds that name.
    func heartbeat(_ replica: ReplicaIdentity, ttl: Duration) async throws -> ReplicaHeartbeat?
    func liveReplicas() async throws -> [String]
    /// The fencing token when `holder` now holds `target` (taken or renewed), nil when another live replica does.
    func acquire(_ target: String, holder: ReplicaIdentity, ttl: Duration) async throws -> Int64?
    func release(_ target: String, holder: ReplicaIdentity) async throws
    func holds(_ target: String, holder: ReplicaIdentity, token: Int64) async throws -> Bool
    func leave(_ replica: ReplicaIdentity) async throws
    /// Closes the connection (before the process exits).
    func close() async
}

/// One controller replica's leases: which of the shared targets it owns now, and the check made
/// right before each change (fencing).
///
/// Sharding: every replica computes the same owner for a target, the live replica with the
/// highest hash of (target, replica) (rendezvous hashing), and only tries to take the targets it
/// should own; it gives up those it should no longer own, but not while a pass is changing them
/// (`beginPass` to `endPass`): those it keeps renewing, and gives up when the pass ends. When a
/// replica dies, its heartbeat and leases expire within `ttl`, the others stop counting it, and
/// its targets go to them. A replica acts on a target only while `holds` confirms, right before
/// the change, that its token is still the target's current, unexpired one: a replica that was
/// paused past its lease (a long GC, a stopped VM) and lost the target stops before acting.
///
/// A name is one process's at a time: a second process under a name whose heartbeat is live
/// (a cloned VM, the same `--replica` on two machines) is refused by `join`, and a process whose
/// name another process took while it was paused past its heartbeat holds nothing from then on
/// (`displaced`).
package final class LeaseKeeper: Sendable {
    package let identity: ReplicaIdentity
    /// This replica's name (its audit ref, its share of the targets).
    package var replica: String { identity.name }
    package let ttl: Duration
    private let store: any LeaseStore
    private let logger: Logger
    private struct State {
        var candidates: Set<String> = []
        var held: [String: Int64] = [:]
        /// The tokens the pass in flight was planned under (`beginPass`).
        var pass: [String: Int64] = [:]
        /// The targets a pass is working on now (`beginPass` to `endPass`): not given up meanwhile.
        var inFlight: Set<String> = []
        var live: [String] = []
        /// Targets taken since the last `takeNewlyHeld` (their previous owner's records are to be read).
        var newlyHeld: Set<String> = []
        /// Set when another process holds this replica's name: nothing is held from then on.
        var displaced: ReplicaNameInUse?
    }
    private let state = Mutex(State())

    package init(identity: ReplicaIdentity, ttl: Duration, store: any LeaseStore, logger: Logger) {
        self.identity = identity
        self.ttl = ttl
        self.store = store
        self.logger = logger
    }

    /// A keeper for `replica` in this process (a fresh nonce).
    package convenience init(replica: String, ttl: Duration, store: any LeaseStore, logger: Logger) {
        self.init(identity: .thisProcess(name: replica), ttl: ttl, store: store, logger: logger)
    }

    /// The targets shared among replicas (the revision's non-host targets).
    package func setCandidates(_ targets: Set<String>) {
        state.withLock { $0.candidates = targets }
    }

    /// The targets held now, with their tokens.
    package func held() -> [String: Int64] { state.withLock { $0.held } }

    /// Set when another live process holds this replica's name (this one then holds nothing).
    package var displaced: ReplicaNameInUse? { state.withLock { $0.displaced } }

    /// At start, before any round: announces this process under its name, and throws
    /// `ReplicaNameInUse` when another live process already has it. A lease store that cannot be
    /// reached is not a refusal (the rounds try again and hold nothing meanwhile).
    package func join() async throws {
        let other: ReplicaHeartbeat?
        do {
            other = try await store.heartbeat(identity, ttl: ttl)
        } catch {
            logger.warning("the lease store cannot be reached: no shared target is changed until it can",
                           metadata: ["error": .string("\(error)")])
            return
        }
        if let other { throw ReplicaNameInUse(replica: identity, other: other) }
    }

    /// Starts a pass over `targets`: the targets held now, whose tokens the pass's changes are
    /// checked against (a lease lost and taken again meanwhile has a new token, and the pass stops
    /// on it). Until `endPass`, none of `targets` is given up, even if it moves to another replica.
    package func beginPass(over targets: Set<String>) -> [String: Int64] {
        state.withLock {
            $0.pass = $0.held
            $0.inFlight = targets.intersection($0.held.keys)
            return $0.held
        }
    }

    /// Ends the pass: the targets it kept that this replica no longer owns are given up now, so
    /// that their new owner takes them at its next round.
    package func endPass() async {
        let identity = identity
        let gone: [String] = state.withLock { state in
            state.inFlight = []
            let gone = state.held.keys.filter { !Self.owns($0, identity.name, state) }.sorted()
            for target in gone { state.held[target] = nil }
            return gone
        }
        for target in gone {
            do { try await store.release(target, holder: identity) } catch {
                logger.warning("cannot give a lease up after the pass; it expires within the TTL",
                               metadata: ["target": .string(target), "error": .string("\(error)")])
            }
        }
        if !gone.isEmpty {
            logger.info("leases given up after the pass", metadata: ["replica": .string(replica), "released": .string(gone.joined(separator: ","))])
        }
    }

    private static func owns(_ target: String, _ replica: String, _ state: State) -> Bool {
        state.candidates.contains(target) && owner(of: target, among: state.live) == replica
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

    /// One round: heartbeat, then take or renew the targets this replica should own, renew those
    /// it should no longer own while a pass is changing them, and give up the others. Returns the
    /// targets newly taken (to be reconciled at once). When the store cannot be reached, or
    /// another process holds this replica's name, nothing is held from then on: no change is made
    /// without a lease.
    @discardableResult
    package func round() async -> Set<String> {
        let identity = identity
        let (candidates, before) = state.withLock { ($0.candidates, $0.held) }
        do {
            if let other = try await store.heartbeat(identity, ttl: ttl) {
                let error = ReplicaNameInUse(replica: identity, other: other)
                state.withLock {
                    $0.held = [:]
                    $0.displaced = error
                }
                logger.error("\(error)")
                return []
            }
            var live = try await store.liveReplicas()
            if !live.contains(replica) { live.append(replica) }
            var held: [String: Int64] = [:]
            for target in candidates.sorted() where Self.owner(of: target, among: live) == replica {
                if let token = try await store.acquire(target, holder: identity, ttl: ttl) { held[target] = token }
            }
            // Held, no longer this replica's, and a pass is changing it: renewed until the pass ends.
            var lost: Set<String> = []
            for target in before.keys.sorted() where held[target] == nil && state.withLock({ $0.inFlight.contains(target) }) {
                if let token = try await store.acquire(target, holder: identity, ttl: ttl) { held[target] = token } else { lost.insert(target) }
            }
            let renewed = held
            let taken = Set(held.keys).subtracting(before.keys)
            // Decided under the lock with the pass: a pass that begins after this sees none of the
            // targets given up here; one that began before keeps its targets held.
            let (released, kept) = state.withLock { state -> ([String], [String]) in
                state.live = live
                state.held = renewed
                for (target, token) in before where renewed[target] == nil && !lost.contains(target) && state.inFlight.contains(target) {
                    state.held[target] = token
                }
                let released = Set(before.keys).union(renewed.keys).filter { target in
                    state.held[target] == nil || (!Self.owns(target, identity.name, state) && !state.inFlight.contains(target))
                }.subtracting(lost).sorted()
                for target in released { state.held[target] = nil }
                state.newlyHeld.formUnion(taken.intersection(state.held.keys))
                return (released, state.held.keys.filter { !Self.owns($0, identity.name, state) }.sorted())
            }
            for target in released { try await store.release(target, holder: identity) }
            let now = state.withLock { $0.held }
            if !taken.isEmpty || now.count != before.count || !kept.isEmpty {
                logger.info("leases", metadata: ["replica": .string(replica), "held": .string(now.keys.sorted().joined(separator: ",")),
                                                 "live": .string(live.joined(separator: ",")),
                                                 "keptForThePassInFlight": .string(kept.joined(separator: ","))])
            }
            return taken.intersection(now.keys)
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
            holds = try await store.holds(target, holder: identity, token: token)
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

    /// Closes the store's connection without giving anything up (a process refused at `join`).
    package func close() async {
        await store.close()
    }

    /// Gives every lease up (a graceful stop), so that the other replicas take over at once.
    package func leave() async {
        state.withLock {
            $0.held = [:]
            $0.pass = [:]
            $0.inFlight = []
        }
        do { try await store.leave(identity) } catch {
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

/// A second process under a replica name whose heartbeat is live: two processes under one name
/// would both hold every lease of that name and push to the same audit ref, so the second is
/// refused (`bulwark run` exits 3).
package struct ReplicaNameInUse: Error, CustomStringConvertible {
    package var replica: ReplicaIdentity
    package var other: ReplicaHeartbeat

    package var description: String {
        let seconds = Double(other.expiresIn.components.seconds) + Double(other.expiresIn.components.attoseconds) / 1e18
        let at = other.expiresAt.formatted(.iso8601)
        return "another live replica is already named '\(quotedForMessage(replica.name))' (\(quotedForMessage(other.process.isEmpty ? "an older Bulwark" : other.process))); "
            + "its heartbeat expires at \(at) (in \(String(format: "%.1f", seconds)) s) unless it renews it. Two processes under one name "
            + "would both change the same targets: give each replica its own --replica name (a cloned VM or state directory "
            + "carries the same instance name), or, if that replica is gone, start this one again after its heartbeat expires"
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
