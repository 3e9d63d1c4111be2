internal import Foundation
internal import Synchronization

/// Parsed file contents, reused only while every file they came from is unchanged: same
/// device, inode, size and modification time (nanoseconds). An atomic rename gives a new
/// inode, so Bulwark's own writes always invalidate an entry.
final class ParseCache<Value: Sendable>: Sendable {
    private struct Entry: Sendable {
        var value: Value
        var files: [String: CacheIdentity?]
    }

    private let entries = Mutex<[String: Entry]>([:])

    func lookup(_ key: String) -> Value? {
        guard let entry = entries.withLock({ $0[key] }) else { return nil }
        for (path, identity) in entry.files where Self.identity(path) != identity { return nil }
        return entry.value
    }

    /// Stores `value` with the identities taken before its files were read. With
    /// `unlessRecent`, not when a file was modified in the last two seconds: the kernel stamps
    /// modification times from a coarse clock (a few milliseconds), so a same-size rewrite in
    /// place right after the read could keep the identity the read saw (git's "racily clean"
    /// files); such a file is read again next time.
    func store(_ value: Value, for key: String, readAt snapshot: FileSnapshot, unlessRecent: Bool = false) {
        if unlessRecent {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            for case let identity? in snapshot.files.values where identity.seconds >= now.tv_sec - 2 { return }
        }
        entries.withLock { $0[key] = Entry(value: value, files: snapshot.files) }
    }

    fileprivate static func identity(_ path: String) -> CacheIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return CacheIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                            seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec)
    }
}

/// A file's device, inode, size and modification time (nanoseconds).
fileprivate struct CacheIdentity: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var seconds: Int
    var nanoseconds: Int
}

/// Identities of files taken *before* they are read: a cache entry stored with identities taken
/// after the read could pair a file's old content with its new identity when the file is
/// replaced in between, and then be reused while stale.
struct FileSnapshot: Sendable {
    fileprivate var files: [String: CacheIdentity?] = [:]

    mutating func take(_ path: String) {
        if files[path] == nil { files[path] = .some(ParseCache<Int>.identity(path)) }
    }
}
