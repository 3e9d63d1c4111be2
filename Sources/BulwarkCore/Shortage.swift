internal import Foundation
internal import Synchronization
#if canImport(Glibc)
internal import Glibc
#endif

/// Failures for want of the machine's resources rather than of anything in the target: out of
/// file descriptors (the process's or the system's), of memory or buffers, of processes (a
/// spawn's `EAGAIN`), or a read the disk failed (`EIO`). Counted where a module words one (the
/// host's `errnoText`, a child that cannot be started, a socket that cannot be opened), so
/// that a guard can tell it met one while it read (a guard on another thread meeting one
/// meanwhile counts too: then the machine is short for both).
public enum Shortage {
    public static let codes: Set<Int32> = [EMFILE, ENFILE, ENOMEM, ENOBUFS, EAGAIN, EIO]
    private static let seen = Atomic<UInt64>(0)

    public static var count: UInt64 { seen.load(ordering: .relaxed) }

    /// Counts `code` when it is one of `codes`.
    public static func note(_ code: Int32) {
        if codes.contains(code) { seen.add(1, ordering: .relaxed) }
    }

    /// Counts `error` when it is a shortage (`isShortage`): for an error a module words into
    /// its own, where the code would be lost.
    public static func note(_ error: any Error) {
        if isShortage(error) { seen.add(1, ordering: .relaxed) }
    }

    /// `strerror(code)`, `code` counted when it is a shortage: how a module words a failed call.
    public static func errnoText(_ code: Int32) -> String {
        note(code)
        return String(cString: strerror(code))
    }

    /// `errnoText` of `errno` now.
    public static func errnoText() -> String {
        errnoText(errno)
    }

    /// An error from Foundation or the standard library that carries one of `codes` (itself,
    /// or an error it names as its underlying one).
    public static func isShortage(_ error: any Error) -> Bool {
        if let posix = error as? POSIXError { return codes.contains(posix.code.rawValue) }
        var bridged: NSError? = error as NSError
        for _ in 0..<8 {
            guard let current = bridged else { return false }
            if current.domain == NSPOSIXErrorDomain { return codes.contains(Int32(truncatingIfNeeded: current.code)) }
            bridged = current.userInfo[NSUnderlyingErrorKey] as? NSError
        }
        return false
    }

    /// `BULWARK_FAULT_NO_DESCRIPTORS_IN_GUARD=WHAT`: the guard named WHAT (`file mode`,
    /// `account`, `sshd`, `firewall`, `package`, …, as its "could not judge" message names it)
    /// judges with the process out of file descriptors: the soft `RLIMIT_NOFILE` is 0 while it
    /// runs (every open, socket and spawn fails with `EMFILE`), and put back after. Off unless
    /// the environment names one; a test's fault, nothing a normal run does.
    static let noDescriptorsInGuard = ProcessInfo.processInfo.environment["BULWARK_FAULT_NO_DESCRIPTORS_IN_GUARD"]

    public static func judging<R>(_ what: String, _ body: () -> R) -> R {
        guard noDescriptorsInGuard == what, let limit = withoutDescriptors() else { return body() }
        defer { restore(limit) }
        return body()
    }

    public static func judging<R>(_ what: String, _ body: () async -> R) async -> R {
        guard noDescriptorsInGuard == what, let limit = withoutDescriptors() else { return await body() }
        defer { restore(limit) }
        return await body()
    }

    /// Sets the soft `RLIMIT_NOFILE` to 0; the limit before, or nil when it could not be read.
    private static func withoutDescriptors() -> rlimit? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        var none = limit
        none.rlim_cur = 0
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &none)
        return limit
    }

    private static func restore(_ limit: rlimit) {
        var limit = limit
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }
}

extension GuardVerdict {
    /// A guard's verdict when it could not read what it needs, `reason` saying so: it blocks,
    /// never allows; or, where the machine ran short while the guard read (`Shortage` counted
    /// one since `shortages`, or `error` is one), it leaves the change unjudged (`.unjudged`):
    /// the pass fails and no one is offered to approve what nothing judged.
    public static func cannotJudge(_ reason: String, _ error: any Error, since shortages: UInt64) -> GuardVerdict {
        Shortage.count != shortages || Shortage.isShortage(error) ? .unjudged(reason) : .block(reason)
    }
}
