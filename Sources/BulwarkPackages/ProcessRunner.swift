internal import Foundation

/// Runs a program to completion with a time limit, its output kept bounded. (A local runner:
/// the project means to move one into a shared module; this one has only what apt needs.)
///
/// Spawned with `posix_spawn` rather than `Process`, for three things apt and maintainer
/// scripts need: every signal back at its default and none blocked (Bulwark's daemon ignores
/// SIGTERM to handle it through a dispatch source, and an ignored signal survives `exec`: a
/// service a postinst starts would otherwise ignore SIGTERM for good); its own process group, so
/// that a timeout stops apt *and* the dpkg and scripts under it; and no shell in between.
struct ProcessRunner: Sendable {
    struct Result: Sendable {
        var status: Int32
        /// Standard output and error together, in order, at most the last `keep` bytes.
        var output: String
        var timedOut: Bool
    }

    /// Bytes of output kept (the end, where apt and dpkg say what failed).
    static let keep = 64 << 10

    var environment: [String: String]

    /// Runs `executable` with `arguments`; never throws for a non-zero exit (the caller reads
    /// `status`), only when the program cannot be started.
    func run(_ executable: String, _ arguments: [String], timeout: Duration) async throws(PackagesError) -> Result {
        let folder = NSTemporaryDirectory() + "bulwark-apt-out-\(UUID().uuidString)"
        guard mkdir(folder, 0o700) == 0 else {
            throw PackagesError("cannot create a folder for its output: \(String(cString: strerror(errno)))", subject: executable)
        }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outPath = folder + "/output"
        let pid = try spawn(executable, arguments, output: outPath)
        // Monotonic: a wall clock stepped meanwhile neither kills it early nor lets it hang.
        let deadline = ContinuousClock.now + timeout
        var timedOut = false
        var status: Int32 = 0
        while true {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid { break }
            if done < 0 && errno != EINTR { status = -1; break }
            if !timedOut && ContinuousClock.now >= deadline {
                timedOut = true
                kill(-pid, SIGTERM)
                let grace = ContinuousClock.now + .seconds(5)
                while waitpid(pid, &status, WNOHANG) == 0 && ContinuousClock.now < grace {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                kill(-pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let bytes = (try? DpkgPaths.readTail(outPath, keep: Self.keep)) ?? []
        return Result(status: Self.exitCode(status), output: String(decoding: bytes, as: UTF8.self), timedOut: timedOut)
    }

    /// The exit status of a `waitpid` status: the code, or 128 + the signal that ended it.
    static func exitCode(_ status: Int32) -> Int32 {
        status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    private func spawn(_ executable: String, _ arguments: [String], output: String) throws(PackagesError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

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
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw PackagesError("cannot start: \(String(cString: strerror(result)))", subject: executable)
        }
        return pid
    }
}

extension DpkgPaths {
    /// The last `keep` bytes of a file.
    static func readTail(_ path: String, keep: Int) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size > UInt64(keep) ? size - UInt64(keep) : 0)
        return Array(try handle.readToEnd() ?? Data())
    }
}
