internal import Foundation
internal import Synchronization
internal import BulwarkCore
// `stat` and `timespec`: in a build where CLinux's header brings them in first, their members are CLinux's.
internal import CLinux

/// Parsed file contents, reused only while every file they came from is unchanged: same
/// device, inode, size and modification time (nanoseconds). An atomic rename gives a new
/// inode, so Bulwark's own writes always invalidate an entry. Within one observation scope (a
/// plan), an entry is checked once: the plan's snapshot of the target.
final class ParseCache<Value: Sendable>: Sendable {
    private struct Entry: Sendable {
        var value: Value
        var files: [String: ContentKey?]
        /// For a parse of files changed a moment ago: the one observation scope it may serve.
        var scope: UInt64?
        /// The observation scope that last found every file unchanged (or read them): within
        /// it, the files are not looked at again. One plan reads a target as one snapshot, so
        /// its other resources there need not stat the same files again (a plan of 100 roots
        /// checked each sysctl folder and file 7 times per target, once per resource).
        var checkedIn: UInt64?
        /// Which store this is: a check marks only the entry it checked, not one stored since.
        var generation: UInt64
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let generations = Atomic<UInt64>(0)

    /// The value stored for `key` while every file it came from is unchanged. With `paths`,
    /// only if its files are exactly those paths (as a walk resolves them now): a link on the
    /// way that was pointed elsewhere since makes a miss, not the old file's parse.
    ///
    /// A parse stored from files changed a moment ago (`unlessRecent`) serves only reads in
    /// the observation scope that made it, and never one with `settledOnly` (under the lock).
    /// With `settledOnly`, no parse serves while a process holds one of its files open for writing.
    ///
    /// Within an observation scope, an entry found unchanged once is not checked again (the
    /// plan's snapshot of the target); a fix under the lock (`settledOnly`) always checks.
    func lookup(_ key: String, paths: Set<String>? = nil, settledOnly: Bool = false) -> Value? {
        guard let entry = entries.withLock({ $0[key] }) else { return nil }
        let current = ObservationScope.current?.id
        if let scope = entry.scope, settledOnly || scope != current { return nil }
        if let paths, Set(entry.files.keys) != paths { return nil }
        if !settledOnly, let current, entry.checkedIn == current { return entry.value }
        for (path, identity) in entry.files {
            let unchanged = settledOnly && identity != nil ? Self.unwritten(path, is: identity) : fileStatus(path).map(ContentKey.init) == identity
            if !unchanged { return nil }
        }
        if !settledOnly, let current {
            entries.withLock { entries in
                if entries[key]?.generation == entry.generation { entries[key]?.checkedIn = current }
            }
        }
        return entry.value
    }

    /// Under the lock: whether the file at `path` is still `identity` and no process holds it
    /// open for writing or mapped writable (`FileIO.writers`). Such a writer can change bytes
    /// without moving any time the key holds (a page of a mapping written to a second time; on
    /// tmpfs, every time), so a parse is not reused while one exists and the fix reads the file
    /// itself. Where the kernel cannot say, it is not reused either.
    private static func unwritten(_ path: String, is identity: ContentKey?) -> Bool {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var info = stat()
        return fstat(fd, &info) == 0 && ContentKey(info) == identity && FileIO.writers(of: fd, status: info) == .none
    }

    /// Stores `value` with the identities taken before its files were read. With
    /// `unlessRecent`, not when a file was modified in the last two seconds: the kernel stamps
    /// modification times from a coarse clock (a few milliseconds), so a same-size rewrite in
    /// place right after the read could keep the identity the read saw (git's "racily clean"
    /// files); such a file is read again next time.
    ///
    /// Inside an observation scope (a plan's reads), such a parse is stored for that scope
    /// alone: the plan's other resources on the target share one read of the file, as one
    /// snapshot, and the next plan or a fix reads it again.
    func store(_ value: Value, for key: String, readAt snapshot: FileSnapshot, unlessRecent: Bool = false) {
        var scope: UInt64?
        if unlessRecent, snapshot.files.contains(where: { path, key in key?.isRecent == true && !snapshot.ownChange.contains(path) }) {
            guard let current = ObservationScope.current?.id else { return }
            scope = current
        }
        let generation = generations.add(1, ordering: .relaxed).newValue
        // Read in this scope: its other reads of the target share this snapshot.
        let checkedIn = ObservationScope.current?.id
        entries.withLock { $0[key] = Entry(value: value, files: snapshot.files, scope: scope, checkedIn: checkedIn, generation: generation) }
    }

}

/// The status of the file at `path` (`stat`), or nil when there is none.
private func fileStatus(_ path: String) -> stat? {
    var info = stat()
    return stat(path, &info) == 0 ? info : nil
}

/// Identities of files taken *before* they are read: a cache entry stored with identities taken
/// after the read could pair a file's old content with its new identity when the file is
/// replaced in between, and then be reused while stale.
///
/// A file whose status changed a moment ago only because Bulwark changed its mode or owner
/// (`OwnChanges`), and whose content was last modified more than two seconds ago, is not
/// "recent" for `ParseCache.store`: the change time moved, the content did not, and any write
/// after it moves the modification time away from the old one the key holds. A fix of
/// etc/group's mode made every later fix on the host read passwd and group again for two
/// seconds (5 % of a 20,000-resource pass by perf).
struct FileSnapshot: Sendable {
    fileprivate var files: [String: ContentKey?] = [:]
    /// Paths whose recent change time is Bulwark's own metadata change (see above).
    fileprivate var ownChange: Set<String> = []

