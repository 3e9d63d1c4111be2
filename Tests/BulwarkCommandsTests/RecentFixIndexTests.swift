@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// The index of recent fixes (`state/recent-fixes`) feeds the flap breaker; whatever state it
/// is in, the breaker counts what the audit branch records.
@Suite struct RecentFixIndexTests {
    static let flapPolicy = "maxChangesPerCycle: 50\n  flapBreaker: {count: 2, period: 1h}"

    func indexPath(_ s: Scenario) -> String { s.state + "/" + RecentFixIndex.fileName }

    func bytes(_ path: String) throws -> [UInt8] {
        Array(try #require(FileManager.default.contents(atPath: path), "no \(path)"))
    }

    func localAuditHead(_ s: Scenario) throws -> String {
        try git("--git-dir", s.state + "/repository.git", "rev-parse", "refs/heads/bulwark/audit")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Puts PermitRootLogin back to yes, as something else on the host would.
    func driftBack(_ s: Scenario) throws {
        let sshd = s.host + "/etc/ssh/sshd_config"
        try write(sshd, try read(sshd).replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n"), mode: 0o600)
    }

    /// The index files a reader must not trust as they are, made from a good one (`good`, up to
    /// date with the branch) and an older one (`stale`, up to date with an earlier head).
    func untrustworthy(good: [UInt8], stale: [UInt8]) throws -> [(String, [UInt8]?)] {
        let index = try #require(RecentFixIndex.parse(good))
        var damaged = good
        // A changed byte inside an entry (a desired value): the checksum no longer matches.
        let at = try #require(good.lastIndex(of: UInt8(ascii: "1")))
        damaged[at] = UInt8(ascii: "7")
        var torn = good
        torn.removeLast(30)
        // Well-formed files that lie: no fixes, for a head not on the branch, or claiming a
        // window that starts after the breaker's.
        let foreign = RecentFixIndex(head: ObjectID(hex: String(repeating: "ab", count: 20)), since: 0, entries: [])
        let narrow = RecentFixIndex(head: index.head, since: Int64(Date().timeIntervalSince1970) + 60, entries: [])
        return [("missing", nil), ("damaged", damaged), ("torn", torn), ("stale", stale),
                ("foreign head", foreign.serialized()), ("narrower window", narrow.serialized()),
                ("not a file", Array("x".utf8))]
    }

    /// The file names the trust it was built with (review, High, of the drift episodes' file,
    /// which shared the flaw): one a run without keys built holds every fix anyone pushed, and a
    /// run with the key used it as it was, so made-up fixes made the breaker escalate a drift
    /// instead of fixing it. A run with the key builds it again from the records it trusts.
    @Test func aFileBuiltWithoutKeysIsNotUsedByARunWithThem() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "maxChangesPerCycle: 50", with: Self.flapPolicy)
            let key = try AuditTrailTests().makeKey(dir)
            func signed() throws -> ProcessOutput { try s.run("apply", "--secrets-dir", key.secrets, "--signing-key", key.path) }
            #expect(try signed().status == 0, "one signed fix")
            let built = try #require(RecentFixIndex.read(in: s.state))
            #expect(built.trust != "none")
            let fix = try #require(built.entries.first { $0.name.contains("permit-root-login") })
            // As a run without keys leaves it: two more fixes of root login, made up by someone who can push.
            var madeUp = [fix, fix]
            for index in madeUp.indices { madeUp[index].id = "01FQRGEDFASTF1X0000000000\(index)" }
            let keyless = RecentFixIndex(head: built.head, since: built.since, trust: "none", entries: built.entries + madeUp)
            try StateFile.replace(indexPath(s), with: keyless.serialized())
            try driftBack(s)
            let fixed = try signed()
            #expect(fixed.status == 0, "\(fixed.stdout)\(fixed.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"), "fixed, not escalated: \(fixed.stdout)")
            #expect(try !s.trailers("Bulwark-Decision").contains("escalated"))
            let rebuilt = try #require(RecentFixIndex.read(in: s.state))
            #expect(rebuilt.trust == built.trust && !rebuilt.entries.contains { $0.id.hasPrefix("01FQRGED") }, "\(rebuilt.entries.map(\.id))")
        }
    }

