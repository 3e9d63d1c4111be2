@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

@Suite struct SysctlTests {
    /// Lines read as sysctl reads them: blanks are C's (ASCII), so a key followed by a no-break
    /// space is another key, not the parameter; comments, `-` for "ignore errors", `/` for `.`.
    @Test func readsAssignmentsAsSysctlDoes() {
        let text = "\t net/ipv4/ip_forward\t=\t1 \r\n# net.a = 1\n; net.b = 1\n-kernel.x = 32768\t 60999\n"
            + "fs.a\u{A0}= 3\nno equals\n \u{0B}\n=\n"
        let read = SysctlDriver.assignments(text).map { "\($0.key)|\($0.value)|\($0.line)" }
        #expect(read == ["net.ipv4.ip_forward|1|0", "kernel.x|32768 60999|3", "fs.a\u{A0}|3|4", "||7"])
    }

    /// A runtime value as /proc/sys shows it, and a value from a file, in the form they compare
    /// in: C's blanks dropped at the ends, spaces and tabs folded; a line feed inside is no value.
    @Test func foldsValuesAsSysctlReadsThem() {
        #expect(SysctlDriver.runtimeValue("1\n") == "1")
        #expect(SysctlDriver.runtimeValue("32768\t60999\n") == "32768 60999")
        #expect(SysctlDriver.runtimeValue(" \t4096  16384\t\t4194304 \r\n") == "4096 16384 4194304")
        #expect(SysctlDriver.runtimeValue("\u{A0}1\n") == "\u{A0}1", "a no-break space is part of the value to sysctl")
        #expect(SysctlDriver.runtimeValue("\n") == nil)
        #expect(SysctlDriver.runtimeValue("1\r\n2\n") == nil)
        #expect(SysctlDriver.normalize("a \t b") == "a b")
        #expect(SysctlDriver.normalize("  ") == nil)
        #expect(SysctlDriver.normalize("") == nil)
        #expect(SysctlDriver.normalize("a\r\nb") == nil, "a line feed after a carriage return is still one")
    }

