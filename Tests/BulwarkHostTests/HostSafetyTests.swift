import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// Plans and applies once with a given sshd validator (a script standing in for another writer).
func reconcile(_ state: DesiredState, sshd: SSHDValidator) async throws -> (Plan, CycleOutcome) {
    let reconciler = Reconciler(registry: Registry([HostAdapter.definition(sshd: sshd)]))
    let plan = try await reconciler.plan(state)
    return (plan, await reconciler.apply(plan, state: state, audit: RecordingSink()))
}

/// A file's bytes, mode and owner: what "unchanged" means for a file outside Bulwark's reach.
func fingerprint(_ path: String) throws -> String {
    let (mode, uid, gid) = modeAndOwner(path)
    return "\(String(mode, radix: 8)):\(uid):\(gid):" + (try read(path))
}

func link(_ path: String, to destination: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: destination)
}

func setModified(_ path: String, _ seconds: Int) {
    var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
    _ = utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
}

func isSymbolicLink(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0 && info.st_mode & 0o170000 == 0o120000
}

let accounts = (passwd: "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
                group: "root:x:0:\nshadow:x:42:\nalice:x:1000:\n")

@Suite struct SafePathTests {
    /// A root with alice, and a shadow file only root and the shadow group read.
    func shadowAndAlice(_ root: String) throws {
        try write(root + "/etc/passwd", accounts.passwd)
        try write(root + "/etc/group", accounts.group)
        try write(root + "/etc/shadow", "root:$y$secret:19700:0:99999:7:::\n", mode: 0o640)
        chown(root + "/etc/shadow", 0, 42)
    }

    /// Alice's own home under `root`, a folder she owns.
    func aliceHome(_ root: String) throws -> String {
        let home = root + "/home/alice"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        #expect(chown(home, 1000, 1000) == 0)
        return home
    }

    /// What alice can do where hard links are not protected: link etc/shadow to `path`, then
    /// passwd replaces shadow by a rename, and her name is the old shadow's only one, root's.
    func keepOldShadow(_ root: String, at path: String) throws {
        #expect(Glibc.link(root + "/etc/shadow", path) == 0)
        try write(root + "/etc/shadow.new", "root:$y$new:19800:0:99999:7:::\n", mode: 0o640)
        #expect(rename(root + "/etc/shadow.new", root + "/etc/shadow") == 0)
    }

