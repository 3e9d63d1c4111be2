internal import Foundation
internal import CLinux
internal import BulwarkCore

// MARK: - Values written into line-oriented files

/// The check every value Bulwark writes into a line-oriented host file (passwd, shadow,
/// sshd_config, login.defs, sysctl.d) passes at validation: checked per Unicode scalar, so
/// "\r\n" (one Swift Character) cannot slip past a newline test.
enum LineSafety {
    /// A description of the first character that could end or split a line, or nil.
    /// Refused: every Cc scalar (C0 controls with CR, LF, VT, FF and TAB; DEL; C1 controls with
    /// NEL U+0085) and the Unicode line and paragraph separators U+2028 and U+2029.
    static func problem(_ value: String) -> String? {
        for scalar in value.unicodeScalars {
            if scalar.properties.generalCategory == .control || scalar.value == 0x2028 || scalar.value == 0x2029 {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                return "contains the control or line-separator character U+\(String(repeating: "0", count: max(0, 4 - hex.count)) + hex)"
            }
        }
        return nil
    }
}

// MARK: - Accounts as the target sees them

/// One `etc/passwd` entry, with what the guards need from `etc/shadow` (never the hash itself).
struct HostAccount: Sendable {
    var name: String
    var uid: UInt32
    var gid: UInt32
    var home: String
    /// The login shell; an empty field means `/bin/sh`, as login(1) reads it.
    var shell: String
    /// Shadow's hash field starts with `!`: locked by `passwd -l` (and by Bulwark's `locked`).
    /// sshd without PAM refuses such an account any method; `*` only means "no password".
    var locked = false
    /// A hash a password could match: not `!`/`*` and not empty.
    var hasPassword = false
    /// An empty hash field: a login without a password where that is permitted.
    var emptyPassword = false
    /// What is left of the hash once one leading `!` is taken off (Bulwark's unlock), when it
    /// starts with `!`: empty for useradd's `!` (no password was ever set), `!` for `!!`.
    var unlockedHash: String?
    /// Shadow's expiry, in days since 1970-01-01.
    var expiresDay: Int?
    /// What a change this pass has already allowed does to its login (`after(_:)`), if it ends it.
    var endedByPass: String?

    var expired: Bool {
        guard let expiresDay else { return false }
        return expiresDay <= Int(Date().timeIntervalSince1970 / 86400)
    }

    /// `YYYY-MM-DD` of a day counted from 1970-01-01, as shadow counts them.
    static func date(_ day: Int) -> String {
        let seconds = day.multipliedReportingOverflow(by: 86400)
        guard !seconds.overflow, abs(day) < 3_000_000 else { return "day \(day)" }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds.partialValue)))
    }
}

/// The root's own account files (`etc/passwd`, `etc/shadow`, `etc/group`, `etc/shells`,
/// `etc/login.defs`) read for the safety guards. The first line of a name wins, as for
/// getpwnam; a name that appears twice is listed in `duplicates`.
struct HostAccounts: Sendable {
    static let adminGroups = ["sudo", "wheel", "admin"]

    let root: HostRoot
    var users: [HostAccount] = []
    var groups: [(name: String, gid: UInt32, members: [String])] = []
    /// Names on two lines, by their bytes (a `Set<String>` holds one of `josé`'s two spellings).
    var duplicates: [String] = []
    /// `etc/shells`, or nil when the root has none.
    var shells: [String]?
    /// `UID_MIN` from `etc/login.defs` (1000 by default): the first uid of a person's account.
    var uidMin: UInt32 = 1000
    /// `GID_MIN` likewise: the first gid of a person's group.
    var gidMin: UInt32 = 1000
    /// Who the root's sudoers lets run every command as root (`SudoersAdmins`).
    var sudoers = SudoersAdmins()
    /// What the guards found of the root's other files (login shells, authorized keys) while
    /// these accounts are a plan's (`reading`); nil for accounts read afresh.
    private var found: PlanFacts?

    init(root: HostRoot) throws {
        self.root = root
        // Names are told apart by their bytes, as glibc tells them: `josé` composed and decomposed
        // are two accounts to it, and `==` says they are one.
        var position: [[UInt8]: Int] = [:]
        for user in try Self.passwdCache.value("etc/passwd", in: root, parse: Self.passwdEntries) ?? [] {
            guard position[Array(user.name.utf8)] == nil else { duplicates.append(user.name); continue }
            position[Array(user.name.utf8)] = users.count
            users.append(user)
        }
        var shadowSeen: Set<[UInt8]> = []
        for entry in try Self.shadowCache.value("etc/shadow", in: root, parse: Self.shadowEntries) ?? [] {
            if !shadowSeen.insert(Array(entry.name.utf8)).inserted { duplicates.append(entry.name); continue }
            guard let index = position[Array(entry.name.utf8)] else { continue }
            users[index].locked = entry.locked
            users[index].emptyPassword = entry.emptyPassword
            users[index].hasPassword = entry.hasPassword
            users[index].unlockedHash = entry.unlockedHash
            if let day = entry.expiresDay { users[index].expiresDay = day }
        }
        groups = try Self.groupCache.value("etc/group", in: root, parse: Self.groupEntries) ?? []
        // sudoers is root's to read (0440): where this Bulwark cannot, only the groups count, as before.
        sudoers = (try? SudoersAdmins(root: root)) ?? SudoersAdmins()
        shells = try Self.shellsCache.value("etc/shells", in: root, parse: Self.shellEntries)
        if let entries = try LoginDefsDriver.cache.value(LoginDefsDriver.path, in: root, parse: LoginDefsDriver.entries(file:)) {
            if let value = entries["UID_MIN"]?.value, let min = UInt32(value) { uidMin = min }
            if let value = entries["GID_MIN"]?.value, let min = UInt32(value) { gidMin = min }
        }
    }

