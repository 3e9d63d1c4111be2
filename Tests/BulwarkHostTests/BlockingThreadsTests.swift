@testable import BulwarkHost
import Foundation
import Synchronization
import Testing

/// The threads blocking work runs on: reused, and never one call waiting behind another.
@Suite struct BlockingThreadsTests {
    /// Calls one after another run on the threads of the ones before (a thread per call started
    /// 20,000 threads in a pass of 20,000 resources).
    @Test func callsInTurnReuseTheirThreads() async throws {
        // Idle threads never end here: a loaded machine may take long between two calls.
        let threads = BlockingThreads(idleLimit: 3600)
        let names = Shared<Set<UInt64>>([])
        for n in 0..<50 {
            let answer: Int = try await withCheckedThrowingContinuation { continuation in
                threads.run {
                    let id = UInt64(pthread_self())
                    names.value.withLock { _ = $0.insert(id) }
                    continuation.resume(returning: n * 2)
                }
            }
            #expect(answer == n * 2)
            // The call is over once its thread waits for work again.
            while threads.alive.idle < threads.alive.threads { try await Task.sleep(for: .milliseconds(1)) }
        }
        #expect(names.value.withLock { $0.count } == 1, "50 calls in turn ran on \(names.value.withLock { $0.count }) threads")
        #expect(threads.alive.threads == 1)
    }

    /// Eight calls that each wait until all eight are running: they can only finish if none
    /// waits for another's thread (a fix holding one target's lock while sshd runs must not hold
    /// up another target's).
    @Test func callsAtOnceEachGetAThread() async throws {
        let threads = BlockingThreads(idleLimit: 3600)
        let running = Shared(0)
        let count = 8
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<count {
                group.addTask {
                    try await withCheckedThrowingContinuation { continuation in
                        threads.run {
                            running.value.withLock { $0 += 1 }
                            let deadline = Date(timeIntervalSinceNow: 300)
                            while running.value.withLock({ $0 }) < count, Date() < deadline { usleep(1000) }
                            continuation.resume(returning: running.value.withLock { $0 } == count)
                        }
                    }
                }
            }
            for try await allRan in group { #expect(allRan) }
        }
        #expect(threads.alive.threads == count)
    }
}

/// A value threads share, in a class so that closures can capture it.
private final class Shared<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
}