    @Test func aFlappingFixIsStillEscalatedWhateverStateTheIndexIsIn() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "maxChangesPerCycle: 50", with: Self.flapPolicy)
            let sshd = s.host + "/etc/ssh/sshd_config"
            // Round 1: fixed, and the index written (by the plan's read and the record's commit).
            #expect(try s.run("apply").status == 0)
            #expect(try read(sshd).contains("\nPermitRootLogin no\n"))
            let stale = try bytes(indexPath(s))
            try driftBack(s)
            // Round 2: fixed again (one earlier fix: under the limit of two).
            #expect(try s.run("apply").status == 0)
            #expect(try read(sshd).contains("\nPermitRootLogin no\n"))
            let good = try bytes(indexPath(s))
            let index = try #require(RecentFixIndex.parse(good))
            #expect(index.head?.hex == (try localAuditHead(s)), "up to date with the branch after the pass")
            #expect(index.entries.filter { $0.changes.contains { $0.property == "PermitRootLogin" && $0.desired == "no" } }.count == 2)
            try driftBack(s)
            let drifted = try s.snapshot()

            for (name, bytes) in try untrustworthy(good: good, stale: stale) {
                try? FileManager.default.removeItem(atPath: indexPath(s))
                if name == "not a file" {
                    try FileManager.default.createDirectory(atPath: indexPath(s), withIntermediateDirectories: false)
                } else if let bytes {
                    try Data(bytes).write(to: URL(fileURLWithPath: indexPath(s)))
                }
                let plan = try s.run("plan")
                #expect(plan.status == 2 && plan.stdout.contains("escalated"), "\(name): \(plan.stdout)\n\(plan.stderr)")
                if name != "not a file" {
                    // Written again from git: both fixes, up to date with the branch.
                    let rebuilt = RecentFixIndex.read(in: s.state)
                    #expect(rebuilt?.head?.hex == (try localAuditHead(s)), "\(name)")
                    #expect(rebuilt?.entries.filter { $0.changes.contains { $0.property == "PermitRootLogin" } }.count == 2, "\(name)")
                }
            }
            try? FileManager.default.removeItem(atPath: indexPath(s))

            // The harmful third fix is not made through a lying index either: escalated once, the host as it was.
            try Data(untrustworthy(good: good, stale: stale)[4].1 ?? []).write(to: URL(fileURLWithPath: indexPath(s)))
            let third = try s.run("apply")
            #expect(third.status == 0)
            #expect(third.stdout.contains("ESCALATE"))
            #expect(try s.snapshot() == drifted, "nothing on the host changed")
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "escalated" }.count == 1)
        }
    }

    @Test func aLegitimateFixGoesThroughAndTheNextProcessReadsNoRecordFromGit() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "maxChangesPerCycle: 50", with: Self.flapPolicy)
            let sshd = s.host + "/etc/ssh/sshd_config"
            #expect(try s.run("apply").status == 0)
            // A damaged index does not stop a fix that is not flapping: one earlier fix, limit two.
            try Data("bulwark-recent-fixes 1\nhead nonsense\n".utf8).write(to: URL(fileURLWithPath: indexPath(s)))
            try driftBack(s)
            let second = try s.run("apply")
            #expect(second.status == 0)
            #expect(!second.stdout.contains("ESCALATE"))
            #expect(try read(sshd).contains("\nPermitRootLogin no\n"), "fixed again")

            // The records the pass committed went into the index as they were written: the next
            // process takes both fixes from the file and reads no audit commit.
            let repo = try PolicyRepository(.init(url: URL(fileURLWithPath: s.origin).standardizedFileURL.path, stateDirectory: s.state))
            _ = try await repo.sync()
            let history = try await repo.recentFixes(since: Date().addingTimeInterval(-3600))
            let statistics = await repo.fixIndexStatistics
            let shown = "\(statistics) \((try? read(indexPath(s))) ?? "no file") \((try? localAuditHead(s)) ?? "")"
            #expect(statistics.loadedFromFile && statistics.rebuilds == 0 && statistics.commitsRead == 0, "\(shown)")
            let fixes = history.fixes.filter { $0.key.property == "PermitRootLogin" }
            #expect(fixes.count == 1 && fixes.first?.value.count == 2)
            #expect(fixes.first?.value.allSatisfy { $0.desired == "no" } == true)
        }
    }

    /// The daemon keeps the index in memory and writes its file every few seconds and when it
    /// stops, not at each drift's pass: the flap breaker still counts a fix the file does not
    /// hold yet (the third fix in the hour is escalated, not made), the second fix still goes
    /// through, and after SIGTERM the file is up to date with the branch.
    @Test func theDaemonsFlapBreakerCountsFixesItsFileDoesNotHoldYet() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "maxChangesPerCycle: 50", with: Self.flapPolicy)
            let sshd = s.host + "/etc/ssh/sshd_config"
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600", "--debounce", "50"],
                                           logPath: s.dir + "/daemon.log")
            defer { _ = daemon.terminate() }
            #expect(daemon.wait(seconds: 120) { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            // Each fix counts once it is verified and recorded, not when its bytes are on disk: a
            // drift written back in between (the test's own, as it once was under load) is a
            // change by another writer, and that fix fails and does not count.
            func verifiedFixes() -> Int {
                let lines = (try? git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,key=Bulwark-Result,valueonly,separator=%x20)",
                                      "bulwark/audit")) ?? ""
                return lines.split(separator: "\n").filter { $0 == "SSHDConfig/cis-5.1.20-permit-root-login verified" }.count
            }
            // The first cycle fixed the drift it found: fix one.
            #expect(daemon.wait(seconds: 30) { verifiedFixes() == 1 && (try? read(sshd).contains("\nPermitRootLogin no\n")) == true },
                    "\(daemon.log)")
            try driftBack(s)
            #expect(daemon.wait(seconds: 30) { verifiedFixes() == 2 && (try? read(sshd).contains("\nPermitRootLogin no\n")) == true },
                    "the second fix goes through: \(daemon.log)")
            try driftBack(s)
            #expect(daemon.wait(seconds: 30) { (try? s.trailers("Bulwark-Decision").contains("escalated")) == true },
                    "the third is escalated: \(daemon.log)")
            #expect(try read(sshd).contains("\nPermitRootLogin yes\n"), "and not made")
            #expect(daemon.terminate() == 0)
            let index = try #require(RecentFixIndex.read(in: s.state), "written at the stop")
            #expect(index.head?.hex == (try localAuditHead(s)), "up to date with the branch at the stop")
            #expect(index.entries.filter { $0.changes.contains { $0.property == "PermitRootLogin" && $0.desired == "no" } }.count == 2)
        }
    }

    @Test func fieldsWithSpacesControlBytesAndPercentSignsRoundTrip() throws {
        let entry = RecentFixIndex.Entry(
            commit: try #require(ObjectID(hex: String(repeating: "12", count: 20))), committed: 1_795_341_600, at: 1_795_341_600_142,
            id: "01AAAA", target: "web 1", kind: "FileContent", name: "motd%", changes: [
                .init(property: "content", desired: "line one\nline\ttwo 100%"), .init(property: "mode", desired: ""),
            ])
        let index = RecentFixIndex(head: entry.commit, since: 1_795_338_000, entries: [entry, entry])
        let bytes = index.serialized()
        #expect(RecentFixIndex.parse(bytes) == index)
        #expect(bytes.filter { $0 == 0x0a }.count == 7, "one line per entry")
        let wrongCount = Array(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\nend 2 ", with: "\nend 3 ").utf8)
        #expect(wrongCount != bytes)
        #expect(RecentFixIndex.parse(wrongCount) == nil)
    }
}
