internal import Foundation
internal import BulwarkCore
internal import CLinux

/// shadow-utils' lock on a root's account files, as glibc's `lckpwdf` takes it: a write lock
/// over the whole of `etc/.pwd.lock` (created mode 0600 where missing). useradd, usermod,
/// passwd, chpasswd and vipw hold it around their read-modify-write of passwd, shadow, group and
/// gshadow; Bulwark holds it around its own, from the read to the rename, so neither writes a
/// file over the other's change.
///
/// The file is opened following no symbolic link (in `etc` as a read finds it), and must be a
/// regular file. The lock is an open file description lock (`bulwark_write_lock`): it
/// conflicts with lckpwdf's `F_SETLKW` lock both ways, and closing another descriptor of the
/// file in this process cannot release it. This owns the descriptor: `deinit` closes it, which
/// releases the lock. Used by one thread, for one apply.
final class AccountFilesLock {
    static let path = ["etc", ".pwd.lock"]
    /// How long a lock held by another program is waited for: lckpwdf's own bound (15 s).
    static let wait: Duration = .seconds(15)
    private let fd: Int32

    /// Takes the lock of `root`, waiting at most `wait` while another program holds it.
    /// - Throws: `HostError` naming the lock file when it cannot be opened, is a link or not a
    ///   regular file, or is still held after `wait` (nothing is written then).
    init(_ root: HostRoot, wait: Duration = AccountFilesLock.wait) throws(HostError) {
        let folderPath = try root.resolve(Self.path[0])
        let display = folderPath + "/" + Self.path[1]
        let folder = try root.openFolderNoFollow(root.components(of: folderPath))
        let fd = openat(folder.fd, Self.path[1], O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            var info = stat()
            if fstatat(folder.fd, Self.path[1], &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & FileType.mask != FileType.regular {
                throw HostError("shadow-utils' lock file is \(FileType.name(info.st_mode)), not a regular file, and is not followed; "
                                + "the account files are not changed without the lock", path: display)
            }
            throw HostError("cannot open shadow-utils' lock file: \(errnoText(code))", path: display)
        }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & FileType.mask == FileType.regular else {
            close(fd)
            throw HostError("shadow-utils' lock file is not a regular file; the account files are not changed without the lock",
                            path: display)
        }
        let deadline = ContinuousClock.now + wait
        var pause = 10  // milliseconds, doubled up to 200 while the lock stays held
        while bulwark_write_lock(fd) != 0 {
            let code = errno
            guard code == EAGAIN || code == EACCES || code == EINTR else {
                close(fd)
                throw HostError("cannot take shadow-utils' lock: \(errnoText(code))", path: display)
            }
            let now = ContinuousClock.now
            guard now < deadline else {
                let pid = bulwark_write_lock_holder(fd)
                close(fd)
                let holder = pid > 0 ? "pid \(pid)" : "another program"
                throw HostError("\(holder) has held shadow-utils' lock on the account files for \(wait) (useradd, usermod, "
                                + "passwd or vipw changing them); not changed, try again when it has finished", path: display)
            }
            usleep(useconds_t(min(Double(pause), (deadline - now) / .milliseconds(1)) * 1000))
            pause = min(pause * 2, 200)
        }
        self.fd = fd
    }

    deinit {
        close(fd)
    }
}
