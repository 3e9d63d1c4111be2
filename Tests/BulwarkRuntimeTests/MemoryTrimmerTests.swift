import BulwarkRuntime
import Testing

/// How many malloc arenas a command gets: the daemon two, a one-shot command one (a pass's peak
/// memory was each thread's arena keeping its own free pages).
@Suite struct MemoryTrimmerTests {
    static let cases: [([String], Int32)] = [
        (["bulwark", "run", "--repo", "/r"], 2),
        (["/usr/bin/bulwark", "run"], 2),
        (["bulwark", "apply", "--repo", "/r"], 1),
        (["bulwark", "plan", "--repo", "run"], 1), // "run" as an option's value
        (["bulwark"], 1),
        (["bulwark", "--help"], 1),
    ]

    @Test(arguments: cases)
    func theDaemonGetsTwoArenasEveryOtherCommandOne(arguments: [String], arenas: Int32) {
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
