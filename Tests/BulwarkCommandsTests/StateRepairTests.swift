@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// What a kill, a full disk or a damaged state clone leaves behind, and what Bulwark does next.
@Suite struct StateRepairTests {
    static func id(_ n: Int) -> String { "01STATE" + String(repeating: "0", count: 19 - String(n).count) + String(n) }

    /// The records of an unpushed audit commit, read back from the clone, are every file the
    /// commit adds or changes (found folder by folder, only where ids differ), byte for byte as
    /// git has them, and none it deletes: a commit that adds, deletes and changes the mode of
    /// files in nested folders.
    @Test func unpushedCommitsListEveryFileTheyAddOrChange() async throws {
        try await withTemporaryDirectory { dir in
            let work = dir + "/work"
            let commit = { (message: String) throws in
                try git("add", "-A", in: work)
                try git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", message, in: work)
            }
            try git("init", "-q", "-b", "main", work)
            try write(work + "/audit/2026/12/07/gone.json", "1\n")
            try write(work + "/audit/2026/12/07/mode.json", "2\n")
            try write(work + "/audit/2026/11/01/old.json", "4\n")
            try commit("one")
            let first = try git("rev-parse", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            try write(work + "/audit/2026/12/07/new.json", "5\n")
            try write(work + "/audit/2027/01/01/new.json", "6\n")
            try FileManager.default.removeItem(atPath: work + "/audit/2026/12/07/gone.json")
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: work + "/audit/2026/12/07/mode.json")
            try commit("two")
            try write(work + "/audit/2026/12/07/third.json", "8\n")
            try commit("three\n\nBulwark-Id: 01THIRD")
            try git("update-ref", "refs/heads/bulwark/audit", "HEAD", in: work)
            try git("update-ref", "refs/remotes/origin/bulwark/audit", first, in: work)

            let unpushed = try StateClone.unpushed(try Repository.open(at: work), auditBranch: "bulwark/audit")
            #expect(unpushed.map(\.message) == ["two\n", "three\n\nBulwark-Id: 01THIRD\n"])
            #expect(unpushed.map(\.id) == [nil, "01THIRD"])
            for (salvaged, revision) in zip(unpushed, ["HEAD~1", "HEAD"]) {
                let written = try git("diff-tree", "-r", "--no-renames", "--name-only", "--no-commit-id", "--diff-filter=d",
                                      revision, in: work).split(separator: "\n").map(String.init)
                #expect(Set(salvaged.files.keys) == Set(written))
                for path in written {
                    #expect(salvaged.files[path] == Array(try git("show", "\(revision):\(path)", in: work).utf8), "\(path)")
                }
            }
            #expect(Set(unpushed[0].files.keys) == ["audit/2026/12/07/mode.json",
                                                    "audit/2026/12/07/new.json", "audit/2027/01/01/new.json"])
        }
    }

    /// Opens the clone. A repository the test dropped a moment ago releases its state lock when
    /// the actor is deinitialized, which a job still finishing on another thread can delay under
    /// load: the open is retried for up to 5 s while the lock is still held, never longer.
    static func open(_ dir: String, state: String? = nil) throws -> PolicyRepository {
        var attempts = 0
        while true {
            do {
                return try PolicyRepository(.init(url: dir + "/origin.git", stateDirectory: state ?? dir + "/state"))
            } catch where "\(error)".contains("another bulwark process") && attempts < 100 {
                attempts += 1
                usleep(50_000)
            }
        }
    }

    static func originIDs(_ dir: String) throws -> [String] {
        try git("--git-dir", dir + "/origin.git", "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    @Test func aStaleReferenceLockLeftByAKillIsRemovedAndTheNextWriteWorks() async throws {
        try await withTemporaryDirectory { dir in
            try AuditPushRaceTests.makeOrigin(dir + "/origin.git", dir: dir)
            do {
                let repo = try Self.open(dir)
                _ = try await repo.sync()
                _ = try await repo.write(PolicyRepositoryTests().record(Self.id(1)))
            }
            // What a kill during a reference update leaves: the lock file, half written.
            let lock = dir + "/state/repository.git/refs/heads/bulwark/audit.lock"
            try write(lock, "3f2a")
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: lock)

            let repo = try Self.open(dir)
            #expect(!FileManager.default.fileExists(atPath: lock))
            #expect(await repo.repairs.contains { $0.contains("stale lock file") && $0.contains(lock) })
            _ = try await repo.sync()
            _ = try await repo.write(PolicyRepositoryTests().record(Self.id(2)))
            #expect(try await repo.publish() == .pushed(commits: 2))
            #expect(Set(try Self.originIDs(dir)) == [Self.id(1), Self.id(2)])
            try git("--git-dir", dir + "/origin.git", "fsck", "--strict")
            try git("--git-dir", dir + "/state/repository.git", "fsck", "--strict")
        }
    }

    /// What a kill during a fetch leaves: libgit2's temporary pack and its index lock in
    /// objects/pack; and what a kill during a flush of records leaves (Bulwark's temporary pack). Both are removed on open (`git count-objects` called them garbage), and the
    /// clone's real packs are left: the records written before are still pushed and read.
    @Test func aFetchsTemporaryPackLeftByAKillIsRemoved() async throws {
        try await withTemporaryDirectory { dir in
            try AuditPushRaceTests.makeOrigin(dir + "/origin.git", dir: dir)
            do {
                let repo = try Self.open(dir)
                _ = try await repo.sync()
                _ = try await repo.write(PolicyRepositoryTests().record(Self.id(1)))
            }
            let pack = dir + "/state/repository.git/objects/pack/"
            // And Bulwark's own, from a flush of records killed before its rename.
            let left = [pack + "pack_git2_bcc5520cebe93b67", pack + "pack_git2_bcc5520cebe9idx.lock", pack + "tmp_pack_bulwark_Q3x9Zk"]
            for file in left {
                try write(file, "PACK")
                try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: file)
            }
            let repo = try Self.open(dir)
            #expect(left.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
            #expect(await repo.repairs.contains { $0.contains("temporary pack file") && $0.contains(left[0]) })
            _ = try await repo.sync()
            #expect(try await repo.publish() == .pushed(commits: 1))
            #expect(Set(try Self.originIDs(dir)) == [Self.id(1)])
            let count = try git("--git-dir", dir + "/state/repository.git", "count-objects", "-v")
            #expect(count.contains("garbage: 0"), "\(count)")
            try git("--git-dir", dir + "/state/repository.git", "fsck", "--strict")
        }
    }

    /// Records an earlier version wrote straight to disk (a recovery's, about nine loose object
    /// files each, never packed: 6,200 files after 148 kill rounds) are packed when the state
    /// clone opens, under the state directory's lock: no loose object is left, `git fsck
    /// --strict` is clean, every record reads back with the git CLI and through Bulwark, and
    /// they are still pushed.
    @Test func looseObjectsAnEarlierVersionLeftArePackedWhenTheStateCloneOpens() async throws {
        try await withTemporaryDirectory { dir in
            try AuditPushRaceTests.makeOrigin(dir + "/origin.git", dir: dir)
            do {
                let repo = try Self.open(dir)
                _ = try await repo.sync()
                for n in 1...3 { _ = try await repo.write(PolicyRepositoryTests().record(Self.id(n))) }
            }
            let clone = dir + "/state/repository.git"
            #expect(try RecoveryRecordsTests.looseObjects(clone) >= 9, "written straight to disk")
            let repo = try Self.open(dir)
            #expect(try RecoveryRecordsTests.looseObjects(clone) == 0)
            try git("--git-dir", clone, "fsck", "--strict")
            for commit in try git("--git-dir", clone, "log", "--format=%H", "bulwark/audit").split(separator: "\n") {
                let id = try git("--git-dir", clone, "log", "-1", "--format=%(trailers:key=Bulwark-Id,valueonly)", String(commit))
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                guard !id.isEmpty else { continue }
                let path = try git("--git-dir", clone, "diff-tree", "--no-commit-id", "-r", "--name-only", "--root", String(commit))
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(try git("--git-dir", clone, "cat-file", "blob", "\(commit):\(path)").contains(id))
            }
            for n in 1...3 { #expect(try await repo.contains(recordID: Self.id(n))) }
            _ = try await repo.sync()
            #expect(try await repo.publish() == .pushed(commits: 3))
            #expect(Set(try Self.originIDs(dir)) == [Self.id(1), Self.id(2), Self.id(3)])
        }
    }

    @Test func aLockHeldByALiveWriterIsNotRemovedAndTheWriteFailsLoudly() async throws {
        try await withTemporaryDirectory { dir in
            try AuditPushRaceTests.makeOrigin(dir + "/origin.git", dir: dir)
            let repo = try Self.open(dir)
            _ = try await repo.sync()
            let before = try await repo.auditHistory().count
            // Taken after this process started: someone is updating the reference right now.
            let lock = dir + "/state/repository.git/refs/heads/bulwark/audit.lock"
            try write(lock, "")
            await #expect {
                _ = try await repo.write(PolicyRepositoryTests().record(Self.id(1)))
            } throws: { error in
                guard case .notRecorded(_, let state, .locked(let file)) = error as? PolicyRepository.Failure else { return false }
                return state == dir + "/state" && file.hasSuffix("bulwark/audit.lock")
                    && "\(error)".contains("state directory \(dir)/state")
            }
            #expect(FileManager.default.fileExists(atPath: lock), "a live writer's lock stays")
            #expect(try await repo.auditHistory().count == before, "nothing was recorded")
            try FileManager.default.removeItem(atPath: lock)
            _ = try await repo.write(PolicyRepositoryTests().record(Self.id(1)))
            #expect(try await repo.auditHistory().count == before + 1)
        }
    }

    @Test func aFullStateDirectoryMakesWriteThrowAndFreeingSpaceLetsItWorkAgain() async throws {
        try await withTemporaryDirectory { dir in
            try AuditPushRaceTests.makeOrigin(dir + "/origin.git", dir: dir)
            let mountPoint = dir + "/small"
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint])
            try #require(mounted.status == 0, "cannot mount a tmpfs: \(mounted.stderr)")
            defer { _ = try? run("/bin/umount", ["-l", mountPoint]) }

            let state = mountPoint + "/state"
            let repo = try Self.open(dir, state: state)
            _ = try await repo.sync()
            _ = try await repo.write(PolicyRepositoryTests().record(Self.id(1)))
            // Fill the file system to the last block.
            _ = try run("/bin/dd", ["if=/dev/zero", "of=\(mountPoint)/filler", "bs=4k"])
            let before = try await repo.auditHistory().count

            await #expect {
                _ = try await repo.write(PolicyRepositoryTests().record(Self.id(2)))
            } throws: { error in
                guard case .notRecorded(let id, let path, .full) = error as? PolicyRepository.Failure else { return false }
                return id == Self.id(2) && path == state && "\(error)".contains("the state directory \(state) is full")
            }
            #expect(try await repo.auditHistory().count == before, "nothing was recorded")

            try FileManager.default.removeItem(atPath: mountPoint + "/filler")
            _ = try await repo.write(PolicyRepositoryTests().record(Self.id(2)))
            #expect(try await repo.publish() == .pushed(commits: 2))
            #expect(Set(try Self.originIDs(dir)) == [Self.id(1), Self.id(2)])
            try git("--git-dir", state + "/repository.git", "fsck", "--strict")
        }
    }

    enum Damage: String, CaseIterable, Sendable {
        case deletedObject, truncatedObject, garbageReference, garbageConfig
    }

    /// A pushed record, an unpushed one, then damage: the next open repairs the clone from the
    /// origin and keeps the unpushed record, and later records go out as usual.
    @Test(arguments: Damage.allCases)
    func aDamagedStateCloneIsRepairedFromTheOriginWithoutLosingRecords(_ damage: Damage) async throws {
        try await withTemporaryDirectory { dir in
            try AuditPushRaceTests.makeOrigin(dir + "/origin.git", dir: dir)
            let clone = dir + "/state/repository.git"
            do {
                let repo = try Self.open(dir)
                _ = try await repo.sync()
                _ = try await repo.write(PolicyRepositoryTests().record(Self.id(1)))
                #expect(try await repo.publish() == .pushed(commits: 1))
                _ = try await repo.write(PolicyRepositoryTests().record(Self.id(2)))
            }
            let pushed = try git("--git-dir", clone, "rev-parse", "refs/remotes/origin/bulwark/audit")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let object = clone + "/objects/" + pushed.prefix(2) + "/" + pushed.dropFirst(2)
            switch damage {
            case .deletedObject:
                try FileManager.default.removeItem(atPath: object)
            case .truncatedObject:
                let handle = try #require(FileHandle(forWritingAtPath: object))
                try handle.truncate(atOffset: 7)
                try handle.close()
            case .garbageReference:
                try write(clone + "/refs/remotes/origin/bulwark/audit", "not a reference\n")
            case .garbageConfig:
                try write(clone + "/config", "[core\n\tbare = \"yes\n[[[\n")
            }

            let repo = try Self.open(dir)
            let repairs = await repo.repairs
            #expect(repairs.count == 1)
            #expect(repairs.first?.contains("failed its checks") == true)
            #expect(repairs.first?.contains("1 unpushed audit record(s) were read from it") == true)
            #expect(repairs.first?.contains("nothing was lost") == true)
            _ = try await repo.sync()
            _ = try await repo.write(PolicyRepositoryTests().record(Self.id(3)))
            #expect(try await repo.publish() == .pushed(commits: 2))
            #expect(try Self.originIDs(dir) == [Self.id(3), Self.id(2), Self.id(1)])
            try git("--git-dir", dir + "/origin.git", "fsck", "--strict")
            try git("--git-dir", clone, "fsck", "--strict")
            let aside = try FileManager.default.contentsOfDirectory(atPath: dir + "/state").filter { $0.hasPrefix("repository.git.damaged-") }
            #expect(aside.count == 1, "the damaged clone is kept, not deleted")
        }
    }

    /// A garbage audit reference: the records are found again among the clone's objects (the
    /// newest commit with a Bulwark-Id no other commit has for parent) and carried over.
    @Test func anUnreadableAuditBranchIsFoundAgainAmongTheObjects() async throws {
        try await withTemporaryDirectory { dir in
            try AuditPushRaceTests.makeOrigin(dir + "/origin.git", dir: dir)
            let clone = dir + "/state/repository.git"
            do {
                let repo = try Self.open(dir)
                _ = try await repo.sync()
                _ = try await repo.write(PolicyRepositoryTests().record(Self.id(1)))
            }
            try write(clone + "/refs/heads/bulwark/audit", "garbage\n")
            let repo = try Self.open(dir)
            let repair = try #require(await repo.repairs.first)
            #expect(repair.contains("1 unpushed audit record(s) were read from it"), "\(repair)")
            #expect(repair.contains("nothing was lost"))
            #expect(await repo.heldAside.isEmpty)
            // The clone works again.
            _ = try await repo.sync()
            _ = try await repo.write(PolicyRepositoryTests().record(Self.id(2)))
            #expect(try await repo.publish() == .pushed(commits: 2))
            #expect(try Self.originIDs(dir) == [Self.id(2), Self.id(1)])
            try git("--git-dir", clone, "fsck", "--strict")
        }
    }

    @Test func aDamagedCloneIsLeftUntouchedWhenTheOriginCannotBeReached() async throws {
        try await withTemporaryDirectory { dir in
            try AuditPushRaceTests.makeOrigin(dir + "/origin.git", dir: dir)
            let clone = dir + "/state/repository.git"
            do {
                let repo = try Self.open(dir)
                _ = try await repo.sync()
                _ = try await repo.write(PolicyRepositoryTests().record(Self.id(1)))
            }
            try write(clone + "/refs/remotes/origin/bulwark/audit", "garbage\n")
            try FileManager.default.moveItem(atPath: dir + "/origin.git", toPath: dir + "/away.git")
            #expect {
                _ = try Self.open(dir)
            } throws: { error in
                "\(error)".contains("cannot be repaired now") && "\(error)".contains("Nothing was changed")
            }
            #expect(try read(clone + "/refs/remotes/origin/bulwark/audit") == "garbage\n")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/state").allSatisfy { !$0.contains("damaged") })

            // With the origin back, the next open repairs it and keeps the unpushed record.
            try FileManager.default.moveItem(atPath: dir + "/away.git", toPath: dir + "/origin.git")
            let repo = try Self.open(dir)
            #expect(await repo.repairs.first?.contains("1 unpushed audit record(s)") == true)
            #expect(try await repo.publish() == .pushed(commits: 1))
            #expect(try Self.originIDs(dir) == [Self.id(1)])
        }
    }
}
