@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Glibc
import Testing

/// A root's users and groups are parsed once and reused while etc/passwd and etc/group are
/// unchanged; any change to either is seen by the next lookup.
@Suite struct AccountDatabaseCacheTests {
    @Test func aChangedGroupFileIsReadAgainAndAnUnchangedOneGivesTheSameNames() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", "root:x:0:0::/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n")
            try write(root + "/etc/group", "root:x:0:\nshadow:x:42:\n")
            // Written an hour ago: old enough to be cached (a file modified in the last seconds never is).
            for file in ["/etc/passwd", "/etc/group"] { try setModified(root + file, secondsAgo: 3600) }
            let host = try HostRoot(root)
            let first = try AccountDatabase(root: host)
            #expect(first.groupName(42) == "shadow" && first.userName(1000) == "admin")
            #expect(try AccountDatabase(root: host).groupName(42) == "shadow", "unchanged: the same names")

            // Rewritten in place, same size: the modification time tells.
            let handle = try #require(FileHandle(forWritingAtPath: root + "/etc/group"))
            try handle.write(contentsOf: Data("root:x:0:\nsecret:x:42:\n".utf8))
            try handle.close()
            try setModified(root + "/etc/group", secondsAgo: 1800)
            #expect(try AccountDatabase(root: host).groupName(42) == "secret")

            // Replaced by a rename (a new inode), and passwd by a link inside the root.
            try write(root + "/etc/group.new", "root:x:0:\nwheel:x:42:\n")
            try setModified(root + "/etc/group.new", secondsAgo: 3600)
            #expect(rename(root + "/etc/group.new", root + "/etc/group") == 0)
            try write(root + "/srv/passwd", "root:x:0:0::/root:/bin/sh\nops:x:1000:1000::/home/ops:/bin/sh\n")
            try FileManager.default.removeItem(atPath: root + "/etc/passwd")
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/passwd", withDestinationPath: "../srv/passwd")
            let after = try AccountDatabase(root: host)
            #expect(after.groupName(42) == "wheel" && after.userName(1000) == "ops")

