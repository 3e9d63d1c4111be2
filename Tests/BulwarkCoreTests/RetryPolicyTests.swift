import BulwarkCore
import BulwarkTestSupport
import Synchronization
import Testing

/// The one retry policy (AWS client, outbox, scheduler), driven by a clock the test advances: it
/// sleeps by moving the test's instant, so no test waits and nothing depends on timing.
@Suite struct RetryPolicyTests {
    struct Failure: Error, Equatable { var attempt: Int; var retryable = true }

    /// A monotonic clock the policy reads and "sleeps" on: each sleep moves it and is recorded.
    final class TestClock: Sendable {
        let start = ContinuousClock.now
        private let state = Mutex<(offset: Duration, sleeps: [Duration])>((.zero, []))
        var now: ContinuousClock.Instant { start + state.withLock { $0.offset } }
        var sleeps: [Duration] { state.withLock { $0.sleeps } }
        func sleep(_ duration: Duration) { state.withLock { $0.offset += duration; $0.sleeps.append(duration) } }
    }

    @Test func theWaitDoublesFromTheBaseUpToTheCapAndAHugeCountDoesNotOverflow() {
        let policy = RetryPolicy(base: .seconds(5), cap: .seconds(60))
        #expect((1...6).map { policy.delay(afterFailure: $0) } == [5, 10, 20, 40, 60, 60].map { Duration.seconds($0) })
        #expect(policy.delay(afterFailure: Int.max) == .seconds(60))
        #expect(policy.delay(afterFailure: 0) == .seconds(5), "a count below one is the first failure")
        #expect(RetryPolicy(base: .seconds(5), cap: .seconds(2)).delay(afterFailure: 1) == .seconds(2), "the cap wins over the base")
    }

    @Test func fullJitterWaitsAtRandomBetweenZeroAndTheDoubledWait() {
        let policy = RetryPolicy(base: .milliseconds(200), cap: .seconds(20), jitter: .full)
        var random = SeededGenerator(seed: 20261201)
        for failures in 1...5 {
            let ceiling = Duration.milliseconds(200) * (1 << (failures - 1))
            let waits = (0..<200).map { _ in policy.delay(afterFailure: failures, using: &random) }
            #expect(waits.allSatisfy { $0 >= .zero && $0 <= ceiling }, "after \(failures) failures")
            #expect(Set(waits).count > 100, "the waits spread out")
            #expect(waits.contains { $0 < ceiling / 2 } && waits.contains { $0 > ceiling / 2 })
        }
    }

    @Test func runRetriesWithTheDoubledWaitsUntilTheOperationSucceeds() async throws {
        let clock = TestClock()
        let policy = RetryPolicy(base: .milliseconds(250), cap: .seconds(8))
        let result = try await policy.run(now: { clock.now }, sleep: { clock.sleep($0) }) { (attempt: Int) throws(Failure) -> Int in
            guard attempt == 4 else { throw Failure(attempt: attempt) }
            return attempt
        }
        #expect(result == 4)
        #expect(clock.sleeps == [.milliseconds(250), .milliseconds(500), .seconds(1)])
    }

    @Test func runStopsAfterItsAttemptsAndThrowsTheLastError() async {
        let clock = TestClock()
        let policy = RetryPolicy(base: .milliseconds(200), cap: .seconds(20), maxAttempts: 4, jitter: .full)
        await #expect(throws: Failure(attempt: 4)) {
            try await policy.run(now: { clock.now }, sleep: { clock.sleep($0) }) { (attempt: Int) throws(Failure) in
                throw Failure(attempt: attempt)
            }
        }
        #expect(clock.sleeps.count == 3, "three waits between four attempts")
    }

    @Test func runDoesNotStartAWaitThatWouldEndPastTheDeadline() async {
        let clock = TestClock()
        let policy = RetryPolicy(base: .seconds(1), cap: .seconds(60))
        // Waits of 1, 2 and 4 s end at 1, 3 and 7 s; the next (8 s) would end at 15 s, past 10 s.
        await #expect(throws: Failure(attempt: 4)) {
            try await policy.run(now: { clock.now }, sleep: { clock.sleep($0) }, deadline: clock.start + .seconds(10)) {
                (attempt: Int) throws(Failure) in throw Failure(attempt: attempt)
            }
        }
        #expect(clock.sleeps == [.seconds(1), .seconds(2), .seconds(4)])
    }

    @Test func anErrorThatIsNotRetryableEndsAtOnce() async {
        let clock = TestClock()
        let policy = RetryPolicy(base: .seconds(1), cap: .seconds(60), maxAttempts: 10)
        await #expect(throws: Failure(attempt: 1, retryable: false)) {
            try await policy.run(now: { clock.now }, sleep: { clock.sleep($0) }, retryable: { (error: Failure) in error.retryable }) {
                (attempt: Int) throws(Failure) in throw Failure(attempt: attempt, retryable: false)
            }
        }
        #expect(clock.sleeps.isEmpty)
    }
}
