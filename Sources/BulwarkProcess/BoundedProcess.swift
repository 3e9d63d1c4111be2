internal import BulwarkCore
internal import Foundation
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
internal import CLinux
#endif

/// Bulwark's one runner of other programs (sshd -t/-T, ssh-keygen, gpgv, apt and dpkg, an
/// operator's validation or reload command), so that none can hang Bulwark, fill its memory or
/// inherit what it should not:
///
/// - spawned with `posix_spawn`, no shell in between, and reaped with `waitpid`: not through
///   Foundation's `Process`, which learns of a child's exit through a descriptor the child's own
///   children inherit, so a reload command that starts a daemon would be waited for until that
///   daemon exits;
/// - in a process group of its own, so that a timeout stops it *and* what it started (apt's dpkg
///   and maintainer scripts): SIGTERM to the group at the deadline (on the monotonic clock: a
///   stepped wall clock neither ends it early nor lets it hang), SIGKILL after `grace`;
/// - every signal at its default and none blocked (the daemon ignores SIGTERM to handle it
///   through a dispatch source, and an ignored signal survives `exec`), no descriptor of
///   Bulwark's but its standard input (a file or /dev/null) and its output files;
/// - output to unlinked 0600 files (no pipe to fill and block the child, no name left behind),
///   of which a bounded head or tail is read back;
/// - the environment given, or Bulwark's own.
public enum BoundedProcess {
    /// The children running now, each the leader of its own process group and not reaped yet
    /// (so its group id names no other group): what `killRunning` stops.
    static let running = Mutex(Set<pid_t>())

    /// Kills (SIGKILL) the process group of every child running now, and what each started, for
    /// a process about to exit without waiting for them (the daemon's shutdown watchdog): a
    /// reload command left running would be reparented to init and outlive the daemon. Returns
    /// how many groups were signalled. Safe from any thread.
    @discardableResult
    public static func killRunning() -> Int {
        running.withLock { running in
            for pid in running { kill(-pid, SIGKILL) }
            return running.count
        }
    }

    /// What `run` gives back: the exit status and each output separately.
    public struct Result: Sendable, Equatable {
        public var status: Int32
        /// Standard output, at most `maxOutput` bytes of it, as UTF-8 (invalid bytes replaced).
        public var output: String
        /// Standard error likewise, without surrounding white space.
        public var errors: String
        /// Whether either output was longer than `maxOutput` and was cut.
        public var truncated: Bool
    }

