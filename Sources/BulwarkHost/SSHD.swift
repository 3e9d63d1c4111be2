internal import Foundation
internal import BulwarkCore
internal import BulwarkProcess

/// `SSHDConfig`: keywords of `etc/ssh/sshd_config`, matched as sshd does: case-insensitively,
/// first occurrence wins, `Include` read in place, `Match` blocks conditional.
///
/// A `Match` block overrides the global value for the connections it matches (`Match all`: every
/// one), so a keyword is in sync only where the global value is the desired one and no line in a
/// `Match` block (of the main file, of an included file, or of a file included inside a `Match`
/// block) sets it to anything else. Bulwark does not change `Match` blocks: a fix whose keyword
/// a `Match` block sets otherwise fails, naming the line, and nothing is written.
///
/// `AllowUsers`, `AllowGroups`, `DenyUsers` and `DenyGroups` add up: sshd appends every line's
/// names to one list (servconf.c), so the value observed is every line outside `Match` in the
/// order sshd reads them. A fix leaves one line in force, the first, and comments out the
/// others; one in a file under usr/ or lib/ (a package's, which Bulwark does not edit) fails
/// the fix, naming it.
///
/// Only the lines that must change are touched; a keyword Bulwark adds goes before the first
/// `Match` block. Every candidate file is checked with `sshd -t -f` before it is renamed into
/// place, so a config sshd rejects is never written.
struct SSHDConfigDriver: ResourceDriver {
    /// Its only changes are `FileIO.write`'s renames, which pass `ChangeGate.current` first: a
    /// fix is marked tried after `sshd -t`, not before.
    var announcesChanges: Bool { true }

    func watchedPaths(_ resource: Resource, on target: Target) -> [String] {
        HostAdapter.paths(target, [Self.configPath, "etc/ssh/sshd_config.d/"])
    }

    static let configPath = "etc/ssh/sshd_config"
    static let marker = "# Added by Bulwark"
    let validator: SSHDValidator
    /// Parsed configurations by main file, reused while no file (or Include folder) changed:
    /// a host with eight SSHDConfig resources is read once per pass, not eight times.
    let cache = ParseCache<Config>()

    enum ValueType: Sendable {
        case choice([String])
        case integer(ClosedRange<Int>)
        case time
        /// Several arguments (`AllowUsers alice bob`), blanks folded.
        case text
        /// One argument (`Banner /etc/issue.net`, `Ciphers a,b`): a blank in it is a second
        /// argument, which sshd refuses (`extra arguments at end of line`).
        case word
    }

    static let yesNo = ValueType.choice(["yes", "no"])

    /// Keywords Bulwark manages, in sshd's spelling. Keywords sshd allows several times
    /// (`HostKey`, `ListenAddress`, `Port`, `AcceptEnv`, `Subsystem`, `Include`, `Match`) are not.
    static let keywords: [String: ValueType] = [
        "PermitRootLogin": .choice(["yes", "no", "prohibit-password", "without-password", "forced-commands-only"]),
        "PermitEmptyPasswords": yesNo, "PasswordAuthentication": yesNo, "HostbasedAuthentication": yesNo,
        "IgnoreRhosts": yesNo, "IgnoreUserKnownHosts": yesNo, "PermitUserEnvironment": yesNo,
        "X11Forwarding": yesNo, "PubkeyAuthentication": yesNo, "KbdInteractiveAuthentication": yesNo,
        "UsePAM": yesNo, "AllowAgentForwarding": yesNo,
        "GSSAPIAuthentication": yesNo, "KerberosAuthentication": yesNo, "StrictModes": yesNo, "PrintMotd": yesNo,
        "PrintLastLog": yesNo, "TCPKeepAlive": yesNo, "UseDNS": yesNo, "DisableForwarding": yesNo, "PermitTTY": yesNo,
        "ExposeAuthInfo": yesNo,
        "AllowTcpForwarding": .choice(["yes", "no", "all", "local", "remote"]),
        "AllowStreamLocalForwarding": .choice(["yes", "no", "all", "local", "remote"]),
        "GatewayPorts": .choice(["yes", "no", "clientspecified"]),
        "PermitTunnel": .choice(["yes", "no", "point-to-point", "ethernet"]),
        "Compression": .choice(["yes", "no", "delayed"]),
        "LogLevel": .choice(["quiet", "fatal", "error", "info", "verbose", "debug", "debug1", "debug2", "debug3"]),
        "MaxAuthTries": .integer(1...1000), "MaxSessions": .integer(0...1000),
        "ClientAliveCountMax": .integer(0...1000), "ClientAliveInterval": .time, "LoginGraceTime": .time,
        "Banner": .word, "Ciphers": .word, "MACs": .word, "KexAlgorithms": .word, "HostKeyAlgorithms": .word,
        "PubkeyAcceptedAlgorithms": .word, "AllowUsers": .text, "AllowGroups": .text, "DenyUsers": .text,
        "DenyGroups": .text, "MaxStartups": .word, "SyslogFacility": .word, "AuthorizedKeysFile": .text,
        "PermitListen": .text, "PermitOpen": .text,
    ]

