internal import Synchronization

/// Refused requests per client address (as `ServerContext.address` counts it: an IPv4 address,
/// an IPv6 /64): a token bucket of `burst` refusals, refilled at `perSecond`. A client whose
/// bucket is empty gets 429 before anything of its request is read or checked, so guessing a
/// secret or a token costs the daemon (and its log) almost nothing. What is refused is logged at
/// most once a `logEvery` per address, with how many refusals that line stands for, and at most
/// `linesEvery` lines a `logEvery` over all addresses: many addresses (a botnet, an IPv6 range)
/// cannot flood the journal either. What that holds back is counted in the next line.
final class RefusalLimiter: Sendable {
    typealias Instant = ContinuousClock.Instant

    struct Settings: Sendable {
        var burst: Int = 10
        var perSecond: Double = 1
        var logEvery: Duration = .seconds(60)
        /// Addresses remembered at most; past it those whose bucket is full again are forgotten.
        var addresses: Int = 4096
        /// Lines logged at most per `logEvery`, over every address.
        var linesEvery: Int = 20
    }

    private struct Bucket {
        var tokens: Double
        var at: Instant
        /// Refusals not logged yet, and when this address was last logged.
        var unlogged = 0
        var loggedAt: Instant?
    }

    /// A refusal to log now, standing for `count` refusals since the address was last logged,
    /// and for `heldBack` refusals of other addresses whose lines the overall limit held back
    /// since the last line (their own next line counts them again).
    struct LogLine: Equatable {
        var count: Int
        var heldBack = 0
    }

    /// The lines logged in the current `logEvery` over every address, and what was held back.
    private struct Overall {
        var since: Instant?
        var lines = 0
        var heldBack = 0
    }

    let settings: Settings
    let now: @Sendable () -> Instant
    private let buckets = Mutex(([String: Bucket](), Overall()))

    init(settings: Settings = Settings(), now: @escaping @Sendable () -> Instant = { ContinuousClock.now }) {
        self.settings = settings
        self.now = now
    }

    /// nil when `address` may be served, else how many seconds until it may (for `Retry-After`).
    func retryAfter(_ address: String) -> Int? {
        let now = now()
        return buckets.withLock { state in
            guard var bucket = state.0[address] else { return nil }
            refill(&bucket, at: now)
            state.0[address] = bucket
            guard bucket.tokens < 1 else { return nil }
            return max(1, Int(((1 - bucket.tokens) / settings.perSecond).rounded(.up)))
        }
    }

    /// A request from `address` was refused; `take` when it counts against its bucket (a failed
    /// authentication). Returns the line to log now, or nil while this address's refusals are
    /// being counted for a later line.
    func refused(_ address: String, take: Bool) -> LogLine? {
        let now = now()
        return buckets.withLock { state in
            if state.0[address] == nil, state.0.count >= settings.addresses { forget(&state.0, at: now) }
            var bucket = state.0[address] ?? Bucket(tokens: Double(settings.burst), at: now)
            refill(&bucket, at: now)
            if take { bucket.tokens = max(0, bucket.tokens - 1) }
            bucket.unlogged += 1
            var line: LogLine?
            if bucket.loggedAt.map({ $0.duration(to: now) >= settings.logEvery }) ?? true {
                if state.1.since.map({ $0.duration(to: now) >= settings.logEvery }) ?? true {
                    state.1.since = now
                    state.1.lines = 0
                }
                if state.1.lines < settings.linesEvery {
                    state.1.lines += 1
                    line = LogLine(count: bucket.unlogged, heldBack: state.1.heldBack)
                    state.1.heldBack = 0
                    bucket.unlogged = 0
                    bucket.loggedAt = now
                } else {
                    state.1.heldBack += 1
                }
            }
            state.0[address] = bucket
            return line
        }
    }

    /// A failed authentication from `address` that is logged elsewhere: taken from its bucket only.
    func take(_ address: String) {
        let now = now()
        buckets.withLock { state in
            if state.0[address] == nil, state.0.count >= settings.addresses { forget(&state.0, at: now) }
            var bucket = state.0[address] ?? Bucket(tokens: Double(settings.burst), at: now)
            refill(&bucket, at: now)
            bucket.tokens = max(0, bucket.tokens - 1)
            state.0[address] = bucket
        }
    }

    private func refill(_ bucket: inout Bucket, at now: Instant) {
        let elapsed = bucket.at.duration(to: now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        bucket.tokens = min(Double(settings.burst), bucket.tokens + max(0, seconds) * settings.perSecond)
        bucket.at = now
    }

    /// Makes room: the addresses whose bucket is full again and whose last line is old go first;
    /// if that is not enough, half of what is left (an attacker with many addresses loses its
    /// history, never the daemon its memory).
    private func forget(_ buckets: inout [String: Bucket], at now: Instant) {
        for (address, var bucket) in buckets {
            refill(&bucket, at: now)
            if bucket.tokens >= Double(settings.burst), bucket.loggedAt.map({ $0.duration(to: now) >= settings.logEvery }) ?? true {
                buckets[address] = nil
            }
        }
        if buckets.count >= settings.addresses {
            for address in buckets.keys.prefix(buckets.count / 2 + 1) { buckets[address] = nil }
        }
    }
}
