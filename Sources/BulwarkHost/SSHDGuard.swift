internal import Foundation
internal import BulwarkCore
internal import BulwarkProcess
internal import CLinux
internal import Synchronization

// MARK: - A candidate configuration sshd itself reads

/// A candidate sshd configuration laid out in a private temporary folder, for `sshd -t` and
/// `sshd -T`: the main file and every file it includes (the candidate's edited text where Bulwark
/// changes one), each `Include` rewritten to name the copies of the files it matches *inside the
/// target root*. Without that, sshd would follow `Include /etc/ssh/sshd_config.d/*.conf` to the
/// machine's own /etc, not the target's.
///
/// sshd runs with a throwaway host key (`-h`, made once per process: `SSHDHostKey`), so the check
/// needs none of the target's keys. `sshd -T` answers are reused within the process for the same
/// candidate bytes, account and connection (`SSHDProbeCache`).
/// As root, it runs as `nobody` (`setpriv`): an unprivileged sshd needs no privilege-separation
/// folder (/run/sshd, absent where sshd never ran). The folder and its files stay root's, shared
/// read-only with group 65534 (mode 0750/0640), so a process running as nobody can read the
/// candidate but not change it under the guard's feet; sshd skips its key-permission check for
/// a key another uid owns. The caller removes the folder (`remove()`).
final class SSHDProbe {
    static let unprivileged: (uid: UInt32, gid: UInt32) = (65534, 65534)
    static let timeout: TimeInterval = 30
    static let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }

    let executable: String
    /// Where sshd's answers are kept (`SSHDProbeCache.current` when the probe was made).
    let cache = SSHDProbeCache.current
    /// This machine's account files, read for every probe's key (`ContentCache`).
    private static let machineFiles = ContentCache<String>(limit: 8)
    /// Everything sshd's answer depends on besides the command line: the sshd binary, the
    /// machine's account files (sshd resolves `-C user=` and Match Group there), and the exact
    /// candidate (each file's text and where its Includes point), length-prefixed.
    let material: ProbeKey
    /// The candidate's files as they are written into the folder, by name in it (`/config-N.conf`;
    /// the main file first), each with its Include lines to point at the copies once the folder exists.
    private let files: [PendingFile]
    /// Whether sshd's answers about this candidate may be kept in the state directory
    /// (`SSHDAnswerStore`): only where the machine's accounts and groups are its files alone,
    /// which the key holds. With a directory service (LDAP, SSSD) an account or group can change
    /// without any of them changing; its answers are kept for this process only.
    let keepable: Bool
    /// The kernel's FIPS mode, which changes the algorithms sshd allows by default.
    private static let fips = try? String(contentsOfFile: "/proc/sys/crypto/fips_enabled", encoding: .utf8)

    /// Whether `nsswitch` (the machine's /etc/nsswitch.conf, nil where missing: glibc then reads
    /// the files) looks accounts, groups and group memberships up in local files only: `files`,
    /// or `systemd` (its own service accounts, as Debian lists by default). Read as glibc reads
    /// it (`nss_database.c`), byte by byte: blanks are C's `isspace`, a database's name ends at a
    /// blank or `:` (the colon may be missing), a `#` after the name is no comment but a
    /// source's name, and a source ends at a blank or `[`. Anything else answers no: `compat`
    /// (its `+` entries come from NIS or `passwd_compat`), any other source, an action never
    /// closed, a database with no source.
    static func accountsAreLocal(nsswitch: String?) -> Bool {
        guard let nsswitch else { return true }
        let isBlank = isCSpace
        for line in Substring(nsswitch).splitBytes(at: "\n", omittingEmpty: true) {
            var bytes = line.utf8[...]
            bytes = bytes.drop(while: isBlank)
            let name = bytes.prefix { !isBlank($0) && $0 != UInt8(ascii: ":") }
            guard !name.isEmpty, name.endIndex != bytes.endIndex else { continue }
            guard ["passwd", "group", "initgroups"].contains(where: { $0.utf8.elementsEqual(name.lazy.map { $0 | 0x20 }) }) else {
                continue
            }
            bytes = bytes[name.endIndex...].drop { isBlank($0) || $0 == UInt8(ascii: ":") }
            var sources = 0
            while let first = bytes.first {
                if isBlank(first) {
                    bytes = bytes.dropFirst()
                } else if first == UInt8(ascii: "[") {
                    guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
                    bytes = bytes[bytes.index(after: close)...]
                } else {
                    let source = bytes.prefix { !isBlank($0) && $0 != UInt8(ascii: "[") }
                    guard ["files", "systemd"].contains(where: { $0.utf8.elementsEqual(source) }) else { return false }
                    sources += 1
                    bytes = bytes[source.endIndex...]
                }
            }
            guard sources > 0 else { return false }
        }
        return true
    }

    /// The private folder, made only when sshd must run (a probe answered by `SSHDProbeCache`
    /// writes nothing: a fleet of identical hosts made and removed a folder per resource).
    private(set) var directory: String?
    /// Failures of `prefetch`'s queries, by key (see `effective(user:)`).
    private var prefetchFailures: [ProbeKey: any Error] = [:]

    private struct PendingFile {
        var name: String
        var lines: LineFile
        /// Include lines by index: their indent, pattern, ending and the copies they match.
        var includes: [(index: Int, indent: Substring, value: Substring, ending: String, copies: [String])]
    }

    init(executable: String, config: SSHDConfigDriver.Config, root: HostRoot, driver: SSHDConfigDriver) throws {
        self.executable = executable
        var key = ProbeKey()
        key.append(executable)
        key.append(Self.identity(executable))
        let machine = try HostRoot("/")
        var texts: [String: String] = [:]
        // A file that cannot be read (too large, behind a link no trusted user made) is not a
        // missing one: its answers are kept for this process only.
        var unreadable = false
        for file in ["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"] {
            do {
                let text = try Self.machineFiles.value(file, in: machine) { try LineFile(bytes: $0.bytes, path: $0.path).text }
                texts[file] = text
                key.append(text.map { "present " + $0 } ?? "missing")
            } catch {
                unreadable = true
                key.append("unreadable")
            }
        }
        key.append("fips " + (Self.fips ?? "unknown"))
        keepable = !unreadable && Self.accountsAreLocal(nsswitch: texts["/etc/nsswitch.conf"])
        var names: [String: String] = [:]
        var files: [PendingFile] = []
        guard let first = config.order.first else { throw HostError("sshd configuration not found") }
        _ = try Self.copy(first, config: config, root: root, driver: driver, names: &names, files: &files, depth: 0, key: &key)
        material = key
        self.files = files
    }

    /// Writes the candidate into a new private folder (mode and owners as described above).
    private func materialize() throws -> String {
        if let directory { return directory }
        var template = Array((Self.folderForCandidates + "/bulwark-sshd-XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else { throw HostError("cannot create a temporary folder: \(errnoText())") }
        let folder = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            for file in files {
                var lines = file.lines
                for include in file.includes {
                    lines.lines[include.index] = include.copies.isEmpty
                        ? Substring("\(include.indent)# bulwark: Include \(include.value) matches no file in the target root\(include.ending)")
                        : Substring("\(include.indent)Include \(include.copies.map { folder + $0 }.joined(separator: " "))\(include.ending)")
                }
                try ProbeFile.write(lines.bytes, to: folder + file.name)
            }
            if geteuid() == 0 {
                for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
                    guard chown(folder + "/" + name, 0, Self.unprivileged.gid) == 0,
                          chmod(folder + "/" + name, 0o640) == 0 else {
                        throw HostError("cannot share the candidate with sshd: \(errnoText())", path: folder + "/" + name)
                    }
                }
                guard chown(folder, 0, Self.unprivileged.gid) == 0, chmod(folder, 0o750) == 0 else {
                    throw HostError("cannot share the candidate folder with sshd: \(errnoText())", path: folder)
                }
            }
        } catch {
            try? FileManager.default.removeItem(atPath: folder)
            throw error
        }
        directory = folder
        return folder
    }

    /// Where candidate folders are made: the temporary directory when sshd reads its path as
    /// written in an `Include` line (absolute; letters, digits, `/`, `.`, `_`, `-` only), else
    /// /tmp. A blank would split the path, a backslash, `*`, `?` or `[` make glob read it otherwise,
    /// and the copies would silently match nothing, leaving them out of what sshd judges.
    static let folderForCandidates: String = {
        let folder = NSTemporaryDirectory()
        let plain = PathText.isAbsolute(folder) && folder.utf8.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || [UInt8(ascii: "/"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-")].contains($0)
        }
        return plain ? folder : "/tmp"
    }()

    func remove() {
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
        directory = nil
    }

    /// Reads `file` (and, first, everything it includes) into `files`; returns its copy's name.
    private static func copy(
        _ file: String, config: SSHDConfigDriver.Config, root: HostRoot, driver: SSHDConfigDriver,
        names: inout [String: String], files: inout [PendingFile], depth: Int, key: inout ProbeKey
    ) throws -> String {
        if let done = names[file] { return done }
        guard depth <= SSHDConfigDriver.includeDepth else {
            throw HostError("Include nested more than \(SSHDConfigDriver.includeDepth) levels (sshd refuses to start)", path: file)
        }
        let name = "/config-\(names.count).conf"
        names[file] = name
        let text: String
        if let candidate = config.files[file] {
            text = candidate.text
        } else {
            guard let body = try FileIO.readText(file, in: root) else { throw HostError("included file vanished", path: file) }
            text = body
        }
        key.append("file \(names.count - 1)")
        key.append(Array(text.utf8))
        let lines = LineFile(text)
        var pending = PendingFile(name: name, lines: lines, includes: [])
        var scratch = SSHDConfigDriver.Config()
        for (index, line) in lines.lines.enumerated() {
            guard let parts = SSHDConfigDriver.split(line), parts.keyword.lowercased() == "include" else { continue }
            var copies: [String] = []
            for pattern in try SSHDConfigDriver.includePatterns(parts.value) {
                for included in try driver.expand(String(pattern), root: root, config: &scratch) {
                    copies.append(try copy(included, config: config, root: root, driver: driver, names: &names, files: &files,
                                           depth: depth + 1, key: &key))
                }
            }
            key.append("include at line \(index) of \(name): " + copies.joined(separator: " "))
            pending.includes.append((index, parts.indent, parts.value, LineFile.ending(line), copies))
        }
        files.append(pending)
        return name
    }

    /// `sshd -t`: throws with sshd's message when it rejects the candidate. The same candidate
    /// accepted before in this process is not checked again (`SSHDProbeCache`, as `effective`):
    /// a fleet of hosts with one configuration runs it once. A rejection is never reused.
    func check() throws {
        var key = material
        key.append("-t")
        _ = try cache.answer(key) {
            let result = try Self.sshd(executable, ["-t"], in: try materialize(), counter: SSHDProbeCounter.current)
            guard result.status == 0 else {
                throw HostError("sshd -t rejected the candidate configuration: \(result.errors)")
            }
            return [:]
        }
    }

    /// `sshd -T` for a connection by `user`: each keyword (lower-case) with its values, one per
    /// line sshd printed. Throws with sshd's message when it rejects the candidate.
    /// The same candidate, account and connection within this process reuse sshd's earlier
    /// answer (`SSHDProbeCache`); a rejection is never reused.
    func effective(user: String) throws -> [String: [String]] {
        let query = effectiveQuery(user)
        // What `prefetch` learnt of this candidate: not asked again (a hung sshd cost its
        // timeout twice), and never shared with another caller.
        if let failure = prefetchFailures[query.key] { throw failure }
        return try cache.answer(query.key, kept: keepable) {
            try Self.settings(executable, query.arguments, in: try materialize(), counter: SSHDProbeCounter.current)
        }
    }

    /// Asks sshd for the effective settings of several `users` at once, one process each, so
    /// that the `effective(user:)` calls that follow find their answers. Judged one after the
    /// other, a fleet's sshd changes waited on each probe in turn, a core idle (16 probes of
    /// about 18 ms each for 8 settings). Nothing is started when fewer than two are to be asked.
    /// A failure (sshd rejected the candidate, or did not answer in time) is kept for this probe
    /// only: `effective(user:)` throws it rather than running sshd again, and the shared cache
    /// never holds it. Where no thread can be started, the queries run here, one after the other.
    func prefetch(users: [String]) {
        var unique = Set<String>()
        // A query another caller is answering now (a fleet's identical hosts) is waited for
        // by `effective(user:)`: no folder and no thread for it here.
        let queries = users.filter { unique.insert($0).inserted }.map(effectiveQuery)
            .filter { !self.cache.isAnsweredOrRunning($0.key, kept: self.keepable) }
        // The folder is made here, before any other thread could read it.
        guard queries.count > 1, let directory = try? materialize() else { return }
        let executable = self.executable
        let cache = self.cache, keepable = self.keepable
        let counter = SSHDProbeCounter.current
        let failures = Mutex<[ProbeKey: any Error]>([:])
        @Sendable func ask(_ query: (key: ProbeKey, arguments: [String])) {
            do {
                _ = try cache.answer(query.key, kept: keepable) {
                    try Self.settings(executable, query.arguments, in: directory, counter: counter)
                }
            } catch {
                failures.withLock { $0[query.key] = error }
            }
        }
        var threads: [OwnThread] = []
        for query in queries.dropFirst() {
            if let thread = OwnThread.start({ ask(query) }) { threads.append(thread) } else { ask(query) }
        }
        ask(queries[0])
        // The folder is removed by the caller only after every probe in it has ended.
        for thread in threads { thread.join() }
        prefetchFailures.merge(failures.withLock { $0 }) { _, new in new }
    }

    /// The cache key and command line of `sshd -T` for a connection by `user`.
    private func effectiveQuery(_ user: String) -> (key: ProbeKey, arguments: [String]) {
        let arguments = ["-T", "-C", "user=\(user),host=bulwark-guard.invalid,addr=127.0.0.1"]
        var key = material
        key.append(arguments.joined(separator: "\u{0}"))
        return (key, arguments)
    }

    /// Runs `sshd -T` with `arguments` on the candidate in `directory` and reads its answer.
    private static func settings(_ executable: String, _ arguments: [String], in directory: String,
                                 counter: SSHDProbeCounter?) throws -> [String: [String]] {
        let result = try sshd(executable, arguments, in: directory, counter: counter)
        guard result.status == 0 else {
            throw HostError("sshd -T rejected the candidate configuration: \(result.errors)")
        }
        // An answer cut short could leave out a deny list's last entries.
        guard !result.truncated else { throw HostError("sshd -T printed more than Bulwark reads; the candidate is not judged") }
        var settings: [String: [String]] = [:]
        for line in result.output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard let key = parts.first?.lowercased(), key != "hostkey" else { continue }
            settings[key, default: []].append(parts.count > 1 ? String(parts[1]) : "")
        }
        // `hostkey` is left out: it names the probe's throwaway key, not the target's.
        return settings
    }

    /// Device, inode, size, and modification and change times of a file: a replaced sshd is a
    /// new key, even one written into the old inode with its old size and modification time
    /// (the change time cannot be set back).
    static func identity(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "missing" }
        return "\(info.st_dev) \(info.st_ino) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec) "
            + "\(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)"
    }

    /// Runs `executable` (sshd) with `arguments` on the candidate in `directory`, as nobody when
    /// Bulwark is root; counted for tests by `counter` (a task-local, read by the caller: a
    /// probe may run on a thread of its own).
    private static func sshd(_ executable: String, _ arguments: [String], in directory: String,
                             counter: SSHDProbeCounter?) throws -> ProbeOutput {
        let full = arguments + ["-f", directory + "/config-0.conf", "-h", try SSHDHostKey.path()]
        counter?.started()
        defer { counter?.ended() }
        var result: ProbeOutput
        if geteuid() == 0 {
            guard let setpriv = Self.setpriv else { throw HostError("setpriv is not installed; cannot run sshd unprivileged") }
            result = try Self.run(setpriv, ["--reuid=\(Self.unprivileged.uid)", "--regid=\(Self.unprivileged.gid)", "--clear-groups",
                                            executable] + full, in: directory)
        } else {
            result = try Self.run(executable, full, in: directory)
        }
        result.errors = Self.messageLines(result.errors.replacingOccurrences(of: directory + "/", with: "<candidate>/"))
        return result
    }

    /// What sshd or ssh-keygen said, for a message on one line: its lines (which OpenSSH ends
    /// with `\r\n` on stderr, shown as escapes once quoted) trimmed and joined with "; ".
    static func messageLines(_ text: String) -> String {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: "; ")
    }

    typealias ProbeOutput = (status: Int32, output: String, errors: String, truncated: Bool)

    /// Runs a probe through the one bounded runner (output in files in `directory`, killed after `timeout`).
    static func run(_ executable: String, _ arguments: [String], in directory: String) throws -> ProbeOutput {
        // sshd -t/-T and ssh-keygen finish in milliseconds; one that hangs must not hang the plan.
        do {
            let result = try BoundedProcess.run(executable, arguments, folder: directory, timeout: .seconds(Self.timeout))
            return (result.status, result.output, result.errors, result.truncated)
        } catch {
            if error.reason == .cannotCreateOutput { throw HostError("cannot create output files", path: directory) }
            throw HostError(error.description)
        }
    }
}

