import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// The object buffer keeps what it is given in memory, in write order, and its flush packs all
/// of it, plus whatever the new commits need that only the disk has: never a reference onto an
/// object that is nowhere, and no search of the disk for each object written.
@Suite struct ObjectBufferTests {
    let t = PackTests()

    func newPacks(_ path: String, since before: [String]) -> [String] { t.packs(path).filter { !before.contains($0) } }

    /// git's own answer: the object ids a pack holds (`git verify-pack -v`).
    func packedIDs(_ path: String, _ pack: String) throws -> Set<String> {
        let listing = try git("verify-pack", "-v", path + "/objects/pack/" + pack.dropLast(".pack".count) + ".idx")
        return Set(listing.split(separator: "\n").compactMap { line in
            let id = line.prefix(40)
            return id.count == 40 && id.allSatisfy(\.isHexDigit) ? String(id) : nil
        })
    }

    /// Objects written while buffering are not looked for on disk first: libgit2's write
    /// "freshened" an object already there (a `utimensat` of its loose file, a search of every
    /// pack), for every object of a pass. A copy lands in the pack instead, which is harmless.
    @Test func bufferedWritesLeaveObjectsOnDiskUntouched() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let content = Array("{\"id\": \"same\"}\n".utf8)
            let first = try repo.writeCommit(adding: ["audit/a.json": content], parent: nil, message: "a\n", author: t.author)
            try repo.updateReference("refs/heads/bulwark/audit", to: first, expected: nil, message: "test")
            let blob = try git("--git-dir", path, "rev-parse", "\(first.hex):audit/a.json").trimmingCharacters(in: .whitespacesAndNewlines)
            let loose = path + "/objects/" + blob.prefix(2) + "/" + blob.dropFirst(2)
            let old = Date(timeIntervalSince1970: 946_684_800)
            try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: loose)

            try repo.beginObjectBuffer()
            let second = try repo.writeCommit(adding: ["audit/b.json": content], parent: first, message: "b\n", author: t.author)
            #expect((try FileManager.default.attributesOfItem(atPath: loose)[.modificationDate] as? Date) == old)
            try repo.flushObjectBuffer(tip: second, base: first)
            try repo.updateReference("refs/heads/bulwark/audit", to: second, expected: first, message: "test")
            #expect((try FileManager.default.attributesOfItem(atPath: loose)[.modificationDate] as? Date) == old)
            try git("--git-dir", path, "fsck", "--strict")
            #expect(try repo.file(at: second, path: "audit/b.json") == content)
        }
    }

    /// A commit replayed while buffering takes its record's blob from the original commit, on
    /// disk, not from the buffer: the flushed pack still holds it, so that a repository with only
    /// the base and this pack (the origin, when the push sends the pack as it is) has the tip.
    @Test func aFlushedPackHoldsWhatTheTipNeedsThatOnlyTheDiskHad() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let base = try repo.writeCommit(adding: t.record(1), parent: nil, message: "r1\n", author: t.author)
            let side = try repo.writeCommit(adding: t.record(2), parent: nil, message: "r2\n", author: t.author)
            try repo.updateReference("refs/heads/bulwark/audit", to: base, expected: nil, message: "test")
            let blob = try git("--git-dir", path, "rev-parse", "\(side.hex):audit/2026/12/01/2/2/r2.json")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let before = t.packs(path)

            try repo.beginObjectBuffer()
            let replayed = try repo.replay(side, onto: base)
            try repo.flushObjectBuffer(tip: replayed, base: base)
            let pack = try #require(newPacks(path, since: before).first)
            #expect(try packedIDs(path, pack).contains(blob))

            // A repository that has the base and this pack has the tip.
            let copy = dir + "/copy.git"
            try git("init", "-q", "--bare", copy)
            try git("--git-dir", path, "push", "-q", copy, "\(base.hex):refs/heads/bulwark/audit")
            let name = String(pack.dropLast(".pack".count))
            for suffix in [".pack", ".idx"] {
                try FileManager.default.copyItem(atPath: path + "/objects/pack/" + name + suffix, toPath: copy + "/objects/pack/" + name + suffix)
            }
            try git("--git-dir", copy, "update-ref", "refs/heads/bulwark/audit", replayed.hex, base.hex)
            try git("--git-dir", copy, "fsck", "--strict")
        }
    }

    /// An object the new commits need that is neither buffered nor on disk fails the flush: no
    /// pack, no temporary file, and so no reference can be moved onto it.
    @Test func aFlushMissingAnObjectFailsAndWritesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let base = try repo.writeCommit(adding: t.record(1), parent: nil, message: "r1\n", author: t.author)
            let side = try repo.writeCommit(adding: t.record(2), parent: nil, message: "r2\n", author: t.author)
            try repo.updateReference("refs/heads/bulwark/audit", to: base, expected: nil, message: "test")
            let blob = try git("--git-dir", path, "rev-parse", "\(side.hex):audit/2026/12/01/2/2/r2.json")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try FileManager.default.removeItem(atPath: path + "/objects/" + blob.prefix(2) + "/" + blob.dropFirst(2))

            try repo.beginObjectBuffer()
            let replayed = try repo.replay(side, onto: base)
            #expect(throws: GitError.self) { try repo.flushObjectBuffer(tip: replayed, base: base) }
            #expect(t.packs(path).isEmpty)
            let names = try FileManager.default.contentsOfDirectory(atPath: path + "/objects/pack")
            #expect(!names.contains { $0.hasPrefix("tmp_") })
            #expect(try git("--git-dir", path, "rev-parse", "bulwark/audit") == base.hex + "\n")
        }
    }

    /// A flush packs what was written since the buffer opened, in write order, and nothing of a
    /// buffer discarded before it.
    @Test func aFlushPacksTheBufferedObjectsAndNothingOfADiscardedBuffer() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let base = try repo.writeCommit(adding: t.record(0), parent: nil, message: "r0\n", author: t.author)
            try repo.updateReference("refs/heads/bulwark/audit", to: base, expected: nil, message: "test")

            try repo.beginObjectBuffer()
            let dropped = try repo.writeCommit(adding: t.record(1), parent: base, message: "r1\n", author: t.author)
            repo.discardObjectBuffer()
            #expect(try !repo.contains(dropped))

            try repo.beginObjectBuffer()
            var head = base
            for index in 2...4 {
                head = try repo.writeCommit(adding: t.record(index), parent: head, message: "r\(index)\n", author: t.author)
            }
            let count = try repo.flushObjectBuffer(tip: head, base: base)
            try repo.updateReference("refs/heads/bulwark/audit", to: head, expected: base, message: "test")
            let pack = try #require(t.packs(path).first)
            let packed = try packedIDs(path, pack)
            #expect(packed.count == count)
            #expect(!packed.contains(dropped.hex))
            #expect(packed.contains(head.hex))
            // Exactly the objects the three commits brought (git's own count of them).
            let brought = try git("--git-dir", path, "rev-list", "--objects", head.hex, "^" + base.hex)
                .split(separator: "\n").map { String($0.prefix(40)) }
            #expect(packed == Set(brought))
            try git("--git-dir", path, "fsck", "--strict")
        }
    }
}

