import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// The account guard: no lock, expiry or no-login shell for UID 0 or the last administrator
/// with a login path; no shell that is not a program in the root or not in its etc/shells.
@Suite struct AccountGuardTests {
    let root0 = FixtureAccount(name: "root", uid: 0, hash: "$y$j9T$roothash")
    let admin = FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: true)
    let ops = FixtureAccount(name: "ops", uid: 1001, hash: "$y$j9T$opshash", groups: ["wheel"])

    @Test func lockingRootIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin])
            try await expectBlocked(root, resource("UserAccount", "r", "name: root\nlocked: true"), reason: "root has UID 0")
            try await expectBlocked(root, resource("UserAccount", "r", "name: root\nshell: /usr/sbin/nologin"), reason: "root has UID 0")
            try await expectBlocked(root, resource("UserAccount", "r", "name: root\nexpires: 2024-01-01"), reason: "root has UID 0")
        }
    }

    @Test func lockingTheOnlySudoAccountIsBlockedAndOneOfTwoIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin])
            try await expectBlocked(root, resource("UserAccount", "a", "name: admin\nlocked: true"),
                                    reason: "admin is the last account in sudo, wheel, admin that can log in")
            try await expectBlocked(root, resource("UserAccount", "a", "name: admin\nexpires: 2030-01-01"),
                                    reason: "admin is the last account in sudo, wheel, admin that can log in")
        }
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, ops])
            try await expectApplied(root, resource("UserAccount", "a", "name: admin\nlocked: true"))
            #expect(try read(root + "/etc/shadow").contains("\nadmin:!$y$j9T$adminhash:"))
        }
    }

    /// useradd writes `!` alone for an account whose password was never set. Unlocking took
    /// the `!` off and left an empty hash: a login without a password wherever pam_unix has
    /// nullok, `su deploy` included. Blocked and recorded, as `passwd -u` refuses it; an
    /// account with a password behind its `!` is unlocked.
    @Test func unlockingAnAccountThatHasNoPasswordIsBlockedAndOneWithAPasswordIsUnlocked() async throws {
        try await withTemporaryDirectory { root in
            let deploy = FixtureAccount(name: "deploy", uid: 1002, hash: "!")
            let guest = FixtureAccount(name: "guest", uid: 1003, hash: "!$y$j9T$guesthash")
            let stale = FixtureAccount(name: "stale", uid: 1004, hash: "!!")
            try makeHost(root, [root0, admin, deploy, guest, stale])
            try await expectBlocked(root, resource("UserAccount", "d", "name: deploy\nlocked: false"),
                                    reason: "unlocking deploy would leave it without a password")
            try await expectBlocked(root, resource("UserAccount", "s", "name: stale\nlocked: false"),
                                    reason: "unlocking stale would leave its hash '!…', still no password")
            #expect(try read(root + "/etc/shadow").contains("\ndeploy:!:"))
            try await expectApplied(root, resource("UserAccount", "g", "name: guest\nlocked: false"))
            #expect(try read(root + "/etc/shadow").contains("\nguest:$y$j9T$guesthash:"))
        }
    }

    /// pam_unix reads shadow only for an account whose passwd password field is `x` (or
    /// `##name`): with a hash there, or nothing, a lock or expiry written to shadow is not what
    /// `su` or sshd's PAM read, and Bulwark said locked and in sync. Such an account's lock and
    /// expiry fail their observation, naming the line; an account whose password is in shadow
    /// is locked, and one whose passwd field is `*` is locked already.
    @Test func aLockIsNotJudgedWherePAMReadsThePasswordFromPasswd() async throws {
        try await withTemporaryDirectory { root in
            let guest = FixtureAccount(name: "guest", uid: 1002, hash: "!$y$j9T$guesthash")
            let temp = FixtureAccount(name: "temp", uid: 1003, hash: "$y$j9T$temphash")
            try makeHost(root, [root0, admin, ops, guest, temp])
            let passwd = try read(root + "/etc/passwd")
            try write(root + "/etc/passwd", passwd.replacingOccurrences(of: "guest:x:", with: "guest::"))
            let shadow = try read(root + "/etc/shadow")
            let (plan, _) = try await reconcile(try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true")))
            let failure = try #require(plan.failures.first?.message)
            #expect(failure.contains("account guest's password field in passwd (line 4) is empty: PAM reads its password there"), "\(failure)")
            #expect(plan.remediations.isEmpty, "not called in sync, not changed")
            #expect(try read(root + "/etc/shadow") == shadow)
            try await expectApplied(root, resource("UserAccount", "t", "name: temp\nlocked: true"))
            #expect(try read(root + "/etc/shadow").contains("\ntemp:!$y$j9T$temphash:"))
            // `*` in passwd matches no password: locked as PAM reads it, in sync, nothing written;
            // pam_unix's older `##name` sends it to shadow like `x`.
            let withStar = try read(root + "/etc/passwd").replacingOccurrences(of: "guest::", with: "guest:*:")
                .replacingOccurrences(of: "temp:x:", with: "temp:##temp:")
            try write(root + "/etc/passwd", withStar)
            let (inSync, _) = try await reconcile(try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true")
                                                                   + resource("UserAccount", "t", "name: temp\nlocked: true")))
            #expect(inSync.failures.isEmpty && inSync.remediations.isEmpty, "\(inSync.failures.map(\.message))")
        }
    }

    /// passwd and shadow lines are split at every `:` byte, as glibc splits them: a full name
    /// that starts with a combining mark (`:\u{338}`, one `Character`) hid the account from the
    /// guards (its line had six fields) and from the UserAccount kind (nothing to lock).
    @Test func aFullNameStartingWithACombiningMarkHidesNoAccount() async throws {
        for locked in ["admin", "ops"] {
            try await withTemporaryDirectory { root in
                try makeHost(root, [root0, admin, ops])
                let passwd = try read(root + "/etc/passwd")
                try write(root + "/etc/passwd", passwd.replacingOccurrences(of: ":1001:ops:", with: ":1001:\u{338}Ops,,,:"))
                // Locking admin leaves ops, an administrator still; ops itself is found and locked.
                try await expectApplied(root, resource("UserAccount", "a", "name: \(locked)\nlocked: true"))
                #expect(try read(root + "/etc/shadow").contains("\n\(locked):!$y$j9T$\(locked)hash:"))
            }
        }
    }

    /// A member glibc reads as another name is not that account: the group line's member ends
    /// in a carriage return (CRLF file) or a blank, or is the account's name decomposed
    /// (`jose\u{301}` for `josé`). Locking the one real administrator is blocked; with ops
    /// listed plainly, it is allowed.
    @Test(arguments: ["ops\r", "ops ", "ops\u{A0}", "nfd"])
    func aMemberGlibcReadsAsAnotherNameIsNoAdministrator(_ member: String) async throws {
        let josé = FixtureAccount(name: "jos\u{E9}", uid: 1001, hash: "$y$j9T$opshash")
        let other = member == "nfd" ? josé : ops
        let listed = member == "nfd" ? "jose\u{301}" : member
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, FixtureAccount(name: other.name, uid: other.uid, hash: other.hash)])
            let group = try read(root + "/etc/group")
            try write(root + "/etc/group", group.replacingOccurrences(of: "wheel:x:10:\n", with: "wheel:x:10:\(listed)\n"))
            try await expectBlocked(root, resource("UserAccount", "a", "name: admin\nlocked: true"),
                                    reason: "admin is the last account in sudo, wheel, admin that can log in")
            try write(root + "/etc/group", group.replacingOccurrences(of: "wheel:x:10:\n", with: "wheel:x:10:\(other.name)\n"))
            try await expectApplied(root, resource("UserAccount", "a", "name: admin\nlocked: true"))
        }
    }

    /// The guard is asked again at the write, under the target's lock. Between a plan that
    /// allowed locking admin (ops, in wheel, is another way in) and its apply, another writer
    /// takes ops out of wheel: the lock is refused, recorded failed with the guard's reason, and
    /// shadow stays as it was; the next plan blocks it. Where what changed in between does not
    /// matter (a guest added), the lock is made.
    @Test(arguments: [false, true])
    func aLockThePlanAllowedIsJudgedAgainAtTheWrite(opsTaken: Bool) async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, ops])
            let lock = resource("UserAccount", "a", "name: admin\nlocked: true")
            let shadow = try read(root + "/etc/shadow")
            let record = try await planThenApply(root, lock) {
                if opsTaken {
                    let group = try read(root + "/etc/group")
                    try write(root + "/etc/group", group.replacingOccurrences(of: "wheel:x:10:ops\n", with: "wheel:x:10:\n"))
                } else {
                    try write(root + "/etc/passwd", try read(root + "/etc/passwd") + "guest:x:1002:1002:guest:/home/guest:/bin/sh\n")
                }
            }
            if opsTaken {
                #expect(record.result == .failed, "\(String(describing: record.result))")
                #expect(record.error?.contains("refused at the write: admin is the last account in sudo, wheel, admin that can log in") == true,
                        "\(record.error ?? "")")
                #expect(try read(root + "/etc/shadow") == shadow)
                let again = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(try hostState(root: root, lock))
                #expect(again.remediations.map(\.decision) == [.blocked])
            } else {
                #expect(record.result == .verified, "\(String(describing: record.result)) \(record.error ?? "")")
                #expect(try read(root + "/etc/shadow").contains("\nadmin:!$y$j9T$adminhash:"))
            }
        }
    }

    /// An approval lets through the block it was given for, and no other. Locking the only
    /// administrator is blocked and approved; if by the write admin has become UID 0, that is
    /// a block no one approved, and the lock is refused. Unchanged, the approved lock is made
    /// (the guard, asked again at the write, finds the approved block and lets it through).
    @Test(arguments: [false, true])
    func anApprovalLetsThroughOnlyTheBlockItWasGivenFor(madeUIDZero: Bool) async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin])
            let lock = resource("UserAccount", "a", "name: admin\nlocked: true")
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let preview = try await reconciler.plan(try hostState(root: root, lock))
            let blocked = try #require(preview.remediations.first { $0.decision == .blocked })
            let state = try hostState(root: root, lock, extra: [try approvalFile(blocked, reason: "console access exists")])
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.map(\.decision) == [.applied])
            if madeUIDZero {
                try write(root + "/etc/passwd", try read(root + "/etc/passwd").replacingOccurrences(of: "admin:x:1000:", with: "admin:x:0:"))
            }
            let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
            let record = try #require(outcome.entries.first?.record)
            if madeUIDZero {
                #expect(record.result == .failed && record.error?.contains("refused at the write: admin has UID 0") == true
                        && record.error?.contains("the approval was of another block: admin is the last account") == true,
                        "\(record.error ?? "")")
                #expect(!(try read(root + "/etc/shadow")).contains("admin:!"))
            } else {
                #expect(record.result == .verified, "\(record.error ?? "")")
                #expect(try read(root + "/etc/shadow").contains("\nadmin:!$y$j9T$adminhash:"))
            }
        }
    }

    /// Two resources each lock one of two administrators: each alone leaves the other, so each
    /// alone is allowed; one pass makes both, so they are judged together and the second is
    /// blocked, and stays blocked (recorded once) with the first made. With a third
    /// administrator, both go through.
    @Test func twoAdministratorsLockedByTwoResourcesAreJudgedTogether() async throws {
        let both = resource("UserAccount", "lock-admin", "name: admin\nlocked: true")
            + resource("UserAccount", "lock-ops", "name: ops\nlocked: true")
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, ops])
            let state = try hostState(root: root, both)
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.map(\.decision).sorted { "\($0)" < "\($1)" } == [.applied, .blocked],
                    "\(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" })")
            let reason = plan.remediations.first { $0.decision == .blocked }?.reason ?? ""
            #expect(reason.contains("that can log in: locking it would leave no administrator login")
                    && reason.contains("judged with the changes this pass also makes on this host: UserAccount/lock-"), "\(reason)")
            let sink = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: sink)
            #expect(outcome.entries.filter { $0.record.decision == .blocked }.count == 1)
            #expect(outcome.entries.filter { $0.record.result == .verified }.count == 1)
            let again = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
            let blocked = again.entries.filter { $0.record.decision == .blocked }
            #expect(blocked.count == 1 && blocked.allSatisfy(\.alreadyRecorded), "\(again.entries.map(\.record.decision))")
            let shadow = try read(root + "/etc/shadow")
            #expect(shadow.contains("\nadmin:!$y$j9T$adminhash:") != shadow.contains("\nops:!$y$j9T$opshash:"),
                    "exactly one administrator is locked: \(shadow)")
        }
        try await withTemporaryDirectory { root in
            let alice = FixtureAccount(name: "alice", uid: 1002, hash: "$y$j9T$alicehash", groups: ["sudo"])
            try makeHost(root, [root0, admin, ops, alice])
            try await expectApplied(root, both)
            let shadow = try read(root + "/etc/shadow")
            #expect(shadow.contains("\nadmin:!$y$j9T$adminhash:") && shadow.contains("\nops:!$y$j9T$opshash:"))
        }
    }

    /// Review: an administrator etc/sudoers makes (`ops ALL=(ALL:ALL) ALL`, or through a
    /// `%group` in an included sudoers.d file) was not counted, so locking the only one went
    /// through. Blocked and recorded; a rule that runs one command, and a sudoers.d file linked
    /// out of the root, make no administrator. With a second one by sudoers.d, the lock is applied.
    @Test func lockingTheOnlyAdministratorSudoersNamesIsBlockedAndOneOfTwoIsApplied() async throws {
        let sudoOps = FixtureAccount(name: "ops", uid: 1001, hash: "$y$j9T$opshash")
        let backup = FixtureAccount(name: "backup", uid: 1002, hash: "$y$j9T$backuphash")
        let bob = FixtureAccount(name: "bob", uid: 1003, hash: "$y$j9T$bobhash", groups: ["users"])
        let sudoers = "Defaults env_reset\n# ops runs everything\nops ALL=(ALL:ALL) ALL\n"
            + "backup ALL=(root) NOPASSWD: /usr/bin/rsync\n@includedir /etc/sudoers.d\n"
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, sudoOps, backup, bob])
            try write(root + "/etc/sudoers", sudoers, mode: 0o440)
            // Outside the root: a link there is followed inside the root only, where nothing is.
            let outside = root + "-outside-sudoers"
            try write(outside, "%users ALL=(ALL) ALL\n", mode: 0o440)
            defer { try? FileManager.default.removeItem(atPath: outside) }
            try FileManager.default.createDirectory(atPath: root + "/etc/sudoers.d", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/sudoers.d/outside", withDestinationPath: outside)
            try await expectBlocked(root, resource("UserAccount", "o", "name: ops\nlocked: true"),
                                    reason: "ops is the last administrator that can log in (etc/sudoers lets it run every command as root)")
        }
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, sudoOps, backup, bob])
            try write(root + "/etc/sudoers", sudoers, mode: 0o440)
            try write(root + "/etc/sudoers.d/team", "%users ALL = (ALL) NOPASSWD: ALL\n", mode: 0o440)
            try await expectApplied(root, resource("UserAccount", "o", "name: ops\nlocked: true"))
            #expect(try read(root + "/etc/shadow").contains("\nops:!$y$j9T$opshash:"))
        }
    }

    /// Review: with no administrator at all, locking or taking the shell of the last account
    /// anyone could log in with went through. Blocked and recorded; with another account that
    /// can log in, the same lock is applied.
    @Test func lockingTheLastAccountThatCanLogInIsBlockedAndOneOfTwoIsApplied() async throws {
        let noLoginRoot = FixtureAccount(name: "root", uid: 0)
        let guest = FixtureAccount(name: "guest", uid: 1002, hash: "$y$j9T$guesthash")
        try await withTemporaryDirectory { root in
            try makeHost(root, [noLoginRoot, guest])
            try await expectBlocked(root, resource("UserAccount", "g", "name: guest\nlocked: true"),
                                    reason: "guest is the last account that can log in: locking it would leave no account a way in")
            try await expectBlocked(root, resource("UserAccount", "g", "name: guest\nshell: /usr/sbin/nologin"),
                                    reason: "guest is the last account that can log in")
        }
        try await withTemporaryDirectory { root in
            try makeHost(root, [noLoginRoot, guest, FixtureAccount(name: "carol", uid: 1003, hash: "$y$j9T$carolhash")])
            try await expectApplied(root, resource("UserAccount", "g", "name: guest\nlocked: true"))
            #expect(try read(root + "/etc/shadow").contains("\nguest:!$y$j9T$guesthash:"))
        }
    }

    /// An administrator whose account expires on a set date (on disk, from an earlier pass) is
    /// no way back in after it: locking the other administrator is blocked. With no expiry, the
    /// same lock goes through.
    @Test func anAdministratorThatWillExpireIsNotCountedAsAWayIn() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, ops])
            let shadow = try read(root + "/etc/shadow")
            try write(root + "/etc/shadow", shadow.replacingOccurrences(of: "ops:$y$j9T$opshash:19700:0:99999:7:::", with: "ops:$y$j9T$opshash:19700:0:99999:7::40000:"), mode: 0o640)
            try await expectBlocked(root, resource("UserAccount", "a", "name: admin\nlocked: true"),
                                    reason: "admin is the last account in sudo, wheel, admin that can log in")
        }
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, ops])
            try await expectApplied(root, resource("UserAccount", "a", "name: admin\nlocked: true"))
        }
    }

    @Test func noLoginShellForTheOnlySudoAccountIsBlockedAndForAGuestIsApplied() async throws {
        try await withTemporaryDirectory { root in
            let guest = FixtureAccount(name: "guest", uid: 1002, hash: "$y$j9T$guesthash")
            try makeHost(root, [root0, admin, guest])
            try await expectBlocked(root, resource("UserAccount", "a", "name: admin\nshell: /usr/sbin/nologin"),
                                    reason: "giving it the shell /usr/sbin/nologin would leave no administrator login")
            try await expectApplied(root, resource("UserAccount", "g", "name: guest\nshell: /usr/sbin/nologin\nlocked: true"))
            #expect(try read(root + "/etc/passwd").contains("guest:x:1002:1002:guest:/home/guest:/usr/sbin/nologin\n"))
        }
    }

    @Test func aShellNotInEtcShellsOrNotInTheRootIsBlockedAndAListedOneIsApplied() async throws {
        try await withTemporaryDirectory { root in
            let guest = FixtureAccount(name: "guest", uid: 1002, shell: "/bin/sh", hash: "$y$j9T$guesthash")
            try makeHost(root, [root0, admin, guest])
            try write(root + "/tmp/.x/sh", "#!/bin/true\n", mode: 0o755)
            try await expectBlocked(root, resource("UserAccount", "g", "name: guest\nshell: /tmp/.x/sh"),
                                    reason: "shell /tmp/.x/sh is not listed in the target's etc/shells")
            try await expectBlocked(root, resource("UserAccount", "g", "name: guest\nshell: /bin/zsh"),
                                    reason: "shell /bin/zsh is not an executable file inside the target root")
            try await expectApplied(root, resource("UserAccount", "g", "name: guest\nshell: /bin/bash"))
        }
    }

    /// A CRLF line in etc/passwd: glibc keeps the carriage return in the last field, so
    /// `/bin/bash\r` is no login shell. The guard counts ops as no way in, and its block says why;
    /// the UserAccount kind reads the shell as glibc does, so `shell: /bin/bash` is a drift (it
    /// dropped the CR and said in sync), fixed by writing the line with a line feed alone and
    /// every other byte kept. Then locking admin leaves ops and goes through.
    @Test func aShellEndingInACarriageReturnIsNoLoginAndIsFixed() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, ops])
            let passwd = try read(root + "/etc/passwd")
            try write(root + "/etc/passwd", passwd.replacingOccurrences(of: ":/home/ops:/bin/bash\n", with: ":/home/ops:/bin/bash\r\n"))
            let reason = try await expectBlocked(root, resource("UserAccount", "a", "name: admin\nlocked: true"),
                                                 reason: "admin is the last account in sudo, wheel, admin that can log in")
            #expect(reason.contains("the login shell of ops ends in a carriage return (a CRLF line in etc/passwd)"), "\(reason)")
            let state = try hostState(root: root, resource("UserAccount", "o", "name: ops\nshell: /bin/bash"))
            let changes = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state).remediations.first?.changes
            #expect(changes?.map(\.observed) == ["/bin/bash\r"])
            try await expectApplied(root, resource("UserAccount", "o", "name: ops\nshell: /bin/bash"))
            #expect(try read(root + "/etc/passwd") == passwd)
            try await expectApplied(root, resource("UserAccount", "a", "name: admin\nlocked: true"))
        }
    }

    /// A CRLF line in etc/shadow is one glibc skips (its carriage return is no number): to
    /// glibc, bob has no shadow entry and so no password. Locking alice, whose key is the other
    /// administrator's way in, is blocked (bob's password counted before); with bob's line
    /// ending in a line feed alone, it is allowed. Locking bob himself fails, naming the line,
    /// rather than writing a lock glibc would not read. A CRLF etc/shells lists its shells
    /// (split by `Character`, the file was one line and listed none).
    @Test func aCRLFShadowLineIsNoEntryAndCRLFShellsAreRead() async throws {
        let alice = FixtureAccount(name: "alice", uid: 1000, groups: ["sudo"], key: true)
        let bob = FixtureAccount(name: "bob", uid: 1001, hash: "$y$j9T$bobhash", groups: ["sudo"])
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, alice, bob])
            let shadow = try read(root + "/etc/shadow")
            try write(root + "/etc/shadow", shadow.replacingOccurrences(of: "bob:$y$j9T$bobhash:19700:0:99999:7:::\n",
                                                                      with: "bob:$y$j9T$bobhash:19700:0:99999:7:::\r\n"), mode: 0o640)
            try await expectBlocked(root, resource("UserAccount", "a", "name: alice\nexpires: 2020-01-01"),
                                    reason: "alice is the last account in sudo, wheel, admin that can log in")
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()]))
                .plan(try hostState(root: root, resource("UserAccount", "b", "name: bob\nlocked: true")))
            #expect(plan.remediations.isEmpty && plan.failures.first?.message.contains("line in shadow (line 3) is one glibc skips") == true,
                    "\(plan.failures)")
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            try await expectApplied(root, resource("UserAccount", "a", "name: alice\nexpires: 2020-01-01"))
        }
        try await withTemporaryDirectory { root in
            let guest = FixtureAccount(name: "guest", uid: 1002, shell: "/bin/sh", hash: "$y$j9T$guesthash")
            try makeHost(root, [root0, admin, guest])
            try write(root + "/etc/shells", "# /etc/shells\r\n/bin/sh\r\n  /bin/bash # the one\r\n")
            try await expectApplied(root, resource("UserAccount", "g", "name: guest\nshell: /bin/bash"))
            try await expectBlocked(root, resource("UserAccount", "g", "name: guest\nshell: /tmp/sh"),
                                    reason: "shell /tmp/sh is not an executable file inside the target root")
        }
    }

    /// passwd lines as glibc reads them: the shell is the rest of the line after the sixth `:`
    /// (`/bin/bash:x` is no shell: `shell: /bin/bash` is a drift, and the fix replaces all of
    /// it), and blanks before a name are no part of it (`  ops:…` is ops, found and locked).
    @Test func aShellWithAColonAndANameAfterBlanksAreReadAsGlibcReadsThem() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, ops])
            let passwd = try read(root + "/etc/passwd")
            try write(root + "/etc/passwd", passwd.replacingOccurrences(of: "ops:x:1001:1001:ops:/home/ops:/bin/bash\n",
                                                                      with: "  ops:x:1001:1001:ops:/home/ops:/bin/bash:x\n"))
            try await expectApplied(root, resource("UserAccount", "o", "name: ops\nshell: /bin/bash"))
            #expect(try read(root + "/etc/passwd") == passwd)
            try await expectApplied(root, resource("UserAccount", "o", "name: ops\nlocked: true"))
            #expect(try read(root + "/etc/shadow").contains("\nops:!$y$j9T$opshash:"))
        }
    }

    /// uids, gids and short lines as glibc reads them: ` 0`, `-0` and `+0` are uid 0
    /// (`UInt32(" 0")` is nil, the line was no account to the guard, and locking that uid-0
    /// account was allowed); a group line of three fields is a group (wheel as alice's primary
    /// group makes her an administrator, so locking admin leaves one).
    @Test func idsAndShortLinesAreReadAsGlibcReadsThem() async throws {
        for uid in [" 0", "-0", "+0"] {
            try await withTemporaryDirectory { root in
                try makeHost(root, [root0, admin])
                try write(root + "/etc/passwd", try read(root + "/etc/passwd") + "p3:x:\(uid):0::/root:/bin/bash\n")
                try write(root + "/etc/shadow", try read(root + "/etc/shadow") + "p3:$y$j9T$p3hash:19700:0:99999:7:::\n", mode: 0o640)
                try await expectBlocked(root, resource("UserAccount", "p", "name: p3\nlocked: true"), reason: "p3 has UID 0")
            }
        }
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin, FixtureAccount(name: "alice", uid: 1001, hash: "$y$j9T$alicehash")])
            try write(root + "/etc/passwd", try read(root + "/etc/passwd").replacingOccurrences(of: "alice:x:1001:1001:", with: "alice:x:1001:10:"))
            try write(root + "/etc/group", try read(root + "/etc/group").replacingOccurrences(of: "wheel:x:10:\n", with: "wheel:x:10\n"))
            try await expectApplied(root, resource("UserAccount", "a", "name: admin\nlocked: true"))
        }
        // glibc's reader moves a line after its leading blanks up to a NUL, the NUL not moved: the
        // last line of a file without a line feed keeps its last bytes twice (checked with getpwnam).
        #expect(LineFile.glibcContent("  q1:x:1010:1010::/home/q1:/bin/bash") == "q1:x:1010:1010::/home/q1:/bin/bashsh")
        #expect(LineFile.glibcContent("  q1:x:1010:1010::/home/q1:/bin/bash\n") == "q1:x:1010:1010::/home/q1:/bin/bash")
        #expect(LineFile.glibcContent("ops:x:1:1::/h:/bin/bash\r\n") == "ops:x:1:1::/h:/bin/bash\r")
    }

    /// etc/shadow lines, each with what glibc 2.36's `sgetspent` made of it on this machine
    /// (nil: it skipped the line; else the hash and the expiry, -1 for none).
    @Test func shadowLinesAreReadAsGlibcReadsThem() {
        let cases: [(String, String?, Int?)] = [
            ("a:$y$h:19700:0:99999:7:::", "$y$h", -1),
            ("a:$y$h:19700:0:99999:7:::\r", nil, nil),
            ("a:$y$h", nil, nil), ("a:$y$h:", nil, nil),
            ("a:$y$h:1:2:3", "$y$h", -1), ("a:$y$h:1:2:3:\r", "$y$h", -1), ("a:h:1:2:3:  ", "h", -1),
            ("a:!$y$h:1:2:3:4:5:6:7:junk", nil, nil), ("a:h:1:2:3:4:5:6:7:", nil, nil), ("a:h:1:2:3:4:5:6::", nil, nil),
            ("a:h:1:2:3:4:5:6:7", "h", 6), ("a:h:1:2:3:4", nil, nil), ("a:h:1:2:3:4:5:6", "h", 6), ("a:h:1:2:3:4:5:", nil, nil),
            ("a:h:::::::", "h", -1), ("a:h:1:2:3:\t4:5:6:", "h", 6), ("a:h:x:2:3::::", nil, nil),
            ("a:$y$h:19700:0:99999:7::4294967296:", nil, nil), ("a:h:1:2:3:4:5:4294967295:", "h", -1),
            ("a:h:1:2:3:4:5:00020000:", "h", 20000), ("a:$y$h:19700:0:99999:7:: 20000:", "$y$h", 20000),
            ("a:$y$h:19700:0:99999:7::20000 :", nil, nil), ("a:$y$h:19700:0:99999:7::-1:", nil, nil),
            ("a:$y$h:19700:0:99999:7::+5:", "$y$h", 5), ("a:h:1:2:3::::7x", nil, nil), ("a:h:1:2:3:::: 7", "h", -1),
            ("+a:h", nil, nil), ("a:h:-0:2:3::::", "h", -1), ("a:h:1:2:3:::-0:", "h", 0),
        ]
        for (line, hash, expiry) in cases {
            let parsed = ShadowLine(Substring(line))
            #expect(parsed.map { String($0.hash) } == hash && parsed.map { $0.expiresDay ?? -1 } == expiry, "\(line.debugDescription)")
        }
    }
}

