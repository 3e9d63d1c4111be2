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
///
/// Then shadow-utils' own lock files of the files Bulwark writes (`FileLock`): useradd and its
/// kin take only those under `--prefix`, where lckpwdf would lock the running system's file.
final class AccountFilesLock {
    static let path = ["etc", ".pwd.lock"]
    /// How long a lock held by another program is waited for: lckpwdf's own bound (15 s).
    static let wait: Duration = .seconds(15)
    /// The account files Bulwark writes, in the order shadow-utils locks them.
    static let lockedFiles = ["passwd", "shadow"]
    private let fd: Int32
    private let folder: Directory
    private var fileLocks: [FileLock] = []

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
        self.folder = folder
        // Thrown from here, `deinit` lets go of the ones taken, and of the descriptor.
        for name in Self.lockedFiles {
            fileLocks.append(try FileLock(name, in: folder, display: folderPath, until: deadline, wait: wait))
        }
    }

    deinit {
        for lock in fileLocks.reversed() { lock.release(in: folder) }
        close(fd)
    }

    /// shadow-utils' lock file of one account file, as commonio's `do_lock_file` takes it: a
    /// file `NAME.PID` holding this process's pid, hard-linked to `NAME.lock` (the link fails
    /// while another program holds it). A lock naming a process that is no longer running is
    /// stale and removed, as shadow-utils removes it; one naming no pid is never taken over.
    struct FileLock {
        let name: String
        /// The inode linked: `release` removes `NAME.lock` only while it is still this one.
        let inode: ino_t

        init(_ name: String, in folder: Directory, display: String, until deadline: ContinuousClock.Instant, wait: Duration)
            throws(HostError) {
            let pid = getpid()
            let temporary = "\(name).\(pid)", lock = "\(name).lock"
            let shown = display + "/" + lock
            _ = unlinkat(folder.fd, temporary, 0)
            let fd = openat(folder.fd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw HostError("cannot make shadow-utils' lock of \(name): \(errnoText())", path: display + "/" + temporary) }
            defer { _ = unlinkat(folder.fd, temporary, 0) }
            let text = Array("\(pid)".utf8)
            var info = stat()
            let written = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard written == text.count, fstat(fd, &info) == 0 else {
                let code = errno
                close(fd)
                throw HostError("cannot make shadow-utils' lock of \(name): \(errnoText(code))", path: display + "/" + temporary)
            }
            close(fd)
            var pause = 10  // milliseconds, doubled up to 200 while the lock stays held
            while linkat(folder.fd, temporary, folder.fd, lock, 0) != 0 {
                let code = errno
                guard code == EEXIST else { throw HostError("cannot take shadow-utils' lock: \(errnoText(code))", path: shown) }
                let holder = Self.holder(lock, in: folder)
                if let holder, kill(holder, 0) != 0, errno == ESRCH {
                    // Left by a program that is gone (killed, or the machine stopped).
                    _ = unlinkat(folder.fd, lock, 0)
                    continue
                }
                let now = ContinuousClock.now
                guard now < deadline else {
                    let who = holder.map { "pid \($0)" } ?? "a lock file that names no process"
                    throw HostError("\(who) has held shadow-utils' lock on \(name) for \(wait) (useradd, usermod, passwd or vipw "
                                    + "changing it); not changed, try again when it has finished", path: shown)
                }
                usleep(useconds_t(min(Double(pause), (deadline - now) / .milliseconds(1)) * 1000))
                pause = min(pause * 2, 200)
            }
            self.name = name
            inode = info.st_ino
        }

        /// The pid a lock file names, nil when it names none.
        static func holder(_ lock: String, in folder: Directory) -> pid_t? {
            let fd = openat(folder.fd, lock, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            var bytes = [UInt8](repeating: 0, count: 32)
            let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return nil }
            let text = String(decoding: bytes[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return pid_t(text).flatMap { $0 > 0 ? $0 : nil }
        }

        /// Removes `NAME.lock` while it is still the file this lock linked.
        func release(in folder: Directory) {
            var info = stat()
            guard fstatat(folder.fd, "\(name).lock", &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_ino == inode else { return }
            _ = unlinkat(folder.fd, "\(name).lock", 0)
        }
    }
}
