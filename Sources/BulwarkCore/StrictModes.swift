public import Foundation

/// sshd's StrictModes, the one rule for files and folders that decide what runs as root or whom
/// Bulwark trusts (an operator's command, what Bulwark keeps on a target, a trusted signers
/// file): they belong to root or to the user Bulwark runs as, and group and others may not write
/// them. Whoever else could write one could run code as root, or choose whose signatures count.
public enum StrictModes {
    /// The owners trusted: root, and the user Bulwark runs as.
    public static func trusted(_ uid: uid_t) -> Bool { uid == 0 || uid == geteuid() }

    /// Why a folder (`info`, its `stat`) is not trusted, or nil: it belongs to someone else than a
    /// trusted owner, or group or others may write in it. A folder writable by all with the
    /// sticky bit (`/tmp`) passes: only an entry's owner may take the entry away, and each entry
    /// on the way is judged by its own owner.
    public static func folderDoubt(_ info: stat) -> String? {
        guard trusted(info.st_uid) else { return "belongs to uid \(info.st_uid), not root" }
        if info.st_mode & 0o022 != 0, info.st_mode & 0o1000 == 0 {
            return "is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8)))"
        }
        return nil
    }
}
