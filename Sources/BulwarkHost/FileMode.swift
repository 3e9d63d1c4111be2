internal import Foundation
internal import CLinux
internal import BulwarkCore

/// `FileMode`: mode, owner and group of one path under the root.
///
/// ```yaml
/// spec: {path: /etc/shadow, mode: "0640", owner: root, group: shadow}
/// ```
struct FileModeDriver: ReportingDriver {
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
        // A change of owner or group keeps the set-id bits and file capabilities the kernel
        // takes with it (`Kept`): one interrupted before they are back drifts on this property.
        if properties.contains(where: { $0.name == "owner" || $0.name == "group" }) {
            properties.append(DesiredProperty(Kept.property, Kept.done))
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
        let keeps = resource.spec.properties.contains { $0.name == Kept.property }
        guard let (info, opened, _) = try Self.node(resource.spec.subject, in: root, open: keeps) else {
            // A missing file has nothing to fix: no property applies.
            return Observation(values: [:])
        }
        defer { if let opened { close(opened) } }
        let accounts = try AccountDatabase(root: root)
        let wanted = { (name: String) in resource.spec.properties.first { $0.name == name }?.value }
        // Owners compare as ids: `owner: "0"` and `owner: root` are the same owner.
        var values: [String: String?] = [
            "mode": Self.format(mode: UInt32(info.st_mode & 0o7777)),
            "owner": wanted("owner").flatMap { accounts.userID($0) == info.st_uid ? $0 : nil } ?? accounts.userName(info.st_uid),
            "group": wanted("group").flatMap { accounts.groupID($0) == info.st_gid ? $0 : nil } ?? accounts.groupName(info.st_gid),
        ]
        var owed: [String: String] = [:]
        if let opened {
            if let mark = Kept.marker(opened, of: info) {
                let lost = Kept.lost(mark, now: UInt32(info.st_mode & 0o7777))
                values[Kept.property] = .some("lost (\(lost))")
                owed[Kept.property] = lost
            } else if let keeps = Kept.keeps(info, fd: opened, specMode: wanted("mode").flatMap { UInt32($0, radix: 8) },
                                             uid: wanted("owner").flatMap { accounts.userID($0) } ?? UInt32.max,
                                             gid: wanted("group").flatMap { accounts.groupID($0) } ?? UInt32.max) {
                // The plan says what the change of owner or group keeps, and the record compares it after.
                values[Kept.property] = .some(keeps)
            } else {
                values[Kept.property] = .some(Kept.done)
            }
        }
        return Observation(values: values, owed: owed)
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
        _ = try await applyReporting(changes, to: resource, on: target)
    }

