import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// A pass's audit objects reach disk as packs Bulwark writes itself (ids, CRC-32s and offsets
/// known as it goes: no indexer), and a local push sends those packs when they hold exactly what
/// the push needs: copied as they are (checked against their checksums), or, when that would
/// leave the origin more than 16 packs, written into it as one pack (each entry copied as it is,
/// checked against its CRC-32); otherwise it
/// packs the objects again. Either way git reads every object and the origin's reference moves
/// only after they are there.
@Suite struct PackSendTests {
    let t = PackTests()

    func stat(_ path: String) -> (inode: UInt64, links: UInt64)? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value,
              let links = (attributes[.referenceCount] as? NSNumber)?.uint64Value else { return nil }
        return (inode, links)
    }

    /// Flushed batches of records (`1...count` split in `batches`) on the audit branch of a new
    /// state repository whose origin is a new bare repository; returns (repo, first batch's tip, head).
    func twoFlushes(_ dir: String, count: Int = 30, batches: Int = 2) throws -> (Repository, ObjectID, ObjectID) {
        try git("init", "-q", "--bare", "-b", "main", dir + "/origin.git")
        let repo = try Repository.create(at: dir + "/r.git", bare: true)
        try repo.ensureRemote("origin", url: dir + "/origin.git")
        var head: ObjectID?
        var first: ObjectID?
        let size = count / batches
        for batch in (0..<batches).map({ $0 * size + 1...($0 == batches - 1 ? count : ($0 + 1) * size) }) {
            try repo.beginObjectBuffer()
            let base = head
            for index in batch {
                head = try repo.writeCommit(adding: t.record(index), parent: head, message: "r\(index)\n\nBulwark-Id: r\(index)\n",
                                            author: t.author)
            }
            let tip = try #require(head)
            try repo.flushObjectBuffer(tip: tip, base: base)
            try repo.updateReference("refs/heads/bulwark/audit", to: tip, expected: base, message: "test")
            if first == nil { first = tip }
        }
        return (repo, try #require(first), try #require(head))
    }

    func ids(_ repo: String, _ branch: String = "bulwark/audit") throws -> [String] {
        try git("--git-dir", repo, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", branch)
            .split(separator: "\n").map(String.init)
    }

    @Test func aFlushedPackIsOneGitReadsWholeWithItsOwnIndex() async throws {
        try await withTemporaryDirectory { dir in
            let (_, _, _) = try twoFlushes(dir)
            let path = dir + "/r.git"
            #expect(t.packs(path).count == 2)
            for pack in t.packs(path) {
                let listing = try git("verify-pack", "-v", path + "/objects/pack/" + pack.dropLast(".pack".count) + ".idx")
                #expect(!listing.contains("chain length"), "whole objects only")
            }
            // No temporary file is left behind.
            let names = try FileManager.default.contentsOfDirectory(atPath: path + "/objects/pack")
            #expect(!names.contains { $0.hasPrefix("tmp_") })
            try git("--git-dir", path, "fsck", "--strict")
            #expect(try ids(path) == (1...30).reversed().map { "r\($0)" })
        }
    }

    @Test func aPushSendsTheFlushedPacksAsTheyAre() async throws {
        try await withTemporaryDirectory { dir in
            let (repo, _, head) = try twoFlushes(dir)
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin") == nil)
            let origin = dir + "/origin.git"
            // The same two packs, copied byte for byte (nothing packed again), never linked:
            // the origin must not share a file that damage to the state clone would reach.
            #expect(t.packs(origin).sorted() == t.packs(dir + "/r.git").sorted())
            for pack in t.packs(origin) {
                for file in [pack, pack.dropLast(".pack".count) + ".idx"] {
                    let sent = try #require(stat(origin + "/objects/pack/" + file))
                    let local = try #require(stat(dir + "/r.git/objects/pack/" + file))
                    #expect(sent.inode != local.inode && sent.links == 1)
                    #expect(FileManager.default.contentsEqual(atPath: origin + "/objects/pack/" + file, andPath: dir + "/r.git/objects/pack/" + file))
                }
            }
            #expect(try !FileManager.default.contentsOfDirectory(atPath: origin + "/objects/pack").contains { $0.hasPrefix("tmp_") })
            try git("--git-dir", origin, "fsck", "--strict")
            #expect(try git("--git-dir", origin, "rev-parse", "bulwark/audit") == head.hex + "\n")
            #expect(try ids(origin) == (1...30).reversed().map { "r\($0)" })
        }
    }

    /// More flushed packs than the origin's consolidation allows (a large pass flushes every 512
    /// records) reach it as one pack holding each of their objects once, every entry the bytes it
    /// had (not compressed again), in a file of its own; git reads every object. (Two packs are
    /// copied as they are: `aPushSendsTheFlushedPacksAsTheyAre`.)
    @Test(arguments: [17, 20])
    func aPushWritesSeveralFlushedPacksIntoTheOriginAsOne(batches: Int) async throws {
        try await withTemporaryDirectory { dir in
            let (repo, _, head) = try twoFlushes(dir, count: 40, batches: batches)
            let local = dir + "/r.git/objects/pack/"
            let flushed = t.packs(dir + "/r.git")
            #expect(flushed.count == batches)
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin") == nil)
            let origin = dir + "/origin.git"
            let sent = t.packs(origin)
            #expect(sent.count == 1 && Set(sent).isDisjoint(with: flushed))
            let pack = try #require(sent.first)
            // Its objects: exactly those of the flushed packs.
            func objects(_ index: String) throws -> Set<String> {
                Set(try git("verify-pack", "-v", index).split(separator: "\n").compactMap { line in
                    let fields = line.split(separator: " ")
                    return fields.count > 2 && fields[0].count == 40 ? String(fields[0]) : nil
                })
            }
            var union = Set<String>()
            for name in flushed { union.formUnion(try objects(local + name.dropLast(".pack".count) + ".idx")) }
            #expect(try objects(origin + "/objects/pack/" + pack.dropLast(".pack".count) + ".idx") == union)
            // Entries copied, not compressed again: the records' text is in the pack as it was.
            let bytes = try #require(FileManager.default.contents(atPath: origin + "/objects/pack/" + pack))
            for index in [1, 40] { #expect(bytes.range(of: Data("{\"id\": \"r\(index)\"}".utf8)) != nil) }
            let links = try #require(stat(origin + "/objects/pack/" + pack))
            #expect(links.links == 1)
            #expect(try !FileManager.default.contentsOfDirectory(atPath: origin + "/objects/pack").contains { $0.hasPrefix("tmp_") })
            try git("--git-dir", origin, "fsck", "--strict")
            #expect(try git("--git-dir", origin, "rev-parse", "bulwark/audit") == head.hex + "\n")
            #expect(try ids(origin) == (1...40).reversed().map { "r\($0)" })
        }
    }

    /// The packs hold what `head` brings over the branch's start, not over the origin's head: a
    /// push from where the origin is (here: the first batch already there) packs only what is
    /// new there again, and never sends a pack that would leave an object out.
    @Test func aPushThatTheFlushedPacksDoNotMatchPacksTheObjectsAgain() async throws {
        try await withTemporaryDirectory { dir in
            let (repo, first, head) = try twoFlushes(dir)
            let origin = dir + "/origin.git"
            // The origin gets the first batch some other way (git's own push).
            try git("--git-dir", dir + "/r.git", "push", "-q", origin, "\(first.hex):refs/heads/bulwark/audit")
            let before = Set(t.packs(origin))
            // A commit written straight to disk after the flushes: no flushed pack holds it.
            let extra = try repo.writeCommit(adding: t.record(31), parent: head, message: "r31\n\nBulwark-Id: r31\n", author: t.author)
            try repo.updateReference("refs/heads/bulwark/audit", to: extra, expected: head, message: "test")
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: first, remote: "origin") == nil)
            let added = Set(t.packs(origin)).subtracting(before)
            #expect(added.count == 1)
            #expect(!t.packs(dir + "/r.git").contains(try #require(added.first)), "packed again, not sent as it was")
            try git("--git-dir", origin, "fsck", "--strict")
            #expect(try ids(origin) == (1...31).reversed().map { "r\($0)" })
        }
    }

    /// A flushed pack damaged before the push (a byte flipped on disk) fails its checksum and is
    /// never copied: the objects are read again through libgit2, which checks each one, and the
    /// origin gets either a correct pack or nothing, its reference moving only in the first case.
    @Test func aFlushedPackDamagedBeforeThePushIsNeverSent() async throws {
        try await withTemporaryDirectory { dir in
            let (repo, _, head) = try twoFlushes(dir)
            let local = dir + "/r.git/objects/pack/"
            let damaged = try #require(t.packs(dir + "/r.git").sorted().first)
            let handle = try #require(FileHandle(forUpdatingAtPath: local + damaged))
            try handle.seek(toOffset: 100)
            let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
            try handle.seek(toOffset: 100)
            try handle.write(contentsOf: [byte ^ 0xff])
            try handle.close()
            let origin = dir + "/origin.git"
            var pushed = false
            do {
                pushed = try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin") == nil
            } catch {
                pushed = false
            }
            #expect(!t.packs(origin).contains(damaged))
            if pushed {
                try git("--git-dir", origin, "fsck", "--strict")
                #expect(try git("--git-dir", origin, "rev-parse", "bulwark/audit") == head.hex + "\n")
            } else {
                #expect(try run("/usr/bin/git", ["--git-dir", origin, "rev-parse", "--verify", "-q", "bulwark/audit"]).status != 0)
            }
        }
    }

    /// Packs merged away by consolidation can no longer be sent: the push packs the objects again.
    @Test func aPushAfterTheFlushedPacksWereMergedPacksTheObjectsAgain() async throws {
        try await withTemporaryDirectory { dir in
            let (repo, _, head) = try twoFlushes(dir)
            let flushed = Set(t.packs(dir + "/r.git"))
            #expect(try repo.consolidatePacks(bound: 1) == 2)
            #expect(Set(t.packs(dir + "/r.git")).isDisjoint(with: flushed))
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin") == nil)
            let origin = dir + "/origin.git"
            #expect(Set(t.packs(origin)).isDisjoint(with: flushed))
            try git("--git-dir", origin, "fsck", "--strict")
            #expect(try git("--git-dir", origin, "rev-parse", "bulwark/audit") == head.hex + "\n")
            #expect(try ids(origin) == (1...30).reversed().map { "r\($0)" })
        }
    }

    /// Between two flushes of a pass, consolidation spares the packs not pushed yet: the push
    /// copies them as they are. Once pushed, the next consolidation merges them.
    @Test func packsNotPushedYetAreSparedByConsolidationBetweenFlushesAndMergedOncePushed() async throws {
        try await withTemporaryDirectory { dir in
            let (repo, _, head) = try twoFlushes(dir)
            let flushed = Set(t.packs(dir + "/r.git"))
            #expect(flushed.count == 2)
            #expect(try repo.consolidatePacks(bound: 1, sparingUnpushed: true) == 0)
            #expect(Set(t.packs(dir + "/r.git")) == flushed)
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin") == nil)
            let origin = dir + "/origin.git"
            #expect(Set(t.packs(origin)) == flushed, "sent as they are, nothing packed again")
            // Pushed: no longer spared.
            #expect(try repo.consolidatePacks(bound: 1, sparingUnpushed: true) == 2)
            #expect(Set(t.packs(dir + "/r.git")).isDisjoint(with: flushed))
            #expect(t.packs(dir + "/r.git").count == 1)
            try git("--git-dir", dir + "/r.git", "fsck", "--strict")
            try git("--git-dir", origin, "fsck", "--strict")
            #expect(try git("--git-dir", origin, "rev-parse", "bulwark/audit") == head.hex + "\n")
            #expect(try ids(origin) == (1...30).reversed().map { "r\($0)" })
            #expect(try ids(dir + "/r.git") == (1...30).reversed().map { "r\($0)" })
        }
    }

    /// A push the origin refuses (it moved) places no reference; the packs may be there, whole
    /// (with their index), and the next push still works.
    @Test func aRefusedPushMovesNothingAndTheNextOneGoesThrough() async throws {
        try await withTemporaryDirectory { dir in
            let (repo, first, head) = try twoFlushes(dir)
            let origin = dir + "/origin.git"
            try git("--git-dir", dir + "/r.git", "push", "-q", origin, "\(first.hex):refs/heads/bulwark/audit")
            let rejection = try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin")
            #expect(rejection != nil)
            #expect(try git("--git-dir", origin, "rev-parse", "bulwark/audit") == first.hex + "\n")
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: first, remote: "origin") == nil)
            try git("--git-dir", origin, "fsck", "--strict")
            #expect(try git("--git-dir", origin, "rev-parse", "bulwark/audit") == head.hex + "\n")
        }
    }

    /// An index already in the origin under a flushed pack's name (left or made by someone with
    /// write access there) is not taken for the pack: without the pack beside it, ending in the
    /// checksum its name states, the pack and index are copied, so the reference never moves onto
    /// objects the origin lacks. A pack already there whole is not copied again.
    @Test func anIndexAloneInTheOriginIsNotTakenForItsPack() async throws {
        try await withTemporaryDirectory { dir in
            let (repo, _, head) = try twoFlushes(dir)
            let origin = dir + "/origin.git"
            let local = dir + "/r.git/objects/pack/"
            let packs = t.packs(dir + "/r.git").sorted()
            let lone = try #require(packs.first).dropLast(".pack".count)
            try FileManager.default.copyItem(atPath: local + lone + ".idx", toPath: origin + "/objects/pack/" + lone + ".idx")
            #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: nil, remote: "origin") == nil)
            #expect(Set(t.packs(origin)) == Set(packs))
            try git("--git-dir", origin, "fsck", "--strict")
            #expect(try git("--git-dir", origin, "rev-parse", "bulwark/audit") == head.hex + "\n")
            #expect(try ids(origin) == (1...30).reversed().map { "r\($0)" })
        }
    }
}