    @Test func aUsersLinkToShadowNeverChangesShadowWhileTheirRealFileIsFixed() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try shadowAndAlice(root)
            // alice replaces a file Bulwark manages in her home with a link to the shadow file.
            try link(root + "/home/alice/notes", to: "../../etc/shadow")
            try write(root + "/home/alice/real", "x", mode: 0o644)
            let before = try fingerprint(root + "/etc/shadow")
            let state = try hostState(root: root, resource("FileMode", "notes", "path: /home/alice/notes\nmode: \"0600\"\nowner: alice")
                                      + resource("FileMode", "real", "path: /home/alice/real\nmode: \"0600\"\nowner: alice"))
            let (plan, outcome) = try await reconcile(state)
            let failure = try #require(plan.failures.first)
            #expect(plan.failures.count == 1 && failure.binding.resource.name == "notes")
            #expect(failure.message.contains("/home/alice/notes: is a symbolic link"), "\(failure.message)")
            #expect(try fingerprint(root + "/etc/shadow") == before, "shadow's owner, mode and bytes are unchanged")
            #expect(isSymbolicLink(root + "/home/alice/notes"))
            // The legitimate resource on the same target goes through.
            #expect(outcome.verified.map(\.record.name) == ["real"])
            #expect(modeAndOwner(root + "/home/alice/real").uid == 1000 && modeAndOwner(root + "/home/alice/real").mode == 0o600)
        }
    }

    /// The same with a hard link (a user can make one to a file they cannot read where
    /// `fs.protected_hardlinks` is off): a file with more than one name is left alone, so that
    /// shadow's owner and mode never follow the user's name for it; their own file is fixed.
    @Test func aUsersHardLinkToShadowNeverHandsShadowToTheUser() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try shadowAndAlice(root)
            try FileManager.default.createDirectory(atPath: root + "/home/alice", withIntermediateDirectories: true)
            #expect(Glibc.link(root + "/etc/shadow", root + "/home/alice/notes") == 0)
            try write(root + "/home/alice/real", "x", mode: 0o644)
            let before = try fingerprint(root + "/etc/shadow")
            let state = try hostState(root: root, resource("FileMode", "notes", "path: /home/alice/notes\nmode: \"0600\"\nowner: alice")
                                      + resource("FileMode", "real", "path: /home/alice/real\nmode: \"0600\"\nowner: alice"))
            let (plan, outcome) = try await reconcile(state)
            let failure = try #require(plan.failures.first)
            #expect(plan.failures.count == 1 && failure.binding.resource.name == "notes")
            #expect(failure.message.contains("/home/alice/notes: has 2 hard links"), "\(failure.message)")
            #expect(try fingerprint(root + "/etc/shadow") == before, "shadow's owner, mode and bytes are unchanged")
            #expect(outcome.verified.map(\.record.name) == ["real"])
            #expect(modeAndOwner(root + "/home/alice/real").uid == 1000 && modeAndOwner(root + "/home/alice/real").mode == 0o600)
        }
    }

    /// The hard link kept after shadow was replaced: passwd writes a new etc/shadow and renames
    /// it over the old one, and alice's name for the old file is its only name, owned by root.
    /// Where hard links are not protected, giving a root file in a folder alice owns to her is
    /// blocked and recorded (nothing tells the old shadow from a file root made there); her
    /// own file's mode is fixed beside it, and where `fs.protected_hardlinks` is 1 (no user can
    /// link a file they cannot read) a root file in her folder is given to her.
    @Test func anOldShadowKeptInAUsersFolderIsNotGivenToThem() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try shadowAndAlice(root)
            let home = try aliceHome(root)
            try keepOldShadow(root, at: home + "/notes")
            try write(home + "/own", "x", mode: 0o644)
            #expect(chown(home + "/own", 1000, 1000) == 0)
            let before = try fingerprint(home + "/notes")
            let manifests = resource("FileMode", "notes", "path: /home/alice/notes\nmode: \"0600\"\nowner: alice")
                + resource("FileMode", "own", "path: /home/alice/own\nmode: \"0600\"")
            let (plan, outcome) = try await reconcile(try hostState(root: root, manifests))
            let blocked = try #require(plan.remediations.first { $0.binding.resource.name == "notes" })
            #expect(blocked.decision == .blocked)
            var info = stat()
            #expect(stat(home + "/notes", &info) == 0)
            #expect(blocked.reason?.hasPrefix("owner alice would give away /home/alice/notes (inode \(info.st_ino)), a file in a folder "
                                              + "its owner (uid 1000) can write, where hard links are not protected") == true, "\(blocked.reason ?? "")")
            #expect(outcome.entries.contains { $0.record.name == "notes" && $0.record.decision == .blocked })
            #expect(try fingerprint(home + "/notes") == before, "the old shadow stays root's")
            #expect(outcome.verified.map(\.record.name) == ["own"])
            #expect(modeAndOwner(home + "/own").mode == 0o600)

            // Protected: a root file in alice's folder is hers when the policy says so.
            try write(root + "/proc/sys/fs/protected_hardlinks", "1\n")
            try write(home + "/made", "x", mode: 0o600)
            try await expectApplied(root, resource("FileMode", "made", "path: /home/alice/made\nowner: alice"))
            #expect(modeAndOwner(home + "/made").uid == 1000)
        }
    }

    /// A folder root owns, mode 0755, whose POSIX ACL lets alice write: she can plant an old
    /// shadow there as in her home. The ACL's mask is the folder's group bits, and bounds every
    /// user it names, so the folder counts as one others write; with the mask taking write away
    /// (chmod g-w), it does not, and the root file is given to her.
    @Test func aFolderWhoseACLLetsAUserWriteCountsAsTheirs() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try shadowAndAlice(root)
            let team = root + "/srv/team"
            try FileManager.default.createDirectory(atPath: team, withIntermediateDirectories: true)
            chmod(team, 0o755)
            // user::rwx user:alice:rwx group::r-x mask::rwx other::r-x, as setfacl writes it.
            let acl = try run("/usr/bin/python3", ["-c", """
                import os, struct, sys
                entries = [(1, 7, 0xFFFFFFFF), (2, 7, 1000), (4, 5, 0xFFFFFFFF), (0x10, 7, 0xFFFFFFFF), (0x20, 5, 0xFFFFFFFF)]
                os.setxattr(sys.argv[1], 'system.posix_acl_access', struct.pack('<I', 2) + b''.join(struct.pack('<HHI', *e) for e in entries))
                """, team])
            #expect(acl.status == 0, "\(acl.stderr)")
            try keepOldShadow(root, at: team + "/notes")
            let manifests = resource("FileMode", "notes", "path: /srv/team/notes\nowner: alice")
            let (plan, _) = try await reconcile(try hostState(root: root, manifests))
            let blocked = try #require(plan.remediations.first)
            #expect(blocked.decision == .blocked && blocked.reason?.contains("a file in a folder its group (gid 0) can write") == true,
                    "\(blocked.reason ?? "")")
            #expect(modeAndOwner(team + "/notes").uid == 0)

            // The mask without write: alice's entry gives her nothing to write with.
            chmod(team, 0o755)
            #expect(unlink(team + "/notes") == 0)
            try write(team + "/notes", "x", mode: 0o600)
            try await expectApplied(root, manifests)
            #expect(modeAndOwner(team + "/notes").uid == 1000)
        }
    }

    /// An approval of that block is of that file: replaced by another at the same path (a new
    /// inode, an old shadow alice planted since), the block is another, and waits for its own
    /// approval. A set-id bit is giving away too, and a folder root's group may write counts.
    @Test func anApprovalOfAGivenAwayFileIsOfThatFileOnly() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try shadowAndAlice(root)
            let home = try aliceHome(root)
            try write(home + "/tool", "x", mode: 0o755)
            let manifests = resource("FileMode", "tool", "path: /home/alice/tool\nowner: alice\nmode: \"0755\"")
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let first = try #require(try await reconciler.plan(try hostState(root: root, manifests)).remediations.first)
            #expect(first.decision == .blocked)
            let approval = try approvalFile(first, reason: "root made it for her")
            // Replaced, before the approval is used, by an old shadow alice kept (a new inode).
            #expect(unlink(home + "/tool") == 0)
            try keepOldShadow(root, at: home + "/tool")
            chmod(home + "/tool", 0o755)
            let state = try hostState(root: root, manifests, extra: [approval])
            let again = try #require(try await reconciler.plan(state).remediations.first)
            #expect(again.decision == .blocked && again.id != first.id && again.reason?.contains("does not approve this block") == true,
                    "\(again.decision) \(again.reason ?? "")")
            _ = await reconciler.apply(try await reconciler.plan(state), state: state, audit: RecordingSink())
            #expect(modeAndOwner(home + "/tool").uid == 0, "the old shadow stays root's")

            // A set-id bit given to a file in a folder root's group may write.
            let shared = root + "/srv/shared"
            try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
            chmod(shared, 0o775)
            try write(shared + "/run", "x", mode: 0o755)
            // The setuid guard blocks it first; approved past that, the write still refuses it.
            let setuidManifests = resource("FileMode", "run", "path: /srv/shared/run\nmode: \"4755\"")
            let setuid = try #require(try await reconciler.plan(try hostState(root: root, setuidManifests)).remediations.first)
            #expect(setuid.decision == .blocked && setuid.reason?.hasPrefix("mode 4755 would add the setuid bit") == true)
            let approved = try hostState(root: root, setuidManifests, extra: [try approvalFile(setuid, reason: "a tool we ship")])
            let plan = try await reconciler.plan(approved)
            #expect(plan.remediations.first?.decision == .applied)
            let record = try #require(await reconciler.apply(plan, state: approved, audit: RecordingSink()).entries.first?.record)
            #expect(record.result == .failed && record.error?.contains("refused at the write: mode 4755 would give away /srv/shared/run") == true
                    && record.error?.contains("its group (gid 0)") == true, "\(record.error ?? "")")
            #expect(modeAndOwner(shared + "/run").mode == 0o755)
        }
    }

    /// Allowed in the plan (root's folder, root's file), then, before the write, alice's
    /// folder and a file that is an old shadow: judged again on the file opened, and refused.
    @Test func aFileGivenAwayIsJudgedAgainOnTheFileOpened() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try shadowAndAlice(root)
            let home = root + "/home/alice"
            try write(home + "/notes", "x", mode: 0o600)
            let record = try await planThenApply(root, resource("FileMode", "notes", "path: /home/alice/notes\nowner: alice")) {
                #expect(chown(home, 1000, 1000) == 0)
                #expect(unlink(home + "/notes") == 0)
                try keepOldShadow(root, at: home + "/notes")
            }
            #expect(record.result == .failed && record.error?.contains("refused at the write: owner alice would give away /home/alice/notes") == true,
                    "\(record.error ?? "")")
            #expect(modeAndOwner(home + "/notes").uid == 0)
        }
    }

    @Test func anAbsoluteLinkAtAManagedPathFailsThatResourceOnly() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
            try write(root + "/etc/shadow", "root:*:1::::::\n", mode: 0o640)
            try link(root + "/etc/issue", to: "/etc/shadow")
            let state = try hostState(root: root, resource("FileMode", "issue", "path: /etc/issue\nmode: \"0644\"")
                                      + resource("LoginDefs", "l", "PASS_MAX_DAYS: 90"))
            // Not a refused revision: one failure, and the other resource is fixed.
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.failures.map(\.binding.resource.name) == ["issue"])
            #expect(outcome.verified.map(\.record.name) == ["l"])
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 90\n")
            #expect(modeAndOwner(root + "/etc/shadow").mode == 0o640)
        }
    }

    /// A link a user made at a managed path (in a folder they own) is not followed, for a read
    /// or a write: Bulwark resolves links itself, as root, so the kernel's protected_symlinks never
    /// sees them. The file it points to keeps its bytes; a link root made (Debian's, next test)
    /// is still followed.
    @Test func aLinkAUserMadeIsNotFollowedToAnotherFileOfTheRoot() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", accounts.passwd)
            try write(root + "/etc/group", accounts.group)
            try write(root + "/etc/real.defs", "PASS_MAX_DAYS 99999\nKEEP me\n")
            try link(root + "/etc/login.defs", to: "real.defs")
            #expect(lchown(root + "/etc/login.defs", 1000, 1000) == 0)
            try write(root + "/etc/sysctl.d/10-site.conf", "net.ipv4.tcp_syncookies = 0\n")
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 90")
                                      + resource("Sysctl", "k", "net.ipv4.tcp_syncookies: 1"))
            let (plan, outcome) = try await reconcile(state)
            let failure = try #require(plan.failures.first)
            #expect(plan.failures.count == 1 && failure.binding.resource.name == "l")
            #expect(failure.message.contains("etc/login.defs: is a symbolic link made by uid 1000"), "\(failure.message)")
            #expect(try read(root + "/etc/real.defs") == "PASS_MAX_DAYS 99999\nKEEP me\n")
            #expect(outcome.verified.map(\.record.name) == ["k"])
        }
    }

    /// A path is split at every `/` byte, as the kernel splits it. Split by `Character`, a `/`
    /// followed by a combining mark (`/\u{338}`) stayed inside one name, and `fstatat` then
    /// followed a user's link on the way itself: to a file outside the root. A link root made
    /// whose target has such a name, through a real folder, is still read.
    @Test func aSlashBeforeACombiningMarkStillEndsAName() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { scratch in
            let root = scratch + "/root", outside = scratch + "/outside"
            // Made by path, not through Foundation's path handling (which splits by `Character` too).
            func plant(_ folder: String, _ text: String) throws {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                let fd = open(folder + "/\u{338}site.conf", O_WRONLY | O_CREAT | O_EXCL, 0o644)
                try #require(fd >= 0)
                defer { close(fd) }
                try #require(text.utf8.withContiguousStorageIfAvailable { Glibc.write(fd, $0.baseAddress, $0.count) } == text.utf8.count)
            }
            try plant(outside, "net.ipv4.tcp_syncookies = 0\n")
            let before = try fingerprint(outside + "/\u{338}site.conf")
            try link(root + "/lnk", to: outside)
            #expect(lchown(root + "/lnk", 1000, 1000) == 0)
            try link(root + "/etc/sysctl.d/50-site.conf", to: "../../lnk/\u{338}site.conf")
            let state = try hostState(root: root, resource("Sysctl", "k", "net.ipv4.tcp_syncookies: 1"))
            let (plan, _) = try await reconcile(state)
            let failure = try #require(plan.failures.first, "the file outside the root was read: \(plan.remediations)")
            #expect(failure.message.contains("/lnk: is a symbolic link made by uid 1000"), "\(failure.message)")
            #expect(try fingerprint(outside + "/\u{338}site.conf") == before)

            // The same name in a real folder of the root, through a link root made: read, and fixed.
            try FileManager.default.removeItem(atPath: root + "/lnk")
            try plant(root + "/lnk", "net.ipv4.tcp_syncookies = 0\n")
            let (again, outcome) = try await reconcile(state)
            #expect(again.failures.isEmpty, "\(again.failures)")
            #expect(again.remediations.first?.changes.map(\.observed) == ["0"])
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf").contains("net.ipv4.tcp_syncookies = 1\n"))
        }
    }

    @Test func debiansSysctlLinkIsReadAndTheFixLandsInTheRealFile() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/sysctl.conf", "# Debian\nkernel.kptr_restrict = 0\nnet.ipv4.tcp_syncookies = 1\n")
            try link(root + "/etc/sysctl.d/99-sysctl.conf", to: "../sysctl.conf")
            let state = try hostState(root: root, resource("Sysctl", "k", "kernel.kptr_restrict: 1\nnet.ipv4.tcp_syncookies: 1"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.failures.isEmpty, "\(plan.failures)")
            #expect(plan.remediations.first?.changes.map(\.observed) == ["0"])
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            // The link stays a link; the line is superseded in the file it points to.
            #expect(isSymbolicLink(root + "/etc/sysctl.d/99-sysctl.conf"))
            #expect(try read(root + "/etc/sysctl.conf")
                    == "# Debian\n# bulwark: superseded by etc/sysctl.d/zz-bulwark.conf: kernel.kptr_restrict = 0\nnet.ipv4.tcp_syncookies = 1\n")
            #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf").contains("kernel.kptr_restrict = 1\n"))
            let (again, _) = try await reconcile(state)
            #expect(!again.hasDrift && again.failures.isEmpty)
        }
    }

    @Test func aFifoAtTheSSHDConfigFailsThatResourceAtOnce() async throws {
        try await withTemporaryDirectory { root in
            try FileManager.default.createDirectory(atPath: root + "/etc/ssh", withIntermediateDirectories: true)
            #expect(mkfifo(root + "/etc/ssh/sshd_config", 0o600) == 0)
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\"")
                                      + resource("LoginDefs", "l", "PASS_MAX_DAYS: 90"))
            // Opening a FIFO to read would wait for a writer forever; it is refused by type instead.
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.failures.map(\.binding.resource.name) == ["s"])
            #expect(plan.failures.first?.message.contains("sshd_config: is a FIFO, not a regular file") == true, "\(plan.failures)")
            #expect(outcome.verified.map(\.record.name) == ["l"])
        }
    }

    @Test func linksSwappedForFoldersDuringPassesNeverChangeAnythingOutsideTheRoot() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root"
            let outside = dir + "/outside"
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
            try write(root + "/etc/sysctl.d/10-local.conf", "kernel.dmesg_restrict = 0\n")
            try write(outside + "/login.defs", "SENTINEL 1\n", mode: 0o644)
            try write(outside + "/sysctl.d/10-local.conf", "kernel.dmesg_restrict = 0\n", mode: 0o644)
            let names = (1...8).map { "file\($0)" }
            for name in names {
                try write(root + "/etc/" + name, "inside\n", mode: 0o644)
                try write(outside + "/" + name, "outside\n", mode: 0o644)
            }
            let sentinels = [outside + "/login.defs", outside + "/sysctl.d/10-local.conf"] + names.map { outside + "/" + $0 }
            let before = try sentinels.map(fingerprint)

            // Another thread swaps etc for links out of the root (absolute and climbing), and back, as
            // fast as it can (a yield between swaps made a path-based chmod go unnoticed more often).
            let control = SwapControl()
            Thread.detachNewThread {
                var round = 0
                while !control.stop.load(ordering: .acquiring) {
                    rename(root + "/etc", root + "/etc.real")
                    symlink(round % 2 == 0 ? outside : "../outside", root + "/etc")
                    unlink(root + "/etc")
                    rename(root + "/etc.real", root + "/etc")
                    round += 1
                }
                control.done.store(true, ordering: .releasing)
            }
            var outcomes: [CycleOutcome] = []
            var failure: (any Error)?
            do {
                for pass in 0..<300 {
                    let days = pass % 2 == 0 ? 30 : 60
                    let mode = pass % 2 == 0 ? "0600" : "0640"
                    let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: \(days)")
                                              + resource("FileMode", "f", "path: /etc/login.defs\nmode: \"\(mode)\"")
                                              + names.map { resource("FileMode", $0, "path: /etc/\($0)\nmode: \"\(mode)\"") }.joined()
                                              + resource("Sysctl", "k", "kernel.dmesg_restrict: \(pass % 2)"))
                    outcomes.append(try await reconcile(state).1)
                }
            } catch {
                failure = error  // stop the other thread first
            }
            control.stop.store(true, ordering: .releasing)
            while !control.done.load(ordering: .acquiring) { sched_yield() }
            if let failure { throw failure }

            #expect(try sentinels.map(fingerprint) == before, "nothing outside the root changed")
            #expect(try FileManager.default.subpathsOfDirectory(atPath: outside).sorted()
                    == (["login.defs", "sysctl.d", "sysctl.d/10-local.conf"] + names).sorted(), "nothing was created outside the root")
            #expect(!outcomes.flatMap(\.entries).isEmpty, "the passes acted")
            // With the folder back in place, a pass converges.
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 45")
                                      + resource("FileMode", "f", "path: /etc/login.defs\nmode: \"0600\""))
            let (plan, _) = try await reconcile(state)
            #expect(plan.failures.isEmpty)
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 45\n")
            #expect(modeAndOwner(root + "/etc/login.defs").mode == 0o600)
        }
    }
}

