internal import Foundation
internal import BulwarkCore

/// `UserAccount`: a local account's password lock (`!` in `etc/shadow`), login shell
/// (`etc/passwd`) and expiry date (`etc/shadow`). Every other line stays byte for byte; the
/// password hash is never read into a value, logged or recorded.
///
/// ```yaml
/// spec: {name: guest, locked: true, shell: /usr/sbin/nologin, expires: 2024-01-01}
/// ```
struct UserAccountDriver: ResourceDriver {
    /// The sshd driver of the same adapter: the guard asks it who could still log in over SSH.
    var sshd: SSHDConfigDriver?

    /// Its changes are `FileIO.write`'s renames of passwd and shadow, which pass
    /// `ChangeGate.current` first; both files are made (and every refusal of either is said)
    /// before the first rename. A fix is marked tried after the account is read again and the
    /// guard asked again under the locks, not before.
    var announcesChanges: Bool { true }

    func watchedPaths(_ resource: Resource, on target: Target) -> [String] {
        HostAdapter.paths(target, ["etc/passwd", "etc/shadow"])
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["name", "locked", "shell", "expires"])
        guard let nameReader = spec.field("name", required: true), let name = nameReader.string() else { return nil }
        guard isAccountName(name), Int(name) == nil else {
            nameReader.fail("expected an account name such as guest, got '\(name)'")
            return nil
        }
        var properties: [DesiredProperty] = []
        if let reader = spec.field("locked") {
            guard let locked = reader.bool() else { return nil }
            properties.append(DesiredProperty("locked", String(locked)))
        }
        if let reader = spec.field("shell") {
            guard let shell = parsePath(reader) else { return nil }
            // etc/passwd is colon-separated: a ':' would move the rest into another field.
            guard !shell.contains(":") else {
                reader.fail("a shell in etc/passwd cannot contain ':' (the field separator), got '\(shell)'")
                return nil
            }
            properties.append(DesiredProperty("shell", shell))
        }
        if let reader = spec.field("expires") {
            guard let text = reader.string() else { return nil }
            guard text == "never" || days(text) != nil else {
                reader.fail("expected a date (YYYY-MM-DD) or never, got '\(text)'")
                return nil
            }
            properties.append(DesiredProperty("expires", text))
        }
        if properties.isEmpty {
            spec.fail("set at least one of locked, shell, expires")
            return nil
        }
        return ResourceSpec(subject: name, properties: properties)
    }

    /// Days since 1970-01-01 for `YYYY-MM-DD` (the unit of shadow's expiry field).
    static func days(_ date: String) -> Int? {
        let parts = date.split(separator: "-")
        guard parts.count == 3, parts[0].count == 4, let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]),
              (1...12).contains(m), (1...31).contains(d) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        guard let when = calendar.date(from: DateComponents(year: y, month: m, day: d)),
              calendar.component(.day, from: when) == d else { return nil }
        return Int(when.timeIntervalSince1970 / 86400)
    }

    static func date(days: Int) -> String {
        let when = Date(timeIntervalSince1970: Double(days) * 86400)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let c = calendar.dateComponents([.year, .month, .day], from: when)
        return String(format: "%04d-%02d-%02d", c.year ?? 1970, c.month ?? 1, c.day ?? 1)
    }

    /// The index of `name`'s line and its colon-separated fields. A name on two lines (a decoy
    /// line before the real one) is refused: which one a program reads is not Bulwark's guess.
    static func find(_ name: String, in file: LineFile, path: String = "") throws(HostError) -> (line: Int, fields: [Substring])? {
        var found: (line: Int, fields: [Substring])?
        for (index, raw) in file.lines.enumerated() {
            // By bytes, as glibc reads the line (see `splitBytes`), a carriage return kept in the
            // last field (see `glibcContent`).
            let fields = LineFile.glibcContent(raw).splitBytes(at: ":")
            guard fields.first?.isSameBytes(name) == true else { continue }
            if let found {
                throw HostError("account \(name) appears twice (lines \(found.line + 1) and \(index + 1)); "
                                + "Bulwark does not act on an ambiguous account", path: path)
            }
            found = (index, fields)
        }
        return found
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        try observe(resource, root: try HostRoot(target: target))
    }

    /// A passwd line's shell as glibc reads it: the rest of the line after the sixth `:`, colons
    /// and all (`/bin/bash:extra` is no shell), empty on a shorter line.
    static func shell(_ fields: [Substring]) -> String {
        fields.count > 6 ? fields[6...].joined(separator: ":") : ""
    }

    /// The account's shadow line as glibc reads it; throws where glibc skips the line (a CRLF
    /// line, a number it cannot read), since a lock or an expiry written there would take no
    /// effect and the account has no shadow entry to glibc.
    static func shadowLine(_ name: String, _ entry: (line: Int, fields: [Substring]), in file: LineFile, path: String) throws -> ShadowLine {
        guard let parsed = ShadowLine(LineFile.glibcContent(file.lines[entry.line])) else {
            throw HostError("account \(name)'s line in shadow (line \(entry.line + 1)) is one glibc skips (a carriage return, "
                            + "or a field it cannot read as a number): the account has no shadow entry to it; fix the line by hand",
                            path: path)
        }
        return parsed
    }

    func observe(_ resource: Resource, root: HostRoot) throws -> Observation {
        let name = resource.spec.subject
        let passwd = try FileIO.readLines("etc/passwd", in: root) ?? LineFile("")
        guard let account = try Self.find(name, in: passwd, path: "etc/passwd") else {
            return Observation(values: [:])  // no account: nothing to lock or fix
        }
        // glibc skips a line that stops before the gid, or whose uid or gid it cannot read: no
        // account to it (nor to shadow-utils, which wants all seven fields), and no decoy line
        // for Bulwark to lock instead of the real one. Said, not taken for an absent account: the
        // line names the account the resource is about.
        guard account.fields.count >= 4 else {
            throw HostError("account \(name)'s line in passwd (line \(account.line + 1)) has \(account.fields.count) "
                            + "field\(account.fields.count == 1 ? "" : "s") and no gid, a line glibc skips: fix the line by hand",
                            path: "etc/passwd")
        }
        guard glibcNumber(account.fields[2]) != nil, glibcNumber(account.fields[3]) != nil else {
            throw HostError("account \(name)'s line in passwd (line \(account.line + 1)) is one glibc skips (its uid or gid is no "
                            + "number): fix the line by hand", path: "etc/passwd")
        }
        // pam_unix reads shadow only for an account whose password field in passwd is `x`
        // (`is_pwd_shadowed`): with a hash there, or nothing (no password at all), a lock or an
        // expiry in shadow is not what PAM reads, and `su` or sshd let the account in.
        let managesShadow = resource.spec.properties.contains { $0.name == "locked" || $0.name == "expires" }
        let field = account.fields[1]
        // `x`, or `##name` (pam_unix's older mark), sends PAM to shadow. A field that starts with
        // `*` or `!` matches no password: locked as PAM reads it, which is all `locked: true` asks.
        let shadowed = field.isSameBytes("x") || field.isSameBytes("##" + name)
        let lockedInPasswd = !shadowed && (field.hasBytePrefix("*") || field.hasBytePrefix("!"))
            && resource.spec.properties.allSatisfy { $0.name != "expires" && ($0.name != "locked" || $0.value == "true") }
        if managesShadow, !shadowed, !lockedInPasswd {
            throw HostError("account \(name)'s password field in passwd (line \(account.line + 1)) is "
                            + (account.fields[1].isEmpty ? "empty" : "not 'x'") + ": PAM reads its password there and not "
                            + "shadow's lock or expiry; Bulwark does not judge it: move it to shadow (pwconv)", path: "etc/passwd")
        }
        let shadowPath = try root.resolve("etc/shadow")
        let shadowFile = try FileIO.readLines(shadowPath, in: root) ?? LineFile("")
        let shadow = try Self.find(name, in: shadowFile, path: shadowPath)
        var values: [String: String?] = [:]
        for property in resource.spec.properties {
            switch property.name {
            case "shell":
                values["shell"] = Self.shell(account.fields)
            case "locked" where lockedInPasswd:
                values["locked"] = "true"
            case "locked":
                guard let shadow else { throw HostError("account \(name) has no entry in shadow", path: shadowPath) }
                let hash = try Self.shadowLine(name, shadow, in: shadowFile, path: shadowPath).hash
                values["locked"] = String(hash.hasBytePrefix("!") || hash.hasBytePrefix("*"))
            case "expires":
                guard let shadow else { throw HostError("account \(name) has no entry in shadow", path: shadowPath) }
                values["expires"] = try Self.shadowLine(name, shadow, in: shadowFile, path: shadowPath).expiresDay
                    .map(Self.date(days:)) ?? "never"
            default:
                break
            }
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let root = try HostRoot(target: target)
        let approved = ApplyContext.approvedBlock
        let found = try await root.applying(fixing: "UserAccount") { try applyOnce(changes, to: resource, root: root, approved: approved) }
        try AlreadyInSync.unless(changes, found: found)
    }

    /// One attempt, holding the target's lock: the account is observed again and the changes it
    /// already has (another writer made them since the plan) are left out; when that is all of
    /// them nothing is written. The guard is asked again: the plan's verdict was judged on
    /// accounts another writer may have changed since, or another Bulwark, whose change this
    /// lock now shows. A block refuses the write unless it is the one a person approved past
    /// (`approved`, `ApplyContext.approvedBlock`). Returns the properties found.
    ///
    /// All of it holds shadow-utils' lock too (`AccountFilesLock`), from the read to the rename:
    /// a useradd or passwd under way is waited for, and none starts until Bulwark is done.
    private func applyOnce(_ allChanges: [PropertyDrift], to resource: Resource, root: HostRoot, approved: String?) throws -> Set<String> {
        let lock = try AccountFilesLock(root)
        defer { withExtendedLifetime(lock) {} }
        let now = try observe(resource, root: root).values
        let found = Set(allChanges.filter { (now[$0.property] ?? nil) == $0.desired }.map(\.property))
        let changes = allChanges.filter { !found.contains($0.property) }
        guard !changes.isEmpty else { return found }
        // As `assess` judges: accounts that cannot be read are a block (which a person may have approved).
        try HostError.refuseAtTheWrite(judging("account") { try verdict(changes, to: resource, root: root, alongside: []) }, approved: approved)
        try write(changes, to: resource, root: root)
        HostFaults.change(at: "after", of: "UserAccount")
        return found
    }

    /// Writes the account's passwd line (its shell) and shadow line (its lock, its expiry). Both
    /// files are made first, each refusal said, and only then renamed into place (passwd, then
    /// shadow): a shadow line Bulwark will not write leaves passwd as it was too.
    private func write(_ changes: [PropertyDrift], to resource: Resource, root: HostRoot) throws {
        var writes: [(file: LineFile, path: String, mode: mode_t)] = []
        if let passwd = try passwdFile(changes, to: resource, root: root) { writes.append(passwd) }
        if let shadow = try shadowFile(changes, to: resource, root: root) { writes.append(shadow) }
        for write in writes {
            try FileIO.write(write.file, to: write.path, in: root, newFileMode: write.mode)
        }
    }

    /// The passwd file with the account's new shell, nil when the shell is not changed.
    private func passwdFile(_ changes: [PropertyDrift], to resource: Resource, root: HostRoot) throws
        -> (file: LineFile, path: String, mode: mode_t)? {
        let name = resource.spec.subject
        guard let shell = changes.first(where: { $0.property == "shell" }) else { return nil }
        let path = try root.resolve("etc/passwd")
        var passwd = try FileIO.readLines(path, in: root) ?? LineFile("")
        guard let account = try Self.find(name, in: passwd, path: path), account.fields.count >= 4 else {
            throw HostError("account \(name) does not exist", path: path)
        }
        // The shell is the rest of the line (`shell`): all of it is replaced. A line that
        // stops short of a shell is not filled out: its last field may end in a byte glibc
        // keeps (a carriage return), which would then sit inside the line.
        guard account.fields.count >= 7 else {
            throw HostError("account \(name)'s line in passwd (line \(account.line + 1)) has \(account.fields.count) fields and no shell "
                            + "field; Bulwark writes a shell only into a whole line: fix the line by hand", path: path)
        }
        let fields = account.fields[..<6] + [Substring(shell.desired)]
        passwd.lines[account.line] = Substring(fields.joined(separator: ":") + LineFile.glibcEnding(passwd.lines[account.line]))
        return (passwd, path, 0o644)
    }

    /// The shadow file with the account's new lock or expiry, nil when neither is changed.
    private func shadowFile(_ changes: [PropertyDrift], to resource: Resource, root: HostRoot) throws
        -> (file: LineFile, path: String, mode: mode_t)? {
        let name = resource.spec.subject
        let shadowChanges = changes.filter { $0.property == "locked" || $0.property == "expires" }
        guard !shadowChanges.isEmpty else { return nil }
        let path = try root.resolve("etc/shadow")
        var shadow = try FileIO.readLines(path, in: root) ?? LineFile("")
        guard let entry = try Self.find(name, in: shadow, path: path) else {
            throw HostError("account \(name) has no entry in shadow", path: path)
        }
        _ = try Self.shadowLine(name, entry, in: shadow, path: path)
        // Only into a whole line, the nine fields of shadow(5): a shorter one glibc still reads
        // (the old form of five, or eight ending in the expiry) is not filled out nor cut, and
        // shadow-utils reads only lines of nine fields or five. `…:7::19000` with its expiry
        // emptied was a line glibc skips: the account had no shadow entry left at all.
        guard entry.fields.count == 9 else {
            throw HostError("account \(name)'s line in shadow (line \(entry.line + 1)) has \(entry.fields.count) fields, not the "
                            + "9 of shadow(5); Bulwark writes a lock or an expiry only into a whole line: fix the line by hand",
                            path: path)
        }
        var fields = entry.fields
        for change in shadowChanges {
            switch change.property {
            case "locked":
                let hash = fields[1]
                if change.desired == "true", !hash.hasBytePrefix("!") && !hash.hasBytePrefix("*") {
                    fields[1] = "!" + hash
                } else if change.desired == "false" {
                    guard hash.hasBytePrefix("!") else { throw HostError("account \(name) is locked with '*' and has no password to unlock") }
                    fields[1] = Substring(hash.utf8.dropFirst())
                }
            case "expires":
                fields[7] = change.desired == "never" ? "" : Substring(String(Self.days(change.desired) ?? 0))
            default:
                break
            }
        }
        let line = fields.joined(separator: ":")
        // What glibc will read is what was meant: never a line it skips, nor one read otherwise.
        let expires = shadowChanges.first { $0.property == "expires" }.map { $0.desired == "never" ? nil : Self.days($0.desired) }
        guard let written = ShadowLine(Substring(line)), expires.map({ $0 == written.expiresDay }) ?? true else {
            throw HostError("account \(name)'s line in shadow (line \(entry.line + 1)), changed, would not read as meant; "
                            + "not written: fix the line by hand", path: path)
        }
        shadow.lines[entry.line] = Substring(line + LineFile.glibcEnding(shadow.lines[entry.line]))
        return (shadow, path, 0o640)
    }
}
