internal import Foundation
internal import CLinux
internal import BulwarkCore

// MARK: - UserAccount

extension UserAccountDriver: JointlyGuardedDriver {
    /// Who can still log in: judged before the sshd guard, which is shown the accounts changed.
    func guardDomain(_ resource: Resource, on target: Target) -> GuardDomain? { HostRoot.loginsDomain(stage: 0, target) }

    /// Blocks a lock, an expiry or a shell without a login for: an account with UID 0; the
    /// account Bulwark runs as (only knowable when the root is `/`); the last account in sudo,
    /// wheel or admin that has a login path, once the account changes this pass already allowed
    /// on the target are made (`alongside`); the last way in over SSH for root or such an
    /// account, judged by sshd as the root configures it, and the last way in over SSH for anyone
    /// (`SSHDConfigDriver.loginsLost`, the accounts judged as the SSHDConfig guard judges them);
    /// the last account with a login path where SSH lets no one in either. Administrators are
    /// those groups make and those etc/sudoers names (`HostAccounts.isAdmin`).
    /// Blocks a shell that is not an executable inside the root, and a login shell the root's
    /// `etc/shells` does not list.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target, alongside: [AllowedChange]) async -> GuardVerdict {
        judging("account") { try verdict(changes, to: resource, root: try HostRoot(target: target), alongside: alongside) }
    }

    /// `assess` on `root`: also asked again at the write, under the target's lock, with the
    /// accounts as they are then (`applyOnce`).
    func verdict(_ changes: [PropertyDrift], to resource: Resource, root: HostRoot, alongside: [AllowedChange]) throws -> GuardVerdict {
        let accounts = try HostAccounts.reading(root).after(alongside)
        let name = resource.spec.subject
        guard let account = accounts.user(name) else { return .allow }  // nothing to change
        if accounts.duplicates.contains(where: { $0.isSameBytes(name) }) {
            return .block("account \(name) appears more than once in etc/passwd or etc/shadow")
        }
        var harmful: [String] = []
        for change in changes {
            switch change.property {
            case "locked" where change.desired == "true":
                harmful.append("locking it")
            case "locked":
                // Unlocking takes one `!` off the hash. useradd writes `!` alone for an account
                // whose password was never set: unlocked, the hash is empty, a login without a
                // password wherever pam_unix has nullok (Debian's default), `su` included.
                // `passwd -u` refuses it for the same reason. `!!` would stay locked.
                if let rest = account.unlockedHash, rest.isEmpty || rest.hasBytePrefix("!") || rest.hasBytePrefix("*") {
                    return .block(rest.isEmpty
                        ? "unlocking \(name) would leave it without a password (its hash is '!' alone: no password was ever set), "
                            + "a login without one where PAM allows empty passwords (nullok); set a password first (passwd \(name))"
                        : "unlocking \(name) would leave its hash '\(rest.prefix(1))…', still no password; set one first (passwd \(name))")
                }
            case "expires" where change.desired != "never":
                harmful.append("making it expire on \(change.desired)")
            case "shell":
                let shell = change.desired
                guard accounts.isExecutable(shell) else {
                    return .block("shell \(shell) is not an executable file inside the target root")
                }
                if HostAccounts.isNoLoginShell(shell) {
                    harmful.append("giving it the shell \(shell)")
                } else if !(accounts.shells ?? []).contains(shell) {
                    return .block("shell \(shell) is not listed in the target's etc/shells")
                }
            default:
                break
            }
        }
        guard !harmful.isEmpty else { return .allow }
        let what = harmful.joined(separator: " and ")
        if account.uid == 0 {
            return .block("\(name) has UID 0: \(what) could lock the administrator out")
        }
        if root.path == "/", let me = getpwuid(geteuid()), String(cString: me.pointee.pw_name) == name {
            return .block("Bulwark runs as \(name): \(what) would lock Bulwark itself out")
        }
        if accounts.isAdmin(account), accounts.noLoginPath(account) == nil {
            let others = accounts.users.filter {
                !$0.name.isSameBytes(name) && $0.uid != 0 && accounts.isAdmin($0) && accounts.noLoginPath($0) == nil
            }
            if others.isEmpty {
                return .block((accounts.isGroupAdmin(account)
                               ? "\(name) is the last account in \(HostAccounts.adminGroups.joined(separator: ", ")) that can log in"
                               : "\(name) is the last administrator that can log in (etc/sudoers lets it run every command as root)")
                              + ": \(what) would leave no administrator login"
                              + (accounts.carriageReturnNote().map { " (\($0))" } ?? ""))
            }
        }
        let after = accounts.after([AllowedChange(resource: resource, changes: changes)])
        // Over SSH, as sshd is configured now: another administrator's password is no way
        // in when sshd takes no passwords. Asked only where the root has an sshd configuration,
        // for an account sshd could let in (a login shell) or an administrator.
        let asksSSH = accounts.isAdmin(account) || accounts.isLoginShell(account.shell)
        let overSSH = asksSSH ? try sshd?.loginsLost(root: root, before: accounts, after: after) : nil
        if overSSH?.administrator == true {
            return .block("\(name): \(what) would leave neither root nor any account in "
                          + "\(HostAccounts.adminGroups.joined(separator: ", ")) a way in over SSH, as sshd is configured "
                          + "(nor any etc/sudoers lets run every command as root)")
        }
        if overSSH?.anyone == true {
            return .block("\(name): \(what) would leave no account a way in over SSH, as sshd is configured (\(overSSH?.why ?? ""))")
        }
        // Nor on the console: the last account with a login path, where SSH lets no one in either.
        if accounts.noLoginPath(account) == nil, overSSH?.stillIn != true,
           !accounts.users.contains(where: { !$0.name.isSameBytes(name) && after.noLoginPath($0) == nil }) {
            return .block("\(name) is the last account that can log in: \(what) would leave no account a way in"
                          + (sshd == nil ? "" : ", on the console or over SSH"))
        }
        return .allow
    }
}

