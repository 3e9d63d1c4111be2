import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Commits of audit records build their trees from parsed trees kept in memory (`TreeCache`),
/// not through libgit2's tree builder: the trees must be byte for byte the ones git writes.
@Suite struct TreeCacheTests {
    let author = Signature(name: "Bulwark", email: "bulwark@localhost", time: Date(timeIntervalSince1970: 1_800_000_000))

    /// The tree git itself writes for the files of `commit` (an index built from its listing,
    /// without any cached tree, then `write-tree`).
    func gitsOwnTree(_ path: String, _ commit: ObjectID) throws -> String {
        let listing = try git("--git-dir", path, "ls-tree", "-r", commit.hex)
        var arguments = ["--git-dir", path, "update-index", "--add"]
        for line in listing.split(separator: "\n") {
            let fields = line.split(separator: "\t", maxSplits: 1)
            let meta = fields[0].split(separator: " ")
            arguments += ["--cacheinfo", "\(meta[0]),\(meta[2]),\(fields[1])"]
        }
        try? FileManager.default.removeItem(atPath: path + "/index")
        let update = try run("/usr/bin/git", arguments)
        #expect(update.status == 0, "\(update.stderr)")
        return try git("--git-dir", path, "write-tree").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func treesBuiltFromTheCacheAreTheTreesGitWrites() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            // Names whose order depends on whether an entry is a tree ("a" sorts as "a/"), a
            // replaced file, a name that is not plain (a space: libgit2's builder) between
            // plain ones, and a record path as the audit branch has them.
            let paths = ["a/x", "a.b", "a-b", "a0", "ab/c/d.json", "a/y.json", "b", "a/z/1", "Z", "a.b.c/k", "notes/a b.txt",
                         "a.b", "audit/2026/12/02/05/Q/01KBXYZ0123456789ABCDEFGHQ.json", "a/z/2", "notes/plain"]
            var head: ObjectID?
            for (index, file) in paths.enumerated() {
                head = try repo.writeCommit(adding: [file: Array("\(index)\n".utf8)], parent: head, message: "c\(index)\n", author: author)
                let commit = try #require(head)
                let tree = try git("--git-dir", path, "rev-parse", commit.hex + "^{tree}").trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(tree == (try gitsOwnTree(path, commit)), "after \(file)")
            }
            // Several files in one commit, in folders new and old.
            let many = try repo.writeCommit(adding: ["a/x": Array("new\n".utf8), "c/d/e": Array("e\n".utf8), "a0": Array("0\n".utf8)],
                                            parent: head, message: "many\n", author: author)
            let tree = try git("--git-dir", path, "rev-parse", many.hex + "^{tree}").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(tree == (try gitsOwnTree(path, many)))
            try repo.updateReference("refs/heads/main", to: many, expected: nil, message: "test")
            try git("--git-dir", path, "fsck", "--strict")
            #expect(try git("--git-dir", path, "show", "main:a.b") == "11\n")
            #expect(try git("--git-dir", path, "show", "main:notes/a b.txt") == "10\n")
        }
    }

    /// Buffered commits whose objects were dropped are never built upon: the next commit on the
    /// branch's head on disk has every object it names.
    @Test func aDiscardedBufferLeavesNoTreeToBuildOn() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let first = try repo.writeCommit(adding: ["audit/1/r1.json": Array("1\n".utf8)], parent: nil, message: "r1\n", author: author)
            try repo.updateReference("refs/heads/bulwark/audit", to: first, expected: nil, message: "test")
            try repo.beginObjectBuffer()
            _ = try repo.writeCommit(adding: ["audit/1/r2.json": Array("2\n".utf8)], parent: first, message: "r2\n", author: author)
            repo.discardObjectBuffer()
            let third = try repo.writeCommit(adding: ["audit/1/r3.json": Array("3\n".utf8)], parent: first, message: "r3\n", author: author)
            try repo.updateReference("refs/heads/bulwark/audit", to: third, expected: first, message: "test")
            try git("--git-dir", path, "fsck", "--strict")
            #expect(try git("--git-dir", path, "ls-tree", "-r", "--name-only", "bulwark/audit") == "audit/1/r1.json\naudit/1/r3.json\n")
        }
    }

    /// A file a person committed under a name that is not UTF-8 (Latin-1 `café`, `cafè`) keeps its
    /// bytes when a record's commit rewrites the folder it is in: never both turned into one
    /// `caf\u{FFFD}.md`, which would lose one of them and make a tree `git fsck` refuses.
    @Test func namesThatAreNotUTF8AreWrittenBackByteForByte() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/r.git"
            let repo = try Repository.create(at: path, bare: true)
            let script = """
                set -e
                a=$(printf 'one\\n' | git --git-dir "$1" hash-object -w --stdin)
                b=$(printf 'two\\n' | git --git-dir "$1" hash-object -w --stdin)
                tree=$(printf "100644 blob $a\\tnotes-caf\\351.md\\n100644 blob $b\\tnotes-caf\\350.md\\n" | git --git-dir "$1" mktree)
                git --git-dir "$1" commit-tree -m legacy "$tree"
                """
            let made = try run("/bin/sh", ["-c", script, "sh", path])
            #expect(made.status == 0, "\(made.stderr)")
            let parent = try #require(ObjectID(hex: made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
            let before = try git("--git-dir", path, "ls-tree", parent.hex)
            #expect(before.contains("notes-caf\\351.md") && before.contains("notes-caf\\350.md"), "\(before)")

            let record = try repo.writeCommit(adding: ["audit/2026/12/02/05/Q/01KBXYZ0123456789ABCDEFGHQ.json": Array("{}\n".utf8)],
                                              parent: parent, message: "record\n", author: author)
            let after = try git("--git-dir", path, "ls-tree", record.hex)
            #expect(after.contains(before.split(separator: "\n")[0]) && after.contains(before.split(separator: "\n")[1]), "\(after)")
            #expect(!after.contains("\\357\\277\\275"))
            try repo.updateReference("refs/heads/main", to: record, expected: nil, message: "test")
            try git("--git-dir", path, "fsck", "--strict")
        }
    }
}
