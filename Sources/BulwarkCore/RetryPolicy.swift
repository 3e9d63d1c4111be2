/// When to try again after a failure: the one retry policy of the AWS client, the notification
/// outbox and the daemon's scheduler. The wait doubles per failure from `base` up to `cap`, with
/// full jitter (a uniformly random wait up to that) or none; an attempt limit and a deadline, both
/// on the monotonic clock, end the retries. A pure value: `run` takes its clock and its sleep, so
/// a test drives it with instants it makes.
public struct RetryPolicy: Sendable, Hashable {
    public enum Jitter: Sendable, Hashable {
        /// Exactly the doubled wait (the scheduler: a person reads the next run time).
        case none
        /// A uniformly random wait between zero and the doubled wait (AWS's advice for throttling).
        case full
    }

    public var base: Duration
    public var cap: Duration
    /// Attempts in all, the first included; nil: until the deadline.
    public var maxAttempts: Int?
    public var jitter: Jitter

    public init(base: Duration, cap: Duration, maxAttempts: Int? = nil, jitter: Jitter = .none) {
        self.base = base
        self.cap = cap
        self.maxAttempts = maxAttempts
        self.jitter = jitter
    }

    /// The wait after the `failures`-th failure in a row (1: after the first): `base · 2^(failures − 1)`,
    /// at most `cap`, never negative; with full jitter, a random wait up to that.
    public func delay(afterFailure failures: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        // 2^20 times any base worth waiting is past any cap; the exponent is bounded before shifting.
        let doubled = base * (1 << min(max(failures, 1) - 1, 20))
        let ceiling = max(.zero, min(cap, doubled))
        switch jitter {
        case .none:
            return ceiling
        case .full:
            let (seconds, attoseconds) = ceiling.components
            let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
            return .nanoseconds(Int64.random(in: 0...max(0, nanoseconds), using: &generator))
        }
    }

    public func delay(afterFailure failures: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(afterFailure: failures, using: &generator)
    }

    /// The wait before trying again after `failures` failures at `now`, or nil when there is no
    /// next attempt: the attempts are used up, or the wait would end at or past `deadline`.
    public func nextDelay(
        afterFailure failures: Int, at now: ContinuousClock.Instant, deadline: ContinuousClock.Instant? = nil,
        using generator: inout some RandomNumberGenerator
    ) -> Duration? {
        if let maxAttempts, failures >= maxAttempts { return nil }
        let wait = delay(afterFailure: failures, using: &generator)
        if let deadline, now + wait >= deadline { return nil }
        return wait
    }

    public func nextDelay(afterFailure failures: Int, at now: ContinuousClock.Instant,
                          deadline: ContinuousClock.Instant? = nil) -> Duration? {
        var generator = SystemRandomNumberGenerator()
        return nextDelay(afterFailure: failures, at: now, deadline: deadline, using: &generator)
    }

    /// Runs `operation` (given the attempt number, from 1) until it succeeds, fails with an error
    /// `retryable` refuses, or `nextDelay` says there is no next attempt; then throws the last error.
    /// `now` and `sleep` are the monotonic clock and its sleep (a test passes its own).
    public func run<T, E: Error>(
        now: () -> ContinuousClock.Instant = { ContinuousClock.now },
        sleep: (Duration) async -> Void = { try? await Task.sleep(for: $0) },
        deadline: ContinuousClock.Instant? = nil,
        retryable: (E) -> Bool = { _ in true },
        _ operation: (_ attempt: Int) async throws(E) -> T
    ) async throws(E) -> T {
        var generator = SystemRandomNumberGenerator()
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await operation(attempt)
            } catch {
                guard retryable(error),
                      let wait = nextDelay(afterFailure: attempt, at: now(), deadline: deadline, using: &generator) else { throw error }
                await sleep(wait)
            }
        }
    }
}
