@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// The daemon's wall clock stepped back an hour while it runs, as an NTP step or `date -s` does:
/// its monotonic clock goes on, its notion of "now" for records jumps back. The step is injected
/// through `BULWARK_FAULT_WALL_CLOCK_OFFSET_FILE` (seconds added to every wall-clock reading).
/// Debian's libfaketime was tried and cannot stand in: it also shifts the timers monotonic sleeps
/// wait on, so under it a 100 ms sleep lasts the length of the step, which no real step does.
/// Polling, fixing and readiness must go on; only what records say moves with the wall clock.
@Suite(.serialized)
struct SteppedClockTests {
    func revision(_ daemon: DaemonProcess) -> String? {
        guard let body = try? daemon.get("/api/v1/status").body,
              let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return nil }
        return json["revision"] as? String
    }

    func originHead(_ s: Scenario) throws -> String {
        try git("--git-dir", s.origin, "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func aWallClockSteppedBackAnHourStopsNeitherPollingNorFixingAndReadinessStaysTrue() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let offset = dir + "/wall-clock-offset"
            try write(offset, "0\n")
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "1"],
                                           environment: ["BULWARK_FAULT_WALL_CLOCK_OFFSET_FILE": offset,
                                                         "BULWARK_WEBHOOK_SECRET": DaemonTests.secret],
                                           logPath: dir + "/daemon.log")
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            #expect(DaemonTests().waitIdle(daemon))

            // The step: from now on the daemon's wall clock reads an hour earlier.
            try write(offset, "-3600\n")
            let stepped = Date()

            // Polling goes on: a new revision is fetched and in force (the poll is 1 s).
            try s.commitPolicy("NOTES.md", "the clock was stepped back\n", message: "a revision after the step")
            let first = try originHead(s)
            #expect(daemon.wait(seconds: 30) { revision(daemon) == first }, "revision \(first) in force: \(daemon.log.suffix(3000))")

            // Fixing goes on (once the new revision's cycle is done), and the record says what the
            // (stepped) wall clock said.
            #expect(DaemonTests().waitIdle(daemon))
            let before = FaultSuiteTests.verified(s)
            try DaemonTests().edit(s.host + "/etc/ssh/sshd_config", "\nPermitRootLogin no\n", "\nPermitRootLogin yes\n")
            let fixed = daemon.wait(seconds: 30) {
                ((try? read(s.host + "/etc/ssh/sshd_config")) ?? "").contains("\nPermitRootLogin no\n") && FaultSuiteTests.verified(s) == before + 1
            }
            #expect(fixed, "fixed and recorded: \(daemon.log.suffix(3000))")
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "--grep", "Bulwark-Resource: \(FaultSuiteTests.resource)",
                                 "bulwark/audit")
            let times = ISO8601DateFormatter()
            times.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let detected = try #require(record.split(separator: "\n").first { $0.hasPrefix("Bulwark-Detected-At: ") }
                .flatMap { times.date(from: String($0.dropFirst("Bulwark-Detected-At: ".count))) }, "\(record)")
            #expect(abs(detected.timeIntervalSince(stepped) + 3600) < 600, "the record carries the stepped wall time: \(detected)")

            // Readiness is true, and true to fact: the schedule is kept, the last cycle succeeded.
            #expect(DaemonTests().waitIdle(daemon))
            let ready = try daemon.get("/readyz")
            #expect(ready.status == 200, "\(ready.body)")
            let status = try #require(try JSONSerialization.jsonObject(with: Data(daemon.get("/api/v1/status").body.utf8)) as? [String: Any])
            #expect(status["ready"] as? Bool == true && status["lastCycleError"] == nil, "\(status)")

            // And again, well past the old poll time: the next revision arrives as well.
            try s.commitPolicy("NOTES.md", "and it stays stepped\n", message: "a second revision after the step")
            let second = try originHead(s)
            #expect(daemon.wait(seconds: 30) { revision(daemon) == second }, "revision \(second) in force: \(daemon.log.suffix(3000))")
            #expect(daemon.terminate() == 0)
            let fsck = try run("/usr/bin/git", ["--git-dir", s.origin, "fsck", "--strict"])
            #expect(fsck.status == 0, "\(fsck.stderr)")
        }
    }
}
