@testable import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// One pack per flushed pass would pile up (and stay mapped) in a daemon: they are merged into
/// one once there are more than a bound, with every object still readable and git content.
@Suite struct PackConsolidationTests {
    let t = PackTests()

    /// `passes` flushed passes of one record each on `refs/heads/bulwark/audit`; returns the head.
    func flushedPasses(_ repo: Repository, _ passes: ClosedRange<Int>, from start: ObjectID?) throws -> ObjectID? {
        var head = start
        for index in passes {
            try repo.beginObjectBuffer()
            let commit = try repo.writeCommit(adding: t.record(index), parent: head, message: "r\(index)\n\nBulwark-Id: r\(index)\n",
                                              author: t.author)
            try repo.flushObjectBuffer(tip: commit, base: head)
            try repo.updateReference("refs/heads/bulwark/audit", to: commit, expected: head, message: "test")
            head = commit
        }
        return head
    }

    /// One flushed pass of records 1 to 100 (one pack, larger than a pass of one); returns the head.
    func largePass(_ repo: Repository) throws -> ObjectID? {
        try repo.beginObjectBuffer()
        var head: ObjectID?
        for index in 1...100 {
            head = try repo.writeCommit(adding: t.record(index), parent: head, message: "r\(index)\n\nBulwark-Id: r\(index)\n",
                                        author: t.author)
        }
        let tip = try #require(head)
        try repo.flushObjectBuffer(tip: tip, base: nil)
        try repo.updateReference("refs/heads/bulwark/audit", to: tip, expected: nil, message: "test")
        return tip
    }

    @Test func manySmallPacksBecomeOneAndEveryObjectIsStillThere() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let head = try #require(try flushedPasses(repo, 1...6, from: nil))
            // At or under the bound nothing is done.
            #expect(try repo.consolidatePacks(bound: 6) == 0)
            #expect(t.packs(path).count == 6)