final class SwapControl: Sendable {
    let stop = Atomic<Bool>(false)
    let done = Atomic<Bool>(false)
}

@Suite struct ConcurrentWriterTests {
    /// A validator that, the first `times` times it runs, does what another writer would:
    /// `action` on the real configuration, between Bulwark's read and its rename.
    func otherWriter(_ dir: String, times: Int, _ action: String) throws -> SSHDValidator {
        let script = dir + "/other-writer"
        try write(script, """
            #!/bin/sh
            count=$(cat \(dir)/count 2>/dev/null || echo 0)
            if [ "$count" -lt \(times) ]; then
              echo $((count + 1)) > \(dir)/count
              \(action)
            fi
            exit 0
            """, mode: 0o755)
        // The real sshd judges the candidate (the guard); the script stands where the final
        // check of the renamed bytes runs, between Bulwark's read and its rename.
        return SSHDValidator(executable: SSHDValidator.system.executable, candidateCheck: script)
    }

    @Test func anEditBetweenReadAndRenameSurvivesAndTheFixIsMadeOnIt() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root"
            try makeAdminHost(root)
            let config = root + "/etc/ssh/sshd_config"
            try write(config, "PermitRootLogin yes\n", mode: 0o600)
            let sshd = try otherWriter(dir, times: 1, "printf 'Banner /etc/issue.net\\n' >> \(config)")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            let (_, outcome) = try await reconcile(state, sshd: sshd)
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            #expect(try read(config) == "PermitRootLogin no\nBanner /etc/issue.net\n")
        }
    }

    @Test func aFileReadWhileTruncatedNeverBecomesPermanentWithoutItsLines() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root"
            try makeAdminHost(root)
            let config = root + "/etc/ssh/sshd_config"
            let full = "# site\nPort 22\nPermitRootLogin yes\nUsePAM yes\n"
            // A writer truncated the file and has not written it back yet when Bulwark reads it.
            try write(config, "", mode: 0o600)
            try write(dir + "/full", full)
            let sshd = try otherWriter(dir, times: 1, "cat \(dir)/full > \(config)")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            let (_, outcome) = try await reconcile(state, sshd: sshd)
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            #expect(try read(config) == "# site\nPort 22\nPermitRootLogin no\nUsePAM yes\n")
        }
    }

    @Test func aFolderSwappedForALinkOutOfTheRootBeforeTheRenameLeavesTheOutsideAlone() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root"
            try makeAdminHost(root)
            let outside = dir + "/outside"
            try write(root + "/etc/ssh/sshd_config", "PermitRootLogin yes\n", mode: 0o600)
            try write(outside + "/sshd_config", "PermitRootLogin yes\n", mode: 0o644)
            let before = try fingerprint(outside + "/sshd_config")
            // Between Bulwark's check of the folder and its rename, etc/ssh becomes a link out of the root.
            let sshd = try otherWriter(dir, times: 1, "mv \(root)/etc/ssh \(root)/etc/ssh.moved && ln -s \(outside) \(root)/etc/ssh")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            let (_, outcome) = try await reconcile(state, sshd: sshd)
            #expect(try fingerprint(outside + "/sshd_config") == before)
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == ["sshd_config"])
            // The rename happened in the folder that was opened and checked, wherever it now is.
            #expect(try read(root + "/etc/ssh.moved/sshd_config") == "PermitRootLogin no\n")
            #expect(outcome.entries.first?.record.result == .failed, "etc/ssh is no longer a configuration to verify")
        }
    }

    @Test func aWriterThatKeepsChangingTheFileIsLeftAloneWithAReason() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root"
            try makeAdminHost(root)
            let config = root + "/etc/ssh/sshd_config"
            try write(config, "PermitRootLogin yes\n", mode: 0o600)
            let sshd = try otherWriter(dir, times: 100, "printf '# edit\\n' >> \(config)")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            let (_, outcome) = try await reconcile(state, sshd: sshd)
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            #expect(record.error?.contains("another writer changed it 3 times while Bulwark was fixing it") == true, "\(record.error ?? "")")
            #expect(try read(config) == "PermitRootLogin yes\n# edit\n# edit\n# edit\n", "the other writer's content, not Bulwark's")
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/etc/ssh") == ["sshd_config"])
        }
    }
}

