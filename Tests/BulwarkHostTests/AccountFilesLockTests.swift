import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// A program holding shadow-utils' lock on the account files of `root` as glibc's `lckpwdf`
/// holds it: an fcntl `F_SETLKW` write lock over the whole of etc/.pwd.lock (Python's
/// `fcntl.lockf`, the same call), for `seconds`. Returns once the lock is held.
private func holdShadowLock(_ root: String, seconds: Double) throws -> Process {
    try startHolder("""
        import fcntl, os, sys, time
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
        """, [root + "/etc/.pwd.lock", String(seconds)])
}

/// Starts `script` in python3 with `arguments`; returns once it says "held".
private func startHolder(_ script: String, _ arguments: [String]) throws -> Process {
    let holder = Process()
    holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    holder.arguments = ["-c", script] + arguments
    let output = Pipe()
    holder.standardOutput = output
    try holder.run()
    let said = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
    try #require(said.hasPrefix("held"), "the holder said: \(said)")
    return holder
}

/// Whether a program can take shadow-utils' lock on `root` now, without waiting.
private func shadowLockIsFree(_ root: String) throws -> Bool {
    try run("/usr/bin/python3", ["-c", """
        import fcntl, os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        """, root + "/etc/.pwd.lock"]).status == 0
}

/// Bulwark takes shadow-utils' lock (`lckpwdf`: etc/.pwd.lock) around its read-modify-write of
/// passwd and shadow. Without it, a `passwd` or `useradd` that read shadow before Bulwark's
/// rename wrote its own copy over Bulwark's lock a moment later (or Bulwark over its change).
@Suite struct ShadowLockTests {
    let passwd = "root:x:0:0:root:/root:/bin/bash\nguest:x:1001:1001:Guest:/home/guest:/bin/bash\n"
    let shadow = "root:$y$root-hash:19700:0:99999:7:::\nguest:$y$guest-hash:19700:0:99999:7:::\n"

