import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// Outside review: the FileMode guard kept each administrator's login shell and sudo, su, doas
/// executable, but not what the kernel and the loader need to start them, nor `/bin/sh`:
/// `ld-linux-x86-64.so.2` made `0600` (even root's bash: "Permission denied") or `0700` (uid
/// 1000's shell exits 126, SSH logins fail), `/lib` `0700`, `/bin/sh` `0600` were each
/// `fixed … verified`. Built from this machine's real bash and dash, loader and libraries.
@Suite struct FileModeStartTests {
    /// root and admin (in sudo) log in with the real bin/bash; guest with a script; bin/sh is dash.
    func realHost(_ root: String) throws -> InstalledPrograms {
        try makeHost(root, [FixtureAccount(name: "root", uid: 0), FixtureAccount(name: "daemon", uid: 1, shell: "/usr/sbin/nologin"),
                            FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true),
                            FixtureAccount(name: "guest", uid: 1001, shell: "/bin/guestsh", key: true)])
        try write(root + "/bin/guestsh", "#!/bin/true\n", mode: 0o755)
        try write(root + "/etc/login.defs", "UID_MIN 1000\n")
        return try installRealPrograms(root)
    }

    @Test(.enabled(if: isRoot)) func theLoaderLibrariesAndFoldersAnAdministratorsShellNeedsAreBlockedAndOthersApplied() async throws {
        try await withTemporaryDirectory { root in
            let real = try realHost(root)
            let loader = real.loader, folder = real.libraries
            let tinfo = try #require(real.libraryPaths.first { $0.contains("libtinfo") })
            func mode(_ path: String, _ mode: String) -> String { resource("FileMode", "f", "path: \(path)\nmode: \"\(mode)\"") }
            try await expectBlocked(root, mode(loader, "0600"),
                                    reason: "root (uid 0) could no longer start its login shell /bin/bash: \(loader) would not be executable by it")
            try await expectBlocked(root, mode(loader, "0700"),
                                    reason: "admin (uid 1000) could no longer start its login shell /bin/bash: \(loader) would not be executable by it")
            try await expectBlocked(root, mode(tinfo, "0600"),
                                    reason: "admin (uid 1000) could no longer start its login shell /bin/bash: \(tinfo) would not be readable by it")
            try await expectBlocked(root, mode("/lib", "0700"),
                                    reason: "admin (uid 1000) could no longer start its login shell /bin/bash: /lib would not be searchable by it")
            // The folder of the loader's name (a link to the real file elsewhere) is on the way too.
            let linkFolder = (real.interpreter as NSString).deletingLastPathComponent
            if linkFolder != folder {
                try await expectBlocked(root, mode(linkFolder, "0700"),
                                        reason: "could no longer start its login shell /bin/bash: \(linkFolder) would not be searchable by it")
            }
            // dash as /bin/sh: system(), cron and package scripts run through it, root's too.
            try await expectBlocked(root, mode("/bin/sh", "0600"),
                                    reason: "/bin/sh would no longer be executable by root (uid 0), who runs commands through it")

            // Twins. The loader 0755 again; 0750 with group sudo still starts root's and admin's shells.
            chmod(root + loader, 0o711)
            try await expectApplied(root, mode(loader, "0755"))
            // The kernel needs no read of it, nor does the loader open itself again as libc's `DT_NEEDED`.
            try await expectApplied(root, mode(loader, "0711"))
            #expect(modeAndOwner(root + loader).mode == 0o711)
            try await expectApplied(root, resource("FileMode", "f", "path: \(loader)\nmode: \"0750\"\ngroup: sudo"))
            #expect(modeAndOwner(root + loader).mode == 0o750 && modeAndOwner(root + loader).gid == 27)
            // A library no protected program needs may go 0700, and a library folder 0755 stays as it is.
            try FileManager.default.copyItem(atPath: root + tinfo, toPath: root + folder + "/libnobody.so.1")
            chmod(root + folder + "/libnobody.so.1", 0o644)
            try await expectApplied(root, mode(folder + "/libnobody.so.1", "0700"))
            #expect(modeAndOwner(root + folder + "/libnobody.so.1").mode == 0o700)
            chmod(root + "/lib", 0o775)
            try await expectApplied(root, mode("/lib", "0755"))
        }
    }

    /// What the guard reads of ELF files: the real bash's loader and libraries; and a hostile or
    /// damaged file (truncated anywhere, headers counted past the file, offsets that overflow,
    /// bytes flipped at random) gives nil or what could be read, never a trap or a loop.
    @Test func theELFReaderReadsRealProgramsAndSurvivesDamagedOnes() throws {
        let bash = try Data(contentsOf: URL(fileURLWithPath: "/bin/bash"))
        func parse(_ bytes: [UInt8]) -> ELFHeaders? {
            let path = NSTemporaryDirectory() + "/elf-\(UUID().uuidString)"
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            defer { unlink(path) }
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            return ELFHeaders(fd: fd, size: bytes.count)
        }
        let whole = try #require(parse(Array(bash)))
        #expect(whole.interpreter?.hasSuffix("ld-linux-x86-64.so.2") == true || whole.interpreter?.contains("/ld-") == true, "\(whole)")
        #expect(whole.needed.contains("libc.so.6") && whole.needed.contains { $0.hasPrefix("libtinfo") }, "\(whole.needed)")
        #expect(parse(Array("#!/bin/sh\necho hi\n".utf8)) == nil, "a script is no ELF file")
        // Cut short at every length up to the headers, and at a few past them.
        for length in Array(0..<200) + [1024, 4096, 16384] { _ = parse(Array(bash.prefix(length))) }
        // Header counts and offsets at their largest.
        var header = Array(bash.prefix(65536))
        for (at, width) in [(32, 8), (54, 2), (56, 2)] {
            var bad = header
            for index in at..<at + width { bad[index] = 0xff }
            _ = parse(bad)
        }
        // Random bytes flipped in the headers, the program headers and the dynamic section.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            var bad = header
            for _ in 0..<8 { bad[Int.random(in: 0..<min(bad.count, 4096), using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            _ = parse(bad)
        }
        header[4] = 1  // an ELF64 file that says it is ELF32
        _ = parse(header)
    }
}

/// sudo refuses to run at all with a sudoers file (or an included one) not owned by root, or
/// writable by others or a group other than root's: `owner: daemon` of `/etc/sudoers` was held
/// for a second person, then applied.
@Suite struct FileModeSudoersTests {
    func host(_ root: String, sudo: Bool = true) throws {
        try makeHost(root, [FixtureAccount(name: "root", uid: 0), FixtureAccount(name: "daemon", uid: 1, shell: "/usr/sbin/nologin"),
                            FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true)])
        try write(root + "/etc/login.defs", "UID_MIN 1000\n")
        try write(root + "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n", mode: 0o440)
        try write(root + "/etc/sudoers.d/admins", "%sudo ALL=(ALL:ALL) ALL\n", mode: 0o440)
        if sudo {
            try write(root + "/usr/bin/sudo", "#!/bin/true\n", mode: 0o755)
            chmod(root + "/usr/bin/sudo", 0o4755)
        }
    }

    /// An administrator's login shell that is a script (`#!/bin/sh`) made `0711` was applied: the
    /// kernel starts it, but its interpreter, reading it as the account, gets "Permission denied"
    /// (exit 126) (outside review). Its read is kept too; the twin, `0755` from `0775`, applied.
    @Test(.enabled(if: isRoot)) func anAdministratorsScriptShellMadeUnreadableIsBlockedAndTightenedReadableIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [FixtureAccount(name: "root", uid: 0),
                                FixtureAccount(name: "admin", uid: 1000, shell: "/usr/local/bin/adminsh", groups: ["sudo"])])
            try write(root + "/usr/local/bin/adminsh", "#!/bin/sh\nexec /bin/sh \"$@\"\n", mode: 0o755)
            try write(root + "/etc/login.defs", "UID_MIN 1000\n")
            func mode(_ mode: String) -> String { resource("FileMode", "f", "path: /usr/local/bin/adminsh\nmode: \"\(mode)\"") }
            try await expectBlocked(root, mode("0711"), reason: "/usr/local/bin/adminsh would no longer be readable by admin (uid 1000), "
                                    + "whose login shell it is: a script's interpreter reads it as that account")
            #expect(modeAndOwner(root + "/usr/local/bin/adminsh").mode == 0o755)
            chmod(root + "/usr/local/bin/adminsh", 0o775)
            try await expectApplied(root, mode("0755"))
            #expect(modeAndOwner(root + "/usr/local/bin/adminsh").mode == 0o755)
        }
    }

    /// The interpreter an administrator's script login shell names (`#!/usr/bin/python3`) made
    /// `0700` root was applied: the kernel starts it with the account's rights, so the login fails
    /// ("Permission denied") though the shell itself is untouched. Blocked now, and recorded; the
    /// twin, the interpreter tightened from `0775` to `0755`, applied, and an interpreter no
    /// administrator's shell names made `0700` too.
    @Test(.enabled(if: isRoot)) func theInterpreterOfAnAdministratorsScriptShellMadeUnexecutableIsBlockedAndTightenedIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [FixtureAccount(name: "root", uid: 0),
                                FixtureAccount(name: "admin", uid: 1000, shell: "/usr/local/bin/adminsh", groups: ["sudo"])])
            try write(root + "/usr/local/bin/adminsh", "#!/usr/bin/python3 -I\nimport os\n", mode: 0o755)
            try write(root + "/usr/bin/python3", "#!/bin/true\n", mode: 0o755)
            try write(root + "/usr/bin/perl", "#!/bin/true\n", mode: 0o755)
            try write(root + "/etc/login.defs", "UID_MIN 1000\n")
            func mode(_ path: String, _ mode: String) -> String { resource("FileMode", "f", "path: \(path)\nmode: \"\(mode)\"") }
            try await expectBlocked(root, mode("/usr/bin/python3", "0700"),
                                    reason: "/usr/bin/python3 would no longer be executable by admin (uid 1000), "
                                        + "whose login shell /usr/local/bin/adminsh runs through it")
            #expect(modeAndOwner(root + "/usr/bin/python3").mode == 0o755)
            chmod(root + "/usr/bin/python3", 0o775)
            try await expectApplied(root, mode("/usr/bin/python3", "0755"))
            #expect(modeAndOwner(root + "/usr/bin/python3").mode == 0o755)
            try await expectApplied(root, mode("/usr/bin/perl", "0700"))
            #expect(modeAndOwner(root + "/usr/bin/perl").mode == 0o700)
        }
    }

    @Test(.enabled(if: isRoot)) func aSudoersFileGivenAwayOrWritableIsBlockedAnd0440RootIsApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/sudoers\nowner: daemon"),
                                    reason: "owner daemon (uid 1) would own /etc/sudoers: sudo refuses to run with a sudoers file")
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/sudoers.d/admins\nowner: daemon"),
                                    reason: "owner daemon (uid 1) would own /etc/sudoers.d/admins: sudo refuses to run")
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/sudoers.d/admins\nmode: \"0460\""),
                                    reason: "mode 0460 would let group or others write /etc/sudoers.d/admins: sudo refuses to run")
            chmod(root + "/etc/sudoers", 0o460)
            try await expectBlocked(root, resource("FileMode", "f", "path: /etc/sudoers\ngroup: daemon"),
                                    reason: "group daemon (gid 1) would be able to write /etc/sudoers: sudo refuses to run")
            // The twin: sudoers given to daemon by hand, 0640, made 0440 root:root again.
            chown(root + "/etc/sudoers", 1, 1)
            chmod(root + "/etc/sudoers", 0o640)
            try await expectApplied(root, resource("FileMode", "f", "path: /etc/sudoers\nmode: \"0440\"\nowner: root\ngroup: root"))
            #expect(modeAndOwner(root + "/etc/sudoers").mode == 0o440 && modeAndOwner(root + "/etc/sudoers").uid == 0
                    && modeAndOwner(root + "/etc/sudoers").gid == 0)
        }
    }
}

