import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// The sshd guard judges a candidate by sshd's own effective configuration (`sshd -T`, per
/// account, drop-ins and Match blocks included), against the root's accounts and keys.
@Suite(.enabled(if: sshdInstalled)) struct SSHDGuardTests {
    let debian = """
        Include /etc/ssh/sshd_config.d/*.conf
        PermitRootLogin yes
        PasswordAuthentication yes
        KbdInteractiveAuthentication no
        UsePAM yes
        X11Forwarding yes

        """

    func host(_ root: String, _ accounts: [FixtureAccount], config: String? = nil) throws {
        try makeHost(root, accounts)
        try write(root + "/etc/ssh/sshd_config", config ?? debian)
        try FileManager.default.createDirectory(atPath: root + "/etc/ssh/sshd_config.d", withIntermediateDirectories: true)
    }

    let root0 = FixtureAccount(name: "root", uid: 0)
    let rootWithKey = FixtureAccount(name: "root", uid: 0, key: true)
    let admin = FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true)
    let alice = FixtureAccount(name: "alice", uid: 1001, groups: ["sudo"], key: true)

    @Test func aSessionOnlySettingNeedsNoProbeButAnAccessSettingStillDoes() async throws {
        try await withTemporaryDirectory { root in
            // A host where nobody can log in already (root without a key or password, no one else):
            // an access change is judged and blocked, but X11Forwarding no cannot lock anyone out
            // further and goes through (still checked by sshd -t before it is written).
            try host(root, [root0])
            try await expectBlocked(root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\""), reason: "no account could log in over SSH")
            try await expectApplied(root, resource("SSHDConfig", "s", "X11Forwarding: \"no\""))
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nX11Forwarding no\n"))
        }
    }

    /// An `Include` line whose patterns a tab separates: sshd reads both files, and so does the
    /// guard's probe. Split at spaces alone, the probe judged the main file without them (and
    /// without the edit to the included file), so turning passwords off where the administrator
    /// has only a password looked harmless. With a key, the same change is applied.
    /// The same with the first pattern quoted and a comment after the patterns (sshd's own
    /// argument splitting): read as two files, not as a folder named `"sshd_config.d`.
    @Test(arguments: ["sshd_config.d/10-auth.conf\tsshd_config.d/20-site.conf",
                      "\"sshd_config.d/10-auth.conf\" sshd_config.d/20-site.conf # the site's files",
                      "sshd_config.d/10\\\\-auth.conf sshd_config.d/20-site.conf\u{0C}"])
    func includePatternsSeparatedByATabAreJudgedAsSSHDReadsThem(_ patterns: String) async throws {
        let config = "Include \(patterns)\nPermitRootLogin no\nKbdInteractiveAuthentication no\nUsePAM yes\n"
        for key in [false, true] {
            try await withTemporaryDirectory { root in
                let admin = FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: key)
                try host(root, [root0, admin], config: config)
                try write(root + "/etc/ssh/sshd_config.d/10-auth.conf", "PasswordAuthentication yes\n")
                try write(root + "/etc/ssh/sshd_config.d/20-site.conf", "X11Forwarding no\n")
                let policy = resource("SSHDConfig", "s", "PasswordAuthentication: \"no\"")
                if key {
                    try await expectApplied(root, policy)
                    #expect(try read(root + "/etc/ssh/sshd_config.d/10-auth.conf") == "PasswordAuthentication no\n")
                } else {
                    try await expectBlocked(root, policy, reason: "no account could log in over SSH")
                }
            }
        }
    }

    /// `Include` arguments as OpenSSH's `argv_split` reads them: blanks outside quotes split,
    /// quotes go, `\` keeps a quote, a backslash or (outside quotes) a space, `#` starting an
    /// argument ends the line; a quote never closed, or a pattern whose bytes are not UTF-8, is refused.
    @Test func includeArgumentsAreReadAsSSHDReadsThem() throws {
        #expect(try SSHDConfigDriver.includePatterns("a.conf\t b.conf") == ["a.conf", "b.conf"])
        #expect(try SSHDConfigDriver.includePatterns("\"d/*.conf\" # see sshd_config") == ["d/*.conf"])
        #expect(try SSHDConfigDriver.includePatterns("'my file.conf' my\\ file2.conf x\\y \"q\\\"uote\"") == ["my file.conf", "my file2.conf", "x\\y", "q\"uote"])
        #expect(try SSHDConfigDriver.includePatterns("a#b.conf") == ["a#b.conf"])
        #expect(throws: HostError.self) { try SSHDConfigDriver.includePatterns("\"open.conf") }
        #expect(try SSHDConfigDriver.includePatterns("a.conf \u{0C}\r") == ["a.conf"], "sshd drops C's blanks at the end")
        #expect(throws: HostError.self) { try SSHDConfigDriver.includePatterns("a.conf \"\"") }
        let notUTF8 = try LineFile(bytes: Array("x".utf8) + [0xE9] + Array(".conf".utf8), path: "t").text
        #expect(throws: HostError.self) { try SSHDConfigDriver.includePatterns(Substring(notUTF8)) }
    }

    /// Limits sshd is not asked about, with a floor: `MaxAuthTries 1` (a client whose agent
    /// offers a wrong key first, or a password after a refused key, is turned away) and a
    /// `LoginGraceTime` of a few seconds (a login cut before a passphrase is typed) are blocked,
    /// although every account keeps a way in; a finding's rule could write either by itself.
    /// The usual hardened values (`MaxAuthTries 2`, `LoginGraceTime 30s`, `0` for no limit) go through.
    @Test func limitsBelowTheirFloorAreBlockedAndHardenedValuesAreApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            let tries = try await expectBlocked(root, resource("SSHDConfig", "s", "MaxAuthTries: 1"), reason: "MaxAuthTries 1")
            #expect(tries.contains("first key or password"), "\(tries)")
            for grace in ["5", "9s"] {
                try await expectBlocked(root, resource("SSHDConfig", "s", "LoginGraceTime: \"\(grace)\""), reason: "would cut every login")
            }
            #expect(!(try read(root + "/etc/ssh/sshd_config")).contains("MaxAuthTries"))
            try await expectApplied(root, resource("SSHDConfig", "s", "MaxAuthTries: 2\nLoginGraceTime: \"30s\""))
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 2\n"))
            try await expectApplied(root, resource("SSHDConfig", "s", "LoginGraceTime: \"0\""))
        }
    }

    @Test func allowUsersNobodyIsBlockedAndAliceWithKeysIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, alice])
            let reason = try await expectBlocked(root, resource("SSHDConfig", "s", "AllowUsers: nobody"), reason: "no account could log in over SSH")
            #expect(reason.contains("alice: not in AllowUsers"))
            try await expectApplied(root, resource("SSHDConfig", "s", "AllowUsers: alice"))
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nAllowUsers alice\n"))
        }
    }

    @Test func everyAuthenticationMethodOffIsBlockedAndPasswordsOffIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            let off = "PubkeyAuthentication: \"no\"\nPasswordAuthentication: \"no\"\nKbdInteractiveAuthentication: \"no\""
            let reason = try await expectBlocked(root, resource("SSHDConfig", "s", off), reason: "no account could log in over SSH")
            #expect(reason.contains("admin: no authentication method left"), "\(reason)")
            // Keys stay on: the key holder still gets in.
            try await expectApplied(root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\""))
        }
    }

    /// Two resources, each harmless alone (the administrator keeps a password, or a key), that
    /// together leave nobody a way in: they are written into one sshd_config, so the guard
    /// judges them together and blocks the second; the first is applied, and the second stays
    /// blocked once the first is in the file.
    @Test func twoChangesHarmlessAloneButLockingOutTogetherAreJudgedTogether() async throws {
        let both = resource("SSHDConfig", "keys-off", "PubkeyAuthentication: \"no\"")
            + resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")
        try await withTemporaryDirectory { root in
            let admin = FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: true)
            try host(root, [root0, admin])
            let state = try hostState(root: root, both)
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.map(\.decision).sorted { "\($0)" < "\($1)" } == [.applied, .blocked],
                    "\(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" })")
            let reason = plan.remediations.first { $0.decision == .blocked }?.reason ?? ""
            #expect(reason.contains("no account could log in over SSH")
                    && reason.contains("judged with the changes this pass also writes to the same file"), "\(reason)")
            let sink = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: sink)
            #expect(outcome.entries.filter { $0.record.decision == .blocked }.count == 1,
                    "\(outcome.entries.map(\.record.decision))")
            #expect(outcome.entries.filter { $0.record.result == .verified }.count == 1)
            // With the first in the file, the second alone would lock everyone out: still blocked, recorded once.
            let again = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
            let blocked = again.entries.filter { $0.record.decision == .blocked }
            #expect(blocked.count == 1 && blocked.allSatisfy(\.alreadyRecorded), "\(again.entries.map(\.record.decision))")
            let config = try read(root + "/etc/ssh/sshd_config")
            #expect(config.contains("\nPubkeyAuthentication no\n") != config.contains("\nPasswordAuthentication no\n"),
                    "exactly one of the two is written: \(config)")
        }
        // Each alone goes through.
        for single in [resource("SSHDConfig", "keys-off", "PubkeyAuthentication: \"no\""),
                       resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")] {
            try await withTemporaryDirectory { root in
                let admin = FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: true)
                try host(root, [root0, admin])
                try await expectApplied(root, single)
            }
        }
    }

    /// An account change and an sshd change, each harmless alone: the key holder loses their
    /// login shell (another administrator keeps a password), and password logins are turned off
    /// (the key holder keeps a key). Together nobody could log in: the sshd guard, judged after
    /// the account guard, sees the account as this pass leaves it and blocks the sshd change.
    /// Each alone goes through.
    @Test func anAccountChangeAndAnSSHDChangeLockingOutTogetherAreJudgedTogether() async throws {
        let nologin = resource("UserAccount", "admin-nologin", "name: admin\nshell: /usr/sbin/nologin")
        let passwordsOff = resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")
        let ops = FixtureAccount(name: "ops", uid: 1001, hash: "$y$j9T$opshash", groups: ["wheel"])
        // Plan order puts either first; the sshd change is the one judged last, so the one blocked.
        for manifests in [nologin + passwordsOff, passwordsOff + nologin] {
            try await withTemporaryDirectory { root in
                try host(root, [root0, admin, ops])
                let state = try hostState(root: root, manifests)
                let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
                let plan = try await reconciler.plan(state)
                let decisions = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0) })
                #expect(decisions["admin-nologin"]?.decision == .applied && decisions["passwords-off"]?.decision == .blocked,
                        "\(plan.remediations.map { "\($0.binding.resource) \($0.decision) \($0.reason ?? "")" })")
                let reason = decisions["passwords-off"]?.reason ?? ""
                #expect(reason.contains("no account could log in over SSH") && reason.contains("ops: ")
                        && reason.contains("judged with the changes this pass also makes on this host: UserAccount/admin-nologin shell /usr/sbin/nologin"),
                        "\(reason)")
                let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
                let verified = outcome.entries.filter { $0.record.result == .verified }.map(\.record.resource)
                #expect(verified.count == 1 && verified.allSatisfy { $0.hasSuffix("admin-nologin") }, "\(verified)")
                #expect(try read(root + "/etc/passwd").contains("admin:x:1000:1000:admin:/home/admin:/usr/sbin/nologin\n"))
                #expect(!(try read(root + "/etc/ssh/sshd_config")).contains("PasswordAuthentication no"))
            }
        }
        for single in [nologin, passwordsOff] {
            try await withTemporaryDirectory { root in
                try host(root, [root0, admin, ops])
                try await expectApplied(root, single)
            }
        }
    }

    /// The account guard asks sshd too: with password logins already off in sshd_config (an
    /// earlier pass), taking the key holder's shell leaves the other administrator's password
    /// no way in over SSH, so it is blocked; with passwords on, the same change goes through.
    @Test func anAccountChangeTakingTheLastSSHWayInIsBlockedWhateverPassMadeTheSSHDChange() async throws {
        let ops = FixtureAccount(name: "ops", uid: 1001, hash: "$y$j9T$opshash", groups: ["wheel"])
        let nologin = resource("UserAccount", "admin-nologin", "name: admin\nshell: /usr/sbin/nologin")
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin, ops], config: debian.replacingOccurrences(of: "PasswordAuthentication yes", with: "PasswordAuthentication no"))
            try await expectBlocked(root, nologin, reason: "admin: giving it the shell /usr/sbin/nologin would leave neither root nor any account in sudo, wheel, admin a way in over SSH")
        }
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin, ops])
            try await expectApplied(root, nologin)
        }
    }

    /// Someone who can still log in is not enough: when only an account outside sudo, wheel and
    /// admin could log in after the change, and an administrator could before, it is blocked.
    /// The administrator keeping a key lets the same change through.
    @Test func anSSHDChangeLeavingOnlyANonAdministratorAWayInIsBlocked() async throws {
        let passwordAdmin = FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"])
        let guest = FixtureAccount(name: "guest", uid: 1002, key: true)
        let passwordsOff = resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")
        try await withTemporaryDirectory { root in
            try host(root, [root0, passwordAdmin, guest])
            let reason = try await expectBlocked(root, passwordsOff, reason: "no account in sudo, wheel or admin, nor root, could log in over SSH after this change, and one could before")
            #expect(reason.contains("admin: "), "\(reason)")
        }
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin, guest])
            try await expectApplied(root, passwordsOff)
        }
    }

    /// sshd (StrictModes, its default) ignores a key whose file or folders up to the home others
    /// may write: an administrator whose `~/.ssh` is 0775, root's group, logs in with a password,
    /// and counted as a key holder, so `PasswordAuthentication no` passed and locked them out.
    /// Blocked now; with `~/.ssh` at 0700 the key counts and the change is applied; with
    /// `StrictModes no` sshd reads the key as it is, and Debian's sshd reads it in a folder of
    /// the account's private group.
    @Test func aKeySSHDIgnoresUnderStrictModesIsNoWayIn() async throws {
        let ops = FixtureAccount(name: "ops", uid: 1000, hash: "$y$j9T$opshash", groups: ["sudo"], key: true)
        let passwordsOff = resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")
        try await withTemporaryDirectory { root in
            try host(root, [root0, ops])
            #expect(chmod(root + "/home/ops/.ssh", 0o775) == 0)
            let reason = try await expectBlocked(root, passwordsOff, reason: "no account could log in over SSH after this change")
            #expect(reason.contains("ops: no authentication method left"), "\(reason)")
            #expect(chmod(root + "/home/ops/.ssh", 0o700) == 0)
            try await expectApplied(root, passwordsOff)
        }
        try await withTemporaryDirectory { root in
            try host(root, [root0, ops], config: debian + "StrictModes no\n")
            #expect(chmod(root + "/home/ops/.ssh", 0o775) == 0)
            try await expectApplied(root, passwordsOff)
        }
        // Debian's sshd allows group write where the group's one member is the owner: ops's own
        // ~/.ssh, ops:ops 0775 (umask 002 with user private groups), holds a key it reads.
        try await withTemporaryDirectory { root in
            try host(root, [root0, ops])
            #expect(chown(root + "/home/ops/.ssh", 1000, 1000) == 0 && chmod(root + "/home/ops/.ssh", 0o775) == 0)
            try await expectApplied(root, passwordsOff)
        }
    }

    /// sshd with PAM still takes a key from a locked account: locking the key holder's password
    /// and turning password logins off in one pass both go through (the key still works), as they
    /// do in two passes. Without PAM the lock ends the key's login too, and the sshd change is blocked.
    @Test func aLockUnderPAMLeavesTheKeyAndIsJudgedAsSSHDWouldJudgeIt() async throws {
        let keyAndPassword = FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: true)
        let ops = FixtureAccount(name: "ops", uid: 1001, hash: "$y$j9T$opshash", groups: ["wheel"])
        let both = resource("UserAccount", "lock-admin", "name: admin\nlocked: true")
            + resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")
        try await withTemporaryDirectory { root in
            try host(root, [root0, keyAndPassword, ops])
            try await expectApplied(root, both)
        }
        try await withTemporaryDirectory { root in
            try host(root, [root0, keyAndPassword, ops], config: debian.replacingOccurrences(of: "UsePAM yes", with: "UsePAM no"))
            let state = try hostState(root: root, both)
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            let decisions = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0.decision) })
            #expect(decisions == ["lock-admin": .applied, "passwords-off": .blocked], "\(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" })")
        }
    }

    /// A block frees a place under a change limit: the remediation it lets in is judged with the
    /// changes made beside it. With `maxChangesPerCycle: 2`, a floor-breaking FileMode ranks
    /// between the sshd change and the account change; once it is blocked both are applied in
    /// the plan, so they are judged together again, and the sshd change is blocked.
    @Test func aRemediationAppliedOnlyBecauseAnotherWasBlockedIsJudgedWithTheOthers() async throws {
        let ops = FixtureAccount(name: "ops", uid: 1001, hash: "$y$j9T$opshash", groups: ["wheel"])
        let manifests = "---\napiVersion: bulwark/v1\nkind: FileMode\nmetadata: {name: passwd-mode, annotations: {severity: high}}\nspec: {path: /etc/passwd, mode: \"0666\"}\n"
            + "---\napiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: admin-nologin, annotations: {severity: low}}\nspec: {name: admin, shell: /usr/sbin/nologin}\n"
            + "---\napiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: passwords-off, annotations: {severity: critical}}\nspec: {PasswordAuthentication: \"no\"}\n"
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin, ops])
            let inventory = """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: sandbox}
                spec: {adapter: host, root: \(root)}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: host}
                spec: {kinds: [SSHDConfig, FileMode, UserAccount], maxChangesPerCycle: 2}
                """
            let state = try hostState(inventory: inventory, manifests)
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(state)
            let decisions = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0.decision) })
            #expect(decisions == ["passwd-mode": .blocked, "admin-nologin": .applied, "passwords-off": .blocked],
                    "\(plan.remediations.map { "\($0.binding.resource) \($0.decision) \($0.reason ?? "")" })")
            let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
            #expect(outcome.verified.count == 1)
            #expect(!(try read(root + "/etc/ssh/sshd_config")).contains("PasswordAuthentication no"))
        }
    }

    /// A block a person approves is made, so the changes judged after it count it: root's shell
    /// taken (approved) and password logins off would leave the only administrator, who has a
    /// password, no way in; the sshd change is blocked. Without the approval, root keeps its key
    /// login and the sshd change goes through.
    @Test func anApprovedBlockIsCountedForTheChangesJudgedAfterIt() async throws {
        let alice = FixtureAccount(name: "alice", uid: 1001, hash: "$y$j9T$alicehash", groups: ["sudo"])
        let manifests = resource("UserAccount", "root-nologin", "name: root\nshell: /usr/sbin/nologin")
            + resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")
        try await withTemporaryDirectory { root in
            try host(root, [rootWithKey, alice])
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let preview = try await reconciler.plan(try hostState(root: root, manifests))
            let decisions = Dictionary(uniqueKeysWithValues: preview.remediations.map { ($0.binding.resource.name, $0.decision) })
            #expect(decisions == ["root-nologin": .blocked, "passwords-off": .applied], "\(preview.remediations.map { "\($0.decision) \($0.reason ?? "")" })")
            let blocked = try #require(preview.remediations.first { $0.decision == .blocked })
            let state = try hostState(root: root, manifests, extra: [try approvalFile(blocked, reason: "admins use their own accounts")])
            let plan = try await reconciler.plan(state)
            let approved = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0.decision) })
            #expect(approved == ["root-nologin": .applied, "passwords-off": .blocked], "\(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" })")
            _ = await reconciler.apply(plan, state: state, audit: RecordingSink())
            #expect(!(try read(root + "/etc/ssh/sshd_config")).contains("PasswordAuthentication no"))
            // The approved block is made: the guard, asked again at the write, does not block it again.
            #expect(try read(root + "/etc/passwd").contains("root:x:0:0:root:/root:/usr/sbin/nologin\n"))
        }
    }

    /// What the real `sshd -T` says `keyword` is in the file at `path` (as nobody when run as
    /// root: an unprivileged sshd needs no privilege-separation folder).
    func sshdSays(_ path: String, _ keyword: String) async throws -> String? {
        try await withTemporaryDirectory { dir in
            chmod(dir, 0o755)
            try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", dir + "/key"])
            try write(dir + "/sshd_config", try read(path))
            var command = ["/usr/sbin/sshd", "-T", "-f", dir + "/sshd_config", "-h", dir + "/key", "-C", "user=root,host=h,addr=127.0.0.1"]
            if isRoot {
                chown(dir + "/key", 65534, 65534)
                command = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + command
            }
            let result = try run(command[0], Array(command.dropFirst()))
            return result.stdout.split(separator: "\n").first { $0.hasPrefix(keyword + " ") }.map { String($0.dropFirst(keyword.count + 1)) }
        }
    }

    /// A keyword in double quotes is a keyword to sshd (`strdelim`), and the first line wins:
    /// under `"PermitRootLogin" yes` above `PermitRootLogin no`, sshd lets root in, and Bulwark
    /// read the quoted line as no keyword and said in sync. Now the quoted line is the one in
    /// effect, the fix rewrites it, and sshd -T agrees. A line whose quote is left open is
    /// skipped by both; one `=` separates keyword and value, a second is the value's.
    @Test func aQuotedKeywordIsReadAsSSHDReadsIt() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [rootWithKey, admin], config: "\"PermitRootLogin\" yes\nPermitRootLogin no\nUsePAM yes\n")
            let path = root + "/etc/ssh/sshd_config"
            #expect(try await sshdSays(path, "permitrootlogin") == "yes")
            try await expectApplied(root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            #expect(try read(path) == "PermitRootLogin no\nPermitRootLogin no\nUsePAM yes\n")
            #expect(try await sshdSays(path, "permitrootlogin") == "no")
        }
        // Quotes inside the keyword, and an empty first token: sshd obeys each, and so the plan sees it.
        for hidden in ["PermitRootLogin\"\" yes", "P\"ermitRootLogin\" yes", "=PermitRootLogin yes", "\"\" PermitRootLogin yes"] {
            try await withTemporaryDirectory { root in
                try host(root, [rootWithKey, admin], config: hidden + "\nPermitRootLogin no\nUsePAM yes\n")
                #expect(try await sshdSays(root + "/etc/ssh/sshd_config", "permitrootlogin") == "yes", "\(hidden)")
                let plan = try await Reconciler(registry: Registry([HostAdapter.definition()]))
                    .plan(try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\"")))
                #expect(plan.remediations.first?.changes.map(\.observed) == ["yes"], "\(hidden): \(plan.failures)")
            }
        }
        let cases: [(line: String, keyword: String?, value: String?)] = [
            ("\"PermitRootLogin yes", nil, nil),
            ("  \"Include\"\tx.conf \u{0C}", "Include", "x.conf"),
            ("Include = =x.conf", "Include", "=x.conf"),
            ("Include==x.conf", "Include", "=x.conf"),
            ("Include= x.conf", "Include", "x.conf"),
            ("PermitRootLogin\tno\r", "PermitRootLogin", "no"),
            ("PermitRootLogin\"\" yes", "PermitRootLogin", "yes"), ("P\"ermitRootLogin\" yes", "PermitRootLogin", "yes"),
            ("=PermitRootLogin yes", "PermitRootLogin", "yes"), ("= PermitRootLogin yes", "PermitRootLogin", "yes"),
            ("\"\" PermitRootLogin yes", "PermitRootLogin", "yes"), ("\"\"PermitRootLogin yes", "PermitRootLogin", "yes"),
            ("= \"PermitRootLogin\" yes", "PermitRootLogin", "yes"), ("Match\"\" User nobody", "Match", "User nobody"),
            ("  # PermitRootLogin yes", nil, nil), ("\"#x\" y", nil, nil),
        ]
        for (line, keyword, value) in cases {
            let parts = SSHDConfigDriver.split(Substring(line + "\n"))
            #expect(parts.map { String($0.keyword) } == keyword && parts.map { String($0.value) } == value, "\(line.debugDescription)")
        }
    }

    /// sshd follows 16 levels of `Include` and refuses a 17th: a setting 16 files deep is read
    /// (it was an error past 8), and one 17 deep fails the resource, naming the limit.
    @Test(arguments: [16, 17])
    func includesAreFollowedAsDeepAsSSHDFollowsThem(levels: Int) async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin], config: "Include /etc/ssh/d1.conf\nUsePAM yes\n")
            for level in 1...levels {
                try write(root + "/etc/ssh/d\(level).conf", level < levels ? "Include /etc/ssh/d\(level + 1).conf\n" : "X11Forwarding yes\n")
            }
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()]))
                .plan(try hostState(root: root, resource("SSHDConfig", "s", "X11Forwarding: \"no\"")))
            if levels == 16 {
                #expect(plan.remediations.first?.changes.map(\.observed) == ["yes"], "\(plan.failures)")
            } else {
                #expect(plan.failures.first?.message.contains("Include nested more than 16 levels") == true, "\(plan.failures)")
            }
        }
    }

    /// The guard is asked again at the write, under the target's lock. Between a plan that
    /// allowed password logins off (admin holds a key) and its apply, another writer takes the
    /// key away: the write is refused, recorded failed with the guard's reason, and sshd_config
    /// stays as it was. Where what changed in between does not matter (a guest added), the
    /// fix goes through.
    @Test(arguments: [false, true])
    func aChangeThePlanAllowedIsJudgedAgainAtTheWrite(keyTaken: Bool) async throws {
        let admin = FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: true)
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            let record = try await planThenApply(root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\"")) {
                if keyTaken {
                    try FileManager.default.removeItem(atPath: root + "/home/admin/.ssh/authorized_keys")
                } else {
                    try write(root + "/etc/passwd", try read(root + "/etc/passwd") + "guest:x:1002:1002:guest:/home/guest:/bin/sh\n")
                }
            }
            if keyTaken {
                #expect(record.result == .failed, "\(String(describing: record.result))")
                #expect(record.error?.contains("refused at the write: no account could log in over SSH after this change") == true,
                        "\(record.error ?? "")")
                #expect(try read(root + "/etc/ssh/sshd_config") == debian)
            } else {
                #expect(record.result == .verified, "\(String(describing: record.result)) \(record.error ?? "")")
                #expect(try read(root + "/etc/ssh/sshd_config").contains("\nPasswordAuthentication no\n"))
            }
        }
    }

    /// A pass makes the changes judged together in the order they were judged: the accounts
    /// before sshd. alice (sudo) has only a password, carol (no sudo) a key. Locking alice is
    /// blocked and approved; password logins off, judged with that lock (no administrator
    /// before it or after it, and carol keeps her key), is allowed. Made sshd first (plan order
    /// ties by kind name), the sshd change was judged again at its write with alice's password
    /// still in place, and refused. Both are made and verified.
    @Test func changesJudgedTogetherAreMadeInTheOrderTheyWereJudged() async throws {
        let alice = FixtureAccount(name: "alice", uid: 1001, hash: "$y$j9T$alicehash", groups: ["sudo"])
        let carol = FixtureAccount(name: "carol", uid: 1002, key: true)
        let manifests = resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")
            + resource("UserAccount", "lock-alice", "name: alice\nlocked: true")
        try await withTemporaryDirectory { root in
            try host(root, [root0, alice, carol])
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let preview = try await reconciler.plan(try hostState(root: root, manifests))
            let blocked = try #require(preview.remediations.first { $0.binding.resource.name == "lock-alice" && $0.decision == .blocked })
            let state = try hostState(root: root, manifests, extra: [try approvalFile(blocked, reason: "alice leaves")])
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.map(\.decision) == [.applied, .applied], "\(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" })")
            let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
            #expect(outcome.entries.count == 2 && outcome.entries.allSatisfy { $0.record.result == .verified },
                    "\(outcome.entries.map { "\($0.record.resource) \(String(describing: $0.record.result)) \($0.record.error ?? "")" })")
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nPasswordAuthentication no\n"))
            #expect(try read(root + "/etc/shadow").contains("\nalice:!$y$j9T$alicehash:"))
        }
    }

    /// Two target names for one root folder (here one through a symbolic link) are one host:
    /// an account change under one name and an sshd change under the other are judged together,
    /// and so are two sshd changes that write the one sshd_config. Each pair locked everyone out.
    @Test func twoTargetNamesForOneRootAreJudgedAsOneHost() async throws {
        let ops = FixtureAccount(name: "ops", uid: 1001, hash: "$y$j9T$opshash", groups: ["wheel"])
        for (first, second) in [
            (resource("UserAccount", "admin-nologin", "name: admin\nshell: /usr/sbin/nologin"),
             resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")),
            (resource("SSHDConfig", "keys-off", "PubkeyAuthentication: \"no\""),
             resource("SSHDConfig", "passwords-off", "PasswordAuthentication: \"no\"")),
        ] {
            try await withTemporaryDirectory { dir in
                let root = dir + "/host"
                try host(root, [root0, admin, ops])
                try FileManager.default.createSymbolicLink(atPath: dir + "/alias", withDestinationPath: root)
                let inventory = """
                    apiVersion: bulwark/v1
                    kind: Target
                    metadata: {name: web1}
                    spec: {adapter: host, root: \(root)}
                    ---
                    apiVersion: bulwark/v1
                    kind: Target
                    metadata: {name: web1-new}
                    spec: {adapter: host, root: \(dir)/alias}
                    ---
                    apiVersion: bulwark/v1
                    kind: Controller
                    metadata: {name: host}
                    spec: {kinds: [UserAccount, SSHDConfig]}
                    """
                func on(_ target: String, _ manifest: String) -> String {
                    manifest.replacingOccurrences(of: "\nspec:\n", with: "\ntargets: {names: [\(target)]}\nspec:\n")
                }
                let manifests = on("web1", first) + on("web1-new", second)
                let state = try hostState(inventory: inventory, manifests)
                let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
                let plan = try await reconciler.plan(state)
                #expect(plan.remediations.map(\.decision).sorted { "\($0)" < "\($1)" } == [.applied, .blocked],
                        "\(plan.remediations.map { "\($0.binding) \($0.decision) \($0.reason ?? "")" })")
            }
        }
    }

    /// Settings no account check sees: ciphers or key exchanges a default OpenSSH client does
    /// not offer refuse every client before anyone logs in; a key algorithm list without the
    /// administrator's key type leaves their key unusable; an AllowUsers entry for one host is
    /// no way in from elsewhere. Each blocked; a list a client shares, or one that keeps the
    /// key's type, goes through.
    @Test func algorithmsAndHostBoundAccessListsAreJudgedAsAClientMeetsThem() async throws {
        for (harmful, reason) in [("Ciphers: aes128-cbc", "shares nothing with what an OpenSSH client offers by default"),
                                  ("KexAlgorithms: diffie-hellman-group1-sha1", "shares nothing with what an OpenSSH client offers by default"),
                                  ("PubkeyAcceptedAlgorithms: rsa-sha2-512", "admin: its keys (ssh-ed25519) are not among PubkeyAcceptedAlgorithms rsa-sha2-512"),
                                  ("AllowUsers: \"*@127.0.0.1\"", "admin: not in AllowUsers (for every host)"),
                                  ("DenyUsers: \"admin@10.0.0.1\"", "admin: DenyUsers admin@10.0.0.1")] {
            try await withTemporaryDirectory { root in
                try host(root, [root0, admin])
                try await expectBlocked(root, resource("SSHDConfig", "s", harmful), reason: reason)
            }
        }
        for legitimate in ["Ciphers: aes256-gcm@openssh.com", "KexAlgorithms: curve25519-sha256",
                           "PubkeyAcceptedAlgorithms: \"ssh-ed25519,rsa-sha2-512\"", "AllowUsers: admin"] {
            try await withTemporaryDirectory { root in
                try host(root, [root0, admin])
                try await expectApplied(root, resource("SSHDConfig", "s", legitimate))
            }
        }
    }

    /// The answer about a client's algorithms is kept by the three lists it looks at: asked in
    /// turn about lists a client shares and lists it does not, each gets its own answer.
    @Test(.enabled(if: SSHClientDefaults.offer != nil, "needs ssh (openssh-client)"))
    func keptAlgorithmAnswersAreByTheirLists() throws {
        let shared: [String: [String]] = ["ciphers": ["aes256-gcm@openssh.com"], "kexalgorithms": ["curve25519-sha256"], "macs": ["hmac-sha2-256"]]
        var noCipher = shared
        noCipher["ciphers"] = ["aes128-cbc"]
        var noKex = shared
        noKex["kexalgorithms"] = ["diffie-hellman-group1-sha1"]
        for _ in 0..<2 {
            #expect(SSHClientDefaults.noCommonAlgorithm(shared) == nil)
            #expect(SSHClientDefaults.noCommonAlgorithm(noCipher)?.hasPrefix("Ciphers aes128-cbc shares nothing") == true)
            #expect(SSHClientDefaults.noCommonAlgorithm(noKex)?.hasPrefix("KexAlgorithms diffie-hellman-group1-sha1 shares nothing") == true)
        }
    }

    @Test func permitRootLoginNoIsBlockedWhenOnlyRootHoldsAKeyAndAppliedWithASudoKeyHolder() async throws {
        try await withTemporaryDirectory { root in
            // A user without sudo can log in by password: that is no way back to administration.
            let guest = FixtureAccount(name: "guest", uid: 1002, hash: "$y$j9T$guesthash")
            try host(root, [rootWithKey, guest])
            let reason = try await expectBlocked(root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""),
                                                 reason: "no account in sudo, wheel or admin, nor root, could log in over SSH after this change, and one could before")
            #expect(reason.contains("root: PermitRootLogin no"))
        }
        try await withTemporaryDirectory { root in
            try host(root, [rootWithKey])
            try await expectBlocked(root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""), reason: "no account could log in over SSH")
        }
        try await withTemporaryDirectory { root in
            try host(root, [rootWithKey, admin])
            try await expectApplied(root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
        }
    }

    /// sshd sends the `Banner` file, read as root, to whoever connects, before any login:
    /// `Banner /etc/shadow` sent the shadow file (outside review). A file not everyone may read,
    /// a FIFO (every login would hang), a link, a missing file or one in a folder others write in
    /// is blocked and recorded; `/etc/issue.net` (root's, 0644) and `none` are applied.
    @Test func aBannerNotEveryoneMayReadIsBlockedAndIssueNetIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            try write(root + "/etc/shadow", "root:*:19700:0:99999:7:::\n")
            chmod(root + "/etc/shadow", 0o640)
            try await expectBannerBlocked(root, "/etc/shadow", "Banner '/etc/shadow' is not readable by everyone (mode 640)")
            #expect(mkfifo(root + "/etc/issue.fifo", 0o644) == 0)
            try await expectBannerBlocked(root, "/etc/issue.fifo", "is a FIFO, not a regular file")
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/issue.link", withDestinationPath: "/etc/shadow")
            try await expectBannerBlocked(root, "/etc/issue.link", "is a symbolic link, not a regular file")
            try await expectBannerBlocked(root, "/etc/issue.missing", "cannot be looked at")
            try FileManager.default.createDirectory(atPath: root + "/srv/open", withIntermediateDirectories: true)
            chmod(root + "/srv/open", 0o777)
            try write(root + "/srv/open/banner", "hello\n")
            chmod(root + "/srv/open/banner", 0o644)
            try await expectBannerBlocked(root, "/srv/open/banner", "folder /srv/open is writable by group or others")
            try await expectBannerBlocked(root, "etc/issue.net", "is not an absolute path")

            try write(root + "/etc/issue.net", "Authorised use only.\n")
            chmod(root + "/etc/issue.net", 0o644)
            try await expectApplied(root, resource("SSHDConfig", "s", "Banner: /etc/issue.net"))
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nBanner /etc/issue.net\n"))
            try await expectApplied(root, resource("SSHDConfig", "s", "Banner: none"))
        }
    }

    func expectBannerBlocked(_ root: String, _ path: String, _ reason: String,
                             sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws {
        _ = try await expectBlocked(root, resource("SSHDConfig", "s", "Banner: \"\(path)\""), reason: reason, sourceLocation: sourceLocation)
    }

    /// `AuthorizedKeysFile` names the keys that let a person in as any account: a pattern in a
    /// folder others may write in (`/tmp/%u`, sticky or not) lets any local user add a key for
    /// root. Blocked and recorded; a root-only folder (`/etc/ssh/authorized_keys/%u`) is applied.
    @Test func authorizedKeysInAFolderOthersWriteInAreBlockedAndARootOnlyFolderIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            try FileManager.default.createDirectory(atPath: root + "/tmp", withIntermediateDirectories: true)
            chmod(root + "/tmp", 0o1777)
            try await expectBlocked(root, resource("SSHDConfig", "s", "AuthorizedKeysFile: .ssh/authorized_keys /tmp/%u"),
                                    reason: "AuthorizedKeysFile '/tmp/%u': folder /tmp is writable by group or others")
            try await expectBlocked(root, resource("SSHDConfig", "s", "AuthorizedKeysFile: .ssh/../../../tmp/%u"),
                                    reason: "climbs out of a folder with '..'")
            try FileManager.default.createDirectory(atPath: root + "/etc/ssh/authorized_keys", withIntermediateDirectories: true)
            chmod(root + "/etc/ssh/authorized_keys", 0o755)
            try await expectApplied(root, resource("SSHDConfig", "s", "AuthorizedKeysFile: .ssh/authorized_keys /etc/ssh/authorized_keys/%u"))
        }
    }

    @Test func maxSessionsZeroIsBlockedAndFourIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            let reason = try await expectBlocked(root, resource("SSHDConfig", "s", "MaxSessions: 0"), reason: "no account could log in")
            #expect(reason.contains("admin: MaxSessions 0"))
            try await expectApplied(root, resource("SSHDConfig", "s", "MaxSessions: 4"))
        }
    }

    @Test func maxStartupsZeroOrFewIsBlockedAndTenIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            // sshd itself refuses a MaxStartups of 0: the guard blocks with sshd's message.
            try await expectBlocked(root, resource("SSHDConfig", "s", "MaxStartups: \"0\""), reason: "Invalid MaxStartups spec")
            try await expectBlocked(root, resource("SSHDConfig", "s", "MaxStartups: \"0:30:100\""), reason: "MaxStartups")
            // One idle connection (anyone's) keeps every administrator out: seen with a real sshd.
            for few in ["1", "1:100:1", "3:30:9"] {
                let reason = try await expectBlocked(root, resource("SSHDConfig", "s", "MaxStartups: \"\(few)\""), reason: "could keep every administrator out")
                #expect(reason.contains("unauthenticated"), "\(reason)")
            }
            try await expectApplied(root, resource("SSHDConfig", "s", "MaxStartups: \"10:30:60\""))
            try await expectApplied(root, resource("SSHDConfig", "s", "MaxStartups: \"10\""))
        }
    }

    /// At a rate of 100 sshd drops every connection past the first number, whatever the last:
    /// `1:100:100` drops all while one unauthenticated connection is open (seen with a real
    /// sshd). Blocked and recorded; a rate of 100 from 10 up, or a lower rate, goes through.
    @Test func maxStartupsDroppingAllPastAFewIsBlockedAndFromTenIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            for few in ["1:100:100", "9:100:60"] {
                let reason = try await expectBlocked(root, resource("SSHDConfig", "s", "MaxStartups: \"\(few)\""),
                                                     reason: "could keep every administrator out")
                #expect(reason.contains("a rate of 100 drops all past the first number"), "\(reason)")
            }
            try await expectApplied(root, resource("SSHDConfig", "s", "MaxStartups: \"10:100:60\""))
            try await expectApplied(root, resource("SSHDConfig", "s", "MaxStartups: \"5:30:60\""))
        }
    }

    @Test func aMatchBlockThatTurnsKeysOffForTheKeyHolderIsSeen() async throws {
        try await withTemporaryDirectory { root in
            // By file lines PubkeyAuthentication is on; for admin, sshd's Match turns it off.
            let config = debian + "Match User admin\n\tPubkeyAuthentication no\n"
            try host(root, [root0, FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: true)],
                     config: config)
            let reason = try await expectBlocked(root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\""),
                                                 reason: "no account could log in over SSH")
            #expect(reason.contains("admin: no authentication method left (holds a key and a password"), "\(reason)")
        }
        try await withTemporaryDirectory { root in
            // The same change without that Match block: the key still works.
            try host(root, [root0, FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: true)])
            try await expectApplied(root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\""))
        }
    }

    @Test func aDropInInsideTheRootIsPartOfTheJudgement() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"], key: true)])
            // Included before the main file's own lines: keys are off for everyone. The machine's
            // own /etc/ssh/sshd_config.d must not stand in for the root's.
            try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication no\n")
            let reason = try await expectBlocked(root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\""),
                                                 reason: "no account could log in over SSH")
            #expect(reason.contains("PubkeyAuthentication no"), "\(reason)")
            // With the drop-in allowing keys, the change is legitimate.
            try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication yes\n")
            try await expectApplied(root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\""))
            #expect(try read(root + "/etc/ssh/sshd_config").contains("PasswordAuthentication no\n"))
        }
    }

    @Test func authenticationMethodsNoAccountCanMeetIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            // Key and password both required, but admin only has a key.
            try host(root, [root0, admin], config: debian + "AuthenticationMethods publickey,password\n")
            let reason = try await expectBlocked(root, resource("SSHDConfig", "s", "MaxAuthTries: 3"), reason: "no account could log in")
            #expect(reason.contains("AuthenticationMethods publickey,password"), "\(reason)")
        }
    }

    @Test func aListenAddressTheMachineDoesNotHaveIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin], config: "ListenAddress 192.0.2.77\n" + debian)
            try await expectBlocked(root, resource("SSHDConfig", "s", "MaxAuthTries: 3"), reason: "ListenAddress 192.0.2.77:22 is not an address of this machine")
            try write(root + "/etc/ssh/sshd_config", "ListenAddress 127.0.0.1\n" + debian)
            try await expectApplied(root, resource("SSHDConfig", "s", "MaxAuthTries: 3"))
        }
    }

    @Test func anApprovedBlockIsAppliedAndSshdStillRefusesABrokenCandidate() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            let manifests = resource("SSHDConfig", "s", "AllowUsers: nobody")
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let blocked = try await reconciler.plan(try hostState(root: root, manifests))
            // A person approves the blocked id: the guard no longer stands in the way.
            let approval = try approvalFile(try #require(blocked.remediations.first { $0.decision == .blocked }), reason: "console access exists")
            let state = try hostState(root: root, manifests, extra: [approval])
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.first?.decision == .applied)
            let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nAllowUsers nobody\n"))
        }
        try await withTemporaryDirectory { root in
            // Approved or not, a candidate sshd rejects is checked again at apply and never written.
            try host(root, [root0, admin])
            let manifests = resource("SSHDConfig", "s", "Ciphers: not-a-cipher")
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let blocked = try await reconciler.plan(try hostState(root: root, manifests))
            let approval = try approvalFile(try #require(blocked.remediations.first { $0.decision == .blocked }), reason: "testing")
            let before = try snapshot(root)
            let state = try hostState(root: root, manifests, extra: [approval])
            let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: RecordingSink())
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            #expect(record.error?.contains("sshd -t rejected the candidate configuration") == true, "\(record.error ?? "")")
            #expect(try snapshot(root) == before)
        }
    }

    /// A fix checks its candidate once, whole (`sshd -t` with the root's drop-ins): the bytes
    /// renamed into place are that candidate's main file, so sshd is not run on them again.
    /// A candidate sshd refuses is still never written (`anApprovedBlockIsAppliedAndSshdStillRefusesABrokenCandidate`).
    @Test func aFixRunsSshdOnceOnItsCandidateNotAgainOnTheBytesItRenames() async throws {
        try await withTemporaryDirectory { root in
            // A marker no other test uses: the check cannot be answered by another test's.
            try host(root, [root0, admin], config: debian + "# write-check test \(UUID().uuidString)\n")
            try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication yes\n")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "MaxAuthTries: 3"))
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(state)
            let counter = SSHDProbeCounter()
            let outcome = await SSHDProbeCounter.$current.withValue(counter) {
                await reconciler.apply(plan, state: state, audit: RecordingSink())
            }
            #expect(outcome.entries.map(\.record.result) == [.verified], "\(outcome.entries.map(\.record.error))")
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 3\n"))
            #expect(counter.sshdRuns == 1, "sshd runs during the fix: \(counter.sshdRuns)")
        }
    }

    /// Identical hosts judged and fixed in parallel ask sshd each question once: the first to
    /// ask runs the probe and the others wait for its answer, so eight hosts start as many sshd
    /// processes as one. Each host is still judged and fixed on its own.
    @Test func identicalHostsJudgedInParallelRunEachProbeOnce() async throws {
        func runs(hosts: Int) async throws -> Int {
            try await withTemporaryDirectory { dir in
                // A marker no other run uses: no answer comes from an earlier test.
                let config = debian + "# parallel probe test \(UUID().uuidString)\n"
                var targets = ""
                for index in 0..<hosts {
                    try host(dir + "/h\(index)", [root0, admin], config: config)
                    if index > 0 {
                        targets += "---\napiVersion: bulwark/v1\nkind: Target\nmetadata: {name: h\(index)}\nspec: {adapter: host, root: \(dir)/h\(index)}\n"
                    }
                }
                let state = try hostState(root: dir + "/h0", resource("SSHDConfig", "s", "MaxAuthTries: 3"),
                                          extra: [SourceFile(path: "controllers/more.yaml", contents: Array(targets.utf8))])
                #expect(state.targets.count == hosts)
                let counter = SSHDProbeCounter()
                let outcome = try await SSHDProbeCounter.$current.withValue(counter) {
                    try await reconcile(state).1
                }
                #expect(outcome.verified.count == hosts, "\(outcome.entries.map(\.record.error))")
                for index in 0..<hosts {
                    #expect(try read(dir + "/h\(index)/etc/ssh/sshd_config").contains("\nMaxAuthTries 3\n"))
                }
                return counter.sshdRuns
            }
        }
        let one = try await runs(hosts: 1)
        #expect(one > 0)
        let eight = try await runs(hosts: 8)
        #expect(eight == one, "8 identical hosts ran sshd \(eight) times, one host \(one)")
    }

    /// A setting that decides who can log in is judged by sshd's answers for root and for the
    /// first administrator: both sshd processes run at once, not one after the other. The
    /// verdict is the same as when they ran in turn: allowed here, blocked below.
    @Test func rootAndTheFirstAdministratorAreProbedAtOnce() async throws {
        try await withTemporaryDirectory { root in
            // A marker no other test uses: no answer comes from another test's probes.
            try host(root, [root0, admin], config: debian + "# concurrent probe test \(UUID().uuidString)\n")
            let counter = SSHDProbeCounter(meetingAt: 2)
            try await SSHDProbeCounter.$current.withValue(counter) {
                try await expectApplied(root, resource("SSHDConfig", "s", "MaxAuthTries: 3"))
            }
            #expect(counter.sshdRuns == 3, "sshd -T for root and admin, sshd -t before the write: \(counter.sshdRuns)")
            #expect(counter.peakConcurrentRuns == 2)
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 3\n"))
        }
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin], config: debian + "# concurrent probe test \(UUID().uuidString)\n")
            let counter = SSHDProbeCounter(meetingAt: 2)
            try await SSHDProbeCounter.$current.withValue(counter) {
                _ = try await expectBlocked(root, resource("SSHDConfig", "s", "AllowUsers: nobody"), reason: "no account could log in over SSH")
            }
            #expect(counter.peakConcurrentRuns == 2)
        }
        // A candidate sshd rejects: blocked with sshd's message, which the two probes at once
        // already had; sshd is not asked a third time for it.
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin], config: debian + "# concurrent probe test \(UUID().uuidString)\n")
            let counter = SSHDProbeCounter(meetingAt: 2)
            try await SSHDProbeCounter.$current.withValue(counter) {
                let state = try hostState(root: root, resource("SSHDConfig", "s", "Ciphers: not-a-cipher"))
                let plan = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
                #expect(plan.remediations.map(\.decision) == [.blocked])
                #expect(plan.remediations.first?.reason?.contains("sshd -T rejected the candidate configuration") == true,
                        "\(plan.remediations.first?.reason ?? "")")
            }
            #expect(counter.sshdRuns == 2, "sshd runs: \(counter.sshdRuns)")
            #expect(counter.peakConcurrentRuns == 2)
        }
    }

    @Test func anIdenticalProbeRunsSshdOnceAndAChangedByteProbesAgain() async throws {
        try await withTemporaryDirectory { root in
            // A marker no other test uses: the first judgement cannot reuse another test's answer.
            let marker = "# probe-cache test \(UUID().uuidString)\n"
            try host(root, [root0, alice], config: debian + marker)
            try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication yes\n")
            let lockout = resource("SSHDConfig", "s", "AllowUsers: nobody")
            let counter = SSHDProbeCounter()
            try await SSHDProbeCounter.$current.withValue(counter) {
                let first = try await expectBlocked(root, lockout, reason: "no account could log in over SSH")
                let probed = counter.sshdRuns
                #expect(probed > 0)
                // The same candidate, drop-ins and accounts again: sshd's answers are reused, the verdict is the same.
                let second = try await expectBlocked(root, lockout, reason: "no account could log in over SSH")
                #expect(counter.sshdRuns == probed)
                #expect(second == first)

                // One changed byte in a drop-in: probed again, and still blocked.
                try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication yes \n")
                _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH")
                let afterDropIn = counter.sshdRuns
                #expect(afterDropIn > probed)

                // One changed byte in the main file: probed again, and still blocked.
                try write(root + "/etc/ssh/sshd_config", debian + marker + " ")
                _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH")
                #expect(counter.sshdRuns > afterDropIn)

                // A cached answer never decides for a drop-in that changes the outcome: keys off
                // for everyone in the drop-in is seen, the change is still blocked, and the
                // legitimate change still goes through once keys are back.
                try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication no\nPasswordAuthentication no\n")
                let keysOff = try await expectBlocked(root, resource("SSHDConfig", "s", "AllowUsers: alice"),
                                                      reason: "no account could log in over SSH")
                #expect(keysOff.contains("alice: no authentication method left"), "\(keysOff)")
                try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication yes\n")
                try await expectApplied(root, resource("SSHDConfig", "s", "AllowUsers: alice"))
                #expect(try read(root + "/etc/ssh/sshd_config").contains("\nAllowUsers alice\n"))
            }
        }
    }

    /// A setting that cannot lock anyone out (X11Forwarding) judged after a change that can
    /// (AllowUsers) in the same file: sshd is asked about the same candidate as for the change
    /// before it, so no probe of its own; both are applied. And a harmful change judged after
    /// such a setting is still blocked, the setting applied.
    @Test func aSessionSettingAfterAnAccessChangeNeedsNoProbeOfItsOwn() async throws {
        let access = resource("SSHDConfig", "access", "AllowUsers: alice")
        let session = resource("SSHDConfig", "session", "X11Forwarding: \"no\"")
        func runs(_ manifests: String) async throws -> Int {
            try await withTemporaryDirectory { root in
                // A marker no other test uses: no answer of another judgement is reused.
                try host(root, [root0, alice], config: debian + "# session probe test \(UUID().uuidString)\n")
                let counter = SSHDProbeCounter()
                try await SSHDProbeCounter.$current.withValue(counter) { try await expectApplied(root, manifests) }
                #expect(try read(root + "/etc/ssh/sshd_config").contains("\nAllowUsers alice\n"))
                return counter.sshdRuns
            }
        }
        let alone = try await runs(access)
        #expect(alone > 0)
        #expect(try await runs(access + session) == alone, "the session setting is judged with the access change's probe")

        try await withTemporaryDirectory { root in
            try host(root, [root0, alice])
            // Judged in name order: the session setting first, then the lockout with it.
            let state = try hostState(root: root, resource("SSHDConfig", "a-session", "X11Forwarding: \"no\"")
                                      + resource("SSHDConfig", "z-lockout", "AllowUsers: nobody"))
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            let decisions = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0) })
            #expect(decisions["a-session"]?.decision == .applied)
            #expect(decisions["z-lockout"]?.decision == .blocked)
            let reason = decisions["z-lockout"]?.reason ?? ""
            #expect(reason.contains("no account could log in over SSH") && reason.contains("X11Forwarding no"), "\(reason)")
        }
    }

    /// Limits no check reads (MaxAuthTries, LoginGraceTime) leave what sshd is asked about as the
    /// file has them: resources that change them after an access change are judged with that
    /// change's candidate, and one plan judges that candidate once. All three are applied, and
    /// the next plan judges afresh. (A limit on a host that already keeps everyone out is still
    /// blocked: `authenticationMethodsNoAccountCanMeetIsBlocked`.)
    @Test func limitsAfterAnAccessChangeShareItsVerdictWithinAPlan() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin], config: debian + "# verdict test \(UUID().uuidString)\n")
            let state = try hostState(root: root, resource("SSHDConfig", "a-access", "PermitRootLogin: \"no\"")
                                      + resource("SSHDConfig", "b-tries", "MaxAuthTries: 3")
                                      + resource("SSHDConfig", "c-grace", "LoginGraceTime: 30"))
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let counter = SSHDProbeCounter()
            let plan = try await SSHDProbeCounter.$current.withValue(counter) { try await reconciler.plan(state) }
            #expect(plan.remediations.map(\.decision) == [.applied, .applied, .applied],
                    "\(plan.remediations.map { "\($0.binding) \($0.decision) \($0.reason ?? "")" })")
            #expect(counter.candidatesJudged == 1, "one candidate judged for the three resources: \(counter.candidatesJudged)")

            let next = SSHDProbeCounter()
            _ = try await SSHDProbeCounter.$current.withValue(next) { try await reconciler.plan(state) }
            #expect(next.candidatesJudged == 1, "the next plan judges afresh")

            let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
            #expect(outcome.verified.count == 3, "\(outcome.entries.map(\.record.error))")
            let config = try read(root + "/etc/ssh/sshd_config")
            #expect(config.contains("\nPermitRootLogin no\n") && config.contains("MaxAuthTries 3\n") && config.contains("LoginGraceTime 30\n"))
        }
    }

    /// A limit the file holds in a form sshd refuses (`LoginGraceTime 2min`) is repaired: the
    /// candidate sshd is asked about without the repair cannot be judged, so it is asked about
    /// the candidate with it. A lockout on the same broken file is still blocked.
    @Test func aLimitSshdRefusesIsRepairedAndALockoutBesideItIsStillBlocked() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin], config: debian + "LoginGraceTime 2min\n")
            try await expectApplied(root, resource("SSHDConfig", "s", "LoginGraceTime: 120"))
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nLoginGraceTime 120\n"))
        }
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin], config: debian + "LoginGraceTime 2min\n")
            try await expectBlocked(root, resource("SSHDConfig", "s", "AllowUsers: nobody"), reason: "sshd")
        }
    }

    /// A plan's kept verdict is by the account changes judged with it too: the same candidate,
    /// judged in one plan first with no account change and then with the administrator's login
    /// shell taken away by the pass, is allowed and then blocked.
    @Test func aKeptVerdictIsByTheAccountChangesJudgedWithIt() async throws {
        try await withTemporaryDirectory { root in
            try host(root, [root0, admin])
            let location = BulwarkCore.SourceLocation(file: "t.yaml", line: 1)
            let target = Target(name: "t", adapter: "host", settings: HostTargetSettings(root: try #require(TargetRoot(root))),
                                location: location)
            let sshd = SSHDConfigDriver(validator: SSHDValidator.system)
            let resource = Resource(id: ResourceID(kind: "SSHDConfig", name: "s"),
                                    spec: ResourceSpec(properties: [DesiredProperty("PermitRootLogin", "no")]), location: location)
            let change = [PropertyDrift(property: "PermitRootLogin", desired: "no", observed: "yes")]
            let shell = AllowedChange(resource: Resource(id: ResourceID(kind: "UserAccount", name: "admin"),
                                                         spec: ResourceSpec(subject: "admin", properties: [DesiredProperty("shell", "/usr/sbin/nologin")]),
                                                         location: location),
                                      changes: [PropertyDrift(property: "shell", desired: "/usr/sbin/nologin", observed: "/bin/bash")])
            let counter = SSHDProbeCounter()
            await SSHDProbeCounter.$current.withValue(counter) {
                await ObservationScope.$current.withValue(ObservationScope()) {
                    #expect(await sshd.assess(change, to: resource, on: target, alongside: []) == .allow)
                    let verdict = await sshd.assess(change, to: resource, on: target, alongside: [shell])
                    #expect(verdict.blockReason?.contains("no account could log in over SSH") == true, "\(verdict)")
                    #expect(await sshd.assess(change, to: resource, on: target, alongside: []) == .allow)
                }
            }
            #expect(counter.candidatesJudged == 2, "the third judgement is the first's, kept: \(counter.candidatesJudged)")
        }
    }

    /// What the real `sshd -t` says of a bad file reaches the message as its lines joined with
    /// "; ", the candidate's path hidden: OpenSSH ends each line on stderr with `\r\n`, which an
    /// error quoted on one line showed as `\r\n` escapes.
    @Test func sshdsRefusalReadsAsItsLines() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/candidate", "Foo bar\n")
            let error = #expect(throws: HostError.self) { try SSHDValidator.system.validate(root + "/candidate") }
            let message = try #require(error?.description)
            #expect(!message.contains("\r") && !message.contains("\\r"), "\(message)")
            #expect(message.contains("<candidate>: line 1: Bad configuration option: Foo; <candidate>: terminating, 1 bad configuration options"),
                    "\(message)")
        }
    }
}

