internal import Foundation
internal import BulwarkCore
internal import CLinux

/// What a read saw of a file. A write goes ahead only while the file at the path is still
/// this one (optimistic concurrency): same device and inode, size, modification time and bytes.
struct FileIdentity: Sendable, Hashable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var seconds: Int
    var nanoseconds: Int
    /// FNV-1a of the bytes: catches a change that keeps size and time (coarse clocks).
    var digest: UInt64

    init(_ info: stat, _ bytes: [UInt8]) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        seconds = info.st_mtim.tv_sec
        nanoseconds = info.st_mtim.tv_nsec
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        digest = hash
    }
}

/// A regular file's bytes as read, with what a later write needs to keep and check.
struct HostFile {
    /// The real path (symbolic links resolved inside the root).
    var path: String
    var bytes: [UInt8]
    var identity: FileIdentity
    var uid: uid_t
    var gid: gid_t
    var mode: mode_t
    /// Its number of names (hard links) when it was read.
    var links: UInt64 = 1
    /// The file's status when it was read, for `ContentCache`.
    var key: ContentKey
}

/// Reading and atomically replacing files under a host root, through descriptors only (see
/// `HostRoot`). Every file is opened `O_NOFOLLOW | O_NONBLOCK` after its type was checked, and
/// checked again with `fstat` on the descriptor: a FIFO, device or socket at a managed path
/// fails that resource at once and never blocks a pass.
enum FileIO {
    /// Largest host file read (sshd_config, shadow, ...); anything larger is refused, not truncated.
    static let maxSize = 16 << 20

    // MARK: - Reading

    /// The file `path` (root-relative, or an absolute path under the root) names, following
    /// symbolic links inside the root; nil when it does not exist.
    static func read(_ path: String, in root: HostRoot) throws(HostError) -> HostFile? {
        let walk = try root.walk(root.components(of: path))
        guard walk.exists else { return nil }
        guard let name = walk.name else { throw HostError("is a folder, not a regular file", path: root.path) }
        // Holding the target's lock, the read is the one a fix is built from: from a still file.
        if HostLock.isHeld(root) { return try settledRead(name, in: walk.folder, display: root.full(walk.resolved)) }
        return try read(name, in: walk.folder, display: root.full(walk.resolved))
    }

    /// The file's text, or nil when it does not exist. Bytes that are not UTF-8 are kept (see `LineFile`).
    static func readText(_ path: String, in root: HostRoot) throws(HostError) -> String? {
        try readLines(path, in: root)?.text
    }

    /// The file as lines, remembering what was read so that `write` can tell whether another
    /// writer changed it since.
    static func readLines(_ path: String, in root: HostRoot) throws(HostError) -> LineFile? {
        guard let file = try read(path, in: root) else { return nil }
        return try LineFile(bytes: file.bytes, origin: file.identity, path: file.path)
    }

    /// A file outside any target (an absolute path on this machine), read the same careful way.
    static func readText(_ path: String) throws(HostError) -> String? {
        try readText(path, in: try HostRoot("/"))
    }

    /// Whether `path` exists under the root (following links inside it).
    static func exists(_ path: String, in root: HostRoot) throws(HostError) -> Bool {
        try root.walk(root.components(of: path)).exists
    }