/// `/tmp` made `0700` (from `1777`) was applied: every service that does not run as root and
/// writes there broke. Kept `1777`: others' access and the sticky bit.
@Suite struct FileModeSharedFolderTests {
    @Test(.enabled(if: isRoot)) func aSharedTemporaryFolderMadePrivateOrUnstickyIsBlockedAnd1777IsApplied() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            for folder in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"] {
                try FileManager.default.createDirectory(atPath: root + folder, withIntermediateDirectories: true)
                chmod(root + folder, 0o1777)
            }
            try await expectBlocked(root, resource("FileMode", "f", "path: /tmp\nmode: \"0700\""),
                                    reason: "mode 0700 would make /tmp, where every user and service writes temporary files, other than 1777: "
                                        + "users and services other than its owner could no longer all create their files there")
            try await expectBlocked(root, resource("FileMode", "f", "path: /tmp\nmode: \"0777\""),
                                    reason: "without the sticky bit anyone could delete or rename the others' files there")
            try await expectBlocked(root, resource("FileMode", "f", "path: /var/tmp\nmode: \"1770\""), reason: "/var/tmp, where every user")
            try await expectBlocked(root, resource("FileMode", "f", "path: /dev/shm\nmode: \"0755\""), reason: "/dev/shm, where every user")
            try await expectBlocked(root, resource("FileMode", "f", "path: /run/lock\nmode: \"0755\""), reason: "/run/lock, where every user")
            try await expectBlocked(root, resource("FileMode", "f", "path: /tmp\nowner: admin"),
                                    reason: "owner admin (uid 1000) would own /tmp, where every user and service writes temporary files")
            // Twins: /tmp 1777 again from 0777; run/lock where it is 0755 (not Debian's) is not kept 1777.
            chmod(root + "/tmp", 0o777)
            try await expectApplied(root, resource("FileMode", "f", "path: /tmp\nmode: \"1777\""))
            #expect(modeAndOwner(root + "/tmp").mode == 0o1777)
            chmod(root + "/run/lock", 0o755)
            try await expectApplied(root, resource("FileMode", "f", "path: /run/lock\nmode: \"0750\""))
            #expect(modeAndOwner(root + "/run/lock").mode == 0o750)
        }
    }
}