/// What the guard's first probe needs (a client's offer, the probe key) is made as soon as an
/// observation shows a drift the guard will ask sshd about: an in-sync plan, or one whose sshd
/// drift cannot lock anyone out, starts no `ssh-keygen` and no `ssh` for it. (A drift the plan
/// then waives still starts it: the observation cannot see waivers.)
@Suite struct SSHDGuardWarmUpTests {
    func resource(_ properties: [(String, String)]) -> Resource {
        Resource(id: ResourceID(kind: "SSHDConfig", name: "hardening"),
                 spec: ResourceSpec(properties: properties.map { DesiredProperty($0.0, $0.1) }),
                 location: SourceLocation(file: "sshd.yaml", line: 1))
    }

    @Test func aDriftTheGuardProbesWarmsUpAndNothingElseDoes() {
        let hardening = resource([("PermitRootLogin", "no"), ("X11Forwarding", "no"), ("PermitEmptyPasswords", "no")])
        // In sync: nothing to judge.
        #expect(!SSHDConfigDriver.guardWillProbe(hardening, observed: ["PermitRootLogin": "no", "X11Forwarding": "no", "PermitEmptyPasswords": "no"]))
        // Only settings that cannot lock anyone out drifted, and PermitEmptyPasswords turned off.
        #expect(!SSHDConfigDriver.guardWillProbe(hardening, observed: ["PermitRootLogin": "no", "X11Forwarding": "yes", "PermitEmptyPasswords": "yes"]))
        // Root login drifted, or is unset in the file: the guard will ask sshd.
        #expect(SSHDConfigDriver.guardWillProbe(hardening, observed: ["PermitRootLogin": "yes", "X11Forwarding": "no", "PermitEmptyPasswords": "no"]))
        #expect(SSHDConfigDriver.guardWillProbe(hardening, observed: ["PermitRootLogin": String?.none, "X11Forwarding": "no", "PermitEmptyPasswords": "no"]))
        // PermitEmptyPasswords turned on is judged.
        #expect(SSHDConfigDriver.guardWillProbe(resource([("PermitEmptyPasswords", "yes")]), observed: ["PermitEmptyPasswords": "no"]))
        // A limit no check reads is still judged (against the rest of its candidate).
        #expect(SSHDConfigDriver.guardWillProbe(resource([("MaxAuthTries", "4")]), observed: ["MaxAuthTries": "10"]))
    }
}
