import Foundation

/// Gives memory the process has freed back to the system, at most once per `every` (monotonic).
///
/// Why the daemon needs it: glibc's malloc keeps a separate arena per thread that allocates
/// (NIO's event loops, Dispatch's workers, the cooperative pool, the file watcher), and keeps
/// what is freed in an arena for later reuse instead of returning it. A daemon that fixes drift
/// for hours allocates and frees on many threads, so its resident set crept up (about 24 KiB per
/// remediation in the soak) while heaptrack showed the live heap flat (5 MiB at its peak).
/// `malloc_trim(0)` releases the free pages of every arena. Looked up at run time: it is glibc's,
/// and elsewhere (musl, macOS) there is nothing to do.
package struct MemoryTrimmer: Sendable {
    package typealias Instant = ContinuousClock.Instant
    private typealias Trim = @convention(c) (Int) -> Int32

    package let every: Duration
    private var last: Instant?

    package init(every: Duration = .seconds(1)) {
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

    private typealias Option = @convention(c) (Int32, Int32) -> Int32

    /// At most `count` malloc arenas for the whole process (glibc's `M_ARENA_MAX`, -8). The limit
    /// binds only arenas made after it: a thread that has allocated already keeps its own, so
    /// this runs first thing in `main`, on the main thread (an async function of `bulwark`'s
    /// modules runs on a pool thread, which has allocated by then).
    /// Does nothing where `mallopt` is not glibc's, or when `MALLOC_ARENA_MAX` is set.
    package static func limitArenas(to count: Int32) {
        #if os(Linux)
        guard ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil,
              let symbol = dlsym(nil, "mallopt") else { return }
        _ = unsafeBitCast(symbol, to: Option.self)(-8, count)
        #endif
    }

    /// How many malloc arenas a `bulwark` invocation gets (`arguments` as `CommandLine.arguments`),
    /// nil for glibc's own limit (eight per core).
    ///
    /// - The daemon (`run`), two: with an arena per thread its resident set grew about 2 MiB over
    ///   70 remediations while its live heap stayed flat.
    /// - Every other command, glibc's. One arena was tried twice (the ninth and seventeenth
    ///   sessions): a 100-root apply's peak 2–3 MiB lower, but a 20,000-resource pass 5–14 %
    ///   slower, its threads taking turns at one lock (Benchmarks/README.md).
    package static func arenaLimit(arguments: [String]) -> Int32? {
        arguments.dropFirst().first == "run" ? 2 : nil
    }

    /// Whether glibc's `malloc_trim` is there to call.
    package static var available: Bool { trim != nil }

    /// After a cycle: trims when the last trim is at least `every` ago. Returns whether it did.
    @discardableResult
    package mutating func afterCycle(at now: Instant) -> Bool {
        if let last, last.duration(to: now) < every { return false }
        last = now
        guard let trim = Self.trim else { return false }
        _ = trim(0)
        return true
    }
}
