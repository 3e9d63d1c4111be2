@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// Outside review: a Sysctl resource that takes the host down (`fs.file-max: 16`,
/// `kernel.pid_max: 301`, `vm.min_free_kbytes: 67108864`, `vm.overcommit_memory: 2` with
/// `vm.overcommit_ratio: 0`, `arp_ignore: 8`, …) was applied, persisted, written at runtime and
/// recorded verified. Each is now blocked and recorded `blocked`, the host left byte-identical;
/// the legitimate twin of each (a guide's raised limit, a reserve the host can spare) goes through.
@Suite struct SysctlAvailabilityGuardTests {
    static let gib: UInt64 = 1 << 20

    /// A host whose runtime parameters are files under proc/sys holding the kernel's defaults,
    /// and, unless `memoryKiB` is nil, a proc/meminfo saying that much memory (no swap).
    func host(_ root: String, memoryKiB: UInt64? = 16 * gib, committedKiB: UInt64 = 4 * gib,
              runtime extra: [String: String] = [:]) throws {
        try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
        var runtime = [
            "fs/file-max": "9223372036854775807", "fs/nr_open": "1048576", "kernel/pid_max": "32768",
            "kernel/threads-max": "126000", "vm/max_map_count": "65530", "net/netfilter/nf_conntrack_max": "65536",
            "net/nf_conntrack_max": "65536", "vm/min_free_kbytes": "67584", "vm/nr_hugepages": "0",
            "vm/overcommit_memory": "0", "vm/overcommit_ratio": "50", "vm/overcommit_kbytes": "0",
            "net/ipv4/conf/all/arp_ignore": "0", "net/ipv4/conf/eth0/arp_ignore": "0",
            "net/ipv4/conf/default/arp_ignore": "0",
        ]
        runtime.merge(extra) { _, new in new }
        for (key, value) in runtime { try write(root + "/proc/sys/" + key, value + "\n") }
        if let memoryKiB {
            try write(root + "/proc/meminfo", """
                MemTotal:       \(memoryKiB) kB
                MemFree:        \(memoryKiB / 2) kB
                SwapTotal:             0 kB
                Committed_AS:   \(committedKiB) kB
                HugePages_Total:       0
                Hugepagesize:       2048 kB

                """)
        }
    }

    func runtime(_ root: String, _ key: String) throws -> String {
        try read(root + "/proc/sys/" + key)
    }

