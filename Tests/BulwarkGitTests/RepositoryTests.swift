import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

@Suite struct RepositoryTests {
    let author = Signature(name: "Bulwark", email: "bulwark@localhost", time: Date(timeIntervalSince1970: 1_800_000_000))

    @Test func writesCommitsOnAnOrphanBranchThatGitReads() async throws {
        try await withTemporaryDirectory { dir in
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            let message = "remediate(X/y): t a -> b\n\nBody line.\n\nBulwark-Id: 01ABC\nBulwark-Result: verified\n"
            let first = try repo.writeCommit(adding: ["audit/2026/11/22/a.json": Array("{}\n".utf8)], parent: nil,
                                             message: message, author: author)
            try repo.updateReference("refs/heads/bulwark/audit", to: first, expected: nil, message: "test")
            let second = try repo.writeCommit(adding: ["audit/2026/11/22/b.json": Array("[]\n".utf8),
                                                       "audit/2026/11/23/c.json": Array("1\n".utf8)],
                                              parent: first, message: "second\n\nBulwark-Id: 01DEF\n", author: author)
            try repo.updateReference("refs/heads/bulwark/audit", to: second, expected: first, message: "test")

            // The git CLI is the independent reader.
            let log = try git("--git-dir", dir + "/r.git", "log", "--format=%H %(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
            #expect(log.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
                    == [[second.hex, "01DEF"], [first.hex, "01ABC"]])
            let files = try git("--git-dir", dir + "/r.git", "ls-tree", "-r", "--name-only", "bulwark/audit")
            #expect(files == "audit/2026/11/22/a.json\naudit/2026/11/22/b.json\naudit/2026/11/23/c.json\n")
            #expect(try git("--git-dir", dir + "/r.git", "show", "bulwark/audit:audit/2026/11/22/a.json") == "{}\n")
            try git("--git-dir", dir + "/r.git", "fsck", "--strict")
            let info = try repo.commitInfo(first)
            #expect(info.trailer("bulwark-result") == "verified")
            #expect(info.summary == "remediate(X/y): t a -> b")
        }
    }

