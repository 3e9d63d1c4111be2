package import Foundation
internal import BulwarkCore

/// Time as the daemon reads it. Every interval, timeout, debounce and backoff is measured on
/// `now` (monotonic: an NTP step, a wrong hardware clock or an operator's `date -s` cannot move
/// it); `wall` is only what records, logs and the status page say. Tests inject both.
package struct DaemonClock: Sendable {
    package typealias Instant = ContinuousClock.Instant

    package var now: @Sendable () -> Instant
    package var wall: @Sendable () -> Date

    /// The system's clocks. Fault injection (tests): `BULWARK_FAULT_WALL_CLOCK_OFFSET_FILE` names
    /// a file holding seconds to add to the wall clock, read on every reading, so a test can step
    /// the daemon's wall clock while it runs and leave its monotonic clock alone, as an NTP step
    /// or `date -s` does. (libfaketime cannot stand in: it also shifts the timers that monotonic
    /// sleeps wait on, so a sleep of 100 ms lasts an hour under it.)
    package static let system: DaemonClock = {
        guard let file = ProcessInfo.processInfo.environment["BULWARK_FAULT_WALL_CLOCK_OFFSET_FILE"], !file.isEmpty else {
            return DaemonClock(now: { ContinuousClock.now }, wall: { Date() })
        }
        return DaemonClock(now: { ContinuousClock.now }, wall: {
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            let offset = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            return Date().addingTimeInterval(offset.isFinite ? offset : 0)
        })
    }()

    /// The monotonic instant a wall-clock time read from a record stands for, as far as this
    /// process can tell: `now` minus how long ago the wall clock says it was. A time the wall
    /// clock has since stepped back past counts as now (never as the future, which would hold
    /// a limit for as long as the step).
    package func instant(ofWall date: Date) -> Instant {
        let ago = wall().timeIntervalSince(date)
        guard ago.isFinite, ago > 0 else { return now() }
        return now() - .seconds(min(ago, 10 * 365 * 86400))
    }
}