    @Test func aCountThatWouldStarveTheHostIsBlockedAndRecordedAndARaisedLimitApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            for (spec, reason) in [
                ("fs.file-max: 16", "fs.file-max = 16 would let the whole host hold at most 16 open files"),
                // As the kernel reads it: hexadecimal and octal, the first word only.
                ("fs.file-max: \"0x10\"", "at most 16 open files"),
                ("fs.file-max: \"020 4000000\"", "at most 16 open files"),
                ("fs.nr_open: 64", "pam_limits and systemd setting the usual limit of 1024"),
                ("kernel.pid_max: 301", "would leave at most 301 process ids, which threads use too: once they are taken no new process could start, sshd sessions included"),
                ("kernel.threads-max: 20", "would let at most 20 threads run on the whole host"),
                ("vm.max_map_count: 1", "would let each process map at most 1 memory regions"),
                ("net.netfilter.nf_conntrack_max: 1", "every new connection through the firewall is dropped, SSH included"),
                ("net.nf_conntrack_max: 16", "at most 16 connections"),
            ] {
                try await expectBlocked(root, resource("Sysctl", "s", spec), reason: reason)
            }
            // The twins: limits a guide raises, and no connection tracking limit at all (0).
            try await expectApplied(root, resource("Sysctl", "s", """
                fs.file-max: 2097152
                fs.nr_open: 2097152
                kernel.pid_max: 4194304
                kernel.threads-max: 4096
                vm.max_map_count: 262144
                net.netfilter.nf_conntrack_max: 262144
                net.nf_conntrack_max: 0
                """))
            #expect(try runtime(root, "kernel/pid_max") == "4194304\n")
            #expect(try runtime(root, "vm/max_map_count") == "262144\n")
            #expect(try runtime(root, "net/nf_conntrack_max") == "0\n")
            #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf").contains("\nfs.file-max = 2097152\n"))
        }
    }

    @Test func memoryKeptFromProgramsIsJudgedByTheTargetRootsMeminfo() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("Sysctl", "s", "vm.min_free_kbytes: 67108864"),
                                    reason: "vm.min_free_kbytes = 67108864 would keep 65536 MiB of the host's 16384 MiB free for the kernel alone")
            try await expectBlocked(root, resource("Sysctl", "s", "vm.nr_hugepages: 1000000"),
                                    reason: "would reserve 2000000 MiB in huge pages")
            // 14 GiB of 16 in huge pages, with the 66 MiB kept free already: more than three quarters.
            try await expectBlocked(root, resource("Sysctl", "s", "vm.nr_hugepages: 7168"), reason: "more than three quarters")
            // A number of more than 64 bits the kernel refuses; one just under is judged, never wrapped.
            try await expectBlocked(root, resource("Sysctl", "s", "vm.nr_hugepages: 18446744073709551615"), reason: "would reserve")
            try await expectApplied(root, resource("Sysctl", "s", "vm.min_free_kbytes: 65536\nvm.nr_hugepages: 4096"))
            #expect(try runtime(root, "vm/min_free_kbytes") == "65536\n")
            #expect(try runtime(root, "vm/nr_hugepages") == "4096\n")
        }
        // The same 64 MiB kept free on a host of 1 GiB: more than a twentieth of its memory.
        try await withTemporaryDirectory { root in
            try host(root, memoryKiB: Self.gib, committedKiB: Self.gib / 4)
            try await expectBlocked(root, resource("Sysctl", "s", "vm.min_free_kbytes: 65536"),
                                    reason: "would keep 64 MiB of the host's 1024 MiB free for the kernel alone, more than a twentieth")
        }
        // A root without proc/meminfo: the kernel's own largest reserve, 256 MiB.
        try await withTemporaryDirectory { root in
            try host(root, memoryKiB: nil)
            try await expectBlocked(root, resource("Sysctl", "s", "vm.min_free_kbytes: 524288"), reason: "the root has no proc/meminfo")
            try await expectApplied(root, resource("Sysctl", "s", "vm.min_free_kbytes: 65536"))
        }
    }

    @Test func strictOvercommitIsJudgedAsThePairEnds() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("Sysctl", "s", "vm.overcommit_memory: 2\nvm.overcommit_ratio: 0"),
                                    reason: "vm.overcommit_memory = 2 with vm.overcommit_ratio = 0 would let the host commit at most 0 MiB, less than the 4096 MiB committed now: every allocation would fail, so no new process could start, sshd sessions included")
            // The ratio already on the host.
            try write(root + "/proc/sys/vm/overcommit_ratio", "10\n")
            try await expectBlocked(root, resource("Sysctl", "s", "vm.overcommit_memory: 2"),
                                    reason: "vm.overcommit_memory = 2 while vm.overcommit_ratio is 10 would let the host commit at most 1638 MiB")
            try write(root + "/proc/sys/vm/overcommit_ratio", "50\n")
            // Strict mode already on the host, the ratio lowered.
            try write(root + "/proc/sys/vm/overcommit_memory", "2\n")
            try await expectBlocked(root, resource("Sysctl", "s", "vm.overcommit_ratio: 5"),
                                    reason: "vm.overcommit_ratio = 5 while vm.overcommit_memory is 2")
            try write(root + "/proc/sys/vm/overcommit_memory", "0\n")
            // Two resources of one pass: the second is judged with the first's change, and recorded blocked.
            let state = try hostState(root: root, resource("Sysctl", "mode", "vm.overcommit_memory: 2")
                                      + resource("Sysctl", "ratio", "vm.overcommit_ratio: 1"))
            let (plan, outcome) = try await reconcile(state)
            let blocked = plan.remediations.filter { $0.decision == .blocked }
            #expect(blocked.map(\.binding.resource.name) == ["ratio"], "\(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" })")
            #expect(blocked.first?.reason?.contains("vm.overcommit_memory = 2 with vm.overcommit_ratio = 1 would let the host commit at most 163 MiB") == true,
                    "\(blocked.first?.reason ?? "")")
            #expect(outcome.entries.filter { $0.record.decision == .blocked }.map { $0.record.commitMessage.contains("Bulwark-Decision: blocked") } == [true])
            #expect(try runtime(root, "vm/overcommit_memory") == "2\n")
            #expect(try runtime(root, "vm/overcommit_ratio") == "50\n")
        }
        try await withTemporaryDirectory { root in
            // 12.8 GiB committable (80 % of 16, no swap) against 4 GiB committed: goes through.
            try host(root)
            try await expectApplied(root, resource("Sysctl", "s", "vm.overcommit_memory: 2\nvm.overcommit_ratio: 80"))
            #expect(try runtime(root, "vm/overcommit_memory") == "2\n")
        }
        try await withTemporaryDirectory { root in
            // More committed now (12 GiB) than half of memory: the default ratio would fail every allocation.
            try host(root, committedKiB: 12 * Self.gib)
            try await expectBlocked(root, resource("Sysctl", "s", "vm.overcommit_memory: 2"), reason: "less than the 12288 MiB committed now")
            try await expectApplied(root, resource("Sysctl", "s", "vm.overcommit_memory: 2\nvm.overcommit_ratio: 90"))
        }
    }

    @Test func noArpRepliesAtAllIsBlockedAndStricterArpIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("Sysctl", "s", "net.ipv4.conf.all.arp_ignore: 8"),
                                    reason: "would have every interface answer no ARP request: no machine on its network could reach the host over IPv4, SSH included")
            try await expectBlocked(root, resource("Sysctl", "s", "net.ipv4.conf.eth0.arp_ignore: 8"), reason: "would have eth0 answer no ARP request")
            try await expectApplied(root, resource("Sysctl", "s", "net.ipv4.conf.all.arp_ignore: 2\nnet.ipv4.conf.eth0.arp_ignore: 1"))
            #expect(try runtime(root, "net/ipv4/conf/all/arp_ignore") == "2\n")
        }
    }

    /// Review: settings that cut the host off or starve it (a TTL or hop limit of 1, TCP's memory
    /// and buffers of one page or less, one local port, no terminals, no user namespaces, no
    /// listen queue) were applied. Each is blocked and recorded with why; a guide's value of each
    /// goes through.
    @Test func aSettingThatCutsTheHostOffIsBlockedAndRecordedAndAGuidesValueApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root, runtime: [
                "net/ipv4/ip_default_ttl": "64", "net/ipv6/conf/all/hop_limit": "64", "net/ipv6/conf/default/hop_limit": "64",
                "net/ipv6/conf/eth0/hop_limit": "64", "net/ipv4/tcp_mem": "188706\t251610\t377412",
                "net/ipv4/tcp_rmem": "4096\t131072\t6291456", "net/ipv4/tcp_wmem": "4096\t16384\t4194304",
                "net/ipv4/ip_local_port_range": "32768\t60999", "kernel/pty/max": "4096",
                "user/max_user_namespaces": "63000", "net/core/somaxconn": "4096",
            ])
            for (spec, reason) in [
                ("net.ipv4.ip_default_ttl: 1", "net.ipv4.ip_default_ttl = 1 would let the host's IPv4 packets cross at most 1 routers"),
                ("net.ipv6.conf.all.hop_limit: 1", "would let IPv6 packets from every interface cross at most 1 routers"),
                ("net.ipv6.conf.default.hop_limit: 1", "from every interface made from now on cross at most 1 routers"),
                ("net.ipv4.tcp_mem: \"1 1 1\"", "would let all of TCP on the host use at most 1 pages of memory"),
                ("net.ipv4.tcp_rmem: \"1 1 1\"", "would give each TCP socket a receive buffer of 1 bytes"),
                ("net.ipv4.tcp_wmem: \"4096 16384 1\"", "would give each TCP socket a send buffer of 1 bytes"),
                ("net.ipv4.ip_local_port_range: \"1024 1024\"", "would leave the host 1 local ports for outgoing connections"),
                ("kernel.pty.max: 0", "would let at most 0 terminals be open on the whole host"),
                ("user.max_user_namespaces: 0", "would forbid user namespaces to everyone, root included"),
                ("net.core.somaxconn: 0", "would cap every listening socket's queue at 0 connections"),
            ] {
                try await expectBlocked(root, resource("Sysctl", "s", spec), reason: reason)
            }
            try await expectApplied(root, resource("Sysctl", "s", """
                net.ipv4.ip_default_ttl: 128
                net.ipv6.conf.all.hop_limit: 255
                net.ipv6.conf.default.hop_limit: 64
                net.ipv4.tcp_mem: "94353 125805 188706"
                net.ipv4.tcp_rmem: "4096 87380 16777216"
                net.ipv4.tcp_wmem: "4096 65536 16777216"
                net.ipv4.ip_local_port_range: "1024 65535"
                kernel.pty.max: 8192
                user.max_user_namespaces: 1024
                net.core.somaxconn: 1024
                """))
            #expect(try runtime(root, "net/ipv4/ip_local_port_range") == "1024\t65535\n"
                    || runtime(root, "net/ipv4/ip_local_port_range") == "1024 65535\n")
            #expect(try runtime(root, "user/max_user_namespaces") == "1024\n")
        }
    }

    /// Numbers from the policy, read with checked arithmetic: more than 64 bits is not a count
    /// (the kernel refuses it), nor a negative one or a word; an enormous reserve is blocked.
    @Test func absurdNumbersAreReadWithoutOverflow() async throws {
        #expect(SysctlDriver.kernelCount("0x10") == 16 && SysctlDriver.kernelCount("020") == 16 && SysctlDriver.kernelCount("16\t32") == 16)
        #expect(SysctlDriver.kernelCount("18446744073709551615") == .max)
        // `+5` as the `kstrto*` parsers some parameters use read it, `-0` as proc_dointvec does.
        #expect(SysctlDriver.kernelCount("+5") == 5 && SysctlDriver.kernelCount("-0") == 0 && SysctlDriver.kernelCount("-0x0") == 0)
        for refused in ["18446744073709551616", "99999999999999999999999999", "-1", "1e3", "0x", "09", "", "+", "-", "+-5", "--0"] {
            #expect(SysctlDriver.kernelCount(refused) == nil, "\(refused)")
        }
        try await withTemporaryDirectory { root in
            try host(root)
            let driver = SysctlDriver(), hostRoot = try HostRoot(root)
            func verdict(_ key: String, _ value: String) throws -> GuardVerdict {
                try driver.verdict([PropertyDrift(property: key, desired: value, observed: nil)], root: hostRoot)
            }
            #expect(try verdict("fs.file-max", "99999999999999999999999999") == .allow)
            #expect(try verdict("vm.min_free_kbytes", "18446744073709551615").blockReason != nil)
            let strict = PropertyDrift(property: "vm.overcommit_memory", desired: "2", observed: "0")
            #expect(try driver.verdict([strict, PropertyDrift(property: "vm.overcommit_ratio", desired: "18446744073709551615", observed: "50")],
                                       root: hostRoot) == .allow)
            #expect(try driver.verdict([strict, PropertyDrift(property: "vm.overcommit_kbytes", desired: "18446744073709551615", observed: "0")],
                                       root: hostRoot) == .allow)
            #expect(try verdict("vm.nr_hugepages", "9223372036854775807").blockReason != nil)
        }
    }
}