    /// Other spellings sshd reads as one of the keywords above (servconf.c's keyword table;
    /// checked with `sshd -T` on OpenSSH 9.2): one setting, so Bulwark compares and claims it
    /// under one name, and a resource that sets two spellings of it is refused.
    static let aliases: [String: String] = [
        "challengeresponseauthentication": "KbdInteractiveAuthentication",
        "skeyauthentication": "KbdInteractiveAuthentication",
        "pubkeyacceptedkeytypes": "PubkeyAcceptedAlgorithms",
        "dsaauthentication": "PubkeyAuthentication",
        "keepalive": "TCPKeepAlive",
    ]

    /// The keyword as Bulwark names it: sshd's spelling of the keyword or of the one an alias
    /// stands for, matched case-insensitively as sshd does. nil for keywords Bulwark does not manage.
    static func canonicalKeyword(_ keyword: String) -> String? {
        let lower = keyword.lowercased()
        if let target = aliases[lower] { return target }
        return keywords.keys.first { $0.lowercased() == lower }
    }

    /// The keyword sshd means by a line's keyword, lower-cased: aliases folded into their keyword.
    static func settingName(_ keyword: some StringProtocol) -> String {
        let lower = keyword.lowercased()
        return aliases[lower]?.lowercased() ?? lower
    }

    /// Keywords whose lines add up (`settingName`s): sshd appends every line's names to one list
    /// (servconf.c's `AllowUsers`, `AllowGroups`, `DenyUsers`, `DenyGroups`), so the first line is
    /// not the whole value. Checked with `sshd -T` on OpenSSH 9.2: `AllowUsers ops` in a drop-in
    /// and `AllowUsers *` in the main file let everyone in. Within the `Match` blocks that match
    /// a connection they add up too, and that list replaces the global one.
    static let accumulating: Set<String> = ["allowusers", "allowgroups", "denyusers", "denygroups"]

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        var seen: [String: (key: String, line: Int)] = [:]
        return spec.keyedProperties { key, reader in
            guard let keyword = canonicalKeyword(key), let type = keywords[keyword] else {
                reader.fail("unknown or unsupported sshd keyword '\(key)'; supported: \(keywords.keys.sorted().joined(separator: ", "))")
                return nil
            }
            // sshd reads keywords case-insensitively and the first occurrence wins: two spellings
            // of one setting in a resource would fight each other on every pass.
            if let first = seen[keyword] {
                reader.fail("'\(key)' is the same sshd setting as '\(first.key)' (line \(first.line)): "
                            + "sshd compares keywords case-insensitively and reads \(aliases.keys.sorted().map { "'\($0)'" }.joined(separator: ", ")) as their current names; set \(keyword) once")
                return nil
            }
            seen[keyword] = (key, reader.location.line)
            guard let text = reader.string() else { return nil }
            if let problem = LineSafety.problem(text) {
                reader.fail("\(problem); sshd_config is one setting per line")
                return nil
            }
            guard let value = normalize(text, type) else {
                switch type {
                case .choice(let allowed): reader.fail("expected one of \(allowed.joined(separator: ", ")), got '\(text)'")
                case .integer(let range): reader.fail("expected an integer from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
                case .time: reader.fail("expected a time such as 60, 30s, 2m or 1h, got '\(text)'")
                case .text: reader.fail("expected a non-empty single-line value")
                case .word: reader.fail("expected one argument without blanks (sshd reads a second one as an error), got '\(text)'")
                }
                return nil
            }
            return DesiredProperty(keyword, value)
        }
    }