// MARK: - The sshd guard

extension SSHDConfigDriver: JointlyGuardedDriver {
    /// Who can still log in: judged after the account guard, with the accounts this pass changes.
    func guardDomain(_ resource: Resource, on target: Target) -> GuardDomain? { HostRoot.loginsDomain(stage: 1, target) }

    /// Blocks an sshd change after which nobody could log in over SSH, judged by sshd's own
    /// effective configuration (`sshd -T`, per account, Match blocks and drop-ins included):
    /// no account with a login shell and a key or password that sshd would still let in;
    /// neither root nor any account in sudo, wheel or admin able to log in while one could before;
    /// `MaxSessions 0`; `MaxStartups` starting at 0, full below `fewestStartups`, or rate 100 from a start below it; a `ListenAddress` this machine does not have;
    /// ciphers, key exchanges, MACs or host key algorithms no default client can agree on
    /// (`SSHClientDefaults.noCommonAlgorithm`; a host key algorithm also needs one of the host's keys).
    /// A candidate sshd rejects is blocked with sshd's message. The accounts are judged as the
    /// account changes this pass already allowed on the target leave them (`alongside`).
    /// The fewest unauthenticated connections (`MaxStartups`' last number) sshd may stop at:
    /// below it, a few idle connections from anyone keep administrators out (CIS asks 10:30:60).
    static let fewestStartups = 10

    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target, alongside: [AllowedChange]) async -> GuardVerdict {
        judging("sshd") { try judge(changes, root: try HostRoot(target: target), alongside: alongside) }
    }

    /// Settings that restrict what a logged-in session may do, or what is logged, but never who
    /// can log in or how: changing only these cannot lock anyone out, so no probe is needed (the
    /// candidate is still checked by `sshd -t` before it is written). A change of authentication
    /// methods, access lists, root login, limits or timeouts is always judged (limits no check
    /// reads are judged with the rest of their candidate: `unread`).
    static let cannotLockOut: Set<String> = Set([
        "X11Forwarding", "PermitUserEnvironment", "AllowAgentForwarding", "AllowTcpForwarding",
        "AllowStreamLocalForwarding", "GatewayPorts", "PermitTunnel", "DisableForwarding", "PermitListen", "PermitOpen",
        "IgnoreRhosts", "IgnoreUserKnownHosts", "HostbasedAuthentication", "LogLevel", "SyslogFacility", "PrintMotd",
        "PrintLastLog", "TCPKeepAlive", "UseDNS", "Compression", "Banner", "ExposeAuthInfo",
    ].map { settingName($0) })

    /// Limits no check of this guard reads: how many tries and how long a login may take, and
    /// when an unanswering client is let go. What sshd is asked about leaves them as the file
    /// has them (see `judge`). Unlike `cannotLockOut`, a change of one is still judged: against
    /// the rest of its candidate, so that no change is written to a file that already keeps
    /// everyone out.
    static let unread: Set<String> = Set(["MaxAuthTries", "LoginGraceTime", "ClientAliveInterval", "ClientAliveCountMax"]
        .map { settingName($0) })

    /// What one plan's judgements found (`judge`), by root, candidate and the account changes
    /// judged with: a host's drifted resources are judged in turn, and those whose candidates
    /// differ only in settings no check reads get one verdict.
    final class PlanVerdicts: Sendable {
        struct Key: Hashable {
            var root: String
            var executable: String
            var changes: [[String]]
            var accounts: [[String]]
        }

        let verdicts = Memo<Key, GuardVerdict>(limit: PlanReads.pathLimit)
    }

    /// The shortest login sshd should allow (`LoginGraceTime`), in seconds: a passphrase typed
    /// or a second factor answered takes longer than a few seconds.
    static let loginGraceFloor = 10

    /// Why setting `keyword` to `desired` would keep people out although every account keeps a
    /// way in, for the limits sshd is not asked about (`unread`): `MaxAuthTries 1` lets in only
    /// a client whose first offer is right (an agent offers each of its keys in turn, and a
    /// password typed after a refused key is a second try); a `LoginGraceTime` under
    /// `loginGraceFloor` seconds cuts a login before a person can finish it (0 is no limit).
    /// Nil for any other setting or value. A finding's rule can write such values: this is what
    /// stops a scanner's evidence from merging them by itself.
    static func belowFloor(_ keyword: String, _ desired: String) -> String? {
        switch settingName(keyword) {
        case settingName("MaxAuthTries"):
            guard let tries = Int(desired.trimmingCharacters(in: .whitespaces)), tries < 2 else { return nil }
            return "MaxAuthTries \(desired) would let in only a client whose first key or password is right (an agent offers each key "
                + "in turn, and a password after a refused key is a second try)"
        case settingName("LoginGraceTime"):
            guard let seconds = seconds(desired.trimmingCharacters(in: .whitespaces)), seconds > 0, seconds < loginGraceFloor else {
                return nil
            }
            return "LoginGraceTime \(desired) would cut every login that takes longer than \(seconds) s (a passphrase, a second factor); "
                + "\(loginGraceFloor) s is the least Bulwark writes without an approval"
        default:
            return nil
        }
    }

    /// Why sshd should not be pointed at the file `desired` names for `keyword`, or nil:
    /// - `Banner` is sent, as root read it, to whoever connects before any login: it must be `none`
    ///   or a regular file of root's (or Bulwark's user's) that everyone may read anyway and no one
    ///   else may write, reached through folders no one else may write in, with no symbolic link on
    ///   the way. `Banner /etc/shadow` sent the shadow file to anyone; a FIFO or device would hang
    ///   every login; a missing file, or one in a folder others write in, is whatever they put there.
    /// - `AuthorizedKeysFile` names the keys that let a person in as any account: each absolute
    ///   pattern's folders up to its first `%` token (all of them for a file without one) must be
    ///   root's (or Bulwark's user's) and writable by no one else, sticky or not, as sshd's own
    ///   StrictModes wants (`/tmp/%u` would let any local user add a key for root). Patterns
    ///   relative to the home folder (`.ssh/authorized_keys`, `%h/…`) are each account's own.
    /// Looked at below the root without following any link out of it (`openat`, `O_NOFOLLOW`).
    static func unsafeFile(_ keyword: String, _ desired: String, root: HostRoot) -> String? {
        switch settingName(keyword) {
        case settingName("Banner"):
            let value = desired.trimmingCharacters(in: .whitespaces)
            guard value.lowercased() != "none" else { return nil }
            let shown = "Banner '\(quotedForMessage(value))'"
            guard value.hasPrefix("/") else { return "\(shown) is not an absolute path: sshd would read it from wherever it was started" }
            let components = PathText.components(value)
            guard let name = components.last else { return "\(shown) names the root folder, not a file" }
            switch trustedFolder(Array(components.dropLast()), root: root, stickyIsEnough: true) {
            case .failure(let problem): return "\(shown): \(problem); sshd sends the banner to anyone before login"
            case .success(nil): return "\(shown): its folder does not exist"
            case .success(let folder?):
                var info = stat()
                guard fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                    return "\(shown) cannot be looked at (\(errnoText())): create it, root's and readable by everyone, first"
                }
                guard info.st_mode & FileType.mask == FileType.regular else {
                    return "\(shown) is \(FileType.name(info.st_mode)), not a regular file: sshd would send what it leads to, or hang "
                        + "every login reading it"
                }
                guard StrictModes.trusted(info.st_uid) else { return "\(shown) belongs to uid \(info.st_uid), not root" }
                let mode = String(info.st_mode & 0o7777, radix: 8)
                guard info.st_mode & 0o004 != 0 else {
                    return "\(shown) is not readable by everyone (mode \(mode)): sshd, as root, would send it to anyone before login"
                }
                guard info.st_mode & 0o022 == 0 else {
                    return "\(shown) is writable by group or others (mode \(mode)): they would choose what sshd sends"
                }
                return nil
            }
        case settingName("AuthorizedKeysFile"):
            for pattern in desired.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) where pattern.lowercased() != "none" {
                let components = PathText.components(pattern)
                let shown = "AuthorizedKeysFile '\(quotedForMessage(pattern))'"
                // `.ssh/../../../tmp/%u` climbs out of every home folder.
                guard !components.contains("..") else { return "\(shown) climbs out of a folder with '..'" }
                guard pattern.hasPrefix("/") else { continue }
                let fixed = components.prefix { !$0.contains("%") }
                let folders = fixed.count == components.count ? Array(fixed.dropLast()) : Array(fixed)
                switch trustedFolder(folders, root: root, stickyIsEnough: false, missingIsFine: true) {
                case .failure(let problem):
                    return "\(shown): \(problem), so others could add a key that logs in as any account"
                case .success(let folder?) where fixed.count == components.count:
                    // One file for every account: it must be as trusted as its folders.
                    var info = stat()
                    guard let name = components.last, fstatat(folder.fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                    if info.st_mode & FileType.mask != FileType.regular {
                        return "\(shown) is \(FileType.name(info.st_mode)), not a regular file"
                    }
                    if !StrictModes.trusted(info.st_uid) || info.st_mode & 0o022 != 0 {
                        return "\(shown) belongs to uid \(info.st_uid) with mode \(String(info.st_mode & 0o7777, radix: 8)): only root may "
                            + "write the keys that log in as any account"
                    }
                case .success:
                    continue
                }
            }
            return nil
        default:
            return nil
        }
    }

    /// The folder `components` names below the root, opened without following any link, each
    /// folder on the way (the root's own folder too) root's or Bulwark's user's and writable by no
    /// one else (`StrictModes.folderDoubt`; with `stickyIsEnough` false a sticky folder open to
    /// all, `/tmp`, does not pass either). With `missingIsFine`, a folder that does not exist ends
    /// the walk well: only the owner of the one above, trusted, can make it. Nil folder then.
    static func trustedFolder(_ components: [String], root: HostRoot, stickyIsEnough: Bool,
                              missingIsFine: Bool = false) -> Result<Directory?, HostFolderDoubt> {
        func doubt(_ fd: Int32, _ shown: String) -> HostFolderDoubt? {
            var info = stat()
            guard fstat(fd, &info) == 0 else { return HostFolderDoubt("folder \(shown) cannot be looked at: \(errnoText())") }
            if let doubt = StrictModes.folderDoubt(info) { return HostFolderDoubt("folder \(shown) \(doubt)") }
            if !stickyIsEnough, info.st_mode & 0o022 != 0 {
                return HostFolderDoubt("folder \(shown) is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8)))")
            }
            return nil
        }
        let current: Directory
        do { current = try root.openRoot() } catch { return .failure(HostFolderDoubt("\(error)")) }
        if let problem = doubt(current.fd, "/") { return .failure(problem) }
        var folder = current
        for part in components {
            let here = root.hostPath(folder.components + [part])
            guard LinkFreeOpen.isPlain(part) else { return .failure(HostFolderDoubt("'\(quotedForMessage(part))' in \(here) is not a plain name")) }
            let fd = openat(folder.fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else {
                let code = errno
                var info = stat()
                if code == ENOENT, missingIsFine { return .success(nil) }
                if fstatat(folder.fd, part, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & FileType.mask != FileType.directory {
                    return .failure(HostFolderDoubt("\(here) is \(FileType.name(info.st_mode)), not a folder"))
                }
                return .failure(HostFolderDoubt("folder \(here) cannot be opened: \(errnoText(code))"))
            }
            folder = Directory(fd: fd, components: folder.components + [part])
            if let problem = doubt(fd, here) { return .failure(problem) }
        }
        return .success(folder)
    }

    /// Whether setting `keyword` to `desired` is judged by asking sshd (see `cannotLockOut`).
    /// PermitEmptyPasswords may always be turned off: it only ever removes empty-password logins.
    static func mayLockOut(_ keyword: String, desired: String) -> Bool {
        let name = settingName(keyword)
        return !cannotLockOut.contains(name) && !(name == settingName("PermitEmptyPasswords") && desired == "no")
    }

    /// `assess` on `root`: also asked again at the write, under the target's lock, with the
    /// configuration and accounts as they are then (`applyOnce`).
    func judge(_ changes: [PropertyDrift], root: HostRoot, alongside: [AllowedChange]) throws -> GuardVerdict {
        if let floor = changes.lazy.compactMap({ Self.belowFloor($0.property, $0.desired) }).first { return .block(floor) }
        if let file = changes.lazy.compactMap({ Self.unsafeFile($0.property, $0.desired, root: root) }).first { return .block(file) }
        guard changes.contains(where: { Self.mayLockOut($0.property, desired: $0.desired) }) else { return .allow }
        guard let executable = validator.executable else {
            throw HostError("sshd is not installed where Bulwark runs, so the candidate cannot be checked")
        }
        // sshd changes shown alongside come from another target name for this root: the same file.
        let taken = Set(changes.map(\.property))
        let sameFile = alongside.filter { $0.resource.id.kind == "SSHDConfig" }.flatMap(\.changes).filter { !taken.contains($0.property) }
        // What sshd is asked about leaves the settings that cannot lock anyone out, and the
        // limits no check reads, as the file has them: they change no verdict, and the
        // candidates of one file that differ only in them are then one probe and one verdict (a
        // host's drifted resources are judged in turn, each with the changes allowed before
        // it). sshd -t still checks the whole file before it is written, as for a resource that
        // changes only such settings. (HostbasedAuthentication off can make sshd refuse
        // `AuthenticationMethods hostbased`, but only where no other method list is left, and
        // there the guard finds no one able to log in already: no change that can lock anyone
        // out is allowed before it.)
        let all = sameFile + changes
        let asked = all.filter {
            let name = Self.settingName($0.property)
            return !Self.cannotLockOut.contains(name) && !Self.unread.contains(name)
        }
        // A value the file holds now that sshd refuses (`LoginGraceTime 2min`) is one a change
        // left out may be repairing: where sshd cannot judge the candidate without those
        // changes, it is asked about the candidate with them.
        do {
            return try keptVerdict(asked, root: root, executable: executable, alongside: alongside)
        } catch where asked.count != all.count {
            return try keptVerdict(all, root: root, executable: executable, alongside: alongside)
        }
    }

    /// The verdict on the candidate `asked` makes; within a plan (never under the target's
    /// lock), kept by the plan: the root's configuration and accounts are the plan's snapshot
    /// (`PlanReads`), so the same candidate with the same account changes gets the same verdict.
    private func keptVerdict(_ asked: [PropertyDrift], root: HostRoot, executable: String, alongside: [AllowedChange]) throws -> GuardVerdict {
        guard !HostLock.isHeld(root), let plan = ObservationScope.current?.slot({ PlanVerdicts() }) else {
            return try judge(asked, root: root, executable: executable, alongside: alongside)
        }
        let accountChanges = alongside.filter { $0.resource.id.kind == "UserAccount" }.map { allowed in
            ["\(allowed.resource.id)", allowed.resource.spec.subject] + allowed.changes.flatMap { [$0.property, $0.desired] }
        }
        let key = PlanVerdicts.Key(root: root.path, executable: executable, changes: asked.map { [$0.property, $0.desired] },
                                   accounts: accountChanges)
        return try plan.verdicts.value(key) { try judge(asked, root: root, executable: executable, alongside: alongside) }
    }

    /// The verdict on the candidate that `asked` makes of the root's configuration, with the
    /// accounts as the changes allowed `alongside` leave them.
    private func judge(_ asked: [PropertyDrift], root: HostRoot, executable: String, alongside: [AllowedChange]) throws -> GuardVerdict {
        SSHDProbeCounter.current?.judging()
        let current = try read(root)
        let (candidate, _) = Self.candidate(asked, from: current)
        let accounts = try HostAccounts.reading(root).after(alongside)
        let probe = try SSHDProbe(executable: executable, config: candidate, root: root, driver: self)
        defer { probe.remove() }

        // root's answer and that of the first account `logins` looks at, from two sshd at once.
        let first = Self.loginCandidates(accounts).first { !($0.uid == 0 && $0.name == "root") }
        probe.prefetch(users: ["root"] + (first.map { [$0.name] } ?? []))
        // Settings that are global (not allowed in Match): judged once.
        let global = try probe.effective(user: "root")
        if let startups = global["maxstartups"]?.first {
            // `sshd -T` shows start:rate:full; from `full` unauthenticated connections up every new
            // one is dropped, and anyone who can reach the port holds that many open for free.
            let parts = startups.split(separator: ":")
            if parts.first == "0" {
                return .block("MaxStartups \(startups) would refuse every new connection")
            }
            // At rate 100 every connection past `start` is dropped, as every one past `full` is.
            if parts.count == 3, parts[1] == "100", let start = Int(parts[0]), start < Self.fewestStartups {
                return .block("MaxStartups \(startups) would drop every new connection while \(start) unauthenticated "
                              + "\(start == 1 ? "one is" : "ones are") open (a rate of 100 drops all past the first number): "
                              + "anyone who can reach the port, a scanner included, could keep every administrator out "
                              + "(at least \(Self.fewestStartups) for the first number where the rate is 100)")
            }
            if let full = parts.last.flatMap({ Int($0) }), full < Self.fewestStartups {
                return .block("MaxStartups \(startups) would drop every new connection while \(full) unauthenticated "
                              + "\(full == 1 ? "one is" : "ones are") open: anyone who can reach the port, a scanner included, "
                              + "could keep every administrator out (at least \(Self.fewestStartups) for the last number)")
            }
        }
        for address in global["listenaddress"] ?? [] where !Self.isLocal(address) {
            return .block("ListenAddress \(address) is not an address of this machine: sshd could not listen there")
        }
        if let problem = SSHClientDefaults.noCommonAlgorithm(global, hostKeyTypes: Self.hostKeyTypes(candidate, root: root)) {
            return .block(problem)
        }

        let after = try logins(probe, global: global, accounts: accounts)
        guard after.someone else {
            return .block("no account could log in over SSH after this change (\(after.why))")
        }
        if after.administrator { return .allow }
        // Only non-administrators could log in: block when root or an administrator could before this change.
        let before = try SSHDProbe(executable: executable, config: current, root: root, driver: self)
        defer { before.remove() }
        if try logins(before, global: try before.effective(user: "root"), accounts: accounts).administrator {
            return .block("no account in sudo, wheel or admin, nor root, could log in over SSH after this change, "
                          + "and one could before (\(after.why))")
        }
        return .allow
    }

    /// sshd's host keys when none is named (OpenSSH 9.2's `fill_default_server_options`).
    static let defaultHostKeys = ["/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"]

    /// The types (`ssh-rsa`, `ssh-ed25519`, …) of the host keys sshd would load from the target:
    /// the `HostKey` files `config` names outside `Match` blocks (sshd's defaults where it names
    /// none), each one that exists under the root told by its public half (`FILE.pub`, as
    /// ssh-keygen writes it; the private key itself is never read). A file that does not exist
    /// backs nothing, as sshd skips it. nil where they cannot be told, and the guard then judges
    /// `HostKeyAlgorithms` against the client alone: no host key file exists under the root (a
    /// sandbox root; sshd would not start), a `HostKey` path is not absolute, or a key that exists
    /// has no readable public half holding one whole key. Host certificates (`HostCertificate`)
    /// are not read: a `-cert-v01` algorithm counts as backed by no key.
    static func hostKeyTypes(_ config: Config, root: HostRoot) -> Set<String>? {
        let named = config.lines("HostKey", inMatch: false).map { normalize($0.value, .text) ?? $0.value }
        var types: Set<String> = []
        for path in named.isEmpty ? defaultHostKeys : named {
            guard PathText.isAbsolute(path) else { return nil }
            guard let exists = try? FileIO.exists(path, in: root) else { return nil }
            guard exists else { continue }
            guard let text = try? FileIO.readText(path + ".pub", in: root),
                  let line = text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).first,
                  let key = HostAccounts.KeyFile.key(at: line.drop { $0 == " " || $0 == "\t" }) else { return nil }
            types.insert(key.type)
        }
        return types.isEmpty ? nil : types
    }

    /// Who sshd, judging by a probe's effective settings, would let in: anyone, and root or an
    /// account in sudo, wheel or admin (the way back to administration); with why each account
    /// looked at would be refused. Administrators are looked at first: one settles both.
    func logins(_ probe: SSHDProbe, global: [String: [String]], accounts: HostAccounts) throws
        -> (someone: Bool, administrator: Bool, why: String) {
        var denied: [String] = []
        var someone = false
        for account in Self.loginCandidates(accounts) {
            let settings = account.uid == 0 && account.name == "root" ? global : try probe.effective(user: account.name)
            if let reason = Self.denial(account, settings: settings, accounts: accounts) {
                denied.append("\(account.name): \(reason)")
                continue
            }
            someone = true
            if account.uid == 0 || accounts.isAdmin(account) { return (true, true, "") }
        }
        if let note = accounts.carriageReturnNote() { denied.append(note) }
        return (someone, false, denied.isEmpty ? "the root has no account with a login shell" : denied.joined(separator: "; "))
    }

    /// The accounts `logins` looks at, in its order: the first 64 with a login shell,
    /// administrators other than root first, then by uid; of them, none whose name has a comma
    /// (it would end sshd's `-C user=` field).
    static func loginCandidates(_ accounts: HostAccounts) -> [HostAccount] {
        let people = accounts.users.filter { accounts.isLoginShell($0.shell) }
            .sorted { (accounts.isAdmin($0) && $0.uid != 0 ? 0 : 1, $0.uid) < (accounts.isAdmin($1) && $1.uid != 0 ? 0 : 1, $1.uid) }
        return people.prefix(64).filter { !$0.name.contains(",") }
    }

    /// Why sshd, with these effective settings, would not let `account` in; nil when it would.
    static func denial(_ account: HostAccount, settings: [String: [String]], accounts: HostAccounts) -> String? {
        func value(_ key: String) -> String { settings[key]?.first?.lowercased() ?? "" }
        func list(_ key: String) -> [String] { (settings[key] ?? []).flatMap { $0.split(separator: " ").map(String.init) } }
        if value("maxsessions") == "0" { return "MaxSessions 0" }
        if let ended = account.endedByPass { return ended }
        if account.expired { return "account expired" }
        if value("usepam") != "yes" && account.locked { return "locked (! in shadow) and UsePAM no" }
        let groups = accounts.groupNames(of: account)
        func userMatches(_ pattern: String, hostMustBeAny: Bool) -> Bool {
            let parts = pattern.split(separator: "@", maxSplits: 1)
            guard let user = parts.first else { return false }
            if hostMustBeAny, parts.count > 1, parts[1] != "*" { return false }
            return fnmatch(String(user), account.name, 0) == 0
        }
        // Where an administrator connects from is not known: a deny for some hosts counts as a
        // deny, an allow for some hosts does not count as an allow (`AllowUsers *@127.0.0.1`).
        if let pattern = list("denyusers").first(where: { userMatches($0, hostMustBeAny: false) }) { return "DenyUsers \(pattern)" }
        let allowUsers = list("allowusers")
        if !allowUsers.isEmpty && !allowUsers.contains(where: { userMatches($0, hostMustBeAny: true) }) {
            return "not in AllowUsers (for every host)"
        }
        if let pattern = list("denygroups").first(where: { p in groups.contains { fnmatch(p, $0, 0) == 0 } }) {
            return "DenyGroups \(pattern)"
        }
        let allowGroups = list("allowgroups")
        if !allowGroups.isEmpty && !allowGroups.contains(where: { p in groups.contains { fnmatch(p, $0, 0) == 0 } }) {
            return "not in AllowGroups"
        }
        var passwordAllowed = true
        if account.uid == 0 {
            switch value("permitrootlogin") {
            case "yes": break
            case "prohibit-password", "without-password": passwordAllowed = false
            default: return "PermitRootLogin \(value("permitrootlogin"))"
            }
        }
        let keyFiles = (settings["authorizedkeysfile"]?.first ?? ".ssh/authorized_keys").split(separator: " ").map(String.init)
        let keyCommand = value("authorizedkeyscommand")
        let strictModes = value("strictmodes") != "no"
        var hasKey = accounts.authorizedKeys(account, patterns: keyFiles, strictModes: strictModes) != nil
            || (!keyCommand.isEmpty && keyCommand != "none")
        // Keys of types neither sshd's PubkeyAcceptedAlgorithms nor a client's default offer take
        // are no way in, nor RSA keys smaller than RequiredRSASize (OpenSSH 9.1; 1024 bits by default).
        var refusedKeys: String?
        if hasKey, keyCommand.isEmpty || keyCommand == "none" {
            var types = accounts.authorizedKeyTypes(account, patterns: keyFiles, strictModes: strictModes)
            if types.contains("ssh-rsa"), let required = Int(value("requiredrsasize")),
               let largest = accounts.largestRSAKey(account, patterns: keyFiles, strictModes: strictModes), largest < required {
                types.remove("ssh-rsa")
                if types.isEmpty {
                    hasKey = false
                    refusedKeys = "its RSA keys (\(largest) bits at most) are smaller than RequiredRSASize \(required)"
                }
            }
            if hasKey, let accepted = settings["pubkeyacceptedalgorithms"]?.first, !types.isEmpty,
               !SSHClientDefaults.canSign(with: types, accepted: accepted) {
                hasKey = false
                refusedKeys = "its keys (\(types.sorted().joined(separator: ", "))) are not among PubkeyAcceptedAlgorithms \(accepted)"
            }
        }
        let hasPassword = passwordAllowed && (account.hasPassword || (account.emptyPassword && value("permitemptypasswords") == "yes"))
        var available: Set<String> = []
        if value("pubkeyauthentication") == "yes" && hasKey { available.insert("publickey") }
        if value("passwordauthentication") == "yes" && hasPassword { available.insert("password") }
        if value("kbdinteractiveauthentication") == "yes" && value("usepam") == "yes" && hasPassword {
            available.insert("keyboard-interactive")
        }
        let methods = settings["authenticationmethods"]?.first ?? "any"
        let usable: Bool
        if methods.lowercased() == "any" {
            usable = !available.isEmpty
        } else {
            usable = methods.split(separator: " ").contains { chain in
                chain.split(separator: ",").allSatisfy { method in
                    let name = method.split(separator: ":").first.map(String.init) ?? ""
                    return available.contains(name)
                }
            }
        }
        guard usable else {
            if let refusedKeys, !hasPassword { return refusedKeys }
            var held: [String] = []
            if hasKey { held.append("a key") }
            if let refusedKeys { held.append("keys sshd refuses: \(refusedKeys)") }
            if hasPassword { held.append("a password") }
            return "no authentication method left (holds \(held.isEmpty ? "no key or password" : held.joined(separator: " and ")); "
                + "PubkeyAuthentication \(value("pubkeyauthentication")), PasswordAuthentication \(value("passwordauthentication")), "
                + "KbdInteractiveAuthentication \(value("kbdinteractiveauthentication")), AuthenticationMethods \(methods))"
        }
        return nil
    }

    /// `sshd -T`'s `listenaddress` (`0.0.0.0:22`, `[::1]:22`): a wildcard, loopback, or an
    /// address of one of this machine's interfaces. For a sandbox root these are the interfaces
    /// of the machine Bulwark runs on.
    static func isLocal(_ listen: String) -> Bool {
        var host = listen
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":"), host.filter({ $0 == ":" }).count == 1 {
            host = String(host[..<colon])
        }
        if ["0.0.0.0", "::", "*", "localhost"].contains(host) || host.hasPrefix("127.") || host == "::1" { return true }
        return localAddresses().contains(host)
    }

    static func localAddresses() -> Set<String> {
        var result: Set<String> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return result }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr else { continue }
            let family = Int32(address.pointee.sa_family)
            guard family == AF_INET || family == AF_INET6 else { continue }
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
            if getnameinfo(address, length, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                result.insert(String(text.split(separator: "%").first ?? ""))
            }
        }
        return result
    }
}