    /// The root's accounts as this plan read them: read once per plan and root, and what the
    /// guards then find of its login shells and authorized keys kept with them (`PlanReads`).
    /// A drifted 100-root plan judged each of a host's 8 sshd resources against accounts, shells
    /// and keys read again each time. Read afresh outside a plan and under the target's lock.
    static func reading(_ root: HostRoot) throws -> HostAccounts {
        guard !HostLock.isHeld(root), let plan = PlanReads.current else { return try HostAccounts(root: root) }
        if let kept = plan.accounts(under: root.path) { return kept }
        var accounts = try HostAccounts(root: root)
        accounts.found = PlanFacts()
        return plan.keep(accounts, under: root.path)
    }

    /// Answers about paths inside one root, for one plan: whether each is an executable file,
    /// and what each key file holds.
    final class PlanFacts: Sendable {
        let executables = Memo<String, Bool>(limit: PlanReads.pathLimit)
        let keyFiles = Memo<String, KeyFile?>(limit: PlanReads.pathLimit)
        /// Whether sshd reads a key file under StrictModes, by path and account uid.
        let strictModes = Memo<String, Bool>(limit: PlanReads.pathLimit)
    }

    /// What an authorized_keys file holds, read as sshd reads it (`check_authkey_line`): whether
    /// it has a line sshd would take as a key, and those keys' types (`ssh-ed25519`, `ssh-rsa`, …).
    /// A line is a key where a whole key starts it, or where one options field (quotes kept
    /// whole, every option one sshd takes on a plain key: `knownOptions`) and blanks come before
    /// a whole key (`keyBits`). A key pasted over two lines, cut short, under another key's name,
    /// a certificate (sshd matches none in authorized_keys), an unknown option, an expiry past,
    /// or any other text lets no one in, and counting one as a key let `PasswordAuthentication
    /// no` lock out an administrator who has only a password. Lines end at a line feed, with or without a carriage return before it (sshd's
    /// base64 decoder skips the carriage return).
    struct KeyFile: Sendable {
        var hasKey = false
        var types: Set<String> = []
        /// The size in bits of the largest RSA key, if any (sshd's RequiredRSASize refuses smaller ones).
        var largestRSA: Int?

        init(_ text: String) {
            for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
                guard let key = HostAccounts.keyLine(line), let (type, bits) = Self.keyType(key) else { continue }
                hasKey = true
                types.insert(type)
                if type == "ssh-rsa" { largestRSA = max(largestRSA ?? 0, bits) }
            }
        }

        /// The key type of a line (from its first character that is not a blank), and an RSA
        /// key's size in bits (0 for other types); nil where sshd would take no key from it.
        static func keyType(_ line: Substring) -> (type: String, bits: Int)? {
            if let key = key(at: line) { return key }
            guard let (options, rest) = pastOptions(line), knownOptions(options) else { return nil }
            return key(at: rest.drop { $0 == " " || $0 == "\t" })
        }