    /// The names in the folder `path` (following links inside the root), sorted; none when it
    /// does not exist.
    /// A name that is not UTF-8 cannot be named again (decoded, it is another name): where
    /// `mayMatter` says the host could read it (its raw bytes end in `.conf`, say), the listing
    /// is refused; any other such name is left out.
    static func list(_ path: String, in root: HostRoot, mayMatter: ([UInt8]) -> Bool = { _ in true }) throws(HostError) -> [String] {
        let walk = try root.walk(root.components(of: path))
        guard walk.exists else { return [] }
        var folder = walk.folder
        if let name = walk.name {
            let fd = openat(walk.folder.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOTDIR { return [] }
                throw HostError("cannot open the folder: \(errnoText())", path: root.full(walk.resolved))
            }
            folder = Directory(fd: fd, components: walk.resolved)
        }
        let found = names(in: folder, mayMatter: mayMatter)
        guard found.unreadable == 0 else {
            throw HostError("holds \(found.unreadable) name(s) that are not UTF-8, which Bulwark cannot read as the host would; "
                            + "rename them", path: root.full(walk.resolved))
        }
        return found.names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// `name` in `folder`, not following a link: nil when it does not exist.
    static func read(_ name: String, in folder: Directory, display: String) throws(HostError) -> HostFile? {
        // A file that changes while it is read (a writer that truncates, then writes) is read
        // again; one that keeps changing is an error, never half a file.
        for _ in 0..<3 {
            guard let (fd, before) = try openRegular(name, in: folder, flags: O_RDONLY, display: display) else { return nil }
            defer { close(fd) }
            guard before.st_size <= maxSize else { throw HostError("file is larger than \(maxSize) bytes", path: display) }
            let bytes = try readAll(fd, display)
            var after = stat()
            guard fstat(fd, &after) == 0 else { throw HostError("cannot stat: \(errnoText())", path: display) }
            guard after.st_size == before.st_size, after.st_mtim.tv_sec == before.st_mtim.tv_sec,
                  after.st_mtim.tv_nsec == before.st_mtim.tv_nsec else { continue }
            return HostFile(path: display, bytes: bytes, identity: FileIdentity(after, bytes), uid: after.st_uid,
                            gid: after.st_gid, mode: after.st_mode, links: UInt64(after.st_nlink), key: ContentKey(after))
        }
        throw HostError("changed every time it was read", path: display, code: .conflict)
    }

    /// Opens the regular file `name` in `folder` without following a link and without blocking;
    /// nil when it does not exist. Anything but a regular file is refused before it is opened
    /// (a device is never opened) and again on the descriptor (it may have been swapped).
    static func openRegular(_ name: String, in folder: Directory, flags: Int32, display: String)
        throws(HostError) -> (Int32, stat)? {
        var info = stat()
        guard fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw HostError("cannot stat: \(errnoText())", path: display)
        }
        guard info.st_mode & FileType.mask == FileType.regular else {
            throw HostError(FileType.refusal(info.st_mode, expected: "a regular file"), path: display)
        }
        let fd = openat(folder.fd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { return nil }
            if code == ELOOP { throw HostError(FileType.refusal(FileType.symlink, expected: "a regular file"), path: display) }
            throw HostError("cannot open: \(errnoText(code))", path: display)
        }
        var opened = stat()
        guard fstat(fd, &opened) == 0, opened.st_mode & FileType.mask == FileType.regular,
              opened.st_dev == info.st_dev, opened.st_ino == info.st_ino else {
            close(fd)
            throw HostError("was replaced while being opened", path: display, code: .conflict)
        }
        return (fd, opened)
    }

