import BulwarkTestSupport
import Foundation
import Testing

/// Outside review: a Sysctl policy that takes the host down (`fs.file-max: 16`,
/// `kernel.pid_max: 301`, `kernel.panic_on_oops: 1`, `kernel.modules_disabled: 1`, …) went
/// through `bulwark apply`: persisted, written at runtime, recorded verified, exit 0. Through
/// the binary, against a real origin and read back with git: what starves the host is blocked
/// and recorded `blocked`; what turns a fault into a crash, or cannot be undone before a reboot,
/// is held for a second person, as an edit and as a value no earlier revision set, and goes
/// through once someone else approves it; the legitimate twin of each goes through.
@Suite struct SysctlAvailabilityCommandTests {
    /// Each recorded resource's decisions and ids, newest first, from the audit branch.
    static func decisions(_ s: Scenario) throws -> [String: [(decision: String, id: String)]] {
        let log = try git("--git-dir", s.origin, "log",
                          "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)|%(trailers:key=Bulwark-Id,valueonly,separator=)",
                          "bulwark/audit")
        var result: [String: [(decision: String, id: String)]] = [:]
        for line in log.split(separator: "\n") {
            let parts = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, !parts[0].isEmpty else { continue }
            result[parts[0], default: []].append((parts[1], parts[2]))
        }
        return result
    }

    static func sysctl(_ name: String, _ spec: String) -> String {
        "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: \(name)}\nspec: {\(spec)}\n"
    }

    /// The kernel's defaults under the sandbox host's proc/sys.
    static func kernelDefaults(_ s: Scenario) throws {
        for (key, value) in ["kernel/panic_on_oops": "0", "kernel/panic_on_warn": "0", "vm/panic_on_oom": "0",
                             "kernel/modules_disabled": "0", "kernel/panic": "0", "fs/file-max": "9223372036854775807",
                             "kernel/pid_max": "32768", "vm/max_map_count": "65530", "kernel/threads-max": "126000",
                             "vm/min_free_kbytes": "67584", "vm/nr_hugepages": "0", "vm/overcommit_memory": "0",
                             "vm/overcommit_ratio": "50", "net/ipv4/conf/all/arp_ignore": "0",
                             "net/netfilter/nf_conntrack_max": "65536", "fs/nr_open": "1048576"] {
            try write(s.host + "/proc/sys/" + key, value + "\n")
        }
        try write(s.host + "/proc/meminfo", "MemTotal:       16777216 kB\nSwapTotal:             0 kB\nCommitted_AS:    4194304 kB\nHugepagesize:       2048 kB\n")
    }

    @Test func aCrashInsteadOfARecoveryIsHeldForASecondPersonAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            try Self.kernelDefaults(s)

            // The twin: a reboot 10 s after a panic, oops handled as the kernel does by default.
            try s.commitPolicy("desired-state/hosts/crash.yaml", Self.sysctl("oops", "kernel.panic_on_oops: 0, kernel.panic: 10"))
            let first = try s.run("apply")
            #expect(first.status == 0 && !first.stdout.contains("weakens the policy"), "\(first.stdout)\n\(first.stderr)")
            #expect(try Self.decisions(s)["Sysctl/oops"]?.first?.decision == "applied")
            #expect(try read(s.host + "/proc/sys/kernel/panic") == "10\n")

            // Edited to crash at an oops and to hang at a panic; new values that crash or cannot be undone.
            try s.commitPolicy("desired-state/hosts/crash.yaml", Self.sysctl("oops", "kernel.panic_on_oops: 1, kernel.panic: 0") + "---\n"
                               + Self.sysctl("crash", "kernel.panic_on_warn: 1, vm.panic_on_oom: 2, kernel.modules_disabled: 1"))
            let before = try s.snapshot()
            let held = try s.run("apply")
            for why in ["kernel.panic_on_oops: 0 → 1 (would crash the host at any kernel oops instead of killing the one process that hit it)",
                        "kernel.panic: 10 → 0 (would leave a host that panics hung until someone power-cycles it",
                        "kernel.panic_on_warn: (new) (would crash the host at any kernel warning",
                        "vm.panic_on_oom: (new) (would crash the host when memory runs out",
                        "kernel.modules_disabled: (new) (would stop every kernel module from loading"] {
                #expect(held.stdout.contains(why), "\(why)\n\(held.stdout)\n\(held.stderr)")
            }
            let recorded = try Self.decisions(s)
            #expect(recorded["Sysctl/oops"]?.first?.decision == "held", "\(recorded["Sysctl/oops"] ?? [])")
            #expect(recorded["Sysctl/crash"]?.first?.decision == "held", "\(recorded["Sysctl/crash"] ?? [])")
            #expect(try s.snapshot() == before, "nothing held is written")

