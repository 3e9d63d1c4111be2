internal import Synchronization

/// Work done once per pass rather than once per resource: `Reconciler.apply` runs each pass in a
/// fresh scope, and a driver that would otherwise repeat the same preparation for every resource
/// of a target (apt's `apt-get update` before each package of a root) asks
/// `PassScope.current?.once(key) { … }`. The first caller of a key runs the work; the others
/// of the same pass wait for it and get its outcome, failure included, so a broken source costs
/// one attempt a pass and not one per resource. Outside a pass (a driver called directly) there
/// is no scope and the work runs every time. Work that runs where it cannot wait for a task (a
/// fix under a target's lock, on a thread of its own) keeps what it must share in a `slot`.
public final class PassScope: Sendable {
    @TaskLocal public static var current: PassScope?

    private let work = Mutex<[String: Task<Void, any Error>]>([:])
    private let slots = ScopeSlots()

    public init() {}

    /// The object of type `Value` this pass keeps (what its `ConfigFile` writes and reloads did),
    /// made by `make` on first use; released with the pass. As `ObservationScope.slot`.
    public func slot<Value: AnyObject & Sendable>(_ make: () -> Value) -> Value { slots.slot(make) }

    /// Runs `body` the first time `key` is asked for in this pass; later calls wait for that run
    /// and rethrow its error.
    public func once(_ key: String, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let task = work.withLock { tasks in
            if let running = tasks[key] { return running }
            let task = Task { try await body() }
            tasks[key] = task
            return task
        }
        try await task.value
    }
}

/// The desired state a plan or a pass works from, for a driver whose reading of one resource
/// depends on the policy's other resources: a `ConfigFile` reload left owed by a resource the
/// policy no longer has (renamed, and its command changed, at once) is owed by every resource
/// of that file that reloads it now. `Reconciler` sets it around its observations and fixes; a
/// driver called without it reads each resource alone.
public enum PolicyScope {
    @TaskLocal public static var current: DesiredState?
}

/// One plan's reads of the targets: `Reconciler.plan` runs its observations and guards in a
/// fresh scope, and so do the verifications of one coalesced write (after the write). Within a
/// scope the targets read as one snapshot: a parse of a file changed a moment ago (too recently
/// to be sure a later same-size rewrite would move its identity) may be reused within the scope
/// that read it, and a host target's root and files are looked up once (`PlanReads`); never
/// by another scope, a fix under the target's lock, or a later pass.
public final class ObservationScope: Sendable {
    @TaskLocal public static var current: ObservationScope?

    private static let counter = Atomic<UInt64>(0)

    /// Unique for the process's life.
    public let id: UInt64

    /// What modules keep for this scope's life, one object per type (`slot`).
    private let slots = ScopeSlots()

    public init() {
        id = Self.counter.add(1, ordering: .relaxed).newValue
    }

    /// The object of type `Value` this scope keeps (the host adapter's open target roots),
    /// made by `make` on first use; released with the scope, when the plan is done. `make` runs
    /// under the scope's lock: it must not ask for a slot itself.
    public func slot<Value: AnyObject & Sendable>(_ make: () -> Value) -> Value { slots.slot(make) }
}

/// What modules keep for one scope's life (a pass, a plan), one object per type: the one store
/// behind `PassScope.slot` and `ObservationScope.slot`.
final class ScopeSlots: Sendable {
    private let slots = Mutex<[ObjectIdentifier: any AnyObject & Sendable]>([:])

    /// The object of type `Value` kept, made by `make` on first use, under the lock: `make`
    /// must not ask for a slot itself.
    func slot<Value: AnyObject & Sendable>(_ make: () -> Value) -> Value {
        slots.withLock { slots in
            if let kept = slots[ObjectIdentifier(Value.self)] { return unsafeDowncast(kept, to: Value.self) }
            let value = make()
            slots[ObjectIdentifier(Value.self)] = value
            return value
        }
    }
}

/// The identities a pass's plan saw its targets' exclusive claims as (`Plan.targetIdentities`),
/// set by `Reconciler.apply` around its fixes: a driver that writes through a name that can be
/// bound to something else meanwhile (`/run/netns/NAME`) checks, right before the write, that it
/// still names what was planned against. `revert` sets its target's, read before it observes.
/// Nil outside a pass (a driver called directly).
public enum PlannedTargets {
    @TaskLocal public static var identities: [String: String]?
}