    private static func readAll(_ fd: Int32, _ display: String) throws(HostError) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HostError("cannot read: \(errnoText())", path: display)
            }
            if n == 0 { break }
            result += chunk[0..<n]
            guard result.count <= maxSize else { throw HostError("file is larger than \(maxSize) bytes", path: display) }
        }
        return result
    }

    /// Entry names of an open folder (without `.` and `..`). Read through a descriptor of its
    /// own (`openat(…, ".")`), not a `dup`: a duplicate shares the read position with the
    /// folder's descriptor, and a plan's held root is listed by several threads at once.
    static func names(in folder: Directory, mayMatter: ([UInt8]) -> Bool = { _ in true }) -> (names: [String], unreadable: Int) {
        let copy = openat(folder.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0 else { return ([], 0) }
        guard let stream = fdopendir(copy) else {
            close(copy)
            return ([], 0)
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var result: [String] = []
        var unreadable = 0
        while let entry = readdir(stream) {
            let (name, bytes) = withUnsafeBytes(of: entry.pointee.d_name) { raw -> (String?, [UInt8]) in
                guard let base = raw.baseAddress else { return ("", []) }
                let text = base.assumingMemoryBound(to: CChar.self)
                guard let name = String(validatingCString: text) else {
                    return (nil, Array(UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: strlen(text))))
                }
                return (name, [])
            }
            guard let name else {
                if mayMatter(bytes) { unreadable += 1 }
                continue
            }
            if name != "." && name != ".." && !name.isEmpty { result.append(name) }
        }
        return (result, unreadable)
    }

    // MARK: - Writing

    /// Replaces `path` with `file`'s bytes when the file there is still the one `file` was read
    /// from (or still absent, for a file read as missing); see `write(_:to:in:expected:…)`.
    @discardableResult
    static func write(
        _ file: LineFile, to path: String, in root: HostRoot, newFileMode: mode_t = 0o644, createFolders: mode_t? = nil,
        validate: ((String) throws -> Void)? = nil
    ) throws -> Bool {
        try write(file.bytes, to: path, in: root, expected: file.origin, newFileMode: newFileMode,
                  createFolders: createFolders, validate: validate)
    }

    /// Replaces `path` (the real path, as a read resolved it) with `bytes` atomically, following
    /// no symbolic link: the folder is opened component by component with `O_NOFOLLOW`; a
    /// temporary file is created in it with `O_CREAT | O_EXCL | O_NOFOLLOW` at a mode never wider
    /// than the final one, given the old file's owner and mode (or `newFileMode`), written,
    /// fsynced, checked by `validate` (through `/proc/PID/fd/N`, so what is checked is what is
    /// renamed), then renamed within that folder (right after passing `ChangeGate.current`), and
    /// the folder fsynced. `createFolders` creates the file's own folder when it is missing
    /// (also past the gate), not the folders above it.
    ///
    /// Throws a `.conflict` `HostError` (the caller re-reads and plans again) when the file at
    /// the path is no longer the one that was read (`expected`; nil: it did not exist), checked
    /// before anything is written and again just before the rename. Does nothing when the
    /// content is already equal. Returns whether the file changed.
    @discardableResult
    static func write(
        _ bytes: [UInt8], to path: String, in root: HostRoot, expected: FileIdentity?, newFileMode: mode_t = 0o644,
        createFolders: mode_t? = nil, validate: ((String) throws -> Void)? = nil
    ) throws -> Bool {
        let components = root.components(of: path)
        guard let name = components.last, name != ".." else { throw HostError("not a file path", path: path) }
        let display = root.full(components)
        let folder = try openFolder(of: components, in: root, create: createFolders, display: display)
        removeStaleTemporaries(in: folder, whateverTheirAge: HostLock.isHeld(root))
        let current = try read(name, in: folder, display: display)
        if let current, current.bytes == bytes { return false }
        try check(current, expected, display)

        let finalMode = current.map { $0.mode & 0o7777 } ?? newFileMode
        let (fd, temporary) = try createTemporary(for: name, in: folder, mode: finalMode & 0o600, display: display)
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlinkat(folder.fd, temporary, 0) }
        }
        if let current {
            guard fchown(fd, current.uid, current.gid) == 0 || geteuid() != 0 else {
                throw HostError("cannot keep the owner: \(errnoText())", path: display)
            }
        }
        guard fchmod(fd, finalMode) == 0 else { throw HostError("cannot set the mode: \(errnoText())", path: display) }
        if current != nil { try copyAttributes(of: name, in: folder, to: fd, display: display) }
        guard Descriptor.writeAll(fd, bytes) else {
            throw HostError("cannot write: \(errnoText())", path: root.full(folder.components + [temporary]))
        }
        guard fsync(fd) == 0 else { throw HostError("cannot fsync: \(errnoText())", path: display) }
        var written = stat()
        guard fstat(fd, &written) == 0 else { throw HostError("cannot stat: \(errnoText())", path: display) }
        if let validate {
            let byDescriptor = "/proc/\(getpid())/fd/\(fd)"
            try validate(access(byDescriptor, F_OK) == 0 ? byDescriptor : root.full(folder.components + [temporary]))
        }
        // Still the file that was read? Another writer's change is never overwritten.
        try check(try read(name, in: folder, display: display), expected, display)
        // The rename is the change: the fix's intents are marked tried now, not before the checks
        // above (`ChangeGate`; nothing when the step has no gate). No gate, no rename.
        try HostChange.announce()
        guard renameat(folder.fd, temporary, folder.fd, name) == 0 else {
            throw HostError("cannot rename into place: \(errnoText())", path: display)
        }
        renamed = true
        FixWitness.wrote(FileIdentity(written, bytes), at: display)
        var after = stat()
        if fstat(fd, &after) == 0 { OwnChanges.wrote(written, renamed: after, replacing: current?.identity) }
        fsync(folder.fd)
        return true
    }

    /// The folder of the file at `components`, opened following no link; made (`create`) when it
    /// is missing, past the change gate: a folder made is a change too, and the file in it is
    /// new (nothing is left to refuse it but another writer making it first).
    private static func openFolder(of components: [String], in root: HostRoot, create: mode_t?, display: String) throws(HostError)
        -> Directory {
        let parent = Array(components.dropLast())
        guard let create else { return try root.openFolderNoFollow(parent) }
        switch Result(catching: { () throws(HostError) -> Directory in try root.openFolderNoFollow(parent) }) {
        case .success(let folder):
            return folder
        case .failure(let error) where error.code == .missing:
            try HostChange.announce(path: display)
            return try root.openFolderNoFollow(parent, create: create, creatingFrom: components.count - 2)
        case .failure(let error):
            throw error
        }
    }

    /// The extended attributes of the file `name` in `folder`, set on `fd`, the file about to
    /// replace it: a replace makes a new file, which would start without them, and an
    /// etc/shadow labelled `shadow_t` would become `etc_t`, its POSIX ACL gone. A security
    /// module's label (`security.*`) or an ACL (`system.posix_acl_*`) that cannot be set stops
    /// the write; the others (`user.*`, `trusted.*`) are copied where they can be. The
    /// identity check before the rename tells whether this was still the file read.
    private static func copyAttributes(of name: String, in folder: Directory, to fd: Int32, display: String) throws(HostError) {
        let source = openat(folder.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard source >= 0 else { throw HostError("cannot open to read its attributes: \(errnoText())", path: display) }
        defer { close(source) }
        let size = flistxattr(source, nil, 0)
        if size < 0, errno == ENOTSUP { return }
        guard size >= 0 else { throw HostError("cannot list its attributes: \(errnoText())", path: display) }
        guard size > 0 else { return }
        var list = [CChar](repeating: 0, count: size)
        let listed = flistxattr(source, &list, size)
        guard listed >= 0 else { throw HostError("cannot list its attributes: \(errnoText())", path: display) }
        for raw in list[..<listed].split(separator: 0) {
            let attribute = String(decoding: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let guarding = attribute.hasPrefix("security.") || attribute.hasPrefix("system.posix_acl_")
            let length = fgetxattr(source, attribute, nil, 0)
            var value = [UInt8](repeating: 0, count: max(length, 0))
            let read = length < 0 ? -1 : fgetxattr(source, attribute, &value, value.count)
            guard read >= 0, fsetxattr(fd, attribute, value, read, 0) == 0 else {
                guard !guarding else {
                    throw HostError("cannot carry its attribute \(attribute) over to the new file (\(errnoText())); "
                                    + "not replaced without it", path: display)
                }
                continue
            }
        }
    }

    private static func check(_ current: HostFile?, _ expected: FileIdentity?, _ display: String) throws(HostError) {
        guard current?.identity != expected else { return }
        let what = switch (current, expected) {
        case (nil, _): "was removed"
        case (_, nil): "was created"
        default: "was changed"
        }
        throw HostError("\(what) by another writer since Bulwark read it; not overwritten", path: display, code: .conflict)
    }

    private static func createTemporary(for name: String, in folder: Directory, mode: mode_t, display: String)
        throws(HostError) -> (Int32, String) {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        for _ in 0..<100 {
            let suffix = String((0..<6).map { _ in letters[Int.random(in: 0..<letters.count)] })
            let temporary = ".\(name).bulwark-\(suffix)"
            let fd = openat(folder.fd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd >= 0 { return (fd, temporary) }
            if errno != EEXIST { throw HostError("cannot create a temporary file: \(errnoText())", path: display) }
        }
        throw HostError("cannot create a temporary file: every name taken", path: display)
    }

    /// Overwrites a kernel parameter file in place (`/proc/sys/...` cannot be renamed over),
    /// following no link; a plain file standing in for one is replaced whole (`replaceWhole`).
    /// Returns false when the file does not exist (no such parameter). The write (or the rename)
    /// passes `ChangeGate.current` first, after every check.
    /// Opened without `O_TRUNC`, and emptied only once the file opened is known to be the one
    /// looked at and to have no other name: a file swapped in between, or a hard link to another
    /// file (etc/shadow, in a root whose proc/sys is a plain folder), is never truncated.
    @discardableResult
    static func writeInPlace(_ path: String, _ text: String, in root: HostRoot) throws(HostError) -> Bool {
        let components = root.components(of: path)
        guard let name = components.last else { throw HostError("not a file path", path: path) }
        let display = root.full(components)
        let folder: Directory
        do {
            folder = try root.openFolderNoFollow(Array(components.dropLast()))
        } catch where error.code == .missing {
            return false
        }
        guard let (fd, opened) = try openRegular(name, in: folder, flags: O_WRONLY, display: display) else { return false }
        defer { close(fd) }
        guard opened.st_nlink <= 1 else {
            throw HostError("has \(opened.st_nlink) hard links: writing it would write every other name it has "
                            + "(a link to etc/shadow, say); left alone: remove the other links", path: display)
        }
        let bytes = Array(text.utf8)
        let system = bulwark_file_system_type(fd)
        guard system != -1 else { throw HostError("cannot read its file system: \(errnoText())", path: display) }
        guard system == Self.procFileSystem else {
            // A temporary a killed replace left beside it goes, as `write` removes its own.
            removeStaleTemporaries(in: folder, whateverTheirAge: HostLock.isHeld(root))
            try replaceWhole(name, in: folder, like: opened, with: bytes, display: display)
            return true
        }
        // The write is the change (`ChangeGate`), even where the file holds the value already.
        try HostChange.announce(path: display)
        guard ftruncate(fd, 0) == 0 else { throw HostError("cannot empty: \(errnoText())", path: display) }
        let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw HostError("cannot write: \(errnoText())", path: display) }
        return true
    }

    /// `PROC_SUPER_MAGIC`: a file of the kernel's `/proc`, written in place as one value.
    static let procFileSystem = 0x9fa0

    /// A plain file standing in for one of `/proc/sys` (a root that is a folder tree, as
    /// sandboxes and the demo have): replaced whole by a rename, with its owner and mode. Emptied
    /// and then written in place, a process killed between the two left it empty, and an empty
    /// runtime value read as no such parameter: the persisted one was taken for it, and a fix was
    /// recorded verified while the file held nothing. Not fsynced: a file of `/proc` does not
    /// outlive a crash either, and what a kill leaves is the old value or the new one.
    private static func replaceWhole(_ name: String, in folder: Directory, like old: stat, with bytes: [UInt8],
                                     display: String) throws(HostError) {
        let mode = old.st_mode & 0o7777
        let (fd, temporary) = try createTemporary(for: name, in: folder, mode: mode & 0o600, display: display)
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlinkat(folder.fd, temporary, 0) }
        }
        guard fchown(fd, old.st_uid, old.st_gid) == 0 || geteuid() != 0 else {
            throw HostError("cannot keep the owner: \(errnoText())", path: display)
        }
        guard fchmod(fd, mode) == 0 else { throw HostError("cannot set the mode: \(errnoText())", path: display) }
        guard Descriptor.writeAll(fd, bytes) else { throw HostError("cannot write: \(errnoText())", path: display) }
        var written = stat()
        guard fstat(fd, &written) == 0 else { throw HostError("cannot stat: \(errnoText())", path: display) }
        // The rename is the change (`ChangeGate`).
        try HostChange.announce(path: display)
        guard renameat(folder.fd, temporary, folder.fd, name) == 0 else {
            throw HostError("cannot rename into place: \(errnoText())", path: display)
        }
        renamed = true
        var after = stat()
        if fstat(fd, &after) == 0 { OwnChanges.wrote(written, renamed: after, replacing: nil) }
    }

    // MARK: - Leftovers

    /// When this process started (from `/proc`), less two seconds for the kernel's rounding of
    /// the boot time; the time this was first asked where `/proc` cannot tell.
    static let processStart: Int = {
        let now = Int(Date().timeIntervalSince1970)
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")"),
              let system = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let bootLine = system.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
              let boot = Int(bootLine.dropFirst(6).trimmingCharacters(in: .whitespaces)) else { return now }
        // Fields after the command name start at field 3 (state); starttime is field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        guard fields.count > 19, let started = Int(fields[19]), ticks > 0 else { return now }
        return min(now, boot + started / ticks - 2)
    }()

    /// Whether `name` is one of Bulwark's temporary files (`.NAME.bulwark-XXXXXX`).
    static func isTemporary(_ name: String) -> Bool {
        guard name.hasPrefix("."), let marker = name.range(of: ".bulwark-", options: .backwards),
              marker.lowerBound > name.index(after: name.startIndex) else { return false }
        let suffix = name[marker.upperBound...]
        return suffix.count == 6 && suffix.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
    }

    /// Removes Bulwark's temporary files left in `folder` by a process that was killed between
    /// creating and renaming one: regular files of that name. Holding the target's lock
    /// (`whateverTheirAge`), every one is a leftover; without it, only those last modified before
    /// this process started (a live writer's temporary file is newer). Age alone missed a
    /// leftover of a process killed less than two seconds before this one started.
    static func removeStaleTemporaries(in folder: Directory, whateverTheirAge: Bool = false) {
        for name in names(in: folder).names where isTemporary(name) {
            var info = stat()
            guard fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0,
                  info.st_mode & FileType.mask == FileType.regular,
                  whateverTheirAge || info.st_mtim.tv_sec < processStart else { continue }
            unlinkat(folder.fd, name, 0)
        }
    }
}