        /// The names sshd reads a key under, with the type its blob must name: the key types,
        /// and the RSA signature names for an RSA key.
        static let names: [String: String] = {
            var names: [String: String] = [:]
            for type in ["ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                         "sk-ecdsa-sha2-nistp256@openssh.com", "sk-ssh-ed25519@openssh.com"] { names[type] = type }
            names["rsa-sha2-256"] = "ssh-rsa"
            names["rsa-sha2-512"] = "ssh-rsa"
            return names
        }()

        /// The type of the whole key `text` starts with (a name sshd knows, blanks, and a blob
        /// that is that key: `keyBits`), and an RSA key's bits; nil otherwise.
        static func key(at text: Substring) -> (type: String, bits: Int)? {
            let name = text.prefix { $0 != " " && $0 != "\t" }
            guard let type = names[String(name)] else { return nil }
            let blob = text[name.endIndex...].drop { $0 == " " || $0 == "\t" }.prefix { $0 != " " && $0 != "\t" }
            return keyBits(blob, type: type).map { (type, $0) }
        }

        /// Whether `blob` is a whole public key of `type` as sshd decodes it: base64 (white space
        /// inside skipped), then the type's name, then the key's fields, each length-prefixed,
        /// filling the blob exactly, in the number the type has (an ed25519 key of 32 bytes; an
        /// RSA modulus of 1,024 bits or more, as sshd requires). Returns an RSA key's size in
        /// bits, 0 for another type's key, nil for no key.
        static func keyBits(_ blob: Substring, type: String) -> Int? {
            let text = String(blob.unicodeScalars.filter { !($0 == " " || (9...13).contains($0.value)) })
            guard let data = Data(base64Encoded: text) else { return nil }
            var rest = [UInt8](data)[...]
            func field() -> ArraySlice<UInt8>? {
                guard rest.count >= 4 else { return nil }
                let length = rest.prefix(4).reduce(0) { $0 << 8 | Int($1) }
                guard rest.count - 4 >= length else { return nil }
                defer { rest = rest.dropFirst(4 + length) }
                return rest.dropFirst(4).prefix(length)
            }
            guard let name = field(), name.elementsEqual(type.utf8) else { return nil }
            var fields: [ArraySlice<UInt8>] = []
            while !rest.isEmpty {
                guard let next = field() else { return nil }
                fields.append(next)
            }
            let whole: Bool
            switch type {
            case "ssh-ed25519": whole = fields.count == 1 && fields[0].count == 32
            case "sk-ssh-ed25519@openssh.com": whole = fields.count == 2 && fields[0].count == 32
            case "ssh-rsa":
                // e, then n: its bits from its first non-zero byte (an mpint may start with a zero).
                // Both positive (no top bit set without a zero byte before it), n at most 16,384 bits.
                guard fields.count == 2, fields.allSatisfy({ ($0.first ?? 0) & 0x80 == 0 }),
                      let top = fields[1].firstIndex(where: { $0 != 0 }) else { return nil }
                let bits = (fields[1].endIndex - top - 1) * 8 + (8 - fields[1][top].leadingZeroBitCount)
                return (1024...16_384).contains(bits) ? bits : nil
            case "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521": whole = fields.count == 2
            case "sk-ecdsa-sha2-nistp256@openssh.com": whole = fields.count == 3
            case "ssh-dss": whole = fields.count == 4
            default: whole = false
            }
            return whole ? 0 : nil
        }

        /// The options field a line starts with and what follows it, as sshd finds its end
        /// (`sshkey_advance_past_options`): the first blank outside double quotes, `\"` inside
        /// them escaped. nil for an unterminated quote.
        static func pastOptions(_ line: Substring) -> (options: Substring, rest: Substring)? {
            var quoted = false
            var index = line.startIndex
            while index < line.endIndex, quoted || (line[index] != " " && line[index] != "\t") {
                if line[index] == "\\", line.index(after: index) < line.endIndex, line[line.index(after: index)] == "\"" {
                    index = line.index(after: index)
                } else if line[index] == "\"" {
                    quoted.toggle()
                }
                index = line.index(after: index)
            }
            guard !quoted else { return nil }
            return (line[..<index], line[index...])
        }

        /// Options under which sshd lets a plain key in (`sshauthopt_parse`, then
        /// `auth_authorise_keyopts`): each one it knows, case aside, a flag (some also as `no-…`)
        /// or a name with a double-quoted value, separated by commas (empty ones skipped), each
        /// value one sshd takes, neither `command` nor `from` twice, no expiry already past, and
        /// neither `cert-authority` nor `principals` (a key for certificates, which lets no plain
        /// key in). A key limited to some hosts (`from`) still
        /// counts: its owner wrote where they log in from.
        static func knownOptions(_ options: Substring, now: Date = Date()) -> Bool {
            let negatable: Set<String> = ["port-forwarding", "agent-forwarding", "x11-forwarding", "touch-required", "verify-required",
                                          "pty", "user-rc"]
            let once: Set<String> = ["command", "from"]
            var seen: Set<String> = []
            var rest = options[...]
            while true {
                let raw = rest.prefix { $0 != "=" && $0 != "," }
                let name = raw.lowercased()
                rest = rest[raw.endIndex...]
                if rest.first == "=" {
                    guard rest.dropFirst().first == "\"" else { return false }
                    rest = rest.dropFirst(2)
                    // The value, to its closing quote (`\"` inside it stands for a quote).
                    var value = ""
                    var closed = false
                    while let character = rest.first {
                        rest = rest.dropFirst()
                        if character == "\\", rest.first == "\"" { rest = rest.dropFirst(); value.append("\""); continue }
                        if character == "\"" { closed = true; break }
                        value.append(character)
                    }
                    guard closed, seen.insert(name).inserted || !once.contains(name), takes(name, value, now: now) else { return false }
                } else if !name.isEmpty {
                    let flag = name.hasPrefix("no-") ? String(name.dropFirst(3)) : name
                    guard name == "restrict" || negatable.contains(flag) else { return false }
                }
                guard let separator = rest.first else { return true }
                guard separator == "," else { return false }
                rest = rest.dropFirst()
            }
        }

        /// Whether sshd takes `value` for the option `name` (lower-case) on a plain key.
        static func takes(_ name: String, _ value: String, now: Date) -> Bool {
            switch name {
            case "command": return true
            case "from": return !value.isEmpty && !value.split(separator: ",", omittingEmptySubsequences: false).contains { $0.isEmpty }
            case "environment":
                guard let equals = value.firstIndex(of: "="), equals > value.startIndex else { return false }
                return value[..<equals].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
            case "tunnel": return value.lowercased() == "any" || (!value.isEmpty && value.allSatisfy(\.isASCII) && Int(value) != nil)
            case "permitopen", "permitlisten":
                // host:port or [host]:port (a listen may be a port alone); the port a number or *.
                let port: Substring
                if value.hasPrefix("[") {
                    guard let close = value.firstIndex(of: "]"), value[value.index(after: close)...].first == ":" else { return false }
                    port = value[value.index(close, offsetBy: 2)...]
                } else if let colon = value.lastIndex(of: ":") {
                    guard colon > value.startIndex else { return false }
                    port = value[value.index(after: colon)...]
                } else {
                    guard name == "permitlisten" else { return false }
                    port = value[...]
                }
                return port == "*" || (!port.isEmpty && port.allSatisfy { $0.isASCII && $0.isNumber } && (Int(port) ?? 65_536) <= 65_535)
            case "expiry-time":
                // YYYYMMDD[HHMM[SS]], local time, or UTC with a trailing Z; the key counts until then.
                let utc = value.hasSuffix("Z") || value.hasSuffix("z")
                let digits = utc ? value.dropLast() : value[...]
                guard [8, 12, 14].contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
                func part(_ from: Int, _ length: Int) -> Int? {
                    from + length <= digits.count ? Int(digits.dropFirst(from).prefix(length)) : 0
                }
                var calendar = Calendar(identifier: .gregorian)
                calendar.timeZone = utc ? TimeZone(identifier: "UTC")! : TimeZone.current
                let parts = DateComponents(year: part(0, 4), month: part(4, 2), day: part(6, 2), hour: part(8, 2), minute: part(10, 2),
                                           second: part(12, 2))
                guard let date = calendar.date(from: parts), parts.isValidDate(in: calendar) else { return false }
                return date > now
            default:
                // cert-authority's principals, and any option sshd does not know.
                return false
            }
        }
    }

