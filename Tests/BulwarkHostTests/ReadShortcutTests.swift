@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Glibc
import Testing

/// The shortcuts of a plan's reads: a path without links opened in one call (`LinkFreeOpen`),
/// and a file's parse reused while the file is unchanged (`ContentCache`). Neither may ever
/// follow a link the walk would refuse, nor serve what a file held before it changed.
@Suite struct ReadShortcutTests {
    /// Read once without a link on the way, then a folder on the path is swapped for a link: a
    /// user's link is refused, root's is followed for a read (inside the root) and never opened
    /// for a write. A shortcut that let the kernel follow links would read the other file.
    @Test func aFolderSwappedForALinkAfterALinkFreeReadIsJudgedAsALink() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try write(root + "/srv/a/data/file", "first\n")
            try write(root + "/srv/b/data/file", "other\n")
            let host = try HostRoot(root)
            #expect(try FileIO.readText("/srv/a/data/file", in: host) == "first\n")
            #expect(try host.openFolderNoFollow(["srv", "a", "data"]).components == ["srv", "a", "data"])

            try FileManager.default.moveItem(atPath: root + "/srv/a/data", toPath: root + "/srv/a/old")
            try link(root + "/srv/a/data", to: "../b/data")
            #expect(lchown(root + "/srv/a/data", 1000, 1000) == 0)
            #expect(throws: HostError.self, "a user's link is never followed") {
                try FileIO.readText("/srv/a/data/file", in: host)
            }

            #expect(lchown(root + "/srv/a/data", 0, 0) == 0)
            #expect(try FileIO.readText("/srv/a/data/file", in: host) == "other\n", "root's link is followed for a read")
            #expect(try host.resolve("/srv/a/data/file") == root + "/srv/b/data/file")
            #expect(throws: HostError.self, "no write goes through any link") {
                try host.openFolderNoFollow(["srv", "a", "data"])
            }

            // An absolute link root made starts again at the target root, never at the machine's.
            try FileManager.default.removeItem(atPath: root + "/srv/a/data")
            try link(root + "/srv/a/data", to: "/srv/b/data")
            #expect(try FileIO.readText("/srv/a/data/file", in: host) == "other\n")
            // The last component a link, too.
            try link(root + "/srv/c/file", to: "../a/old/file")
            #expect(lchown(root + "/srv/c/file", 1000, 1000) == 0)
            #expect(throws: HostError.self) { try FileIO.readText("/srv/c/file", in: host) }
        }
    }

    /// A parse reused by the file's device, inode, size and times is read again after every kind
    /// of change: a same-size rewrite in place with its modification time put back (only the
    /// change time tells), a rename over it, a link retargeted to a file with the same size and
    /// times, a removal; and the shadow fields the guards read likewise.
    @Test func aCachedParseIsNeverServedForAChangedFile() async throws {
        try await withTemporaryDirectory { root in
            let old = 1_700_000_000
            for (name, text) in [("login.defs", "PASS_MAX_DAYS 99999\n"), ("a.defs", "PASS_MAX_DAYS 22222\n"),
                                 ("b.defs", "PASS_MAX_DAYS 33333\n")] {
                try write(root + "/etc/" + name, text)
                setModified(root + "/etc/" + name, old)
            }
            try write(root + "/etc/passwd", "root:x:0:0::/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n")
            try write(root + "/etc/shadow", "root:*:19000:0:99999:7:::\nadmin:*:19000:0:99999:7:::\n")
            for name in ["passwd", "shadow"] { setModified(root + "/etc/" + name, old) }
            // Only a file whose status is more than two seconds old is cached at all.
            try await Task.sleep(for: .milliseconds(2200))
            let host = try HostRoot(root)
            func observed() throws -> String? {
                try LoginDefsDriver.cache.value(LoginDefsDriver.path, in: host, parse: LoginDefsDriver.entries(file:))?["PASS_MAX_DAYS"]?.value
            }
            #expect(try observed() == "99999")
            #expect(try observed() == "99999")

            let handle = try #require(FileHandle(forWritingAtPath: root + "/etc/login.defs"))
            try handle.write(contentsOf: Data("PASS_MAX_DAYS 11111\n".utf8))
            try handle.close()
            setModified(root + "/etc/login.defs", old)
            #expect(try observed() == "11111", "same size, same modification time: the change time tells")

            #expect(rename(root + "/etc/a.defs", root + "/etc/login.defs") == 0)
            #expect(try observed() == "22222")

            try FileManager.default.removeItem(atPath: root + "/etc/login.defs")
            try link(root + "/etc/login.defs", to: "b.defs")
            #expect(try observed() == "33333")
            try await Task.sleep(for: .milliseconds(2200))
            #expect(try observed() == "33333")
            try write(root + "/etc/c.defs", "PASS_MAX_DAYS 44444\n")
            setModified(root + "/etc/c.defs", old)
            try FileManager.default.removeItem(atPath: root + "/etc/login.defs")
            try link(root + "/etc/login.defs", to: "c.defs")
            #expect(try observed() == "44444", "a link retargeted to a file of the same size and times")

            try FileManager.default.removeItem(atPath: root + "/etc/login.defs")
            #expect(try observed() == nil)

            #expect(try HostAccounts(root: host).user("admin")?.locked == false)
            #expect(try HostAccounts(root: host).user("admin")?.locked == false)
            let shadow = try #require(FileHandle(forWritingAtPath: root + "/etc/shadow"))
            try shadow.write(contentsOf: Data("root:*:19000:0:99999:7:::\nadmin:!:19000:0:99999:7:::\n".utf8))
            try shadow.close()
            setModified(root + "/etc/shadow", old)
            #expect(try HostAccounts(root: host).user("admin")?.locked == true, "a locked account is seen at once")
        }
    }
    /// A file as Bulwark's own last change left it (a mode it set, a file it renamed into place)
    /// is read under the lock without waiting for it to be still; any change by another writer
    /// after it (a chmod, a same-size rewrite in place) makes the read wait as before.
    @Test func onlyBulwarksOwnLastChangeSparesTheWaitForAStillFile() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
            #expect(chmod(root + "/etc/passwd", 0o666) == 0)
            func status(_ name: String) throws -> stat {
                var info = stat()
                #expect(stat(root + "/etc/" + name, &info) == 0)
                return info
            }
            try await Task.sleep(for: .milliseconds(150))  // both files still for `FileIO.settle`
            let manifests = resource("FileMode", "passwd", "path: /etc/passwd\nmode: \"0644\"")
                + resource("LoginDefs", "max", "PASS_MAX_DAYS: \"365\"")
            let (_, outcome) = try await reconcile(try hostState(root: root, manifests))
            #expect(outcome.verified.count == 2, "\(outcome.entries.map(\.record.error))")
            #expect(OwnChanges.isOwn(try status("passwd")), "Bulwark's chmod of a still file")
            #expect(OwnChanges.isOwn(try status("login.defs")), "the file Bulwark renamed into place")

            // Another writer after Bulwark: a chmod, a same-size rewrite in place.
            #expect(chmod(root + "/etc/passwd", 0o640) == 0)
            #expect(!OwnChanges.isOwn(try status("passwd")))
            let before = try read(root + "/etc/login.defs")
            let handle = try #require(FileHandle(forWritingAtPath: root + "/etc/login.defs"))
            try handle.write(contentsOf: Data(before.replacingOccurrences(of: "365", with: "366").utf8))
            try handle.close()
            #expect(!OwnChanges.isOwn(try status("login.defs")))
        }
    }

    /// Each fix renames a new file into place: the one it replaced is forgotten, so that a
    /// daemon fixing one file again and again keeps one entry for it, not one per inode.
    @Test func theFileAWriteReplacedIsForgotten() async throws {
        try await withTemporaryDirectory { root in
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
            let host = try HostRoot(root)
            func status() throws -> stat {
                var info = stat()
                #expect(stat(root + "/etc/login.defs", &info) == 0)
                return info
            }
            func identity() throws -> FileIdentity { FileIdentity(try status(), Array(try read(root + "/etc/login.defs").utf8)) }
            #expect(try FileIO.write(Array("PASS_MAX_DAYS 365\n".utf8), to: "/etc/login.defs", in: host, expected: try identity()))
            let first = try status()
            #expect(OwnChanges.isOwn(first))
            #expect(try FileIO.write(Array("PASS_MAX_DAYS 90\n".utf8), to: "/etc/login.defs", in: host, expected: try identity()))
            let second = try status()
            #expect(second.st_ino != first.st_ino)
            #expect(OwnChanges.isOwn(second))
            #expect(!OwnChanges.isOwn(first), "the replaced file's entry is gone")
        }
    }
}