            // Removed: the numbers, as for a root without the file.
            try FileManager.default.removeItem(atPath: root + "/etc/group")
            #expect(try AccountDatabase(root: host).groupName(42) == "42")
        }
    }

    @Test func aFileModifiedMomentsAgoIsNeverCached() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/group", "root:x:0:\nshadow:x:42:\n")
            let host = try HostRoot(root)
            #expect(try AccountDatabase(root: host).groupName(42) == "shadow")
            // A same-size rewrite in place within the same tick of the kernel's clock keeps size,
            // inode and (possibly) the modification time: only not caching such a file is safe.
            let handle = try #require(FileHandle(forWritingAtPath: root + "/etc/group"))
            try handle.write(contentsOf: Data("root:x:0:\nsecret:x:42:\n".utf8))
            try handle.close()
            #expect(try AccountDatabase(root: host).groupName(42) == "secret")
        }
    }

    /// Under the target's lock, a parse is kept only from files that have been still for two
    /// seconds; a status changed a moment ago by Bulwark's own fix of the file's mode (content
    /// untouched for an hour) does not count as a change, while the same chmod by anyone else does.
    @Test(arguments: [true, false])
    func aModeFixByBulwarkLeavesTheParseReusableUnderTheLockAndAnyoneElsesDoesNot(byBulwark: Bool) async throws {
        guard isRoot else { return }
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", "root:x:0:0::/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n")
            try write(root + "/etc/group", "root:x:0:\nshadow:x:42:\n", mode: 0o666)
            for file in ["/etc/passwd", "/etc/group"] { try setModified(root + file, secondsAgo: 3600) }
            // Status unchanged for two whole seconds of the clock (setting the times changed it):
            // passwd is then settled for the cache, and group was still before the fix (its own
            // change is trusted).
            usleep(3_100_000)
            if byBulwark {
                let state = try hostState(root: root, resource("FileMode", "g", "path: /etc/group\nmode: \"0644\""))
                let (_, outcome) = try await reconcile(state)
                #expect(outcome.verified.count == 1)
            } else {
                #expect(chmod(root + "/etc/group", 0o644) == 0)
            }
            #expect(modeAndOwner(root + "/etc/group").mode == 0o644)

            let host = try HostRoot(root)
            let lock = try HostLock(host)
            // The clock stands at the chmod however long the test took to get here: it was a moment ago.
            var group = stat()
            try #require(stat(root + "/etc/group", &group) == 0)
            let name = try ContentKey.$now.withValue(group.st_ctim.tv_sec) { try AccountDatabase(root: host).groupName(42) }
            #expect(name == "shadow")
            let resolved = Set([try host.resolve("etc/passwd"), try host.resolve("etc/group")])
            let kept = AccountDatabase.cache.lookup(host.path, paths: resolved, settledOnly: true) != nil
            #expect(kept == byBulwark, byBulwark ? "Bulwark's own chmod is not a change of content" : "a chmod by someone else a moment ago")

            // Whatever was kept, a same-size rewrite of the content is seen at once.
            let handle = try #require(FileHandle(forWritingAtPath: root + "/etc/group"))
            try handle.write(contentsOf: Data("root:x:0:\nsecret:x:42:\n".utf8))
            try handle.close()
            #expect(try AccountDatabase(root: host).groupName(42) == "secret")
            withExtendedLifetime(lock) {}
        }
    }

    /// A writer holding a writable shared mapping of etc/group can change its bytes again
    /// without moving any time (only a page's first write stamps the file, until writeback;
    /// a reviewer's attack, from an unprivileged process): under the lock the parse is not reused
    /// while the mapping exists, and the next read sees the change. (Without a writer a settled
    /// parse is reused: `aModeFixByBulwark…`.)
    @Test func aWritableMappingOfGroupKeepsItsParseFromBeingReusedUnderTheLock() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/passwd", "root:x:0:0::/root:/bin/sh\n")
            try write(root + "/etc/group", "root:x:0:\nshadow:x:42:\n")
            let host = try HostRoot(root)
            let resolved = Set([try host.resolve("etc/passwd"), try host.resolve("etc/group")])
            let lock = try HostLock(host)
            func reusable() -> Bool { AccountDatabase.cache.lookup(host.path, paths: resolved, settledOnly: true) != nil }

            // The writer maps the file, writes a page once (stamping it), and closes its descriptor.
            let fd = open(root + "/etc/group", O_RDWR | O_CLOEXEC)
            try #require(fd >= 0)
            let size = 23
            let mapped = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
            try #require(mapped != MAP_FAILED)
            close(fd)
            let bytes = mapped.assumingMemoryBound(to: UInt8.self)
            bytes[0] = bytes[0]
            for file in ["/etc/passwd", "/etc/group"] { try setModified(root + file, secondsAgo: 3600) }
            usleep(3_100_000)  // settled: status unchanged for two whole seconds of the clock

            #expect(try AccountDatabase(root: host).groupName(42) == "shadow")
            #expect(!reusable(), "a writable mapping of etc/group exists")
            for (offset, byte) in "secret".utf8.enumerated() { bytes[10 + offset] = byte }
            #expect(try AccountDatabase(root: host).groupName(42) == "secret")

            munmap(mapped, size)
            withExtendedLifetime(lock) {}
        }
    }

    func setModified(_ path: String, secondsAgo: Int) throws {
        let when = Date().addingTimeInterval(-Double(secondsAgo))
        try FileManager.default.setAttributes([.modificationDate: when], ofItemAtPath: path)
    }
}

/// The lock file names its holder while held and nobody once released, without being truncated
/// at every take and release.
@Suite struct HostLockRecordTests {
    @Test func theLockNamesItsHolderWhileHeldAndIsBlankAfter() async throws {
        try await withTemporaryDirectory { root in
            let host = try HostRoot(root)
            let file = root + "/run/bulwark/host.lock"
            do {
                let lock = try HostLock(host)
                #expect(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == String(getpid()))
                withExtendedLifetime(lock) {}
            }
            let blank = try String(contentsOfFile: file, encoding: .utf8)
            #expect(blank.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty && blank.utf8.count == HostLock.recordSize)
        }
    }

    @Test func longerContentLeftInTheLockFileIsCutToThePid() async throws {
        try await withTemporaryDirectory { root in
            let host = try HostRoot(root)
            let file = root + "/run/bulwark/host.lock"
            try FileManager.default.createDirectory(atPath: root + "/run/bulwark", withIntermediateDirectories: true)
            try write(file, "99999999999999999999 left by an older Bulwark\n", mode: 0o600)
            do {
                let lock = try HostLock(host)
                #expect(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == String(getpid()))
                withExtendedLifetime(lock) {}
            }
            #expect(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        }
    }
}