/// A text file as lines, each kept with its own ending so untouched lines stay byte for byte.
///
/// Bytes that are not valid UTF-8 (sshd accepts them in comments) are carried as the private
/// use scalars U+10FF80…U+10FFFF and written back as the same bytes, so a line Bulwark does not
/// own is never altered. A file that has both such bytes and those scalars is refused as
/// ambiguous.
struct LineFile {
    var lines: [Substring]
    /// What was read (nil: the file did not exist, or this is not from a file): a write checks
    /// that the file is still this one.
    var origin: FileIdentity?
    /// Whether some bytes were not UTF-8 and are carried as private use scalars.
    var escaped = false

    init(_ text: String) {
        // Split on the newline byte: a scalar boundary, and much cheaper than Characters.
        var result: [Substring] = []
        let bytes = text.utf8
        var start = bytes.startIndex
        var index = start
        while index < bytes.endIndex {
            let next = bytes.index(after: index)
            if bytes[index] == 10 {
                result.append(text[start..<next])
                start = next
            }
            index = next
        }
        if start < bytes.endIndex { result.append(text[start...]) }
        lines = result
    }

    /// Decodes a file's bytes, keeping invalid UTF-8 as private use scalars.
    init(bytes: [UInt8], origin: FileIdentity? = nil, path: String? = nil) throws(HostError) {
        if let text = String(validating: bytes, as: UTF8.self) {
            self.init(text)
        } else {
            var scalars = String.UnicodeScalarView()
            var iterator = bytes.makeIterator()
            var parser = Unicode.UTF8.ForwardParser()
            var offset = 0
            decoding: while true {
                switch parser.parseScalar(from: &iterator) {
                case .valid(let encoded):
                    let scalar = Unicode.UTF8.decode(encoded)
                    guard !LineFile.escapes.contains(scalar.value) else {
                        throw HostError("has bytes that are not UTF-8 and characters U+10FF80…U+10FFFF; cannot keep both", path: path)
                    }
                    scalars.append(scalar)
                    offset += encoded.count
                case .error(let length):
                    for byte in bytes[offset..<(offset + length)] {
                        let value = byte < 0x80 ? UInt32(byte) : 0x10FF00 + UInt32(byte)
                        if let scalar = Unicode.Scalar(value) { scalars.append(scalar) }
                    }
                    offset += length
                case .emptyInput:
                    break decoding
                }
            }
            self.init(String(scalars))
            escaped = true
        }
        self.origin = origin
    }