    /// The key file at `path` inside the root (links judged as every read judges them), or nil
    /// when it cannot be read; within a plan, read once.
    private func keyFile(_ path: String) -> KeyFile? {
        let read = { (try? FileIO.readText(path, in: root))?.map(KeyFile.init) }
        guard let found else { return read() }
        return found.keyFiles.value(path, read)
    }

    // Each file's parse, reused while the file is unchanged (`ContentCache`): the sshd guard
    // judges every drifted SSHDConfig resource of a host against the same accounts. Of shadow,
    // only what the guards need is kept, never a hash.
    private static let passwdCache = ContentCache<[HostAccount]>()
    private static let shadowCache = ContentCache<[ShadowEntry]>()
    private static let groupCache = ContentCache<[(name: String, gid: UInt32, members: [String])]>()
    private static let shellsCache = ContentCache<[String]>()

    private struct ShadowEntry: Sendable {
        var name: String
        var locked: Bool
        var emptyPassword: Bool
        var hasPassword: Bool
        var unlockedHash: String?
        var expiresDay: Int?
    }

    private static func passwdEntries(_ file: HostFile) throws -> [HostAccount] {
        try lines(file).compactMap { line -> HostAccount? in
            // As glibc's files-pwd.c: name, password, uid and gid make an account; the fields after are optional.
            let f = line.splitBytes(at: ":")
            guard f.count >= 4, let uid = glibcNumber(f[2]), let gid = glibcNumber(f[3]) else { return nil }
            let shell = UserAccountDriver.shell(f)
            return HostAccount(name: String(f[0]), uid: uid, gid: gid, home: f.count > 5 ? String(f[5]) : "",
                               shell: shell.isEmpty ? "/bin/sh" : shell)
        }
    }