@Suite struct HostLockTests {
    @Test func aSecondBulwarkOnTheTargetFailsNamingTheHolder() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 90"))
            // The first apply creates the lock: run/bulwark (0700) and host.lock (0600), then releases it.
            _ = try await reconcile(try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 80")))
            #expect(modeAndOwner(root + "/run/bulwark").mode == 0o700)
            #expect(modeAndOwner(root + "/run/bulwark/host.lock").mode == 0o600)

            // Another Bulwark holds it, as Bulwark does: flock, and its pid in the file.
            let fd = open(root + "/run/bulwark/host.lock", O_RDWR | O_CLOEXEC)
            // Tried again for a moment, as Bulwark does: a child another test is spawning may
            // still hold the first apply's descriptor.
            #expect(fd >= 0 && FileLock.exclusive(fd) == 0)
            let pid = Array("4242\n".utf8)
            _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let audit = RecordingSink()
            let journal = MemoryJournal()
            let blocked = await reconciler.apply(try await reconciler.plan(state), state: state, audit: audit, journal: journal)
            // Nothing was tried: no record (not even a failed one), the intent closed, the holder named.
            #expect(blocked.entries.isEmpty, "\(blocked.entries.map(\.record.error))")
            #expect(audit.records.isEmpty)
            #expect(await journal.open.isEmpty)
            let busy = try #require(blocked.busy.first)
            #expect(busy.remediation.binding.resource.name == "l")
            #expect(busy.reason.contains("another Bulwark (pid 4242) is changing this target"), "\(busy.reason)")
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 80\n")

            close(fd)
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 90\n")
        }
    }
}