    static let escapes: ClosedRange<UInt32> = 0x10FF80...0x10FFFF

    /// A line's content without its ending.
    static func content(_ line: Substring) -> Substring {
        var line = line
        while line.last == "\n" || line.last == "\r\n" || line.last == "\r" { line.removeLast() }
        return line
    }

    /// A line as glibc's account files are read (`etc/passwd`, `etc/shadow`, `etc/group`): without
    /// its line feed byte, and a carriage return before it kept. It ends the last field there:
    /// `/bin/bash\r` is no shell to glibc, and `bob\r` not bob. (By `Character`, `\r\n` is one,
    /// and `content` drops both.)
    /// glibc's reader (`__nss_readline`) also drops the C blanks a line starts with (`  ops:x:…`
    /// is ops; a line then empty or starting with `#` is skipped), by moving the rest of the line
    /// to its start up to a NUL byte, the NUL itself not moved: where no line feed follows (the
    /// last line of a file without one, or a NUL before it), the line's last bytes stay behind
    /// it and are read twice (`  q:x:1:1::/h:/bin/bash` at the end of a file has the shell
    /// `/bin/bashsh`). This is that reading, byte for byte.
    static func glibcContent(_ line: Substring) -> Substring {
        // Most lines: no blank first and no NUL, at most the line feed to drop.
        if let first = line.utf8.first, !isCSpace(first), !line.utf8.contains(0) {
            return line.utf8.last == UInt8(ascii: "\n") ? Substring(line.utf8.dropLast()) : line
        }
        let bytes = Array(line.utf8)
        let skipped = bytes.prefix(while: isCSpace).count
        var read = bytes
        if skipped > 0 {
            let moved = bytes[skipped...].prefix { $0 != 0 }.count  // strlen(p)
            read = Array(bytes[skipped..<(skipped + moved)]) + bytes[moved...]
        }
        if let nul = read.firstIndex(of: 0) { read = Array(read[..<nul]) }
        if let feed = read.firstIndex(of: UInt8(ascii: "\n")) { read = Array(read[..<feed]) }
        return skipped == 0 && read.count == bytes.count ? line : Substring(decoding: read, as: UTF8.self)
    }

