import Foundation

/// Files Bulwark keeps beside its clone in the state directory (the audit index, the audit
/// trail, the webhook replay memory): replaced atomically, never through a symbolic link,
/// readable by the owner only.
public enum StateFile {
    /// Why a state file could not be replaced: the file, the step that failed and the system's reason.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let path: String
        /// `create`, `write`, `sync` or `rename`.
        public let step: String
        public let reason: String
        public var description: String {
            step == "rename" ? "cannot replace \(path): \(reason)" : "cannot \(step) a new \(path): \(reason)"
        }
    }

    /// How much survives what.
    public enum Durability: Sendable {
        /// After a crash the file is the old one or the new one; after a power loss it may be
        /// either, or empty: for files whose loss costs a rebuild.
        case crash
        /// Also after a power loss: the bytes reach the disk before the rename. For files whose
        /// loss would weaken a check.
        case synced
        /// `synced`, and the folder is synced after the rename, so the new file is the one found
        /// after a power loss: for a file read before answering someone (the replay memory).
        case syncedWithFolder
    }

    /// Writes `bytes` to `PATH.tmp` and renames it over `path`. One process writes a state
    /// directory's files (the directory's lock), so the temporary's name is fixed: one a killed
    /// writer left is removed and made again (`O_EXCL | O_NOFOLLOW`, mode 0600), never piles up,
    /// and is never opened: a hard link to another file planted there would have it emptied.
    public static func replace(_ path: String, with bytes: [UInt8], durability: Durability = .crash) throws(Failure) {
        let folder = (path as NSString).deletingLastPathComponent
        let temporary = path + ".tmp"
        func failed(_ step: String, _ failedPath: String) -> Failure {
            let failure = Failure(path: failedPath, step: step, reason: String(cString: strerror(errno)))
            unlink(temporary)
            return failure
        }
        if unlink(temporary) != 0, errno != ENOENT { throw failed("create", temporary) }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failed("create", temporary) }
        guard Descriptor.writeAll(fd, bytes) else {
            let failure = failed("write", temporary)
            close(fd)
            throw failure
        }
        if durability != .crash, fsync(fd) != 0 {
            let failure = failed("sync", temporary)
            close(fd)
            throw failure
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw failed("rename", path) }
        if durability == .syncedWithFolder {
            // The rename is done: a folder that cannot be synced leaves the new file in place,
            // as durable as the file system makes a rename without it.
            let folderFD = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if folderFD >= 0 {
                _ = fsync(folderFD)
                close(folderFD)
            }
        }
    }
}
