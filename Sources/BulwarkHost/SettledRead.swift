internal import CLinux
internal import Foundation
internal import Synchronization

// Two guards against other writers of a host file, beside the identity check before a rename
// (`FileIO.write`):
//
// - **A settled read under the target's lock.** A file another process is rewriting (truncated,
//   then written, perhaps in several writes) can be read at a moment when it is whole-looking
//   but short: Bulwark would build its fix on half a file. A read made while holding the lock
//   (the read a fix is built from) is taken only from a file that has been still for
//   `FileIO.settle`, and that no process holds open for writing (the kernel's answer,
//   `FileIO.writers`): a writer that holds the file open is waited for however long it pauses
//   between writes, up to `FileIO.settleAttempts` looks (under the stillness rule alone, its
//   first half was read, and its later writes went to the file Bulwark's rename replaced). A
//   file still held open after all the looks (a service that keeps its configuration open for
//   writing) is taken once it has been still for `settle`, as before. The answer only ever
//   makes the wait longer: a writer that closes the file between its steps (`: > f; sleep 0.05;
//   cat t >> f`) is told apart from a finished one only by the stillness, so a shorter window
//   for a file no one holds open would build fixes on the first step (a reviewer's duplicate
//   YAML key). A file that keeps changing is left alone after `settleAttempts` looks (a
//   `.conflict`, recorded with the reason).
// - **What Bulwark wrote** (`FixWitness`): the identity of each file a fix renamed into place,
//   so that a verification that finds the fix gone can tell "another writer changed the file
//   after Bulwark's write" from "the fix did not take".

extension FileIO {
    /// How long a file must have been still before a fix is built from it; and how far apart
    /// a file that is held open for writing is looked at again.
    static let settle: Duration = .milliseconds(100)
    /// How many times a file still being written is looked at again before the fix gives up.
    static let settleAttempts = 20

    /// Whether the file's status changed within `settle` before now (wall clock, as the file
    /// system stamps it; a time in the future counts as recent).
    static func recentlyChanged(_ info: stat) -> Bool {
        stillLeft(info) != nil
    }

    /// How much longer the file must stay as it is to have been still for `settle` since its
    /// status last changed; nil when it already has. A change time in the future counts as
    /// now (the whole `settle` is left).
    static func stillLeft(_ info: stat, now: timespec = wallClock()) -> Duration? {
        let changed = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
        let current = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
        let window = settle.components.seconds * 1_000_000_000 + settle.components.attoseconds / 1_000_000_000
        let age = max(0, current - changed)
        return age < window ? .nanoseconds(window - age) : nil
    }

