@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// A damaged state clone holding audit records never pushed, repaired through the binary: a
/// kill at any step of the repair, a missing or garbage HEAD, a garbage audit reference, and
/// records that cannot be read. No record is lost, and none is lost silently.
@Suite struct StateCloneRepairTests {
    /// An apply whose records stay in the state clone (the origin's audit branch locked by a
    /// killed git: exit 3), the lock then gone. Returns the ids of the unpushed records and the
    /// local audit head, read with the git CLI.
    static func unpushedRecords(_ s: Scenario) throws -> (ids: [String], head: String) {
        #expect(try s.run("apply").status == 0)
        try FaultSuiteTests.Config(s).drift()
        let lock = s.origin + "/refs/heads/bulwark/audit.lock"
        try write(lock, "")
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -300)], ofItemAtPath: lock)
        let kept = try s.run("apply")
        #expect(kept.status == 3, "\(kept.stdout)\(kept.stderr)")
        try FileManager.default.removeItem(atPath: lock)
        let clone = s.state + "/repository.git"
        let ids = try git("--git-dir", clone, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)",
                          "refs/remotes/origin/bulwark/audit..refs/heads/bulwark/audit")
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        #expect(!ids.isEmpty, "records kept locally")
        let head = try git("--git-dir", clone, "rev-parse", "refs/heads/bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
        return (ids, head)
    }

    static func asides(_ s: Scenario) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: s.state).filter { $0.hasPrefix("repository.git.damaged-") }.sorted()
            .map { s.state + "/" + $0 }
    }

    /// The records kept locally are on the origin's audit branch once, the clone is whole, no
    /// half-built clone is left, and every damaged clone set aside is marked as carried over.
    static func checkCarriedOver(_ s: Scenario, _ ids: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let onOrigin = try s.trailers("Bulwark-Id")
        for id in ids { #expect(onOrigin.filter { $0 == id }.count == 1, "record \(id) on the origin once", sourceLocation: sourceLocation) }
        try git("--git-dir", s.state + "/repository.git", "fsck", "--strict")
        let names = try FileManager.default.contentsOfDirectory(atPath: s.state)
        #expect(!names.contains { $0.contains(".rebuilding-") }, "\(names)", sourceLocation: sourceLocation)
        for aside in try asides(s) {
            #expect(FileManager.default.fileExists(atPath: aside + "/" + StateClone.carriedOverFile), "\(aside)", sourceLocation: sourceLocation)
        }
    }

    /// A kill (or SIGTERM) at each step of a repair of the state clone: after it was moved
    /// aside, once the new one is fetched, once the records are written in it, once it is in
    /// place. The next apply finishes the repair and pushes every record kept locally.
    @Test(arguments: ["aside", "fetched", "carried", "placed", "fetched:15"])
    func aKillDuringTheRepairOfTheStateCloneLosesNoRecord(_ stage: String) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (ids, _) = try Self.unpushedRecords(s)
            // A garbage reference: the clone fails its checks and is repaired from the origin.
            try write(s.state + "/repository.git/refs/remotes/origin/main", "zzz\n")
            let stopped = try s.run("apply", environment: ["BULWARK_FAULT_SIGNAL_IN_CLONE_REPAIR": stage])
            if !stage.contains(":") { #expect(stopped.status == SIGKILL, "\(stopped.stdout)\(stopped.stderr)") }
            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            try Self.checkCarriedOver(s, ids)
            #expect(try Self.asides(s).count == 1)
            #expect(try s.run("apply").status == 0)
        }
    }

    /// Only the clone's HEAD file deleted (its audit branch and objects whole): HEAD is written
    /// again, nothing is re-cloned, and the records kept locally go out.
    @Test func aStateCloneWithoutHeadKeepsItsRecords() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (ids, _) = try Self.unpushedRecords(s)
            try FileManager.default.removeItem(atPath: s.state + "/repository.git/HEAD")
            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect((next.stdout + next.stderr).contains("HEAD file of the state clone"), "\(next.stdout)\(next.stderr)")
            try Self.checkCarriedOver(s, ids)
            #expect(try Self.asides(s).isEmpty, "nothing to re-clone")
        }
    }

    /// A garbage HEAD: written again on open, the origin is fetched (not "using the last
    /// fetched revision", not blamed on the origin) and a policy change pushed since is read.
    @Test func aGarbageHeadIsWrittenAgainAndTheOriginIsFetched() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            try write(s.state + "/repository.git/HEAD", "garbage\n")
            try s.commitPolicy("notes.txt", "a policy change\n")
            let next = try s.run("apply")
            let said = next.stdout + next.stderr
            #expect(next.status == 0, "\(said)")
            #expect(said.contains("HEAD file of the state clone") && !said.contains("cannot fetch"), "\(said)")
            let fetched = try git("--git-dir", s.state + "/repository.git", "rev-parse", "refs/remotes/origin/main")
            #expect(fetched == (try git("--git-dir", s.origin, "rev-parse", "main")))
            #expect(try read(s.state + "/repository.git/HEAD").hasPrefix("ref: refs/heads/"))
            #expect(try s.run("apply").status == 0)
        }
    }

    /// A garbage audit reference in the state clone: the newest record commit no other commit
    /// has for parent is found again in the objects, and every record kept locally goes out.
    @Test func aGarbageAuditReferenceIsFoundAgainInTheObjects() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (ids, _) = try Self.unpushedRecords(s)
            try write(s.state + "/repository.git/refs/heads/bulwark/audit", "zzz\n")
            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect((next.stdout + next.stderr).contains("\(ids.count) unpushed audit record(s) were read from it"), "\(next.stdout)\(next.stderr)")
            #expect(next.stderr.components(separatedBy: "unpushed audit record(s) were read from it").count == 2, "said once: \(next.stderr)")
            try Self.checkCarriedOver(s, ids)
            let config = try read(try #require(try Self.asides(s).first) + "/config")
            #expect(config.contains("[remote \"origin\"]"), "a valid configuration is kept: \(config)")
        }
    }

    /// Records Bulwark cannot read (a garbage audit reference and a damaged object file: the
    /// newest record cannot be told): every run says where they are and exits 3, and the
    /// commands it gives, run as said, get them back on the next run.
    @Test func recordsThatCannotBeReadAreNotLostSilently() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (ids, head) = try Self.unpushedRecords(s)
            let clone = s.state + "/repository.git"
            try write(clone + "/refs/heads/bulwark/audit", "zzz\n")
            try FileManager.default.createDirectory(atPath: clone + "/objects/ee", withIntermediateDirectories: true)
            try write(clone + "/objects/ee/" + String(repeating: "e", count: 38), "not zlib")
            for round in 1...2 {
                let next = try s.run("apply")
                let said = next.stdout + next.stderr
                #expect(next.status == 3, "round \(round): \(said)")
                let aside = try #require(try Self.asides(s).first)
                #expect(said.contains("the damaged state clone \(aside) holds audit records that were never pushed"), "\(said)")
                #expect(said.contains("git --git-dir \(aside) fsck --lost-found"), "\(said)")
            }
            let aside = try #require(try Self.asides(s).first)
            #expect(try Self.asides(s).count == 1)
            // The commands the warning gives.
            let lost = try run("/usr/bin/git", ["--git-dir", aside, "fsck", "--lost-found"])
            #expect(lost.stdout.contains("dangling commit \(head)"), "\(lost.stdout)\(lost.stderr)")
            let listed = try git("--git-dir", aside, "log", "--format=%H %(trailers:key=Bulwark-Id,valueonly)", head)
            for id in ids { #expect(listed.contains(id), "\(listed)") }
            try git("--git-dir", aside, "update-ref", "refs/heads/bulwark/audit", head)
            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect((next.stdout + next.stderr).contains("read from the damaged state clone \(aside)"), "\(next.stdout)\(next.stderr)")
            try Self.checkCarriedOver(s, ids)
            #expect(try s.run("apply").status == 0)
        }
    }
}
