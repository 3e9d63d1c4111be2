@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Glibc
import Testing

/// The daemon's file watcher: what it reports of the kernel's events.
@Suite struct FileWatcherTests {
    /// One inotify event as the kernel lays it out: the header, then the name padded with NULs.
    private func event(_ wd: Int32, _ mask: Int32, _ name: String) -> [UInt8] {
        var padded = Array(name.utf8)
        if !padded.isEmpty {
            padded.append(0)
            while padded.count % 16 != 0 { padded.append(0) }
        }
        // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[]; }
        var bytes: [UInt8] = []
        for field in [UInt32(bitPattern: wd), UInt32(mask), 0, UInt32(padded.count)] {
            withUnsafeBytes(of: field) { bytes += $0 }
        }
        #expect(bytes.count == MemoryLayout<inotify_event>.size)
        return bytes + padded
    }

    /// Events resolve to their folder's paths; an overflow of the kernel's queue is reported as
    /// lost changes (before, it was dropped: the drifts it hid waited for their controllers'
    /// intervals); an event of a watch since dropped is skipped.
    @Test func anOverflowOfTheKernelsQueueIsReportedAsLostChanges() {
        let junk: [UInt8] = [9, 9, 9, 9]
        let events = junk + event(1, IN_CLOSE_WRITE, "sshd_config") + event(-1, IN_Q_OVERFLOW, "")
            + event(7, IN_CREATE, "gone") + event(1, IN_ATTRIB, "")
        let changes = FileWatcher.decode(events[junk.count...], folders: [1: "/r/etc/ssh"])
        #expect(changes == [.path("/r/etc/ssh/sshd_config"), .lost, .path("/r/etc/ssh")])
    }

    /// A real write in a watched folder is reported with the file's path.
    @Test func aWriteInAWatchedFolderIsReported() async throws {
        try await withTemporaryDirectory { folder in
            let path = URL(fileURLWithPath: folder + "/login.defs").standardizedFileURL.path
            try "UMASK 022\n".write(toFile: path, atomically: false, encoding: .utf8)
            let watcher = try FileWatcher()
            watcher.watch([path])
            try "UMASK 077\n".write(toFile: path, atomically: false, encoding: .utf8)
            var iterator = watcher.changes.makeAsyncIterator()
            #expect(await iterator.next() == .path(path))
            watcher.stop()
        }
    }
}
