import BulwarkRuntime
import Testing

/// How many malloc arenas a command gets: the daemon two, a one-shot command glibc's own limit
/// (one arena made a large pass slower).
@Suite struct MemoryTrimmerTests {
    static let cases: [([String], Int32?)] = [
        (["bulwark", "run", "--repo", "/r"], 2),
        (["/usr/bin/bulwark", "run"], 2),
        (["bulwark", "apply", "--repo", "/r"], nil),
        (["bulwark", "plan", "--repo", "run"], nil), // "run" as an option's value
        (["bulwark"], nil),
        (["bulwark", "--help"], nil),
    ]

    @Test(arguments: cases)
    func theDaemonGetsTwoArenasEveryOtherCommandGlibcsLimit(arguments: [String], arenas: Int32?) {
        #expect(MemoryTrimmer.arenaLimit(arguments: arguments) == arenas)
    }

    /// After a trim, the next one waits `every`; one comes again once it has passed.
    @Test func trimsAtMostOncePerInterval() {
        var trimmer = MemoryTrimmer(every: .seconds(1))
        let start = ContinuousClock.now
        let first = trimmer.afterCycle(at: start)
        #expect(first == MemoryTrimmer.available)
        let tooSoon = trimmer.afterCycle(at: start.advanced(by: .milliseconds(999)))
        #expect(!tooSoon)
        let later = trimmer.afterCycle(at: start.advanced(by: .seconds(1)))
        #expect(later == MemoryTrimmer.available)
    }
}
