internal import Foundation
internal import Synchronization

// Two guards against other writers of a host file, beside the identity check before a rename
// (`FileIO.write`):
//
// - **A settled read under the target's lock.** A file another process is rewriting (truncated,
//   then written, perhaps in several writes) can be read at a moment when it is whole-looking
//   but short: Bulwark would build its fix on half a file. A read made while holding the lock
//   (the read a fix is built from) is taken only from a file that has been still for
//   `FileIO.settle`: when its status changed more recently, Bulwark waits that long and looks
//   again, and reads again while it keeps changing, at most `FileIO.settleAttempts` times;
//   then the fix is not made (a `.conflict`, recorded with the reason).
// - **What Bulwark wrote** (`FixWitness`): the identity of each file a fix renamed into place,
//   so that a verification that finds the fix gone can tell "another writer changed the file
//   after Bulwark's write" from "the fix did not take".

extension FileIO {
    /// How long a file must have been still before a fix is built from it.
    static let settle: Duration = .milliseconds(100)
    /// How many times a file still being written is looked at again before the fix gives up.
    static let settleAttempts = 20

    /// Whether the file's status changed within `settle` before now (wall clock, as the file
    /// system stamps it; a time in the future counts as recent).
    static func recentlyChanged(_ info: stat) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let changed = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
        let current = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
        let window = settle.components.seconds * 1_000_000_000 + settle.components.attoseconds / 1_000_000_000
        return current - changed < window
    }

    /// The file's status as a comparable value: inode, size, modification and change times.
    static func status(_ info: stat) -> [Int64] {
        [Int64(bitPattern: UInt64(info.st_dev)), Int64(bitPattern: UInt64(info.st_ino)), Int64(info.st_size),
         Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec), Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec)]
    }

    /// `read(name, in: folder, …)`, from a file that has been still for `settle`: a file whose
    /// status changed more recently is looked at again after `settle` (measured on the monotonic
    /// clock), and read again when it changed meanwhile. Throws a `.conflict` when it is still
    /// changing after `settleAttempts` looks.
    static func settledRead(_ name: String, in folder: Directory, display: String) throws(HostError) -> HostFile? {
        var file = try read(name, in: folder, display: display)
        for _ in 0..<settleAttempts {
            var info = stat()
            guard fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                // Gone (or not reachable) since the read: read again, which says what it is now.
                if file == nil, errno == ENOENT { return nil }
                file = try read(name, in: folder, display: display)
                continue
            }
            guard let read = file, read.identity.inode == UInt64(info.st_ino), read.identity.device == UInt64(info.st_dev),
                  read.identity.size == Int64(info.st_size) else {
                // Created, replaced or resized since the read.
                file = try self.read(name, in: folder, display: display)
                continue
            }
            guard recentlyChanged(info) else { return read }
            let before = status(info)
            Thread.sleep(forTimeInterval: Double(settle.components.seconds) + Double(settle.components.attoseconds) / 1e18)
            var later = stat()
            guard fstatat(folder.fd, name, &later, AT_SYMLINK_NOFOLLOW) == 0 else {
                file = try self.read(name, in: folder, display: display)
                continue
            }
            // Still for a whole `settle` since it was read: what was read is what is there.
            if status(later) == before { return read }
            file = try self.read(name, in: folder, display: display)
        }
        throw HostError("was still being written by another process after \(settleAttempts) looks "
                        + "\(settle) apart; not changed, so that no fix is built on half a file", path: display, code: .conflict)
    }
}

/// The files fixes renamed into place, with what each was when written, per absolute path in
/// this process. Verification asks it when a fix is found gone: when the file is no longer the
/// one Bulwark wrote, another writer changed it after the fix.
enum FixWitness {
    private static let written = Mutex<[String: FileIdentity]>([:])
    /// Entries kept at most (a fleet of roots with a few files each); the oldest half goes beyond it.
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
