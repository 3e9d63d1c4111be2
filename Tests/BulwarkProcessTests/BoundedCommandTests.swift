import BulwarkProcess
import BulwarkTestSupport
import Foundation
import Testing

/// `BoundedProcess.Command`, the runner apt, dpkg and an operator's validation or reload command
/// go through, with real processes: a timeout stops the whole process group, a command that
/// leaves a daemon running is not waited for, the child gets only the environment and
/// descriptors it is given and every signal at its default, and the end of a long output is kept.
@Suite(.timeLimit(.minutes(2))) struct BoundedCommandTests {
    func pid(in file: String) throws -> Int32 {
        try #require(Int32(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    /// Gone, or a zombie waiting for init: no longer running either way.
    func gone(_ pid: Int32) async throws -> Bool {
        for _ in 0..<100 {
            if kill(pid, 0) != 0 { return true }
            if (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") Z ") == true { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    @Test func aTimeoutStopsTheProgramAndEverythingItStarted() async throws {
        try await withTemporaryDirectory { folder in
            // The background child ignores SIGTERM, and writes its pid only then: only the group's
            // SIGKILL stops it. 5 s leave a busy machine time to get that far.
            let script = "sh -c 'trap \"\" TERM; echo $$ > \(folder)/child; exec sleep 300' & wait"
            let command = BoundedProcess.Command(executable: "/bin/sh", arguments: ["-c", script], folder: folder,
                                                 timeout: .seconds(5), grace: .seconds(1))
            let outcome = try await command.run()
            #expect(outcome.timedOut)
            #expect(try await gone(try pid(in: folder + "/child")))
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["child"], "no output file is left")
        }
    }

    /// A reload command that starts a daemon returns when the command does: the daemon holds
    /// the output file, not a pipe Bulwark waits on, and is left running.
    @Test func aCommandThatLeavesADaemonRunningIsNotWaitedFor() async throws {
        try await withTemporaryDirectory { folder in
            let script = "sleep 300 & echo $! > \(folder)/daemon; echo reloaded"
            let outcome = try BoundedProcess.Command(executable: "/bin/sh", arguments: ["-c", script], timeout: .seconds(60))
                .runBlocking()
            let daemon = try pid(in: folder + "/daemon")
            defer { kill(daemon, SIGKILL) }
            #expect(!outcome.timedOut && outcome.status == 0 && outcome.output == "reloaded\n")
            #expect(kill(daemon, 0) == 0, "the daemon it started still runs")
        }
    }

    @Test func theChildGetsOnlyTheEnvironmentGivenAndNeverBulwarksSecrets() async throws {
        let given = try await BoundedProcess.Command(executable: "/usr/bin/env", arguments: [], environment: ["LC_ALL": "C", "A": "b"],
                                                     timeout: .seconds(30)).run()
        #expect(given.output == "A=b\nLC_ALL=C\n")
        // Without one, a plain environment: where programs are, the locale, the home folder; never
        // what Bulwark holds (its git password, cloud keys, database and notifier secrets).
        // (Names of this test's own: other tests in this process read the real ones.)
        setenv("BULWARK_PROCESS_TEST_PASSWORD", "ghp-process-test-secret", 1)
        setenv("BULWARK_PROCESS_TEST_AWS_SECRET", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 1)
        setenv("LC_TIME", "C.UTF-8", 1)
        defer { unsetenv("BULWARK_PROCESS_TEST_PASSWORD"); unsetenv("BULWARK_PROCESS_TEST_AWS_SECRET"); unsetenv("LC_TIME") }
        let plain = try BoundedProcess.Command(executable: "/usr/bin/env", arguments: [], timeout: .seconds(30)).runBlocking()
        let names = plain.output.split(separator: "\n").map { String($0.split(separator: "=", maxSplits: 1).first ?? "") }
        #expect(!plain.output.contains("ghp-process-test-secret") && !plain.output.contains("EXAMPLEKEY"), "\(plain.output)")
        #expect(Set(names).isSubset(of: ["PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "LC_TIME", "LC_ALL", "LC_CTYPE"]), "\(names)")
        #expect(names.contains("PATH") && plain.output.contains("LC_TIME=C.UTF-8\n"))
    }

    /// A child runs in the working folder it is given (an operator's command in `/`), else in
    /// Bulwark's own.
    @Test func theChildRunsInTheWorkingFolderGiven() async throws {
        #expect(FileManager.default.currentDirectoryPath != "/", "run from a folder other than / for this to mean anything")
        var command = BoundedProcess.Command(executable: "/bin/pwd", arguments: ["-P"], timeout: .seconds(30))
        command.workingDirectory = "/"
        #expect(try command.runBlocking().output == "/\n")
        command.workingDirectory = nil
        let own = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).resolvingSymlinksInPath().path
        #expect(try command.runBlocking().output == own + "\n")
    }

    /// A descriptor Bulwark holds open (even without close-on-exec) does not reach the child.
    @Test func noDescriptorOfBulwarksReachesTheChild() async throws {
        try await withTemporaryDirectory { folder in
            let fd = open(folder, O_RDONLY)
            try #require(fd > 2)
            defer { close(fd) }
            let script = "[ -e /proc/self/fd/\(fd) ] && echo leaked || echo closed; [ -e /proc/self/fd/2 ] && echo has-stderr"
            let outcome = try BoundedProcess.Command(executable: "/bin/sh", arguments: ["-c", script], timeout: .seconds(30)).runBlocking()
            #expect(outcome.output == "closed\nhas-stderr\n")
        }
    }

    /// A child starts with no signal blocked or ignored, whatever Bulwark does (its daemon
    /// ignores SIGTERM): a service a maintainer script starts must still stop on SIGTERM.
    @Test func aChildStartsWithEverySignalAtItsDefault() async throws {
        signal(SIGUSR2, SIG_IGN)
        defer { signal(SIGUSR2, SIG_DFL) }
        let outcome = try BoundedProcess.Command(executable: "/bin/cat", arguments: ["/proc/self/status"], timeout: .seconds(30)).runBlocking()
        func mask(_ name: String) -> UInt64? {
            outcome.output.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { UInt64($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces), radix: 16) }
        }
        #expect(mask("SigBlk").map { $0 & 0x7FFF_FFFF } == 0, "\(outcome.output)")
        #expect(mask("SigIgn").map { $0 & 0x7FFF_FFFF } == 0, "\(outcome.output)")
    }

    @Test func theEndOfALongOutputIsKeptInOrder() async throws {
        let script = "i=0; while [ $i -lt 2000 ]; do echo line$i; echo err$i >&2; i=$((i+1)); done; exit 4"
        let outcome = try BoundedProcess.Command(executable: "/bin/sh", arguments: ["-c", script], timeout: .seconds(60),
                                                 maxOutput: 22).runBlocking()
        #expect(outcome.status == 4 && !outcome.timedOut && outcome.truncated)
        // Output and errors share one file, in the order written: the last 22 bytes of it.
        #expect(outcome.output == "1998\nline1999\nerr1999\n")
        let short = try BoundedProcess.Command(executable: "/bin/echo", arguments: ["ok"], timeout: .seconds(30)).runBlocking()
        #expect(short.output == "ok\n" && !short.truncated)
    }

    /// Output goes to unlinked files on disk: a program that writes without end is killed, with
    /// what it started, once it has written `maxWritten` (not at its deadline, when the disk
    /// could be full), and says so; one that writes less than that runs to its end.
    /// The same bound holds while every thread of the cooperative pool is busy: the child is
    /// watched from a thread of its own. Looked at from the pool, a program flooding its output
    /// wrote until the pool was free again, past its bound, and was then counted as timed out.
    @Test func theOutputBoundHoldsWhileTheCooperativePoolIsBusy() async throws {
        try await withTemporaryDirectory { folder in
            // About 20 MB/s: 4 MiB within a fraction of a second, 60 MB in the 3 s the pool is busy.
            let script = "while true; do head -c 1048576 /dev/zero; sleep 0.05; done"
            let command = BoundedProcess.Command(executable: "/bin/sh", arguments: ["-c", script], folder: folder,
                                                 timeout: .seconds(2), maxOutput: 64, maxWritten: 4 << 20)
            let running = Task { try await command.run() }
            try await Task.sleep(for: .milliseconds(100))
            // Every thread of the pool (and then some) blocked for 3 s, past the command's deadline.
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<(ProcessInfo.processInfo.activeProcessorCount + 2) {
                    group.addTask { usleep(3_000_000) }
                }
            }
            let outcome = try await running.value
            #expect(!outcome.timedOut && outcome.status == 128 + SIGKILL && outcome.truncated, "\(outcome.status) \(outcome.timedOut)")
            #expect(outcome.output.hasSuffix("bulwark: killed after writing more than 4194304 bytes of output"))
        }
    }

    @Test func aProgramThatWritesWithoutEndIsKilledBeforeItFillsTheDisk() async throws {
        try await withTemporaryDirectory { folder in
            let script = "sleep 300 & echo $! > \(folder)/child; exec yes flood"
            let command = BoundedProcess.Command(executable: "/bin/sh", arguments: ["-c", script], folder: folder,
                                                 timeout: .seconds(60), maxOutput: 64, maxWritten: 4 << 20)
            let outcome = try await command.run()
            #expect(!outcome.timedOut && outcome.status == 128 + SIGKILL && outcome.truncated)
            #expect(outcome.output.hasSuffix("bulwark: killed after writing more than 4194304 bytes of output"))
            #expect(try await gone(try pid(in: folder + "/child")), "what it started is killed too")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["child"], "no output file is left")

            let bounded = try BoundedProcess.Command(executable: "/bin/sh", arguments: ["-c", "head -c 3000000 /dev/zero; echo done"],
                                                     folder: folder, timeout: .seconds(60), maxOutput: 5,
                                                     maxWritten: 4 << 20).runBlocking()
            #expect(bounded.status == 0 && bounded.output == "done\n" && bounded.truncated)

            // Space taken without writing (the size stays 0) counts too.
            let reserved = try await BoundedProcess.Command(executable: "/bin/sh",
                                                            arguments: ["-c", "fallocate --keep-size -l 200M /proc/self/fd/1; sleep 30"],
                                                            folder: folder, timeout: .seconds(60), maxWritten: 4 << 20).run()
            #expect(reserved.status == 128 + SIGKILL && reserved.output.hasSuffix("more than 4194304 bytes of output"), "\(reserved)")
        }
    }

    @Test func aMissingProgramOrInputIsAFailureNamingIt() async throws {
        try await withTemporaryDirectory { folder in
            #expect {
                _ = try BoundedProcess.Command(executable: folder + "/missing", arguments: [], timeout: .seconds(5)).runBlocking()
            } throws: { "\($0)".contains("cannot run \(folder)/missing") }
            #expect {
                _ = try BoundedProcess.Command(executable: "/bin/cat", arguments: [], input: folder + "/absent", timeout: .seconds(5))
                    .runBlocking()
            } throws: { "\($0)".contains("cannot read its input \(folder)/absent") }
        }
    }
}
