@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

@Suite(.timeLimit(.minutes(20))) struct ProcessRunnerTests {
    let runner = ProcessRunner(environment: ["PATH": "/usr/bin:/bin"])

    /// A child starts with no signal blocked or ignored, whatever the parent does: a service a
    /// maintainer script starts must still stop on SIGTERM.
    @Test func aChildStartsWithEverySignalAtItsDefault() async throws {
        let result = try await runner.run("/bin/cat", ["/proc/self/status"], timeout: .seconds(30))
        #expect(result.status == 0)
        func mask(_ name: String) -> UInt64? {
            result.output.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { UInt64($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces), radix: 16) }
        }
        // Signals 1 to 31 (SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD…): none blocked, none ignored.
        // (32 and 33 are the C library's own and not ours to reset.)
        #expect(mask("SigBlk").map { $0 & 0x7FFF_FFFF } == 0, "\(result.output)")
        #expect(mask("SigIgn").map { $0 & 0x7FFF_FFFF } == 0, "\(result.output)")
    }

    @Test func exitCodesAndOutputComeBack() async throws {
        let result = try await runner.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], timeout: .seconds(30))
        #expect(result.status == 3 && !result.timedOut)
        #expect(result.output == "out\nerr\n")
        await #expect(throws: PackagesError.self) { _ = try await runner.run("/nonexistent/apt-get", [], timeout: .seconds(5)) }
    }

    /// A timeout stops the program and everything it started (apt, dpkg, a maintainer script).
    @Test func aTimeoutStopsTheWholeProcessGroup() async throws {
        try await withTemporaryDirectory { dir in
            // 5 s leave a busy machine time to write the child's pid before the deadline.
            let result = try await runner.run("/bin/sh", ["-c", "sleep 300 & echo $! > \(dir)/child; wait"], timeout: .seconds(5))
            #expect(result.timedOut)
            let child = try #require(Int32(try read(dir + "/child").trimmingCharacters(in: .whitespacesAndNewlines)))
            // The background child is gone too (reaped by init once its parent died).
            var gone = false
            for _ in 0..<100 where !gone {
                gone = kill(child, 0) != 0 || (try? read("/proc/\(child)/stat"))?.contains(") Z ") == true
                if !gone { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(gone)
        }
    }
}
