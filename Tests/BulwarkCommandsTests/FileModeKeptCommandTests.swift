import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do.
internal import CDispatch
import Foundation
import Testing

/// Outside review, through the real binary and read back from the audit branch with git:
/// - a change of group of /usr/bin/passwd (4755) was recorded `group: admin -> root`, verified,
///   and left it 0755 (the kernel takes set-id bits and file capabilities on chown);
/// - a kill between the chown and the chmod left sudo without its setuid bit, the next run
///   recorded the fix verified, and the guard blocked putting the bit back;
/// - `/etc 0700`, `/etc/passwd 0600`, `/usr/sbin/sshd 0600`, … were applied and verified;
/// - a ConfigFile hard-linked to etc/shadow was read and rewritten.
@Suite struct FileModeKeptCommandTests {
    static func status(_ path: String) -> (mode: UInt32, uid: UInt32, gid: UInt32) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return (0, UInt32.max, UInt32.max) }
        return (UInt32(info.st_mode & 0o7777), info.st_uid, info.st_gid)
    }

    /// The demo policy's own file modes are replaced: its chown of etc/shadow would be the
    /// first a fault stops, and its `/etc/passwd 0644` would be a second resource of the file.
    static let policyFile = "desired-state/hosts/file-permissions.yaml"

    static func fileMode(_ name: String, _ spec: String) -> String {
        "---\napiVersion: bulwark/v1\nkind: FileMode\nmetadata: {name: \(name)}\nspec: {\(spec)}\n"
    }

    /// A program owned by `uid` (root), group `gid` (admin, 1000), with `mode`.
    static func program(_ s: Scenario, _ path: String, mode: mode_t, uid: uid_t = 0, gid: gid_t = 1000) throws {
        try FileManager.default.createDirectory(atPath: (s.host + path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try write(s.host + path, "#!/bin/sh\n", mode: 0o755)
        chown(s.host + path, uid, gid)
        chmod(s.host + path, mode)
    }

    static func capabilities(_ path: String) throws -> String {
        try run("/sbin/getcap", [path]).stdout
    }

    // MARK: - 1. set-id bits and capabilities kept through a change of group

    @Test(.enabled(if: isRoot)) func aChangeOfGroupKeepsTheSetuidBitAndCapabilitiesAndSaysSo() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/usr/bin/passwd", mode: 0o4755)
            try Self.program(s, "/usr/bin/ping", mode: 0o755)
            let set = try run("/sbin/setcap", ["cap_net_raw+ep", s.host + "/usr/bin/ping"])
            #expect(set.status == 0, "\(set.stderr)")
            try s.commitPolicy(Self.policyFile,
                               Self.fileMode("passwd", "path: /usr/bin/passwd, group: root") + Self.fileMode("ping", "path: /usr/bin/ping, group: root"))
            try s.acceptHead()
            let plan = try s.run("plan")
            #expect(plan.stdout.contains("to keep through the change of owner or group: its setuid bit (mode 4755)"), "\(plan.stdout)")
            #expect(plan.stdout.contains("to keep through the change of owner or group: its file capabilities"), "\(plan.stdout)")
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            #expect(Self.status(s.host + "/usr/bin/passwd") == (0o4755, 0, 0), "the setuid bit is kept")
            #expect(Self.status(s.host + "/usr/bin/ping") == (0o755, 0, 0))
            #expect(try Self.capabilities(s.host + "/usr/bin/ping").contains("cap_net_raw"), "the capability is kept")
            let passwd = try CrashSafetyTests.records(of: "FileMode/passwd", s)
            #expect(passwd.first?.contains("Bulwark-Result: verified") == true, "\(passwd)")
            #expect(passwd.first?.contains("/usr/bin/passwd kept its setuid bit (mode 4755) through the change of its owner or group") == true,
                    "\(passwd)")
            let ping = try CrashSafetyTests.records(of: "FileMode/ping", s)
            #expect(ping.first?.contains("/usr/bin/ping kept its file capabilities through the change of its owner or group") == true, "\(ping)")
            #expect(try s.run("plan").status == 0, "in sync afterwards")
        }
    }

    /// The twin: a spec that sets the mode too decides it; the bit it takes is recorded as a change of mode.
    @Test(.enabled(if: isRoot)) func aSpecsModeWithoutTheSetuidBitIsTheModeAndTheRecordSaysSo() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/usr/bin/passwd", mode: 0o4755)
            try s.commitPolicy(Self.policyFile, Self.fileMode("passwd", "path: /usr/bin/passwd, group: root, mode: \"0755\""))
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            #expect(Self.status(s.host + "/usr/bin/passwd") == (0o755, 0, 0))
            let passwd = try CrashSafetyTests.records(of: "FileMode/passwd", s)
            #expect(passwd.first?.contains("Bulwark-Result: verified") == true, "\(passwd)")
            #expect(passwd.first?.contains("mode: 4755 -> 0755") == true || passwd.first?.contains("4755") == true, "\(passwd)")
            #expect(passwd.first?.contains("lost its setuid bit with the change of its owner or group: the spec sets mode 0755") == true,
                    "\(passwd)")
        }
    }

    // MARK: - 2. a kill between the chown and the restore

    @Test(.enabled(if: isRoot)) func aKillBetweenTheChownAndTheRestoreIsNotRecordedVerifiedAndTheNextPassPutsTheBitBack() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/usr/bin/sudo", mode: 0o4755)
            try s.commitPolicy(Self.policyFile, Self.fileMode("sudo", "path: /usr/bin/sudo, group: root, mode: \"4755\""))
            try s.acceptHead()
            let crashed = try s.run("apply", environment: ["BULWARK_FAULT_KILL_AT_CHANGE": "FileMode:chowned"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault: \(crashed.stdout)\(crashed.stderr)")
            #expect(Self.status(s.host + "/usr/bin/sudo") == (0o755, 0, 0), "the chown took the setuid bit")

            let next = try s.run("apply")
            #expect(next.status == 1, "a run that records an interrupted fix exits 1: \(next.stdout)\n\(next.stderr)")
            #expect(!next.stdout.contains("would add the setuid bit"), "\(next.stdout)")
            #expect(Self.status(s.host + "/usr/bin/sudo") == (0o4755, 0, 0), "put back by the next pass")
            let records = try CrashSafetyTests.records(of: "FileMode/sudo", s)
            let interrupted = records.filter { $0.contains("Bulwark-Result: interrupted") }
            #expect(interrupted.count == 1 && interrupted.allSatisfy {
                $0.contains("the process stopped between this fix's intent and its record; found afterwards")
                    && $0.contains("took its setuid bit (mode 4755, now 0755)")
            }, "\(records)")
            #expect(!records.contains { $0.contains("recorded after a restart") && $0.contains("Bulwark-Result: verified") }, "\(records)")
            #expect(records.first?.contains("Bulwark-Result: verified") == true, "the restore is its own verified fix: \(records)")
            #expect(!records.contains { $0.contains("Bulwark-Decision: blocked") }, "\(records)")
            #expect(try s.run("plan").status == 0, "in sync afterwards")
        }
    }

    /// The twin: a setuid bit the file never had is still blocked, and recorded.
    @Test(.enabled(if: isRoot)) func aSetuidBitTheFileNeverHadIsStillBlocked() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/usr/bin/sudo", mode: 0o755)
            try s.commitPolicy(Self.policyFile, Self.fileMode("sudo", "path: /usr/bin/sudo, group: root, mode: \"4755\""))
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.stdout.contains("would add the setuid bit to /usr/bin/sudo"), "\(applied.stdout)\n\(applied.stderr)")
            #expect(try HostWeakeningNewCommandTests.decisions(s)["FileMode/sudo"]?.first == "blocked")
            #expect(Self.status(s.host + "/usr/bin/sudo") == (0o755, 0, 1000))
        }
    }

    /// Outside review: a user's own 4755 program given to root kept its setuid bit (a
    /// setuid-root program with the user's content), and a mark left by a killed pass put the bit
    /// back after someone else changed the file's owner. A set-id bit is not handed to a new
    /// owner or group: the chown drops it and the record says so.
    @Test(.enabled(if: isRoot)) func aChangeOfOwnerDropsTheSetuidBitAndTheRecordSaysSo() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/opt/app/bin/tool", mode: 0o4755, uid: 1001, gid: 1000)
            try s.commitPolicy(Self.policyFile, Self.fileMode("tool", "path: /opt/app/bin/tool, owner: root"))
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            #expect(Self.status(s.host + "/opt/app/bin/tool") == (0o755, 0, 1000), "no setuid-root program with the user's content")
            let records = try CrashSafetyTests.records(of: "FileMode/tool", s)
            #expect(records.first?.contains("Bulwark-Result: verified") == true, "\(records)")
            #expect(records.first?.contains("/opt/app/bin/tool lost its setuid bit with the change of its owner") == true, "\(records)")
        }
    }

    /// The spec's own mode keeping the setuid bit while the owner changes is a setuid bit added
    /// for the new owner: blocked and recorded; the file is left as it was.
    @Test(.enabled(if: isRoot)) func aSpecKeepingTheSetuidBitForANewOwnerIsBlocked() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/opt/app/bin/tool", mode: 0o4755, uid: 1001, gid: 1000)
            try s.commitPolicy(Self.policyFile, Self.fileMode("tool", "path: /opt/app/bin/tool, owner: root, mode: \"4755\""))
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.stdout.contains("would keep the setuid bit on /opt/app/bin/tool while its owner changes to root"),
                    "\(applied.stdout)\n\(applied.stderr)")
            #expect(try HostWeakeningNewCommandTests.decisions(s)["FileMode/tool"]?.first == "blocked")
            #expect(Self.status(s.host + "/opt/app/bin/tool") == (0o4755, 1001, 1000))
        }
    }

    /// A mark left by a killed pass is the file's only while the file is as that pass left it:
    /// its owner changed since (by a person, on purpose), nothing is put back from it.
    @Test(.enabled(if: isRoot)) func aStaleMarkPutsNothingBack() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/usr/bin/qx", mode: 0o4755)
            try s.commitPolicy(Self.policyFile, Self.fileMode("qx", "path: /usr/bin/qx, group: root"))
            try s.acceptHead()
            let crashed = try s.run("apply", environment: ["BULWARK_FAULT_KILL_AT_CHANGE": "FileMode:chowned"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault: \(crashed.stdout)\(crashed.stderr)")
            #expect(Self.status(s.host + "/usr/bin/qx") == (0o755, 0, 0), "the chown took the setuid bit")
            chown(s.host + "/usr/bin/qx", 1, 0)
            _ = try s.run("apply")
            #expect(Self.status(s.host + "/usr/bin/qx") == (0o755, 1, 0), "no setuid-daemon program")
            let records = try CrashSafetyTests.records(of: "FileMode/qx", s)
            #expect(!records.contains { $0.contains("kept its setuid bit") }, "\(records)")
        }
    }

    /// Outside review: a kill after a change of group left guest's 4755 program marked; the policy
    /// then changed its owner to root too, and the next pass put the setuid bit back on a
    /// program now root's (4755 root:root, recorded verified). The mark's bits pass through the
    /// new change as the file's own would: the setuid bit is not handed to root.
    @Test(.enabled(if: isRoot)) func aMarksSetuidBitIsNotHandedToANewOwnerByTheNextPass() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/opt/app/bin/tool", mode: 0o4755, uid: 1001, gid: 1001)
            try s.commitPolicy(Self.policyFile, Self.fileMode("tool", "path: /opt/app/bin/tool, group: root"))
            try s.acceptHead()
            let crashed = try s.run("apply", environment: ["BULWARK_FAULT_KILL_AT_CHANGE": "FileMode:chowned"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault: \(crashed.stdout)\(crashed.stderr)")
            #expect(Self.status(s.host + "/opt/app/bin/tool") == (0o755, 1001, 0), "the chown took the setuid bit")
            try s.commitPolicy(Self.policyFile, Self.fileMode("tool", "path: /opt/app/bin/tool, owner: root, group: root"))
            try s.acceptHead()
            _ = try s.run("apply")
            #expect(Self.status(s.host + "/opt/app/bin/tool") == (0o755, 0, 0), "no setuid-root program with guest's content")
            let records = try CrashSafetyTests.records(of: "FileMode/tool", s)
            #expect(!records.contains { $0.contains("kept its setuid bit") }, "\(records)")
            #expect(records.first?.contains("lost its setuid bit with the change of its owner") == true, "\(records)")
        }
    }

    /// A setgid bit kept for a new group: blocked where a user wrote the program (guest's own
    /// 2755 tool given to group shadow would read /etc/shadow with guest's code); Debian's own
    /// state goes through where only root wrote it (`chage` root:root 2755 made root:shadow).
    @Test(.enabled(if: isRoot)) func aSetgidBitKeptForANewGroupIsBlockedUnlessOnlyRootWroteTheProgram() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/opt/app/bin/tool", mode: 0o2755, uid: 1001, gid: 1001)
            try Self.program(s, "/usr/bin/chage", mode: 0o2755, uid: 0, gid: 0)
            try s.commitPolicy(Self.policyFile, Self.fileMode("tool", "path: /opt/app/bin/tool, group: shadow, mode: \"2755\"")
                               + Self.fileMode("chage", "path: /usr/bin/chage, group: shadow, mode: \"2755\""))
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.stdout.contains("would keep the setgid bit on /opt/app/bin/tool while its group changes to shadow"),
                    "\(applied.stdout)\n\(applied.stderr)")
            let decisions = try HostWeakeningNewCommandTests.decisions(s)
            #expect(decisions["FileMode/tool"]?.first == "blocked", "\(decisions["FileMode/tool"] ?? [])")
            #expect(decisions["FileMode/chage"]?.first == "applied", "\(decisions["FileMode/chage"] ?? [])\n\(applied.stdout)")
            #expect(Self.status(s.host + "/opt/app/bin/tool") == (0o2755, 1001, 1001))
            #expect(Self.status(s.host + "/usr/bin/chage").mode == 0o2755 && Self.status(s.host + "/usr/bin/chage").gid != 0)
        }
    }

    // MARK: - 3. modes taken away from what everyone needs

    static let outages: [(name: String, path: String, mode: String, reason: String)] = [
        ("etc", "/etc", "0700", "mode 0700 would take searching /etc from other users and services"),
        ("passwd", "/etc/passwd", "0600", "mode 0600 would take reading /etc/passwd from other users and services"),
        ("resolv", "/etc/resolv.conf", "0600", "mode 0600 would take reading /etc/resolv.conf from other users and services"),
        ("sshd", "/usr/sbin/sshd", "0600", "mode 0600 would leave /usr/sbin/sshd, a program the system runs, executable by no one"),
        ("systemd", "/lib/systemd/systemd", "0000", "mode 0000 would leave /lib/systemd/systemd, a program the system runs, executable by no one"),
    ]

    @Test(.enabled(if: isRoot)) func modesThatTakeWhatEveryoneNeedsAreBlockedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try write(s.host + "/etc/resolv.conf", "nameserver 127.0.0.53\n", mode: 0o644)
            try Self.program(s, "/usr/sbin/sshd", mode: 0o755)
            try Self.program(s, "/lib/systemd/systemd", mode: 0o755)
            try s.commitPolicy(Self.policyFile,
                               Self.outages.map { Self.fileMode($0.name, "path: \($0.path), mode: \"\($0.mode)\"") }.joined())
            try s.acceptHead()
            // The demo policy's own fixes change passwd's content (a guest's lock): the modes are compared.
            let paths = Self.outages.map(\.path)
            let before = paths.map { Self.status(s.host + $0).mode }
            let applied = try s.run("apply")
            for outage in Self.outages {
                #expect(applied.stdout.contains(outage.reason), "\(outage.reason)\n\(applied.stdout)\n\(applied.stderr)")
            }
            let decisions = try HostWeakeningNewCommandTests.decisions(s)
            for outage in Self.outages {
                #expect(decisions["FileMode/\(outage.name)"]?.first == "blocked", "\(outage.name): \(decisions["FileMode/\(outage.name)"] ?? [])")
            }
            #expect(paths.map { Self.status(s.host + $0).mode } == before, "every mode unchanged")
            #expect(Self.status(s.host + "/etc").mode & 0o005 == 0o005)
        }
    }

    /// Outside review: with systemd-resolved, `/etc/resolv.conf` is a link to its stub file under
    /// /run, and the stub made 0600 (or its folder 0700) went through, as did `/usr/bin` `0700`.
    /// Each is blocked and recorded; a file beside the stub that no one reads goes through.
    @Test(.enabled(if: isRoot)) func whatTheListedFilesReallyAreAndFoldersOfProgramsAreJudgedToo() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FileManager.default.createDirectory(atPath: s.host + "/run/systemd/resolve", withIntermediateDirectories: true)
            chmod(s.host + "/run/systemd/resolve", 0o755)
            try write(s.host + "/run/systemd/resolve/stub-resolv.conf", "nameserver 127.0.0.53\n", mode: 0o644)
            try write(s.host + "/run/systemd/resolve/notes.conf", "# nothing reads this\n", mode: 0o644)
            try? FileManager.default.removeItem(atPath: s.host + "/etc/resolv.conf")
            #expect(symlink("../run/systemd/resolve/stub-resolv.conf", s.host + "/etc/resolv.conf") == 0)
            try Self.program(s, "/usr/bin/tool", mode: 0o755)
            chmod(s.host + "/usr/bin", 0o755)
            try s.commitPolicy(Self.policyFile,
                               Self.fileMode("stub", "path: /run/systemd/resolve/stub-resolv.conf, mode: \"0600\"")
                               + Self.fileMode("resolve", "path: /run/systemd/resolve, mode: \"0700\"")
                               + Self.fileMode("bin", "path: /usr/bin, mode: \"0700\"")
                               + Self.fileMode("notes", "path: /run/systemd/resolve/notes.conf, mode: \"0600\""))
            try s.acceptHead()
            let applied = try s.run("apply")
            for reason in ["mode 0600 would take reading /run/systemd/resolve/stub-resolv.conf from other users and services",
                           "mode 0700 would take searching /run/systemd/resolve from other users and services, the way to /etc/resolv.conf",
                           "mode 0700 would take searching /usr/bin from other users and services, the way to /usr/bin"] {
                #expect(applied.stdout.contains(reason), "\(reason)\n\(applied.stdout)\n\(applied.stderr)")
            }
            let decisions = try HostWeakeningNewCommandTests.decisions(s)
            for name in ["stub", "resolve", "bin"] {
                #expect(decisions["FileMode/\(name)"]?.first == "blocked", "\(name): \(decisions["FileMode/\(name)"] ?? [])")
            }
            #expect(decisions["FileMode/notes"]?.first == "applied", "\(decisions["FileMode/notes"] ?? [])")
            #expect(Self.status(s.host + "/run/systemd/resolve/stub-resolv.conf").mode == 0o644)
            #expect(Self.status(s.host + "/run/systemd/resolve").mode == 0o755)
            #expect(Self.status(s.host + "/usr/bin").mode == 0o755)
            #expect(Self.status(s.host + "/run/systemd/resolve/notes.conf").mode == 0o600)
        }
    }

    @Test(.enabled(if: isRoot)) func tighteningSecretsAndPrivateConfigurationStillGoesThrough() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try Self.program(s, "/usr/bin/gcc", mode: 0o755)
            try s.commitPolicy(Self.policyFile,
                               Self.fileMode("shadow-tight", "path: /etc/shadow, mode: \"0640\"")
                               + Self.fileMode("sshd-config", "path: /etc/ssh/sshd_config, mode: \"0600\"")
                               + Self.fileMode("gcc", "path: /usr/bin/gcc, mode: \"0750\""))
            try s.acceptHead()
            let applied = try s.run("apply")
            let decisions = try HostWeakeningNewCommandTests.decisions(s)
            for name in ["FileMode/shadow-tight", "FileMode/sshd-config", "FileMode/gcc"] {
                #expect(decisions[name]?.first == "applied", "\(name): \(decisions[name] ?? [])\n\(applied.stdout)\n\(applied.stderr)")
            }
            #expect(Self.status(s.host + "/etc/shadow").mode == 0o640)
            #expect(Self.status(s.host + "/etc/ssh/sshd_config").mode == 0o600)
            #expect(Self.status(s.host + "/usr/bin/gcc").mode == 0o750)
        }
    }

    // MARK: - 4. a ConfigFile with another name

    static func configFile(_ path: String) -> String {
        """
        ---
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata: {name: app}
        spec:
          path: \(path)
          properties:
            logging.level: info

        """
    }

    /// The demo's ConfigFile controller reconciles the gateway only: this one reconciles the
    /// local target's application files.
    static let appController = """
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: app}
        spec:
          kinds: [ConfigFile]
          targets: {selector: {role: baseline}}

        """

    /// The app's ConfigFile and its controller, in place of the demo's gateway files (which the
    /// local target does not have).
    static func commitApp(_ s: Scenario) throws {
        let work = s.dir + "/app-work"
        try git("clone", "-q", s.origin, work)
        try git("rm", "-q", "desired-state/ai-gateway/litellm.yaml", in: work)
        try write(work + "/controllers/app.yaml", appController)
        try write(work + "/desired-state/hosts/app.yaml", configFile("etc/app/config.yaml"))
        try git("add", "-A", in: work)
        try git("commit", "-qm", "the app's configuration", in: work)
        try git("push", "-q", "origin", "main", in: work)
    }

    @Test(.enabled(if: isRoot)) func aConfigFileHardLinkedToShadowIsRefusedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FileManager.default.createDirectory(atPath: s.host + "/etc/app", withIntermediateDirectories: true)
            #expect(link(s.host + "/etc/shadow", s.host + "/etc/app/config.yaml") == 0)
            let shadow = try read(s.host + "/etc/shadow")
            try Self.commitApp(s)
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.status != 0, "\(applied.stdout)\n\(applied.stderr)")
            let records = try CrashSafetyTests.records(of: "ConfigFile/app", s)
            #expect(records.first?.contains("Bulwark-Decision: unobserved") == true && records.first?.contains("has 2 hard links") == true,
                    "\(records)")
            #expect(!records.joined().contains("sandboxhash"), "nothing of shadow in the record")
            // The demo policy's guest lock replaces etc/shadow (a new file): the link keeps the old one, unwritten.
            #expect(try read(s.host + "/etc/app/config.yaml") == shadow, "the link is left as it was")
        }
    }

    /// Outside review: root's link to etc/shadow given a second name in the app's folder (as a
    /// user may with `ln -P` where fs.protected_hardlinks is off) was followed as root's own link,
    /// and the app's values were appended to shadow, recorded verified.
    @Test(.enabled(if: isRoot)) func aHardLinkOfRootsSymbolicLinkIsNotFollowed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FileManager.default.createDirectory(atPath: s.host + "/etc/app", withIntermediateDirectories: true)
            #expect(symlink("/etc/shadow", s.host + "/etc/shadow-link") == 0)
            #expect(linkat(AT_FDCWD, s.host + "/etc/shadow-link", AT_FDCWD, s.host + "/etc/app/config.yaml", 0) == 0)
            try Self.commitApp(s)
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.status != 0, "\(applied.stdout)\n\(applied.stderr)")
            let records = try CrashSafetyTests.records(of: "ConfigFile/app", s)
            #expect(records.first?.contains("Bulwark-Decision: unobserved") == true && records.first?.contains("is a symbolic link with 2 names") == true,
                    "\(records)")
            #expect(!(try read(s.host + "/etc/shadow")).contains("logging"))
        }
    }

    /// The twin: root's link with one name is followed, and the file it names written.
    @Test(.enabled(if: isRoot)) func rootsSymbolicLinkWithOneNameIsFollowed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FileManager.default.createDirectory(atPath: s.host + "/etc/app", withIntermediateDirectories: true)
            try write(s.host + "/etc/app/real.yaml", "logging:\n  level: debug\n", mode: 0o644)
            #expect(symlink("real.yaml", s.host + "/etc/app/config.yaml") == 0)
            try Self.commitApp(s)
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            #expect(try read(s.host + "/etc/app/real.yaml").contains("level: info"))
        }
    }

    @Test(.enabled(if: isRoot)) func aConfigFileWithOneNameIsWritten() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FileManager.default.createDirectory(atPath: s.host + "/etc/app", withIntermediateDirectories: true)
            try write(s.host + "/etc/app/config.yaml", "logging:\n  level: debug\n", mode: 0o644)
            try Self.commitApp(s)
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            #expect(try read(s.host + "/etc/app/config.yaml").contains("level: info"), "\(applied.stdout)\n\(applied.stderr)")
            #expect(try CrashSafetyTests.records(of: "ConfigFile/app", s).first?.contains("Bulwark-Result: verified") == true)
        }
    }

    static func links(_ path: String) -> Int {
        var info = stat()
        return lstat(path, &info) == 0 ? Int(info.st_nlink) : 0
    }
}