    /// The wall clock, as the file system stamps files.
    static func wallClock() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }

    /// The file's status as a comparable value: inode, size, modification and change times.
    static func status(_ info: stat) -> [Int64] {
        [Int64(bitPattern: UInt64(info.st_dev)), Int64(bitPattern: UInt64(info.st_ino)), Int64(info.st_size),
         Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec), Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec)]
    }

    /// Who may still be writing a file, by the kernel's answer (`bulwark_open_for_writing`).
    enum Writers: Equatable {
        /// No process holds the file open for writing.
        case none
        /// A process holds it open for writing.
        case open
        /// The kernel cannot say (no leases on this file system, or not allowed to ask).
        case unknown
        /// The file at the name is no longer the one looked at: read it again.
        case changed
    }

    /// Whether a process holds `name` open for writing, asked on a descriptor of the very file
    /// whose status is `info` (opened read-only, without following a link, without blocking).
    static func writers(_ name: String, in folder: Directory, matching info: stat) -> Writers {
        let fd = openat(folder.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { return .changed }
        defer { close(fd) }
        var opened = stat()
        guard fstat(fd, &opened) == 0, status(opened) == status(info) else { return .changed }
        return writers(of: fd, status: opened)
    }

    /// Whether a process holds the file open at `fd` (read-only, whose status is `info`) open
    /// for writing, or a writable shared mapping of it (which keeps it open).
    static func writers(of fd: Int32, status info: stat) -> Writers {
        guard (info.st_mode & S_IFMT) == S_IFREG else { return .unknown }
        switch bulwark_open_for_writing(fd) {
        case 0: return .none
        case 1: return .open
        default: return .unknown
        }
    }

    /// `read(name, in: folder, …)`, from a file that has been still for `settle` and that no
    /// process holds open for writing: a file changed more recently is looked at again once
    /// `settle` has passed since it changed (slept on the monotonic clock), one held open for
    /// writing `settle` later, and a file that changed meanwhile is read again. At the last look
    /// a file still held open is taken if it has been still for `settle`. Throws a `.conflict`
    /// when it is still changing after `settleAttempts` looks.
    static func settledRead(_ name: String, in folder: Directory, display: String) throws(HostError) -> HostFile? {
        var file = try read(name, in: folder, display: display)
        for attempt in 0..<settleAttempts {
            var info = stat()
            guard fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                // Gone (or not reachable) since the read: read again, which says what it is now.
                if file == nil, errno == ENOENT { return nil }
                file = try read(name, in: folder, display: display)
                continue
            }
            guard let read = file, read.identity.inode == UInt64(info.st_ino), read.identity.device == UInt64(info.st_dev),
                  read.identity.size == Int64(info.st_size), read.identity.seconds == info.st_mtim.tv_sec,
                  read.identity.nanoseconds == info.st_mtim.tv_nsec else {
                // Created, replaced, resized or written since the read.
                file = try self.read(name, in: folder, display: display)
                continue
            }
            // A change Bulwark made itself (`OwnChanges`) is not another writer at work.
            if OwnChanges.isOwn(info) { return read }
            switch writers(name, in: folder, matching: info) {
            case .changed:
                file = try self.read(name, in: folder, display: display)
                continue
            case .open where attempt < settleAttempts - 1:
                // Its writer may pause for any time between writes: looked at again later.
                sleep(settle)
                continue
            case .open, .none, .unknown:
                break
            }
            guard let left = stillLeft(info) else { return read }
            // Only what is left of `settle` since the file last changed: a drift found by the
            // daemon's watcher has been still for the debounce already (all of it by default).
            sleep(left)
            var later = stat()
            guard fstatat(folder.fd, name, &later, AT_SYMLINK_NOFOLLOW) == 0 else {
                file = try self.read(name, in: folder, display: display)
                continue
            }
            // Still for a whole `settle` since it was read: what was read is what is there,
            // unless a writer opened it meanwhile (looked at again).
            if status(later) != status(info) {
                file = try self.read(name, in: folder, display: display)
            } else if writers(name, in: folder, matching: later) != .open || attempt == settleAttempts - 1 {
                return read
            }
        }
        throw HostError("was still being written by another process after \(settleAttempts) looks \(settle) apart; "
                        + "not changed, so that no fix is built on half a file", path: display, code: .conflict)
    }

    private static func sleep(_ duration: Duration) {
        Thread.sleep(forTimeInterval: Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }
}

/// Files whose last change was Bulwark's own, with their whole status right after it: a read
/// under the target's lock need not wait `FileIO.settle` for a change Bulwark made itself. A
/// pass changes a file's mode and then reads it (etc/passwd), or writes its own file twice (the
/// sysctl file); each such read waited 100 ms (200 waits in a 100-host pass, on the pass's path).
///
/// Recorded only where nothing but Bulwark's change can be in the status: a file Bulwark wrote
/// whole and renamed into place (`wrote`); a file whose mode or owner Bulwark changed when it
/// had been still for `settle` before, and whose size and modification time did not move across
/// the change (`changedMetadata`). The status compared is inode, size, mode, owner, group and
/// both times to the nanosecond: another writer's write, truncation, chmod or rename after
/// Bulwark's change moves one of them, and the read waits as before.
enum OwnChanges {
    private struct Key: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    private static let table = Mutex<[Key: [Int64]]>([:])
    /// Files remembered at most; beyond it the table starts again (a read then waits as before).
    private static let limit = 4096