// MARK: - FileMode

extension FileModeDriver: JointlyGuardedDriver {
    /// The file a path ends as once the pass is made is judged whole: the FileMode resources of
    /// one host root are judged together, each with the changes allowed before it (`sameFile`).
    func guardDomain(_ resource: Resource, on target: Target) -> GuardDomain? {
        GuardDomain(name: "file modes", stage: 0, scope: (try? HostRoot(target: target))?.identity.map { "host root " + $0 })
    }

    /// The file the path leads to: only changes to it bear on the verdict (`sameFile`).
    func part(_ resource: Resource, on target: Target) -> String? {
        guard let root = try? HostRoot(target: target), let real = try? root.resolve(resource.spec.subject) else { return nil }
        return Self.identity(real)
    }

    /// A file by device and inode; by its path where nothing is there yet.
    static func identity(_ full: String) -> String {
        var info = stat()
        return stat(full, &info) == 0 ? "\(info.st_dev):\(info.st_ino)" : full
    }

    /// Only the changes to the same file are what a block of it was judged with (`sameFile`).
    func bears(_ change: AllowedChange, on resource: Resource, on target: Target) -> Bool {
        guard let root = try? HostRoot(target: target), let real = try? root.resolve(resource.spec.subject) else { return true }
        return !Self.sameFile(real, changes: [], resource: resource, alongside: [change], root: root).others.isEmpty
    }

