@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// The daemon as a real process fixing the same drift over and over, its resident memory read
/// from /proc after every fix: after a warm-up, it must stay within a fixed bound. A count of
/// fixes, not a time (a busy machine fixes fewer in the same time): about two minutes on an idle
/// machine; `BULWARK_SOAK_SECONDS` makes it run at least that long (600 for the ten-minute soak).
@Suite(.serialized)
struct SoakTests {
    static var seconds: Double {
        ProcessInfo.processInfo.environment["BULWARK_SOAK_SECONDS"].flatMap(Double.init).map { max(0, $0) } ?? 0
    }
    /// Fixes before the first sample: heaptrack shows the live heap growing for about the first
    /// 40 s on an idle machine (caches, the audit index, the first packs): some 150 fixes there.
    static let warmUpFixes = 150
    /// Fixes sampled after the warm-up, at the least (about 300 in the rest of two minutes on an
    /// idle machine).
    static let minimumSamples = 250
    /// What the resident set may grow by between the end of the warm-up and the end of the run.
    static let boundKiB = 4 * 1024

    /// VmRSS of a process, in KiB.
    static func residentKiB(_ pid: pid_t) -> Int? {
        guard let status = try? read("/proc/\(pid)/status") else { return nil }
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    /// Rewrites a file in place (same inode and mode), as an editor would.
    static func rewrite(_ path: String, _ old: String, _ new: String) throws {
        let text = try read(path)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(text.replacingOccurrences(of: old, with: new).utf8))
        try handle.close()
    }

    static func median(_ values: ArraySlice<Int>) -> Int {
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }

    @Test func memoryStaysFlatWhileTheDaemonFixesDriftOverAndOver() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FaultSuiteTests.allowRepeatedFixes(s)
            let daemon = try DaemonTests().start(s)
            let pid = daemon.process.processIdentifier
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            #expect(DaemonTests().waitIdle(daemon))
            let initial = try s.auditCommits().count
            let config = s.host + "/etc/ssh/sshd_config"
            var samples: [Int] = []
            var fixes = 0
            let started = ContinuousClock.now
            while fixes < Self.warmUpFixes + Self.minimumSamples || ContinuousClock.now - started < .seconds(Self.seconds) {
                // Two drifts in turn, so that each is a new drift: a fix that failed is not tried
                // again for the same drift (a write racing the verification can fail one).
                let drift = fixes % 2 == 0 ? "PermitRootLogin yes" : "PermitRootLogin prohibit-password"
                let recorded = (try? s.auditCommits().count) ?? 0
                try Self.rewrite(config, "\nPermitRootLogin no\n", "\n\(drift)\n")
                // Fixed, and its record on the origin, before the next drift.
                guard daemon.wait(seconds: 60, until: {
                    ((try? read(config)) ?? "").contains("\nPermitRootLogin no\n") && ((try? s.auditCommits().count) ?? 0) > recorded
                }) else {
                    Issue.record("fix \(fixes + 1) did not come: \(daemon.log.suffix(2000))")
                    break
                }
                fixes += 1
                // After the warm-up, a sample per fix.
                if fixes > Self.warmUpFixes, let kib = Self.residentKiB(pid) { samples.append(kib) }
            }
            // Every fix is on the origin (the fault suite counts them exactly).
            #expect(daemon.wait(seconds: 60) { ((try? s.auditCommits().count) ?? 0) >= initial + fixes },
                    "\(fixes) fixes, \((try? s.auditCommits().count) ?? 0) - \(initial) records")
            let ids = try s.trailers("Bulwark-Id")
            #expect(Set(ids).count == ids.count, "no record twice")
            #expect(daemon.terminate() == 0)

            try #require(samples.count >= Self.minimumSamples, "too few fixes after the warm-up to judge: \(samples.count)")
            let baseline = Self.median(samples[..<5])
            let final = Self.median(samples[(samples.count - 5)...])
            let growth = final - baseline
            let perFix = Double(growth) / Double(samples.count - 5)
            print("soak: \(fixes) fixes in \(Int((ContinuousClock.now - started).components.seconds)) s, \(samples.count) after the warm-up; RSS \(baseline) KiB after warm-up, "
                  + "\(final) KiB at the end (\(growth) KiB, \(String(format: "%.2f", perFix)) KiB per fix), peak \(samples.max() ?? 0) KiB")
            #expect(growth < Self.boundKiB, "RSS grew by \(growth) KiB after warm-up over \(samples.count) fixes")
        }
    }
}