// MARK: - Made ahead of the first probe

/// What the guard's first probe waits for, made in the background once per process as soon as a
/// plan sees a drift the guard will judge: what a client offers (`ssh -G`, or its kept answer)
/// and, where no answers are kept (`SSHDProbeCache.kept`), the probe host key (`ssh-keygen`).
/// The guard judges after every target has been read, and a drifted 100-root plan with no
/// answers kept waited for both in turn, both cores idle, before its first `sshd -T`. With
/// answers kept the key is made when first needed: a plan answered from the store needs none,
/// and an apply makes it for its first `sshd -t`, as before.
/// Each takes its own lock, so a judgment that comes first waits for the one running rather than
/// starting a second.
enum SSHDGuardWarmUp {
    private static let started: Void = {
        _ = OwnThread.detached { _ = SSHClientDefaults.offer }
        if SSHDProbeCache.shared.kept == nil { _ = OwnThread.detached { _ = try? SSHDHostKey.path() } }
    }()

    static func start() { _ = started }
}

// MARK: - What a client offers

/// What an OpenSSH client offers by default (`ssh -F /dev/null -G`: no configuration file, so
/// neither the machine's nor a person's), kept for the process once read, or kept by the ssh
/// binary's identity in the state directory (`SSHDAnswerStore`). An sshd whose ciphers, key
/// exchanges or MACs share nothing with it refuses every default client before anyone logs in;
/// nil where ssh is not installed or did not answer (then those checks are not made). A failure
/// is asked again a minute later, not kept: a daemon whose one `ssh -G` timed out on a busy
/// machine would otherwise have made none of these checks for the rest of its life. Only the
/// first ask is waited for; while a later one runs, readers go on without an offer, as after a
/// failure, so a hanging `ssh` holds up no judgment twice. (An offer that arrives in the middle of
/// a judgment can judge one side of it with the offer and the other without: no more lenient than
/// judging both without it.)
enum SSHClientDefaults {
    /// Neither an offer nor a failure: not asked yet (the first ask runs under the lock).
    private struct Known {
        var offer: [String: [String]]?
        var keyAlgorithms: Set<String>?
        var failedAt: ContinuousClock.Instant?
    }