/// The settled read waits only for what is left of `FileIO.settle` since the file last changed.
@Suite struct SettleWaitTests {
    private func changed(_ info: stat, plus milliseconds: Int) -> timespec {
        let nanoseconds = Int(info.st_ctim.tv_nsec) + milliseconds * 1_000_000
        return timespec(tv_sec: info.st_ctim.tv_sec + nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
    }

    /// Changed 30 ms ago: 70 ms left. 100 ms or more ago: nothing. A change time ahead of the
    /// clock: the whole settle.
    @Test func theWaitIsWhatIsLeftOfTheSettleSinceTheLastChange() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/sshd_config", "PermitRootLogin no\n")
            var info = stat()
            try #require(stat(root + "/sshd_config", &info) == 0)
            #expect(FileIO.stillLeft(info, now: changed(info, plus: 30)) == .milliseconds(70))
            #expect(FileIO.stillLeft(info, now: changed(info, plus: 100)) == nil)
            #expect(FileIO.stillLeft(info, now: changed(info, plus: 250)) == nil)
            #expect(FileIO.stillLeft(info, now: changed(info, plus: -40)) == FileIO.settle)
        }
    }

    /// Who holds a file open for writing, as the kernel answers a read lease: a descriptor open
    /// for writing (or reading and writing) anywhere is a writer; read-only ones are not; a
    /// file replaced at the name since it was looked at is `changed`.
    @Test func theKernelTellsWhetherAFileIsOpenForWriting() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
            let host = try HostRoot(root)
            let walk = try host.walk(["etc", "login.defs"])
            func writers() -> FileIO.Writers {
                var info = stat()
                guard stat(root + "/etc/login.defs", &info) == 0 else { return .changed }
                return FileIO.writers("login.defs", in: walk.folder, matching: info)
            }
            #expect(writers() == .none)
            let reader = open(root + "/etc/login.defs", O_RDONLY | O_CLOEXEC)
            #expect(writers() == .none, "a reader is no writer")
            for flags in [O_WRONLY, O_RDWR, O_WRONLY | O_APPEND] {
                let fd = open(root + "/etc/login.defs", flags | O_CLOEXEC)
                #expect(writers() == .open, "open with \(flags)")
                close(fd)
                #expect(writers() == .none, "closed again")
            }
            close(reader)
            var old = stat()
            #expect(stat(root + "/etc/login.defs", &old) == 0)
            try write(root + "/etc/login.defs.new", "PASS_MAX_DAYS 1\n")
            #expect(rename(root + "/etc/login.defs.new", root + "/etc/login.defs") == 0)
            #expect(FileIO.writers("login.defs", in: walk.folder, matching: old) == .changed)
        }
    }
}

