internal import Foundation
internal import Synchronization

/// Parsed file contents, reused only while every file they came from is unchanged: same
/// device, inode, size and modification time (nanoseconds). An atomic rename gives a new
/// inode, so Bulwark's own writes always invalidate an entry.
final class ParseCache<Value: Sendable>: Sendable {
    private struct Identity: Hashable, Sendable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var seconds: Int
        var nanoseconds: Int
    }

    private struct Entry: Sendable {
        var value: Value
        var files: [String: Identity?]
    }

    private let entries = Mutex<[String: Entry]>([:])

    func lookup(_ key: String) -> Value? {
        guard let entry = entries.withLock({ $0[key] }) else { return nil }
        for (path, identity) in entry.files where Self.identity(path) != identity { return nil }
        return entry.value
    }

    func store(_ value: Value, for key: String, dependsOn paths: [String]) {
        var files: [String: Identity?] = [:]
        for path in paths { files[path] = Self.identity(path) }
        entries.withLock { $0[key] = Entry(value: value, files: files) }
    }

    private static func identity(_ path: String) -> Identity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                        seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec)
    }
}