    /// Why a run gave no result.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public enum Reason: Sendable, Equatable {
            /// The output files could not be made in the folder.
            case cannotCreateOutput
            /// The program could not be started (or its input opened).
            case cannotStart(String)
            /// Still running at the deadline: it was terminated (and killed if it ignored that).
            case timedOut
        }

        public var executable: String
        public var folder: String
        public var timeout: Duration
        public var reason: Reason
        /// What the system said (`strerror`), where the reason does not: why the output files
        /// could not be made (out of descriptors, a full disk).
        public var why: String?

        public var description: String {
            switch reason {
            case .cannotCreateOutput: "cannot create output files in \(folder)" + (why.map { ": " + $0 } ?? "")
            case .cannotStart(let why): "cannot run \(executable): \(why)"
            case .timedOut: "\(executable) did not finish within \(timeout.components.seconds) s"
            }
        }
    }

    /// Runs `executable` with `arguments`, its standard input from the file `input` (else
    /// /dev/null), for at most `timeout`; a run still going at the deadline is a `.timedOut`
    /// failure. Blocks the calling thread: for programs that finish in milliseconds.
    public static func run(
        _ executable: String, _ arguments: [String], input: String? = nil, folder: String,
        timeout: Duration, grace: Duration = .seconds(2), maxOutput: Int = 1 << 20
    ) throws(Failure) -> Result {
        let command = Command(executable: executable, arguments: arguments, input: input, folder: folder,
                              timeout: timeout, grace: grace, maxOutput: maxOutput, keep: .head)
        let outcome = try command.runBlocking(combined: false)
        guard !outcome.timedOut else { throw command.failure(.timedOut) }
        return Result(status: outcome.status, output: outcome.output,
                      errors: outcome.errors.trimmingCharacters(in: .whitespacesAndNewlines), truncated: outcome.truncated)
    }

    /// What a program Bulwark runs may see of Bulwark's environment when it is given none of its
    /// own: where programs are, the locale, the time zone, the home and temporary folders, and
    /// who it runs as. Nothing else: Bulwark's environment holds credentials, and a reload
    /// command may start a long-lived daemon that would keep them.
    public static func plainEnvironment() -> [String: String] {
        plainEnvironment(from: ProcessInfo.processInfo.environment)
    }

    static func plainEnvironment(from: [String: String]) -> [String: String] {
        var result = from.filter { key, _ in
            ["PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME"].contains(key) || key.hasPrefix("LC_")
        }
        if result["PATH"] == nil { result["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }
        return result
    }

    /// Which end of a long output is kept.
    public enum Keep: Sendable {
        /// The start (a probe's answer).
        case head
        /// The end (where apt, dpkg or a reload command says what failed).
        case tail
    }

    /// What a `Command` gives back: standard output and error together, in the order written.
    public struct Outcome: Sendable, Equatable {
        /// The exit code, or 128 + the signal that ended it.
        public var status: Int32
        /// Whether it was still running at the deadline and was stopped.
        public var timedOut: Bool
        /// At most `maxOutput` bytes (`keep` says which), as UTF-8 (invalid bytes replaced).
        public var output: String
        /// Standard error when it was kept apart (`run`); empty for a `Command`.
        public var errors: String
        /// Whether output was cut to `maxOutput`.
        public var truncated: Bool
    }

    /// A program to run, with its limits. A timeout is an outcome (`timedOut`), not a failure: the
    /// caller says what it means; only a program that cannot be started throws.
    public struct Command: Sendable {
        public var executable: String
        public var arguments: [String]
        /// The child's whole environment; nil: `plainEnvironment()`, never Bulwark's own, which
        /// holds its credentials (a git password, AWS keys, database passwords, notifier secrets).
        public var environment: [String: String]?
        /// A file read as standard input; nil: /dev/null.
        public var input: String?
        /// Where the (at once unlinked) output files are made; nil: the temporary folder.
        public var folder: String?
        /// The child's working folder; nil: Bulwark's own.
        public var workingDirectory: String?
        public var timeout: Duration
        /// Between SIGTERM and SIGKILL to the process group at the deadline; zero: SIGKILL at once.
        public var grace: Duration
        public var maxOutput: Int
        public var keep: Keep
        /// How many bytes the program may write to its output files, together, before it and
        /// everything it started are killed: they sit on disk (unlinked) until it ends, and a
        /// runaway or hostile program must not fill the disk Bulwark's records live on.
        public var maxWritten: Int

        public init(executable: String, arguments: [String], environment: [String: String]? = nil, input: String? = nil,
                    folder: String? = nil, timeout: Duration, grace: Duration = .seconds(2), maxOutput: Int = 64 << 10,
                    keep: Keep = .tail, maxWritten: Int = 64 << 20) {
            self.executable = executable
            self.arguments = arguments
            self.environment = environment
            self.input = input
            self.folder = folder
            self.timeout = timeout
            self.grace = grace
            self.maxOutput = maxOutput
            self.keep = keep
            self.maxWritten = maxWritten
        }

        /// Runs it to the end, waiting on the calling thread.
        public func runBlocking() throws(Failure) -> Outcome {
            try runBlocking(combined: true)
        }

        /// Runs it to the end on a thread of its own, not one of the cooperative pool: for
        /// programs that take minutes, such as apt. Looked at from the pool, a child was watched
        /// only when the pool had a thread free; a pool kept busy for a minute let a program
        /// that floods its output write for that minute, past its bound, and its deadline passed
        /// before the bound was looked at. Cancellation does not stop the program; its deadline does.
        /// Where no thread can be started, it runs on the calling one (`OwnThread`).
        public func run() async throws(Failure) -> Outcome {
            let result = await withCheckedContinuation { (continuation: CheckedContinuation<Swift.Result<Outcome, Failure>, Never>) in
                let work: @Sendable () -> Void = {
                    continuation.resume(returning: Swift.Result { () throws(Failure) -> Outcome in try self.runBlocking(combined: true) })
                }
                if !OwnThread.detached(work) { work() }
            }
            return try result.get()
        }

        func runBlocking(combined: Bool) throws(Failure) -> Outcome {
            let files = try OutputFiles(self, combined: combined)
            var child = try spawn(files)
            let exit = ChildExit(child.pid)
            var pause: UInt32 = 500
            while true {
                // The bound first: a child over it is killed for that, even past its deadline.
                files.enforce(command: self, on: &child)
                if child.poll() { break }
                exit.wait(upTo: pause)
                pause = min(pause * 2, 10_000)
            }
            return files.outcome(child, command: self)
        }

        func failure(_ reason: Failure.Reason, why: String? = nil) -> Failure {
            Failure(executable: executable, folder: folder ?? NSTemporaryDirectory(), timeout: timeout, reason: reason, why: why)
        }

        private func spawn(_ files: OutputFiles) throws(Failure) -> Child {
            let stdin: Int32
            if let input {
                stdin = open(input, O_RDONLY | O_CLOEXEC)
                guard stdin >= 0 else { throw failure(.cannotStart("cannot read its input \(input): \(Shortage.errnoText())")) }
            } else {
                stdin = open("/dev/null", O_RDONLY | O_CLOEXEC)
                guard stdin >= 0 else { throw failure(.cannotStart("cannot open /dev/null: \(Shortage.errnoText())")) }
            }
            defer { close(stdin) }

            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_adddup2(&actions, stdin, 0)
            posix_spawn_file_actions_adddup2(&actions, files.output, 1)
            posix_spawn_file_actions_adddup2(&actions, files.errors ?? files.output, 2)
            if let workingDirectory { _ = posix_spawn_file_actions_addchdir_np(&actions, workingDirectory) }
            // No other descriptor of Bulwark's reaches the child, close-on-exec or not.
            closeTheRest(&actions)

            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            var all = sigset_t()
            sigfillset(&all)
            var none = sigset_t()
            sigemptyset(&none)
            posix_spawnattr_setsigdefault(&attributes, &all)
            posix_spawnattr_setsigmask(&attributes, &none)
            posix_spawnattr_setpgroup(&attributes, 0)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

            let argv = ([executable] + arguments).map { strdup($0) } + [nil]
            let envp = (environment ?? BoundedProcess.plainEnvironment()).sorted { $0.key < $1.key }
                .map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer {
                for pointer in argv { free(pointer) }
                for pointer in envp { free(pointer) }
            }
            var pid: pid_t = 0
            let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
            guard spawned == 0 else { throw failure(.cannotStart(Shortage.errnoText(spawned))) }
            BoundedProcess.running.withLock { _ = $0.insert(pid) }
            return Child(pid: pid, deadline: ContinuousClock.now + timeout, grace: grace)
        }
    }

    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34), which Swift's Glibc module does not
    /// declare (it is a GNU extension): found once by name.
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let closeFrom: CloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: CloseFrom.self)
    }()

    /// Adds the closing of every descriptor above standard error: at once in the child where the
    /// C library can (race-free), else each one open now (glibc ignores a close of one that
    /// another thread closed meanwhile).
    static func closeTheRest(_ actions: inout posix_spawn_file_actions_t) {
        if let closeFrom, closeFrom(&actions, 3) == 0 { return }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let open = Int32(name), open > 2 { posix_spawn_file_actions_addclose(&actions, open) }
        }
    }

    /// Waits for a child's end, or for a pause between looks at it, whichever comes first:
    /// through a pidfd, which the kernel makes readable the moment the child ends. Sleeping the
    /// whole pause instead, with pauses doubling up to 10 ms, found an `sshd -T` of 8 ms ended
    /// at 15.5 ms: a 100-host apply's 16 probes, run in turn, waited about 0.1 s for nothing.
    /// Where there is no pidfd (a kernel before 5.3 or a seccomp filter refuses it, a C library
    /// before glibc 2.36 has no `pidfd_open`), it sleeps as before.
    final class ChildExit {
        let descriptor: Int32

        /// The child is not reaped yet, so its pid cannot name another process.
        init(_ pid: pid_t) { descriptor = Self.pidfdOpen.map { $0(pid, 0) } ?? -1 }

        private typealias PidfdOpen = @convention(c) (pid_t, UInt32) -> Int32
        /// glibc's `pidfd_open` (2.36), looked up as `closeFrom` is: Swift's Glibc module does not declare it.
        private static let pidfdOpen: PidfdOpen? = {
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pidfd_open") else { return nil }
            return unsafeBitCast(symbol, to: PidfdOpen.self)
        }()

        deinit { if descriptor >= 0 { close(descriptor) } }

        /// Returns when the child has ended or `microseconds` have passed (in whole milliseconds,
        /// at least one), or a signal came.
        func wait(upTo microseconds: UInt32) {
            guard descriptor >= 0 else {
                usleep(microseconds)
                return
            }
            var watched = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&watched, 1, Int32(max(1, (microseconds + 999) / 1_000)))
        }
    }

    /// A started child, looked at by `poll` until it is reaped.
    struct Child {
        let pid: pid_t
        let deadline: ContinuousClock.Instant
        let grace: Duration
        var killAt: ContinuousClock.Instant?
        var timedOut = false
        /// Killed, with what it started, for writing more than `maxWritten`.
        var overflowed = false
        var status: Int32 = 0

        /// Reaps the child if it has ended (true), else stops it if its time is up (false).
        mutating func poll() -> Bool {
            // Looked at without reaping: while the ended leader is a zombie its process group id
            // cannot be reused, so what it left running can still be killed safely by group.
            var info = siginfo_t()
            let looked = waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT)
            if looked == 0, info._sifields._sigchld.si_pid == pid {
                // After a timeout nothing it started stays (apt's dpkg, a script's sleep); after
                // a normal end its descendants are left alone (a reload may start a daemon).
                if timedOut || overflowed { kill(-pid, SIGKILL) }
                // Reaped under the lock `killRunning` takes: it never kills a group id reused since.
                BoundedProcess.running.withLock { running in
                    running.remove(pid)
                    while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                }
                return true
            }
            if looked < 0, errno != EINTR {
                // Not ours to wait for any more (reaped elsewhere): nothing more to learn.
                BoundedProcess.running.withLock { _ = $0.remove(pid) }
                status = -1
                return true
            }
            let now = ContinuousClock.now
            if !timedOut, !overflowed, now >= deadline {
                timedOut = true
                if grace > .zero {
                    kill(-pid, SIGTERM)
                    killAt = now + grace
                } else {
                    kill(-pid, SIGKILL)
                }
            } else if let at = killAt, now >= at {
                kill(-pid, SIGKILL)
                killAt = nil
            }
            return false
        }

        /// Kills the process group at once (its output outgrew its bound).
        mutating func overflow() {
            guard !overflowed else { return }
            overflowed = true
            kill(-pid, SIGKILL)
        }

        /// The exit code of a `waitpid` status: the code, or 128 + the signal that ended it.
        var exitCode: Int32 {
            status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        }
    }

    /// The child's output files, made and unlinked at once, closed when this goes.
    final class OutputFiles {
        let output: Int32
        let errors: Int32?

        init(_ command: Command, combined: Bool) throws(Failure) {
            let folder = command.folder ?? NSTemporaryDirectory()
            guard let output = Self.create(in: folder) else { throw command.failure(.cannotCreateOutput, why: Shortage.errnoText()) }
            self.output = output
            if combined {
                errors = nil
            } else {
                guard let errors = Self.create(in: folder) else {
                    let why = Shortage.errnoText()
                    close(output)
                    throw command.failure(.cannotCreateOutput, why: why)
                }
                self.errors = errors
            }
        }

        deinit {
            close(output)
            if let errors { close(errors) }
        }

        /// A new file (never an existing one or a link), 0600, unlinked as soon as it is open.
        private static func create(in folder: String) -> Int32? {
            let path = (folder.hasSuffix("/") ? folder : folder + "/") + ".bulwark-run-\(UUID().uuidString)"
            let descriptor = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { return nil }  // errno says why
            unlink(path)
            return descriptor
        }

        /// Bytes the output files hold on disk so far: their size, or the blocks allocated to them
        /// where that is more (`fallocate --keep-size` takes space without growing the size).
        var written: Int {
            [output, errors].compactMap(\.self).reduce(0) { total, descriptor in
                var info = stat()
                guard fstat(descriptor, &info) == 0 else { return total }
                let allocated = Int(info.st_blocks).multipliedReportingOverflow(by: 512)
                return total.addingReportingOverflow(max(Int(info.st_size), allocated.overflow ? .max : allocated.partialValue))
                    .partialValue
            }
        }

        /// Kills the child when its output files have outgrown `maxWritten`.
        func enforce(command: Command, on child: inout Child) {
            if !child.overflowed, written > command.maxWritten { child.overflow() }
        }

        func outcome(_ child: Child, command: Command) -> Outcome {
            var (output, outputCut) = Self.read(self.output, limit: command.maxOutput, keep: command.keep)
            if child.overflowed {
                output += "\nbulwark: killed after writing more than \(command.maxWritten) bytes of output"
                outputCut = true
            }
            let (errors, errorsCut) = self.errors.map { Self.read($0, limit: command.maxOutput, keep: command.keep) } ?? ("", false)
            return Outcome(status: child.exitCode, timedOut: child.timedOut, output: output, errors: errors,
                           truncated: outputCut || errorsCut)
        }

        /// At most `limit` bytes of the file (its start or its end), and whether there was more.
        private static func read(_ descriptor: Int32, limit: Int, keep: Keep) -> (String, Bool) {
            var info = stat()
            guard fstat(descriptor, &info) == 0 else { return ("", false) }
            let size = Int(info.st_size)
            let count = min(max(0, limit), size)
            let start = keep == .head ? 0 : size - count
            var bytes = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let got = bytes.withUnsafeMutableBytes { buffer -> Int in
                    guard let base = buffer.baseAddress else { return 0 }
                    return pread(descriptor, base + done, count - done, off_t(start + done))
                }
                if got < 0, errno == EINTR { continue }
                guard got > 0 else { break }
                done += got
            }
            return (String(decoding: bytes.prefix(done), as: UTF8.self), size > limit)
        }
    }
}