    /// `etc/shells` as glibc's `getusershell` reads it: on each line, from its first `/` to the
    /// first C blank, `#` or NUL; a line with a `#` before any `/` is a comment. (Split by
    /// `Character`, a CRLF file was one line, and no shell was listed.)
    static func shellEntries(_ file: HostFile) throws -> [String] {
        try LineFile(bytes: file.bytes, path: file.path).lines.compactMap { line -> String? in
            let bytes = line.utf8
            guard let start = bytes.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "#") || $0 == 0 }),
                  bytes[start] == UInt8(ascii: "/") else { return nil }
            let end = bytes[start...].firstIndex { isCSpace($0) || $0 == UInt8(ascii: "#") || $0 == 0 } ?? bytes.endIndex
            return String(Substring(bytes[start..<end]))
        }
    }

    private static func shadowEntries(_ file: HostFile) throws -> [ShadowEntry] {
        // A line glibc skips (`ShadowLine`) gives its account no entry: no password, no lock.
        try lines(file).compactMap { line -> ShadowEntry? in
            guard let entry = ShadowLine(line) else { return nil }
            let hash = entry.hash
            return ShadowEntry(name: String(entry.name), locked: hash.hasBytePrefix("!"), emptyPassword: hash.isEmpty,
                               hasPassword: !hash.isEmpty && !hash.hasBytePrefix("!") && !hash.hasBytePrefix("*"),
                               unlockedHash: hash.hasBytePrefix("!") ? String(Substring(hash.utf8.dropFirst())) : nil,
                               expiresDay: entry.expiresDay)
        }
    }

    private static func groupEntries(_ file: HostFile) throws -> [(name: String, gid: UInt32, members: [String])] {
        try lines(file).compactMap { line -> (name: String, gid: UInt32, members: [String])? in
            // As glibc's files-grp.c: name, password and gid make a group; the member list is optional.
            let f = line.splitBytes(at: ":")
            guard f.count >= 3, let gid = glibcNumber(f[2]) else { return nil }
            // glibc skips the ASCII blanks before a member, and keeps any after it.
            return (String(f[0]), gid, (f.count > 3 ? f[3] : "").splitBytes(at: ",", omittingEmpty: true)
                .map { String(Substring($0.utf8.drop(while: isCSpace))) }.filter { !$0.isEmpty })
        }
    }

    /// The file's text as `FileIO.readText` gives it (bytes that are not UTF-8 kept, see `LineFile`).
    private static func text(_ file: HostFile) throws -> String {
        try LineFile(bytes: file.bytes, path: file.path).text
    }

    /// The file's lines as glibc reads them (`LineFile.glibcContent`: a carriage return before
    /// the line feed stays, the end of the last field). None that is empty or starts with `#`.
    private static func lines(_ file: HostFile) throws -> [Substring] {
        try LineFile(bytes: file.bytes, path: file.path).lines.map(LineFile.glibcContent)
            .filter { !$0.isEmpty && $0.utf8.first != UInt8(ascii: "#") }
    }

    func user(_ name: String) -> HostAccount? { users.first { $0.name.isSameBytes(name) } }

    /// Names of the account's groups: its primary group and every group that lists it.
    func groupNames(of account: HostAccount) -> Set<String> {
        var names = Set(groups.filter { $0.members.contains { $0.isSameBytes(account.name) } }.map(\.name))
        if let primary = groups.first(where: { $0.gid == account.gid }) { names.insert(primary.name) }
        return names
    }

    /// An administrator: in sudo, wheel or admin (`isGroupAdmin`), or one sudoers lets run every
    /// command as root, by name, uid or group (`SudoersAdmins`).
    func isAdmin(_ account: HostAccount) -> Bool {
        let names = groupNames(of: account)
        guard names.isDisjoint(with: Self.adminGroups) else { return true }
        guard !sudoers.isEmpty else { return false }
        let gids = groups.filter { $0.members.contains { $0.isSameBytes(account.name) } }.map(\.gid) + [account.gid]
        return sudoers.names(account, groups: names, gids: Set(gids))
    }

    func isGroupAdmin(_ account: HostAccount) -> Bool {
        !groupNames(of: account).isDisjoint(with: Self.adminGroups)
    }

    /// Whether `shell` is a program that gives a login: not nologin or false, and an executable
    /// file inside the root.
    func isLoginShell(_ shell: String) -> Bool {
        !Self.isNoLoginShell(shell) && isExecutable(shell)
    }

    static func isNoLoginShell(_ shell: String) -> Bool {
        let name = PathText.components(shell).last ?? ""
        return name == "nologin" || name == "false" || shell.isEmpty
    }

    /// A regular file with an execute bit, at `path` resolved inside the root.
    func isExecutable(_ path: String) -> Bool {
        guard let found else { return Self.isExecutable(path, in: root) }
        return found.executables.value(path) { Self.isExecutable(path, in: root) }
    }

    private static func isExecutable(_ path: String, in root: HostRoot) -> Bool {
        guard PathText.isAbsolute(path), let full = try? root.resolve(path) else { return false }
        var info = stat()
        guard stat(full, &info) == 0 else { return false }
        return info.st_mode & FileType.mask == FileType.regular && info.st_mode & 0o111 != 0
    }

    /// The key types (`ssh-ed25519`, `ssh-rsa`, …) of the account's authorized keys in the
    /// files `patterns` name (`KeyFile`).
    func authorizedKeyTypes(_ account: HostAccount, patterns: [String] = [".ssh/authorized_keys", ".ssh/authorized_keys2"],
                            strictModes: Bool = true) -> Set<String> {
        keyFilePaths(account, patterns: patterns).filter { !strictModes || passesStrictModes($0, account) }.reduce(into: []) { types, path in
            if let file = keyFile(path) { types.formUnion(file.types) }
        }
    }

    /// The size in bits of the account's largest authorized RSA key, if it has one.
    func largestRSAKey(_ account: HostAccount, patterns: [String], strictModes: Bool = true) -> Int? {
        keyFilePaths(account, patterns: patterns).filter { !strictModes || passesStrictModes($0, account) }
            .compactMap { keyFile($0)?.largestRSA }.max()
    }

    /// The paths `patterns` (AuthorizedKeysFile tokens: `%h`, `%u`, `%U`, `%%`) name for `account`.
    func keyFilePaths(_ account: HostAccount, patterns: [String]) -> [String] {
        patterns.compactMap { pattern -> String? in
            guard pattern.lowercased() != "none" else { return nil }
            var path = ""
            var chars = pattern.makeIterator()
            while let c = chars.next() {
                guard c == "%" else { path.append(c); continue }
                switch chars.next() {
                case "%": path.append("%")
                case "h": path += account.home
                case "u": path += account.name
                case "U": path += String(account.uid)
                default: return nil
                }
            }
            guard !path.isEmpty else { return nil }
            return PathText.isAbsolute(path) ? path : account.home + "/" + path
        }
    }

    /// The first authorized_keys file (of `patterns`, as sshd's AuthorizedKeysFile) that holds
    /// a key line sshd would read, or nil. With `strictModes` (sshd's default) a file sshd
    /// ignores is none: a key in `~/.ssh` made group-writable (umask 002 with user private
    /// groups) let an administrator who logs in with a password count as a key holder, and
    /// `PasswordAuthentication no` passed the guard and locked them out.
    func authorizedKeys(_ account: HostAccount, patterns: [String] = [".ssh/authorized_keys", ".ssh/authorized_keys2"],
                        strictModes: Bool = true) -> String? {
        keyFilePaths(account, patterns: patterns).first { path in
            keyFile(path)?.hasKey == true && (!strictModes || passesStrictModes(path, account))
        }
    }

    /// OpenSSH's `safe_path` for a key file: the file, then each folder from its own up to the
    /// account's home (or the root's top when the file is elsewhere), owned by root or the
    /// account and writable by neither group nor others. Links are followed inside the root, as
    /// sshd takes the file's real path. Group write is read as Debian's sshd reads it
    /// (`user-group-modes.patch`, `secure_permissions`): allowed where the group's one member
    /// is the file's owner (a user private group, with umask 002).
    func passesStrictModes(_ path: String, _ account: HostAccount) -> Bool {
        // One answer per plan, as the key file's content: the plan judges its snapshot.
        guard let found else { return strictModesNow(path, account) }
        return found.strictModes.value("\(account.uid) \(path)") { strictModesNow(path, account) }
    }

    private func strictModesNow(_ path: String, _ account: HostAccount) -> Bool {
        guard let real = try? root.resolve(path) else { return false }
        let home = try? root.resolve(account.home)
        let top = root.path == "/" ? "/" : root.path
        // Root's files; under a root an unprivileged Bulwark made (a sandbox tree), its own.
        let owners: Set<UInt32> = [0, account.uid, root.path == "/" ? 0 : geteuid()]
        func safe(_ full: String) -> Bool {
            var info = stat()
            guard stat(full, &info) == 0, owners.contains(info.st_uid), info.st_mode & 0o002 == 0 else { return false }
            return info.st_mode & 0o020 == 0 || onlyMember(of: info.st_gid, owner: info.st_uid, account: account)
        }
        guard safe(real) else { return false }
        var folder = real
        while true {
            guard let slash = folder.utf8.lastIndex(of: UInt8(ascii: "/")) else { return true }
            folder = slash == folder.utf8.startIndex ? "/" : String(Substring(folder.utf8[..<slash]))
            guard folder.utf8.count >= top.utf8.count else { return true }
            guard safe(folder) else { return false }
            if let home, folder.isSameBytes(home) { return true }
            if folder.isSameBytes(top) || folder == "/" { return true }
        }
    }

    /// Whether group `gid` has exactly one member and it is `owner`, as Debian's sshd counts:
    /// every account whose primary group it is must be `account`, and the member list, if any,
    /// names only the owner.
    private func onlyMember(of gid: UInt32, owner: UInt32, account: HostAccount) -> Bool {
        guard let group = groups.first(where: { $0.gid == gid }) else { return false }
        let primary = users.filter { $0.gid == gid }
        guard primary.allSatisfy({ $0.uid == account.uid }) else { return false }
        var members = primary.count
        if let first = group.members.first {
            guard group.members.count == 1, let ownerName = users.first(where: { $0.uid == owner })?.name,
                  first.isSameBytes(ownerName) else { return false }
            members += 1
        }
        return members > 0
    }

    /// A line of an authorized_keys file: from its first character that is not a space or a
    /// tab; nil for a blank line or a comment. (sshd skips only spaces and tabs: a line that
    /// starts with another blank, such as a no-break space pasted from a web page, is no key.)
    static func keyLine(_ line: Substring) -> Substring? {
        let key = line.drop { $0 == " " || $0 == "\t" }
        guard let first = key.first, first != "#" else { return nil }
        return key
    }

    /// A note for a block's message, naming the administrators whose shell glibc reads with the
    /// carriage return of a CRLF line in `etc/passwd`: they look like logins to a person reading
    /// the file, and are none (`/bin/bash\r` is no program). Nil when there is none.
    func carriageReturnNote() -> String? {
        let names = users.filter { $0.shell.utf8.last == 13 && ($0.uid == 0 || isAdmin($0)) }.prefix(4)
            .map { TerminalText.escapedLine($0.name, limit: 64) }
        guard !names.isEmpty else { return nil }
        return "the login shell of \(names.joined(separator: ", ")) ends in a carriage return (a CRLF line in etc/passwd), "
            + "which glibc keeps: no program, no login"
    }

    /// Why the account has no way to log in (console or SSH with default settings), or nil when
    /// it has one: a login shell, not locked or expired, and a password or an authorized key.
    func noLoginPath(_ account: HostAccount) -> String? {
        if let ended = account.endedByPass { return ended }
        if !isLoginShell(account.shell) { return "its shell \(TerminalText.escapedLine(account.shell, limit: 200)) gives no login" }
        if account.expired { return "it has expired" }
        // An administrator whose login ends on a set date is no way back in after it.
        if let day = account.expiresDay { return "it expires on \(HostAccount.date(day))" }
        if account.locked { return "it is locked" }
        if !account.hasPassword && authorizedKeys(account) == nil { return "it has neither a password nor an authorized key" }
        return nil
    }
}

