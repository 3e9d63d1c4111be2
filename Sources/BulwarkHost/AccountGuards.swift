internal import Foundation
internal import BulwarkCore

// MARK: - UserAccount

extension UserAccountDriver: JointlyGuardedDriver {
    /// Who can still log in: judged before the sshd guard, which is shown the accounts changed.
    func guardDomain(_ resource: Resource, on target: Target) -> GuardDomain? { HostRoot.loginsDomain(stage: 0, target) }

    /// Blocks a lock, an expiry or a shell without a login for: an account with UID 0; the
    /// account Bulwark runs as (only knowable when the root is `/`); the last account in sudo,
    /// wheel or admin that has a login path, once the account changes this pass already allowed
    /// on the target are made (`alongside`); the last way in over SSH for root or such an
    /// account, judged by sshd as the root configures it (`SSHDConfigDriver.administratorCanLogIn`).
    /// Blocks a shell that is not an executable inside the root, and a login shell the root's
    /// `etc/shells` does not list.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target, alongside: [AllowedChange]) async -> GuardVerdict {
        do {
            let root = try HostRoot(target: target)
            let accounts = try HostAccounts(root: root).after(alongside)
            let name = resource.spec.subject
            guard let account = accounts.user(name) else { return .allow }  // nothing to change
            if accounts.duplicates.contains(name) {
                return .block("account \(name) appears more than once in etc/passwd or etc/shadow")
            }
            var harmful: [String] = []
            for change in changes {
                switch change.property {
                case "locked" where change.desired == "true":
                    harmful.append("locking it")
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
                    $0.name != name && $0.uid != 0 && accounts.isAdmin($0) && accounts.noLoginPath($0) == nil
                }
                if others.isEmpty {
                    return .block("\(name) is the last account in \(HostAccounts.adminGroups.joined(separator: ", ")) "
                                  + "that can log in: \(what) would leave no administrator login")
                }
            }
            // Over SSH, as sshd is configured now: another administrator's password is no way
            // in when sshd takes no passwords. Asked only where the root has an sshd configuration.
            if accounts.isAdmin(account), let sshd, try sshd.administratorCanLogIn(root: root, accounts: accounts) == true,
               try sshd.administratorCanLogIn(root: root, accounts: accounts.after([AllowedChange(resource: resource, changes: changes)])) == false {
                return .block("\(name): \(what) would leave neither root nor any account in "
                              + "\(HostAccounts.adminGroups.joined(separator: ", ")) a way in over SSH, as sshd is configured")
            }
            return .allow
        } catch {
            return cannotJudge("account", error)
        }
    }
}

// MARK: - FileMode

extension FileModeDriver {
    /// Folders whose files no policy may make group- or world-writable or give to a person.
    static let systemFolders = ["etc", "usr", "boot", "root", "var/lib"]
    /// Files no policy may make world-readable (patterns relative to the root).
    static let secretFiles = ["etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-", "etc/sudoers",
                              "etc/sudoers.d/*", "etc/ssh/ssh_host_*_key"]

    /// The floor policy cannot go below: no group or world write under the system folders, no
    /// world read of secrets (shadow, gshadow, sudoers, SSH host private keys), no set-id bit
    /// added, and no system file handed to an owner with a uid from `UID_MIN` up (a person's).
    /// Judged on the path as written and on where it really leads inside the root.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        do {
            let root = try HostRoot(target: target)
            let written = String(resource.spec.subject.drop { $0 == "/" })
            let real = try root.resolve(resource.spec.subject)
            let base = root.path == "/" ? "/" : root.path + "/"
            let resolved = real.hasPrefix(base) ? String(real.dropFirst(base.count)) : written
            let paths = Set([written, resolved])
            let system = paths.contains { path in
                Self.systemFolders.contains { path == $0 || path.hasPrefix($0 + "/") }
            }
            let secret = paths.contains { path in Self.secretFiles.contains { fnmatch($0, path, FNM_PATHNAME) == 0 } }
            let shown = resource.spec.subject + (resolved == written ? "" : " (really /\(resolved))")
            for change in changes {
                switch change.property {
                case "mode":
                    guard let mode = UInt32(change.desired, radix: 8) else { return .block("mode \(change.desired) is not octal") }
                    let before = change.observed.flatMap { UInt32($0, radix: 8) } ?? 0
                    if system && mode & 0o022 != 0 {
                        return .block("mode \(change.desired) would let group or others write \(shown), a system file")
                    }
                    if secret && mode & 0o004 != 0 {
                        return .block("mode \(change.desired) would let every user read \(shown), which holds secrets")
                    }
                    let added = mode & 0o6000 & ~before
                    if added != 0 {
                        return .block("mode \(change.desired) would add the \(added & 0o4000 != 0 ? "setuid" : "setgid") bit to \(shown)")
                    }
                case "owner" where system:
                    let accounts = try HostAccounts(root: root)
                    let uid = accounts.user(change.desired)?.uid ?? UInt32(change.desired)
                    guard let uid else { return .block("owner \(change.desired) is not in the target's etc/passwd") }
                    if uid >= accounts.uidMin && uid != 0 {
                        return .block("owner \(change.desired) (uid \(uid), at or above UID_MIN \(accounts.uidMin)) "
                                      + "is not a system account; \(shown) is a system file")
                    }
                case "group" where secret:
                    // Group read of a secret, given to a person's group, is world read by another name.
                    let accounts = try HostAccounts(root: root)
                    let gid = accounts.groups.first { $0.name == change.desired }?.gid ?? UInt32(change.desired)
                    guard let gid else { return .block("group \(change.desired) is not in the target's etc/group") }
                    var info = stat()
                    let current = stat(real, &info) == 0 ? UInt32(info.st_mode & 0o7777) : 0o777
                    let mode = changes.first { $0.property == "mode" }.flatMap { UInt32($0.desired, radix: 8) } ?? current
                    let readable = mode & 0o040 != 0
                    if gid >= accounts.gidMin && readable {
                        return .block("group \(change.desired) (gid \(gid), at or above GID_MIN \(accounts.gidMin)) "
                                      + "would be able to read \(shown), which holds secrets")
                    }
                default:
                    break
                }
            }
            return .allow
        } catch {
            return cannotJudge("file mode", error)
        }
    }
}