/// The account database reused under the target's lock.
@Suite struct AccountCacheUnderLockTests {
    /// Read once (files still for 2 s, so the parse is kept), then the root's `etc` link is
    /// pointed at another folder whose passwd gives `admin` another uid: under the lock the
    /// new file's uid is used, not the kept parse of the old one. Without the change, the same
    /// database is served under the lock from the cache.
    @Test func aLinkPointedElsewhereIsAMissUnderTheLock() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            for (folder, uid) in [("etc-a", 1000), ("etc-b", 2000)] {
                try write(root + "/persist/\(folder)/passwd", "root:x:0:0:root:/root:/bin/bash\nadmin:x:\(uid):\(uid)::/home/admin:/bin/bash\n")
                try write(root + "/persist/\(folder)/group", "root:x:0:\nadmin:x:\(uid):\n")
            }
            try link(root + "/etc", to: "persist/etc-a")
            try await Task.sleep(for: .milliseconds(3200))  // older than `ContentKey.isRecent` (whole seconds)
            let host = try HostRoot(root)
            #expect(try AccountDatabase(root: host).userID("admin") == 1000)
            let kept = try await host.applying { try AccountDatabase(root: host).userID("admin") }
            #expect(kept == 1000, "unchanged: the kept parse serves the read under the lock")

            #expect(unlink(root + "/etc") == 0)
            try link(root + "/etc", to: "persist/etc-b")
            let moved = try await host.applying { try AccountDatabase(root: host).userID("admin") }
            #expect(moved == 2000, "the link points elsewhere now: its passwd, not the kept parse")
        }
    }
}

