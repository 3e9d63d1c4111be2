#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Taking an exclusive `flock` that may be held only for a moment.
public enum FileLock {
    /// How many times a lock found held is tried, 10 ms apart, before it counts as held.
    public static let attempts = 50

    /// Takes an exclusive `flock` on `fd` without blocking: 0 once taken, else the errno of
    /// the last attempt (`EWOULDBLOCK`: held). A lock found held is tried again, up to
    /// `attempts` times 10 ms apart: a child that any thread of this process is spawning
    /// (sshd -t, git) holds a copy of every descriptor until it execs (`O_CLOEXEC` closes
    /// them only then), so a lock this process has just let go, through a descriptor it has
    /// closed, can still look held for that moment. The waits block the calling thread: only
    /// when the lock is found held, at most half a second.
    public static func exclusive(_ fd: Int32, attempts: Int = attempts) -> Int32 {
        var code: Int32 = 0
        for attempt in 0..<max(1, attempts) {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return 0 }
            code = errno
            guard code == EWOULDBLOCK || code == EINTR, attempt + 1 < attempts else { break }
            usleep(10_000)
        }
        return code
    }
}