/// When the daemon polls its source and runs each controller, on the monotonic clock: a pure
/// value the daemon asks on every tick, so that it can be tested with instants a test makes.
///
/// Controllers run on their interval with ±10% jitter; a controller that failed is retried
/// sooner, the wait doubling per failure from `retryBase` up to its interval. A new revision
/// starts every controller's schedule afresh from its own cycle.
package struct Scheduler: Sendable {
    package typealias Instant = ContinuousClock.Instant

    package struct Due: Equatable, Sendable {
        /// The source is to be fetched (the poll interval passed).
        package var source: Bool
        /// The controllers whose interval (or retry wait) passed.
        package var controllers: Set<String>
        /// How long the caller may sleep before the next tick: until the soonest due time,
        /// at least 50 ms and at most 5 s (so a new revision's schedule is picked up soon).
        package var sleep: Duration
    }

    package let poll: Duration
    /// The share of the poll interval each wait may be shortened by, at random (0: none).
    package var pollJitter = 0.0
    package let retryBase: Duration
    private var nextPoll: Instant?
    private var nextRun: [String: Instant] = [:]
    private var failures: [String: Int] = [:]
    /// When the source was last checked (fetched or found unmoved), successfully or not.
    private(set) var sourceCheckedAt: Instant?
    /// When a tick last ran: a scheduler that stopped ticking is a daemon that stopped working.
    private(set) var tickedAt: Instant?

    package init(poll: Duration, retryBase: Duration) {
        self.poll = poll
        self.retryBase = retryBase
    }

    /// What is due at `now`, given each controller's interval; schedules what it returns.
    package mutating func tick(at now: Instant, intervals: [String: Duration]) -> Due {
        var generator = SystemRandomNumberGenerator()
        return tick(at: now, intervals: intervals, using: &generator)
    }

    package mutating func tick(at now: Instant, intervals: [String: Duration], using generator: inout some RandomNumberGenerator) -> Due {
        tickedAt = now
        var source = false
        if nextPoll.map({ now >= $0 }) ?? true {
            // Jittered (never later than the interval): a fleet of agents started together does
            // not poll the origin in lockstep.
            nextPoll = now + (pollJitter > 0 ? poll * Double.random(in: (1 - pollJitter)...1, using: &generator) : poll)
            source = true
        }
        var due = Set<String>()
        for (name, interval) in intervals.sorted(by: { $0.key < $1.key }) {
            if nextRun[name].map({ now >= $0 }) ?? true {
                due.insert(name)
                nextRun[name] = now + interval * Double.random(in: 0.9...1.1, using: &generator)
            }
        }
        let soonest = ([nextPoll].compactMap { $0 } + intervals.keys.compactMap { nextRun[$0] }).min() ?? now + .seconds(1)
        let wait = now.duration(to: soonest)
        return Due(source: source, controllers: due, sleep: min(.seconds(5), max(.milliseconds(50), wait)))
    }

    /// A new revision is in force at `now`, and the daemon's cycle over everything it starts at
    /// once is each controller's run: each is due next one interval (with its jitter) from now,
    /// and failures are forgotten. Making them all due at the next tick instead carried a new
    /// revision out twice (10,000 resources looked at again within 5 s of the first pass, on the
    /// path of any drift found meanwhile). A controller that fails in that cycle is retried
    /// sooner by `backOff`.
    package mutating func restart(at now: Instant, intervals: [String: Duration]) {
        var generator = SystemRandomNumberGenerator()
        restart(at: now, intervals: intervals, using: &generator)
    }

    package mutating func restart(at now: Instant, intervals: [String: Duration], using generator: inout some RandomNumberGenerator) {
        failures = [:]
        nextRun = [:]
        for (name, interval) in intervals.sorted(by: { $0.key < $1.key }) {
            nextRun[name] = now + interval * Double.random(in: 0.9...1.1, using: &generator)
        }
    }

    package mutating func sourceChecked(at now: Instant) {
        sourceCheckedAt = now
    }

    /// After a cycle: a controller that failed is retried sooner, with a wait that doubles per
    /// failure up to its interval; one that succeeded goes back to its interval.
    package mutating func backOff(failed: Set<String>, looked: Set<String>, intervals: [String: Duration], at now: Instant) {
        for name in looked {
            guard let interval = intervals[name] else { continue }
            if failed.contains(name) {
                let count = (failures[name] ?? 0) + 1
                failures[name] = count
                nextRun[name] = now + RetryPolicy(base: retryBase, cap: interval).delay(afterFailure: count)
            } else {
                failures[name] = nil
            }
        }
    }

    /// Why the daemon is not doing what its schedule says, or nil: no tick for 30 s (the loop
    /// sleeps at most 5 s), or no check of the source for twice the poll interval and a minute
    /// (a cycle may hold the worker that long). Readiness says so instead of "ready".
    package func overdue(at now: Instant, startedAt: Instant) -> String? {
        if let stalled = stalled(at: now) { return stalled }
        let since = sourceCheckedAt ?? startedAt
        let limit = poll * 2 + .seconds(60)
        if since.duration(to: now) > limit {
            return "the source was last checked \(Self.seconds(since.duration(to: now))) s ago (polled every \(Self.seconds(poll)) s)"
        }
        return nil
    }

    /// Why the scheduler loop itself looks hung (no tick for 30 s; it sleeps at most 5 s), or
    /// nil. Unlike `overdue`, an unreachable source is not a hang: restarting would not help,
    /// so systemd's watchdog is fed on this alone.
    package func stalled(at now: Instant) -> String? {
        guard let tickedAt, tickedAt.duration(to: now) > .seconds(30) else { return nil }
        return "the scheduler has not run for \(Self.seconds(tickedAt.duration(to: now))) s"
    }

    private static func seconds(_ duration: Duration) -> Int64 { duration.components.seconds }
}