extension HostAccounts {
    /// The accounts as they will be once the account changes this pass has already allowed on
    /// the target are made (`JointlyGuardedDriver`). Only what takes a login away is counted: a
    /// lock, an expiry (any date: the login ends then), a shell without a login. An unlock or a
    /// login shell given back is not counted on, since its write may still fail.
    func after(_ alongside: [AllowedChange]) -> HostAccounts {
        var accounts = self
        for allowed in alongside where allowed.resource.id.kind == "UserAccount" {
            guard let index = accounts.users.firstIndex(where: { $0.name.isSameBytes(allowed.resource.spec.subject) }) else { continue }
            for change in allowed.changes {
                var ended: String?
                switch change.property {
                case "locked" where change.desired == "true":
                    // What a lock takes depends on who asks: sshd with PAM still takes a key
                    // from a locked account (`SSHDConfigDriver.denial`), a console login does not.
                    accounts.users[index].locked = true
                    accounts.users[index].hasPassword = false
                    accounts.users[index].emptyPassword = false
                case "expires" where change.desired != "never":
                    ended = "this pass makes it expire on \(change.desired) (\(allowed.resource.id))"
                case "shell" where !accounts.isLoginShell(change.desired):
                    accounts.users[index].shell = change.desired
                    ended = "this pass gives it the shell \(change.desired) (\(allowed.resource.id))"
                default:
                    break
                }
                if let ended, accounts.users[index].endedByPass == nil { accounts.users[index].endedByPass = ended }
            }
        }
        return accounts
    }
}

