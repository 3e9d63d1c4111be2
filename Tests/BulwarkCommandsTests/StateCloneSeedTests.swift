@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// A new state directory against an origin on this machine starts from the origin's own packs
/// (hard-linked, or copied across filesystems), so that its first fetch only writes references
/// instead of libgit2 packing every object of the origin again; whatever stops the seed leaves
/// the clone's object folder clean and the plain fetch does the work.
@Suite struct StateCloneSeedTests {
    static func id(_ n: Int) -> String { "01SEED" + String(repeating: "0", count: 20 - String(n).count) + String(n) }

    /// An origin with the policy and audit branches packed (`git repack -ad`), then one more
    /// policy commit pushed as loose objects (git unpacks small pushes).
    static func makeOrigin(_ origin: String, dir: String) throws {
        try AuditPushRaceTests.makeOrigin(origin, dir: dir)
        try git("--git-dir", origin, "repack", "-adq")
        try git("clone", "-q", "-b", "main", origin, dir + "/later")
        try write(dir + "/later/later.md", "later\n")
        try git("add", "-A", in: dir + "/later")
        try git("commit", "-qm", "later", in: dir + "/later")
        try git("push", "-q", "origin", "main", in: dir + "/later")
    }

    /// The `.pack` files of a repository's object folder with their inodes.
    static func packs(_ gitDir: String) throws -> [String: UInt64] {
        let folder = gitDir + "/objects/pack"
        var result: [String: UInt64] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) where name.hasSuffix(".pack") {
            let attributes = try FileManager.default.attributesOfItem(atPath: folder + "/" + name)
            result[name] = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value
        }
        return result
    }

    static func looseObjects(_ gitDir: String) throws -> Int {
        try git("--git-dir", gitDir, "count-objects", "-v").split(separator: "\n")
            .first { $0.hasPrefix("count: ") }.flatMap { Int($0.dropFirst("count: ".count)) } ?? -1
    }

    /// The origin's branches and where the clone's remote-tracking references point, read by git.
    static func branches(_ gitDir: String, _ prefix: String) throws -> [String] {
        try git("--git-dir", gitDir, "for-each-ref", "--format=%(objectname) %(refname)", prefix)
            .split(separator: "\n").map { $0.replacingOccurrences(of: prefix, with: "") }.sorted()
    }

    /// The clone after its first sync has the origin's references, passes `git fsck --strict`,
    /// and a record written and pushed from it reaches the origin intact.
    static func checkClone(_ repo: PolicyRepository, _ clone: String, origin: String) async throws {
        #expect(try branches(clone, "refs/remotes/origin/") == branches(origin, "refs/heads/"))
        try git("--git-dir", clone, "fsck", "--strict", "--no-dangling")
        let names = try FileManager.default.contentsOfDirectory(atPath: clone + "/objects/pack")
        #expect(!names.contains { $0.hasPrefix("tmp_") }, "no temporary file left: \(names)")
        _ = try await repo.write(PolicyRepositoryTests().record(id(1)))
        #expect(try await repo.publish() == .pushed(commits: 1))
        #expect(try git("--git-dir", origin, "log", "-1", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
            .trimmingCharacters(in: .whitespacesAndNewlines) == id(1))
        try git("--git-dir", origin, "fsck", "--strict")
    }

    @Test func aNewStateDirectoryAgainstALocalOriginIsSeededWithTheOriginsPacksLinked() async throws {
        try await withTemporaryDirectory { dir in
            let origin = dir + "/origin.git"
            try Self.makeOrigin(origin, dir: dir)
            let originPacks = try Self.packs(origin)
            #expect(originPacks.count == 1)
            #expect(try Self.looseObjects(origin) > 0, "the last push is loose on the origin")
            let repo = try PolicyRepository(.init(url: origin, stateDirectory: dir + "/state"))
            _ = try await repo.sync()
            let clone = dir + "/state/repository.git"
            let clonePacks = try Self.packs(clone)
            // The origin's pack itself (the same file), and one pack of its loose objects; no
            // pack made by the fetch.
            for (name, inode) in originPacks { #expect(clonePacks[name] == inode, "\(name) is linked: \(clonePacks)") }
            #expect(clonePacks.count == 2, "\(clonePacks)")
            #expect(try Self.looseObjects(clone) == 0)
            try await Self.checkClone(repo, clone, origin: origin)
            // The origin's pack was not written to: still git's, still valid.
            try git("--git-dir", origin, "verify-pack", origin + "/objects/pack/" + originPacks.keys.first!.dropLast(5) + ".idx")
        }
    }

    @Test func anOriginOnAnotherFilesystemIsSeededByCheckedCopies() async throws {
        var template = Array("/dev/shm/bulwark-seed-XXXXXX".utf8CString)
        try #require(mkdtemp(&template) != nil, "no tmpfs at /dev/shm")
        let other = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { try? FileManager.default.removeItem(atPath: other) }
        try await withTemporaryDirectory { dir in
            let origin = other + "/origin.git"
            try Self.makeOrigin(origin, dir: other)
            let originPacks = try Self.packs(origin)
            let url = "file://" + origin
            let repo = try PolicyRepository(.init(url: url, stateDirectory: dir + "/state"))
            _ = try await repo.sync()
            let clone = dir + "/state/repository.git"
            let clonePacks = try Self.packs(clone)
            for (name, inode) in originPacks {
                #expect(clonePacks[name] != nil, "\(name) was copied: \(clonePacks)")
                #expect(clonePacks[name] != inode)
            }
            #expect(clonePacks.count == 2, "\(clonePacks)")
            try await Self.checkClone(repo, clone, origin: origin)
        }
    }

    @Test func aPackThatCannotBeSeededLeavesTheCloneToThePlainFetch() async throws {
        try await withTemporaryDirectory { dir in
            let origin = dir + "/origin.git"
            try Self.makeOrigin(origin, dir: dir)
            // The origin's pack is a symbolic link (git follows it; the seed takes only regular
            // files): linking it fails its check after the loose objects were already packed
            // into the clone, and all of it must go.
            let name = try #require(Self.packs(origin).keys.first)
            try FileManager.default.createDirectory(atPath: dir + "/elsewhere", withIntermediateDirectories: true)
            try FileManager.default.moveItem(atPath: origin + "/objects/pack/" + name, toPath: dir + "/elsewhere/" + name)
            try FileManager.default.createSymbolicLink(atPath: origin + "/objects/pack/" + name, withDestinationPath: dir + "/elsewhere/" + name)
            let clone = dir + "/state/repository.git"
            let seed = try Repository.create(at: dir + "/probe.git", bare: true).seedObjects(from: origin)
            guard case .skipped(let why) = seed else { Issue.record("seeded: \(seed)"); return }
            #expect(why.contains(name.dropLast(5)), "\(why)")
            #expect(try Self.packs(dir + "/probe.git").isEmpty, "nothing left of the failed seed")
            let repo = try PolicyRepository(.init(url: origin, stateDirectory: dir + "/state"))
            _ = try await repo.sync()
            let clonePacks = try Self.packs(clone)
            #expect(clonePacks[name] == nil, "the fetch made its own pack: \(clonePacks)")
            #expect(clonePacks.count == 1, "\(clonePacks)")
            try await Self.checkClone(repo, clone, origin: origin)
        }
    }

    @Test func onlyANewCloneOfALocalCompleteOriginIsSeeded() async throws {
        try await withTemporaryDirectory { dir in
            let origin = dir + "/origin.git"
            try Self.makeOrigin(origin, dir: dir)
            #expect(try Repository.create(at: dir + "/a.git", bare: true).seedObjects(from: "ssh://git@example.org/x.git")
                == .skipped("the origin is not a repository on this machine"))
            let used = try Repository.create(at: dir + "/b.git", bare: true)
            try used.ensureRemote("origin", url: origin)
            try used.fetch(remote: "origin", refspecs: ["+refs/heads/*:refs/remotes/origin/*"])
            #expect(used.seedObjects(from: origin) == .skipped("the clone is not new"))
            try git("clone", "-q", "--bare", "--depth", "1", "file://" + origin, dir + "/shallow.git")
            #expect(try Repository.create(at: dir + "/c.git", bare: true).seedObjects(from: dir + "/shallow.git")
                == .skipped("the origin is shallow"))
            try git("clone", "-q", "--bare", "--shared", origin, dir + "/borrowing.git")
            #expect(try Repository.create(at: dir + "/d.git", bare: true).seedObjects(from: dir + "/borrowing.git")
                == .skipped("the origin borrows objects (alternates)"))
            for probe in ["/a.git", "/c.git", "/d.git"] { #expect(try Self.packs(dir + probe).isEmpty) }
        }
    }
}
