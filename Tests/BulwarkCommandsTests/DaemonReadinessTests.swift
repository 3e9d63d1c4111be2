@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkServer
import BulwarkTestSupport
import Foundation
import Logging
import Prometheus
import Synchronization
import Testing

/// `/readyz` over time, from a daemon in this process on the foundation issue's setup, with a
/// monotonic clock the test moves: an origin that cannot be fetched, and audit commits that
/// cannot be pushed, are "not ready" once they have lasted longer than twice the poll interval
/// and a minute, and only then; both end as soon as the origin answers again.
@Suite(.serialized, .timeLimit(.minutes(20)))
struct DaemonReadinessTests {
    /// The daemon's clocks, moved forward by the test (the wall clock with it).
    final class MovableClock: Sendable {
        let base = ContinuousClock.now
        let offset = Mutex(Duration.zero)

        func step(_ duration: Duration) { offset.withLock { $0 += duration } }

        var clock: DaemonClock {
            DaemonClock(now: { [self] in base + offset.withLock { $0 } },
                        wall: { [self] in Date().addingTimeInterval(Double(offset.withLock { $0 }.components.seconds)) })
        }
    }

    func daemon(_ s: Scenario, clock: MovableClock) throws -> (Daemon, PrometheusCollectorRegistry) {
        let configuration = PolicyRepository.Configuration(url: s.origin, stateDirectory: s.state)
        let options = RuntimeOptions(configuration: configuration, displayURL: s.origin, sourceVerification: nil, registry: Bulwark.registry())
        let metrics = PrometheusCollectorRegistry()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let daemon = try Daemon(options: options, settings: Daemon.Settings(poll: .seconds(30)), logger: logger, registry: metrics,
                                clock: clock.clock)
        return (daemon, metrics)
    }

    func sample(_ metrics: PrometheusCollectorRegistry, _ name: String) -> Double? {
        var buffer: [UInt8] = []
        metrics.emit(into: &buffer)
        for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    /// Twice the poll interval (30 s) and a minute, and a second.
    static let pastThreshold: Duration = .seconds(121)

    @Test func anOriginThatCannotBeFetchedPastTheThresholdIsNotReadyNamingItUntilItAnswers() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let clock = MovableClock()
            let (daemon, metrics) = try daemon(s, clock: clock)
            await daemon.requestSource()
            await daemon.runPending()
            let first = await daemon.readiness()
            #expect(first.ready, "\(first.reason)")
            #expect(sample(metrics, "bulwark_source_fetch_failures_total") == 0)

            try FileManager.default.moveItem(atPath: s.origin, toPath: s.origin + ".away")
            await daemon.requestSource()
            await daemon.runPending()
            // One failed poll is not a problem yet: the last fetched revision stays in force.
            let early = await daemon.readiness()
            #expect(early.ready, "\(early.reason)")
            #expect(sample(metrics, "bulwark_source_fetch_failures_total") == 1)
            #expect(await daemon.status().sourceError != nil)

            clock.step(Self.pastThreshold)
            await daemon.requestSource()
            await daemon.runPending()
            let late = await daemon.readiness()
            #expect(!late.ready, "\(late.reason)")
            #expect(late.reason.contains("the origin \(s.origin) could not be fetched for 121 s") && late.reason.contains("2 attempts"),
                    "\(late.reason)")
            #expect(!(await daemon.status().ready))
            #expect(sample(metrics, "bulwark_source_fetch_failures_total") == 2)

            // The origin answers again: ready at once.
            try FileManager.default.moveItem(atPath: s.origin + ".away", toPath: s.origin)
            await daemon.requestSource()
            await daemon.runPending()
            let back = await daemon.readiness()
            #expect(back.ready, "\(back.reason)")
            #expect(await daemon.status().sourceError == nil)
        }
    }

    @Test func auditCommitsKeptLocallyPastTheThresholdAreNotReadyAndGoOutAtTheNextPollOnceTheOriginAnswers() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let clock = MovableClock()
            let (daemon, metrics) = try daemon(s, clock: clock)
            #expect(await daemon.sync())
            // The origin goes away between the fetch and the cycle's push.
            try FileManager.default.moveItem(atPath: s.origin, toPath: s.origin + ".away")
            await daemon.cycle(only: nil)
            let kept = try #require(sample(metrics, "bulwark_unpushed_audit_commits"))
            #expect(kept > 0)
            let early = await daemon.readiness()
            #expect(early.ready, "not yet past the threshold: \(early.reason)")

            clock.step(Self.pastThreshold)
            let late = await daemon.readiness()
            #expect(!late.ready, "\(late.reason)")
            #expect(late.reason.contains("\(Int(kept)) audit commits kept locally, not pushed to \(s.origin) since "), "\(late.reason)")

            // The origin is back: the next poll pushes them (no cycle runs: nothing is pending).
            try FileManager.default.moveItem(atPath: s.origin + ".away", toPath: s.origin)
            await daemon.requestSource()
            await daemon.runPending()
            #expect(sample(metrics, "bulwark_unpushed_audit_commits") == 0)
            #expect(try s.auditCommits().count == Int(kept), "the kept commits reached the origin")
            let back = await daemon.readiness()
            #expect(back.ready, "\(back.reason)")
        }
    }

    /// A problem a whole cycle found that names no resource (a pass that halted before any fix)
    /// stands through smaller cycles (a finding's), which add their own; the next whole cycle
    /// judges them all again.
    @Test func aSmallCycleDoesNotClearWhatAWholeCycleFound() {
        var health = DaemonHealth()
        health.setGeneral(["the last pass stopped changing systems: disk full"], wholeRevision: true)
        health.setGeneral([], wholeRevision: false)
        #expect(!health.clean)
        health.setGeneral(["audit records not committed: x"], wholeRevision: false)
        health.setGeneral(["audit records not committed: x"], wholeRevision: false)
        #expect(health.general == ["the last pass stopped changing systems: disk full", "audit records not committed: x"])
        health.setGeneral([], wholeRevision: true)
        #expect(health.clean)
        for index in 0..<30 { health.setGeneral(["problem \(index)"], wholeRevision: false) }
        #expect(health.general.count == DaemonHealth.generalKept && health.general.last == "problem 29")
    }

    @Test func aReasonNeverShowsAPasswordTheErrorCarried() {
        var health = DaemonHealth()
        let start = ContinuousClock.now
        health.fetchFailed("cannot fetch https://bulwark:s3cret-pw@git.example.org/policy.git: timed out", at: start, wall: Date())
        health.keptLocally(2, reason: "push to https://bulwark:s3cret-pw@git.example.org/policy.git failed", at: start, wall: Date())
        let reasons = health.reasons(at: start + .seconds(200), threshold: .seconds(120), origin: "https://git.example.org/policy.git")
        #expect(reasons.count == 2, "\(reasons)")
        #expect(!reasons.joined().contains("s3cret-pw"), "\(reasons)")
        // Under the threshold, neither is a reason yet.
        #expect(health.reasons(at: start + .seconds(60), threshold: .seconds(120), origin: "o").isEmpty)
    }
}