    private static let known = Mutex(Known())

    static var offer: [String: [String]]? { current().offer }

    /// What a default client offers for public keys; nil where ssh is not installed, or does not say.
    static var offeredKeyAlgorithms: Set<String>? { current().keyAlgorithms }

    private static func current() -> Known {
        let retry: Bool = known.withLock { known in
            if known.offer != nil { return false }
            guard let failed = known.failedAt else {
                // The first ask: every reader waits for it, as for a value computed once.
                settle(&known, ask())
                return false
            }
            guard ContinuousClock.now - failed >= .seconds(60) else { return false }
            known.failedAt = .now
            return true
        }
        if retry, let offer = ask() { known.withLock { settle(&$0, offer) } }
        return known.withLock { $0 }
    }

    private static func settle(_ known: inout Known, _ offer: [String: [String]]?) {
        guard let offer else {
            known.failedAt = .now
            return
        }
        known.offer = offer
        known.keyAlgorithms = offer["pubkeyacceptedalgorithms"].map(Set.init)
        known.failedAt = nil
    }

    private static func ask() -> [String: [String]]? {
        guard let ssh = ["/usr/bin/ssh", "/bin/ssh"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return nil }
        var key = ProbeKey()
        key.append("ssh -F /dev/null -G bulwark-guard.invalid")
        key.append(ssh)
        key.append(SSHDProbe.identity(ssh))
        let store = SSHDProbeCache.shared.kept
        if let kept = store?.read(key) { return kept.answer }
        guard let result = try? BoundedProcess.run(ssh, ["-F", "/dev/null", "-G", "bulwark-guard.invalid"], folder: NSTemporaryDirectory(),
                                                   timeout: .seconds(10)),
              result.status == 0, !result.truncated else { return nil }
        var offer: [String: [String]] = [:]
        for line in result.output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            offer[parts[0].lowercased()] = parts[1].split(separator: ",").map(String.init)
        }
        store?.write(offer, for: key)
        return offer
    }

    /// Ciphers that carry their own integrity: with one of them agreed, no MAC needs to be.
    static let authenticatedCiphers: Set<String> = ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]

    /// Answers of `noCommonAlgorithm` by the settings it looks at: a host's sshd resources are
    /// judged in turn, and a fleet's hosts mostly share their algorithm lists.
    private static let answers = Memo<String, String?>(limit: 64)

    /// Why a default client could not connect to an sshd with these global settings; nil when it could.
    /// `hostKeyTypes`: the types of the host keys sshd would load (`hostKeyTypes(_:root:)`), nil
    /// where not known: then `HostKeyAlgorithms` is judged against the client's offer alone.
    static func noCommonAlgorithm(_ global: [String: [String]], hostKeyTypes: Set<String>? = nil) -> String? {
        guard offer != nil else { return nil }
        let key = (["ciphers", "kexalgorithms", "macs", "hostkeyalgorithms"].map { global[$0]?.first ?? "\u{1}" }
                   + [hostKeyTypes.map { $0.sorted().joined(separator: ",") } ?? "\u{1}"]).joined(separator: "\u{0}")
        return answers.value(key) { findNoCommonAlgorithm(global, hostKeyTypes: hostKeyTypes) }
    }

    private static func findNoCommonAlgorithm(_ global: [String: [String]], hostKeyTypes: Set<String>?) -> String? {
        guard let offer else { return nil }
        func common(_ key: String) -> [String]? {
            guard let server = global[key]?.first?.split(separator: ",").map(String.init), let client = offer[key] else { return nil }
            return server.filter(client.contains)
        }
        for (key, name) in [("ciphers", "Ciphers"), ("kexalgorithms", "KexAlgorithms")] {
            if let shared = common(key), shared.isEmpty {
                return "\(name) \(global[key]?.first ?? "") shares nothing with what an OpenSSH client offers by default: "
                    + "no client could connect"
            }
        }
        if let ciphers = common("ciphers"), !ciphers.contains(where: authenticatedCiphers.contains), let macs = common("macs"), macs.isEmpty {
            return "MACs \(global["macs"]?.first ?? "") shares nothing with what an OpenSSH client offers by default, "
                + "and no cipher left carries its own: no client could connect"
        }
        // The host key algorithm must be one the client offers and one of sshd's own keys signs
        // with (`HostKeyAlgorithms ssh-rsa` meets no OpenSSH 8.8 or later client; `ssh-ed25519`
        // on a host with only RSA and ECDSA keys is offered by sshd with no key behind it).
        if let offered = common("hostkeyalgorithms") {
            let list = global["hostkeyalgorithms"]?.first ?? ""
            if offered.isEmpty {
                return "HostKeyAlgorithms \(list) shares nothing with what an OpenSSH client offers by default: no client could connect"
            }
            if let hostKeyTypes {
                let signed = Set(hostKeyTypes.flatMap(signatureAlgorithms(of:)))
                if !offered.contains(where: signed.contains) {
                    return "HostKeyAlgorithms \(list) has no algorithm that both an OpenSSH client offers by default and one of "
                        + "this host's keys (\(hostKeyTypes.sorted().joined(separator: ", "))) signs with: no client could connect"
                }
            }
        }
        return nil
    }

    /// sshd's PubkeyAcceptedAlgorithms lists as sets, by their text: every account of every
    /// judgement looks at the same few lists.
    private static let acceptedLists = Memo<String, Set<String>>(limit: 64)

    /// Whether a key of one of `types` can sign with an algorithm that both sshd (its
    /// PubkeyAcceptedAlgorithms `accepted`) and a default client take.
    static func canSign(with types: Set<String>, accepted: String) -> Bool {
        let server = acceptedLists.value(accepted) { Set(accepted.split(separator: ",").map(String.init)) }
        return types.contains { type in
            signatureAlgorithms(of: type).contains { server.contains($0) && (offeredKeyAlgorithms?.contains($0) ?? true) }
        }
    }

    /// The signature algorithms a key of `type` (an authorized_keys key type) can sign with.
    static func signatureAlgorithms(of type: String) -> [String] {
        switch type {
        case "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        case "ssh-rsa-cert-v01@openssh.com":
            ["rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com", "ssh-rsa-cert-v01@openssh.com"]
        default: [type]
        }
    }
}

/// Why a folder an sshd setting names is not one only root writes (`SSHDConfigDriver.trustedFolder`).
struct HostFolderDoubt: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
