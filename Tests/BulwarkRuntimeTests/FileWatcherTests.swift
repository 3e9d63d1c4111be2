import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// The daemon's file watcher: what wakes a cycle, and what its observer (the settled read's
/// `WriterCloses`) is told.
@Suite struct FileWatcherTests {
    /// A file written in place: the truncation and the writes reach the observer as changes
    /// while the writer still holds the file, and wake no cycle; the close reaches the observer
    /// as a close and wakes one cycle, for that path only.
    @Test func aWriteInProgressIsToldToTheObserverAndOnlyItsCloseWakesACycle() async throws {
        try await withTemporaryDirectory { folder in
            // The watcher reports paths as it watches them: the folder's path as given, standardized.
            let path = URL(fileURLWithPath: folder + "/sshd_config").standardizedFileURL.path
            try "PermitRootLogin no\n".write(toFile: path, atomically: false, encoding: .utf8)
            let seen = Mutex<[(String, FileWatcher.WriteEvent)]>([])
            let watcher = try FileWatcher { changed, event in seen.withLock { $0.append((changed, event)) } }
            watcher.watch([path])
            #expect(watcher.watchedFolders == 1)

            let fd = open(path, O_WRONLY | O_TRUNC)
            try #require(fd >= 0)
            let text = "PermitRootLogin yes\n"
            #expect(write(fd, text, text.utf8.count) == text.utf8.count)
            #expect(try await eventually { seen.withLock { $0.contains { $0.0 == path && $0.1 == .changed } } },
                    "the write in progress is told to the observer")
            #expect(!seen.withLock { $0.contains { $0.1 == .closed } }, "nothing was closed yet")

            #expect(close(fd) == 0)
            #expect(try await eventually { seen.withLock { $0.contains { $0.0 == path && $0.1 == .closed } } })
            watcher.stop()
            var woke: [String] = []
            for await changed in watcher.paths { woke.append(changed) }
            #expect(woke == [path], "only the close wakes a cycle, not the truncation or the write")
        }
    }

    /// Without an observer nothing but what wakes cycles is watched.
    @Test func withoutAnObserverAWriteInProgressIsNotWatched() async throws {
        try await withTemporaryDirectory { folder in
            let path = URL(fileURLWithPath: folder + "/login.defs").standardizedFileURL.path
            try "UMASK 022\n".write(toFile: path, atomically: false, encoding: .utf8)
            let watcher = try FileWatcher()
            watcher.watch([path])
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.write(contentsOf: Data("UMASK 077\n".utf8))
            try handle.close()
            try await Task.sleep(for: .milliseconds(200))
            watcher.stop()
            var woke: [String] = []
            for await changed in watcher.paths { woke.append(changed) }
            #expect(woke == [path])
        }
    }

    private func eventually(_ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}
