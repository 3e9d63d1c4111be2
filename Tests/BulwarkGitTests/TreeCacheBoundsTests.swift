@testable import BulwarkGit
internal import CLibGit2
import BulwarkTestSupport
import Foundation
import Testing

/// The tree cache keeps the trees the next records build on (the hour's record folders), not the
/// ones they replaced, within a bound in bytes.
@Suite struct TreeCacheBoundsTests {
    let author = Signature(name: "Bulwark", email: "bulwark@localhost", time: Date(timeIntervalSince1970: 1_800_000_000))

    @Test func everyFolderARecordBuildsOnNextIsKeptAndNoReplacedOne() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
            var head: ObjectID?
            var folders = Set<String>()
            // 600 records fanned out as the audit branch does (`audit/YYYY/MM/DD/HH/<c>/<d>/`), more
            // folders than the 256 trees the cache used to hold.
            for index in 0..<600 {
                let c = alphabet[index % 32], d = alphabet[(index / 32 + index * 7) % 32]
                folders.insert("\(c)/\(d)")
                let file = "audit/2026/12/03/16/\(c)/\(d)/01KBXYZ\(String(format: "%05d", index))\(d)\(c).json"
                head = try repo.writeCommit(adding: [file: Array("\(index)\n".utf8)], parent: head, message: "r\(index)\n", author: author)
            }
            let commit = try #require(head)
            // The trees of the last commit's folders, as git lists them: all of them are kept.
            let listing = try git("--git-dir", path, "ls-tree", "-r", "-t", commit.hex)
            let treeIDs = listing.split(separator: "\n").filter { $0.contains(" tree ") }.map { String($0.split(separator: " ")[2].prefix(40)) }
            let root = try git("--git-dir", path, "rev-parse", commit.hex + "^{tree}").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(treeIDs.count == 5 + 32 + folders.count)
            for id in treeIDs + [root] {
                let oid = try #require(ObjectID(hex: id))
                #expect(repo.treeCache.entries(oid.raw) != nil, "\(id)")
            }
            // Nothing but those: every replaced tree was forgotten.
            #expect(repo.treeCache.trees.count == treeIDs.count + 1)
            #expect(repo.treeCache.bytes == repo.treeCache.trees.values.reduce(0) { $0 + $1.count })
        }
    }

    @Test func theCacheIsBoundInBytesAndReadsBackWhatItWasGiven() throws {
        let cache = TreeCache()
        var id = git_oid()
        var names: [[UInt8]] = [Array("a".utf8), [0x63, 0x61, 0x66, 0xe9], Array("01KBXYZ.json".utf8)]
        names.sort { $0.lexicographicallyPrecedes($1) }
        let entries = names.enumerated().map { index, name in
            var oid = git_oid()
            withUnsafeMutableBytes(of: &oid.id) { $0[0] = UInt8(index + 1); $0[19] = 0xff }
            return TreeCache.Entry(name: name, mode: index == 0 ? GIT_FILEMODE_TREE : git_filemode_t(rawValue: 0o100664), id: oid)
        }
        let bytes = TreeCache.serialize(entries)
        cache.remember(id, bytes)
        let read = try #require(cache.entries(id))
        #expect(read.map(\.name) == entries.map(\.name) && read.map(\.mode.rawValue) == entries.map(\.mode.rawValue))
        func idBytes(_ entry: TreeCache.Entry) -> [UInt8] { withUnsafeBytes(of: entry.id.id) { Array($0) } }
        #expect(read.map(idBytes) == entries.map(idBytes))
        // Cut short or not a tree: not read as one.
        #expect(TreeCache.parse(Array(bytes.dropLast())) == nil)
        #expect(TreeCache.parse(Array("100644 x".utf8)) == nil)
        #expect(TreeCache.parse(Array("9 x\0".utf8) + [UInt8](repeating: 0, count: 20)) == nil)
        // Past the bound, the cache is emptied before it takes more.
        let large = [UInt8](repeating: 0x61, count: TreeCache.byteLimit / 2 + 1)
        for index in 0..<3 {
            withUnsafeMutableBytes(of: &id.id) { $0[0] = UInt8(index) }
            cache.remember(id, large)
            #expect(cache.bytes <= TreeCache.byteLimit)
        }
        #expect(cache.trees.count == 1 && cache.bytes == large.count)
    }
}