/// A local user who can write in the target's `run` (or who owns the lock file) could hold the
/// lock for ever and stop every fix, while the message blamed another Bulwark (outside review).
/// The lock is taken only in folders only root may write in, from a file of root's: otherwise
/// the fix fails (recorded), naming the folder or file and its owner. The twin: once the folder
/// is root's again, the same fix is applied.
@Suite struct UntrustedHostLockTests {
    @Test(.enabled(if: isRoot, "chowns to another uid")) func aLockAnotherUserCouldHoldIsNotTaken() async throws {
        for planted in ["run", "run/bulwark/host.lock"] {
            try await withTemporaryDirectory { root in
                try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
                try write(root + "/run/bulwark/host.lock", "")
                chmod(root + "/run/bulwark", 0o700)
                #expect(chown(root + "/" + planted, 4242, 4242) == 0)
                let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 90"))
                let (_, outcome) = try await reconcile(state)
                let record = try #require(outcome.entries.first?.record, "\(planted)")
                #expect(record.result == .failed, "\(planted)")
                let why = planted == "run" ? "belongs to uid 4242, not root, which lets another user change what Bulwark keeps below it (the target's lock"
                    : "the target's lock file belongs to uid 4242, not to root"
                #expect(record.error?.contains(why) == true, "\(planted): \(record.error ?? "")")
                #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 99999\n", "\(planted)")

                #expect(chown(root + "/" + planted, 0, 0) == 0)
                // Root's, but readable by others (anyone could open and flock it): made root's alone.
                chmod(root + "/run/bulwark/host.lock", 0o644)
                let (_, fixed) = try await reconcile(state)
                #expect(modeAndOwner(root + "/run/bulwark/host.lock").mode == 0o600)
                #expect(fixed.verified.count == 1, "\(planted): \(fixed.entries.map { $0.record.error ?? "" })")
                #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 90\n")
            }
        }
    }
}