    /// The line feed a line written back after `glibcContent` ends with: one where it had one.
    static func glibcEnding(_ line: Substring) -> String {
        line.utf8.last == UInt8(ascii: "\n") ? "\n" : ""
    }

    /// The line's ending (`\n`, `\r\n` or nothing).
    static func ending(_ line: Substring) -> String {
        if line.hasSuffix("\r\n") { return "\r\n" }
        return line.hasSuffix("\n") ? "\n" : ""
    }

    /// Appends a line, adding a newline to the last line first when it has none.
    mutating func append(_ line: String) {
        if let last = lines.last, LineFile.ending(last).isEmpty { lines[lines.count - 1] = last + "\n" }
        lines.append(Substring(line + "\n"))
    }

    /// Inserts a line; at the end, the last line gets its newline first (else the two would join).
    mutating func insert(_ line: String, at index: Int) {
        if index == lines.count, let last = lines.last, LineFile.ending(last).isEmpty { lines[lines.count - 1] = last + "\n" }
        lines.insert(Substring(line + "\n"), at: index)
    }

    var text: String { lines.joined() }

    /// The bytes to write: as read for every line not changed.
    var bytes: [UInt8] {
        guard escaped else { return Array(text.utf8) }
        var result: [UInt8] = []
        for line in lines {
            for scalar in line.unicodeScalars {
                if LineFile.escapes.contains(scalar.value) {
                    result.append(UInt8(truncatingIfNeeded: scalar.value - 0x10FF00))
                } else {
                    result.append(contentsOf: String(scalar).utf8)
                }
            }
        }
        return result
    }
}