    /// The canonical form Bulwark compares: choices lower-cased, times in seconds, whitespace folded.
    static func normalize(_ raw: String, _ type: ValueType) -> String? {
        var text = raw.trimmingCharacters(in: .whitespaces)
        if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") { text = String(text.dropFirst().dropLast()) }
        guard !text.isEmpty else { return nil }
        switch type {
        case .choice(let allowed):
            var lower = text.lowercased()
            // sshd's old spelling of the same value: one setting, one way to compare it.
            if lower == "without-password", allowed.contains("prohibit-password") { lower = "prohibit-password" }
            return allowed.contains(lower) ? lower : nil
        case .integer(let range):
            guard let value = Int(text), range.contains(value) else { return nil }
            return String(value)
        case .time:
            return seconds(text).map(String.init)
        case .text:
            return text.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
        case .word:
            return text.contains(where: { $0 == " " || $0 == "\t" }) ? nil : text
        }
    }

    /// sshd's time format: `90`, `90s`, `1m30s`, `1h`, `1d`, `1w`, read by the one duration
    /// parser (checked arithmetic: an overflowing value is refused, never a trap).
    static func seconds(_ text: String) -> Int? {
        try? DurationParser.seconds(text, bareNumberIsSeconds: true, caseInsensitive: true)
    }

    // MARK: - Reading the configuration

    /// One keyword line, where it is.
    struct Entry {
        var file: String
        var line: Int
        var keyword: String
        var value: String
        /// Inside a `Match` block, or in a file included inside one.
        var conditional: Bool
    }

    struct Config {
        var files: [String: LineFile] = [:]
        var order: [String] = []
        var entries: [Entry] = []
        /// Index of the first `Match` line in the main file, if any.
        var firstMatch: Int?
        /// Folders `Include` patterns list: a file added there changes the configuration.
        var includeFolders: [String] = []
        /// Identities of every file and folder, taken before each was read (for the cache).
        var snapshot = FileSnapshot()
        /// Each file as the host names it (`/etc/ssh/sshd_config`), for messages.
        var hostPaths: [String: String] = [:]
        /// The files read, each marked by whether it was read inside a `Match` block: a file
        /// included both outside and inside one counts in both places, as sshd reads it.
        var visited: Set<String> = []

        /// The effective global value: the first occurrence outside `Match` blocks.
        /// An alias line (`ChallengeResponseAuthentication`) counts for its keyword, as in sshd.
        func effective(_ keyword: String) -> Entry? {
            let name = SSHDConfigDriver.settingName(keyword)
            return entries.first { !$0.conditional && SSHDConfigDriver.settingName($0.keyword) == name }
        }

        /// Every line that sets `keyword` (aliases counted), outside `Match` blocks or inside
        /// them, in the order sshd reads them.
        func lines(_ keyword: String, inMatch: Bool) -> [Entry] {
            let name = SSHDConfigDriver.settingName(keyword)
            return entries.filter { $0.conditional == inMatch && SSHDConfigDriver.settingName($0.keyword) == name }
        }

        /// Where `entry` is, as the host names it: `/etc/ssh/sshd_config line 12`.
        func location(_ entry: Entry) -> String {
            "\(hostPaths[entry.file] ?? entry.file) line \(entry.line + 1)"
        }
    }

    /// What sshd holds for `keyword`, as Bulwark compares it with `desired`: the global value
    /// (the first line outside `Match` blocks; for the lists that add up, every such line's
    /// names in order), nil where no line sets it; then, where a `Match` block sets it to
    /// anything but `desired`, what it sets and where: `no (a Match block sets yes at
    /// /etc/ssh/sshd_config line 12)`. Such a value is never in sync: sshd uses the block's value
    /// for the connections it matches.
    static func observed(_ keyword: String, desired: String, in config: Config) -> String? {
        guard let type = keywords[keyword] else { return nil }
        func value(_ entry: Entry) -> String { normalize(entry.value, type) ?? entry.value }
        let global = config.lines(keyword, inMatch: false)
        let held: String? = accumulating.contains(settingName(keyword))
            ? (global.isEmpty ? nil : global.map(value).joined(separator: " "))
            : global.first.map(value)
        let overrides = config.lines(keyword, inMatch: true).filter { value($0) != desired }
        guard !overrides.isEmpty else { return held }
        let shown = overrides.prefix(3).map { "\(value($0)) at \(config.location($0))" }.joined(separator: "; ")
            + (overrides.count > 3 ? "; and \(overrides.count - 3) more" : "")
        return "\(held ?? "not set") (\(overrides.count == 1 ? "a Match block sets" : "Match blocks set") \(shown))"
    }