@Suite struct StaleTemporaryTests {
    /// A fix holds the target's lock, and only the lock's holder writes temporary files there:
    /// every file of Bulwark's naming pattern is a leftover of a killed writer, even one younger
    /// than this process (a kill less than two seconds before a restart left such a file behind
    /// when age alone decided). A file that only resembles the pattern is someone else's.
    @Test func leftoverTemporaryFilesGoWhenBulwarkNextWritesThereWhateverTheirAge() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
            let old = root + "/etc/.login.defs.bulwark-Ab12Cd"
            let young = root + "/etc/.shadow.bulwark-Zz99Yy"
            let other = root + "/etc/.login.defs.bulwark-notours"
            for path in [old, young, other] { try write(path, "half a file") }
            setModified(old, 978_307_200)  // 2001: left by a Bulwark killed mid-write
            setModified(other, 978_307_200)
            setModified(young, Int(Date().timeIntervalSince1970) + 3600)  // newer than this process
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 90"))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 90\n")
            #expect(!FileManager.default.fileExists(atPath: old))
            #expect(!FileManager.default.fileExists(atPath: young), "only the lock's holder writes here: a leftover")
            #expect(FileManager.default.fileExists(atPath: other), "not Bulwark's naming pattern")
            #expect(try read(other) == "half a file")
        }
    }
}

