internal import Glibc

/// A thread of its own for blocking work (a child process watched to its end), started with
/// `pthread_create`, whose failure is seen. Foundation's `Thread` ignores a failure to start one
/// (EAGAIN under a systemd TasksMax, a container's pids.max or RLIMIT_NPROC): its block never
/// runs, and whoever waits for it waits for ever. Here the caller is told, and runs the work
/// itself instead.
public struct OwnThread: Sendable {
    private let thread: pthread_t

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    private init(_ thread: pthread_t) { self.thread = thread }

    /// Starts `body` on a new thread, to be joined; nil when no thread could be started.
    public static func start(_ body: @escaping @Sendable () -> Void) -> OwnThread? {
        let box = Unmanaged.passRetained(Body(body))
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Body>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
        guard started == 0 else {
            box.release()
            return nil
        }
        return OwnThread(thread)
    }

    /// Runs `body` on a new thread that nobody joins; false when none could be started.
    public static func detached(_ body: @escaping @Sendable () -> Void) -> Bool {
        guard let thread = start(body) else { return false }
        pthread_detach(thread.thread)
        return true
    }

    /// Waits for the thread's end.
    public func join() {
        pthread_join(thread, nil)
    }
}
