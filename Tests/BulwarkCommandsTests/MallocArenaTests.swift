import BulwarkTestSupport
import Foundation
import Testing

/// The daemon runs many threads (the cooperative pool, NIO's event loops, the file watcher), and
/// glibc gives each thread that allocates an arena of its own, which keeps its freed pages. It
/// runs with at most two, set on the main thread before any other thread allocates.
@Suite struct MallocArenaTests {
    /// glibc's arenas other than the main one, in a process's mappings: each is a 64 MiB
    /// reservation of anonymous memory at a 64 MiB boundary (readable in part, the rest not).
    static func extraArenas(pid: Int32) throws -> Int {
        var regions: [(start: UInt64, end: UInt64, anonymous: Bool)] = []
        for line in try read("/proc/\(pid)/maps").split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt64(bounds[0], radix: 16), let end = UInt64(bounds[1], radix: 16) else { continue }
            regions.append((start, end, fields.count < 6))
        }
        let size: UInt64 = 64 << 20
        var count = 0
        for (index, region) in regions.enumerated() where region.anonymous && region.start % size == 0 {
            var end = region.end
            var next = index + 1
            while end - region.start < size, next < regions.count, regions[next].anonymous, regions[next].start == end {
                end = regions[next].end
                next += 1
            }
            if end - region.start == size { count += 1 }
        }
        return count
    }

    /// A daemon after its first cycle and some requests: every thread that allocates has by then.
    func extraArenas(_ s: Scenario, in dir: String, environment: [String: String]) throws -> Int {
        let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"], environment: environment,
                                       logPath: dir + "/daemon-\(environment.count).log")
        let idle = daemon.wait(seconds: 60) {
            let answer = try? httpRequest(port: daemon.port, "GET", "/api/v1/status")
            return answer?.status == 200 && answer?.body.contains("\"lastCycleAt\"") == true
        }
        #expect(idle, "\(daemon.log)")
        for _ in 0..<20 { _ = try? httpRequest(port: daemon.port, "GET", "/api/v1/status") }
        let count = try Self.extraArenas(pid: daemon.process.processIdentifier)
        #expect(daemon.terminate() == 0)
        return count
    }

    #if os(Linux)
    @Test func theDaemonKeepsToTwoArenasAcrossItsThreads() async throws {
        // glibc's own setting would decide instead of Bulwark's.
        try #require(ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil)
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try extraArenas(s, in: dir, environment: [:]) <= 1)
            // The control: allowed eight, the same daemon makes more, and the count sees them.
            #expect(try extraArenas(s, in: dir, environment: ["MALLOC_ARENA_MAX": "8"]) > 1)
        }
    }
    #endif
}
