internal import Foundation
internal import CLinux
internal import BulwarkCore

/// `FileMode`: mode, owner and group of one path under the root.
///
/// ```yaml
/// spec: {path: /etc/shadow, mode: "0640", owner: root, group: shadow}
/// ```
struct FileModeDriver: ResourceDriver {
    /// Its changes (`fchown`, then `fchmod`) pass `ChangeGate.current` first, once every check
    /// that may refuse the fix is done (the file opened again, the planted-link guard, the
    /// owner and group looked up): a fix is marked tried there, not before.
    var announcesChanges: Bool { true }

    func watchedPaths(_ resource: Resource, on target: Target) -> [String] {
        HostAdapter.paths(target, [resource.spec.subject])
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["path", "mode", "owner", "group"])
        guard let path = spec.field("path", required: true).flatMap(parsePath) else { return nil }
        var properties: [DesiredProperty] = []
        if let reader = spec.field("mode") {
            guard let text = reader.string() else { return nil }
            guard let mode = parseMode(text) else {
                reader.fail("expected an octal mode from 0000 to 7777 such as \"0640\", got '\(text)'")
                return nil
            }
            properties.append(DesiredProperty("mode", mode))
        }
        for key in ["owner", "group"] {
            guard let reader = spec.field(key) else { continue }
            guard let name = reader.string() else { return nil }
            guard isAccountName(name) else {
                reader.fail("expected a user or group name or number, got '\(name)'")
                return nil
            }
            properties.append(DesiredProperty(key, name))
        }
        if properties.isEmpty {
            spec.fail("set at least one of mode, owner, group")
            return nil
        }
        return ResourceSpec(subject: path, properties: properties)
    }

    static func parseMode(_ text: String) -> String? {
        guard (3...4).contains(text.count), let value = UInt32(text, radix: 8), value <= 0o7777 else { return nil }
        return format(mode: value)
    }

    static func format(mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let root = try HostRoot(target: target)
        guard let (info, _, _) = try Self.node(resource.spec.subject, in: root, open: false) else {
            // A missing file has nothing to fix: no property applies.
            return Observation(values: [:])
        }
        let accounts = try AccountDatabase(root: root)
        let wanted = { (name: String) in resource.spec.properties.first { $0.name == name }?.value }
        // Owners compare as ids: `owner: "0"` and `owner: root` are the same owner.
        return Observation(values: [
            "mode": Self.format(mode: UInt32(info.st_mode & 0o7777)),
            "owner": wanted("owner").flatMap { accounts.userID($0) == info.st_uid ? $0 : nil } ?? accounts.userName(info.st_uid),
            "group": wanted("group").flatMap { accounts.groupID($0) == info.st_gid ? $0 : nil } ?? accounts.groupName(info.st_gid),
        ])
    }

    /// The file or folder at `subject`, reached without following any symbolic link (a mode or
    /// owner is never changed through one: a user's link to etc/shadow in their home stays a
    /// link and this resource fails), and opened (`O_NOFOLLOW | O_NONBLOCK`) when `open`, with
    /// the status of the folder it is in. Nil when it does not exist. A FIFO, device or socket
    /// is refused.
    static func node(_ subject: String, in root: HostRoot, open: Bool) throws(HostError) -> (stat, Int32?, folder: stat)? {
        // Taken as written (validated: absolute, no '.' or '..'), never as a path under the root's own path.
        let components = PathText.components(subject)
        guard let name = components.last else { throw HostError("FileMode does not manage the target root itself", path: root.path) }
        let display = root.full(components)
        let folder: Directory
        do {
            folder = try root.openFolderNoFollow(Array(components.dropLast()))
        } catch where error.code == .missing {
            return nil
        }
        var folderInfo = stat()
        guard fstat(folder.fd, &folderInfo) == 0 else { throw HostError("cannot stat its folder: \(errnoText())", path: display) }
        var info = stat()
        guard fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw HostError("cannot stat: \(errnoText())", path: display)
        }
        let type = info.st_mode & FileType.mask
        guard type == FileType.regular || type == FileType.directory else {
            throw HostError(FileType.refusal(info.st_mode, expected: "a regular file or folder"), path: display)
        }
        // A file with another name shares its mode and owner with it: a user's hard link to
        // etc/shadow in their home (where `fs.protected_hardlinks` is off) would hand shadow over.
        guard type != FileType.regular || info.st_nlink <= 1 else {
            throw HostError("has \(info.st_nlink) hard links, and its mode and owner are those of every other name it has "
                            + "(a link to etc/shadow, say); left alone: remove the other links", path: display)
        }
        guard open else { return (info, nil, folderInfo) }
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (type == FileType.directory ? O_DIRECTORY : 0)
        let fd = openat(folder.fd, name, flags)
        guard fd >= 0 else { throw HostError("cannot open: \(errnoText())", path: display) }
        var opened = stat()
        guard fstat(fd, &opened) == 0, opened.st_dev == info.st_dev, opened.st_ino == info.st_ino,
              type != FileType.regular || opened.st_nlink <= 1 else {
            close(fd)
            throw HostError("was replaced while being opened; left alone", path: display)
        }
        return (opened, fd, folderInfo)
    }

    /// A user who can write the folder a file is in can make it a hard link to a file they
    /// cannot read (etc/shadow) where the kernel does not protect hard links, and keep that
    /// name after the other is replaced (by passwd, or Bulwark's own rename): the link count is
    /// 1 again, the owner root, the content the old shadow, and nothing tells it from a file
    /// made there. So a change that gives such a file away (to another owner or group than
    /// root, more permission for group or others, a set-id bit) is blocked where
    /// `fs.protected_hardlinks` is not 1 in the target's proc/sys. A file whose owner is the
    /// folder's only other writer is theirs already. The reason names the file's inode: an
    /// approval is of this file, not of whatever is at the path later. The reason, or nil.
    static func plantedLink(_ changes: [PropertyDrift], path: String, file: stat, folder: stat, root: HostRoot,
                            uid: (String) -> UInt32?, gid: (String) -> UInt32?) -> String? {
        guard file.st_mode & FileType.mask == FileType.regular else { return nil }
        // Who besides root may have put the file there: the folder's owner, its group, anyone.
        var writers: [String] = []
        if folder.st_uid != 0 && file.st_uid != folder.st_uid { writers.append("its owner (uid \(folder.st_uid))") }
        // With a POSIX ACL these bits are its mask, which bounds every user and group it names:
        // a folder whose ACL lets alice write shows group write, and counts here.
        if folder.st_mode & 0o020 != 0 { writers.append("its group (gid \(folder.st_gid))") }
        if folder.st_mode & 0o002 != 0 { writers.append("every user") }
        guard !writers.isEmpty else { return nil }
        let given = changes.compactMap { change -> String? in
            switch change.property {
            case "owner":
                let id = uid(change.desired)
                return id == file.st_uid || id == 0 ? nil : "owner \(change.desired)"
            case "group":
                let id = gid(change.desired)
                return id == file.st_gid || id == 0 ? nil : "group \(change.desired)"
            case "mode":
                let mode = UInt32(change.desired, radix: 8) ?? 0o7777
                return mode & 0o6077 & ~UInt32(file.st_mode & 0o6077) == 0 ? nil : "mode \(change.desired)"
            default:
                return nil
            }
        }
        guard !given.isEmpty, !hardLinksProtected(root) else { return nil }
        return "\(given.joined(separator: " and ")) would give away \(path) (inode \(file.st_ino)), a file in a folder "
            + "\(writers.joined(separator: " and ")) can write, where hard links are not protected (fs.protected_hardlinks is not 1): "
            + "its content may be another file's, such as an old etc/shadow linked there and replaced since"
    }

    /// Whether the target's kernel lets a user hard-link only files they own or can read and
    /// write (`fs.protected_hardlinks` 1, under the root's proc/sys, read as every file under
    /// the root is: `FileIO`, links followed only inside it). Unknown is no.
    static func hardLinksProtected(_ root: HostRoot) -> Bool {
        guard let text = (try? FileIO.readText("proc/sys/fs/protected_hardlinks", in: root)) ?? nil else { return false }
        return text.trimmingCharacters(in: .whitespacesAndNewlines) == "1"
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let root = try HostRoot(target: target)
        let found = try await root.applying(fixing: "FileMode") { try applyOnce(changes, to: resource, root: root) }
        try AlreadyInSync.unless(changes, found: found)
    }

    /// One attempt, holding the target's lock: the properties the file already has as desired
    /// (another writer set them since the plan observed the drift) are left out; when that is
    /// all of them nothing is changed. Returns the properties found.
    private func applyOnce(_ allChanges: [PropertyDrift], to resource: Resource, root: HostRoot) throws -> Set<String> {
        let path = root.full(PathText.components(resource.spec.subject))
        // Only an owner or group change reads the accounts: a mode's fix needs neither passwd nor
        // group, and reading them again under the lock (a walk and a check for writers of each)
        // was a fifth of a mode fix's own work.
        let accounts = try allChanges.contains { $0.property == "owner" || $0.property == "group" } ? AccountDatabase(root: root) : nil
        // `current`: the status of the opened file, taken on its descriptor by `node`.
        guard let (current, opened, folder) = try Self.node(resource.spec.subject, in: root, open: true), let fd = opened else {
            throw HostError("does not exist", path: path)
        }
        defer { close(fd) }
        let found = Set(allChanges.filter { change in
            switch change.property {
            case "mode": Self.format(mode: UInt32(current.st_mode & 0o7777)) == change.desired
            case "owner": accounts?.userID(change.desired) == current.st_uid
            case "group": accounts?.groupID(change.desired) == current.st_gid
            default: false
            }
        }.map(\.property))
        let changes = allChanges.filter { !found.contains($0.property) }
        guard !changes.isEmpty else { return found }
        // Judged again on the file opened: it may have been swapped for a planted one since the plan.
        if let reason = Self.plantedLink(changes, path: resource.spec.subject, file: current, folder: folder, root: root,
                                         uid: { accounts?.userID($0) }, gid: { accounts?.groupID($0) }) {
            try HostError.refuseAtTheWrite(.block(reason), approved: ApplyContext.approvedBlock)
        }
        var uid = uid_t.max  // (uid_t)-1: leave unchanged
        var gid = gid_t.max
        for change in changes {
            switch change.property {
            case "owner":
                guard let id = accounts?.userID(change.desired) else {
                    throw HostError("no user '\(change.desired)' in \(root.path)/etc/passwd")
                }
                uid = id
            case "group":
                guard let id = accounts?.groupID(change.desired) else {
                    throw HostError("no group '\(change.desired)' in \(root.path)/etc/group")
                }
                gid = id
            default:
                break
            }
        }
        // chown clears set-id bits, so the mode goes last.
        let wanted = resource.spec.properties.first { $0.name == "mode" }
        let chown = uid != uid_t.max || gid != gid_t.max
        let chmod = wanted != nil && (changes.contains(where: { $0.property == "mode" }) || chown)
        let mode = wanted.flatMap { UInt32($0.value, radix: 8) }
        if chmod, mode == nil { throw HostError("cannot change mode: \(quotedForMessage(wanted?.value ?? "")) is no octal mode", path: path) }
        // Checked: the owner's change (or the mode's) is the first one, past the gate.
        if chown || chmod { try HostChange.announce(path: path) }
        if chown {
            guard fchown(fd, uid, gid) == 0 else { throw HostError("cannot change owner: \(errnoText())", path: path) }
        }
        if chmod, let mode {
            guard fchmod(fd, mode_t(mode)) == 0 else { throw HostError("cannot change mode: \(errnoText())", path: path) }
        }
        if chown || chmod { HostFaults.change(at: "after", of: "FileMode") }
        var after = stat()
        if fstat(fd, &after) == 0 { OwnChanges.changedMetadata(before: current, after: after) }
        return found
    }
}

/// `/etc/shadow` style: absolute, no `..`, no empty components.
func parsePath(_ reader: SpecReader) -> String? {
    guard let text = reader.string() else { return nil }
    if let problem = LineSafety.problem(text) {
        reader.fail("expected an absolute path; the value \(problem)")
        return nil
    }
    // By bytes, as the kernel reads the path (see `PathText`).
    let parts = Substring(text).splitBytes(at: "/").dropFirst()
    guard text.hasPrefix("/"), text.count > 1, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
          !text.contains("\0") else {
        reader.fail("expected an absolute path inside the target root without '.', '..' or '//', such as /etc/shadow, got '\(text)'")
        return nil
    }
    return text
}

func isAccountName(_ name: String) -> Bool {
    guard (1...32).contains(name.count), let first = name.unicodeScalars.first,
          CharacterSet.lowercaseLetters.contains(first) || first == "_" || CharacterSet.decimalDigits.contains(first)
    else { return false }
    return name.unicodeScalars.allSatisfy {
        ($0.isASCII && (CharacterSet.alphanumerics.contains($0))) || $0 == "_" || $0 == "-" || $0 == "."
    }
}