/// The file-mode floor: no group or world write on system files, no world read of secrets, no
/// set-id bit added, no system file handed to a person's account.
@Suite struct FileModeGuardTests {
    func host(_ root: String) throws {
        try makeHost(root, [FixtureAccount(name: "root", uid: 0), FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true)])
        try write(root + "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n", mode: 0o440)
        try write(root + "/etc/sudoers.d/admins", "%sudo ALL=(ALL:ALL) ALL\n", mode: 0o440)
        try write(root + "/etc/ssh/ssh_host_ed25519_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n", mode: 0o600)
        try write(root + "/usr/local/bin/tool", "#!/bin/true\n", mode: 0o755)
        try write(root + "/etc/login.defs", "UID_MIN 1000\n")
    }

    @Test func shadowMade0777IsBlockedAnd0640RootShadowIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/shadow\nmode: \"0777\""),
                                    reason: "mode 0777 would let group or others write /etc/shadow")
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/shadow\nmode: \"0644\""),
                                    reason: "mode 0644 would let every user read /etc/shadow")
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/shadow\nmode: \"0640\"\ngroup: admin"),
                                    reason: "group admin (gid 1000, at or above GID_MIN 1000) would be able to read /etc/shadow")
            try await expectApplied(root, resource("FileMode", "f", "path: /etc/shadow\nmode: \"0600\"\nowner: root"))
            guard isRoot else { return }
            try await expectApplied(root, resource("FileMode", "f", "path: /etc/shadow\nmode: \"0640\"\nowner: root\ngroup: shadow"))
            #expect(modeAndOwner(root + "/etc/shadow").mode == 0o640 && modeAndOwner(root + "/etc/shadow").gid == 42)
        }
    }

    @Test func secretsMadeWorldReadableAreBlocked() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/sudoers\nmode: \"0444\""), reason: "would let every user read /etc/sudoers")
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/sudoers.d/admins\nmode: \"0644\""), reason: "read /etc/sudoers.d/admins")
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/ssh/ssh_host_ed25519_key\nmode: \"0644\""), reason: "holds secrets")
            // A link at a managed path is never followed by a mode change (see SafePathTests).
            try await expectApplied(root, resource("FileMode", "f", "path: /etc/sudoers\nmode: \"0400\""))
        }
    }

    @Test func setuidAddedIsBlockedAndAPlainModeIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("FileMode", "f", "path: /usr/local/bin/tool\nmode: \"4755\""), reason: "add the setuid bit")
            try await expectBlocked(root, resource("FileMode", "f", "path: /usr/local/bin/tool\nmode: \"2755\""), reason: "add the setgid bit")
            try await expectApplied(root, resource("FileMode", "f", "path: /usr/local/bin/tool\nmode: \"0750\""))
        }
    }

    /// root and admin log in with bin/bash; guest with bin/guestsh.
    func hostWithGuest(_ root: String) throws {
        try makeHost(root, [FixtureAccount(name: "root", uid: 0), FixtureAccount(name: "daemon", uid: 1, shell: "/usr/sbin/nologin"),
                            FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true),
                            FixtureAccount(name: "guest", uid: 1001, shell: "/bin/guestsh", key: true)])
        try write(root + "/bin/guestsh", "#!/bin/true\n", mode: 0o755)
        try write(root + "/etc/login.defs", "UID_MIN 1000\n")
    }

    @Test(.enabled(if: isRoot)) func anAdministratorsShellMadeUnusableIsBlockedAndAGuestsShellIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try hostWithGuest(root)
            try await expectBlocked(root, resource("FileMode", "f", "path: /bin/bash\nmode: \"0644\""),
                                    reason: "/bin/bash would no longer be executable by root (uid 0), whose login shell it is")
            try await expectBlocked(root, resource("FileMode", "f", "path: /bin/bash\nmode: \"0750\""),
                                    reason: "/bin/bash would no longer be executable by admin (uid 1000), whose login shell it is")
            try await expectBlocked(root, resource("FileMode", "f", "path: /bin\nmode: \"0700\""),
                                    reason: "admin (uid 1000) could no longer reach its login shell /bin/bash through /bin")
            try await expectBlocked(root, resource("FileMode", "f", "path: /bin/bash\nowner: guest"),
                                    reason: "owner guest (uid 1001, at or above UID_MIN 1000) is not a system account; /bin/bash is a system file")
            try await expectBlocked(root, resource("FileMode", "f", "path: /bin/bash\nmode: \"0777\""),
                                    reason: "would let group or others write /bin/bash, a system file")
            // Root alone may still run it (a program no one may run is judged by `tightened`).
            try await expectApplied(root, resource("FileMode", "f", "path: /bin/guestsh\nmode: \"0700\""))
            #expect(modeAndOwner(root + "/bin/guestsh").mode == 0o700)
            // The shell kept for administrators: root and the sudo group still run it.
            try await expectApplied(root, resource("FileMode", "f", "path: /bin/bash\nmode: \"0750\"\ngroup: sudo"))
            #expect(modeAndOwner(root + "/bin/bash").mode == 0o750 && modeAndOwner(root + "/bin/bash").gid == 27)
        }
    }

    @Test(.enabled(if: isRoot)) func sudoLosingSetuidOrRootIsBlockedAndKeptForTheSudoGroupIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try hostWithGuest(root)
            try write(root + "/usr/bin/sudo", "#!/bin/true\n", mode: 0o755)
            chmod(root + "/usr/bin/sudo", 0o4755)
            try await expectBlocked(root, resource("FileMode", "f", "path: /usr/bin/sudo\nmode: \"0755\""),
                                    reason: "/usr/bin/sudo would lose its setuid bit: administrators could no longer become root")
            // The kernel takes the setuid bit with a chown; the fix puts it back (`Kept`).
            try await expectApplied(root, resource("FileMode", "g", "path: /usr/bin/sudo\ngroup: users"))
            #expect(modeAndOwner(root + "/usr/bin/sudo").mode == 0o4755 && modeAndOwner(root + "/usr/bin/sudo").gid == 100)
            try await expectBlocked(root, resource("FileMode", "f", "path: /usr/bin/sudo\nmode: \"4755\"\nowner: daemon"),
                                    reason: "/usr/bin/sudo would no longer be owned by root")
            try await expectBlocked(root, resource("FileMode", "f", "path: /usr/bin/sudo\nmode: \"4750\""),
                                    reason: "/usr/bin/sudo would no longer be executable by admin (uid 1000), who becomes root through it")
            try await expectApplied(root, resource("FileMode", "f", "path: /usr/bin/sudo\nmode: \"4750\"\ngroup: sudo"))
            #expect(modeAndOwner(root + "/usr/bin/sudo").mode == 0o4750 && modeAndOwner(root + "/usr/bin/sudo").gid == 27)
            // pkexec's setuid bit taken, the usual mitigation of CVE-2021-4034: administrators keep sudo.
            try write(root + "/usr/bin/pkexec", "#!/bin/true\n", mode: 0o755)
            chmod(root + "/usr/bin/pkexec", 0o4755)
            try await expectApplied(root, resource("FileMode", "p", "path: /usr/bin/pkexec\nmode: \"0755\""))
            #expect(modeAndOwner(root + "/usr/bin/pkexec").mode == 0o755)
        }
    }

    @Test(.enabled(if: isRoot)) func anAdministratorsKeyMadeIgnoredBySshdIsBlockedAndAStricterModeIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try hostWithGuest(root)
            for home in ["/home/admin", "/home/guest"] {
                chown(root + home, 0, 0)
                chmod(root + home, 0o755)
                chmod(root + home + "/.ssh", 0o755)
            }
            chmod(root + "/home", 0o755)
            chown(root + "/home/admin/.ssh/authorized_keys", 1000, 1000)
            try await expectBlocked(root, resource("FileMode", "f", "path: /home/admin/.ssh/authorized_keys\nmode: \"0666\""),
                                    reason: "sshd (StrictModes) would ignore the key of admin (uid 1000) in /home/admin/.ssh/authorized_keys")
            try await expectBlocked(root, resource("FileMode", "f", "path: /home/admin\nmode: \"0777\""),
                                    reason: "/home/admin would be writable by group or others")
            // sshd stops at the home, but whoever can write /home can move the home away.
            try await expectBlocked(root, resource("FileMode", "f", "path: /home\nmode: \"0777\""),
                                    reason: "any user could move the home of admin (uid 1000), and the key sshd reads there, away: /home would be writable")
            try await expectBlocked(root, resource("FileMode", "f", "path: /home/admin/.ssh\nowner: guest"),
                                    reason: "/home/admin/.ssh would be owned by uid 1001")
            try await expectBlocked(root, resource("FileMode", "f", "path: /home/admin/.ssh\nmode: \"0700\""),
                                    reason: "admin (uid 1000) could no longer reach its key in /home/admin/.ssh/authorized_keys through /home/admin/.ssh")
            try await expectBlocked(root, resource("FileMode", "f", "path: /home/admin/.ssh/authorized_keys\nmode: \"0200\""),
                                    reason: "admin (uid 1000) could no longer read its key in /home/admin/.ssh/authorized_keys")
            try await expectApplied(root, resource("FileMode", "f", "path: /home/admin/.ssh/authorized_keys\nmode: \"0400\""))
            try await expectApplied(root, resource("FileMode", "f", "path: /home/admin/.ssh\nowner: admin\nmode: \"0700\""))
            try await expectApplied(root, resource("FileMode", "f", "path: /home/guest\nmode: \"0770\""))
            try await expectApplied(root, resource("FileMode", "f", "path: /home\nmode: \"0711\""))
            #expect(modeAndOwner(root + "/home/admin/.ssh").mode == 0o700 && modeAndOwner(root + "/home/admin/.ssh").uid == 1000)
        }
    }

    @Test(.enabled(if: isRoot)) func passwdChownedToAPersonIsBlockedAndToRootIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/passwd\nowner: admin"),
                                    reason: "owner admin (uid 1000, at or above UID_MIN 1000) is not a system account")
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/passwd\nowner: \"1000\""), reason: "uid 1000")
            chown(root + "/etc/passwd", 1000, 1000)
            try await expectApplied(root, resource("FileMode", "f", "path: /etc/passwd\nowner: root"))
            #expect(modeAndOwner(root + "/etc/passwd").uid == 0)
        }
    }
}
