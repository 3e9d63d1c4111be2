@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing
import Synchronization

@Suite struct PolicyRepositoryTests {
    func record(_ id: String) -> AuditRecord {
        AuditRecord(id: id, controller: "c", target: "t", resource: "K/n", kind: "K", name: "n", severity: .high, risk: 6,
                    mode: .enforce, decision: .applied, result: .verified, reason: nil,
                    changes: [.init(property: "p", desired: "1", observedBefore: "0", observedAfter: "1")],
                    detectedAt: Date(timeIntervalSince1970: 1_795_341_600), appliedAt: nil, verifiedAt: Date(timeIntervalSince1970: 1_795_341_600.1),
                    desiredCommit: "abc", approver: nil, error: nil)
    }

    @Test func aPushThatMeetsAMovedOriginIsReplayedOnTop() async throws {
        try await withTemporaryDirectory { dir in
            let (s, repo) = try await synced(in: dir)
            _ = try await repo.write(record("01AAAAAAAAAAAAAAAAAAAAAAAA"))
            #expect(try await repo.publish() == .pushed(commits: 1))

            _ = try await repo.write(record("01BBBBBBBBBBBBBBBBBBBBBBBB"))
            // Meanwhile another Bulwark pushes to the audit branch.
            let other = try await PolicyRepositoryTests.otherWriter(s, dir: dir, id: "01CCCCCCCCCCCCCCCCCCCCCCCC")
            #expect(other == .pushed(commits: 1))

            #expect(try await repo.publish() == .pushed(commits: 1))
            let ids = try s.trailers("Bulwark-Id")
            #expect(ids == ["01BBBBBBBBBBBBBBBBBBBBBBBB", "01CCCCCCCCCCCCCCCCCCCCCCCC", "01AAAAAAAAAAAAAAAAAAAAAAAA"])
            try git("--git-dir", s.origin, "fsck", "--strict")
        }
    }

    /// The daemon's rhythm: one buffered pass (one flushed pack) and one push per fix, then
    /// `tidyPacks`. The packs are merged after the push, never in the flush on the fix's path:
    /// after each flush there are at most 15 + 1 of them (the flush merges only above 16), and
    /// after each tidy at most 14 + 1. Every record is on origin and fsck is clean.
    @Test func theDaemonMergesPacksAfterThePushNotBeforeIt() async throws {
        try await withTemporaryDirectory { dir in
            let (s, repo) = try await synced(in: dir)
            let clone = try Repository.open(at: s.state + "/repository.git")
            var ids: [String] = []
            var merged = 0
            for n in 0..<40 {
                let id = "01" + String(repeating: "A", count: 20) + String(format: "%04d", n)
                ids.append(id)
                // Through the protocol, as the reconciler calls it (the protocol's default answers false).
                #expect(await (repo as any AuditSink).beginBuffering())
                _ = try await repo.write(record(id))
                try await repo.endBuffering()
                let flushed = clone.packFiles().count
                #expect(flushed <= 16, "after the flush of record \(n): \(flushed) packs")
                #expect(try await repo.publish() == .pushed(commits: 1))
                await repo.tidyPacks()
                let tidied = clone.packFiles().count
                #expect(tidied <= 15, "after the tidy of record \(n): \(tidied) packs")
                if tidied < flushed { merged += 1 }
            }
            #expect(merged >= 2, "the packs were merged after pushes")
            #expect(Set(try s.trailers("Bulwark-Id")) == Set(ids))
            try git("--git-dir", s.origin, "fsck", "--strict")
            try git("--git-dir", s.state + "/repository.git", "fsck", "--strict")
        }
    }

