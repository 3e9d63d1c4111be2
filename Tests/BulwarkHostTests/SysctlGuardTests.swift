@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

// MARK: - Sysctl

@Suite struct SysctlGuardTests {
    /// A host whose runtime parameters are files under proc/sys, with eth0's global IPv6 address.
    func host(_ root: String) throws {
        try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
        for (key, value) in ["kernel/core_pattern": "core", "kernel/modprobe": "/sbin/modprobe",
                             "kernel/unprivileged_bpf_disabled": "2", "net/ipv6/conf/all/disable_ipv6": "0",
                             "net/ipv6/conf/eth0/disable_ipv6": "0", "net/ipv6/conf/eth1/disable_ipv6": "0",
                             "net/ipv6/conf/default/disable_ipv6": "0", "kernel/yama/ptrace_scope": "1"] {
            try write(root + "/proc/sys/" + key, value + "\n")
        }
        try write(root + "/proc/net/if_inet6", """
            00000000000000000000000000000001 01 80 10 80       lo
            20010db8000000000000000000000001 02 40 00 80     eth0
            fe800000000000000000000000000002 03 40 20 80     eth1

            """)
        try write(root + "/usr/lib/systemd/systemd-coredump", "#!/bin/true\n", mode: 0o755)
        try write(root + "/bin/sh", "#!/bin/true\n", mode: 0o755)
        try write(root + "/bin/true", "#!/bin/true\n", mode: 0o755)
        try write(root + "/tmp/evil", "#!/bin/true\n", mode: 0o755)
        chmod(root + "/tmp", 0o1777)
    }

    @Test func aProgramTheKernelRunsAsRootFromAPlaceOthersCanWriteIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("Sysctl", "s", "kernel.core_pattern: \"|/bin/sh -c /tmp/evil\""),
                                    reason: "would have the kernel run /bin/sh as root with every capability at every crash")
            try await expectBlocked(root, resource("Sysctl", "s", "kernel.core_pattern: \"|/tmp/evil %p\""),
                                    reason: "group or others can write /tmp")
            // A helper that runs a program its arguments name, and a launcher of the one list ConfigFile's commands use too.
            try await expectBlocked(root, resource("Sysctl", "s", "kernel.core_pattern: \"|/usr/bin/setarch x86_64 /bin/sh -c /tmp/evil\""),
                                    reason: "would have the kernel run /bin/sh through /usr/bin/setarch as root")
            try await expectBlocked(root, resource("Sysctl", "s", "kernel.core_pattern: \"|/usr/bin/strace %p\""),
                                    reason: "strace runs whatever its arguments")
            try await expectBlocked(root, resource("Sysctl", "s", "kernel.modprobe: /tmp/evil"), reason: "group or others can write /tmp")
            try await expectBlocked(root, resource("Sysctl", "s", "kernel.modprobe: /sbin/nothing-here"), reason: "does not exist")
        }
    }

    @Test func aRootOwnedCoreHandlerAndModprobeDisabledAreApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectApplied(root, resource("Sysctl", "s", "kernel.core_pattern: \"|/usr/lib/systemd/systemd-coredump %P %u %g\""))
            try await expectApplied(root, resource("Sysctl", "m", "kernel.modprobe: /bin/true"))
            try await expectApplied(root, resource("Sysctl", "c", "kernel.core_pattern: \"/var/crash/core.%p\""))
            #expect(try read(root + "/proc/sys/kernel/modprobe") == "/bin/true\n")
        }
    }

    @Test func aDefenceSwitchedOffIsBlockedAndASaferValueIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("Sysctl", "s", "kernel.unprivileged_bpf_disabled: \"0\""),
                                    reason: "kernel.unprivileged_bpf_disabled = 0 would let every user load BPF programs")
            try await expectApplied(root, resource("Sysctl", "s", "kernel.unprivileged_bpf_disabled: \"1\""))
            #expect(try read(root + "/proc/sys/kernel/unprivileged_bpf_disabled") == "1\n")
        }
    }

    /// Review H3: a floor written in another form the kernel reads (`0x0`, `00`, `-0`, `+0`,
    /// a second word after it) is the floor: blocked and recorded, the host unchanged. The twins,
    /// strong values in hexadecimal and octal, and `disable_ipv6` `0x0` (IPv6 kept on), are applied.
    @Test func aDefenceSwitchedOffInHexOrOctalIsBlockedAndAHexStrongValueApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try write(root + "/proc/sys/kernel/randomize_va_space", "2\n")
            try write(root + "/proc/sys/fs/suid_dumpable", "0\n")
            let aslr = "would turn address space randomization off"
            for (spec, reason) in [
                ("kernel.randomize_va_space: \"0x0\"", "kernel.randomize_va_space = 0x0, which the kernel reads as 0, \(aslr)"),
                ("kernel.randomize_va_space: \"00\"", "kernel.randomize_va_space = 00, which the kernel reads as 0, \(aslr)"),
                ("kernel.randomize_va_space: \"-0\"", "kernel.randomize_va_space = -0, which the kernel reads as 0, \(aslr)"),
                ("kernel.randomize_va_space: \"+0\"", "which the kernel reads as 0, \(aslr)"),
                ("kernel.randomize_va_space: \"0x0 2\"", "which the kernel reads as 0, \(aslr)"),
                ("kernel.unprivileged_bpf_disabled: \"0X0\"", "would let every user load BPF programs"),
                ("fs.suid_dumpable: \"0x1\"", "fs.suid_dumpable = 0x1, which the kernel reads as 1, would let users make setuid programs dump core"),
            ] {
                try await expectBlocked(root, resource("Sysctl", "s", spec), reason: reason)
            }
            try await expectApplied(root, resource("Sysctl", "s", """
                kernel.randomize_va_space: "0x2"
                fs.suid_dumpable: "00"
                net.ipv6.conf.eth0.disable_ipv6: "0x0"
                """))
            #expect(try read(root + "/proc/sys/kernel/randomize_va_space") == "0x2\n")
            #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf").contains("\nnet.ipv6.conf.eth0.disable_ipv6 = 0x0\n"))
        }
    }

    @Test func ipv6DisabledWhereAGlobalAddressIsInUseIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("Sysctl", "s", "net.ipv6.conf.all.disable_ipv6: \"1\""),
                                    reason: "would take IPv6 off eth0, which has the address 2001:db8:0:0:0:0:0:1 now")
            try await expectBlocked(root, resource("Sysctl", "s", "net.ipv6.conf.eth0.disable_ipv6: \"1\""), reason: "cut off")
            // Interfaces made later, and one with only a link-local address: applied.
            try await expectApplied(root, resource("Sysctl", "s", "net.ipv6.conf.default.disable_ipv6: \"1\"\nnet.ipv6.conf.eth1.disable_ipv6: \"1\""))
            #expect(try read(root + "/proc/sys/net/ipv6/conf/eth1/disable_ipv6") == "1\n")
        }
    }
}