@Suite struct HostValueTests {
    @Test func aRuntimeParameterIsComparedWithoutItsNewline() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/sysctl.d/zz-bulwark.conf", "kernel.randomize_va_space = 2\nnet.ipv4.ip_local_port_range = 32768 60999\n")
            // What `sysctl -w kernel.randomize_va_space=0` leaves, as /proc shows it.
            try write(root + "/proc/sys/kernel/randomize_va_space", "0\n")
            try write(root + "/proc/sys/net/ipv4/ip_local_port_range", "32768\t60999\n")
            let state = try hostState(root: root, resource("Sysctl", "k", "kernel.randomize_va_space: 2\nnet.ipv4.ip_local_port_range: 32768 60999"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.map(\.property) == ["kernel.randomize_va_space"])
            #expect(plan.remediations.first?.changes.first?.observed == "0")
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/proc/sys/kernel/randomize_va_space") == "2\n")
            let (again, _) = try await reconcile(state)
            #expect(!again.hasDrift)
        }
    }

    @Test func aNumericOwnerConvergesInOnePass() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", accounts.passwd)
            try write(root + "/etc/group", accounts.group)
            try write(root + "/etc/gshadow", "x", mode: 0o640)
            chown(root + "/etc/gshadow", 0, 0)
            let state = try hostState(root: root, resource("FileMode", "f", "path: /etc/gshadow\nowner: \"0\"\ngroup: \"42\""))
            let (plan, outcome) = try await reconcile(state)
            // uid 0 is "0" whatever its name; only the group differs.
            #expect(plan.remediations.first?.changes.map(\.property) == ["group"])
            #expect(plan.remediations.first?.changes.first?.observed == "root")
            #expect(outcome.verified.count == 1)
            #expect(modeAndOwner(root + "/etc/gshadow").gid == 42)
            let (again, _) = try await reconcile(state)
            #expect(!again.hasDrift && again.failures.isEmpty)
            // A name still compares as the id it stands for.
            let named = try hostState(root: root, resource("FileMode", "f", "path: /etc/gshadow\nowner: root\ngroup: shadow"))
            #expect(!(try await reconcile(named).0.hasDrift))
        }
    }

    @Test func bytesThatAreNotUTF8InAnSSHDCommentAreKept() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/ssh/sshd_config"
            // Latin-1 "café" in a comment: sshd accepts it.
            let prefix: [UInt8] = Array("# caf".utf8) + [0xE9] + Array("\nPermitRootLogin yes\n# ".utf8) + [0xFF, 0xFE] + Array("\n".utf8)
            try FileManager.default.createDirectory(atPath: root + "/etc/ssh", withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: path, contents: Data(prefix), attributes: [.posixPermissions: 0o600]))
            try makeAdminHost(root)
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.failures.isEmpty, "\(plan.failures)")
            #expect(outcome.verified.count == 1)
            let expected: [UInt8] = Array("# caf".utf8) + [0xE9] + Array("\nPermitRootLogin no\n# ".utf8) + [0xFF, 0xFE] + Array("\n".utf8)
            #expect(FileManager.default.contents(atPath: path).map { Array($0) } == expected)
        }
    }
}

