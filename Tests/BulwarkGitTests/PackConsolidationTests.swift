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
}
