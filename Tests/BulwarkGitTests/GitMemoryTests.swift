import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// What libgit2 may keep in memory while Bulwark writes and reads audit commits (issue 11, flat
/// memory; issue 15, apply's peak memory): no parsed object outlives its use, and packs are
/// mapped a window at a time.
@Suite struct GitMemoryTests {
    let author = Signature(name: "Bulwark", email: "bulwark@localhost", time: Date(timeIntervalSince1970: 1_800_000_000))

    func record(_ index: Int) -> [String: [UInt8]] {
        ["audit/2026/12/02/\(index % 24)/\(index % 32)/r\(index).json": Array("{\"id\": \"r\(index)\"}\n".utf8)]
    }

    /// The daemon grew by about 11 KiB a remediation: every commit and tree of each audit commit,
    /// read back once to be packed, stayed parsed in libgit2's object cache. Writing, flushing,
    /// pushing and reading back 300 records now leaves nothing there.
    @Test func auditCommitsWrittenFlushedAndReadBackLeaveNothingInLibgit2sObjectCache() async throws {
        try await withTemporaryDirectory { dir in
            try git("init", "-q", "--bare", "-b", "main", dir + "/origin.git")
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            try repo.ensureRemote("origin", url: dir + "/origin.git")
            var head: ObjectID?
            for batch in 0..<3 {
                try repo.beginObjectBuffer()
                let base = head
                for index in (batch * 100)..<(batch * 100 + 100) {
                    head = try repo.writeCommit(adding: record(index), parent: head,
                                                message: "r\(index)\n\nBulwark-Id: r\(index)\n", author: author)
                }
                let tip = try #require(head)
                #expect(try repo.flushObjectBuffer(tip: tip, base: base) > 100)
                try repo.updateReference("refs/heads/bulwark/audit", to: tip, expected: base, message: "test")
            }
            let tip = try #require(head)
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin") == nil)
            // Everything reads back, and the count the push reports matches the history.
            let history = try repo.history(from: tip)
            #expect(history.count == 300)
            #expect(try repo.commitCount(from: tip) == 300)
            #expect(try repo.commitCount(from: tip, hiding: history[100].id) == 100)
            #expect(try repo.file(at: tip, path: "audit/2026/12/02/11/11/r299.json") == Array("{\"id\": \"r299\"}\n".utf8))
            // Process-wide: other suites running meanwhile use libgit2 too, and they add nothing either.
            #expect(GitLibrary.cachedObjectBytes == 0)
        }
    }

    /// A pack is read through windows of at most a MiB, no more than `mappedPackLimit` bytes of
    /// them mapped at once: libgit2 used to map each pack whole and keep it mapped, so every page
    /// it had read stayed resident (a pass's packs, 11 MiB for 2,400 records).
    @Test func packsStayMappedOnlyUpToTheLimitHoweverMuchIsRead() async throws {
        try await withTemporaryDirectory { dir in
            let work = dir + "/work"
            try git("init", "-q", "-b", "main", work)
            // Six packs of 2 MiB each (random bytes: zlib cannot shrink them), 12 MiB in all.
            let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
            defer { try? random.close() }
            for index in 0..<6 {
                let data = try #require(try random.read(upToCount: 2 << 20))
                #expect(FileManager.default.createFile(atPath: work + "/blob\(index)", contents: data))
                try git("-C", work, "add", "blob\(index)")
                try git("-C", work, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "blob \(index)")
                try git("-C", work, "repack", "-q", "-d")
            }
            let packFolder = work + "/.git/objects/pack"
            let packs = try FileManager.default.contentsOfDirectory(atPath: packFolder).filter { $0.hasSuffix(".pack") }
            #expect(packs.count == 6)
            let repo = try Repository.open(at: work + "/.git")
            let head = try #require(try repo.resolve("refs/heads/main"))
            for index in 0..<6 {
                #expect(try repo.file(at: head, path: "blob\(index)")?.count == 2 << 20)
            }
            // What is mapped of this repository's packs now (/proc/self/maps, this test's folder only).
            let maps = try String(contentsOfFile: "/proc/self/maps", encoding: .utf8)
            var mapped = 0
            for line in maps.split(separator: "\n") where line.contains(packFolder + "/") && line.hasSuffix(".pack") {
                let range = line.split(separator: " ")[0].split(separator: "-")
                guard range.count == 2, let start = Int(range[0], radix: 16), let end = Int(range[1], radix: 16) else { continue }
                mapped += end - start
            }
            #expect(GitLibrary.mappedPackLimit == 1 << 20)
            // (Windows of other suites' reads count against the same process-wide limit, so
            // this test's share can only be smaller.)
            #expect(mapped <= GitLibrary.mappedPackLimit, "\(mapped) bytes of packs mapped")
        }
    }
}
