@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

// MARK: - Weakening: per-key direction

@Suite struct HostWeakeningDirectionTests {
    /// Two revisions of one resource: the weakening the second is, as the plan holds it, and
    /// the pass that records it held and changes nothing.
    func held(_ root: String, _ kind: String, from old: String, to new: String) async throws -> PlannedRemediation? {
        let registry = Registry([HostAdapter.definition()])
        let previous = try hostState(root: root, resource(kind, "r", old))
        let current = try hostState(root: root, resource(kind, "r", new))
        let weakened = Weakening.compare(previous: previous, current: current, registry: registry)
        let reconciler = Reconciler(registry: registry)
        let plan = try await reconciler.plan(current, weakened: weakened)
        let before = try snapshot(root)
        let outcome = await reconciler.apply(plan, state: current, audit: RecordingSink())
        let remediation = plan.remediations.first
        if remediation?.decision == .held {
            #expect(try snapshot(root) == before, "a held weakening changes nothing")
            #expect(outcome.entries.first?.record.decision == .held
                    && outcome.entries.first?.record.commitMessage.contains("Bulwark-Decision: held") == true,
                    "\(outcome.entries.map { $0.record.commitMessage })")
        } else {
            #expect(!outcome.entries.isEmpty && outcome.entries.allSatisfy { $0.record.result == .verified },
                    "\(outcome.entries.map { "\($0.record.decision) \($0.record.error ?? "")" })")
        }
        return remediation
    }

    @Test func sysctlHardeningMovedToAWeakerValueIsHeldWhereverItStarted() async throws {
        #expect(HostWeakening.sysctl("kernel.yama.ptrace_scope", "3", "0") != nil)
        #expect(HostWeakening.sysctl("kernel.yama.ptrace_scope", "3", "2") != nil)
        #expect(HostWeakening.sysctl("kernel.yama.ptrace_scope", "1", "3") == nil)
        #expect(HostWeakening.sysctl("kernel.unprivileged_bpf_disabled", "1", "2") != nil)
        #expect(HostWeakening.sysctl("kernel.unprivileged_bpf_disabled", "2", "1") == nil)
        #expect(HostWeakening.sysctl("fs.suid_dumpable", "2", "1") != nil)
        #expect(HostWeakening.sysctl("net.ipv4.conf.eth0.rp_filter", "1", "2") != nil)
        #expect(HostWeakening.sysctl("net.ipv4.conf.all.accept_redirects", "0", "1") != nil)
        #expect(HostWeakening.sysctl("net.ipv6.conf.all.accept_source_route", "-1", "0") != nil)
        #expect(HostWeakening.sysctl("net.ipv4.tcp_syncookies", "1", "0") != nil)
        #expect(HostWeakening.sysctl("vm.swappiness", "60", "10") == nil)
        try await withTemporaryDirectory { root in
            try write(root + "/proc/sys/kernel/yama/ptrace_scope", "3\n")
            try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
            let remediation = try await held(root, "Sysctl", from: "kernel.yama.ptrace_scope: \"3\"", to: "kernel.yama.ptrace_scope: \"0\"")
            #expect(remediation?.decision == .held && remediation?.reason?.contains("kernel.yama.ptrace_scope: 3 → 0") == true,
                    "\(String(describing: remediation?.decision)) \(remediation?.reason ?? "")")
        }
    }

    @Test func sysctlHardeningMadeStricterIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/proc/sys/kernel/yama/ptrace_scope", "1\n")
            try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
            let remediation = try await held(root, "Sysctl", from: "kernel.yama.ptrace_scope: \"1\"", to: "kernel.yama.ptrace_scope: \"2\"")
            #expect(remediation?.decision == .applied, "\(remediation?.reason ?? "")")
            #expect(try read(root + "/proc/sys/kernel/yama/ptrace_scope") == "2\n")
        }
    }

    @Test func loginDefsMadeUnlimitedIsHeld() async throws {
        #expect(HostWeakening.loginDefs("PASS_MAX_DAYS", "90", "-1") != nil)
        #expect(HostWeakening.loginDefs("LOGIN_TIMEOUT", "60", "0") != nil)
        #expect(HostWeakening.loginDefs("PASS_MAX_DAYS", "-1", "90") == nil)
        #expect(HostWeakening.loginDefs("LOGIN_TIMEOUT", "0", "60") == nil)
        #expect(HostWeakening.loginDefs("PASS_MAX_DAYS", "90", "365") != nil)
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS 90\nLOGIN_TIMEOUT 60\n")
            for (key, old, new) in [("PASS_MAX_DAYS", "90", "-1"), ("LOGIN_TIMEOUT", "60", "0")] {
                let remediation = try await held(root, "LoginDefs", from: "\(key): \"\(old)\"", to: "\(key): \"\(new)\"")
                #expect(remediation?.decision == .held && remediation?.reason?.contains("\(key): \(old) → \(new)") == true,
                        "\(String(describing: remediation?.decision)) \(remediation?.reason ?? "")")
            }
        }
    }

    @Test func loginDefsLimitGivenBackIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS -1\nLOGIN_TIMEOUT 0\n")
            let remediation = try await held(root, "LoginDefs", from: "PASS_MAX_DAYS: \"-1\"\nLOGIN_TIMEOUT: \"0\"",
                                             to: "PASS_MAX_DAYS: \"90\"\nLOGIN_TIMEOUT: \"60\"")
            #expect(remediation?.decision == .applied, "\(remediation?.reason ?? "")")
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 90\nLOGIN_TIMEOUT 60\n")
        }
    }
}