    /// Why Bulwark will not make `changes` to `config`: a `Match` block sets one of their
    /// keywords to another value (sshd would go on using it for the connections it matches, and
    /// Bulwark does not change Match blocks), or a list that adds up has a line to comment out in
    /// a file under usr/ or lib/ (a package's file, which Bulwark does not edit). nil when none.
    static func refusal(_ changes: [PropertyDrift], in config: Config, root: HostRoot) -> HostError? {
        for change in changes {
            guard let type = keywords[change.property] else { continue }
            if let entry = config.lines(change.property, inMatch: true).first(where: { (normalize($0.value, type) ?? $0.value) != change.desired }) {
                return HostError("\(change.property) is set again in a Match block at \(config.location(entry)) "
                                 + "(\(normalize(entry.value, type) ?? entry.value)); Bulwark does not change Match blocks: "
                                 + "set it there to \(change.desired), or remove it from the block")
            }
            guard accumulating.contains(settingName(change.property)) else { continue }
            for entry in config.lines(change.property, inMatch: false).dropFirst() {
                let first = root.components(of: entry.file).first
                guard first == "usr" || first == "lib" else { continue }
                return HostError("\(change.property) is also set at \(config.location(entry)), and sshd adds up every "
                                 + "\(change.property) line; Bulwark does not edit files under /usr or /lib: remove the line there")
            }
        }
        return nil
    }

    /// How deep sshd follows `Include` (OpenSSH's `SERVCONF_MAX_DEPTH`): deeper, it refuses
    /// the configuration.
    static let includeDepth = 16

    /// Splits a config line into keyword, separator and value (nil for blank and comment lines,
    /// and for a line sshd skips), byte by byte as OpenSSH 9.2 reads it: trailing blanks and form
    /// feeds dropped, then the keyword taken by `strdelim`, and taken again when it came out
    /// empty. By `Character`, a blank followed by a combining mark was no blank, and a keyword
    /// sshd reads (`Include \u{301}x.conf`) was one it did not know.
    /// - A token ends at a blank (space, tab, CR), a `=` or a `"`. At a `"` the quote is dropped
    ///   and the token goes on to the next quote: `"PermitRootLogin"`, `P"ermitRootLogin"` and
    ///   `PermitRootLogin""` are all PermitRootLogin to sshd; read with their quotes they hid a
    ///   setting sshd obeys (and `Match""` a Match block). A quote left open skips the line.
    /// - An empty first token (`=PermitRootLogin yes`, `"" PermitRootLogin yes`) is passed over.
    /// - One `=` may separate keyword and value, with blanks on either side; a second `=` is
    ///   part of the value (`Include = =x` includes `=x`).
    /// `indent` is what comes before the keyword, `separator` what lies between its token (with
    /// any closing quote) and the value; a line rewritten from them is read by sshd alike.
    static func split(_ line: Substring) -> (indent: Substring, keyword: Substring, separator: Substring, value: Substring)? {
        let equals = UInt8(ascii: "="), quote = UInt8(ascii: "\"")
        func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") }
        var bytes = Array(LineFile.content(line).utf8)
        while let last = bytes.last, isBlank(last) || last == 12 { bytes.removeLast() }
        /// sshd's `strdelim` from `at`: the token, where it ends in the line (past a closing
        /// quote), and where the next one starts (nil: the line ended inside this one).
        func strdelim(_ at: Int) -> (token: [UInt8], end: Int, next: Int?)? {
            guard let stop = bytes[at...].firstIndex(where: { isBlank($0) || $0 == equals || $0 == quote }) else {
                return (Array(bytes[at...]), bytes.count, nil)
            }
            func skipBlanks(_ from: Int) -> Int { bytes[from...].firstIndex { !isBlank($0) } ?? bytes.count }
            if bytes[stop] == quote {
                guard let close = bytes[(stop + 1)...].firstIndex(of: quote) else { return nil }
                return (Array(bytes[at..<stop] + bytes[(stop + 1)..<close]), close + 1, skipBlanks(close + 1))
            }
            var next = skipBlanks(stop + 1)
            if bytes[stop] != equals, next < bytes.count, bytes[next] == equals { next = skipBlanks(next + 1) }
            return (Array(bytes[at..<stop]), stop, next)
        }
        var start = 0
        guard var found = strdelim(0) else { return nil }
        if found.token.isEmpty {
            guard let next = found.next, let again = strdelim(next) else { return nil }
            start = next
            found = again
        }
        guard let first = found.token.first, first != UInt8(ascii: "#") else { return nil }
        let valueStart = found.next ?? bytes.count
        func text(_ part: some Collection<UInt8>) -> Substring { Substring(decoding: part, as: UTF8.self) }
        return (text(bytes[..<start]), text(found.token), text(bytes[found.end..<valueStart]), text(bytes[valueStart...]))
    }