@Suite struct ObservationScopeCacheTests {
    /// A parse of passwd and group changed a moment ago (too recently for their identity to be
    /// trusted across a same-size rewrite) serves the other reads of the plan that made it, as
    /// one snapshot, and nothing else: not a fix under the lock, not another plan, not a read
    /// outside any plan. A planted parse tells which reads were served from the cache.
    @Test func aParseOfARecentFileServesOnlyThePlanThatMadeIt() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n")
            try write(root + "/etc/group", "root:x:0:\nadmin:x:1000:\n")
            // Stamped an hour ahead: recent however long the test takes (a loaded machine).
            for name in ["passwd", "group"] { setModified(root + "/etc/" + name, Int(Date().timeIntervalSince1970) + 3600) }
            let host = try HostRoot(root)
            let plan = ObservationScope()
            func planted() throws {
                var snapshot = FileSnapshot()
                snapshot.take(try host.resolve("etc/passwd"))
                snapshot.take(try host.resolve("etc/group"))
                var fake = try AccountDatabase(root: host)
                fake.users = [("admin", 4242)]
                AccountDatabase.cache.store(fake, for: host.path, readAt: snapshot, unlessRecent: true)
            }
            try ObservationScope.$current.withValue(plan) { try planted() }
            #expect(try AccountDatabase(root: host).userID("admin") == 1000, "outside any plan: read")
            let inPlan = try ObservationScope.$current.withValue(plan) { try AccountDatabase(root: host).userID("admin") }
            #expect(inPlan == 4242, "the plan that read it: served from the cache")
            let another = try ObservationScope.$current.withValue(ObservationScope()) { try AccountDatabase(root: host).userID("admin") }
            #expect(another == 1000, "another plan: read")
            let underLock = try await ObservationScope.$current.withValue(plan) {
                try await host.applying { try AccountDatabase(root: host).userID("admin") }
            }
            #expect(underLock == 1000, "a fix under the lock, even inside the plan's scope: read")

            // Outside a plan, a recent file's parse is not stored at all.
            try planted()
            #expect(try AccountDatabase(root: host).userID("admin") == 1000, "outside any plan: not stored, read")
        }
    }

    /// Within one plan, a target's files found unchanged once are not looked at again: its
    /// other resources see the same snapshot (a plan of 100 roots checked each sysctl file 7
    /// times per target). A change after that is seen by the next plan, by reads outside any
    /// plan, and by a fix under the lock, even one inside the plan's scope.
    @Test func aPlanReadsATargetsFilesAsOneSnapshot() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n")
            try write(root + "/etc/group", "root:x:0:\nadmin:x:1000:\n")
            // Old enough to be trusted (modified and changed more than two whole seconds ago): the parse
            // is stored for every reader, not for this plan alone.
            for name in ["passwd", "group"] { setModified(root + "/etc/" + name, Int(Date().timeIntervalSince1970) - 3600) }
            try await Task.sleep(for: .milliseconds(3_200))
            let host = try HostRoot(root)
            let plan = ObservationScope()
            let first = try ObservationScope.$current.withValue(plan) { try AccountDatabase(root: host).userID("admin") }
            #expect(first == 1000)
            // Rewritten: a stat sees another file, a new read sees 2000.
            try write(root + "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nadmin:x:2000:1000::/home/admin:/bin/bash\n")
            setModified(root + "/etc/passwd", Int(Date().timeIntervalSince1970) - 7200)
            let sameUser = try ObservationScope.$current.withValue(plan) { try AccountDatabase(root: host).userID("admin") }
            #expect(sameUser == 1000, "the same plan: its snapshot")
            let another = try ObservationScope.$current.withValue(ObservationScope()) { try AccountDatabase(root: host).userID("admin") }
            #expect(another == 2000, "another plan: read")
            #expect(try AccountDatabase(root: host).userID("admin") == 2000, "outside any plan: read")
        }
    }

    /// A read under the target's lock (`settledOnly`) checks the files even inside the scope of
    /// a plan that found them unchanged a moment before (a fix is built from fresh reads; today
    /// the lock's blocking thread does not carry the scope either, so this holds twice).
    @Test func aReadUnderTheLockChecksFilesThePlanFoundUnchanged() async throws {
        try await withTemporaryDirectory { root in
            let file = root + "/conf"
            try write(file, "one\n")
            setModified(file, Int(Date().timeIntervalSince1970) - 3600)
            // Changed more than two whole seconds ago: stored for every reader, not for the plan alone.
            try await Task.sleep(for: .milliseconds(3_200))
            let cache = ParseCache<String>()
            let plan = ObservationScope()
            ObservationScope.$current.withValue(plan) {
                var snapshot = FileSnapshot()
                snapshot.take(file)
                cache.store("one", for: "k", readAt: snapshot, unlessRecent: true)
            }
            try write(file, "three\n")
            setModified(file, Int(Date().timeIntervalSince1970) - 7200)
            #expect(ObservationScope.$current.withValue(plan) { cache.lookup("k") } == "one", "the plan: its snapshot")
            #expect(ObservationScope.$current.withValue(plan) { cache.lookup("k", settledOnly: true) } == nil, "under the lock: checked")
            #expect(cache.lookup("k") == nil, "outside any plan: checked")
        }
    }
}
