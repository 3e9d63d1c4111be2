import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// A program holding shadow-utils' lock on the account files of `root` as glibc's `lckpwdf`
/// holds it: an fcntl `F_SETLKW` write lock over the whole of etc/.pwd.lock (Python's
/// `fcntl.lockf`, the same call), for `seconds`. Returns once the lock is held.
private func holdShadowLock(_ root: String, seconds: Double) throws -> Process {
    let holder = Process()
    holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    holder.arguments = ["-c", """
        import fcntl, os, sys, time
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
        """, root + "/etc/.pwd.lock", String(seconds)]
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
            // Held far past the wait (and killed after): on a loaded machine the pass itself can take long.
            let holder = try holdShadowLock(root, seconds: 900)
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
}
