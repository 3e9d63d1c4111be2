import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do (without it, a build failed now and then with
// "missing import of defining module 'CDispatch'" as files were added).
internal import CDispatch
import Foundation
import Testing

/// Outside review, through the real binary: the dynamic loader made `0700` (administrators'
/// login shells exit 126), `/etc/sudoers` given to `daemon` (sudo refuses to run; only held for
/// a second person) and `/tmp` made `0700` (every non-root service writing there breaks) were
/// each `fixed … verified`. Each is now blocked and recorded on the audit branch, read back with
/// git; the twins (the loader `0755`, sudoers `0440` root's, `/tmp` `1777`) are applied.
@Suite struct FileModeGuardCommandTests {
    static func policy(loader: String, _ loaderMode: String, sudoers: String, tmp: String) -> String {
        """
        apiVersion: bulwark/v1
        kind: FileMode
        metadata: {name: loader}
        spec: {path: \(loader), mode: "\(loaderMode)"}
        ---
        apiVersion: bulwark/v1
        kind: FileMode
        metadata: {name: sudoers}
        spec: {path: /etc/sudoers, \(sudoers)}
        ---
        apiVersion: bulwark/v1
        kind: FileMode
        metadata: {name: tmp}
        spec: {path: /tmp, mode: "\(tmp)"}

        """
    }

    static func mode(_ path: String) -> (mode: UInt32, uid: UInt32) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return (0, UInt32.max) }
        return (UInt32(info.st_mode & 0o7777), info.st_uid)
    }

    /// The twins first, as a revision an operator reviewed (`acceptHead`: a new resource's mode
    /// with bits for group or others is otherwise held for a second person as a grant), from a
    /// host that drifted: the loader 0711, sudoers daemon's 0640, /tmp 0777. Then the harmful
    /// revision of the same resources, blocked and recorded, nothing written.
    @Test(.enabled(if: isRoot)) func whatAdministratorsAndServicesNeedIsBlockedAndRecordedAndTheTwinsApplied() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let real = try installRealPrograms(s.host)
            try write(s.host + "/usr/bin/sudo", "#!/bin/sh\n", mode: 0o755)
            chmod(s.host + "/usr/bin/sudo", 0o4755)
            try write(s.host + "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n", mode: 0o640)
            chown(s.host + "/etc/sudoers", 1, 1)
            try FileManager.default.createDirectory(atPath: s.host + "/tmp", withIntermediateDirectories: true)
            chmod(s.host + "/tmp", 0o777)
            chmod(s.host + real.loader, 0o711)

            try s.commitPolicy("desired-state/hosts/modes.yaml",
                               Self.policy(loader: real.loader, "0755", sudoers: "mode: \"0440\", owner: root", tmp: "1777"))
            try s.acceptHead()
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            let fixed = try HostWeakeningNewCommandTests.decisions(s)
            for name in ["FileMode/loader", "FileMode/sudoers", "FileMode/tmp"] {
                #expect(fixed[name]?.first == "applied", "\(name): \(fixed[name] ?? [])\n\(applied.stdout)")
            }
            #expect(Self.mode(s.host + real.loader).mode == 0o755)
            #expect(Self.mode(s.host + "/etc/sudoers") == (0o440, 0))
            #expect(Self.mode(s.host + "/tmp").mode == 0o1777)

            let before = try s.snapshot()
            try s.commitPolicy("desired-state/hosts/modes.yaml",
                               Self.policy(loader: real.loader, "0700", sudoers: "owner: daemon", tmp: "0700"))
            let blocked = try s.run("apply")
            for why in ["admin (uid 1000) could no longer start its login shell /bin/bash: \(real.loader) would not be executable by it",
                        "owner daemon (uid 1) would own /etc/sudoers: sudo refuses to run",
                        "mode 0700 would make /tmp, where every user and service writes temporary files, other than 1777"] {
                #expect(blocked.stdout.contains(why), "\(why)\n\(blocked.stdout)\n\(blocked.stderr)")
            }
            let refused = try HostWeakeningNewCommandTests.decisions(s)
            for name in ["FileMode/loader", "FileMode/sudoers", "FileMode/tmp"] {
                #expect(refused[name]?.first == "blocked", "\(name): \(refused[name] ?? [])")
            }
            #expect(try s.snapshot() == before, "nothing blocked is written")
            #expect(Self.mode(s.host + "/tmp").mode == 0o1777)
            #expect(Self.mode(s.host + "/etc/sudoers") == (0o440, 0))
        }
    }
}
