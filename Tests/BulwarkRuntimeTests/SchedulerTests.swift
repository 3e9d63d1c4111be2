@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// The daemon's schedule on instants the test makes: nothing here reads or sleeps on a clock.
@Suite struct SchedulerTests {
    let start = ContinuousClock.now
    let intervals: [String: Duration] = ["hosts": .seconds(300), "firewall": .seconds(60)]

    @Test func pollsTheSourceAndRunsEachControllerOnItsInterval() {
        var random = SeededGenerator(seed: 11)
        var scheduler = Scheduler(poll: .seconds(30), retryBase: .seconds(5))
        let first = scheduler.tick(at: start, intervals: intervals, using: &random)
        #expect(first.source && first.controllers == ["hosts", "firewall"])
        #expect(first.sleep == .seconds(5), "at most 5 s, so a new revision's schedule is picked up soon")

        let soon = scheduler.tick(at: start + .seconds(10), intervals: intervals, using: &random)
        #expect(!soon.source && soon.controllers.isEmpty)

        let poll = scheduler.tick(at: start + .seconds(30), intervals: intervals, using: &random)
        #expect(poll.source && poll.controllers.isEmpty)
        // The firewall's interval with its jitter (±10%) has passed by 66 s; the hosts' has not.
        let firewall = scheduler.tick(at: start + .seconds(66), intervals: intervals, using: &random)
        #expect(firewall.controllers == ["firewall"])
        let hosts = scheduler.tick(at: start + .seconds(331), intervals: intervals, using: &random)
        #expect(hosts.controllers.contains("hosts") && hosts.source)
    }

    @Test func theSleepEndsAtTheSoonestDueTimeButNeverBelowFiftyMilliseconds() {
        var random = SeededGenerator(seed: 3)
        var scheduler = Scheduler(poll: .seconds(2), retryBase: .seconds(5))
        _ = scheduler.tick(at: start, intervals: [:], using: &random)
        #expect(scheduler.tick(at: start + .milliseconds(500), intervals: [:], using: &random).sleep == .milliseconds(1500))
        #expect(scheduler.tick(at: start + .milliseconds(1990), intervals: [:], using: &random).sleep == .milliseconds(50))
    }

    @Test func aFailedControllerIsRetriedSoonerDoublingUpToItsInterval() {
        var random = SeededGenerator(seed: 5)
        var scheduler = Scheduler(poll: .seconds(3600), retryBase: .seconds(5))
        let hosts: [String: Duration] = ["hosts": .seconds(60)]
        _ = scheduler.tick(at: start, intervals: hosts, using: &random)
        var now = start
        for wait in [5, 10, 20, 40, 60, 60] {
            scheduler.backOff(failed: ["hosts"], looked: ["hosts"], intervals: hosts, at: now)
            #expect(scheduler.tick(at: now + .seconds(wait) - .milliseconds(1), intervals: hosts, using: &random).controllers.isEmpty,
                    "not before \(wait) s")
            #expect(scheduler.tick(at: now + .seconds(wait), intervals: hosts, using: &random).controllers == ["hosts"], "after \(wait) s")
            now = now + .seconds(wait)
        }
        // A success goes back to the interval; the next failure waits the base again.
        scheduler.backOff(failed: [], looked: ["hosts"], intervals: hosts, at: now)
        scheduler.backOff(failed: ["hosts"], looked: ["hosts"], intervals: hosts, at: now)
        #expect(scheduler.tick(at: now + .seconds(5), intervals: hosts, using: &random).controllers == ["hosts"])
    }

    /// A new revision's own cycle over everything is each controller's run: no tick during or
    /// after that cycle runs them all again; each is due one interval (with its jitter) after
    /// the revision, and a controller that fails in the cycle is retried after the base wait.
    /// Failures from before the revision are forgotten.
    @Test func aNewRevisionsOwnCycleIsEachControllersRun() {
        var random = SeededGenerator(seed: 8)
        var scheduler = Scheduler(poll: .seconds(3600), retryBase: .seconds(5))
        _ = scheduler.tick(at: start, intervals: intervals, using: &random)
        scheduler.backOff(failed: ["hosts"], looked: ["hosts"], intervals: intervals, at: start)
        let revision = start + .seconds(2)
        scheduler.restart(at: revision, intervals: intervals, using: &random)
        #expect(scheduler.tick(at: revision + .seconds(1), intervals: intervals, using: &random).controllers.isEmpty,
                "a tick while the revision's cycle runs")
        scheduler.backOff(failed: ["firewall"], looked: ["hosts", "firewall"], intervals: intervals, at: revision + .seconds(3))
        #expect(scheduler.tick(at: revision + .seconds(8), intervals: intervals, using: &random).controllers == ["firewall"])
        #expect(!scheduler.tick(at: revision + .seconds(269), intervals: intervals, using: &random).controllers.contains("hosts"))
        #expect(scheduler.tick(at: revision + .seconds(331), intervals: intervals, using: &random).controllers.contains("hosts"))
    }

    @Test func readinessSaysWhenTheScheduleIsNotKept() {
        var random = SeededGenerator(seed: 1)
        var scheduler = Scheduler(poll: .seconds(30), retryBase: .seconds(5))
        _ = scheduler.tick(at: start, intervals: intervals, using: &random)
        scheduler.sourceChecked(at: start)
        #expect(scheduler.overdue(at: start + .seconds(29), startedAt: start) == nil)
        // Ticking on time, the source checked within two polls and a minute: nothing to say.
        for second in stride(from: 5, through: 115, by: 5) {
            _ = scheduler.tick(at: start + .seconds(second), intervals: intervals, using: &random)
        }
        scheduler.sourceChecked(at: start + .seconds(100))
        #expect(scheduler.overdue(at: start + .seconds(119), startedAt: start) == nil)
        // No tick for more than 30 s.
        #expect(scheduler.overdue(at: start + .seconds(146), startedAt: start) == "the scheduler has not run for 31 s")
        // Ticking, but the source not checked for 121 s (a cycle holding the worker).
        for second in stride(from: 120, through: 225, by: 5) {
            _ = scheduler.tick(at: start + .seconds(second), intervals: intervals, using: &random)
        }
        #expect(scheduler.overdue(at: start + .seconds(225), startedAt: start)
                == "the source was last checked 125 s ago (polled every 30 s)")
        scheduler.sourceChecked(at: start + .seconds(225))
        #expect(scheduler.overdue(at: start + .seconds(226), startedAt: start) == nil)
    }

    @Test func aWallClockSteppedBackMakesNoRecordedTimeLieInTheFuture() {
        // The wall clock reads an hour earlier than the record it wrote a minute ago.
        let recorded = Date()
        let clock = DaemonClock(now: { [start] in start + .seconds(60) }, wall: { recorded.addingTimeInterval(60 - 3600) })
        #expect(clock.instant(ofWall: recorded) == start + .seconds(60), "counted as now, not an hour ahead")
        // A wall clock on time places a record a minute back.
        let steady = DaemonClock(now: { [start] in start + .seconds(60) }, wall: { recorded.addingTimeInterval(60) })
        #expect(steady.instant(ofWall: recorded) == start)
    }
}