    /// `apply`, saying in the record which set-id bits and file capabilities a change of owner
    /// or group kept (`Kept`).
    func applyReporting(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws -> ApplyReport {
        let root = try HostRoot(target: target)
        let (found, notes) = try await root.applying(fixing: "FileMode") { try applyOnce(changes, to: resource, root: root) }
        try AlreadyInSync.unless(changes, found: found)
        return ApplyReport(notes: notes)
    }

    /// One attempt, holding the target's lock: the properties the file already has as desired
    /// (another writer set them since the plan observed the drift) are left out; when that is
    /// all of them nothing is changed. Returns the properties found, and what was kept.
    private func applyOnce(_ allChanges: [PropertyDrift], to resource: Resource, root: HostRoot) throws -> (Set<String>, [String]) {
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
        // What an earlier fix of this file, interrupted after its chown, left to put back.
        let marked = Kept.marker(fd, of: current)
        let found = Set(allChanges.filter { change in
            switch change.property {
            case "mode": Self.format(mode: UInt32(current.st_mode & 0o7777)) == change.desired
            case "owner": accounts?.userID(change.desired) == current.st_uid
            case "group": accounts?.groupID(change.desired) == current.st_gid
            case Kept.property: marked == nil
            default: false
            }
        }.map(\.property))
        let changes = allChanges.filter { !found.contains($0.property) }
        guard !changes.isEmpty else { return (found, []) }
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
        // chown clears set-id bits (and file capabilities), so the mode goes last.
        let wanted = resource.spec.properties.first { $0.name == "mode" }
        let chown = uid != uid_t.max || gid != gid_t.max
        let chmod = wanted != nil && (changes.contains(where: { $0.property == "mode" }) || chown)
        let mode = wanted.flatMap { UInt32($0.value, radix: 8) }
        if chmod, mode == nil { throw HostError("cannot change mode: \(quotedForMessage(wanted?.value ?? "")) is no octal mode", path: path) }
        // What the kernel takes from a file whose owner or group changes, to put back: the
        // marker of an interrupted fix first (the file has lost it already), else what it has now.
        let keep = try chown ? Kept.taken(by: current, fd: fd, path: path, uid: uid, gid: gid, marked: marked) : marked
        let restore = keep != nil && (chown || changes.contains { $0.property == Kept.property })
        // Checked: the owner's change (or the mode's) is the first one, past the gate.
        if chown || chmod || restore { try HostChange.announce(path: path) }
        // Marked on the file before the chown: a kill between the two leaves the file drifting on
        // `Kept.property`, and the next pass puts back what it took.
        // A mark already there (an interrupted fix's) is replaced by this change's, or removed
        // where nothing is left to put back.
        if chown, let keep { try Kept.mark(keep, fd: fd, path: path) }
        if chown, keep == nil, marked != nil { _ = fremovexattr(fd, Kept.attribute) }
        if chown {
            guard fchown(fd, uid, gid) == 0 else {
                let why = errnoText()
                // Nothing was taken: the file keeps the mark it had, or none.
                if let marked { try? Kept.mark(marked, fd: fd, path: path) } else if keep != nil { _ = fremovexattr(fd, Kept.attribute) }
                throw HostError("cannot change owner: \(why)", path: path)
            }
            if keep != nil { HostFaults.change(at: "chowned", of: "FileMode") }
        }
        if chmod, let mode {
            guard fchmod(fd, mode_t(mode)) == 0 else { throw HostError("cannot change mode: \(errnoText())", path: path) }
        }
        var notes: [String] = []
        if chown,
           let gone = Kept.dropped(marked?.mode ?? UInt32(current.st_mode & 0o7777), of: current, uid: uid, gid: gid, specMode: mode, subject: resource.spec.subject) {
            notes.append(gone)
        }
        if restore, let keep {
            notes += try Kept.restore(keep, fd: fd, modeSet: mode, path: path, subject: resource.spec.subject)
        }
        if chown || chmod || restore { HostFaults.change(at: "after", of: "FileMode") }
        var after = stat()
        if fstat(fd, &after) == 0 { OwnChanges.changedMetadata(before: current, after: after) }
        return (found, notes)
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

/// What the kernel takes from a file when its owner or group changes, and a FileMode fix puts
/// back: its setuid and setgid bits, and its file capabilities (the `security.capability`
/// attribute, as `setcap` sets it). A `chown` of `/usr/bin/passwd` (4755) to another group left
/// it 0755, recorded as a change of group alone and verified; one of a `cap_net_raw+ep` ping
/// left it without its capability. The bits come back unless the spec sets a mode (then that
/// mode is the file's, as the plan shows it); the capabilities always.
///
/// Before the `chown`, a file that has either is marked (the `trusted.bulwark.kept` attribute on
/// the file itself, holding its mode and capabilities, synced): a kill between the `chown` and
/// the restore leaves the mark, and with it the resource's `[set-id bits and capabilities]`
/// property observed `lost (…)` and owed, so recovery does not record the fix verified and the
/// next pass puts back what the mark holds (the guards do not count bits the mark holds as
/// added). Only a process with CAP_SYS_ADMIN reads or writes `trusted.*` attributes: no user can
/// forge a mark. The mark is removed once what it holds is back.
enum Kept {
    /// The property a spec with an owner or group has besides them: desired `kept`.
    static let property = "[set-id bits and capabilities]"
    static let done = "kept"
    static let attribute = "trusted.bulwark.kept"
    static let capabilities = "security.capability"
    /// A mark holds a mode and a capability set (a few dozen bytes); anything larger is not one.
    static let maxSize = 1024

    /// The mode a file had, with the set-id bits the change keeps (a set-id bit is kept only
    /// where its owner, or group, stays: a setuid program handed to another owner would run as
    /// that owner), and its file capabilities, if any; and the file as the change leaves it (its
    /// owner and group after the chown, its size and modification time, which neither the chown
    /// nor the restore change). A mark that no longer matches the file (someone changed its
    /// owner, group or content since, or the chown never happened) is stale: nothing is put
    /// back from it.
    struct Mark: Sendable, Equatable {
        var mode: UInt32
        var caps: [UInt8]?
        var uid: UInt32
        var gid: UInt32
        var size: Int64
        var mtime: String

        var text: String {
            "mode=" + FileModeDriver.format(mode: mode) + " uid=\(uid) gid=\(gid) size=\(size) mtime=\(mtime)"
                + (caps.map { " caps=" + SHA256.hex($0) } ?? "")
        }

        init(mode: UInt32, caps: [UInt8]?, after file: stat, uid: UInt32, gid: UInt32) {
            self.mode = mode
            self.caps = caps
            self.uid = uid
            self.gid = gid
            self.size = Int64(file.st_size)
            self.mtime = Self.time(file)
        }

        static func time(_ file: stat) -> String { "\(file.st_mtim.tv_sec).\(file.st_mtim.tv_nsec)" }

        /// Whether the open file `file` is as the marked change left it.
        func matches(_ file: stat) -> Bool {
            file.st_uid == uid && file.st_gid == gid && Int64(file.st_size) == size && Self.time(file) == mtime
        }

        init?(text: String) {
            var mode: UInt32?
            var caps: [UInt8]?
            var uid: UInt32?, gid: UInt32?, size: Int64?, mtime: String?
            for field in text.split(separator: " ") {
                if field.hasPrefix("mode=") {
                    mode = UInt32(field.dropFirst(5), radix: 8).flatMap { $0 <= 0o7777 ? $0 : nil }
                } else if field.hasPrefix("uid=") {
                    uid = UInt32(field.dropFirst(4))
                } else if field.hasPrefix("gid=") {
                    gid = UInt32(field.dropFirst(4))
                } else if field.hasPrefix("size=") {
                    size = Int64(field.dropFirst(5))
                } else if field.hasPrefix("mtime=") {
                    mtime = String(field.dropFirst(6))
                } else if field.hasPrefix("caps=") {
                    let hex = Array(field.dropFirst(5).utf8)
                    guard hex.count % 2 == 0, !hex.isEmpty else { return nil }
                    var bytes: [UInt8] = []
                    for index in stride(from: 0, to: hex.count, by: 2) {
                        guard let byte = UInt8(String(decoding: hex[index..<index + 2], as: UTF8.self), radix: 16) else { return nil }
                        bytes.append(byte)
                    }
                    caps = bytes
                } else {
                    return nil
                }
            }
            guard let mode, let uid, let gid, let size, let mtime else { return nil }
            self.mode = mode
            self.caps = caps
            self.uid = uid
            self.gid = gid
            self.size = size
            self.mtime = mtime
        }
    }

    /// A failure to read an attribute other than its absence: its errno.
    struct ReadFailure: Error { var code: Int32 }

    /// The value of attribute `name` of `fd`; nil where it has none (or the file system keeps none).
    static func read(_ name: String, fd: Int32) throws(ReadFailure) -> [UInt8]? {
        var value = [UInt8](repeating: 0, count: maxSize)
        let length = fgetxattr(fd, name, &value, value.count)
        if length > 0 { return Array(value[..<length]) }
        guard length == 0 || errno == ENODATA || errno == ENOTSUP else { throw ReadFailure(code: errno) }
        return nil
    }

    /// The mark of an interrupted fix on the open file `file` (`fd`), or nil: none, or a stale one.
    static func marker(_ fd: Int32, of file: stat) -> Mark? {
        guard let bytes = try? read(attribute, fd: fd), let mark = Mark(text: String(decoding: bytes, as: UTF8.self)) else { return nil }
        return mark.matches(file) ? mark : nil
    }

    /// The set-id bits of `mode` a change to `uid` and `gid` (`uid_t.max`: unchanged) leaves to
    /// keep: setuid where the owner stays, setgid where the group stays.
    static func keptBits(_ mode: UInt32, of file: stat, uid: UInt32, gid: UInt32) -> UInt32 {
        mode & (uid == UInt32.max || uid == file.st_uid ? 0o4000 : 0) | mode & (gid == UInt32.max || gid == file.st_gid ? 0o2000 : 0)
    }

    /// What a change of owner or group (to `uid` and `gid`, `uid_t.max` unchanged) of the open
    /// regular file `current` takes from it and is put back: the set-id bits `keptBits` keeps
    /// and its file capabilities; nil when none.
    /// `marked`: the mark of an interrupted fix the file carries, whose bits and capabilities
    /// are the file's own (the kernel took them already): they pass through this change as the
    /// file's would (a setuid bit a kill left to put back is not handed to a new owner either).
    static func taken(by current: stat, fd: Int32, path: String, uid: UInt32, gid: UInt32, marked: Mark? = nil) throws(HostError) -> Mark? {
        guard current.st_mode & FileType.mask == FileType.regular else { return nil }  // a folder keeps its setgid bit
        let caps: [UInt8]?
        if let marked {
            caps = marked.caps
        } else {
            do {
                caps = try read(capabilities, fd: fd)
            } catch {
                throw HostError("cannot read its file capabilities (\(errnoText(error.code))): its owner is not changed without "
                                + "knowing them", path: path)
            }
        }
        let now = marked?.mode ?? UInt32(current.st_mode & 0o7777)
        let mode = now & 0o1777 | keptBits(now, of: current, uid: uid, gid: gid)
        return mode & 0o6000 != 0 || caps != nil
            ? Mark(mode: mode, caps: caps, after: current, uid: uid == UInt32.max ? current.st_uid : uid,
                   gid: gid == UInt32.max ? current.st_gid : gid)
            : nil
    }

    /// What a planned change of owner or group (to `uid` and `gid`) of the open file will keep,
    /// in words (`to keep through the change of owner or group: its setuid bit (mode 4755)`):
    /// the set-id bits `keptBits` keeps, where the spec sets no mode or one with them, and its
    /// capabilities. Nil when nothing, or when neither changes.
    static func keeps(_ info: stat, fd: Int32, specMode: UInt32?, uid: UInt32, gid: UInt32) -> String? {
        guard uid != UInt32.max && uid != info.st_uid || gid != UInt32.max && gid != info.st_gid,
              var mark = try? taken(by: info, fd: fd, path: "", uid: uid, gid: gid) else { return nil }
        if let specMode { mark.mode = mark.mode & ~0o6000 | mark.mode & specMode & 0o6000 }
        guard mark.mode & 0o6000 != 0 || mark.caps != nil else { return nil }
        return "to keep through the change of owner or group: " + lostText(mark, now: nil)
    }

    /// The set-id bits a change to `uid` and `gid` takes for good from a file with `mode` (the
    /// kernel clears them; a set-id bit is not handed to a new owner or group), in a record's
    /// words; nil when none or the spec sets the mode.
    static func dropped(_ mode: UInt32, of file: stat, uid: UInt32, gid: UInt32, specMode: UInt32?, subject: String) -> String? {
        let gone = mode & 0o6000 & ~keptBits(mode, of: file, uid: uid, gid: gid)
        guard specMode == nil, gone != 0 else { return nil }
        let changed = gone == 0o6000 ? "owner and group" : gone & 0o4000 != 0 ? "owner" : "group"
        return "\(subject) lost its \(bits(gone)) with the change of its " + changed
            + ": a set-id bit is not handed to a new owner or group (a spec that sets the mode with it decides, judged by the guards)"
    }

    /// Marks the file before its chown, synced; refuses the change when it cannot.
    static func mark(_ mark: Mark, fd: Int32, path: String) throws(HostError) {
        let text = Array(mark.text.utf8)
        guard fsetxattr(fd, attribute, text, text.count, 0) == 0, fsync(fd) == 0 else {
            throw HostError("cannot mark it (\(attribute): \(errnoText())) before changing its owner or group, which takes "
                            + lostText(mark, now: nil) + "; left alone", path: path)
        }
    }

    /// `mark`'s set-id bits in words, with what else it holds.
    static func lostText(_ mark: Mark, now: UInt32?) -> String {
        var parts: [String] = []
        if mark.mode & 0o6000 != 0 {
            parts.append("its " + bits(mark.mode) + " (mode " + FileModeDriver.format(mode: mark.mode)
                         + (now.map { ", now " + FileModeDriver.format(mode: $0) } ?? "") + ")")
        }
        if mark.caps != nil { parts.append("its file capabilities") }
        return parts.joined(separator: " and ")
    }

    static func bits(_ mode: UInt32) -> String {
        switch mode & 0o6000 {
        case 0o6000: "setuid and setgid bits"
        case 0o4000: "setuid bit"
        default: "setgid bit"
        }
    }

    /// What an observation says a mark means.
    static func lost(_ mark: Mark, now: UInt32) -> String {
        "an interrupted change of its owner or group took " + lostText(mark, now: now) + "; the next pass puts them back"
    }

    /// Puts back what `mark` holds on the open file: its set-id bits unless the spec set a mode
    /// (`modeSet`), and its capabilities; then removes the mark. Returns the record's notes.
    static func restore(_ mark: Mark, fd: Int32, modeSet: UInt32?, path: String, subject: String) throws(HostError) -> [String] {
        var notes: [String] = []
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw HostError("cannot stat: \(errnoText())", path: path) }
        let now = UInt32(info.st_mode & 0o7777)
        if modeSet == nil, mark.mode & 0o6000 != 0 {
            let mode = now | mark.mode & 0o6000
            guard mode == now || fchmod(fd, mode_t(mode)) == 0 else {
                throw HostError("its owner or group was changed, which took its \(bits(mark.mode)); putting it back failed "
                                + "(\(errnoText())); the next pass tries again", path: path)
            }
            notes.append("\(subject) kept its \(bits(mark.mode)) (mode \(FileModeDriver.format(mode: mode))) through the change of its owner or group")
        } else if let modeSet, mark.mode & 0o6000 & ~modeSet != 0 {
            notes.append("\(subject) lost its \(bits(mark.mode & ~modeSet)) with the change of its owner or group: the spec sets mode "
                         + FileModeDriver.format(mode: modeSet))
        }
        if let caps = mark.caps {
            guard fsetxattr(fd, capabilities, caps, caps.count, 0) == 0 else {
                throw HostError("its owner or group was changed, which took its file capabilities; putting them back failed "
                                + "(\(errnoText())); the next pass tries again", path: path)
            }
            notes.append("\(subject) kept its file capabilities through the change of its owner or group")
        }
        guard fremovexattr(fd, attribute) == 0 || errno == ENODATA else {
            throw HostError("cannot remove its mark \(attribute) (\(errnoText()))", path: path)
        }
        return notes
    }
}
