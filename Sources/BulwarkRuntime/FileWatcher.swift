import Foundation
import Synchronization

/// Watches files through inotify and reports the paths that changed.
///
/// Folders are watched, not files, so a watch survives the atomic renames Bulwark and editors
/// do (a new inode under the same name). One owner of the inotify descriptor: a thread reads it
/// with `poll` and a one-second timeout, and closes it when asked to stop.
package final class FileWatcher: Sendable {
    private struct State {
        /// Watch descriptor → folder.
        package var folders: [Int32: String] = [:]
        package var stopped = false
    }

    /// What the watcher reports.
    package enum Change: Sendable, Equatable {
        /// A path that changed (a folder's path for a change to the folder itself).
        case path(String)
        /// The kernel's event queue overflowed (`IN_Q_OVERFLOW`): changes were lost, and any
        /// watched file may have changed without a word.
        case lost
    }

    private let descriptor: Int32
    private let state = Mutex(State())
    private let continuation: AsyncStream<Change>.Continuation
    /// What changed, in order.
    package let changes: AsyncStream<Change>

    package init() throws {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw CommandError("inotify_init1 failed: \(String(cString: strerror(errno)))") }
        descriptor = fd
        (changes, continuation) = AsyncStream.makeStream(of: Change.self, bufferingPolicy: .bufferingNewest(4096))
        let thread = Thread { [self] in readLoop() }
        thread.name = "bulwark-inotify"
        thread.start()
    }

    /// Watches exactly the folders holding `paths` (a path ending in `/` is a folder itself);
    /// folders no longer needed are dropped. Folders that do not exist are skipped.
    package func watch(_ paths: [String]) {
        let wanted = Set(paths.map { $0.hasSuffix("/") ? String($0.dropLast()) : ($0 as NSString).deletingLastPathComponent })
        state.withLock { state in
            guard !state.stopped else { return }
            for (wd, folder) in state.folders where !wanted.contains(folder) {
                inotify_rm_watch(descriptor, wd)
                state.folders[wd] = nil
            }
            let have = Set(state.folders.values)
            let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB)
            for folder in wanted.subtracting(have) {
                let wd = inotify_add_watch(descriptor, folder, mask)
                if wd >= 0 { state.folders[wd] = folder }
            }
        }
    }

    package var watchedFolders: Int { state.withLock { $0.folders.count } }

    package func stop() {
        state.withLock { $0.stopped = true }
    }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        defer {
            close(descriptor)
            continuation.finish()
        }
        while !state.withLock({ $0.stopped }) {
            var pfd = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 1000)
            guard ready > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { continue }
            let folders = state.withLock { $0.folders }
            var dropped = false
            for change in Self.decode(buffer[..<count], folders: folders) {
                if case .dropped = continuation.yield(change) { dropped = true }
            }
            // The stream's own buffer was full (a burst, a package upgrade): paths were lost
            // here rather than in the kernel's queue, which is the same loss.
            if dropped { continuation.yield(.lost) }
        }
    }

    /// The changes in `events`, as read from an inotify descriptor: each event's watch resolved
    /// to its folder (events of watches since dropped are skipped), and an overflow of the
    /// kernel's queue (watch -1) reported as `.lost`.
    static func decode(_ events: ArraySlice<UInt8>, folders: [Int32: String]) -> [Change] {
        var changes: [Change] = []
        var offset = events.startIndex
        let header = MemoryLayout<inotify_event>.size
        while offset + header <= events.endIndex {
            let (wd, mask, length) = events.withUnsafeBytes { raw -> (Int32, UInt32, Int) in
                let event = raw.loadUnaligned(fromByteOffset: offset - events.startIndex, as: inotify_event.self)
                return (event.wd, event.mask, Int(event.len))
            }
            let nameBytes = events[(offset + header)..<min(events.endIndex, offset + header + length)].prefix { $0 != 0 }
            let name = String(decoding: nameBytes, as: UTF8.self)
            if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                changes.append(.lost)
            } else if let folder = folders[wd] {
                changes.append(.path(name.isEmpty ? folder : folder + "/" + name))
            }
            offset += header + length
        }
        return changes
    }
}
