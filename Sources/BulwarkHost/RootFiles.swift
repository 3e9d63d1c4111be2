internal import Foundation
internal import CLinux

/// Files another adapter keeps under a target's root (the nftables table it persists for boot,
/// its lock and digests), through the one path layer the host kinds use (`HostRoot`,
/// `FileIO`): a write follows no symbolic link and lands by temporary file, fsync, rename and
/// folder fsync; a read follows links only as the host booted from the root would. Whoever
/// controls the root (a container's filesystem) cannot make `etc/nftables.d` a link that sends
/// the write to the machine Bulwark runs on, nor have a read leave the root.
public enum RootFiles {
    /// The bytes of `path` under `root`; nil when there is no such file.
    /// - Throws: `HostError` naming the path when it is not a regular file or cannot be read.
    public static func read(_ path: String, under root: String) throws(HostError) -> [UInt8]? {
        try FileIO.read(path, in: HostRoot(root))?.bytes
    }

    /// Replaces `path` under `root` with `bytes`, creating missing folders (mode 0755) and a new
    /// file with `mode`. Nothing is written when the content is already equal.
    /// - Throws: `HostError` naming the path when the file is a link or not a regular file, or
    ///   changed while it was written.
    public static func write(_ bytes: [UInt8], to path: String, under root: String, mode: UInt32 = 0o644) throws {
        let (host, folder, name) = try place(path, under: root)
        let target = host.full(folder.components + [name])
        // The file as it is now (a link to it is refused by the write, which follows none).
        let current = try FileIO.read(target, in: host)
        try FileIO.write(bytes, to: target, in: host, expected: current?.identity, newFileMode: mode_t(mode))
    }

    /// Opens (creating, mode 0755) the folder of `path` under `root` as a write would, and checks
    /// the file there is not a link, before anything else changes: a change that could not be
    /// persisted is better not made.
    /// - Throws: `HostError` naming the path when a component is not a folder or the file is not
    ///   a regular file.
    public static func prepareFolder(of path: String, under root: String) throws(HostError) {
        let (host, folder, name) = try place(path, under: root)
        // The file itself, when there, must be one a write can replace (a write follows no link).
        var info = stat()
        if fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & FileType.mask != FileType.regular {
            throw HostError(FileType.refusal(info.st_mode, expected: "a regular file"), path: host.full(folder.components + [name]))
        }
    }

    /// A descriptor on `path` under `root`, created (mode 0600) when missing, for a lock; the
    /// file itself may not be a link. The caller closes it.
    public static func openLock(_ path: String, under root: String) throws(HostError) -> Int32 {
        let (host, folder, name) = try place(path, under: root)
        let fd = openat(folder.fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
        guard fd >= 0 else { throw HostError("cannot open the lock: \(errnoText())", path: host.full(folder.components + [name])) }
        return fd
    }

    /// The open folder of `path` and the file's name. The folder is where the host booted from
    /// the root would find it: links inside the root are followed (`/etc/nftables.d` linked
    /// elsewhere by a configuration tool), an absolute link starts again at the root, none
    /// leads out of it; then it is opened following no link, missing folders created.
    private static func place(_ path: String, under root: String) throws(HostError) -> (HostRoot, Directory, String) {
        let host = try HostRoot(root)
        let components = host.components(of: path)
        guard let name = components.last, name != "..", name != "." else { throw HostError("not a file path", path: path) }
        let folderPath = host.full(Array(components.dropLast()))
        let resolved = host.components(of: try host.resolve(folderPath))
        return (host, try host.openFolderNoFollow(resolved, create: 0o755), name)
    }
}
