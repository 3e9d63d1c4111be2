internal import Foundation

/// Work that blocks its thread (fsync, waiting for a child process) run on a thread of its own
/// rather than on one of Swift's cooperative threads, of which there is one per core: targets
/// worked on in parallel then wait for the disk and for sshd side by side instead of in turn.
/// A call never waits for another to finish: it gets an idle thread of `BlockingThreads`, or a
/// new one. The callers bound how many run at once (the reconciler's parallel targets).
enum Blocking {
    static func run<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            BlockingThreads.shared.run { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// The threads `Blocking.run` runs its work on, kept for the next call once they are done.
///
/// A thread per call cost a `clone3`, a stack mapped and unmapped, and the thread's setup, for
/// every fix: 20,000 threads in a pass of 20,000 resources, about a tenth of its CPU time. Work
/// is handed to a thread waiting idle when there is one, and a new thread is started otherwise,
/// so that no call ever waits behind another (a fix holding a target's lock while sshd runs).
/// A thread idle for `idleLimit` ends, so a daemon starts threads again once per burst of fixes.
final class BlockingThreads: @unchecked Sendable {
    // @unchecked: `jobs`, `idle` and `threads` are read and written only with `condition` locked.
    static let shared = BlockingThreads()

    /// How long a thread waits for work before it ends.
    let idleLimit: TimeInterval

    init(idleLimit: TimeInterval = 10) {
        self.idleLimit = idleLimit
    }

    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    /// Threads waiting for work (some may have been signalled and not yet woken).
    private var idle = 0
    /// Threads alive, idle or working.
    private(set) var threads = 0

    /// Runs `job` on an idle thread, or on a new one when every thread is busy.
    func run(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        let start = jobs.count > idle
        if start { threads += 1 }
        condition.signal()
        condition.unlock()
        guard start else { return }
        let thread = Thread { [self] in work() }
        thread.name = "bulwark-blocking"
        thread.start()
    }

    /// How many threads are alive, and how many of them wait for work (tests).
    var alive: (threads: Int, idle: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (threads, idle)
    }

    private func work() {
        condition.lock()
        while true {
            while jobs.isEmpty {
                idle += 1
                let signalled = condition.wait(until: Date(timeIntervalSinceNow: idleLimit))
                idle -= 1
                if !signalled, jobs.isEmpty {
                    threads -= 1
                    condition.unlock()
                    return
                }
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
            condition.lock()
        }
    }
}