            // Someone other than the author approves the edit: it goes through, the rest stays held.
            let id = try #require(recorded["Sysctl/oops"]?.first?.id)
            let approval = try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state, "--reason", "CHG-7"],
                                   environment: ["GIT_AUTHOR_NAME": "Sam Security", "GIT_AUTHOR_EMAIL": "sam@example.org"])
            #expect(approval.status == 0, "\(approval.stderr)")
            let approved = try s.run("apply")
            #expect(approved.status == 0, "\(approved.stdout)\n\(approved.stderr)")
            let after = try Self.decisions(s)
            #expect(after["Sysctl/oops"]?.first?.decision == "applied", "\(after["Sysctl/oops"] ?? [])\n\(approved.stdout)")
            #expect(after["Sysctl/crash"]?.first?.decision == "held")
            #expect(try read(s.host + "/proc/sys/kernel/panic_on_oops") == "1\n")
            #expect(try read(s.host + "/proc/sys/kernel/panic") == "0\n")
            #expect(try read(s.host + "/proc/sys/kernel/modules_disabled") == "0\n")

            // Back to recovering: no second person needed.
            try s.commitPolicy("desired-state/hosts/crash.yaml", Self.sysctl("oops", "kernel.panic_on_oops: 0, kernel.panic: 10"))
            let back = try s.run("apply")
            #expect(back.status == 0 && !back.stdout.contains("kernel.panic_on_oops: 1 → 0"), "\(back.stdout)\n\(back.stderr)")
            #expect(try Self.decisions(s)["Sysctl/oops"]?.first?.decision == "applied")
            #expect(try read(s.host + "/proc/sys/kernel/panic_on_oops") == "0\n")
        }
    }

    @Test func aPolicyThatStarvesTheHostIsBlockedAndRecordedAndItsTwinApplied() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            try Self.kernelDefaults(s)
            let before = try s.snapshot()

            try s.commitPolicy("desired-state/hosts/limits.yaml", Self.sysctl("limits", "fs.file-max: 16, kernel.pid_max: 301, vm.max_map_count: 1"))
            let blocked = try s.run("apply")
            #expect(blocked.stdout.contains("fs.file-max = 16 would let the whole host hold at most 16 open files"), "\(blocked.stdout)\n\(blocked.stderr)")
            #expect(try Self.decisions(s)["Sysctl/limits"]?.first?.decision == "blocked")
            #expect(try s.snapshot() == before, "nothing blocked is written")

            // The review's whole resource, in place of that one: nothing of it reaches the host.
            try s.commitPolicy("desired-state/hosts/limits.yaml", Self.sysctl("review", """
                vm.min_free_kbytes: 67108864, fs.file-max: 16, kernel.pid_max: 301, vm.nr_hugepages: 1000000,
                kernel.modules_disabled: 1, kernel.panic_on_oops: 1, vm.panic_on_oom: 1, kernel.panic_on_warn: 1,
                vm.overcommit_memory: 2, vm.overcommit_ratio: 0, kernel.threads-max: 20, vm.max_map_count: 1,
                net.ipv4.conf.all.arp_ignore: 8, net.netfilter.nf_conntrack_max: 1
                """))
            let review = try s.run("apply")
            let decision = try Self.decisions(s)["Sysctl/review"]?.first?.decision
            // Blocked first (a block outranks the weakenings it holds too), with the first reason the guard finds.
            #expect(decision == "blocked", "\(decision ?? "none")\n\(review.stdout)\n\(review.stderr)")
            #expect(review.stdout.contains("vm.min_free_kbytes = 67108864 would keep 65536 MiB of the host's 16384 MiB free"), "\(review.stdout)")
            #expect(try s.snapshot() == before, "nothing of the review's resource is written")

            try s.commitPolicy("desired-state/hosts/limits.yaml",
                               Self.sysctl("limits", "fs.file-max: 2097152, kernel.pid_max: 4194304, vm.max_map_count: 262144"))
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            #expect(try Self.decisions(s)["Sysctl/limits"]?.first?.decision == "applied")
            #expect(try read(s.host + "/proc/sys/kernel/pid_max") == "4194304\n")
            #expect(try read(s.host + "/proc/sys/vm/max_map_count") == "262144\n")
        }
    }
}
