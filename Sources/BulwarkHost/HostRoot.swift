internal import Foundation
internal import BulwarkCore
internal import CLinux
internal import Synchronization

/// The directory a host target is rooted at (`/` for the machine itself), and the only place
/// the host adapter reads or writes.
///
/// Every read and write starts from a descriptor of the root and opens one component at a
/// time with `openat(…, O_NOFOLLOW)`, so what a path means cannot change between a check and
/// the use (see `FileIO`):
/// - a **read** follows symbolic links, interpreted inside the root as the host itself would
///   see them when booted from it (an absolute link starts again at the root, `..` never
///   climbs above it: `RESOLVE_IN_ROOT`). Debian's `etc/sysctl.d/99-sysctl.conf ->
///   ../sysctl.conf` is read; a link can never make a read leave the root.
/// - a **write** (content, mode or owner) follows no symbolic link at all, intermediate or
///   final: it is addressed to the real path a read resolved, and fails when any component
///   has since become a link. A local user who swaps a file or folder for a link makes that
///   one resource fail; nothing is written through the link.
public struct HostRoot: Sendable, Hashable {
    public let path: String

    public init(_ path: String) throws(HostError) {
        guard PathText.isAbsolute(path) else { throw HostError("target root must be an absolute path", path: path) }
        let trimmed = PathText.trimmingTrailingSlashes(path)
        // A plan that holds the root open has checked it already (`PlanReads`).
        if PlanReads.current?.root(trimmed) == nil {
            var info = stat()
            guard stat(trimmed, &info) == 0, info.st_mode & FileType.mask == FileType.directory else {
                throw HostError("target root does not exist or is not a directory", path: trimmed)
            }
        }
        self.path = trimmed
    }