    /// A VLAN interface's parameter: `eth0.100` is one name, which sysctl writes with a `/`
    /// (`net.ipv4.conf.eth0/100.rp_filter`). As `net.ipv4.conf.eth0.100.rp_filter` Bulwark looked
    /// for proc/sys/…/eth0/100/rp_filter, found none, and the persisted value alone said in sync
    /// while the kernel kept 0. A path-form line (`net/ipv4/conf/eth0.100/rp_filter`) is the
    /// same key.
    @Test func aNameWithADotIsWrittenWithASlashAsSysctlWritesIt() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/proc/sys/net/ipv4/conf/eth0.100/rp_filter", "0\n")
            try write(root + "/etc/sysctl.d/10-vlan.conf", "net/ipv4/conf/eth0.100/rp_filter = 2\n")
            #expect(SysctlDriver.assignments("net/ipv4/conf/eth0.100/rp_filter = 2\n").map(\.key) == ["net.ipv4.conf.eth0/100.rp_filter"])
            let manifests = resource("Sysctl", "s", "net.ipv4.conf.eth0/100.rp_filter: \"1\"")
            let (plan, outcome) = try await reconcile(try hostState(root: root, manifests))
            #expect(plan.remediations.first?.changes.map(\.observed) == ["0"])
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(root + "/proc/sys/net/ipv4/conf/eth0.100/rp_filter") == "1\n")
            #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf").hasSuffix("net.ipv4.conf.eth0/100.rp_filter = 1\n"))
            #expect(try await reconcile(try hostState(root: root, manifests)).0.remediations.isEmpty)
        }
        for bad in ["net/ipv4.x", "net.ipv4./x", "net.ipv4.x/", "net.a//b.c", "net.../x", "net.a/./b", "-net.ipv4.ip_forward"] {
            #expect(!SysctlDriver.isValidKey(bad), "\(bad)")
        }
        #expect(SysctlDriver.isValidKey("net.ipv4.conf.eth0/100.rp_filter") && SysctlDriver.isValidKey("net.ipv4.ip_forward"))
        // A dash inside a name (an interface's) is the name's; only a leading one is sysctl's.
        #expect(SysctlDriver.isValidKey("net.ipv4.conf.br-lan.rp_filter") && SysctlDriver.isValidKey("net.ipv4.conf.-x.rp_filter"))
    }

    /// A vendor file masked as systemd masks it, and as Bulwark's own message says to (a link
    /// to /dev/null of the same name in etc/sysctl.d): its assignments do not count, and the
    /// device is not read (it failed every parameter of the target). An empty file is no mask
    /// needed: it sets nothing.
    @Test func aMaskedFileHidesItsVendorFileAndIsNotRead() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try write(root + "/usr/lib/sysctl.d/50-vendor.conf", "net.ipv4.ip_forward = 1\n")
            try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
            #expect(mknod(root + "/dev/null", S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0)
            try link(root + "/etc/sysctl.d/50-vendor.conf", to: "/dev/null")
            try write(root + "/etc/sysctl.d/40-empty.conf", "")
            try write(root + "/proc/sys/net/ipv4/ip_forward", "0\n")
            try write(root + "/proc/sys/kernel/kptr_restrict", "0\n")
            let manifests = resource("Sysctl", "s", "net.ipv4.ip_forward: \"0\"\nkernel.kptr_restrict: \"2\"")
            let (plan, outcome) = try await reconcile(try hostState(root: root, manifests))
            #expect(plan.failures.isEmpty, "\(plan.failures.map(\.message))")
            #expect(plan.remediations.first?.changes.map(\.property) == ["net.ipv4.ip_forward", "kernel.kptr_restrict"])
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf").hasSuffix("net.ipv4.ip_forward = 0\nkernel.kptr_restrict = 2\n"))
        }
    }

    /// Bulwark's own file with a key twice: the last one holds, so that is the one changed and
    /// the one before commented out (changing the first failed every pass).
    @Test func aKeyTwiceInBulwarksFileIsChangedWhereItHolds() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/sysctl.d/zz-bulwark.conf", "net.ipv4.ip_forward = 1\nkernel.kptr_restrict = 2\nnet.ipv4.ip_forward = 1\n")
            try await expectApplied(root, resource("Sysctl", "s", "net.ipv4.ip_forward: \"0\""))
            #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf")
                    == "# bulwark: superseded by line 3: net.ipv4.ip_forward = 1\nkernel.kptr_restrict = 2\nnet.ipv4.ip_forward = 0\n")
        }
    }

    @Test func followsSysctlPrecedenceAndSetsRuntime() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/usr/lib/sysctl.d/50-default.conf", "net.ipv4.ip_forward = 0\nkernel.yama.ptrace_scope = 1\n")
            try write(root + "/etc/sysctl.d/60-custom.conf", "net/ipv4/ip_forward=1\n")
            try write(root + "/etc/sysctl.conf", "# local\nkernel.yama.ptrace_scope = 0\n")
            try write(root + "/proc/sys/net/ipv4/ip_forward", "1\n")
            try write(root + "/proc/sys/kernel/yama/ptrace_scope", "1\n")
            let state = try hostState(root: root, resource("Sysctl", "k", "net.ipv4.ip_forward: 0\nkernel.yama.ptrace_scope: 1"))
            let (plan, outcome) = try await reconcile(state)
            // ip_forward: runtime 1; ptrace_scope: runtime right, but etc/sysctl.conf (applied last) says 0.
            #expect(plan.remediations.first?.changes.map(\.observed) == ["1", "0"])
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/proc/sys/net/ipv4/ip_forward") == "0\n")
            let owned = try read(root + "/etc/sysctl.d/zz-bulwark.conf")
            #expect(owned.contains("net.ipv4.ip_forward = 0\n") && owned.contains("kernel.yama.ptrace_scope = 1\n"))
            #expect(try read(root + "/etc/sysctl.conf")
                    == "# local\n# bulwark: superseded by etc/sysctl.d/zz-bulwark.conf: kernel.yama.ptrace_scope = 0\n")
            #expect(try read(root + "/usr/lib/sysctl.d/50-default.conf") == "net.ipv4.ip_forward = 0\nkernel.yama.ptrace_scope = 1\n")
        }
    }

    @Test func aVendorFileThatWinsFailsTheFixNamingThatFile() async throws {
        try await withTemporaryDirectory { root in
            // A package file named to sort after Bulwark's: Bulwark does not edit /usr, so the fix cannot hold.
            try write(root + "/usr/lib/sysctl.d/zzz-vendor.conf", "fs.suid_dumpable = 2\n")
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            let state = try hostState(root: root, resource("Sysctl", "k", "fs.suid_dumpable: 0"))
            let (_, outcome) = try await reconcile(state)
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            // The error names the file that wins, not just "did not hold".
            #expect(record.error?.contains("fs.suid_dumpable = 2 in /usr/lib/sysctl.d/zzz-vendor.conf is applied after /etc/sysctl.d/zz-bulwark.conf") == true,
                    "\(record.error ?? "")")
        }
    }

    /// The refusal comes before any change: neither Bulwark's file nor the runtime value is
    /// written for a fix the next boot would undo (both were, and the record said failed), and
    /// nothing else is. Also when Bulwark's file is there already, and when a
    /// file in etc/ after it would set a value too (that one a fix comments out; the vendor's wins).
    /// The twin: a vendor file after Bulwark's that sets the desired value does not stop the fix,
    /// nor one before Bulwark's, which it overrides.
    @Test func aVendorFileThatWouldWinIsRefusedBeforeAnyChange() async throws {
        for owned in [nil, "# Managed by Bulwark\nkernel.kptr_restrict = 1\n"] {
            try await withTemporaryDirectory { root in
                try write(root + "/usr/lib/sysctl.d/zzz-vendor.conf", "fs.suid_dumpable = 2\n")
                try write(root + "/etc/sysctl.d/zzzz-local.conf", "fs.suid_dumpable = 1\n")
                try write(root + "/proc/sys/fs/suid_dumpable", "2\n")
                try write(root + "/proc/sys/kernel/kptr_restrict", "1\n")
                if let owned { try write(root + "/etc/sysctl.d/zz-bulwark.conf", owned) }
                let state = try hostState(root: root, resource("Sysctl", "k", "fs.suid_dumpable: 0\nkernel.kptr_restrict: 1"))
                let (_, outcome) = try await reconcile(state)
                let record = try #require(outcome.entries.first?.record)
                #expect(record.result == .failed)
                #expect(record.error?.contains("fs.suid_dumpable = 2 in /usr/lib/sysctl.d/zzz-vendor.conf is applied after") == true,
                        "\(record.error ?? "")")
                #expect(try read(root + "/proc/sys/fs/suid_dumpable") == "2\n", "the runtime value was changed")
                #expect(try read(root + "/etc/sysctl.d/zzzz-local.conf") == "fs.suid_dumpable = 1\n")
                #expect((try? read(root + "/etc/sysctl.d/zz-bulwark.conf")) == owned, "Bulwark's file was written")
            }
        }
        // The last: a file of Bulwark's name in usr/lib, which Bulwark's own hides once written.
        for vendor in ["zzz-vendor.conf", "10-vendor.conf", "zz-bulwark.conf"] {
            try await withTemporaryDirectory { root in
                try write(root + "/usr/lib/sysctl.d/" + vendor, vendor.hasPrefix("zzz") ? "fs.suid_dumpable = 0\n" : "fs.suid_dumpable = 2\n")
                try write(root + "/etc/sysctl.d/zzzz-local.conf", "fs.suid_dumpable = 1\n")
                try write(root + "/proc/sys/fs/suid_dumpable", "2\n")
                let (_, outcome) = try await reconcile(try hostState(root: root, resource("Sysctl", "k", "fs.suid_dumpable: 0")))
                #expect(outcome.verified.count == 1, "\(vendor): \(outcome.entries.map { $0.record.error ?? "" })")
                #expect(try read(root + "/proc/sys/fs/suid_dumpable") == "0\n")
                #expect(try read(root + "/etc/sysctl.d/zzzz-local.conf").hasPrefix("# bulwark: superseded"))
            }
        }
    }

    @Test func refusesKeysThatWouldLeaveProcSys() {
        #expect(throws: ValidationFailure.self) { _ = try hostState(root: "/x", resource("Sysctl", "k", "\"net/../../etc/passwd\": 1")) }
        #expect(throws: ValidationFailure.self) { _ = try hostState(root: "/x", resource("Sysctl", "k", "kernel..x: 1")) }
    }
}