/// Names and link targets that are not UTF-8: Swift would read each as another name (its bytes
/// replaced), so Bulwark would read or skip a different file than sshd, systemd-sysctl or glibc.
/// Such a name in a folder Bulwark lists, or such a link on a path it reads, fails that
/// resource with a reason; the same folder and link with UTF-8 names are read.
@Suite struct NonUTF8NameTests {
    @Test func aNameThatIsNotUTF8FailsTheResourceThatListsOrFollowsIt() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/sysctl.d/10-site.conf", "net.ipv4.tcp_syncookies = 0\n")
            let state = try hostState(root: root, resource("Sysctl", "k", "net.ipv4.tcp_syncookies: 1"))
            let folder = open(root + "/etc/sysctl.d", O_RDONLY | O_DIRECTORY)
            try #require(folder >= 0)
            defer { close(folder) }
            let name: [CChar] = [0x39, 0x39, CChar(bitPattern: 0xFF), 0x2E, 0x63, 0x6F, 0x6E, 0x66, 0]  // "99\xff.conf"
            let fd = openat(folder, name, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            try #require(fd >= 0)
            close(fd)
            let (plan, _) = try await reconcile(state)
            let failure = try #require(plan.failures.first, "\(plan.remediations)")
            #expect(failure.message.contains("name(s) that are not UTF-8"), "\(failure.message)")

            // The same bytes without `.conf`: systemd-sysctl never reads it, and neither does Bulwark.
            let stray: [CChar] = [0x39, 0x39, CChar(bitPattern: 0xFF), 0x2E, 0x74, 0x78, 0x74, 0]  // "99\xff.txt"
            #expect(renameat(folder, name, folder, stray) == 0)
            let (again, outcome) = try await reconcile(state)
            #expect(again.failures.isEmpty, "\(again.failures)")
            #expect(outcome.verified.count == 1)

            // A link root made whose target is not UTF-8, at the sshd configuration Bulwark reads.
            let target: [CChar] = [CChar(bitPattern: 0xFF), 0]
            try FileManager.default.createDirectory(atPath: root + "/etc/ssh", withIntermediateDirectories: true)
            #expect(symlink(target, root + "/etc/ssh/sshd_config") == 0)
            let sshd = try hostState(root: root, resource("SSHDConfig", "s", "X11Forwarding: \"no\""))
            let (linked, _) = try await reconcile(sshd)
            let refused = try #require(linked.failures.first, "\(linked.remediations)")
            #expect(refused.message.contains("is a symbolic link to a name that is not UTF-8"), "\(refused.message)")
        }
    }
}
