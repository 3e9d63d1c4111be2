import BulwarkProcess
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing

/// `BoundedProcess.Command`, the runner apt, dpkg and an operator's validation or reload command
/// go through, with real processes: a timeout stops the whole process group, a command that
/// leaves a daemon running is not waited for, the child gets only the environment and
/// descriptors it is given and every signal at its default, and the end of a long output is kept.
@Suite(.timeLimit(.minutes(20))) struct BoundedCommandTests {
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
            // It floods only once the pool is busy (the file `go`): 8 MiB at once, twice its bound,
            // then nothing more. Its deadline is past the test's time limit: only the bound can stop it.
            let script = "echo $$ > \(folder)/started; while [ ! -e \(folder)/go ]; do sleep 0.05; done; "
                + "head -c 8388608 /dev/zero; exec sleep 300"
            let command = BoundedProcess.Command(executable: "/bin/sh", arguments: ["-c", script], folder: folder,
                                                 timeout: .seconds(600), maxOutput: 64, maxWritten: 4 << 20)
            let running = Task { try await command.run() }
            var started: Int32?
            for _ in 0..<600 where started == nil {
                started = (try? String(contentsOfFile: folder + "/started", encoding: .utf8))
                    .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                if started == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let child = try #require(started, "the program started")
            // Every thread of the pool (and then some) blocked until the program is gone (at most
            // 60 s once it floods): the task that makes the pool's threads all busy lets it flood.
            // Watched from the pool, nothing would stop it before these tasks give up.
            let block = PoolBlock(threads: ProcessInfo.processInfo.activeProcessorCount, go: folder + "/go")
            let goneWhileBusy = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<(block.threads + 2) {
                    group.addTask { block.block(until: child) }
                }
                return await group.reduce(true) { $0 && $1 }
            }
            #expect(goneWhileBusy, "killed while every thread of the pool was busy")
            let outcome = try await running.value
            #expect(!outcome.timedOut && outcome.status == 128 + SIGKILL && outcome.truncated, "\(outcome.status) \(outcome.timedOut)")
            #expect(outcome.output.hasSuffix("bulwark: killed after writing more than 4194304 bytes of output"))
        }
    }

    /// Tasks that block the cooperative pool's threads: the one that makes them all busy lets the
    /// program flood (creates the file `go`), and each waits for the program's end until 60 s
    /// after that.
    final class PoolBlock: Sendable {
        let threads: Int
        let go: String
        private let started = Atomic(0)
        private let flooding = Mutex<ContinuousClock.Instant?>(nil)

        init(threads: Int, go: String) {
            self.threads = threads
            self.go = go
        }

        /// Blocks the calling thread until `pid` is gone or a zombie (true), or until 60 s after
        /// the flood began or the test is cancelled (false).
        func block(until pid: Int32) -> Bool {
            if started.add(1, ordering: .relaxed).newValue == threads {
                flooding.withLock { $0 = .now }
                _ = FileManager.default.createFile(atPath: go, contents: nil)
            }
            while true {
                if kill(pid, 0) != 0 { return true }
                if (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") Z ") == true { return true }
                if let since = flooding.withLock({ $0 }), ContinuousClock.now - since > .seconds(60) { return false }
                if Task.isCancelled { return false }
                usleep(10_000)
            }
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
