import BulwarkGit
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
}
