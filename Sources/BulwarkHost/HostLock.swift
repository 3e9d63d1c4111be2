internal import Foundation
internal import CLinux
internal import BulwarkCore
internal import Synchronization

/// The per-target lock: `run/bulwark/host.lock` inside the target root, held with
/// `flock(LOCK_EX | LOCK_NB)` for one apply, so that two Bulwarks (different state folders,
/// different machines sharing a root) never change one target at once. The holder writes its
/// pid into the file so the other can name it. Released (and blanked) when this is released;
/// the kernel releases it if the process dies.
///
/// The pid is written over the file's `recordSize` bytes and blanked with spaces, never
/// truncated: truncating the file at every take and release freed its block and the next pid
/// allocated it again, for every fix (ftruncate alone was 2 % of a 20,000-fix pass's CPU by perf).
final class HostLock {
    static let path = ["run", "bulwark", "host.lock"]
    /// How many times taking the lock is tried, 10 ms apart, before it counts as held.
    static let attempts = FileLock.attempts
    private let fd: Int32
    private let root: String

    /// The roots whose lock this process holds. While it holds one, every temporary file of
    /// Bulwark's naming in that root is a leftover of a killed writer (only the lock's holder
    /// writes there, and it removes its own), whatever its age.
    private static let held = Mutex<Set<String>>([])

    static func isHeld(_ root: HostRoot) -> Bool { held.withLock { $0.contains(root.path) } }

    init(_ root: HostRoot) throws(HostError) {
        let display = root.full(Self.path)
        // In folders only root (or Bulwark's user) may write in, and a file of theirs: whoever
        // could write in `run` could hold the lock for ever and stop every fix, while the
        // message blamed another Bulwark (outside review).
        let folder = try root.openFolderNoFollow(Array(Self.path.dropLast()), create: 0o700, trusted: true,
                                                 keeps: "the target's lock, which whoever holds it stops every fix with")
        let fd = openat(folder.fd, Self.path[2], O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw HostError("cannot open the target's lock: \(errnoText())", path: display) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & FileType.mask == FileType.regular else {
            close(fd)
            throw HostError("the target's lock is not a regular file", path: display)
        }
        guard info.st_uid == 0 || info.st_uid == geteuid() else {
            close(fd)
            throw HostError("the target's lock file belongs to uid \(info.st_uid), not to root: whoever owns it can hold it and stop "
                            + "every fix; remove it", path: display)
        }
        // Readable by others, anyone could open it and flock it (third review): root's alone.
        if info.st_mode & 0o077 != 0 { _ = fchmod(fd, 0o600) }
        // A process this one forks (sshd -t, for another target worked on in parallel) shares
        // the lock's open file until it execs: a holder that goes away within moments is
        // waited for, briefly, before the lock counts as another Bulwark's.
        let code = FileLock.exclusive(fd, attempts: Self.attempts)
        guard code == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            close(fd)
            guard code == EWOULDBLOCK else { throw HostError("cannot lock the target: \(errnoText(code))", path: display) }
            let pid = String(decoding: buffer.prefix(max(0, count)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let holder = Int32(pid).map { "pid \($0)" } ?? "a process that has not written its pid yet"
            throw HostError("another Bulwark (\(holder)) is changing this target; not applied, try again when it has finished",
                            path: display, code: .busy)
        }
        Self.write(Self.record(getpid()), to: fd)
        // Longer content (an older Bulwark's or anyone's) would outlive the pid written over it.
        if fstat(fd, &info) == 0, info.st_size > Self.recordSize { _ = ftruncate(fd, off_t(Self.recordSize)) }
        self.fd = fd
        self.root = root.path
        Self.held.withLock { _ = $0.insert(root.path) }
    }

    deinit {
        Self.held.withLock { _ = $0.remove(root) }
        Self.write(Self.record(nil), to: fd)
        close(fd)
    }

    /// Bytes of the lock file's content: a pid, spaces, a newline.
    static let recordSize = 16

    /// `pid` left-aligned in `recordSize` bytes, or only spaces: a reader trims them.
    static func record(_ pid: pid_t?) -> [UInt8] {
        let text = Array((pid.map { String($0) } ?? "").utf8.prefix(recordSize - 1))
        return text + [UInt8](repeating: UInt8(ascii: " "), count: recordSize - 1 - text.count) + [UInt8(ascii: "\n")]
    }

    private static func write(_ bytes: [UInt8], to fd: Int32) {
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }
}

extension HostRoot {
    /// How many times an apply is tried when a file it writes changed since it was read.
    static let conflictAttempts = 3

    /// The target's lock; `TargetBusy` when another process holds it (not a failed fix: nothing
    /// was tried, and the reconciler records nothing but says who holds it).
    private func takeLock() throws -> HostLock {
        let result = Result { () throws(HostError) -> HostLock in try HostLock(self) }
        switch result {
        case .success(let lock): return lock
        case .failure(let error) where error.code == .busy: throw TargetBusy(error.description)
        case .failure(let error): throw error
        }
    }

    /// Runs one apply on this target: holding the target's lock, and again from a fresh read
    /// (at most `conflictAttempts` times) when another writer changed a file between Bulwark's
    /// read and its write. The other writer's content is never overwritten.
    ///
    /// Runs on a thread of its own (`Blocking`): an apply waits for the disk (fsync) and for
    /// `sshd -t`, and on Swift's cooperative threads (one per core) that wait would keep every
    /// other target worked on in parallel from running.
    func applying<R: Sendable>(fixing kind: String? = nil, _ body: @escaping @Sendable () throws -> R) async throws -> R {
        // The counter of sshd runs and the cache of sshd's answers (a test's own) follow the
        // fix onto the blocking thread.
        // So does the step's change gate (`ChangeGate`), which a write passes right before its rename,
        // and the kind fixed (`kind`), which the crash tests' fault hooks go by (`HostFaults`).
        let counter = SSHDProbeCounter.current, cache = SSHDProbeCache.current, gate = ChangeGate.current
        let fixing = kind ?? HostFaults.fixing
        return try await Blocking.run {
            try ChangeGate.$current.withValue(gate) {
                try HostFaults.$fixing.withValue(fixing) {
                    try SSHDProbeCache.$current.withValue(cache) { try SSHDProbeCounter.$current.withValue(counter) { try applyingHere(body) } }
                }
            }
        }
    }

    private func applyingHere<R>(_ body: () throws -> R) throws -> R {
        let lock = try takeLock()
        defer { withExtendedLifetime(lock) {} }
        var attempt = 1
        while true {
            do {
                return try body()
            } catch let error as HostError where error.code == .conflict {
                guard attempt < Self.conflictAttempts else {
                    throw HostError("\(error.message) (another writer changed it \(attempt) times while Bulwark was fixing it; "
                                    + "left as that writer made it)", path: error.path, code: .conflict)
                }
                attempt += 1
            }
        }
    }
}