    /// A flush that fails loses the records buffered in memory (their fixes stay open intents,
    /// recorded by the next start). Their sequence numbers were kept, so the next record left a
    /// gap that `verify-audit` reports as records removed from the branch, for good. The next
    /// record now follows the newest one on disk.
    @Test func aFailedFlushLeavesNoGapInTheSequence() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { dir in
            let (s, repo) = try await synced(in: dir)
            _ = try await repo.write(record("01AAAAAAAAAAAAAAAAAAAAAAAA"))
            let packs = s.state + "/repository.git/objects/pack"
            #expect(await (repo as any AuditSink).beginBuffering())
            _ = try await repo.write(record("01BBBBBBBBBBBBBBBBBBBBBBBB"))
            // No new file can be made in the pack folder, not even by root (ext4; a file system
            // without the attribute, tmpfs, cannot run this test).
            guard try run("/usr/bin/chattr", ["+i", packs]).status == 0 else { return }
            defer { _ = try? run("/usr/bin/chattr", ["-i", packs]) }
            await #expect(throws: (any Error).self) { try await repo.endBuffering() }
            #expect(try run("/usr/bin/chattr", ["-i", packs]).status == 0)
            // The next pass.
            #expect(await repo.beginBuffering())
            _ = try await repo.write(record("01CCCCCCCCCCCCCCCCCCCCCCCC"))
            try await repo.endBuffering()
            #expect(try await repo.publish() == .pushed(commits: 2))
            #expect(try s.trailers("Bulwark-Id") == ["01CCCCCCCCCCCCCCCCCCCCCCCC", "01AAAAAAAAAAAAAAAAAAAAAAAA"])
            #expect(try s.trailers("Bulwark-Sequence") == ["2", "1"])
            try git("--git-dir", s.origin, "fsck", "--strict")
        }
    }

    /// A policy commit (accept, pause, approve) whose push met a moved branch was replayed on
    /// the new head whatever the move changed: an accepted proposal's file silently undid a
    /// tightening pushed to that file meanwhile. Now a move that changed one of the commit's
    /// files stops it, nothing committed; a move that changed other files is replayed over.
    @Test func aPolicyCommitIsNotReplayedOverAChangeToItsOwnFile() async throws {
        try await withTemporaryDirectory { dir in
            let (s, repo) = try await synced(in: dir)
            let author = Signature(name: "Acceptor", email: "acceptor@example.org")
            // Someone else pushes to the file this commit writes, after Bulwark's last fetch.
            try s.commitPolicy("desired-state/zz-shared.yaml", "# tightened by hand\n", message: "tighten")
            let theirs = try git("--git-dir", s.origin, "rev-parse", "main")
            await #expect(throws: (any Error).self) {
                _ = try await repo.commitPolicy(["desired-state/zz-shared.yaml": Array("# the proposal\n".utf8)], message: "accept", author: author)
            }
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == theirs, "nothing committed over it")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/zz-shared.yaml") == "# tightened by hand\n")

            // A move that changed another file: replayed on top, both changes kept.
            try s.commitPolicy("desired-state/zz-other.yaml", "# another change\n", message: "other")
            _ = try await repo.commitPolicy(["approvals/zz-new.yaml": Array("# an approval\n".utf8)], message: "approve", author: author)
            #expect(try git("--git-dir", s.origin, "show", "main:approvals/zz-new.yaml") == "# an approval\n")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/zz-other.yaml") == "# another change\n")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/zz-shared.yaml") == "# tightened by hand\n")
        }
    }

    /// Records someone else put on the audit branch, fetched here, then taken off the origin
    /// (forged records an administrator removed): Bulwark pushed them back with its own next
    /// record, or replayed them signed with Bulwark's key. Only this instance's records are
    /// carried over now, known by where they are, not by their trailers: a forged one that
    /// names this instance is left out too. Its own unpushed record still goes out.
    @Test func aRecordTakenOffTheOriginIsNotPushedBack() async throws {
        try await withTemporaryDirectory { dir in
            let (s, repo) = try await synced(in: dir)
            _ = try await repo.write(record("01AAAAAAAAAAAAAAAAAAAAAAAA"))
            #expect(try await repo.publish() == .pushed(commits: 1))
            let kept = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try await PolicyRepositoryTests.otherWriter(s, dir: dir, id: "01FFFFFFFFFFFFFFFFFFFFFFFF") == .pushed(commits: 1))
            // A forger who read this instance's name from any record writes it into their own.
            let instance = try AuditTrail.load(stateDirectory: s.state).trail.instance
            let work = dir + "/forger"
            try git("clone", "-q", "-b", "bulwark/audit", s.origin, work)
            try git("commit", "-q", "--allow-empty", "-m", "remediate(K/n): forged\n\nBulwark-Id: 01GGGGGGGGGGGGGGGGGGGGGGGG\n"
                    + "\(AuditTrail.instanceTrailer): \(instance)\n\(AuditTrail.sequenceTrailer): 2\n", in: work)
            try git("push", "-q", "origin", "bulwark/audit", in: work)
            _ = try await repo.sync()
            // Taken off the origin.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", kept)
            _ = try await repo.write(record("01BBBBBBBBBBBBBBBBBBBBBBBB"))
            #expect(try await repo.publish() == .pushed(commits: 1))
            #expect(try s.trailers("Bulwark-Id") == ["01BBBBBBBBBBBBBBBBBBBBBBBB", "01AAAAAAAAAAAAAAAAAAAAAAAA"])
            try git("--git-dir", s.origin, "fsck", "--strict")
        }
    }

    /// A scenario and a policy repository on its origin, synced once.
    func synced(in dir: String) async throws -> (Scenario, PolicyRepository) {
        let s = try Scenario(in: dir)
        let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
        _ = try await repo.sync()
        return (s, repo)
    }

    static func otherWriter(_ s: Scenario, dir: String, id: String) async throws -> PolicyRepository.Publication {
        // A second state directory: its own clone, its own lock.
        let other = try PolicyRepository(.init(url: s.origin, stateDirectory: dir + "/state-other"))
        _ = try await other.sync()
        _ = try await other.write(PolicyRepositoryTests().record(id))
        return try await other.publish()
    }

    /// A child spawned by any thread holds a copy of the lock's descriptor until it execs: a
    /// lock this process has just let go is taken again, not refused as another process's.
    @Test func aLockLetGoIsTakenAgainWhileAnotherThreadSpawnsChildren() async throws {
        try await withTemporaryDirectory { dir in
            let stop = Mutex(false)
            let spawner = Thread {
                var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
                defer { free(argv[0]) }
                while !stop.withLock({ $0 }) {
                    var pid = pid_t()
                    if posix_spawn(&pid, "/bin/true", nil, nil, &argv, environ) == 0 { waitpid(pid, nil, 0) }
                }
            }
            spawner.start()
            defer { stop.withLock { $0 = true } }
            // Without the retry, about one in five of these was refused on this machine.
            for _ in 0..<300 {
                _ = try StateLock(dir + "/lock", directory: dir)
            }
        }
    }

    @Test func aSecondProcessOnTheSameStateDirectoryIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let first = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
            #expect {
                _ = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
            } throws: { error in
                "\(error)".contains("another bulwark process")
            }
            _ = first
        }
    }

    @Test func theEmbeddedBaselineMatchesTheShippedFiles() throws {
        let top = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for (path, contents) in Baseline.files() {
            let onDisk = try read(top.appendingPathComponent(path).path)
            #expect(Array(onDisk.utf8) == contents, "\(path) differs from the file on disk")
        }
        // Every shipped file is in ShippedBaseline's table (SwiftPM embeds it; the table names its path).
        for folder in ["controllers", "desired-state"] {
            let shipped = try FileManager.default.subpathsOfDirectory(atPath: top.appendingPathComponent(folder).path)
                .filter { $0.hasSuffix(".yaml") }.map { "\(folder)/\($0)" }
            #expect(Set(Baseline.files().keys.filter { $0.hasPrefix(folder + "/") }) == Set(shipped),
                    "add each shipped file to Sources/BulwarkBaseline/ShippedBaseline.swift")
        }
    }
}