    /// The configuration as sshd reads it. Reused while no file or folder it came from changed
    /// (`ParseCache`); within a plan, as the plan first read it (`PlanReads`). Never while
    /// holding the target's lock: the configuration a fix is built from (and that the guard's
    /// probe judges there) is read afresh, each file from a still file (`settledRead`).
    func read(_ root: HostRoot) throws -> Config {
        let cacheable = !HostLock.isHeld(root)
        // Within a plan, as the plan first read it (`PlanReads`), without walking to it again.
        let plan = cacheable ? PlanReads.current : nil
        if let kept = plan?.sshdConfig(under: root.path) { return kept }
        let main = try root.resolve(Self.configPath)
        if cacheable, let cached = cache.lookup(main) { return plan?.keep(cached, under: root.path) ?? cached }
        var config = Config()
        config.snapshot.take(main)
        guard let lines = try FileIO.readLines(main, in: root) else { throw HostError("sshd configuration not found", path: main) }
        config.visited.insert(main)
        try read(file: main, lines: lines, root: root, depth: 0, inMatch: false, within: [], into: &config)
        if cacheable { cache.store(config, for: main, readAt: config.snapshot, unlessRecent: true) }
        return plan?.keep(config, under: root.path) ?? config
    }

    /// Reads `file`'s lines into `config`, following its `Include` lines in place. `inMatch`:
    /// the file is included inside a `Match` block, so every line of it is conditional (sshd
    /// reads it as part of the block); a `Match` block that starts in a file ends with it, as
    /// in sshd. `within`: the files whose `Include` lines led here, the main file first.
    ///
    /// A file that includes itself, directly or through others (a pattern matching the file it
    /// is written in), is refused: sshd reads it again each time, until it gives up ("Too many
    /// recursive configuration includes") and does not start. A NUL byte is refused too: sshd
    /// reads each line only up to it, and what follows on the line, its line feed with it, is
    /// lost, so the next line is joined to what came before the NUL (a comment swallowed the
    /// `PermitRootLogin` after it).
    private func read(file: String, lines: LineFile, root: HostRoot, depth: Int, inMatch: Bool, within: [String],
                      into config: inout Config) throws {
        guard depth <= Self.includeDepth else {
            throw HostError("Include nested more than \(Self.includeDepth) levels (sshd refuses to start)", path: file)
        }
        let shown = { (path: String) in root.hostPath(root.components(of: path)) }
        if config.files[file] == nil {
            config.files[file] = lines
            config.order.append(file)
            config.hostPaths[file] = root.hostPath(root.components(of: file))
        }
        var conditional = inMatch
        for (index, line) in lines.lines.enumerated() {
            guard !line.utf8.contains(0) else {
                throw HostError("line \(index + 1) has a NUL byte: sshd reads the line only up to it and joins the next line "
                                + "to what comes before it; Bulwark does not guess what sshd makes of that: remove it by hand",
                                path: file)
            }
            guard let parts = Self.split(line) else { continue }
            let keyword = parts.keyword.lowercased()
            if keyword == "match" {
                conditional = true
                if depth == 0 && config.firstMatch == nil { config.firstMatch = index }
                continue
            }
            if keyword == "include" {
                // Inside a Match block too: what the included file sets holds for the
                // connections the block matches (`Match all` + `Include`: every one).
                for pattern in try Self.includePatterns(parts.value) {
                    for included in try expand(String(pattern), root: root, config: &config) {
                        let chain = within + [file]
                        if chain.contains(included) {
                            let loop = (chain.drop { $0 != included } + [included]).map(shown).joined(separator: " -> ")
                            throw HostError("Include at line \(index + 1) makes a loop (\(loop)): sshd includes the files again "
                                            + "until it gives up and refuses to start (Too many recursive configuration includes)",
                                            path: file)
                        }
                        guard config.visited.insert(conditional ? "match\u{0}" + included : included).inserted else { continue }
                        let body: LineFile
                        if let known = config.files[included] {
                            body = known
                        } else {
                            config.snapshot.take(included)
                            guard let fresh = try FileIO.readLines(included, in: root) else { continue }
                            body = fresh
                        }
                        try read(file: included, lines: body, root: root, depth: depth + 1, inMatch: conditional,
                                 within: chain, into: &config)
                    }
                }
                continue
            }
            config.entries.append(Entry(file: file, line: index, keyword: String(parts.keyword),
                                        value: String(parts.value), conditional: conditional))
        }
    }

