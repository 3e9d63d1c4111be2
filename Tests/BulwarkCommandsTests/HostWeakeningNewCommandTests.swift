import BulwarkTestSupport
import Foundation
import Testing

/// Outside review: a host resource added in one commit with a weak value (`StrictModes no`, a
/// system account given a login shell, a private key made readable by all, `Banner /etc/shadow`)
/// went through `bulwark apply` as `will fix`. Each is now held for a second person (a value no
/// earlier revision set is judged as if it had been off) or blocked by the sshd guard, and
/// recorded on the audit branch, read back with git; the hardened twin of each is applied.
@Suite struct HostWeakeningNewCommandTests {
    /// Each recorded resource's decisions, newest first, from the audit branch.
    static func decisions(_ s: Scenario) throws -> [String: [String]] {
        let log = try git("--git-dir", s.origin, "log",
                          "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)",
                          "bulwark/audit")
        var result: [String: [String]] = [:]
        for line in log.split(separator: "\n") {
            let parts = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { continue }
            result[parts[0], default: []].append(parts[1])
        }
        return result
    }

    static let weak = """
        apiVersion: bulwark/v1
        kind: SSHDConfig
        metadata: {name: extra-sshd}
        spec: {StrictModes: "no", GatewayPorts: "yes", PermitTunnel: "yes"}
        ---
        apiVersion: bulwark/v1
        kind: UserAccount
        metadata: {name: daemon-account}
        spec: {name: daemon, shell: /bin/bash}
        ---
        apiVersion: bulwark/v1
        kind: FileMode
        metadata: {name: root-key}
        spec: {path: /root/.ssh/id_ed25519, mode: "0644"}
        ---
        apiVersion: bulwark/v1
        kind: Sysctl
        metadata: {name: kptr}
        spec: {kernel.kptr_restrict: 0}
        ---
        apiVersion: bulwark/v1
        kind: LoginDefs
        metadata: {name: hash}
        spec: {ENCRYPT_METHOD: MD5}

        """

    static let hardened = """
        apiVersion: bulwark/v1
        kind: SSHDConfig
        metadata: {name: extra-sshd}
        spec: {StrictModes: "yes", GatewayPorts: "no", PasswordAuthentication: "no"}
        ---
        apiVersion: bulwark/v1
        kind: UserAccount
        metadata: {name: daemon-account}
        spec: {name: daemon, shell: /usr/sbin/nologin, locked: true}
        ---
        apiVersion: bulwark/v1
        kind: FileMode
        metadata: {name: root-key}
        spec: {path: /root/.ssh/id_ed25519, mode: "0600"}
        ---
        apiVersion: bulwark/v1
        kind: Sysctl
        metadata: {name: kptr}
        spec: {kernel.kptr_restrict: 2}
        ---
        apiVersion: bulwark/v1
        kind: LoginDefs
        metadata: {name: hash}
        spec: {ENCRYPT_METHOD: YESCRYPT}

        """

    @Test func newHostResourcesThatWeakenAreHeldAndRecordedAndTheirHardenedTwinsApplied() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
            try write(s.host + "/root/.ssh/id_ed25519", "PRIVATE KEY\n")
            chmod(s.host + "/root/.ssh/id_ed25519", 0o600)
            try write(s.host + "/proc/sys/kernel/kptr_restrict", "1\n")
            let before = try s.snapshot()

            try s.commitPolicy("desired-state/hosts/extra.yaml", Self.weak)
            let held = try s.run("apply")
            #expect(held.stdout.contains("weakens the policy by Test Person"), "\(held.stdout)\n\(held.stderr)")
            for why in ["StrictModes: (new) (turns a secure setting off", "GatewayPorts: (new)", "PermitTunnel: (new)",
                        "shell: (new) (gives the account a login shell", "mode: (new) (adds permission bits 44",
                        "kernel.kptr_restrict: (new) (moves from 1 to the weaker 0", "ENCRYPT_METHOD: (new) (uses a weaker password hash"] {
                #expect(held.stdout.contains(why), "\(why)\n\(held.stdout)")
            }
            let recorded = try Self.decisions(s)
            for name in ["SSHDConfig/extra-sshd", "UserAccount/daemon-account", "FileMode/root-key", "Sysctl/kptr", "LoginDefs/hash"] {
                #expect(recorded[name]?.first == "held", "\(name): \(recorded[name] ?? [])")
            }
            #expect(try s.snapshot() == before, "nothing held is written")

            try s.commitPolicy("desired-state/hosts/extra.yaml", Self.hardened)
            let applied = try s.run("apply")
            #expect(applied.status == 0 && !applied.stdout.contains("weakens the policy"), "\(applied.stdout)\n\(applied.stderr)")
            let after = try Self.decisions(s)
            // The account and the key are as the hardened twins want them already: in sync, nothing to record.
            #expect(!applied.stdout.contains("held"), "\(applied.stdout)")
            for name in ["SSHDConfig/extra-sshd", "Sysctl/kptr", "LoginDefs/hash"] {
                #expect(after[name]?.first == "applied", "\(name): \(after[name] ?? [])\n\(applied.stdout)")
            }
            #expect(try read(s.host + "/proc/sys/kernel/kptr_restrict") == "2\n")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPasswordAuthentication no\n"))
        }
    }

    /// `Banner /etc/shadow`: sshd, as root, sends the file to whoever connects before login.
    /// Blocked by the sshd guard and recorded; `Banner /etc/issue.net` (root's, 0644) applied.
    @Test func aBannerNamingAFileNotEveryoneMayReadIsBlockedAndRecordedAndIssueNetApplied() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
            let banner = { (path: String) in
                "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: banner}\nspec: {Banner: \(path)}\n"
            }
            let before = try read(s.host + "/etc/ssh/sshd_config")
            try s.commitPolicy("desired-state/hosts/banner.yaml", banner("/etc/shadow"))
            let blocked = try s.run("apply")
            #expect(blocked.stdout.contains("Banner '/etc/shadow' is not readable by everyone (mode 640)"), "\(blocked.stdout)\n\(blocked.stderr)")
            let refused = try Self.decisions(s)
            #expect(refused["SSHDConfig/banner"]?.first == "blocked", "\(refused)")
            #expect(try read(s.host + "/etc/ssh/sshd_config") == before)

            try write(s.host + "/etc/issue.net", "Authorised use only.\n")
            chmod(s.host + "/etc/issue.net", 0o644)
            try s.commitPolicy("desired-state/hosts/banner.yaml", banner("/etc/issue.net"))
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            let fixed = try Self.decisions(s)
            #expect(fixed["SSHDConfig/banner"]?.first == "applied", "\(fixed)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nBanner /etc/issue.net\n"))
        }
    }
}