@Suite struct FileModeTests {
    @Test func setsModeAndOwnershipByTheRootsOwnNames() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", "root:x:0:0::/root:/bin/sh\n")
            try write(root + "/etc/group", "root:x:0:\nshadow:x:42:\n")
            try write(root + "/etc/shadow", "root:*:1::::::\n", mode: 0o644)
            let state = try hostState(root: root, resource("FileMode", "f", "path: /etc/shadow\nmode: \"0640\"\ngroup: shadow"))
            let (plan, outcome) = try await reconcile(state)
            let observedGroup = try #require(plan.remediations.first?.changes.first { $0.property == "group" }?.observed)
            #expect(plan.remediations.first?.changes.first?.observed == "0644")
            if isRoot {
                #expect(observedGroup == "root")
                #expect(outcome.verified.count == 1)
                #expect(modeAndOwner(root + "/etc/shadow").gid == 42)
            } else {
                #expect(outcome.failed.count == 1, "changing the group needs root")
            }
            #expect(modeAndOwner(root + "/etc/shadow").mode == (isRoot ? 0o640 : 0o644))
        }
    }

    @Test func neverChangesAModeThroughASymbolicLink() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", "root:x:0:0::/root:/bin/sh\n")
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/real", withDestinationPath: "/etc")
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/up", withDestinationPath: "../..")
            try write(root + "/data/file", "x")
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/inside", withDestinationPath: "../data")
            // Absolute, escaping and in-root links alike: that resource fails, the revision is not refused.
            for path in ["/etc/real/shadow", "/etc/up/tmp", "/etc/inside/file"] {
                let state = try hostState(root: root, resource("FileMode", "f", "path: \(path)\nmode: \"0600\""))
                let (plan, outcome) = try await reconcile(state)
                #expect(plan.failures.count == 1 && outcome.entries.map(\.record.decision) == [.unobserved])
                #expect(plan.failures.first?.message.contains("is a symbolic link; Bulwark never writes through a symbolic link") == true,
                        "\(plan.failures)")
            }
            #expect(modeAndOwner(root + "/data/file").mode == 0o644)
            // The real path is changed.
            let state = try hostState(root: root, resource("FileMode", "f", "path: /data/file\nmode: \"0600\""))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1)
            #expect(modeAndOwner(root + "/data/file").mode == 0o600)
            #expect(throws: ValidationFailure.self) { _ = try hostState(root: root, resource("FileMode", "f", "path: /etc/../x\nmode: \"0600\"")) }
            #expect(throws: ValidationFailure.self) { _ = try hostState(root: root, resource("FileMode", "f", "path: etc/x\nmode: \"0600\"")) }
            #expect(throws: ValidationFailure.self) { _ = try hostState(root: root, resource("FileMode", "f", "path: /etc/x\nmode: \"0999\"")) }
        }
    }
}