    /// An `Include` pattern's files under the root, sorted as sshd's glob sorts them.
    /// An `Include` line's patterns, read as sshd reads its arguments (OpenSSH's `argv_split`,
    /// byte by byte): split at spaces and tabs outside quotes, `"…"` and `'…'` quotes removed, `\`
    /// before a quote, a backslash or (outside quotes) a space taken literally, and a `#` that
    /// starts an argument ending the line. A quote left open is an error, as sshd says. A pattern
    /// with bytes that are not UTF-8 is refused: glob would match its bytes, and Bulwark's text
    /// carries them as other characters. The driver's read and the guard's probe both take the
    /// patterns from here: a probe that split them otherwise judged a candidate without a file
    /// the driver edits.
    static func includePatterns(_ value: Substring) throws -> [String] {
        // sshd drops the blanks C's isspace knows at the line's end (a form feed or a carriage
        // return kept would be part of the last pattern).
        let bytes = Array(value.trimmingCSpaces().utf8)
        func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        var patterns: [String] = []
        var index = 0
        while index < bytes.count {
            if isBlank(bytes[index]) { index += 1; continue }
            if bytes[index] == UInt8(ascii: "#") { break }
            var pattern: [UInt8] = []
            var quote: UInt8?
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\\"), index + 1 < bytes.count,
                   [UInt8(ascii: "'"), UInt8(ascii: "\""), UInt8(ascii: "\\")].contains(bytes[index + 1])
                    || (quote == nil && bytes[index + 1] == UInt8(ascii: " ")) {
                    pattern.append(bytes[index + 1])
                    index += 2
                    continue
                }
                if quote == nil, isBlank(byte) { break }
                if quote == nil, byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                    quote = byte
                } else if let open = quote, byte == open {
                    quote = nil
                } else {
                    pattern.append(byte)
                }
                index += 1
            }
            guard quote == nil else { throw HostError("Include has a quote that is never closed; sshd refuses the line") }
            guard !pattern.isEmpty else { throw HostError("Include has an empty argument; sshd refuses the line: \(value)") }
            let text = String(decoding: pattern, as: UTF8.self)
            guard !text.unicodeScalars.contains(where: { LineFile.escapes.contains($0.value) }) else {
                throw HostError("Include pattern has bytes that are not UTF-8, which Bulwark cannot match as sshd does: \(text)")
            }
            patterns.append(text)
        }
        return patterns
    }

    func expand(_ pattern: String, root: HostRoot, config: inout Config) throws -> [String] {
        // By bytes, as sshd and glob read the pattern (`PathText`).
        // The pattern names a path as the target sees it: taken below the root, never as a path
        // under the root's own path (`HostRoot.components` strips that from what it is given).
        let parts = PathText.components(PathText.isAbsolute(pattern) ? pattern : "etc/ssh/" + pattern)
        let relative = parts.joined(separator: "/")
        let folder = parts.dropLast().joined(separator: "/"), name = parts.last ?? ""
        // What glob(3) reads specially: wildcards, a class, and a backslash escaping the next
        // character. A name with any of them is matched by fnmatch (which reads them alike); a
        // folder with any is refused rather than taken literally.
        func isSpecial(_ byte: UInt8) -> Bool { [UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "["), UInt8(ascii: "\\")].contains(byte) }
        func hasWildcard(_ text: String) -> Bool { text.utf8.contains(where: isSpecial) }
        guard !folder.utf8.contains(where: isSpecial) else {
            throw HostError("Include patterns with wildcards, classes or escapes in folders are not supported: \(pattern)")
        }
        let directory = try root.resolve(folder)
        config.snapshot.take(directory)
        config.includeFolders.append(directory)
        guard !hasWildcard(name) else {
            // A name that is not UTF-8 matters where the pattern matches its raw bytes.
            let names = try FileIO.list(directory, in: root) { raw in
                (raw + [0]).withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { fnmatch(name, $0.baseAddress!, FNM_PERIOD) == 0 } }
            }
            // `list` gives them in byte order, as glob sorts them.
            return names.filter { fnmatch(name, $0, FNM_PERIOD) == 0 }
                .map { directory + "/" + $0 }
        }
        let path = try root.resolve(relative)
        config.snapshot.take(path)
        return try FileIO.exists(path, in: root) ? [path] : []
    }

    // MARK: - Driver

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let config = try read(try HostRoot(target: target))
        var values: [String: String?] = [:]
        for property in resource.spec.properties {
            values[property.name] = .some(Self.observed(property.name, desired: property.value, in: config))
        }
        // A drift the guard will judge: what its first probe needs is made now, while the other
        // targets are read, not in front of that probe once every target has been.
        if validator.executable != nil, Self.guardWillProbe(resource, observed: values) {
            SSHDGuardWarmUp.start()
        }
        return Observation(values: values)
    }

    /// Whether a plan will ask sshd about this resource as observed: one of its settings drifted
    /// and is one the guard judges by probing (`mayLockOut`).
    static func guardWillProbe(_ resource: Resource, observed values: [String: String?]) -> Bool {
        resource.spec.properties.contains { property in
            mayLockOut(property.name, desired: property.value) && values[property.name] != .some(property.value)
        }
    }

    /// The configuration after `changes`, exactly as `apply` writes it, and the files that
    /// changed. Pure: nothing is read or written, so a guard can judge the same text.
    /// A list that adds up (`accumulating`) is left on one line: the first, set to the desired
    /// value, with every other line outside `Match` blocks commented out.
    static func candidate(_ changes: [PropertyDrift], from config: Config) -> (config: Config, edited: Set<String>) {
        var config = config
        guard let main = config.order.first, config.files[main] != nil else { return (config, []) }
        var edited: Set<String> = []
        var additions: [String] = []
        for change in changes {
            let lines = config.lines(change.property, inMatch: false)
            if let entry = lines.first, var file = config.files[entry.file], let parts = Self.split(file.lines[entry.line]) {
                let ending = LineFile.ending(file.lines[entry.line])
                let fixed = Substring("\(parts.indent)\(parts.keyword)\(parts.separator.isEmpty ? " " : parts.separator)\(change.desired)\(ending)")
                // A list's first line may hold the desired names already; only the others change.
                if fixed != file.lines[entry.line] {
                    file.lines[entry.line] = fixed
                    config.files[entry.file] = file
                    edited.insert(entry.file)
                }
                guard accumulating.contains(settingName(change.property)) else { continue }
                // The note names no file: a file's name could hold a line break.
                for other in lines.dropFirst() {
                    guard var file = config.files[other.file] else { continue }
                    let line = file.lines[other.line]
                    file.lines[other.line] = Substring("# bulwark: sshd adds up every \(change.property) line; Bulwark keeps the first: "
                                                       + "\(LineFile.content(line))\(LineFile.ending(line))")
                    config.files[other.file] = file
                    edited.insert(other.file)
                }
            } else {
                additions.append("\(change.property) \(change.desired)")
            }
        }
        if !additions.isEmpty, var mainFile = config.files[main] {
            // Keywords Bulwark adds gather in one marked block before the first Match.
            let end = config.firstMatch ?? mainFile.lines.count
            if let marker = mainFile.lines[..<end].firstIndex(where: { LineFile.content($0) == Self.marker }) {
                var index = marker + 1
                while index < end, Self.split(mainFile.lines[index]) != nil { index += 1 }
                for (offset, line) in additions.enumerated() { mainFile.insert(line, at: index + offset) }
            } else if let firstMatch = config.firstMatch {
                for (offset, line) in ([Self.marker] + additions + [""]).enumerated() {
                    mainFile.insert(line, at: firstMatch + offset)
                }
            } else {
                ([Self.marker] + additions).forEach { mainFile.append($0) }
            }
            config.files[main] = mainFile
            edited.insert(main)
        }
        return (config, edited)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let root = try HostRoot(target: target)
        let approved = ApplyContext.approvedBlock
        let found = try await root.applying { try applyOnce(changes, root: root, approved: approved) }
        try AlreadyInSync.unless(changes, found: found)
    }

    /// One attempt: read, leave out the changes the file already holds (another writer made
    /// them since the plan observed the drift), refuse the ones Bulwark will not make (`refusal`:
    /// a Match block sets the keyword otherwise; nothing is written), ask the guard again (the plan judged accounts
    /// and keys another writer may have changed since; a block refuses the write unless it is
    /// the one a person approved past, `approved`), build the candidate, check it whole, write
    /// (a file another writer changed since the read throws a conflict, and `applying` reads and
    /// plans again). Returns the properties found already as desired.
    func applyOnce(_ changes: [PropertyDrift], root: HostRoot, approved: String? = nil) throws -> Set<String> {
        let current = try read(root)
        var found: Set<String> = []
        for change in changes where Self.observed(change.property, desired: change.desired, in: current) == change.desired {
            found.insert(change.property)
        }
        let remaining = changes.filter { !found.contains($0.property) }
        // Before the guard is asked: a fix Bulwark will not make is no lockout to judge.
        if let refusal = Self.refusal(remaining, in: current, root: root) { throw refusal }
        if !remaining.isEmpty {
            // As `assess` judges: a probe that fails is a block (which a person may have approved).
            try HostError.refuseAtTheWrite(judging("sshd") { try judge(remaining, root: root, alongside: []) }, approved: approved)
        }
        let (config, edited) = Self.candidate(remaining, from: current)
        guard !edited.isEmpty else { return found }
        // The whole candidate, its Includes resolved inside the root, is checked by sshd before
        // any file is replaced: an included file that breaks the main one is never written.
        var checkedWhole = false
        if let executable = validator.executable {
            let probe = try SSHDProbe(executable: executable, config: config, root: root, driver: self)
            defer { probe.remove() }
            try probe.check()
            checkedWhole = true
        }
        HostFaults.sshdFix(at: "checked")
        // Included files first, the main file last.
        for file in config.order.reversed() where edited.contains(file) {
            guard let content = config.files[file] else { continue }
            try FileIO.write(content, to: file, in: root, newFileMode: 0o600) { candidate in
                try validator.validate(candidate, checkedWhole: checkedWhole)
            }
        }
        HostFaults.sshdFix(at: "written")
        return found
    }
}