            #expect(try repo.consolidatePacks(bound: 5) == 6)
            #expect(t.packs(path).count == 1)
            // Readable by this process (its object database was opened again) and by git.
            #expect(try repo.commitInfo(head).trailer("Bulwark-Id") == "r6")
            #expect(try repo.file(at: head, path: "audit/2026/12/01/1/1/r1.json") == Array("{\"id\": \"r1\"}\n".utf8))
            try git("--git-dir", path, "fsck", "--strict")
            let ids = try git("--git-dir", path, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
                .split(separator: "\n").map(String.init)
            #expect(ids == (1...6).reversed().map { "r\($0)" })
            // Writing and flushing go on as before.
            let next = try #require(try flushedPasses(repo, 7...7, from: head))
            #expect(t.packs(path).count == 2)
            #expect(try repo.commitInfo(next).parents == [head])
            try git("--git-dir", path, "fsck", "--strict")
        }
    }

    /// The packs left grow geometrically: a pack is written again only once the packs smaller
    /// than it add up to half its size. Merging every small pack at each consolidation wrote a
    /// daemon's whole history again every few fixes (and read it into memory).
    @Test func aLargerPackIsNotWrittenAgainUntilThePacksBelowItAddUpToHalfOfIt() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            // One pass of 100 records (one pack), then 8 passes of one.
            var head = try largePass(repo)
            let large = try #require(t.packs(path).first)
            head = try flushedPasses(repo, 101...108, from: head)
            #expect(t.packs(path).count == 9)
            #expect(try repo.consolidatePacks(bound: 8) == 8)
            #expect(t.packs(path).count == 2)
            #expect(t.packs(path).contains(large), "the large pack is left as it is")
            // Eight more: seven to leave half the bound, then the eighth and the pack of the first
            // eight (each smaller than twice those taken); the large one is more than twice all
            // of them, and stays.
            head = try flushedPasses(repo, 109...116, from: head)
            #expect(try repo.consolidatePacks(bound: 8) == 9)
            #expect(t.packs(path).count == 2)
            #expect(t.packs(path).contains(large))
            try git("--git-dir", path, "fsck", "--strict")
            let ids = try git("--git-dir", path, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
                .split(separator: "\n").map(String.init)
            #expect(ids == (1...116).reversed().map { "r\($0)" })
            #expect(try repo.commitInfo(try #require(head)).trailer("Bulwark-Id") == "r116")
        }
    }

    /// At the daemon's bound, a consolidation killed before its removals and run again: the
    /// first run's pack is one more candidate, chosen with the packs it merged (it is no larger
    /// than twice them), and the same pack is written again, so the old ones go and the large
    /// pack stays. Nothing is lost either way.
    @Test func aConsolidationRunAgainAtTheDaemonsBoundEndsWithTheSamePacks() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let folder = path + "/objects/pack/"
            let repo = try Repository.create(at: path, bare: true)
            var head = try largePass(repo)
            let large = try #require(t.packs(path).first)
            head = try flushedPasses(repo, 101...112, from: head)
            let saved = dir + "/saved"
            try FileManager.default.createDirectory(atPath: saved, withIntermediateDirectories: false)
            for file in try FileManager.default.contentsOfDirectory(atPath: folder) {
                try FileManager.default.copyItem(atPath: folder + file, toPath: saved + "/" + file)
            }
            #expect(try repo.consolidatePacks(bound: 8) == 12)
            let after = Set(t.packs(path))
            #expect(after.count == 2 && after.contains(large))
            // The kill: the merged packs are all back beside the new one.
            for file in try FileManager.default.contentsOfDirectory(atPath: saved)
            where !FileManager.default.fileExists(atPath: folder + file) {
                try FileManager.default.copyItem(atPath: saved + "/" + file, toPath: folder + file)
            }
            #expect(t.packs(path).count == 14)
            let again = try Repository.open(at: path)
            #expect(try again.consolidatePacks(bound: 8) == 12)
            #expect(Set(t.packs(path)) == after)
            try git("--git-dir", path, "fsck", "--strict")
            let ids = try git("--git-dir", path, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
                .split(separator: "\n").map(String.init)
            #expect(ids == (1...112).reversed().map { "r\($0)" })
        }
    }

    /// A FIFO named as a pack and its index (someone who can write the origin's pack folder)
    /// does not hang the merge, which read files whole: it is refused at once, and every pack
    /// stays as it was.
    @Test(.timeLimit(.minutes(20))) func aFIFOInThePackFolderIsRefusedWithoutWaiting() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            _ = try flushedPasses(repo, 1...3, from: nil)
            let before = t.packs(path).sorted()
            let base = path + "/objects/pack/pack-" + String(repeating: "0", count: 40)
            #expect(mkfifo(base + ".idx", 0o600) == 0 && mkfifo(base + ".pack", 0o600) == 0)
            #expect(throws: GitError.self) { try repo.consolidatePacks(bound: 1) }
            #expect(t.packs(path).sorted() == (before + ["pack-" + String(repeating: "0", count: 40) + ".pack"]).sorted())
        }
    }

    /// How many of the smallest candidate packs one consolidation takes.
    @Test(arguments: [
        // Within the room: none.
        ([1, 1, 1, 1, 1, 1, 1, 1], 8, 0),
        ([], 8, 0),
        // Down to half the room, then every pack below twice those taken.
        ([1, 1, 1, 1, 1, 1, 1, 1, 100], 8, 8),
        ([1, 1, 1, 1, 1, 1, 1, 1, 10], 8, 9),
        ([1, 1, 1, 1, 1, 2, 4, 30, 100], 8, 7),
        // Already geometric (each at least twice all below it): only what the room asks for.
        ([1, 2, 6, 18, 54, 162, 486, 1458, 4374], 8, 6),
        // A room under 2 (a bound under 4): all of them, as before.
        ([1, 1, 50], 1, 3),
        ([1, 50], 0, 2),
    ])
    func mergeCount(sizes: [Int], room: Int, expected: Int) {
        #expect(Repository.mergeCount(ascending: sizes, room: room) == expected)
    }

    /// Packs that are never merged (a `.keep` file, or past `small`) count against the bound,
    /// but the candidates keep half of it: past the bound of such packs, a consolidation does
    /// not merge every candidate at every call.
    @Test func packsThatAreNeverMergedLeaveTheOthersHalfTheBound() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            var head = try flushedPasses(repo, 1...8, from: nil)
            for pack in t.packs(path) {
                try write(path + "/objects/pack/" + pack.dropLast(".pack".count) + ".keep", "")
            }
            head = try flushedPasses(repo, 9...12, from: head)
            // 12 packs, bound 8: 8 kept; the 4 others fit in half the bound.
            #expect(try repo.consolidatePacks(bound: 8) == 0)
            head = try flushedPasses(repo, 13...13, from: head)
            // 5 candidates: merged down to 2 (half the room), geometric from there.
            #expect(try repo.consolidatePacks(bound: 8) == 5)
            #expect(t.packs(path).count == 9)
            try git("--git-dir", path, "fsck", "--strict")
            #expect(try repo.commitInfo(try #require(head)).trailer("Bulwark-Id") == "r13")
        }
    }

    @Test func aKeptPackAndALargePackAreLeftAlone() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let head = try flushedPasses(repo, 1...4, from: nil)
            let kept = try #require(t.packs(path).sorted().first)
            try write(path + "/objects/pack/" + kept.dropLast(".pack".count) + ".keep", "")
            #expect(try repo.consolidatePacks(bound: 2) == 3)
            #expect(t.packs(path).contains(kept))
            #expect(t.packs(path).count == 2)
            // Nothing is smaller than one byte: nothing to merge.
            _ = try flushedPasses(repo, 5...8, from: head)
            #expect(try repo.consolidatePacks(bound: 2, small: 1) == 0)
            try git("--git-dir", path, "fsck", "--strict")
        }
    }

    /// A consolidation killed after its new pack was written and before the old packs were
    /// removed leaves both; run again it writes the same objects in the same order, so the same
    /// pack, which the indexer renames over the one already there. That pack is kept.
    @Test func aConsolidationRunAgainAfterAKillBeforeItsRemovalsKeepsEveryObject() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let folder = path + "/objects/pack/"
            let repo = try Repository.create(at: path, bare: true)
            let head = try #require(try flushedPasses(repo, 1...5, from: nil))
            // The old packs sort before the merged one (whose name is its checksum), so that the
            // second run reads them in the same order: names are free, readers go by the index.
            for (index, pack) in t.packs(path).sorted().enumerated() {
                let base = String(pack.dropLast(".pack".count))
                let name = "pack-" + String(repeating: "0", count: 38) + String(format: "%02d", index)
                for suffix in [".pack", ".idx"] { try FileManager.default.moveItem(atPath: folder + base + suffix, toPath: folder + name + suffix) }
            }
            let old = t.packs(path).sorted()
            let saved = dir + "/saved"
            try FileManager.default.createDirectory(atPath: saved, withIntermediateDirectories: false)
            for file in try FileManager.default.contentsOfDirectory(atPath: folder) {
                try FileManager.default.copyItem(atPath: folder + file, toPath: saved + "/" + file)
            }
            let fresh = try Repository.open(at: path)
            #expect(try fresh.consolidatePacks(bound: 2) == 5)
            let merged = try #require(t.packs(path).first)
            #expect(t.packs(path) == [merged])
            #expect(merged > (try #require(old.last)))
            // The kill: the old packs are all back beside the merged one.
            for file in try FileManager.default.contentsOfDirectory(atPath: saved) {
                try FileManager.default.copyItem(atPath: saved + "/" + file, toPath: folder + file)
            }
            let again = try Repository.open(at: path)
            #expect(try again.consolidatePacks(bound: 2) == 5, "the old packs are removed, the merged one is not")
            #expect(t.packs(path) == [merged])
            #expect(try again.commitInfo(head).trailer("Bulwark-Id") == "r5")
            try git("--git-dir", path, "fsck", "--strict")
            let ids = try git("--git-dir", path, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
                .split(separator: "\n").map(String.init)
            #expect(ids == (1...5).reversed().map { "r\($0)" })
        }
    }

    /// Bulwark's packs (whole objects) are merged by copying each entry as it is: a record
    /// flushed uncompressed is still there, byte for byte, in the merged pack, and git reads
    /// the merged pack and its index as any other.
    @Test func mergedEntriesAreCopiedAsTheyAre() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            var head: ObjectID?
            let texts = (1...3).map { String(repeating: "bulwark record \($0) ", count: 100) }
            for (index, text) in texts.enumerated() {
                try repo.beginObjectBuffer()
                let commit = try repo.writeCommit(adding: ["audit/big\(index).json": Array(text.utf8)], parent: head,
                                                  message: "big\(index)\n", author: t.author)
                try repo.flushObjectBuffer(tip: commit, base: head)
                try repo.updateReference("refs/heads/bulwark/audit", to: commit, expected: head, message: "test")
                head = commit
            }
            #expect(try repo.consolidatePacks(bound: 2) == 3)
            let merged = try #require(t.packs(path).first)
            #expect(t.packs(path).count == 1)
            let bytes = try #require(FileManager.default.contents(atPath: path + "/objects/pack/" + merged))
            for text in texts { #expect(bytes.range(of: Data(text.utf8)) != nil, "copied, not compressed again") }
            let listing = try git("verify-pack", "-v", path + "/objects/pack/" + merged.dropLast(".pack".count) + ".idx")
            #expect(!listing.contains("chain length"))
            try git("--git-dir", path, "fsck", "--strict")
            #expect(try repo.file(at: try #require(head), path: "audit/big2.json") == Array(texts[2].utf8))
        }
    }

    /// A pack with deltas (git's own, fetched) is not copied: its objects are read through
    /// libgit2 and written whole beside the copied entries of Bulwark's packs.
    @Test func aPackWithDeltasIsMergedObjectByObject() async throws {
        try await withTemporaryDirectory { dir in
            let work = dir + "/w"
            try git("init", "-q", "-b", "main", work)
            let lines = (0..<200).map { "line \($0) of a file that git stores as a delta of its next version" }
            try write(work + "/f.txt", lines.joined(separator: "\n"))
            try git("-C", work, "add", "f.txt")
            try git("-C", work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
            try write(work + "/f.txt", (lines + ["one more line"]).joined(separator: "\n"))
            try git("-C", work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "two")
            try git("-C", work, "repack", "-q", "-a", "-d")
            let deltaPack = try #require(t.packs(work + "/.git").first)
            let deltaIndex = work + "/.git/objects/pack/" + deltaPack.dropLast(".pack".count) + ".idx"
            #expect(try git("verify-pack", "-v", deltaIndex).contains("chain length"), "the fixture has a delta")
            let old = try git("-C", work, "rev-parse", "HEAD~1:f.txt").trimmingCharacters(in: .whitespacesAndNewlines)

            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let head = try #require(try flushedPasses(repo, 1...3, from: nil))
            for suffix in [".pack", ".idx"] {
                let name = String(deltaPack.dropLast(".pack".count)) + suffix
                try FileManager.default.copyItem(atPath: work + "/.git/objects/pack/" + name, toPath: path + "/objects/pack/" + name)
            }
            #expect(try repo.consolidatePacks(bound: 2) == 4)
            let merged = try #require(t.packs(path).first)
            #expect(t.packs(path).count == 1)
            let listing = try git("verify-pack", "-v", path + "/objects/pack/" + merged.dropLast(".pack".count) + ".idx")
            #expect(!listing.contains("chain length"), "whole objects only")
            #expect(try git("--git-dir", path, "cat-file", "-p", old) == lines.joined(separator: "\n"))
            try git("--git-dir", path, "fsck", "--strict")
            #expect(try repo.commitInfo(head).trailer("Bulwark-Id") == "r3")
        }
    }

    /// An entry whose bytes no longer match the CRC-32 of its index (damage on disk) is never
    /// copied: the pack is read through libgit2, which finds the damage, and the consolidation
    /// fails with every old pack still in place.
    @Test func aDamagedEntryIsNeverCopiedIntoTheMergedPack() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            _ = try flushedPasses(repo, 1...3, from: nil)
            let before = t.packs(path).sorted()
            let damaged = path + "/objects/pack/" + before[1]
            let size = try #require(try FileManager.default.attributesOfItem(atPath: damaged)[.size] as? Int)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: damaged)
            let handle = try #require(FileHandle(forUpdatingAtPath: damaged))
            // Inside the last entry (the commit), before the pack's checksum.
            let offset = UInt64(size - 20 - 30)
            try handle.seek(toOffset: offset)
            let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
            try handle.seek(toOffset: offset)
            try handle.write(contentsOf: [byte ^ 0x01])
            try handle.close()
            let fresh = try Repository.open(at: path)
            #expect(throws: GitError.self) { try fresh.consolidatePacks(bound: 2) }
            #expect(t.packs(path).sorted() == before)
            let names = try FileManager.default.contentsOfDirectory(atPath: path + "/objects/pack")
            #expect(!names.contains { $0.hasPrefix("tmp_") })
        }
    }
}