/// A fix replaces a file by a new one (atomic rename); the new one starts without the old
/// one's extended attributes, so a security module's label (`security.*`: an etc/shadow
/// labelled shadow_t became etc_t) or a POSIX ACL was lost without a word. They are carried
/// over; the fix still verifies and reads back.
@Suite struct ExtendedAttributeTests {
    func attributes(_ path: String) throws -> String {
        try run("/usr/bin/python3", ["-c", "import os, sys; print(sorted((n, os.getxattr(sys.argv[1], n).decode()) "
                                     + "for n in os.listxattr(sys.argv[1])))", path]).stdout
    }

    @Test func aFixKeepsTheFilesLabelAndAttributes() async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            let path = root + "/etc/login.defs"
            try write(path, "PASS_MAX_DAYS 99999\n", mode: 0o640)
            let set = try run("/usr/bin/python3", ["-c", "import os, sys; os.setxattr(sys.argv[1], 'security.bulwarktest', b'shadow_t'); "
                                                   + "os.setxattr(sys.argv[1], 'user.owner', b'platform')", path])
            #expect(set.status == 0, "\(set.stderr)")
            let before = try attributes(path)
            #expect(before.contains("security.bulwarktest") && before.contains("user.owner"), "\(before)")
            try await expectApplied(root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 90"))
            #expect(try read(path) == "PASS_MAX_DAYS 90\n")
            #expect(try attributes(path) == before)
            #expect(modeAndOwner(path).mode == 0o640)
        }
    }
}

