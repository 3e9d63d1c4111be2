import BulwarkProcess
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
            let script = "echo $$ > \(folder)/pid; trap '' TERM; exec sleep 300"
            #expect {
                _ = try BoundedProcess.run("/bin/sh", ["-c", script], folder: folder, timeout: .milliseconds(300),
                                           grace: .milliseconds(300))
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
