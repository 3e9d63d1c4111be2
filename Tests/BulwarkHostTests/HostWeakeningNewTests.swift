@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A host property no earlier revision set is judged as if it had been off
/// (`HostWeakening.judgedNew`), by the kind's own rule: before, only ConfigFile's were, and a new
/// `StrictModes no`, an unlocked account or a key made readable by all went through in a
/// resource added in one commit (outside review).
@Suite struct HostWeakeningNewTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    /// A revision that adds `manifests` to one that set none of them, planned and applied once:
    /// each resource's decision and reason by name; a held one changes nothing and is recorded held.
    func added(_ root: String, _ manifests: String) async throws -> [String: PlannedRemediation] {
        let registry = Registry([HostAdapter.definition()])
        let current = try hostState(root: root, manifests)
        let weakened = Weakening.compare(previous: .empty(revision: .workingTree), current: current, registry: registry)
        let reconciler = Reconciler(registry: registry)
        let plan = try await reconciler.plan(current, weakened: weakened)
        let outcome = await reconciler.apply(plan, state: current, audit: RecordingSink())
        for entry in outcome.entries where entry.record.decision == .held {
            #expect(entry.record.commitMessage.contains("Bulwark-Decision: held"))
        }
        return Dictionary(plan.remediations.map { ($0.binding.resource.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    @Test func eachHostKindJudgesANewValueByItsOwnRuleFromOff() {
        // sshd: switches from off, root login from no, limits and the log level from sshd's defaults.
        for (keyword, value) in [("StrictModes", "no"), ("GatewayPorts", "yes"), ("PermitTunnel", "yes"), ("PermitRootLogin", "yes"),
                                 ("PermitRootLogin", "prohibit-password"), ("PasswordAuthentication", "yes"),
                                 ("PermitEmptyPasswords", "yes"), ("X11Forwarding", "yes"), ("AllowTcpForwarding", "local"),
                                 ("AllowAgentForwarding", "yes"), ("PermitUserEnvironment", "yes"), ("IgnoreRhosts", "no"),
                                 ("MaxAuthTries", "10"), ("LogLevel", "quiet"), ("Ciphers", "+aes128-cbc")] {
            #expect(HostWeakening.sshdNew(keyword, value) != nil, "\(keyword) \(value)")
        }
        for (keyword, value) in [("StrictModes", "yes"), ("PasswordAuthentication", "no"), ("PermitRootLogin", "no"),
                                 ("MaxAuthTries", "4"), ("LogLevel", "verbose"), ("Ciphers", "aes256-gcm@openssh.com"),
                                 ("AllowUsers", "alice"), ("ClientAliveInterval", "0"), ("Banner", "/etc/issue.net")] {
            #expect(HostWeakening.sshdNew(keyword, value) == nil, "\(keyword) \(value)")
        }
        #expect(HostWeakening.sshdNew("StrictModes", "no") == "turns a secure setting off, judged against yes as no earlier revision set it")
        // Accounts from locked, without a login shell, with an end.
        #expect(HostWeakening.accountNew("locked", "false") != nil && HostWeakening.accountNew("locked", "true") == nil)
        #expect(HostWeakening.accountNew("shell", "/bin/bash") != nil && HostWeakening.accountNew("shell", "/bin/false") == nil)
        #expect(HostWeakening.accountNew("expires", "never") != nil && HostWeakening.accountNew("expires", "2027-01-01") == nil)
        // Files from root's, owner-only.
        #expect(HostWeakening.fileModeNew("mode", "0644") != nil && HostWeakening.fileModeNew("mode", "4700") != nil)
        #expect(HostWeakening.fileModeNew("mode", "0600") == nil && HostWeakening.fileModeNew("owner", "root") == nil)
        #expect(HostWeakening.fileModeNew("owner", "alice") != nil)
        // Kernel parameters from just above their weak end (or the kernel's stronger default).
        for (key, value) in [("kernel.kptr_restrict", "0"), ("kernel.perf_event_paranoid", "1"), ("net.core.bpf_jit_harden", "0"),
                             ("kernel.yama.ptrace_scope", "0"), ("net.ipv4.ip_forward", "1"), ("kernel.randomize_va_space", "1"),
                             ("net.ipv4.conf.eth0.accept_redirects", "1")] {
            #expect(HostWeakening.sysctlNew(key, value) != nil, "\(key) \(value)")
        }
        for (key, value) in [("kernel.kptr_restrict", "1"), ("kernel.perf_event_paranoid", "2"), ("kernel.yama.ptrace_scope", "1"),
                             ("fs.suid_dumpable", "0"), ("net.ipv4.conf.all.rp_filter", "2"), ("vm.swappiness", "10")] {
            #expect(HostWeakening.sysctlNew(key, value) == nil, "\(key) \(value)")
        }
        // login.defs from the baseline's values.
        for (key, value) in [("PASS_MAX_DAYS", "-1"), ("PASS_MAX_DAYS", "99999"), ("PASS_MIN_DAYS", "0"), ("UMASK", "022"),
                             ("ENCRYPT_METHOD", "MD5"), ("LOGIN_TIMEOUT", "0")] {
            #expect(HostWeakening.loginDefsNew(key, value) != nil, "\(key) \(value)")
        }
        for (key, value) in [("PASS_MAX_DAYS", "90"), ("UMASK", "077"), ("ENCRYPT_METHOD", "YESCRYPT"), ("MAIL_DIR", "/var/mail")] {
            #expect(HostWeakening.loginDefsNew(key, value) == nil, "\(key) \(value)")
        }
    }

    /// The shipped baseline, judged as all new (a state directory lost, no history to compare
    /// with), holds nothing but the grants it makes itself: its FileModes give group `shadow`
    /// and others read (`/etc/passwd 0644`). Every other value is as strict as off or stricter.
    @Test func theShippedBaselineJudgedAsNewHoldsOnlyItsOwnFileGrants() throws {
        let registry = Registry([HostAdapter.definition()])
        let files = try ["hosts/accounts.yaml", "hosts/sshd.yaml", "hosts/sysctl.yaml", "hosts/file-permissions.yaml"].map {
            SourceFile(path: "desired-state/" + $0, contents: Array(try read(Self.packageRoot + "/desired-state/" + $0).utf8))
        }
        let state = try hostState(root: "/nonexistent-root", "", extra: files)
        let weakened = Weakening.compare(previous: .empty(revision: .workingTree), current: state, registry: registry)
        #expect(Set(weakened.keys.map(\.kind)) == ["FileMode"], "\(weakened)")
    }

    @Test func aNewSSHDAccountOrKernelWeakeningIsHeldAndItsHardenedTwinApplied() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 90\nENCRYPT_METHOD SHA512\n")
            try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
            try write(root + "/proc/sys/kernel/kptr_restrict", "1\n")
            try write(root + "/root/.ssh/id_ed25519", "PRIVATE\n")
            chmod(root + "/root/.ssh/id_ed25519", 0o600)
            let before = try snapshot(root)
            let weak = try await added(root, resource("Sysctl", "kptr", "kernel.kptr_restrict: \"0\"")
                                       + resource("LoginDefs", "hash", "ENCRYPT_METHOD: MD5")
                                       + resource("FileMode", "key", "path: /root/.ssh/id_ed25519\nmode: \"0644\""))
            for (name, why) in [("kptr", "kernel.kptr_restrict: (new) (moves from 1 to the weaker 0"),
                                ("hash", "ENCRYPT_METHOD: (new) (uses a weaker password hash"),
                                ("key", "mode: (new) (adds permission bits 44")] {
                #expect(weak[name]?.decision == .held && weak[name]?.reason?.contains(why) == true,
                        "\(name): \(String(describing: weak[name]?.decision)) \(weak[name]?.reason ?? "")")
            }
            #expect(try snapshot(root) == before, "nothing held is written")
            let strong = try await added(root, resource("Sysctl", "kptr", "kernel.kptr_restrict: \"2\"")
                                         + resource("LoginDefs", "hash", "ENCRYPT_METHOD: YESCRYPT")
                                         + resource("FileMode", "key", "path: /root/.ssh/id_ed25519\nmode: \"0400\""))
            #expect(strong.values.allSatisfy { $0.decision == .applied }, "\(strong.mapValues { "\($0.decision) \($0.reason ?? "")" })")
            #expect(try read(root + "/proc/sys/kernel/kptr_restrict") == "2\n")
            #expect(try read(root + "/etc/login.defs").contains("ENCRYPT_METHOD YESCRYPT"))
        }
    }
}