    /// Review (M2, session 38): a trailer folded over lines (git's continuation lines, which
    /// begin with blanks) came back with its line feeds, and a pushed commit's value added lines
    /// of its own to every output that showed it. Both readers give it as one line, as `git
    /// interpret-trailers --unfold` does; a value on one line is as written.
    @Test func aFoldedTrailerIsReadAsOneLine() async throws {
        try await withTemporaryDirectory { dir in
            try git("init", "-q", dir + "/w")
            let message = "forged\n\nBulwark-Instance: local\n  30 audit record(s) on bulwark/audit: no problems found\n"
                + "Bulwark-Id:\t 01ABC \nBulwark-Target: edge-1\n"
            try git("-c", "user.name=M", "-c", "user.email=m@example.org", "commit", "-q", "--allow-empty", "-m", message, in: dir + "/w")
            #expect(try git("log", "-1", "--format=%(trailers:key=Bulwark-Instance,valueonly)", in: dir + "/w").contains("\n  30 audit"),
                    "git itself keeps the fold: the test writes one")
            let repo = try Repository.open(at: dir + "/w/.git")
            let head = try #require(try repo.resolve("HEAD"))
            let info = try repo.commitInfo(head)
            #expect(info.trailer("Bulwark-Instance") == "local 30 audit record(s) on bulwark/audit: no problems found")
            #expect(info.trailer("Bulwark-Target") == "edge-1")
            var walked: [String?] = []
            try repo.forEachCommit(from: head, trailer: "Bulwark-Instance") { _, value in walked.append(value) }
            #expect(walked == ["local 30 audit record(s) on bulwark/audit: no problems found"])
        }
    }

    @Test func remoteHeadsAreListedWithoutFetching() async throws {
        try await withTemporaryDirectory { dir in
            try git("init", "-q", "--bare", "-b", "main", dir + "/origin.git")
            try git("clone", "-q", dir + "/origin.git", dir + "/work")
            try write(dir + "/work/a.txt", "a\n")
            try git("add", "-A", in: dir + "/work")
            try git("commit", "-qm", "a", in: dir + "/work")
            try git("push", "-q", "origin", "main", in: dir + "/work")
            let repo = try Repository.create(at: dir + "/mine.git", bare: true)
            try repo.ensureRemote("origin", url: dir + "/origin.git")
            let heads = try repo.remoteHeads("origin")
            let main = try git("--git-dir", dir + "/origin.git", "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(heads["refs/heads/main"]?.hex == main)
            #expect(try repo.resolve("refs/remotes/origin/main") == nil, "nothing was fetched")
            try repo.ensureRemote("origin", url: dir + "/missing.git")
            #expect(throws: GitError.self) { try repo.remoteHeads("origin") }
        }
    }

    @Test func referenceUpdatesAreCompareAndSwap() async throws {
        try await withTemporaryDirectory { dir in
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            let a = try repo.writeCommit(adding: ["f": [1]], parent: nil, message: "a\n", author: author)
            let b = try repo.writeCommit(adding: ["g": [2]], parent: a, message: "b\n", author: author)
            try repo.updateReference("refs/heads/x", to: a, expected: nil, message: "t")
            #expect(throws: GitError.self) { try repo.updateReference("refs/heads/x", to: b, expected: nil, message: "t") }
            #expect(throws: GitError.self) { try repo.updateReference("refs/heads/x", to: b, expected: b, message: "t") }
            try repo.updateReference("refs/heads/x", to: b, expected: a, message: "t")
            #expect(try repo.resolve("refs/heads/x") == b)
            #expect(try repo.resolve("refs/heads/missing") == nil)
            #expect(try repo.isAncestor(a, of: b))
            #expect(try !repo.isAncestor(b, of: a))
        }
    }

    @Test func readsFilesFromObjectsAndListsChangedPaths() async throws {
        try await withTemporaryDirectory { dir in
            let work = dir + "/work"
            try git("init", "-q", "-b", "main", work)
            try write(work + "/desired-state/hosts/ssh.yaml", "kind: SSHDConfig\n")
            try write(work + "/desired-state/big.yaml", String(repeating: "x", count: 5000))
            try write(work + "/controllers/c.yaml", "kind: Controller\n")
            try write(work + "/README.md", "not read\n")
            try FileManager.default.createSymbolicLink(atPath: work + "/desired-state/link.yaml", withDestinationPath: "/etc/passwd")
            try git("add", "-A", in: work)
            try git("commit", "-qm", "one", in: work)
            let first = try #require(ObjectID(hex: try git("rev-parse", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)))
            try write(work + "/desired-state/hosts/ssh.yaml", "kind: SSHDConfig\nspec: {}\n")
            try FileManager.default.removeItem(atPath: work + "/controllers/c.yaml")
            try git("commit", "-qam", "two", in: work)
            let second = try #require(ObjectID(hex: try git("rev-parse", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)))

            let repo = try Repository.open(at: work)
            let files = try repo.files(at: first, under: ["desired-state", "controllers", "missing"], maxSize: 1000)
            #expect(files.map(\.path) == ["controllers/c.yaml", "desired-state/big.yaml", "desired-state/hosts/ssh.yaml",
                                          "desired-state/link.yaml"])
            let big = try #require(files.first { $0.path == "desired-state/big.yaml" })
            #expect(big.contents == nil && big.size == 5000)
            #expect(files.first { $0.path.hasSuffix("link.yaml") }?.kind == .symlink)
            #expect(files.first { $0.path.hasSuffix("ssh.yaml") }?.contents == Array("kind: SSHDConfig\n".utf8))
            #expect(try repo.changedPaths(from: first, to: second) == ["controllers/c.yaml", "desired-state/hosts/ssh.yaml"])
            #expect(try repo.changedPaths(from: nil, to: first).count == 5)
        }
    }

    /// The paths a commit changes, as `pathsChanged(by:)` and the state clone's unpushed records
    /// list them, are found folder by folder (only where ids differ): the same list as git's own
    /// diff (`git diff-tree -r --no-renames`) for a commit that adds, deletes, changes the mode
    /// of, and turns into a folder (and back) files in nested folders, for a root commit and for
    /// the whole-tree diff it replaced.
    @Test func changedPathsFollowGitForAddsDeletesModesAndTypeChanges() async throws {
        try await withTemporaryDirectory { dir in
            let work = dir + "/work"
            try git("init", "-q", "-b", "main", work)
            try write(work + "/a/b/c/keep.json", "1\n")
            try write(work + "/a/b/c/gone.json", "2\n")
            try write(work + "/a/b/mode.sh", "3\n")
            try write(work + "/a/b/becomes-folder", "4\n")
            try write(work + "/a/folder-becomes-file/x/y.json", "5\n")
            try write(work + "/a/folder-becomes-file/z.json", "6\n")
            try write(work + "/d/untouched/deep/file.json", "7\n")
            try write(work + "/top.txt", "8\n")
            try git("add", "-A", in: work)
            try git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "one", in: work)
            let fm = FileManager.default
            try write(work + "/a/b/c/new.json", "9\n")
            try write(work + "/a/e/f/new.json", "10\n")
            try fm.removeItem(atPath: work + "/a/b/c/gone.json")
            try fm.removeItem(atPath: work + "/a/b/becomes-folder")
            try write(work + "/a/b/becomes-folder/inside.json", "11\n")
            try fm.removeItem(atPath: work + "/a/folder-becomes-file")
            try write(work + "/a/folder-becomes-file", "12\n")
            try write(work + "/top.txt", "8 changed\n")
            try git("add", "-A", in: work)
            try git("update-index", "--chmod=+x", "a/b/mode.sh", in: work)
            try git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "two", in: work)
            let head = { () throws -> ObjectID in
                try #require(ObjectID(hex: try git("rev-parse", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)))
            }
            let second = try head()
            let repo = try Repository.open(at: work)
            let commit = try repo.commitInfo(second)
            let first = try #require(commit.parents.first)
            let byGit = try git("diff-tree", "-r", "--no-renames", "--name-only", "--no-commit-id", second.hex, in: work)
                .split(separator: "\n").map(String.init).sorted()
            #expect(byGit == ["a/b/becomes-folder", "a/b/becomes-folder/inside.json", "a/b/c/gone.json", "a/b/c/new.json",
                              "a/b/mode.sh", "a/e/f/new.json", "a/folder-becomes-file", "a/folder-becomes-file/x/y.json",
                              "a/folder-becomes-file/z.json", "top.txt"])
            #expect(try repo.pathsChanged(by: commit) == byGit)
            #expect(try repo.changedPathsOfChangedFolders(from: first, to: second) == repo.changedPaths(from: first, to: second))
            #expect(try repo.changedPathsOfChangedFolders(from: second, to: first) == byGit)
            let root = try git("ls-tree", "-r", "--name-only", first.hex, in: work).split(separator: "\n").map(String.init).sorted()
            #expect(try repo.pathsChanged(by: repo.commitInfo(first)) == root)

            // A merge: what it did not take cleanly from a parent, as before.
            try git("checkout", "-q", "-f", "-b", "side", first.hex, in: work)
            try write(work + "/d/untouched/deep/side.json", "13\n")
            try git("add", "-A", in: work)
            try git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "side", in: work)
            try git("checkout", "-q", "-f", "main", in: work)
            try git("-c", "user.name=t", "-c", "user.email=t@example.org", "merge", "-q", "--no-edit", "side", in: work)
            let merge = try repo.commitInfo(try head())
            #expect(merge.parents.count == 2)
            #expect(try repo.pathsChanged(by: merge) == [])
        }
    }

    /// What killed pushes leave in a pack folder goes only once too old to be a push in progress:
    /// Bulwark's own temporary files after an hour, anyone's temporary files and packs without an
    /// index after two weeks (as git's gc); a pack with an index or a `.keep` is never touched.
    @Test func packLeftoversGoOnlyOnceTooOldToBeAPushInProgress() async throws {
        try await withTemporaryDirectory { dir in
            let origin = dir + "/origin.git"
            try git("init", "-q", "--bare", origin)
            let work = dir + "/work"
            try git("clone", "-q", origin, work)
            try write(work + "/a", "a\n")
            try git("add", "-A", in: work)
            try git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "a", in: work)
            try git("push", "-q", "origin", "HEAD:refs/heads/main", in: work)
            try git("--git-dir", origin, "repack", "-adq")
            let folder = origin + "/objects/pack"
            let kept = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            #expect(kept.contains { $0.hasSuffix(".idx") })
            let leftovers = ["tmp_pack_bulwark_AbC123", "tmp_pack_Xy9876", "tmp_idx_Xy9876",
                             "pack-\(String(repeating: "1", count: 40)).pack",
                             "pack-\(String(repeating: "2", count: 40)).pack", "pack-\(String(repeating: "2", count: 40)).keep"]
            for name in leftovers { try write(folder + "/" + name, "PACK partial\n") }
            let all = Set(kept + leftovers)
            func present() throws -> Set<String> { Set(try FileManager.default.contentsOfDirectory(atPath: folder)) }

            // Fresh: another writer's push in progress, left alone.
            #expect(Repository.removePackLeftovers(in: origin).isEmpty)
            #expect(try present() == all)
            // Two hours on: only Bulwark's own temporary file goes.
            let hours = Repository.removePackLeftovers(in: origin, now: Date().addingTimeInterval(2 * 3600))
            #expect(hours.count == 1 && hours[0].contains("tmp_pack_bulwark_AbC123"), "\(hours)")
            #expect(try present() == all.subtracting(["tmp_pack_bulwark_AbC123"]))
            // Thirteen days on: nothing more.
            #expect(Repository.removePackLeftovers(in: origin, now: Date().addingTimeInterval(13 * 86400)).isEmpty)
            // Fifteen days on: the other temporary files and the pack without an index (not the kept one).
            let weeks = Repository.removePackLeftovers(in: origin, now: Date().addingTimeInterval(15 * 86400))
            #expect(weeks.count == 3, "\(weeks)")
            #expect(try present() == Set(kept + ["pack-\(String(repeating: "2", count: 40)).pack",
                                                 "pack-\(String(repeating: "2", count: 40)).keep"]))
            try FileManager.default.removeItem(atPath: folder + "/pack-\(String(repeating: "2", count: 40)).pack")
            try FileManager.default.removeItem(atPath: folder + "/pack-\(String(repeating: "2", count: 40)).keep")
            try git("--git-dir", origin, "fsck", "--strict")
            #expect(try git("--git-dir", origin, "count-objects", "-v").contains("garbage: 0"))
            #expect(try git("--git-dir", origin, "cat-file", "-p", "main:a") == "a\n")
        }
    }

    @Test func fetchesFromAnOriginIntoABareClone() async throws {
        try await withTemporaryDirectory { dir in
            let work = dir + "/work"
            try git("init", "-q", "-b", "main", work)
            try write(work + "/a", "a\n")
            try git("add", "-A", in: work)
            try git("commit", "-qm", "one", in: work)
            let clone = try Repository.create(at: dir + "/state.git", bare: true)
            try clone.ensureRemote("origin", url: work)
            try clone.fetch(remote: "origin", refspecs: ["+refs/heads/*:refs/remotes/origin/*"])
            let head = try git("rev-parse", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try clone.resolve("refs/remotes/origin/main")?.hex == head)
            #expect(try clone.remoteURL("origin") == work)

            let missing = try Repository.create(at: dir + "/other.git", bare: true)
            try missing.ensureRemote("origin", url: dir + "/does-not-exist")
            #expect(throws: GitError.self) { try missing.fetch(remote: "origin", refspecs: ["+refs/heads/*:refs/remotes/origin/*"]) }
        }
    }

    @Test func pushRefusesANonFastForwardAndReplayResolvesIt() async throws {
        try await withTemporaryDirectory { dir in
            let origin = try Repository.create(at: dir + "/origin.git", bare: true)
            let base = try origin.writeCommit(adding: ["audit/a.json": [1]], parent: nil, message: "a\n", author: author)
            try origin.updateReference("refs/heads/audit", to: base, expected: nil, message: "t")

            let local = try Repository.create(at: dir + "/local.git", bare: true)
            try local.ensureRemote("origin", url: dir + "/origin.git")
            try local.fetch(remote: "origin", refspecs: ["+refs/heads/*:refs/remotes/origin/*"])
            let remoteBase = try #require(try local.resolve("refs/remotes/origin/audit"))
            let mine = try local.writeCommit(adding: ["audit/mine.json": [2]], parent: remoteBase,
                                             message: "mine\n\nBulwark-Id: M\n", author: author)
            try local.updateReference("refs/heads/audit", to: mine, expected: nil, message: "t")

            // Someone else moves the origin first.
            let theirs = try origin.writeCommit(adding: ["audit/theirs.json": [3]], parent: base, message: "theirs\n", author: author)
            try origin.updateReference("refs/heads/audit", to: theirs, expected: base, message: "t")

            let rejected = try local.push("refs/heads/audit", to: "refs/heads/audit", expected: remoteBase, remote: "origin")
            #expect(rejected != nil, "a push from a stale base must not succeed")
            #expect(try origin.resolve("refs/heads/audit") == theirs)
            try local.fetch(remote: "origin", refspecs: ["+refs/heads/*:refs/remotes/origin/*"])
            let newBase = try #require(try local.resolve("refs/remotes/origin/audit"))
            let replayed = try local.replay(mine, onto: newBase)
            try local.updateReference("refs/heads/audit", to: replayed, expected: mine, message: "t")
            #expect(try local.push("refs/heads/audit", to: "refs/heads/audit", expected: newBase, remote: "origin") == nil)

            let files = try git("--git-dir", dir + "/origin.git", "ls-tree", "-r", "--name-only", "audit")
            #expect(files == "audit/a.json\naudit/mine.json\naudit/theirs.json\n")
            let replayedInfo = try local.commitInfo(replayed)
            #expect(replayedInfo.trailer("Bulwark-Id") == "M")
            #expect(replayedInfo.parents == [newBase])
            try git("--git-dir", dir + "/origin.git", "fsck", "--strict")
        }
    }

    @Test func parsesTrailersWrittenByGit() async throws {
        try await withTemporaryDirectory { dir in
            try git("init", "-q", "-b", "main", dir + "/w")
            try git("commit", "-q", "--allow-empty", "-m", "subject", "-m", "body", "-m", "Bulwark-Id: X1\nBulwark-Decision: held",
                    in: dir + "/w")
            let repo = try Repository.open(at: dir + "/w")
            let head = try #require(try repo.resolve("refs/heads/main"))
            let history = try repo.history(from: head)
            #expect(history.count == 1)
            #expect(history[0].trailers.map(\.key) == ["Bulwark-Id", "Bulwark-Decision"])
            #expect(history[0].trailer("Bulwark-Decision") == "held")
        }
    }

    /// The walk for commits taken in from the origin: newest first, none reachable from the
    /// commit hidden (also where the two have diverged, and where the hidden one is reached only
    /// through a merge's second parent: nothing taken in before is listed again); at most `limit`.
    @Test func anUnsortedHistoryListsOnlyWhatTheHiddenCommitDoesNotReach() async throws {
        try await withTemporaryDirectory { dir in
            let w = dir + "/w"
            try git("init", "-q", "-b", "main", w)
            for n in 1...5 { try git("commit", "-q", "--allow-empty", "-m", "c\(n)", in: w) }
            try git("branch", "local", "HEAD~3", in: w)
            try git("branch", "c3", "HEAD~2", in: w)
            try git("checkout", "-q", "local", in: w)
            try git("commit", "-q", "--allow-empty", "-m", "mine", in: w)
            // A side line from c4 merged with main (c5) as the merge's second parent.
            try git("checkout", "-q", "-b", "side", "main~1", in: w)
            try git("commit", "-q", "--allow-empty", "-m", "s1", in: w)
            try git("merge", "-q", "--no-ff", "-m", "merge", "main", in: w)
            let repo = try Repository.open(at: w)
            let head = try #require(try repo.resolve("refs/heads/main"))
            let local = try #require(try repo.resolve("refs/heads/local"))
            let c3 = try #require(try repo.resolve("refs/heads/c3"))
            let merge = try #require(try repo.resolve("refs/heads/side"))
            #expect(try repo.history(from: head, hiding: nil, limit: 100, sorted: false).map(\.summary) == ["c5", "c4", "c3", "c2", "c1"])
            #expect(try repo.history(from: head, hiding: c3, limit: 100, sorted: false).map(\.summary) == ["c5", "c4"])
            // Diverged: `local` is c2 plus one commit of its own.
            #expect(try repo.history(from: head, hiding: local, limit: 100, sorted: false).map(\.summary) == ["c5", "c4", "c3"])
            #expect(try repo.history(from: head, hiding: nil, limit: 2, sorted: false).map(\.summary) == ["c5", "c4"])
            #expect(try repo.history(from: head, hiding: head, limit: 100, sorted: false).isEmpty)
            // c5 reached only through the merge's second parent: the merge and s1, nothing below.
            #expect(Set(try repo.history(from: merge, hiding: head, limit: 100, sorted: false).map(\.summary)) == ["merge", "s1"])
        }
    }

    @Test func commitTimesAreWrittenInFull64Bits() async throws {
        try await withTemporaryDirectory { dir in
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            // 2107 and 2500: past 2106, where a 32-bit unsigned time wraps (libgit2 1.5 writes %u).
            var parent: ObjectID?
            for seconds in [4_354_819_200, 16_725_225_600] as [Int64] {
                let when = Signature(name: "Bulwark", email: "bulwark@localhost", time: Date(timeIntervalSince1970: Double(seconds)),
                                     offsetMinutes: -330)
                let commit = try repo.writeCommit(adding: ["f\(seconds)": [1]], parent: parent, message: "t\n", author: when)
                parent = commit
                let shown = try git("--git-dir", dir + "/r.git", "log", "-1", "--format=%at %ct %ai", commit.hex)
                #expect(shown.hasPrefix("\(seconds) \(seconds) "))
                #expect(shown.hasSuffix("-0530\n"))
                #expect(try repo.commitInfo(commit).author.time == when.time)
            }
            // 1960: git keeps timestamps unsigned, so a clock before 1970 is written as 0 (the
            // record's JSON keeps what the clock said) rather than as 2096 or as a date that
            // fails `git fsck`.
            let early = Signature(name: "Bulwark", email: "bulwark@localhost", time: Date(timeIntervalSince1970: -315_619_200))
            let commit = try repo.writeCommit(adding: ["early": [1]], parent: parent, message: "t\n", author: early)
            #expect(try git("--git-dir", dir + "/r.git", "log", "-1", "--format=%at", commit.hex) == "0\n")
            try repo.updateReference("refs/heads/t", to: commit, expected: nil, message: "t")
            try git("--git-dir", dir + "/r.git", "fsck", "--strict")
        }
    }

    @Test func aSignatureThatWouldForgeHeadersIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            for forged in [Signature(name: "x> 1 +0000\ncommitter Evil", email: "e@x"),
                           Signature(name: "x\nparent 0000000000000000000000000000000000000000", email: "e@x"),
                           Signature(name: "x", email: "e@x\rgpgsig y")] {
                #expect(throws: GitError.self) {
                    try repo.writeCommit(adding: ["f": [1]], parent: nil, message: "t\n", author: forged)
                }
            }
            let fine = Signature(name: "A Person", email: "a@x")
            _ = try repo.writeCommit(adding: ["f": [1]], parent: nil, message: "t\n", author: fine)
        }
    }
}
