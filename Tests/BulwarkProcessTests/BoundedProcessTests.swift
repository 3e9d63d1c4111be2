@testable import BulwarkProcess
import BulwarkTestSupport
import Foundation
import Testing

/// The one bounded runner of helper programs, with real processes: what a program says comes
/// back, one that hangs (even ignoring SIGTERM) is killed, output beyond the limit is cut, and
/// no output file is left behind.
@Suite struct BoundedProcessTests {
    @Test func statusOutputAndErrorsComeBackAndNoFileIsLeft() async throws {
        try await withTemporaryDirectory { folder in
            let result = try BoundedProcess.run("/bin/sh", ["-c", "echo out; echo ' err ' >&2; exit 3"], folder: folder, timeout: .seconds(30))
            #expect(result.status == 3 && result.output == "out\n" && result.errors == "err" && !result.truncated)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
        }
    }

    /// The wait between looks at a child ends when the child ends (its pidfd), not when the
    /// pause is over; a child still running is waited for only the pause.
    @Test func theWaitForAChildEndsWhenTheChildDoes() throws {
        func spawn(_ seconds: String) throws -> pid_t {
            var pid: pid_t = 0
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup(seconds), nil]
            defer { argv.forEach { free($0) } }
            try #require(posix_spawn(&pid, "/bin/sleep", nil, nil, argv, nil) == 0)
            return pid
        }
        var status: Int32 = 0
        let quick = try spawn("0.05")
        let exit = BoundedProcess.ChildExit(quick)
        #expect(exit.descriptor >= 0, "this kernel offers pidfd_open")
        let start = ContinuousClock.now
        exit.wait(upTo: 20_000_000)
        #expect(ContinuousClock.now - start < .seconds(10), "woken by the end, not after the 20 s pause")
        #expect(waitpid(quick, &status, WNOHANG) == quick, "the child had ended")

        let slow = try spawn("30")
        defer {
            kill(slow, SIGKILL)
            waitpid(slow, &status, 0)
        }
        BoundedProcess.ChildExit(slow).wait(upTo: 50_000)
        #expect(waitpid(slow, &status, WNOHANG) == 0, "still running after the pause")
    }

    @Test func standardInputIsReadFromTheGivenFile() async throws {
        try await withTemporaryDirectory { folder in
            try Data("signed data\n".utf8).write(to: URL(fileURLWithPath: folder + "/input"))
            let result = try BoundedProcess.run("/bin/cat", [], input: folder + "/input", folder: folder, timeout: .seconds(30))
            #expect(result.status == 0 && result.output == "signed data\n")
            // Without input, standard input is empty (/dev/null), never the caller's terminal.
            #expect(try BoundedProcess.run("/bin/cat", [], folder: folder, timeout: .seconds(30)).output == "")
        }
    }

    @Test func aProgramThatIgnoresTerminationIsKilledAfterTheGraceAndTheRunFails() async throws {
        try await withTemporaryDirectory { folder in
            // `exec` so the pid is the sleeping program itself, which inherits the ignored SIGTERM.
            // The pid is written once SIGTERM is ignored, and 5 s leave a busy machine time for that.
            let script = "trap '' TERM; echo $$ > \(folder)/pid; exec sleep 300"
            #expect {
                _ = try BoundedProcess.run("/bin/sh", ["-c", script], folder: folder, timeout: .seconds(5),
                                           grace: .seconds(1))
            } throws: { error in
                (error as? BoundedProcess.Failure)?.reason == .timedOut && "\(error)".contains("did not finish within")
            }
            let pid = try #require(Int32(try String(contentsOfFile: folder + "/pid", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(kill(pid, 0) == -1 && errno == ESRCH, "the program is gone")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["pid"])
        }
    }

    @Test func outputBeyondTheLimitIsCutAndSaidSo() async throws {
        try await withTemporaryDirectory { folder in
            let result = try BoundedProcess.run("/bin/sh", ["-c", "head -c 5000000 /dev/zero | tr '\\000' x"], folder: folder,
                                                timeout: .seconds(30), maxOutput: 1000)
            #expect(result.status == 0)
            #expect(result.output == String(repeating: "x", count: 1000))
            #expect(result.truncated)
            let small = try BoundedProcess.run("/bin/echo", ["ok"], folder: folder, timeout: .seconds(30), maxOutput: 3)
            #expect(small.output == "ok\n" && !small.truncated)
        }
    }

    @Test func aMissingProgramOrFolderIsAFailureNamingIt() async throws {
        try await withTemporaryDirectory { folder in
            #expect {
                _ = try BoundedProcess.run(folder + "/missing", [], folder: folder, timeout: .seconds(5))
            } throws: { "\($0)".contains("cannot run \(folder)/missing") }
            #expect {
                _ = try BoundedProcess.run("/bin/true", [], folder: folder + "/nowhere", timeout: .seconds(5))
            } throws: { "\($0)".contains("cannot create output files in \(folder)/nowhere") }
        }
    }
}
