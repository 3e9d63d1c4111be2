internal import Synchronization

/// Work done once per pass rather than once per resource: `Reconciler.apply` runs each pass in a
/// fresh scope, and a driver that would otherwise repeat the same preparation for every resource
/// of a target (apt's `apt-get update` before each package of a root) asks
/// `PassScope.current?.once(key) { … }`. The first caller of a key runs the work; the others
/// of the same pass wait for it and get its outcome, failure included, so a broken source costs
/// one attempt a pass and not one per resource. Outside a pass (a driver called directly) there
/// is no scope and the work runs every time.
public final class PassScope: Sendable {
    @TaskLocal public static var current: PassScope?

    private let work = Mutex<[String: Task<Void, any Error>]>([:])

    public init() {}

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