    private static func key(_ info: stat) -> Key { Key(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)) }

    private static func status(_ info: stat) -> [Int64] {
        FileIO.status(info) + [Int64(info.st_mode), Int64(info.st_uid), Int64(info.st_gid)]
    }

    /// The file Bulwark renamed into place: `written` its status once written and synced,
    /// `renamed` after the rename (`fstat` of its descriptor). Remembered only if its content did
    /// not move between the two (a writer that opened it by name at once). The file it replaced
    /// (`replacing`) is no longer at that path: forgotten, so that a daemon fixing one file
    /// again and again keeps one entry for it, not one per inode it ever wrote.
    static func wrote(_ written: stat, renamed: stat, replacing: FileIdentity?) {
        if let replacing { forget(Key(device: replacing.device, inode: replacing.inode)) }
        guard written.st_ino == renamed.st_ino, written.st_size == renamed.st_size,
              written.st_mtim.tv_sec == renamed.st_mtim.tv_sec, written.st_mtim.tv_nsec == renamed.st_mtim.tv_nsec else {
            forget(key(renamed))
            return
        }
        remember(renamed)
    }

    /// Bulwark changed the mode or owner of a file it holds open: `before` and `after` are its
    /// status around the change. Remembered only if the file had been still before and the
    /// change touched nothing but its metadata.
    static func changedMetadata(before: stat, after: stat) {
        guard !FileIO.recentlyChanged(before), before.st_ino == after.st_ino, before.st_dev == after.st_dev,
              before.st_size == after.st_size, before.st_mtim.tv_sec == after.st_mtim.tv_sec,
              before.st_mtim.tv_nsec == after.st_mtim.tv_nsec else {
            forget(key(after))
            return
        }
        remember(after)
    }

    /// Whether the file is exactly as Bulwark's last change left it.
    static func isOwn(_ info: stat) -> Bool {
        table.withLock { $0[key(info)] } == status(info)
    }

    private static func remember(_ info: stat) {
        table.withLock { table in
            if table.count >= limit, table[key(info)] == nil { table.removeAll(keepingCapacity: true) }
            table[key(info)] = status(info)
        }
    }

    private static func forget(_ key: Key) {
        _ = table.withLock { $0.removeValue(forKey: key) }
    }
}

/// The files fixes renamed into place, with what each was when written, per absolute path in
/// this process. Verification asks it when a fix is found gone: when the file is no longer the
/// one Bulwark wrote, another writer changed it after the fix.
enum FixWitness {
    private static let written = Mutex<[String: FileIdentity]>([:])
    /// Entries kept at most (a fleet of roots with a few files each); beyond it the table starts
    /// again (a fix verified against a forgotten file is judged as before: "did not hold").
    private static let limit = 4096

    static func wrote(_ identity: FileIdentity, at display: String) {
        written.withLock { table in
            if table.count >= limit, table[display] == nil { table.removeAll(keepingCapacity: true) }
            table[display] = identity
        }
    }

    /// The paths written that `include` selects.
    static func written(where include: (String) -> Bool) -> [String] {
        written.withLock { $0.keys.filter(include) }
    }

    /// The files among `paths` (absolute, as `HostRoot.full` gives them) that Bulwark wrote and
    /// that are no longer what it wrote (changed, replaced or removed), with how.
    static func changed(_ paths: [String], in root: HostRoot) -> [String] {
        var result: [String] = []
        for path in Set(paths).sorted() {
            guard let identity = written.withLock({ $0[path] }) else { continue }
            let now: HostFile?
            do {
                now = try FileIO.read(path, in: root)
            } catch {
                result.append("\(root.hostPath(root.components(of: path))) (\(error.message))")
                continue
            }
            guard let now else {
                result.append("\(root.hostPath(root.components(of: path))) (removed)")
                continue
            }
            if now.identity != identity { result.append(root.hostPath(root.components(of: path))) }
        }
        return result
    }
}