/// Every local push adds a pack to the origin; as git's receive-pack runs `gc --auto`, the
/// origin's small packs are merged once there are more than 16, so that opening the origin's
/// objects does not grow slower with every push. A pack someone keeps (`.keep`) is left alone,
/// every record stays readable, and git finds nothing wrong.
@Suite struct OriginPackTests {
    let t = PackTests()

    @Test func theOriginsPacksStayFewOverManyPushesAndEveryRecordStays() async throws {
        try await withTemporaryDirectory { dir in
            let origin = dir + "/origin.git"
            try git("init", "-q", "--bare", "-b", "main", origin)
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            try repo.ensureRemote("origin", url: origin)
            var head: ObjectID?
            var most = 0
            var kept: String?
            for index in 1...40 {
                try repo.beginObjectBuffer()
                let base = head
                head = try repo.writeCommit(adding: t.record(index), parent: head, message: "r\(index)\n\nBulwark-Id: r\(index)\n",
                                            author: t.author)
                let tip = try #require(head)
                try repo.flushObjectBuffer(tip: tip, base: base)
                try repo.updateReference("refs/heads/bulwark/audit", to: tip, expected: base, message: "test")
                #expect(try repo.push("refs/heads/bulwark/audit", to: "refs/heads/bulwark/audit", expected: base, remote: "origin") == nil)
                if index == 2, let first = t.packs(origin).first {
                    // Someone keeps a pack of the origin's: it is never merged away.
                    kept = first
                    try write(origin + "/objects/pack/" + first.dropLast(".pack".count) + ".keep", "")
                }
                most = max(most, t.packs(origin).count)
            }
            #expect(most <= 17, "at most one pack over the bound before a merge: \(most)")
            let keptPack = try #require(kept)
            #expect(t.packs(origin).contains(keptPack), "the kept pack stays")
            try git("--git-dir", origin, "fsck", "--strict")
            let ids = try git("--git-dir", origin, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
                .split(separator: "\n").map(String.init)
            #expect(ids == (1...40).reversed().map { "r\($0)" })
        }
    }
}