    /// Folders whose files no policy may make group- or world-writable or give to a person
    /// (`bin`, `sbin` and `lib*` are real folders where /usr is not merged).
    static let systemFolders = ["etc", "usr", "boot", "root", "var/lib", "bin", "sbin", "lib", "lib32", "lib64", "libx32"]
    /// The programs administrators become root through, in these folders: they need their
    /// setuid bit and root as their owner. Not pkexec: taking its setuid bit is the usual
    /// mitigation of its flaws (CVE-2021-4034), and administrators reach root through sudo.
    static let rootPrograms = ["sudo", "su", "doas"]
    static let programFolders = ["usr/bin", "bin", "usr/sbin", "sbin"]
    /// sudo's own files (patterns relative to the root): sudo refuses to run at all when one is
    /// not owned by root, or is writable by others, or by a group other than root's.
    static let sudoersFiles = ["etc/sudoers", "etc/sudoers.d/*"]
    /// Folders every user and service writes temporary files in, each keeping the others' files
    /// (the sticky bit): `1777`. `run/lock` is `1777` on some systems (Debian) and `0755` on
    /// others, so it is kept `1777` only where it is.
    static let sharedFolders = ["tmp", "var/tmp", "dev/shm"]
    static let sharedWhereOpen = ["run/lock"]
    /// Files every user and service reads (accounts, name lookups, the dynamic loader's cache):
    /// no policy may take reading them from others, nor searching the folders on their way.
    static let worldReadable = ["etc/passwd", "etc/group", "etc/resolv.conf", "etc/hosts", "etc/nsswitch.conf", "etc/ld.so.cache"]
    /// Folders of the programs the system and its users run: no policy may leave one of their
    /// executables executable by no one (root included).
    static let executableFolders = ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin",
                                    "lib/systemd", "usr/lib/systemd"]

    /// The reason a mode taking bits away from the file at `real` (the resource's `paths`, as
    /// written and as resolved) is an outage, or nil: reading taken from others on a file every
    /// user and service reads (`worldReadable`: `ls -l` would still work as root, `getpwnam`,
    /// `getaddrinfo` and the dynamic loader would not for anyone else), searching taken from
    /// others on a folder on the way to one (`/etc 0700`), or execution taken from everyone on
    /// an executable in `executableFolders` (`/usr/sbin/sshd 0600`: no one can start it, root
    /// included). Taking bits from group or others on another file, or a program's execution
    /// from others alone, is hardening and goes through.
    static func tightened(from before: UInt32, to mode: UInt32, paths: [String], real: String, shown: String, root: HostRoot) -> String? {
        // Only bits taken from others, or every execute bit, can be an outage: most changes are
        // judged without reading anything.
        guard before & 0o005 & ~mode != 0 || before & 0o111 != 0 && mode & 0o111 == 0 else { return nil }
        var info = stat()
        guard stat(real, &info) == 0 else { return nil }  // nothing there to change
        let shownMode = format(mode: mode)
        // Where each of them really is: `/etc/resolv.conf` is often a link to systemd-resolved's file under /run.
        var resolved: [(name: String, real: String)] {
            worldReadable.compactMap { name in (try? root.resolve(name)).map { (name: name, real: $0) } }
        }
        if info.st_mode & FileType.mask == FileType.directory {
            guard before & 0o001 != 0, mode & 0o001 == 0 else { return nil }
            let onTheWay = paths.compactMap { path in worldReadable.first { PathText.isWithin($0, path) && $0 != path } }.first
                ?? resolved.first { PathText.isWithin($0.real, real) && $0.real != real }?.name
            if let file = onTheWay {
                return "mode \(shownMode) would take searching \(shown) from other users and services, the way to /\(file), which "
                    + "every user and service reads: account and name lookups would fail for all but its owner and group"
            }
            // A folder of programs, or one on the way to it (`/usr/bin` `0700`).
            if let folder = executableFolders.first(where: { folder in paths.contains { PathText.isWithin(folder, $0) } }) {
                return "mode \(shownMode) would take searching \(shown) from other users and services, the way to /\(folder): "
                    + "no one but its owner and group could run the programs there"
            }
            return nil
        }
        if before & 0o004 != 0, mode & 0o004 == 0,
           paths.contains(where: { worldReadable.contains($0) }) || resolved.contains(where: { $0.real == real }) {
            return "mode \(shownMode) would take reading \(shown) from other users and services, which every one of them reads: "
                + "account, name and library lookups would fail for all but its owner and group"
        }
        if paths.contains(where: { path in executableFolders.contains { PathText.isWithin(path, $0) && path != $0 } }),
           before & 0o111 != 0, mode & 0o111 == 0 {
            return "mode \(shownMode) would leave \(shown), a program the system runs, executable by no one, root included"
        }
        return nil
    }

    /// A set-id bit the spec's mode keeps on a file whose owner (setuid) or group (setgid) it
    /// changes: the program would then run as its new owner or group, with what the old one
    /// wrote in it (a user's own 4755 program given to root), a set-id bit added for that
    /// identity. Without a mode in the spec, the change drops the bit (`Kept.keptBits`).
    static func setIDHanded(_ changes: [PropertyDrift], mode specMode: UInt32?, real: String, shown: String,
                            root: HostRoot) throws -> String? {
        guard let specMode, specMode & 0o6000 != 0, changes.contains(where: { $0.property == "owner" || $0.property == "group" }) else {
            return nil
        }
        var info = stat()
        guard stat(real, &info) == 0, info.st_mode & FileType.mask == FileType.regular else { return nil }
        let accounts = try HostAccounts.reading(root)
        for change in changes {
            switch change.property {
            case "owner" where specMode & 0o4000 != 0:
                if let uid = accounts.user(change.desired)?.uid ?? UInt32(change.desired), uid != info.st_uid {
                    return "mode \(format(mode: specMode)) would keep the setuid bit on \(shown) while its owner changes to "
                        + "\(change.desired) (uid \(uid)): it would run as \(change.desired) what uid \(info.st_uid) put there, "
                        + "a setuid bit added for that owner"
                }
            // A program only root wrote and only root can write (Debian's `chage`, `expiry`,
            // `unix_chkpwd` are root:shadow 2755) runs with the new group's rights only as root meant.
            case "group" where specMode & 0o2000 != 0 && (info.st_uid != 0 || info.st_mode & 0o022 != 0):
                let gid = accounts.groups.first { $0.name.isSameBytes(change.desired) }?.gid ?? UInt32(change.desired)
                if let gid, gid != info.st_gid {
                    return "mode \(format(mode: specMode)) would keep the setgid bit on \(shown) while its group changes to "
                        + "\(change.desired) (gid \(gid)): it would run with that group's rights, a setgid bit added for that group"
                }
            default:
                break
            }
        }
        return nil
    }

    /// Files no policy may make world-readable (patterns relative to the root).
    static let secretFiles = ["etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-", "etc/sudoers",
                              "etc/sudoers.d/*", "etc/ssh/ssh_host_*_key"]

    /// The floor policy cannot go below: no group or world write under the system folders, no
    /// world read of secrets (shadow, gshadow, sudoers, SSH host private keys), no set-id bit
    /// added, and no system file handed to an owner with a uid from `UID_MIN` up (a person's).
    /// Nor may it take administration away (`administration`): an administrator's login
    /// shell, sudo, su or doas, or the authorized_keys sshd takes their key from. Nor open a
    /// file up to people as it ends once the whole pass is made (`openedUp`).
    /// Judged on the path as written and on where it really leads inside the root.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        await assess(changes, to: resource, on: target, alongside: [])
    }

    /// `assess`, with the changes this pass already allowed to other FileMode resources of the
    /// same file: a group in one and a mode in another, each harmless alone, leave one file.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target, alongside: [AllowedChange]) async -> GuardVerdict {
        judging("file mode") {
            let root = try HostRoot(target: target)
            let real = try root.resolve(resource.spec.subject)
            let whole = Self.sameFile(real, changes: changes, resource: resource, alongside: alongside, root: root)
            return try verdict(whole.changes, mode: whole.mode, to: resource, real: real, root: root)
        }
    }

    /// `changes` together with the changes this pass already allowed to other FileMode resources
    /// of the same file (by device and inode; by real path where nothing is there yet): the file
    /// ends with all of them. A property both set is this resource's. Also the mode apply leaves
    /// it with (a spec's mode is set again after a chown: this resource's, or another's of the
    /// file), and the ids of those other resources.
    static func sameFile(_ real: String, changes: [PropertyDrift], resource: Resource, alongside: [AllowedChange],
                         root: HostRoot) -> (changes: [PropertyDrift], mode: UInt32?, others: [String]) {
        func specMode(_ resource: Resource) -> UInt32? {
            resource.spec.properties.first { $0.name == "mode" }.flatMap { UInt32($0.value, radix: 8) }
        }
        let mine = Set(changes.map(\.property))
        var earlier: [String: PropertyDrift] = [:]
        var mode = specMode(resource)
        var others: [String] = []
        let file = identity(real)
        // The reconciler shows only the changes to the same file (`part`), so this resolves a
        // few paths, not every one allowed on the host before.
        for allowed in alongside where allowed.resource.id.kind == resource.id.kind && allowed.resource.id != resource.id {
            guard let other = try? root.resolve(allowed.resource.spec.subject), identity(other) == file else { continue }
            others.append("\(allowed.resource.id)")
            for change in allowed.changes where !mine.contains(change.property) { earlier[change.property] = change }
            mode = mode ?? specMode(allowed.resource)
        }
        return (earlier.values.sorted { $0.property < $1.property } + changes, mode, others)
    }

    /// The verdict on `changes` to the file at `real` (the resource's path resolved inside the
    /// root), which ends with `mode` where a spec sets one. A block names the other resources of
    /// the file whose changes `changes` includes as what it was judged with (`bears`).
    func verdict(_ changes: [PropertyDrift], mode specMode: UInt32?, to resource: Resource, real: String, root: HostRoot)
        throws -> GuardVerdict {
        // By bytes, as the kernel reads the path (`PathText`).
        let written = PathText.components(resource.spec.subject).joined(separator: "/")
        let base = root.path == "/" ? "/" : root.path + "/"
        let resolved = real.hasBytePrefix(base) ? String(Substring(real.utf8.dropFirst(base.utf8.count))) : written
        let paths = [written, resolved]
        let system = paths.contains { path in Self.systemFolders.contains { PathText.isWithin(path, $0) } }
        let secret = paths.contains { path in Self.secretFiles.contains { fnmatch($0, path, FNM_PATHNAME) == 0 } }
        let shown = resource.spec.subject + (resolved == written ? "" : " (really /\(resolved))")
        // sudo's own files, where the root has sudo: administrators become root through it.
        let sudoers = paths.contains { path in Self.sudoersFiles.contains { fnmatch($0, path, FNM_PATHNAME) == 0 } }
            && Self.programFolders.contains { folder in
                var info = stat()
                return (try? root.resolve("/" + folder + "/sudo")).map { stat($0, &info) == 0 && info.st_mode & FileType.mask == FileType.regular } ?? false
            }
        let shared = paths.contains { Self.sharedFolders.contains($0) }
        let sharedWhereOpen = paths.contains { Self.sharedWhereOpen.contains($0) }
        let sudoRefuses = "sudo refuses to run with a sudoers file that is not root's or that others can write: "
            + "administrators could no longer become root through it"
        var tightening: String?
        for change in changes {
            switch change.property {
            case "mode":
                guard let mode = UInt32(change.desired, radix: 8) else { return .block("mode \(change.desired) is not octal") }
                let before = change.observed.flatMap { UInt32($0, radix: 8) } ?? 0
                if sudoers && mode & 0o022 != 0 {
                    return .block("mode \(change.desired) would let group or others write \(shown): \(sudoRefuses)")
                }
                if (shared || sharedWhereOpen && before & 0o1777 == 0o1777) && mode & 0o1777 != 0o1777 {
                    var lost: [String] = []
                    if mode & 0o777 != 0o777 { lost.append("users and services other than its owner could no longer all create their files there") }
                    if mode & 0o1000 == 0 { lost.append("without the sticky bit anyone could delete or rename the others' files there") }
                    return .block("mode \(change.desired) would make \(shown), where every user and service writes temporary files, other "
                                  + "than 1777: \(lost.joined(separator: ", and "))")
                }
                if system && mode & 0o022 != 0 {
                    return .block("mode \(change.desired) would let group or others write \(shown), a system file")
                }
                if secret && mode & 0o004 != 0 {
                    return .block("mode \(change.desired) would let every user read \(shown), which holds secrets")
                }
                // Judged after what takes administration away, whose reason names who loses what.
                tightening = tightening ?? Self.tightened(from: before, to: mode, paths: paths, real: real, shown: shown, root: root)
                // Bits Bulwark's own change of owner or group took, interrupted before it put them
                // back (`Kept`), are the file's: putting them back adds nothing.
                // (Read only where a bit would be added: most mode changes add none.)
                let marked = mode & 0o6000 & ~before == 0 ? nil : (try? Self.node(resource.spec.subject, in: root, open: true))
                    .flatMap { found -> Kept.Mark? in
                        guard let fd = found.1 else { return nil }
                        defer { close(fd) }
                        return Kept.marker(fd, of: found.0)
                    }
                let added = mode & 0o6000 & ~before & ~(marked?.mode ?? 0)
                if added != 0 {
                    return .block("mode \(change.desired) would add the \(added & 0o4000 != 0 ? "setuid" : "setgid") bit to \(shown)")
                }
            case "owner" where system || sudoers || shared || sharedWhereOpen:
                let accounts = try HostAccounts.reading(root)
                let uid = accounts.user(change.desired)?.uid ?? UInt32(change.desired)
                guard let uid else { return .block("owner \(change.desired) is not in the target's etc/passwd") }
                if sudoers && uid != 0 {
                    return .block("owner \(change.desired) (uid \(uid)) would own \(shown): \(sudoRefuses)")
                }
                if (shared || sharedWhereOpen) && uid != 0 {
                    return .block("owner \(change.desired) (uid \(uid)) would own \(shown), where every user and service writes "
                                  + "temporary files: its owner may delete or rename anyone's files there and change its mode")
                }
                if system && uid >= accounts.uidMin && uid != 0 {
                    return .block("owner \(change.desired) (uid \(uid), at or above UID_MIN \(accounts.uidMin)) "
                                  + "is not a system account; \(shown) is a system file")
                }
            case "group" where secret:
                let accounts = try HostAccounts.reading(root)
                let gid = accounts.groups.first { $0.name.isSameBytes(change.desired) }?.gid ?? UInt32(change.desired)
                guard let gid else {
                    return .block("group \(change.desired) is not in the target's etc/group")
                }
                // sudo takes a group-writable sudoers file from root's group alone.
                var info = stat()
                if sudoers, gid != 0, stat(real, &info) == 0, (specMode ?? UInt32(info.st_mode & 0o7777)) & 0o020 != 0 {
                    return .block("group \(change.desired) (gid \(gid)) would be able to write \(shown): \(sudoRefuses)")
                }
            default:
                break
            }
        }
        if let harm = try administration(changes, mode: specMode, real: real, paths: Set(paths), shown: shown, root: root) {
            return .block(harm)
        }
        if let tightening { return .block(tightening) }
        if let handed = try Self.setIDHanded(changes, mode: specMode, real: real, shown: shown, root: root) { return .block(handed) }
        // The file as the write will find it (judged again there, on the file opened).
        if let (file, _, folder) = try Self.node(resource.spec.subject, in: root, open: false) {
            let accounts = changes.contains { $0.property != "mode" } ? try HostAccounts.reading(root) : nil
            if let planted = Self.plantedLink(
                changes, path: resource.spec.subject, file: file, folder: folder, root: root,
                uid: { name in accounts?.user(name)?.uid ?? UInt32(name) },
                gid: { name in accounts?.groups.first { $0.name.isSameBytes(name) }?.gid ?? UInt32(name) }) {
                return .block(planted)
            }
        }
        if let harm = try openedUp(changes, mode: specMode, real: real, system: system, secret: secret, shown: shown, root: root) {
            return .block(harm)
        }
        return .allow
    }

    /// Mode, owner and group of a file or folder.
    struct Node {
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var folder: Bool
    }

    /// What takes administration away, judged for each account with UID 0 or in sudo, wheel or
    /// admin, before and after the change (only what it could do before and cannot after):
    /// - executing its login shell, and searching every folder on the way to it;
    /// - executing sudo, su, doas; and for any of these, losing the setuid bit (a chown
    ///   clears it unless the spec sets the mode again) or root as its owner;
    /// - its key, under sshd's StrictModes: the authorized_keys file and each folder up to its
    ///   home owned by root or by it and writable by no one else, the file readable and every
    ///   folder above it searchable by it; the folders above the home (where sshd stops
    ///   looking) owned by root or by it and writable by no one else unless sticky (`/tmp`'s
    ///   1777), or anyone could move the home, and the key with it, away.
    /// A shell only guests use, or a key only a guest has, is not judged.
    func administration(_ changes: [PropertyDrift], mode specMode: UInt32?, real: String, paths: Set<String>,
                        shown: String, root: HostRoot) throws -> String? {
        var info = stat()
        guard stat(real, &info) == 0 else { return nil }  // nothing there to change
        let before = Node(mode: UInt32(info.st_mode & 0o7777), uid: info.st_uid, gid: info.st_gid,
                          folder: info.st_mode & FileType.mask == FileType.directory)
        // Only a folder, a file someone can execute now, or a file whose reading the change can
        // take away (a library a program loads) can be the way to a program lost; other files
        // only as a key file (the accounts are not read for the rest).
        let newMode = specMode ?? changes.last { $0.property == "mode" }.flatMap { UInt32($0.desired, radix: 8) }
        let readTaken = changes.contains { $0.property == "owner" || $0.property == "group" }
            || newMode.map { before.mode & 0o444 & ~$0 != 0 } ?? false
        let onTheWay = before.folder || before.mode & 0o111 != 0 || readTaken
        guard onTheWay || ["authorized_keys", "authorized_keys2"].contains(PathText.components(real).last ?? "") else { return nil }
        let accounts = try HostAccounts.reading(root)
        var after = before
        for change in changes {
            switch change.property {
            case "owner":
                guard let uid = accounts.user(change.desired)?.uid ?? UInt32(change.desired) else { continue }
                after.uid = uid
            case "group":
                guard let gid = accounts.groups.first(where: { $0.name.isSameBytes(change.desired) })?.gid ?? UInt32(change.desired) else { continue }
                after.gid = gid
            default:
                break
            }
        }
        // Apply sets the spec's mode after any chown; without one, it keeps the set-id bits the
        // chown took where their owner or group stays (`Kept`).
        if let specMode {
            after.mode = specMode
        } else if !before.folder {
            after.mode = before.mode & 0o1777 | Kept.keptBits(before.mode, of: info, uid: after.uid, gid: after.gid)
        }

        let rootProgram = !before.folder && paths.contains { path in
            let components = PathText.components(path)
            return Self.rootPrograms.contains(components.last ?? "") && Self.programFolders.contains(components.dropLast().joined(separator: "/"))
        }
        if rootProgram {
            if before.mode & 0o4000 != 0 && after.mode & 0o4000 == 0 {
                return "\(shown) would lose its setuid bit: administrators could no longer become root through it"
            }
            if before.uid == 0 && after.uid != 0 {
                return "\(shown) would no longer be owned by root: administrators could no longer become root through it"
            }
        }
        let admins = accounts.users.filter { $0.uid == 0 || accounts.isAdmin($0) }
        // A file is on the way to a program only as the program or its interpreter (executable
        // before, or nothing executes it to lose) or as a library it loads (ELF): for any other
        // file (`etc/shadow`, a key) the programs are not looked up, which cost a walk of the
        // root per program and per resource (4 % of a 100-root pass's CPU by perf).
        let programsMatter = onTheWay && (before.folder || before.mode & 0o111 != 0 || ELFHeaders.couldBeObject(real, in: root))
        let programs = !programsMatter ? [] : Self.programFolders.flatMap { folder in Self.rootPrograms.map { "/" + folder + "/" + $0 } }
            .compactMap { path in (try? root.resolve(path)).map { (full: $0, name: path, role: "who becomes root through it") } }
            + [(try? root.resolve("/bin/sh")).map { (full: $0, name: "/bin/sh", role: "who runs commands through it (system(), cron, package scripts)") }]
            .compactMap { $0 }
        // Each program's needs once per call (and once per plan: `ProgramNeeds`).
        var starts: [String: [ProgramNeed]] = [:]
        func needs(_ program: String) -> [ProgramNeed] {
            if let known = starts[program] { return known }
            let found = ProgramNeeds.of(program, in: root)
            starts[program] = found
            return found
        }
        for account in admins {
            let gids = Set(accounts.groups.filter { $0.members.contains { $0.isSameBytes(account.name) } }.map(\.gid)).union([account.gid])
            func can(_ node: Node, _ want: UInt32) -> Bool {
                if account.uid == 0 { return want != 0o1 || node.folder || node.mode & 0o111 != 0 }
                let shift: UInt32 = node.uid == account.uid ? 6 : gids.contains(node.gid) ? 3 : 0
                return (node.mode >> shift) & want == want
            }
            func lost(_ want: UInt32) -> Bool { can(before, want) && !can(after, want) }
            let who = "\(account.name) (uid \(account.uid))"
            var needed = programs
            if programsMatter, !HostAccounts.isNoLoginShell(account.shell), PathText.isAbsolute(account.shell),
               let full = try? root.resolve(account.shell) {
                needed.insert((full, "its login shell \(account.shell)", "whose login shell it is"), at: 0)
                // A script shell (`#!/usr/bin/python3`): the kernel starts its interpreter with
                // the account's rights, so it, and what it needs to start, are the shell's too.
                if let interpreter = ELFHeaders.scriptInterpreter(full, in: root), let program = try? root.resolve(interpreter) {
                    needed.insert((program, "\(interpreter), the interpreter of its login shell \(account.shell)",
                                   "whose login shell \(account.shell) runs through it"), at: 1)
                }
            }
            for (full, name, role) in needed {
                if full.isSameBytes(real), lost(0o1) {
                    return "\(shown) would no longer be executable by \(who), \(role)"
                }
                // A script (`#!`) is read by its interpreter, as the account: executable alone, it fails.
                if full.isSameBytes(real), lost(0o4), ELFHeaders.isScript(real, in: root) {
                    return "\(shown) would no longer be readable by \(who), \(role): a script's interpreter reads it as that account"
                }
                if full.hasBytePrefix(real + "/"), before.folder, lost(0o1), FileManager.default.fileExists(atPath: full) {
                    return "\(who) could no longer reach \(name) through \(shown)"
                }
            }
            // What each of them needs to start (`ProgramNeeds`): its interpreter executable, its
            // libraries readable (by root alone for a program setuid root), the folders on the way searchable.
            for (full, name, _) in needed {
                for need in needs(full) where !need.asRoot {
                    if need.path.isSameBytes(real), lost(need.want) {
                        return "\(who) could no longer start \(name): \(shown) would not be "
                            + (need.want == 0o1 ? "executable" : "readable") + " by it"
                    }
                    if before.folder, need.folders.contains(real), lost(0o1) {
                        return "\(who) could no longer start \(name): \(shown) would not be searchable by it, on the way to \(need.shown)"
                    }
                }
            }
            // The key files looked for are under the home: nothing else is read for other paths.
            guard let home = try? root.resolve(account.home),
                  real.isSameBytes(home) || real.hasBytePrefix(home + "/") || home.hasBytePrefix(real + "/") else { continue }
            // Every key file, whether sshd reads it now or not: one it would ignore still holds the
            // key a fixed mode would bring back into use.
            guard let keys = accounts.authorizedKeys(account, strictModes: false), let file = try? root.resolve(keys) else { continue }
            if file.isSameBytes(real) || file.hasBytePrefix(real + "/") {
                // sshd walks up from the file and stops after the home (or at the root when the
                // file is not under the home).
                let checked = !file.hasBytePrefix(home + "/") || real.isSameBytes(home) || real.hasBytePrefix(home + "/")
                func strict(_ node: Node) -> Bool { (node.uid == 0 || node.uid == account.uid) && node.mode & 0o022 == 0 }
                let why = after.mode & 0o022 != 0 ? "writable by group or others" : "owned by uid \(after.uid)"
                if checked && strict(before) && !strict(after) {
                    return "sshd (StrictModes) would ignore the key of \(who) in \(keys): \(shown) would be \(why)"
                }
                // Above the home sshd looks no further, but whoever may write there without the
                // sticky bit can move the home, and the key with it, away.
                func guarded(_ node: Node) -> Bool { strict(node) || node.mode & 0o1000 != 0 && (node.uid == 0 || node.uid == account.uid) }
                if !checked && guarded(before) && !guarded(after) {
                    return "any user could move the home of \(who), and the key sshd reads there, away: \(shown) would be \(why)"
                }
                if lost(file == real ? 0o4 : 0o1) {
                    return "\(who) could no longer \(file == real ? "read" : "reach") its key in \(keys) through \(shown)"
                }
            }
        }
        return nil
    }

    /// Files in a home that run, or set up what runs, as its account when it logs in: whoever
    /// writes one of an administrator's runs commands as them, and through sudo as root.
    static let startupFiles = [".profile", ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".bash_aliases",
                               ".zshenv", ".zprofile", ".zshrc", ".zlogin", ".zlogout", ".cshrc", ".tcshrc", ".login",
                               ".logout", ".kshrc", ".mkshrc", ".pam_environment", ".xprofile", ".xsession", ".xinitrc",
                               ".ssh/rc", ".ssh/environment"]

    /// What the file, as it ends once every change of the pass to it is made, newly lets someone
    /// other than root and the administrators (UID 0, or in sudo, wheel, admin) do, judged on
    /// its owner, group and mode together rather than one property at a time:
    /// - read a secret (shadow, sudoers, a host key) through its group;
    /// - write a system file through its group;
    /// - write a file that root or an administrator owns (before or after), or an
    ///   administrator's shell startup file (`startupFiles`), through its group or as anyone (a
    ///   folder with the sticky bit aside, as /tmp's 1777);
    /// - own an executable root or an administrator owned, or an administrator's startup file.
    /// A group reaches people when its gid is from `GID_MIN` up, or when an account from `UID_MIN`
    /// up that is no administrator is in it. Only what the change adds is judged: a file already
    /// open that way is not made worse by it. The reason, or nil.
    func openedUp(_ changes: [PropertyDrift], mode specMode: UInt32?, real: String, system: Bool, secret: Bool,
                  shown: String, root: HostRoot) throws -> String? {
        var info = stat()
        guard stat(real, &info) == 0 else { return nil }  // nothing there to change
        let before = Node(mode: UInt32(info.st_mode & 0o7777), uid: info.st_uid, gid: info.st_gid,
                          folder: info.st_mode & FileType.mask == FileType.directory)
        let sticky = before.folder && (specMode ?? before.mode) & 0o1000 != 0
        // Only what can open the file up reads the accounts: a mode that takes bits away needs none.
        let mode = specMode ?? changes.last { $0.property == "mode" }.flatMap { UInt32($0.desired, radix: 8) } ?? before.mode
        let owned = changes.contains { $0.property == "owner" || $0.property == "group" }
        guard owned || mode & 0o062 & ~before.mode != 0 else { return nil }
        let accounts = try HostAccounts.reading(root)
        var after = before
        after.mode = mode
        for change in changes {
            switch change.property {
            case "owner": after.uid = accounts.user(change.desired)?.uid ?? UInt32(change.desired) ?? after.uid
            case "group": after.gid = accounts.groups.first { $0.name.isSameBytes(change.desired) }?.gid ?? UInt32(change.desired) ?? after.gid
            default: break
            }
        }
        func administers(_ uid: UInt32) -> Bool { uid == 0 || accounts.users.contains { $0.uid == uid && accounts.isAdmin($0) } }
        func person(_ uid: UInt32) -> Bool { uid >= accounts.uidMin && !administers(uid) }
        func account(_ uid: UInt32) -> String { accounts.users.first { $0.uid == uid }.map { "\($0.name) (uid \(uid))" } ?? "uid \(uid)" }
        /// Who outside administration the group reaches, in words, or nil.
        func reach(_ gid: UInt32) -> String? {
            guard gid != 0 else { return nil }
            let group = accounts.groups.first { $0.gid == gid }
            let name = "group \(group?.name ?? String(gid)) (gid \(gid)"
            if gid >= accounts.gidMin { return name + ", at or above GID_MIN \(accounts.gidMin))" }
            let members = accounts.users.filter { user in
                user.gid == gid || (group?.members.contains { $0.isSameBytes(user.name) } ?? false)
            }
            return members.first { person($0.uid) }.map { name + ", which \(account($0.uid)) is in)" }
        }
        let groupRead = after.mode & 0o040 != 0 && (before.mode & 0o040 == 0 || before.gid != after.gid)
        let groupWrite = after.mode & 0o020 != 0 && (before.mode & 0o020 == 0 || before.gid != after.gid)
        let worldWrite = after.mode & 0o002 != 0 && before.mode & 0o002 == 0 && !sticky
        if secret, groupRead, let group = reach(after.gid) {
            return "\(group) would be able to read \(shown), which holds secrets"
        }
        if system, groupWrite, let group = reach(after.gid) {
            return "\(group) would be able to write \(shown), a system file"
        }
        // An administrator's startup file, by the real path: directly under its home as resolved.
        let startup = accounts.users.filter { administers($0.uid) }.first { admin in
            guard let home = try? root.resolve(admin.home) else { return false }
            return Self.startupFiles.contains { real.isSameBytes(home + "/" + $0) }
        }
        let owner = administers(before.uid) ? before.uid : after.uid
        let what = startup.map { "\(shown), a shell startup file of \($0.name) (uid \($0.uid)), who administers the host" }
            ?? "\(shown), a file of \(account(owner)), who administers the host"
        if startup != nil || administers(before.uid) || administers(after.uid) {
            if worldWrite {
                return "mode \(FileModeDriver.format(mode: after.mode)) would let every user write \(what)"
            }
            if groupWrite, let group = reach(after.gid) {
                return "\(group) would be able to write \(what)"
            }
        }
        let executable = !before.folder && before.mode & 0o111 != 0
        if after.uid != before.uid, person(after.uid), startup != nil || (executable && administers(before.uid)) {
            return "owner \(account(after.uid)), who does not administer the host, would own and could rewrite "
                + (startup == nil ? "\(shown), an executable of \(account(before.uid))" : what)
        }
        return nil
    }
}

extension SSHDConfigDriver {
    /// What, with the target's sshd configuration as it is, the accounts `after` lose over SSH
    /// against `before` (`logins`, as the SSHDConfig guard judges): root's and every
    /// administrator's way in, anyone's; whether someone still has one, and why each is refused.
    /// Nil when the root has no sshd configuration (no SSH to keep) or sshd is not installed
    /// where Bulwark runs.
    func loginsLost(root: HostRoot, before: HostAccounts, after: HostAccounts) throws
        -> (administrator: Bool, anyone: Bool, stillIn: Bool, why: String)? {
        guard let executable = validator.executable, try FileIO.exists(try root.resolve(Self.configPath), in: root) else { return nil }
        let probe = try SSHDProbe(executable: executable, config: try read(root), root: root, driver: self)
        defer { probe.remove() }
        let global = try probe.effective(user: "root")
        let was = try logins(probe, global: global, accounts: before)
        let now = try logins(probe, global: global, accounts: after)
        return (was.administrator && !now.administrator, was.someone && !now.someone, now.someone, now.why)
    }
}