/// Runs `sshd -t -f FILE` on a candidate configuration.
public struct SSHDValidator: Sendable {
    /// The sshd binary, or nil to skip the check (sshd not installed).
    public var executable: String?
    /// What checks the exact bytes about to be renamed into place (`-t -f /proc/PID/fd/N`),
    /// after the whole candidate passed the guard's probe; `executable` unless set.
    public var candidateCheck: String?

    public init(executable: String?, candidateCheck: String? = nil) {
        self.executable = executable
        self.candidateCheck = candidateCheck
    }

    /// sshd from the usual places, when installed.
    public static var system: SSHDValidator {
        SSHDValidator(executable: ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        })
    }

    /// Throws when sshd rejects the file. sshd parses the whole file before it looks for its
    /// privilege-separation folder, so "Missing privilege separation directory" (a machine
    /// where sshd never ran, such as a container) means the syntax was accepted.
    ///
    /// `checkedWhole`: these bytes are the main file of a candidate `sshd -t` already accepted
    /// whole (`SSHDProbe.check`: the same text, with the root's own included files, which a
    /// check of this one file cannot see; it would follow `Include` to the machine's /etc). Then
    /// sshd is not run again: one process per file written was 100 of the 139 sshd runs of a
    /// 100-host fix pass. A `candidateCheck` set by the caller always runs.
    ///
    /// The time between Bulwark's read and its rename is no defence against a writer that
    /// rewrites the file in place (truncate, then write): the read a fix is built from is a
    /// settled one (`FileIO.settledRead`), and the file's identity is compared before the rename.
    public func validate(_ path: String, checkedWhole: Bool = false) throws {
        if checkedWhole && candidateCheck == nil { return }
        guard let executable = candidateCheck ?? executable else { return }
        try check(path, with: executable)
    }

    private func check(_ path: String, with executable: String) throws {
        // Through the one bounded runner: an sshd that hangs must not hang the apply.
        let counter = SSHDProbeCounter.current
        counter?.started()
        defer { counter?.ended() }
        let outcome: BoundedProcess.Outcome
        do {
            outcome = try BoundedProcess.Command(executable: executable, arguments: ["-t", "-f", path],
                                                 timeout: .seconds(SSHDProbe.timeout), keep: .head).runBlocking()
        } catch {
            throw HostError(error.description)
        }
        guard outcome.timedOut || outcome.status != 0 else { return }
        guard !outcome.timedOut else { throw HostError("sshd -t did not finish within \(Int(SSHDProbe.timeout)) s") }
        let message = SSHDProbe.messageLines(outcome.output)
        if !message.contains("; "), message.hasPrefix("Missing privilege separation directory") { return }
        throw HostError("sshd -t rejected the candidate configuration: " + message.replacingOccurrences(of: path, with: "<candidate>"))
    }
}
