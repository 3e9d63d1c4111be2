import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Audit objects kept in memory and written as one pack of whole objects: nothing on disk
/// references them before the pack is written and indexed, and git reads the result.
@Suite struct PackTests {
    let author = Signature(name: "Bulwark", email: "bulwark@localhost", time: Date(timeIntervalSince1970: 1_800_000_000))

    func looseObjects(_ repo: String) -> Int {
        let objects = repo + "/objects"
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: objects)) ?? []
        return folders.filter { $0.count == 2 }.reduce(0) {
            $0 + ((try? FileManager.default.contentsOfDirectory(atPath: objects + "/" + $1))?.count ?? 0)
        }
    }

    func packs(_ repo: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: repo + "/objects/pack")) ?? []).filter { $0.hasSuffix(".pack") }
    }

    func record(_ index: Int) -> [String: [UInt8]] {
        ["audit/2026/12/01/\(index % 24)/\(index % 10)/r\(index).json": Array("{\"id\": \"r\(index)\"}\n".utf8)]
    }

    @Test func bufferedCommitsReachDiskAsOnePackBeforeTheBranchMoves() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let first = try repo.writeCommit(adding: record(0), parent: nil, message: "r0\n\nBulwark-Id: r0\n", author: author)
            try repo.updateReference("refs/heads/bulwark/audit", to: first, expected: nil, message: "test")
            let loose = looseObjects(path)

            try repo.beginObjectBuffer()
            var head = first
            for index in 1...50 {
                head = try repo.writeCommit(adding: record(index), parent: head, message: "r\(index)\n\nBulwark-Id: r\(index)\n",
                                            author: author)
            }
            #expect(looseObjects(path) == loose, "nothing written to disk while buffering")
            #expect(try repo.commitInfo(head).trailer("Bulwark-Id") == "r50", "readable from memory")
            #expect(try run("/usr/bin/git", ["--git-dir", path, "cat-file", "-e", head.hex]).status != 0, "not on disk yet")

            #expect(try repo.flushObjectBuffer(tip: head, base: first) > 50)
            #expect(packs(path).count == 1)
            #expect(looseObjects(path) == loose)
            try repo.updateReference("refs/heads/bulwark/audit", to: head, expected: first, message: "test")
            try git("--git-dir", path, "fsck", "--strict")
            let ids = try git("--git-dir", path, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
                .split(separator: "\n").map(String.init)
            #expect(ids == (0...50).reversed().map { "r\($0)" })
            // After the flush new objects go to disk again.
            let next = try repo.writeCommit(adding: record(51), parent: head, message: "r51\n\nBulwark-Id: r51\n", author: author)
            #expect(try run("/usr/bin/git", ["--git-dir", path, "cat-file", "-e", next.hex]).status == 0)
        }
    }

    @Test func aDiscardedBufferLeavesNothingBehind() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            try repo.beginObjectBuffer()
            let commit = try repo.writeCommit(adding: record(1), parent: nil, message: "r1\n", author: author)
            repo.discardObjectBuffer()
            #expect(try !repo.contains(commit))
            #expect(looseObjects(path) == 0)
            #expect(packs(path).isEmpty)
            try git("--git-dir", path, "fsck", "--strict")
        }
    }

    @Test func aLocalPushSendsWholeObjectsThatGitAccepts() async throws {
        try await withTemporaryDirectory { dir in
            try git("init", "-q", "--bare", "-b", "main", dir + "/origin.git")
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            try repo.ensureRemote("origin", url: dir + "/origin.git")
            var head: ObjectID?
            for index in 0..<40 {
                head = try repo.writeCommit(adding: record(index), parent: head, message: "r\(index)\n\nBulwark-Id: r\(index)\n",
                                            author: author)
            }
            let tip = try #require(head)
            try repo.updateReference("refs/heads/bulwark/audit", to: tip, expected: nil, message: "test")
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin") == nil)
            try git("--git-dir", dir + "/origin.git", "fsck", "--strict")
            let pack = try #require(packs(dir + "/origin.git").first)
            let listing = try git("verify-pack", "-v", dir + "/origin.git/objects/pack/" + pack)
            #expect(!listing.contains("chain length"), "no deltas: \(listing.suffix(200))")
            #expect(try git("--git-dir", dir + "/origin.git", "rev-list", "--count", "bulwark/audit") == "40\n")
        }
    }
}