    /// A holder that keeps the lock past lckpwdf's 15 s: the fix fails naming the lock file and
    /// the holder, and neither file is touched.
    @Test func aFixWaitsForShadowUtilsLockAndFailsWhileItIsHeld() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            // Held far past the wait (and killed after): on a loaded machine the pass itself can take long
            // (a whole-package run on 2 cores once took 1,011 s to reach it, past a 900 s holder).
            let holder = try holdShadowLock(root, seconds: 2700)
            defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
            let started = ContinuousClock.now
            let (plan, outcome) = try await reconcile(try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true")))
            let waited = ContinuousClock.now - started
            #expect(plan.remediations.map(\.decision) == [.applied])
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed, "\(String(describing: record.result))")
            #expect(record.error?.contains("\(root)/etc/.pwd.lock") == true
                    && record.error?.contains("pid \(holder.processIdentifier) has held shadow-utils' lock") == true, "\(record.error ?? "")")
            // At least lckpwdf's bound; the holder never lets go before the record is read, so a
            // failed record naming it proves the wait ended on its own. (No upper bound on the
            // wall time: under the full suite on two cores a pass can wait minutes for a thread.)
            #expect(waited >= .seconds(14), "\(waited)")
            #expect(try read(root + "/etc/shadow") == shadow && read(root + "/etc/passwd") == passwd)
        }
    }

    /// A holder that lets go within the wait is waited for, and the fix goes through after it;
    /// with no holder it goes through at once. The lock file is made as lckpwdf makes it (0600),
    /// and is free again once Bulwark is done.
    @Test func aFixGoesThroughOnceTheLockIsFree() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            let holder = try holdShadowLock(root, seconds: 1.5)
            let started = ContinuousClock.now
            let (_, outcome) = try await reconcile(try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true")))
            let waited = ContinuousClock.now - started
            holder.waitUntilExit()
            #expect(outcome.entries.first?.record.result == .verified, "\(outcome.entries.first?.record.error ?? "")")
            #expect(waited >= .seconds(1), "\(waited)")
            #expect(try read(root + "/etc/shadow") == shadow.replacingOccurrences(of: "guest:$y$", with: "guest:!$y$"))
            #expect(try shadowLockIsFree(root))
        }
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            let (_, outcome) = try await reconcile(try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true")))
            #expect(outcome.entries.first?.record.result == .verified, "\(outcome.entries.first?.record.error ?? "")")
            #expect(modeAndOwner(root + "/etc/.pwd.lock").mode == 0o600)
            #expect(try shadowLockIsFree(root))
        }
    }

    /// etc/.pwd.lock made a link (to shadow itself here) is not followed: the fix fails, and
    /// the file it points at is neither locked through it nor changed.
    @Test func aLockFileThatIsALinkIsRefused() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/.pwd.lock", withDestinationPath: "shadow")
            let (_, outcome) = try await reconcile(try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true")))
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed && record.error?.contains("\(root)/etc/.pwd.lock: shadow-utils' lock file is a symbolic link") == true,
                    "\(record.error ?? "")")
            #expect(try read(root + "/etc/shadow") == shadow)
        }
    }

    // MARK: - shadow-utils' lock files (useradd --prefix)

    /// A program holding `etc/passwd.lock` the way shadow-utils' commonio does (`passwd.PID`
    /// holding its pid, hard-linked to `passwd.lock`), for `seconds`; `pid` writes another pid
    /// (or text) into the file instead. Returns once the link is made.
    private func holdPasswdLockFile(_ root: String, seconds: Double, pid: String? = nil) throws -> Process {
        try startHolder("""
            import os, sys, time
            etc, text = sys.argv[1], sys.argv[3] or str(os.getpid())
            mine = f"{etc}/passwd.{os.getpid()}"
            with open(mine, "w") as f: f.write(text)
            os.link(mine, f"{etc}/passwd.lock")
            os.unlink(mine)
            print("held", flush=True)
            time.sleep(float(sys.argv[2]))
            """, [root + "/etc", String(seconds), pid ?? ""])
    }

    /// Under `--prefix`, useradd takes shadow-utils' lock files and not lckpwdf's (that one is the
    /// running system's). While Bulwark holds a root's account files, the real useradd is told to
    /// try again later; once Bulwark is done it goes through, and no lock file is left.
    @Test func useraddWithAPrefixWaitsForBulwarksLock() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            try write(root + "/etc/group", "root:x:0:\n")
            try write(root + "/etc/gshadow", "root:*::\n", mode: 0o640)
            var lock: AccountFilesLock? = try AccountFilesLock(try HostRoot(root))
            let refused = try run("/usr/sbin/useradd", ["--prefix", root, "-M", "alice"])
            #expect(refused.status != 0 && refused.stderr.contains("cannot lock"), "\(refused.stderr)")
            #expect(try read(root + "/etc/passwd") == passwd)
            withExtendedLifetime(lock) {}
            lock = nil
            #expect(!FileManager.default.fileExists(atPath: root + "/etc/passwd.lock"))
            #expect(!FileManager.default.fileExists(atPath: root + "/etc/shadow.lock"))
            let added = try run("/usr/sbin/useradd", ["--prefix", root, "-M", "alice"])
            #expect(added.status == 0, "\(added.stderr)")
            #expect(try read(root + "/etc/passwd").contains("\nalice:x:"))
        }
    }

    /// A running program's passwd.lock is waited for and then the fix fails naming it, with
    /// lckpwdf's lock let go; a lock file naming no pid is never taken over either.
    @Test(arguments: [nil, "not a pid"] as [String?])
    func aLockFileOfARunningProgramIsNotTakenOver(pid: String?) async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            let holder = try holdPasswdLockFile(root, seconds: 2700, pid: pid)
            defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
            let named = pid == nil ? "pid \(holder.processIdentifier)" : "a lock file that names no process"
            #expect {
                _ = try AccountFilesLock(try HostRoot(root), wait: .milliseconds(300))
            } throws: { error in
                "\(error)".contains("\(named) has held shadow-utils' lock on passwd") && "\(error)".contains("\(root)/etc/passwd.lock")
            }
            #expect(try shadowLockIsFree(root), "lckpwdf's lock is let go with the failure")
            #expect(FileManager.default.fileExists(atPath: root + "/etc/passwd.lock"), "the holder's lock file is left")
            #expect(!FileManager.default.fileExists(atPath: root + "/etc/shadow.lock"))
        }
    }

    /// A passwd.lock left by a program that is gone (its pid not running) is stale: the fix
    /// removes it, goes through, and leaves no lock file.
    @Test func aStaleLockFileIsTakenOverAndTheFixGoesThrough() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            let gone = try holdPasswdLockFile(root, seconds: 0)
            gone.waitUntilExit()
            #expect(try read(root + "/etc/passwd.lock") == "\(gone.processIdentifier)")
            let (_, outcome) = try await reconcile(try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true")))
            #expect(outcome.entries.first?.record.result == .verified, "\(outcome.entries.first?.record.error ?? "")")
            #expect(try read(root + "/etc/shadow").contains("guest:!$y$"))
            let left = try FileManager.default.contentsOfDirectory(atPath: root + "/etc").filter { ($0.hasSuffix(".lock") && $0 != ".pwd.lock") || $0.contains(".\(getpid())") }
            #expect(left.isEmpty, "\(left)")
        }
    }
}
