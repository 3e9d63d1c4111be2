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

    /// Review H3: a value is judged as the kernel reads it (`0x0`, `00`, `-0` are 0; where only
    /// 0 and 1 are listed, any other number is 1: `ip_forward` 2 forwards). Held through a plan
    /// and recorded; the same strong value in hexadecimal, and a stronger one, are not.
    @Test func sysctlValuesAreJudgedAsTheKernelReadsThem() async throws {
        #expect(HostWeakening.sysctl("kernel.randomize_va_space", "2", "0x0") != nil)
        #expect(HostWeakening.sysctl("kernel.randomize_va_space", "2", "01") != nil)
        #expect(HostWeakening.sysctl("kernel.randomize_va_space", "2", "-0") != nil)
        #expect(HostWeakening.sysctl("kernel.randomize_va_space", "2", "+0") != nil)
        #expect(HostWeakening.sysctl("net.ipv4.ip_forward", "0", "0x1") != nil)
        #expect(HostWeakening.sysctl("net.ipv4.ip_forward", "0", "2") != nil)
        #expect(HostWeakening.sysctl("net.ipv4.conf.all.accept_redirects", "0", "0x1") != nil)
        #expect(HostWeakening.sysctl("kernel.perf_event_paranoid", "2", "-0x1") != nil)
        #expect(HostWeakening.sysctl("kernel.panic_on_oops", "0", "-1") != nil)
        #expect(HostWeakening.sysctl("kernel.panic", "10", "-0") != nil)
        #expect(HostWeakening.sysctlNew("kernel.randomize_va_space", "0x0") != nil)
        #expect(HostWeakening.sysctlNew("net.ipv4.ip_forward", "0x1") != nil)
        // The twins.
        #expect(HostWeakening.sysctl("kernel.randomize_va_space", "2", "0x2") == nil)
        #expect(HostWeakening.sysctl("kernel.randomize_va_space", "1", "0x2") == nil)
        #expect(HostWeakening.sysctl("net.ipv4.ip_forward", "0x1", "00") == nil)
        #expect(HostWeakening.sysctl("kernel.yama.ptrace_scope", "0x1", "1") == nil)
        #expect(HostWeakening.sysctlNew("kernel.randomize_va_space", "0x2") == nil)
        try await withTemporaryDirectory { root in
            try write(root + "/proc/sys/kernel/randomize_va_space", "2\n")
            try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
            // Held: the floor's guard is not asked, the value being off the floor (1).
            let remediation = try await held(root, "Sysctl", from: "kernel.randomize_va_space: 2", to: "kernel.randomize_va_space: \"0x1\"")
            #expect(remediation?.decision == .held
                    && remediation?.reason?.contains("kernel.randomize_va_space: 2 → 0x1 (moves from 2 to the weaker 0x1, which the kernel reads as 1)") == true,
                    "\(remediation?.reason ?? "none")")
            let twin = try await held(root, "Sysctl", from: "kernel.randomize_va_space: 1", to: "kernel.randomize_va_space: \"0x2\"")
            #expect(twin?.decision == .applied, "\(twin?.reason ?? "none")")
            #expect(try read(root + "/proc/sys/kernel/randomize_va_space") == "0x2\n")
        }
    }

    @Test func sysctlHardeningMovedToAWeakerValueIsHeldWhereverItStarted() async throws {
        #expect(HostWeakening.sysctl("kernel.yama.ptrace_scope", "3", "0") != nil)
        #expect(HostWeakening.sysctl("kernel.yama.ptrace_scope", "3", "2") != nil)
        // 3 is the strongest, and cannot be undone before a reboot: held as drastic, not as weaker.
        #expect(HostWeakening.sysctl("kernel.yama.ptrace_scope", "1", "3")?.contains("cannot be set back without a reboot") == true)
        #expect(HostWeakening.sysctl("kernel.yama.ptrace_scope", "1", "2") == nil)
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

    /// Review: `ptrace_scope` 3 (no ptrace for anyone until a reboot), `vm.mmap_min_addr` 0,
    /// `kernel.sysrq` 1 and `dev.tty.ldisc_autoload` 1 were applied unheld. Each is held and
    /// recorded, the host unchanged; the opposite moves go through.
    @Test func ptraceLockedAndLowAddressesSysrqAndLineDisciplinesOpenedAreHeld() async throws {
        #expect(HostWeakening.sysctl("vm.mmap_min_addr", "65536", "0")?.contains("NULL pointer dereference") == true)
        #expect(HostWeakening.sysctl("vm.mmap_min_addr", "4096", "65536") == nil)
        #expect(HostWeakening.sysctl("kernel.sysrq", "176", "1") != nil && HostWeakening.sysctl("kernel.sysrq", "0", "16") != nil)
        #expect(HostWeakening.sysctl("kernel.sysrq", "1", "438") == nil && HostWeakening.sysctl("kernel.sysrq", "438", "0") == nil)
        #expect(HostWeakening.sysctlNew("vm.mmap_min_addr", "0") != nil && HostWeakening.sysctlNew("vm.mmap_min_addr", "65536") == nil)
        #expect(HostWeakening.sysctlNew("kernel.sysrq", "1") != nil && HostWeakening.sysctlNew("kernel.sysrq", "176") == nil)
        #expect(HostWeakening.sysctlNew("dev.tty.ldisc_autoload", "1") != nil && HostWeakening.sysctlNew("dev.tty.ldisc_autoload", "0") == nil)
        #expect(HostWeakening.sysctlNew("kernel.yama.ptrace_scope", "3") != nil && HostWeakening.sysctlNew("kernel.yama.ptrace_scope", "2") == nil)
        try await withTemporaryDirectory { root in
            for (key, value) in ["kernel/yama/ptrace_scope": "1", "vm/mmap_min_addr": "65536", "kernel/sysrq": "0",
                                 "dev/tty/ldisc_autoload": "0"] {
                try write(root + "/proc/sys/" + key, value + "\n")
            }
            try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
            for (key, old, new, why) in [("kernel.yama.ptrace_scope", "1", "3", "cannot be set back without a reboot"),
                                         ("vm.mmap_min_addr", "65536", "0", "lowers the lowest address a program may map"),
                                         ("kernel.sysrq", "0", "1", "enables more magic SysRq functions"),
                                         ("dev.tty.ldisc_autoload", "0", "1", "moves from 0 to the weaker 1")] {
                let remediation = try await held(root, "Sysctl", from: "\(key): \"\(old)\"", to: "\(key): \"\(new)\"")
                #expect(remediation?.decision == .held && remediation?.reason?.contains(why) == true,
                        "\(key): \(String(describing: remediation?.decision)) \(remediation?.reason ?? "")")
            }
            let twin = try await held(root, "Sysctl", from: "vm.mmap_min_addr: \"4096\"\nkernel.sysrq: \"1\"\ndev.tty.ldisc_autoload: \"1\"",
                                      to: "vm.mmap_min_addr: \"65536\"\nkernel.sysrq: \"176\"\ndev.tty.ldisc_autoload: \"0\"")
            #expect(twin?.decision == .applied, "\(twin?.reason ?? "")")
            #expect(try read(root + "/proc/sys/kernel/sysrq") == "176\n")
        }
    }

    /// Review: `ENCRYPT_METHOD sha512` (shadow-utils compares exactly and hashes with DES) and
    /// `NONE` were applied unheld, and `HOME_MODE 0777` too. Held and recorded; an exact
    /// spelling that is as strong, and a stricter HOME_MODE, go through.
    @Test func loginDefsUnknownHashMethodOrOpenHomesAreHeld() async throws {
        #expect(HostWeakening.loginDefs("ENCRYPT_METHOD", "SHA512", "sha512")?.contains("hash new passwords with DES") == true)
        #expect(HostWeakening.loginDefs("ENCRYPT_METHOD", "SHA512", "NONE") != nil)
        #expect(HostWeakening.loginDefsNew("ENCRYPT_METHOD", "yescrypt") != nil)
        #expect(HostWeakening.loginDefs("ENCRYPT_METHOD", "SHA512", "BCRYPT") == nil)
        #expect(HostWeakening.loginDefs("HOME_MODE", "0700", "0777")?.contains("77") == true)
        #expect(HostWeakening.loginDefsNew("HOME_MODE", "0777") != nil && HostWeakening.loginDefsNew("HOME_MODE", "0700") == nil)
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "ENCRYPT_METHOD SHA512\nHOME_MODE 0700\n")
            for (key, old, new) in [("ENCRYPT_METHOD", "SHA512", "sha512"), ("ENCRYPT_METHOD", "SHA512", "NONE"), ("HOME_MODE", "0700", "0777")] {
                let remediation = try await held(root, "LoginDefs", from: "\(key): \"\(old)\"", to: "\(key): \"\(new)\"")
                #expect(remediation?.decision == .held && remediation?.reason?.contains("\(key): \(old) → \(new)") == true,
                        "\(String(describing: remediation?.decision)) \(remediation?.reason ?? "")")
            }
            let twin = try await held(root, "LoginDefs", from: "ENCRYPT_METHOD: \"SHA512\"\nHOME_MODE: \"0750\"",
                                      to: "ENCRYPT_METHOD: \"YESCRYPT\"\nHOME_MODE: \"0700\"")
            #expect(twin?.decision == .applied, "\(twin?.reason ?? "")")
            #expect(try read(root + "/etc/login.defs") == "ENCRYPT_METHOD YESCRYPT\nHOME_MODE 0700\n")
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

    /// A gateway guardrail's direction beyond its list: acting later (`pre_call` → `during_call`:
    /// the model has seen the text a masking guardrail should have hidden), another
    /// implementation or pattern, a pattern turned off, a budget made negative. The opposite
    /// moves (earlier, back on, a lower budget) are not weakenings.
    @Test func aGuardrailActingLaterOrReplacedIsAWeakeningAndTheOppositeIsNot() {
        let weakens = ConfigFileWeakening.weakens
        let pii = "guardrails[guardrail_name=pii].litellm_params"
        #expect(weakens(pii + ".mode", #""pre_call""#, #""during_call""#)?.contains("no longer stops a request before the model") == true)
        #expect(weakens(pii + ".mode", #""during_call""#, #""pre_call""#) == nil)
        #expect(weakens(pii + ".mode", #"["pre_call","post_call"]"#, #""post_call""#) != nil)
        #expect(weakens(pii + ".guardrail", #""litellm_content_filter""#, #""custom_guardrail.noop""#)?.contains("no longer known") == true)
        let patterns = pii + ".patterns"
        #expect(weakens(patterns, #"[{"pattern_name":"email","action":"MASK"}]"#, #"[{"pattern_name":"emailx","action":"MASK"}]"#) != nil)
        #expect(weakens(patterns, #"[{"pattern_name":"email","action":"MASK"}]"#,
                        #"[{"pattern_name":"email","action":"MASK","enabled":false}]"#)?.contains("turns") == true)
        #expect(weakens(patterns, #"[{"pattern_name":"email","action":"MASK","enabled":false}]"#,
                        #"[{"pattern_name":"email","action":"MASK","enabled":true}]"#) == nil)
        let budget = "litellm_settings.upperbound_key_generate_params.max_budget"
        #expect(weakens(budget, "10", "-1")?.contains("lifts the limit") == true)
        #expect(weakens(budget, "100", "50") == nil)
    }

    /// An unsafe switch is off only when false, null or unset: turned to anything else (a quoted
    /// "false" or "no", a number, a list) it is on, as LiteLLM tests it for truth. A guardrail's
    /// `enabled` newly set to anything but true or null is turned off. The opposite moves are not
    /// weakenings.
    @Test func aSwitchTurnedOnOrOffByAValueThatIsNotABooleanIsAWeakening() {
        let weakens = ConfigFileWeakening.weakens
        let logging = "litellm_settings.turn_off_message_logging"
        for value in [#""false""#, #""no""#, "1", "0", "[false]", #"{"a":1}"#] {
            #expect(weakens(logging, "false", value)?.contains("turns \(logging) on") == true, "\(value)")
            #expect(weakens(logging, "null", value) != nil, "\(value)")
            #expect(weakens("litellm_settings", "{}", #"{"turn_off_message_logging":"# + value + "}")?
                .contains("turns litellm_settings.turn_off_message_logging on") == true, "\(value)")
        }
        #expect(weakens(logging, "true", "false") == nil)
        #expect(weakens(logging, "false", "null") == nil)
        #expect(weakens(logging, #""false""#, "false") == nil)
        let patterns = "guardrails[guardrail_name=pii].litellm_params.patterns"
        #expect(weakens(patterns, #"[{"pattern_name":"email","action":"MASK"}]"#,
                        #"[{"pattern_name":"email","action":"MASK","enabled":"no"}]"#)?.contains("turns") == true)
        #expect(weakens(patterns, #"[{"pattern_name":"email","action":"MASK"}]"#,
                        #"[{"pattern_name":"email","action":"MASK","enabled":true}]"#) == nil)
        let pii = "guardrails[guardrail_name=pii].litellm_params.default_on"
        #expect(weakens(pii, "true", #""true""#)?.contains("default_on off") == true)
        #expect(weakens(pii, "false", "true") == nil)
    }

    /// A switch no earlier revision set (a key added to a resource, or a resource added with
    /// it) is judged as if it had been unset: on is a weakening (a re-attack added
    /// `general_settings.disable_spend_logs: true`, applied at once), and so is a guardrail's
    /// `enabled` set to anything but true. Off, and everything else, is not.
    @Test func aSwitchSetWhereNoneWasIsJudgedAsFromUnset() {
        let weakensNew = ConfigFileWeakening.weakensNew
        #expect(weakensNew("general_settings.disable_spend_logs", "true")?.contains("turns general_settings.disable_spend_logs on") == true)
        #expect(weakensNew("general_settings", #"{"allow_insecure_requests":"false"}"#)?
            .contains("turns general_settings.allow_insecure_requests on") == true)
        #expect(weakensNew("guardrails[guardrail_name=pii].litellm_params.enabled", "false")?.contains("turns") == true)
        #expect(weakensNew("general_settings.disable_spend_logs", "false") == nil)
        #expect(weakensNew("guardrails[guardrail_name=pii].litellm_params.enabled", "true") == nil)
        #expect(weakensNew("litellm_settings.num_retries", "3") == nil)
    }
}