extension HostRoot {
    /// "Who can still log in" on the host a target's root folder is: two target names for one
    /// root are judged together (by the folder's identity), as two resources of one target are.
    static func loginsDomain(stage: Int, _ target: Target) -> GuardDomain {
        GuardDomain(name: "logins", stage: stage, scope: (try? HostRoot(target: target))?.identity.map { "host root " + $0 })
    }
}

/// A guard's verdict when it could not read what it needs: it blocks, never allows.
/// `body`'s verdict, or `cannotJudge`'s where it throws: how a guard judges in a plan and again
/// at the write.
func judging(_ what: String, _ body: () throws -> GuardVerdict) -> GuardVerdict {
    let shortages = Shortage.count
    return Shortage.judging(what) {
        do { return try body() } catch { return cannotJudge(what, error, since: shortages) }
    }
}

/// Blocks; or, where the machine ran short while the guard read (`Shortage` counted one since
/// `since`), leaves the change unjudged (`GuardVerdict.unjudged`): the pass fails and no one is
/// offered to approve what nothing judged.
func cannotJudge(_ what: String, _ error: any Error, since shortages: UInt64) -> GuardVerdict {
    .cannotJudge("the \(what) guard could not judge this change (\(error)); nothing is changed until it can", error, since: shortages)
}