    mutating func take(_ path: String) {
        guard files[path] == nil else { return }
        let info = fileStatus(path)
        let key = info.map(ContentKey.init)
        files[path] = .some(key)
        if let info, let key, !ContentKey.isRecent(key.modified), OwnChanges.isOwn(info) { ownChange.insert(path) }
    }
}

// MARK: - One file's parsed content

/// A regular file as a read found it: device, inode, size, modification and change times
/// (nanoseconds). A write in place moves the times, a chmod or chown the change time, an atomic
/// rename gives a new inode: any of them makes a new key.
struct ContentKey: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: Int
    var modifiedNanoseconds: Int
    var changed: Int
    var changedNanoseconds: Int

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modified = info.st_mtim.tv_sec
        modifiedNanoseconds = info.st_mtim.tv_nsec
        changed = info.st_ctim.tv_sec
        changedNanoseconds = info.st_ctim.tv_nsec
    }

    /// Whether the file was modified or its status changed in the last two seconds (or is
    /// stamped in the future): the kernel stamps files from a coarse clock, so a same-size
    /// rewrite right after a read can keep every field of the key (git's "racily clean" files).
    var isRecent: Bool { Self.isRecent(modified) || Self.isRecent(changed) }

    /// For tests: the wall clock's second `isRecent` takes as now (set by none of Bulwark's
    /// code), so that a change counts as a moment ago however slowly the test gets to its read.
    @TaskLocal static var now: Int?

    static func isRecent(_ seconds: Int) -> Bool {
        if let now { return seconds >= now - 2 }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return seconds >= now.tv_sec - 2
    }
}

/// What a parse made of a file's bytes, by the file's `ContentKey`, within this process: a
/// file that several resources (four `LoginDefs` keys of a host) or guards read is parsed once
/// while it is unchanged. The path is still walked on every lookup as every read walks it
/// (links judged by their owner, never leaving the root), so the cache only ever stands in for
/// the bytes of the very file that walk reaches; within a plan, the file its first walk reached
/// (`PlanReads`). Never under the target's lock (a fix is built
/// from a fresh, settled read). The parse of a file changed a moment ago (`ContentKey.isRecent`)
/// serves only the plan that made it, as `ParseCache`'s does, and is kept by that plan
/// (`PlanReads`), so it goes with it: that plan's other resources on the target share one read
/// of it (a host's four login.defs keys), and the next plan reads it again. Bounded: when full,
/// it starts again.
final class ContentCache<Value: Sendable>: Sendable {
    private let entries = Mutex<[ContentKey: Value]>([:])
    private let limit: Int

    init(limit: Int = 1024) { self.limit = max(1, limit) }

    /// `parse` of the file `path` names under the root (following links inside it as a read
    /// does), reused while the file is unchanged; nil when it does not exist.
    func value(_ path: String, in root: HostRoot, parse: (HostFile) throws -> Value) throws -> Value? {
        // Within a plan, a path read before leads to the same file (`PlanReads`).
        let locked = HostLock.isHeld(root)
        let plan = locked ? nil : PlanReads.current
        if let plan, let key = plan.file(path, under: root.path), let known = kept(key, in: plan) {
            return known
        }
        let walk = try root.walk(root.components(of: path))
        guard walk.exists else { return nil }
        guard let name = walk.name else { throw HostError("is a folder, not a regular file", path: root.path) }
        let display = root.full(walk.resolved)
        guard !locked else {
            return try FileIO.settledRead(name, in: walk.folder, display: display).map(parse)
        }
        var info = stat()
        if fstatat(walk.folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & FileType.mask == FileType.regular,
           let known = kept(ContentKey(info), in: plan) {
            plan?.found(ContentKey(info), at: path, under: root.path)
            return known
        }
        guard let file = try FileIO.read(name, in: walk.folder, display: display) else { return nil }
        let value = try parse(file)
        if file.key.isRecent {
            // Changed a moment ago: kept by this plan alone, and not at all outside one.
            guard let plan else { return value }
            plan.keep(value, parsedBy: self, of: file.key)
        } else {
            entries.withLock { table in
                if table.count >= limit { table.removeAll(keepingCapacity: true) }
                table[file.key] = value
            }
        }
        plan?.found(file.key, at: path, under: root.path)
        return value
    }

    /// The parse kept of the file `key`: by this cache, or by the plan `plan` for a file
    /// changed a moment ago.
    private func kept(_ key: ContentKey, in plan: PlanReads?) -> Value? {
        entries.withLock { $0[key] } ?? plan?.parse(by: self, of: key)
    }
}