@Suite struct LoginDefsTests {
    /// The line shadow-utils reads (the last) is edited in place; the earlier one, which PAM
    /// reads (the first), is commented out, so that both read the one value.
    @Test func editsTheLineShadowUtilsReadsAndCommentsOutTheOthers() async throws {
        try await withTemporaryDirectory { root in
            let text = "# login.defs\nPASS_MAX_DAYS\t10\nMAIL_DIR /var/mail\nPASS_MAX_DAYS   99999\nUMASK 022\n"
            try write(root + "/etc/login.defs", text)
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 365\nUMASK: \"027\"\nPASS_WARN_AGE: 7"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.map(\.observed)
                    == ["'99999' (line 4) to shadow-utils, '10' (line 2) to PAM; 2 lines set PASS_MAX_DAYS", "022", nil])
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/etc/login.defs")
                    == "# login.defs\n# bulwark: PASS_MAX_DAYS is set once, on line 4: PASS_MAX_DAYS\t10\nMAIL_DIR /var/mail\n"
                    + "PASS_MAX_DAYS   365\nUMASK 027\nPASS_WARN_AGE\t7\n")
        }
    }

    /// Three readers, three answers, and Bulwark said in sync: shadow-utils reads `UMASK 27`
    /// as decimal (033) and `90 # CIS` as no number; PAM reads the first `umask=022` (any
    /// case, `=`, up to `#`). Now each key is in sync only where both read the desired value
    /// from one line; a mode is written with a leading 0 (`0227`, never `227`, decimal to
    /// shadow-utils). A clean file stays in sync.
    @Test func aKeyIsInSyncOnlyWhereShadowUtilsAndPAMReadTheSameValue() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/login.defs", "umask=022\nUMASK 27\nPASS_MAX_DAYS 90 # CIS\nENCRYPT_METHOD SHA512\nHOME_MODE \"0750\"\n")
            let manifests = resource("LoginDefs", "l", "UMASK: \"027\"\nPASS_MAX_DAYS: 90\nENCRYPT_METHOD: SHA512\nHOME_MODE: \"0750\"")
            let (plan, outcome) = try await reconcile(try hostState(root: root, manifests))
            let changes = try #require(plan.remediations.first?.changes)
            #expect(changes.map(\.property) == ["UMASK", "PASS_MAX_DAYS", "HOME_MODE"], "\(changes)")
            #expect(changes.first?.observed == "'27' (line 2) to shadow-utils, '022' (line 1) to PAM; 2 lines set UMASK")
            #expect(changes.last?.observed == "'0750' (line 5) to shadow-utils, '\"0750\"' (line 5) to PAM")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(root + "/etc/login.defs") == "# bulwark: UMASK is set once, on line 2: umask=022\nUMASK 027\n"
                    + "PASS_MAX_DAYS 90\nENCRYPT_METHOD SHA512\nHOME_MODE 0750\n")
            #expect(LoginDefsDriver.shadowMode("27") == "033" && LoginDefsDriver.shadowMode("0x17") == "027"
                    && LoginDefsDriver.shadowMode("027") == "027" && LoginDefsDriver.shadowMode("0") == "000")
            #expect(LoginDefsDriver.normalize("UMASK", "227") == "0227" && LoginDefsDriver.normalize("UMASK", "27") == "027")

            try write(root + "/etc/login.defs", "# defaults\nUMASK\t\t027\nPASS_MAX_DAYS\t90\nENCRYPT_METHOD SHA512\nHOME_MODE 0750\n")
            let clean = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(try hostState(root: root, manifests))
            #expect(clean.remediations.isEmpty && clean.inSync.count == 1)
        }
    }
}

@Suite struct UserAccountTests {
    let passwd = "root:x:0:0:root:/root:/bin/bash\nguest:x:1001:1001:Guest:/home/guest:/bin/bash\n"
    let shadow = "root:$y$secret-root-hash:19700:0:99999:7:::\nguest:$y$secret-guest-hash:19700:0:99999:7:::\n"

    @Test func locksKeepingEveryOtherByteAndNeverReadsTheHashOut() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            try write(root + "/usr/sbin/nologin", "#!/bin/true\n", mode: 0o755)  // the account guard wants the shell to exist
            let state = try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true\nshell: /usr/sbin/nologin\nexpires: 2024-01-02"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.map(\.observed) == ["false", "/bin/bash", "never"])
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .verified)
            #expect(try read(root + "/etc/passwd") == passwd.replacingOccurrences(of: "/home/guest:/bin/bash", with: "/home/guest:/usr/sbin/nologin"))
            #expect(try read(root + "/etc/shadow")
                    == "root:$y$secret-root-hash:19700:0:99999:7:::\nguest:!$y$secret-guest-hash:19700:0:99999:7::19724:\n")
            #expect(modeAndOwner(root + "/etc/shadow").mode == 0o640)
            let everything = record.commitMessage + String(decoding: record.json(), as: UTF8.self)
            #expect(!everything.contains("secret"))
        }
    }

    @Test func anAbsentAccountHasNothingToFix() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow)
            let state = try hostState(root: root, resource("UserAccount", "g", "name: nosuch\nlocked: true"))
            let (plan, _) = try await reconcile(state)
            #expect(!plan.hasDrift && plan.failures.isEmpty)
        }
    }
}