/// Who the root's `etc/sudoers` (and the files it includes: `@include`, `@includedir`, and
/// their `#` forms; read inside the root, links followed only there) lets run every command as
/// root on any host: a user specification whose host list has `ALL`, run as root (no run-as
/// list, or one naming `ALL` or `root` as the user) and `ALL` among its commands. Users by
/// name, `#uid`, `%group`, `%#gid`, or `ALL`. Aliases, netgroups and negations are not expanded:
/// whom they name is not counted, so a guard counts fewer administrators, never more.
struct SudoersAdmins: Sendable {
    var users: Set<String> = []
    var uids: Set<UInt32> = []
    var groups: Set<String> = []
    var gids: Set<UInt32> = []
    var everyone = false

    init() {}

    init(root: HostRoot) throws {
        try read("etc/sudoers", root: root, depth: 0)
    }

    var isEmpty: Bool { !everyone && users.isEmpty && uids.isEmpty && groups.isEmpty && gids.isEmpty }

    /// Whether a rule names `account`, by name (its bytes, as sudo compares), uid, or one of its
    /// groups (`names`, `ids`).
    func names(_ account: HostAccount, groups names: Set<String>, gids ids: Set<UInt32>) -> Bool {
        everyone || users.contains { $0.isSameBytes(account.name) } || uids.contains(account.uid)
            || !groups.isDisjoint(with: names) || !gids.isDisjoint(with: ids)
    }

    private mutating func read(_ path: String, root: HostRoot, depth: Int) throws {
        guard depth < 8, let text = try FileIO.readText(path, in: root) else { return }
        var logical = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            // A line ending in a backslash goes on on the next.
            if raw.hasSuffix("\\") { logical += raw.dropLast() + " "; continue }
            var line = (logical + raw).trimmingCharacters(in: .whitespaces)
            logical = ""
            // A comment starts at `#`, but for `#include` and a uid (`#1000`).
            if let hash = line.indices.first(where: { index in
                let after = line[line.index(after: index)...]
                let digit = after.first.map { $0.isASCII && $0.isNumber } ?? false
                return line[index] == "#" && !after.hasPrefix("include") && !digit
            }) {
                line = line[..<hash].trimmingCharacters(in: .whitespaces)
            }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let first = words.first else { continue }
            if ["@include", "#include", "@includedir", "#includedir"].contains(first), words.count == 2 {
                // A relative path is relative to the file including it (sudo 1.9.1).
                let named = String(words[1])
                let full = named.hasPrefix("/") ? named : (path.split(separator: "/").dropLast().joined(separator: "/") + "/" + named)
                if first.hasSuffix("dir") {
                    // sudo skips names with a dot or ending in `~` (editor backups, package leftovers).
                    for name in try FileIO.list(full, in: root) where !name.contains(".") && !name.hasSuffix("~") {
                        try read(full + "/" + name, root: root, depth: depth + 1)
                    }
                } else {
                    try read(full, root: root, depth: depth + 1)
                }
                continue
            }
            if first.hasPrefix("Defaults") || first.hasSuffix("_Alias") { continue }
            take(line)
        }
    }

    /// One user specification: `users hosts = (runas) TAGS: commands`.
    private mutating func take(_ line: String) {
        guard let equals = line.firstIndex(of: "=") else { return }
        // Lists are comma-separated, blanks around commas allowed: the user list ends at the first other blank.
        var left = String(line[..<equals])
        while left.contains(", ") || left.contains(" ,") {
            left = left.replacingOccurrences(of: ", ", with: ",").replacingOccurrences(of: " ,", with: ",")
        }
        let lists = left.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard lists.count == 2, lists[1].split(separator: ",").contains("ALL") else { return }
        var right = line[line.index(after: equals)...].drop { $0 == " " || $0 == "\t" }
        if right.hasPrefix("(") {
            guard let close = right.firstIndex(of: ")") else { return }
            let runAs = right[right.index(after: right.startIndex)..<close].split(separator: ":", omittingEmptySubsequences: false)
            let asUsers = (runAs.first ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard asUsers.contains("ALL") || asUsers.contains("root") else { return }
            right = right[right.index(after: close)...]
        }
        // Another host's `: hosts = …` part is not read; tags (`NOPASSWD:`) are words ending in a colon.
        let commands = right.split(separator: ",").map { command in
            command.split(whereSeparator: { $0 == " " || $0 == "\t" }).filter { !$0.hasSuffix(":") }.joined(separator: " ")
        }
        guard commands.contains("ALL") else { return }
        for user in lists[0].split(separator: ",").map(String.init) {
            if user == "ALL" {
                everyone = true
            } else if user.hasPrefix("%#") {
                if let gid = UInt32(user.dropFirst(2)) { gids.insert(gid) }
            } else if user.hasPrefix("%") {
                if !user.hasPrefix("%:") { groups.insert(String(user.dropFirst())) }
            } else if user.hasPrefix("#") {
                if let uid = UInt32(user.dropFirst()) { uids.insert(uid) }
            } else if !user.hasPrefix("!") && !user.hasPrefix("+") && !user.contains("\\") && !user.contains("\"") {
                users.insert(user)
            }
        }
    }
}
