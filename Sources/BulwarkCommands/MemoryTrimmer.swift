internal import Foundation

/// Gives memory the process has freed back to the system, at most once per `every` (monotonic).
///
/// Why the daemon needs it: glibc's malloc keeps a separate arena per thread that allocates
/// (NIO's event loops, Dispatch's workers, the cooperative pool, the file watcher), and keeps
/// what is freed in an arena for later reuse instead of returning it. A daemon that fixes drift
/// for hours allocates and frees on many threads, so its resident set crept up (about 24 KiB per
/// remediation in the soak) while heaptrack showed the live heap flat (5 MiB at its peak).
/// `malloc_trim(0)` releases the free pages of every arena. Looked up at run time: it is glibc's,
/// and elsewhere (musl, macOS) there is nothing to do.
struct MemoryTrimmer: Sendable {
    typealias Instant = ContinuousClock.Instant
    private typealias Trim = @convention(c) (Int) -> Int32

    let every: Duration
    private var last: Instant?

    init(every: Duration = .seconds(1)) {
        self.every = every
    }

    private static let trim: Trim? = {
        #if os(Linux)
        guard let symbol = dlsym(nil, "malloc_trim") else { return nil }  // nil: RTLD_DEFAULT
        return unsafeBitCast(symbol, to: Trim.self)
        #else
        return nil
        #endif
    }()

    /// Whether glibc's `malloc_trim` is there to call.
    static var available: Bool { trim != nil }

    /// After a cycle: trims when the last trim is at least `every` ago. Returns whether it did.
    @discardableResult
    mutating func afterCycle(at now: Instant) -> Bool {
        if let last, last.duration(to: now) < every { return false }
        last = now
        guard let trim = Self.trim else { return false }
        _ = trim(0)
        return true
    }
}