    /// The root folder's device and inode: two targets that name one folder by different paths
    /// (a link, a bind mount) have the same identity. Nil when it cannot be read.
    var identity: String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return "\(info.st_dev):\(info.st_ino)"
    }

    init(target: Target) throws(HostError) {
        guard let root = target.hostRoot else { throw HostError("target \(target.name) has no root") }
        try self.init(root)
    }

    /// The real path of `relative` (written as in the target, `/etc/shadow` or `etc/shadow`, or
    /// an absolute path under `path` as this function returns) inside the root, following
    /// symbolic links as a read does. The last components need not exist: they are taken
    /// literally. Never leaves the root.
    public func resolve(_ relative: String) throws(HostError) -> String {
        // Walked every time, in a plan too: callers hand the path to calls that follow links
        // (`stat`), so a path resolved earlier must not stand for what the path is now.
        let walk = try walk(components(of: relative))
        return full(walk.resolved)
    }

    /// `relative`'s components below the root: an absolute path under `path` loses that prefix;
    /// empty and `.` components are dropped.
    func components(of relative: String) -> [String] {
        var text = relative.utf8[...]
        if path != "/", text.starts(with: path.utf8) {
            let rest = text.dropFirst(path.utf8.count)
            if rest.first ?? UInt8(ascii: "/") == UInt8(ascii: "/") { text = rest }
        }
        return PathText.components(Substring(text)).filter { !$0.isSameBytes(".") }
    }

    /// The absolute path of `components` under the root, for messages and as a key.
    func full(_ components: [String]) -> String {
        components.isEmpty ? path : (path == "/" ? "" : path) + "/" + components.joined(separator: "/")
    }

    /// `components` as the host sees them (`/etc/shadow`), for messages.
    func hostPath(_ components: [String]) -> String { "/" + components.joined(separator: "/") }

    // MARK: - Walking

    /// An open root descriptor.
    func openRoot() throws(HostError) -> Directory {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw HostError("cannot open the target root: \(errnoText())", path: path) }
        return Directory(fd: fd, components: [])
    }

    /// The root descriptor a read starts from: within a plan, outside the target's lock, the one
    /// the plan holds (`PlanReads`); otherwise opened now.
    func rootForReading() throws(HostError) -> Directory {
        guard let reads = PlanReads.current, !HostLock.isHeld(self) else { return try openRoot() }
        if let held = reads.root(path) { return held }
        return reads.hold(try openRoot(), as: path)
    }

    /// The folder `components` names, opened without following any symbolic link: each
    /// component must be a real directory. Missing folders from index `creatingFrom` on are
    /// created with mode `create` when given (never one on the way to them: a folder swapped
    /// away for a moment is not replaced by an empty one).
    ///
    /// `trusted`: the root, every folder on the way and the folder itself must also be root's or
    /// the user's Bulwark runs as, and writable by no one else (`StrictModes.folderDoubt`), each
    /// judged by the descriptor the walk goes on from. For what Bulwark keeps on the target
    /// (`OwedReloads`): whoever could write in any of them could take it away or swap it (the
    /// owner of `run` can rename `run/bulwark`). A folder then found missing is missing for
    /// everyone: only a trusted owner could have taken it away.
    func openFolderNoFollow(_ components: [String], create: mode_t? = nil, creatingFrom: Int = 0,
                            trusted: Bool = false, keeps: String = "the reloads it owes") throws(HostError) -> Directory {
        var current = try openRoot()
        if trusted { try requireTrusted(current, keeps: keeps) }
        // Every folder there, none of them a link: opened in one call. Anything else (a link, a
        // missing folder) is walked component by component below, which says what it is.
        if !trusted, let fd = LinkFreeOpen.open(components[...], under: current.fd, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC) {
            return Directory(fd: fd, components: components)
        }
        for (index, part) in components.enumerated() {
            guard part != "..", part != ".", !part.isEmpty else {
                throw HostError("'\(part)' in a path Bulwark writes", path: full(components))
            }
            let here = current.components + [part]
            var fd = openat(current.fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if fd < 0, errno == ENOENT, let create, index >= creatingFrom {
                guard mkdirat(current.fd, part, create) == 0 || errno == EEXIST else {
                    throw HostError("cannot create the folder: \(errnoText())", path: full(here))
                }
                fd = openat(current.fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            guard fd >= 0 else {
                let code = errno
                var info = stat()
                // A folder that could not be opened (out of descriptors, no permission) says why,
                // not "is a folder, not a folder".
                if fstatat(current.fd, part, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & FileType.mask != FileType.directory {
                    throw HostError(FileType.refusal(info.st_mode, expected: "a folder"), path: full(here))
                }
                throw HostError(code == ENOENT ? "folder does not exist" : "cannot open the folder: \(errnoText(code))",
                                path: full(here), code: code == ENOENT ? .missing : .general)
            }
            current = Directory(fd: fd, components: here)
            if trusted { try requireTrusted(current, keeps: keeps) }
        }
        return current
    }

    /// Fails unless `folder` is a trusted owner's and writable by no one else (`StrictModes.folderDoubt`).
    private func requireTrusted(_ folder: Directory, keeps: String) throws(HostError) {
        var info = stat()
        guard fstat(folder.fd, &info) == 0 else { throw HostError("cannot stat: \(errnoText())", path: full(folder.components)) }
        if let doubt = StrictModes.folderDoubt(info) {
            throw HostError("\(doubt), which lets another user change what Bulwark keeps below it (\(keeps)); "
                            + "make it root's and writable only by its owner", path: full(folder.components))
        }
    }

    /// Where a read of `components` leads: the open folder holding the last component, that
    /// component's real name (nil for the root itself), and whether the walk reached it.
    struct Walk {
        var folder: Directory
        var name: String?
        /// The real path's components, including those past a missing folder (taken literally).
        var resolved: [String]
        /// Whether the last component (and every folder on the way) exists.
        var exists: Bool
    }

    /// Follows `components` from the root as a read does: symbolic links interpreted inside the
    /// root, at most 40 of them; `..` never above the root. Each folder is held open, so `..`
    /// returns to the folder the walk came from, not to whatever is now the parent of a path.
    func walk(_ components: [String]) throws(HostError) -> Walk {
        let root = try rootForReading()
        if let walk = linkFreeWalk(components, from: root) { return walk }
        var stack = [root]
        var pending = components[...]
        var hops = 0
        // Links are followed only when root or the target root's owner made them: a user's link at a
        // managed path (in a folder they own) would otherwise take a read and a write, as root, to any
        // file of the root (the kernel's fs.protected_symlinks never sees a link resolved here).
        var rootInfo = stat()
        guard fstat(stack[0].fd, &rootInfo) == 0 else { throw HostError("cannot stat: \(errnoText())", path: path) }
        while let part = pending.popFirst() {
            if part == "." || part.isEmpty { continue }
            if part == ".." {
                if stack.count > 1 { stack.removeLast() }
                continue
            }
            let folder = stack[stack.count - 1]
            let here = folder.components + [part]
            var info = stat()
            guard fstatat(folder.fd, part, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                let code = errno
                guard code == ENOENT else { throw HostError("cannot stat: \(errnoText(code))", path: full(here)) }
                // Missing: the rest is taken literally, within the root.
                var rest = here
                for component in pending where component != "." && !component.isEmpty {
                    if component == ".." { if !rest.isEmpty { rest.removeLast() } } else { rest.append(component) }
                }
                return Walk(folder: folder, name: part, resolved: rest, exists: false)
            }
            if info.st_mode & FileType.mask == FileType.symlink {
                hops += 1
                guard hops <= 40 else { throw HostError("too many levels of symbolic links", path: full(here)) }
                guard info.st_uid == 0 || info.st_uid == rootInfo.st_uid else {
                    throw HostError("is a symbolic link made by uid \(info.st_uid); only links root or the target root's owner made "
                                    + "are followed: left alone", path: full(here))
                }
                // A link of root's given another name (`ln -P`, which anyone may do where
                // fs.protected_hardlinks is off) is root's link in a folder root did not choose.
                guard info.st_nlink <= 1 else {
                    throw HostError("is a symbolic link with \(info.st_nlink) names (a hard link of another link, which any user may "
                                    + "make where fs.protected_hardlinks is off): left alone", path: full(here))
                }
                let link = try readLink(folder.fd, part, full(here))
                if PathText.isAbsolute(link) { stack = [stack[0]] }
                pending = (PathText.components(link) + pending)[...]
                continue
            }
            if pending.isEmpty { return Walk(folder: folder, name: part, resolved: here, exists: true) }
            guard info.st_mode & FileType.mask == FileType.directory else {
                throw HostError("not a folder", path: full(here))
            }
            let fd = openat(folder.fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else {
                // Swapped for a link since the fstatat: look again (bounded by the hop count).
                if errno == ELOOP || errno == ENOTDIR, hops < 40 {
                    hops += 1
                    pending = ([part] + pending)[...]
                    continue
                }
                throw HostError("cannot open the folder: \(errnoText())", path: full(here))
            }
            stack.append(Directory(fd: fd, components: here))
        }
        let top = stack[stack.count - 1]
        return Walk(folder: top, name: nil, resolved: top.components, exists: true)
    }

    /// `walk` of a path without any symbolic link on it, nor `.` or `..`: the folder holding the
    /// last component opened in one call (`LinkFreeOpen`, which fails at any link), the last
    /// component looked at without following it. The same `Walk` the component-by-component walk
    /// gives for such a path; nil whenever that cannot be told so cheaply (a link on the way or
    /// at the end, a missing folder, no `openat2`): then `walk` goes one component at a time and
    /// judges each link by its owner.
    private func linkFreeWalk(_ components: [String], from root: Directory) -> Walk? {
        guard let name = components.last, LinkFreeOpen.isPlain(name) else { return nil }
        let parents = components.dropLast()
        var folder = root
        if !parents.isEmpty {
            guard let fd = LinkFreeOpen.open(parents, under: root.fd, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC) else { return nil }
            folder = Directory(fd: fd, components: Array(parents))
        }
        var info = stat()
        guard fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            // Missing at the end: as the walk says it (nothing after it to take literally).
            return errno == ENOENT ? Walk(folder: folder, name: name, resolved: components, exists: false) : nil
        }
        guard info.st_mode & FileType.mask != FileType.symlink else { return nil }
        return Walk(folder: folder, name: name, resolved: components, exists: true)
    }

    private func readLink(_ folder: Int32, _ name: String, _ display: String) throws(HostError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlinkat(folder, name, &buffer, buffer.count - 1)
        guard count >= 0 else { throw HostError("cannot read symbolic link: \(errnoText())", path: display) }
        // Decoding would replace bytes that are not UTF-8 and walk to another name: refused.
        guard let target = String(validating: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) else {
            throw HostError("is a symbolic link to a name that is not UTF-8; left alone", path: display)
        }
        return target
    }
}

/// Opening a path below a folder in one system call when no component of it is a symbolic
/// link: `openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`, so the kernel goes one
/// component at a time exactly as `HostRoot`'s walks do and fails (`ELOOP`) at the first link
/// instead of following it. A shortcut only, never a second policy: whatever it does not open
/// (a link anywhere, a missing or unreadable folder, a kernel or seccomp filter without
/// `openat2`) the caller walks component by component, judging each link by its owner.
enum LinkFreeOpen {
    /// Set once `openat2` answered ENOSYS or EPERM: not asked again in this process.
    private static let unavailable = Atomic<Bool>(false)

    /// A component the walks would take as a name (not empty, `.` or `..`).
    static func isPlain(_ component: String) -> Bool {
        !component.isEmpty && component != "." && component != ".." && !component.utf8.contains(0x2F)
    }

    /// A descriptor of `components` below `folder`, opened with `flags`; nil when it was not
    /// opened this way (see above), including for no components at all.
    static func open(_ components: ArraySlice<String>, under folder: Int32, flags: Int32) -> Int32? {
        guard !components.isEmpty, !unavailable.load(ordering: .relaxed), components.allSatisfy(isPlain) else { return nil }
        let resolve = UInt64(RESOLVE_NO_SYMLINKS) | UInt64(RESOLVE_NO_MAGICLINKS) | UInt64(RESOLVE_BENEATH)
        let fd = bulwark_openat2(folder, components.joined(separator: "/"), UInt64(flags), resolve)
        if fd >= 0 { return fd }
        if errno == ENOSYS || errno == EPERM { unavailable.store(true, ordering: .relaxed) }
        return nil
    }
}

/// An open folder under a host root and its real path's components. Closes its descriptor
/// when released. Shared between threads only as a plan's held root (`PlanReads`): `openat`
/// and `fstatat` on one descriptor from several threads at once are safe.
final class Directory: Sendable {
    let fd: Int32
    let components: [String]

    init(fd: Int32, components: [String]) {
        self.fd = fd
        self.components = components
    }

    deinit { close(fd) }
}

/// A node's type from its `st_mode`, and its name in messages.
package enum FileType {
    static let mask: mode_t = 0o170000
    static let symlink: mode_t = 0o120000
    static let directory: mode_t = 0o040000
    static let regular: mode_t = 0o100000
    static let fifo: mode_t = 0o010000
    static let socket: mode_t = 0o140000
    static let characterDevice: mode_t = 0o020000
    static let blockDevice: mode_t = 0o060000

    /// "a regular file", "a folder", "a FIFO", … (for messages).
    package static func name(_ mode: UInt32) -> String {
        switch mode & mask {
        case regular: "a regular file"
        case directory: "a folder"
        case symlink: "a symbolic link"
        case fifo: "a FIFO"
        case socket: "a socket"
        case characterDevice: "a character device"
        case blockDevice: "a block device"
        default: "an unknown kind of file"
        }
    }

    /// Why a node of type `mode` is refused where `expected` was wanted.
    static func refusal(_ mode: mode_t, expected: String) -> String {
        if mode & mask == symlink {
            return "is a symbolic link; Bulwark never writes through a symbolic link (manage the real path instead)"
        }
        return "is \(name(mode)), not \(expected); left alone"
    }
}

func errnoText(_ code: Int32 = errno) -> String {
    Shortage.errnoText(code)
}