/// The buffer keeps its objects' bytes in chunks: objects on both sides of a chunk's end, and
/// one larger than a chunk, read back whole while buffered (through libgit2) and from the pack
/// the flush writes (through git).
@Suite struct ObjectBufferChunkTests {
    let t = PackTests()

    @Test func objectsAcrossChunksAndOneLargerThanAChunkReadBackWhole() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let base = try repo.writeCommit(adding: ["audit/0.json": Array("{}\n".utf8)], parent: nil, message: "0\n", author: t.author)
            try repo.updateReference("refs/heads/bulwark/audit", to: base, expected: nil, message: "test")

            try repo.beginObjectBuffer()
            // 1,000-byte records: about 65 a chunk, so 200 of them fill three; then a record of
            // three chunks' size, and more small ones after it.
            func content(_ n: Int, size: Int) -> [UInt8] {
                var bytes = Array("{\"n\": \(n), \"pad\": \"".utf8)
                while bytes.count < size - 3 { bytes.append(UInt8(ascii: "a") + UInt8(n % 26)) }
                return bytes + Array("\"}\n".utf8)
            }
            var files: [String: [UInt8]] = [:]
            var tip = base
            for n in 1...260 {
                let file = "audit/\(n % 7)/\(n).json"
                files[file] = content(n, size: n == 200 ? 3 * 65_536 + 17 : 1_000)
                tip = try repo.writeCommit(adding: [file: files[file]!], parent: tip, message: "\(n)\n", author: t.author)
            }
            for (file, bytes) in files { #expect(try repo.file(at: tip, path: file) == bytes, "\(file) while buffered") }
            try repo.flushObjectBuffer(tip: tip, base: base)
            try repo.updateReference("refs/heads/bulwark/audit", to: tip, expected: base, message: "test")

            try git("--git-dir", path, "fsck", "--strict")
            for file in ["audit/4/200.json", "audit/1/1.json", "audit/1/260.json", "audit/2/65.json", "audit/3/66.json"] {
                let shown = try git("--git-dir", path, "show", "\(tip.hex):\(file)")
                #expect(Array(shown.utf8) == files[file], "\(file) from the pack")
            }
            #expect(try git("--git-dir", path, "rev-list", "--count", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines) == "261")
        }
    }
}
