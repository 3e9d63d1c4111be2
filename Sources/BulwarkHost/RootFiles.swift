internal import Foundation

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
    /// - Throws: `HostError` naming the path when any component is a link or not a folder, or
    ///   the file changed while it was written.
    public static func write(_ bytes: [UInt8], to path: String, under root: String, mode: UInt32 = 0o644) throws {
        let host = try HostRoot(root)
        let components = host.components(of: path)
        _ = try host.openFolderNoFollow(Array(components.dropLast()), create: 0o755)
        // The file as it is now (a link to it is refused by the write, which follows none).
        let current = try FileIO.read(host.full(components), in: host)
        try FileIO.write(bytes, to: host.full(components), in: host, expected: current?.identity, newFileMode: mode_t(mode))
    }

    /// Opens (creating, mode 0755) the folders of `path` under `root` as a write would, before
    /// anything else changes: a change that could not be persisted is better not made.
    /// - Throws: `HostError` naming the path when a component is a link or not a folder.
    public static func prepareFolder(of path: String, under root: String) throws(HostError) {
        let host = try HostRoot(root)
        _ = try host.openFolderNoFollow(Array(host.components(of: path).dropLast()), create: 0o755)
    }

    /// A descriptor on `path` under `root`, created (mode 0600) when missing, for a lock: no
    /// component may be a link. The caller closes it.
    public static func openLock(_ path: String, under root: String) throws(HostError) -> Int32 {
        let host = try HostRoot(root)
        let components = host.components(of: path)
        guard let name = components.last else { throw HostError("not a file path", path: path) }
        let folder = try host.openFolderNoFollow(Array(components.dropLast()), create: 0o755)
        let fd = openat(folder.fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
        guard fd >= 0 else { throw HostError("cannot open the lock: \(errnoText())", path: host.full(components)) }
        return fd
    }
}
