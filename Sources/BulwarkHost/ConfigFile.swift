internal import Foundation
internal import BulwarkCore
internal import CLinux
internal import Synchronization

/// `ConfigFile`: values in a structured configuration file (YAML or JSON) under the root, such
/// as an AI gateway's `config.yaml`.
///
/// ```yaml
/// spec:
///   path: etc/litellm/config.yaml
///   format: yaml                      # or json; by default from the file name
///   properties:
///     general_settings.master_key: os.environ/LITELLM_MASTER_KEY
///     model_list[*].litellm_params.guardrails: [pii-mask, prompt-injection]
///   validate: [/usr/bin/python3, -c, "import sys, yaml; yaml.safe_load(open(sys.argv[1]))", "{file}"]
///   reload: [/usr/bin/systemctl, restart, litellm]
///   timeoutSeconds: 60
/// ```
///
/// Properties are addressed by `ConfigPath`; values are any YAML value, compared typed
/// (`ConfigValue`). The file is edited in place (`ConfigDocument`): unmanaged keys, comments and
/// formatting stay as they were. It is written atomically through `FileIO` under the target's
/// lock, with its owner and mode kept; `validate` runs on the candidate (`{file}` names it) before
/// the rename and a failure leaves the file untouched; the file is read back after the rename,
/// then `reload` runs. A reload is owed from the rename until its command succeeds, kept by the
/// file, the command and the resource (`OwedReloads`): until then each resource of the file
/// with that command, or that asked for it, drifts on `[reload of ConfigFile/NAME]` (owed →
/// done), so a reload that failed, timed out or was cut short by a kill is run again by the next
/// pass, even though the file already holds its values, and a resource renamed meanwhile, or
/// given another command, still owes it. A file that does not exist is not created, and its
/// observation fails: the values it should hold (a gateway's guardrails) are not in place, and
/// nothing can tell what a file put back later will hold.
struct ConfigFileDriver: ResourceDriver {
    /// The file's rename, and a reload owed from before, pass `ChangeGate.current` first: a fix
    /// is marked tried after its validation command, not before.
    var announcesChanges: Bool { true }

    /// What a resource says about its file besides the properties, carried in the spec as one
    /// property that is never observed (so never drifts): `ResourceSpec` holds only properties.
    struct Options: Sendable, Hashable, Codable {
        var path: String
        var format: ConfigDocument.Format.RawValue
        var validate: [String]?
        var reload: [String]?
        var timeoutSeconds: Int
    }

    static let optionsPrefix = "[options of "

    static func options(_ resource: Resource) throws(HostError) -> Options {
        guard let property = resource.spec.properties.first(where: { $0.name.hasPrefix(optionsPrefix) }),
              let options = try? JSONDecoder().decode(Options.self, from: Data(property.value.utf8)) else {
            throw HostError("ConfigFile \(resource.id.name) has no file options")
        }
        return options
    }

    /// A resource with a reload command has one more property, `[reload of ConfigFile/NAME]`:
    /// desired `done`, observed `owed (…)` while its file was written and its reload command has
    /// not completed since (`OwedReloads`), so that the plan shows it and the next apply runs it.
    static let reloadPrefix = "[reload of "
    static let reloadDone = "done"
    static let reloadOwedReason = "the file was written but its reload did not complete"
    static let reloadOwed = "owed (\(reloadOwedReason))"

    /// The resource's `[reload of ConfigFile/NAME]` property; nil for one without a reload command.
    static func reloadProperty(_ resource: Resource) -> String? {
        resource.spec.properties.first { $0.name.hasPrefix(reloadPrefix) }?.name
    }

    /// The resource a `[reload of ConfigFile/NAME]` property is of (`ConfigFile/NAME`), as
    /// `OwedReloads` keeps who asked for a reload.
    static func reloadOwner(_ property: String) -> String {
        String(property.dropFirst(reloadPrefix.count).dropLast())
    }

    /// The reloads `file` is owed on `root` (`OwedReloads.owed`), with those no resource of the
    /// file in the policy (`PolicyScope`) asks for any more marked orphaned: every resource of
    /// the file with a reload command owes them. Without a policy, none is. (A fix reads it
    /// on a thread of its own, under the target's lock, where no task-local is: its caller
    /// passes the policy it found in scope.)
    static func owedReloads(_ file: String, in root: HostRoot, policy: DesiredState? = PolicyScope.current) throws(HostError) -> OwedReloads.Owed {
        let owed = try OwedReloads.owed(file, in: root)
        guard !owed.reloads.isEmpty, let policy else { return owed }
        var claimed: [OwedReloads.Reload] = []
        for resource in policy.resources.values where resource.id.kind == "ConfigFile" && resource.spec.subject == file {
            guard let reload = reloadProperty(resource), let argv = (try? options(resource))?.reload else { continue }
            claimed.append(OwedReloads.Reload(command: OwedReloads.key(argv), resource: reloadOwner(reload)))
        }
        return owed.adoptingOrphans { owed in claimed.contains { $0.command == owed.command || $0.resource == owed.resource } }
    }

    /// The managed properties (without the options and the reload).
    static func managed(_ resource: Resource) -> [DesiredProperty] {
        resource.spec.properties.filter { !$0.name.hasPrefix(optionsPrefix) && !$0.name.hasPrefix(reloadPrefix) }
    }

    func watchedPaths(_ resource: Resource, on target: Target) -> [String] {
        HostAdapter.paths(target, [resource.spec.subject])
    }

    /// Keys whose values are credentials: shown redacted, and (see `assess`) only ever written
    /// as a reference to the environment. Bulwark's one notion of a name that names a secret
    /// (`Redaction.secretName`, read as words however the key is spelt: `encryptionKey`,
    /// `encryption_key`, `signing-key`, `db_pwd`, `dbPwd`, `headers.pass`, `userPin`,
    /// `session_cookie`), and besides, for a key, the names that hold `token`, `credential` or
    /// `authorization` anywhere, and the whole keys `key(s)`, `auth`, `session`, `sessionid`,
    /// `session_id`: as whole words, so that `passthrough`, `pass_through_endpoints`, `author`,
    /// `auth_type` or `custom_auth` (a module's name) stay readable.
    static func isSecretKey(_ key: String) -> Bool {
        let lower = key.lowercased()
        return Redaction.secretName(key) || ["token", "credential", "authorization"].contains(where: lower.contains)
            || ["key", "keys", "auth", "session", "sessionid", "session_id", "session-id"].contains(lower)
    }

    /// Whether a string value is a credential by its shape, whatever key holds it: an HTTP
    /// authorization (`Bearer <token>`, `Basic <base64>`, anywhere in the value: `Authorization:
    /// Bearer …`), a well-known token (`Redaction.looksLikeCredential`), or anything the
    /// redaction of command output hides (`Redaction.words`: `password=…`, `--token …`, a token
    /// in brackets) besides a URL's credentials, which `redactedURLPasswords` hides in place.
    static func isCredentialValue(_ text: String) -> Bool {
        if Redaction.looksLikeCredential(text) || Redaction.words(in: text) != Redaction.urls(in: text) { return true }
        let words = text.split(whereSeparator: { $0.isWhitespace || $0 == "\"" || $0 == "'" || $0 == "," })
        for (scheme, next) in zip(words, words.dropFirst()) {
            switch scheme.lowercased() {
            case "bearer":
                if next.allSatisfy(isToken68) { return true }
            case "basic":
                if next.count >= 4, next.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+/=".contains($0)) }) { return true }
            default:
                continue
            }
        }
        return false
    }

    /// A character of an HTTP authorization's token (RFC 9110 `token68`).
    static func isToken68(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || "-._~+/=".contains(c))
    }

    /// Keys of a connection URL or string, which carries a password in its user part
    /// (`database_url: postgresql://u:pass@h/db`, `redis_url`, `dsn`).
    static func isConnectionKey(_ key: String) -> Bool {
        let key = key.lowercased()
        return key.hasSuffix("_url") || key.hasSuffix("-url") || key.hasSuffix("_uri") || key.hasSuffix("-uri") || key == "url"
            || key == "uri" || key.hasSuffix("dsn") || key.contains("conninfo") || key.contains("connection_string")
    }

    /// Keys that hold the value of a list element a name picks (`env[name=OPENAI_API_KEY].value`).
    static let valueKeys: Set<String> = ["value", "val", "secret_value"]

    /// What kind of secret the value at `path` is or may carry, and so is never shown: a
    /// credential where its last key names one (`master_key`, `api_keys`), a connection where it
    /// names a connection URL (`database_url`); the same for the value of a list element whose
    /// name names one (`env[name=OPENAI_API_KEY].value`). Nil for any other value.
    enum Secrecy { case credential, connection }

    static func secrecy(_ path: ConfigPath) -> Secrecy? {
        guard let key = path.leafKey else { return nil }
        func named(_ name: String) -> Secrecy? { isSecretKey(name) ? .credential : isConnectionKey(name) ? .connection : nil }
        if let found = named(key) { return found }
        guard valueKeys.contains(key.lowercased()) else { return nil }
        for case .match(_, let value) in path.steps.reversed() { if let found = named(value) { return found } }
        return nil
    }

    /// A password written in a URL, whatever its key: in its user part
    /// (`scheme://user:password@host`) or a parameter (`?password=…`, `;password=…` as libpq and
    /// JDBC read them, or any parameter a credential's name names: `key=`, `token=`).
    static func passwordInURL(_ value: ConfigValue) -> Bool {
        switch value {
        case .string(let s): scanURLs(s).password
        case .list(let items): items.contains(where: passwordInURL)
        case .map(let map): map.values.contains(where: passwordInURL)
        default: false
        }
    }

    /// `text` with what a URL in it may carry of a credential written `[redacted]`: for
    /// observed values, which may hold a URL under any key (`api_base`, `http_proxy`), so that
    /// none reaches a plan or a record. See `scanURLs`.
    static func redactedURLPasswords(_ text: String) -> String { scanURLs(text).text }

    /// Every URL in `text` (from each `://` to the next blank or unescaped quote, so that a
    /// `,`, `/` or `#` in a password does not end it): all of its user part (up to its last
    /// `@`: a password, or a token given as the user) and the value of each parameter whose
    /// name, percent-decoded, is a password's or a credential's (after `?`, `&`, `;` or `#`),
    /// written `[redacted]`. `password` says whether a password was there: a user part with a
    /// `:`, or such a parameter.
    static func scanURLs(_ text: String) -> (text: String, password: Bool) {
        guard text.contains("://") else { return (text, false) }
        var bytes = Array(text.utf8)
        var password = false
        var index = 0
        func isEnd(_ byte: UInt8) -> Bool { isCSpace(byte) || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") }
        while index + 3 <= bytes.count {
            guard bytes[index] == UInt8(ascii: ":"), bytes[index + 1] == UInt8(ascii: "/"), bytes[index + 2] == UInt8(ascii: "/") else {
                index += 1
                continue
            }
            let start = index + 3
            // A backslash escapes what follows (a quote inside a JSON string is part of the URL).
            var end = start
            while end < bytes.count, !isEnd(bytes[end]) { end = bytes[end] == UInt8(ascii: "\\") ? min(end + 2, bytes.count) : end + 1 }
            var token = Array(bytes[start..<end])
            if let at = token.lastIndex(of: UInt8(ascii: "@")), at > 0 {
                if token[..<at].contains(UInt8(ascii: ":")) { password = true }
                token.replaceSubrange(0..<at, with: Array("[redacted]".utf8))
            }
            var position = 0
            while position < token.count {
                guard [UInt8(ascii: "?"), UInt8(ascii: "&"), UInt8(ascii: ";"), UInt8(ascii: "#")].contains(token[position]) else {
                    position += 1
                    continue
                }
                let nameStart = position + 1
                guard let equals = token[nameStart...].firstIndex(where: { $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: ";") }),
                      token[equals] == UInt8(ascii: "=") else { position += 1; continue }
                let name = String(decoding: token[nameStart..<equals], as: UTF8.self)
                let decoded = (name.removingPercentEncoding ?? name).lowercased()
                let valueEnd = token[(equals + 1)...].firstIndex { [UInt8(ascii: "&"), UInt8(ascii: ";"), UInt8(ascii: "#")].contains($0) } ?? token.count
                if passwordParameters.contains(decoded) || isSecretKey(decoded) || decoded == "sig" || decoded == "signature" {
                    password = true
                    token.replaceSubrange((equals + 1)..<valueEnd, with: Array("[redacted]".utf8))
                }
                position = equals + 1
            }
            bytes.replaceSubrange(start..<end, with: token)
            index = start + token.count
        }
        return (String(decoding: bytes, as: UTF8.self), password)
    }

    /// Query parameters that carry a password (libpq, JDBC and most drivers).
    static let passwordParameters = ["password", "passwd", "pwd", "pass"]

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["path", "format", "properties", "validate", "reload", "timeoutSeconds"])
        guard let pathReader = spec.field("path", required: true), let text = pathReader.string() else { return nil }
        // By bytes, as the kernel reads the path (see `PathText`).
        let parts = Substring(text).splitBytes(at: "/").drop(while: { $0.isEmpty && PathText.isAbsolute(text) })
        guard !text.isEmpty, LineSafety.problem(text) == nil, text.utf8.count <= 1024,
              !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            pathReader.fail("expected a file path inside the target root without '.', '..' or '//', such as etc/litellm/config.yaml, got '\(text)'")
            return nil
        }
        let path = "/" + parts.joined(separator: "/")
        var format = path.lowercased().hasSuffix(".json") ? "json" : "yaml"
        if let reader = spec.field("format") {
            guard let value = reader.oneOf(["yaml", "json"]) else { return nil }
            format = value
        }
        var commands: [String: [String]] = [:]
        for key in ["validate", "reload"] {
            guard let reader = spec.field(key) else { continue }
            guard let argv = reader.strings() else { return nil }
            guard let first = argv.first, first.hasPrefix("/"), argv.count <= 64,
                  argv.allSatisfy({ $0.utf8.count <= 4096 && !$0.contains("\0") }) else {
                reader.fail("expected a command as a list: an absolute executable path, then its arguments ({file} names the candidate)")
                return nil
            }
            commands[key] = argv
        }
        var timeout = 60
        if let reader = spec.field("timeoutSeconds") {
            guard let value = reader.int(in: 1...600) else { return nil }
            timeout = value
        }
        guard let propertiesReader = spec.field("properties", required: true),
              let entries = propertiesReader.entries() else { return nil }
        guard !entries.isEmpty, entries.count <= 1000 else {
            propertiesReader.fail("expected 1 to 1000 properties")
            return nil
        }
        var properties: [DesiredProperty] = []
        var placed: [(key: String, value: String, line: Int)] = []
        var ok = true
        for (key, reader) in entries {
            switch ConfigPath.parse(key) {
            case .failure(let error):
                reader.fail("'\(key)' is not a property path (\(error.message)); write keys.separated.by.dots, list[0], list[*] or list[key=value]")
                ok = false
            case .success(let path):
                if let disputed = Self.disputedScalar(reader.node, json: format == "json") {
                    reader.fail("'\(disputed.text)' (line \(disputed.line)) \(disputed.why); write the value so that both read it alike: quote a string, "
                                + "write a number as 100 or 1.0e+2")
                    ok = false
                    continue
                }
                let value = ConfigValue(reader.node)
                if let inner = Self.guardedKeyInside(value) {
                    reader.fail("'\(key)' sets \(inner) inside a mapping; set it by its own path ('\(key).\(inner)'), so that the "
                                + "safety guard and the second-person rule compare it with what it was")
                    ok = false
                    continue
                }
                let canonical = value.canonical
                guard canonical.utf8.count <= 64 << 10 else {
                    reader.fail("value longer than 64 KiB")
                    ok = false
                    continue
                }
                // A credential's value is never shown (a literal one found in the file included).
                // Nor is a whole mapping's: what the file holds there may carry keys the policy does
                // not name (a literal master_key inside general_settings).
                var credential = secrecy(path) != nil
                if case .bool = value { credential = false }
                if passwordInURL(value) { credential = true }
                if value.holdsMapping { credential = true }
                // A reference to the environment stands for a credential, whatever the key's name
                // (`environment_variables.GITHUB_PAT: os.environ/GITHUB_PAT`): the literal the file
                // holds there before the fix is one, and must not reach a plan or a record.
                if Self.holdsEnvironmentReference(value) { credential = true }
                // A value that is a credential by its shape (`Bearer …`), or holds one under a key
                // that names one, whatever the path's own key.
                if Self.redactedSecrets(value) != value { credential = true }
                // Two paths of this resource that surely name one value, or one a part of the
                // other's, and want it different (`headers.pass: z` with `headers: {a: b}`): as
                // between two resources (`ConfigFileWeakening.conflicts`), each write would leave
                // one of them not as desired.
                if let other = placed.first(where: { ConfigFileWeakening.conflicts(key, canonical, $0.key, $0.value) }) {
                    reader.fail("'\(quotedForMessage(key))' and '\(quotedForMessage(other.key))' (line \(other.line)) name the same value "
                                + "and want it different; set it by one path")
                    ok = false
                    continue
                }
                placed.append((key, canonical, reader.node.line))
                properties.append(DesiredProperty(key, canonical, sensitive: credential))
            }
        }
        guard ok else { return nil }
        let options = Options(path: path, format: format, validate: commands["validate"], reload: commands["reload"],
                              timeoutSeconds: timeout)
        // Keys sorted: the same spec reads as the same value on every load (equal resources compare
        // equal, so `accept` and the proposal engine see only what changed).
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let encoded = try? encoder.encode(options) else { return nil }
        let name = spec.resource ?? path
        if options.reload != nil { properties.append(DesiredProperty(reloadPrefix + name + "]", reloadDone)) }
        // Sensitive: its commands' words may carry a credential (a header, a token). Where a
        // command changes, the hold shows it with such words redacted (`ConfigFileWeakening`).
        properties.append(DesiredProperty(optionsPrefix + name + "]", String(decoding: encoded, as: UTF8.self), sensitive: true))
        return ResourceSpec(subject: path, properties: properties)
    }

    /// The first plain scalar in a policy's value that the file's reader would type otherwise
    /// than the policy's author may mean, with its line and why: a JSON number that PyYAML
    /// (YAML 1.1, what LiteLLM reads with) reads as a string (`1e2`, `6.0e2`: its float needs a
    /// dot and a signed exponent); a leading-zero octal (`017` is 15) or a sexagesimal (`1:30` is
    /// 90) that only YAML 1.1 reads as a number; and for a JSON file, a number JSON cannot hold
    /// (`1_000`, `0x1F`, `.5`).
    static func disputedScalar(_ node: YAMLNode, json: Bool) -> (text: String, line: Int, why: String)? {
        switch node.value {
        case .scalar(let text):
            guard node.isPlain else { return nil }
            if PlainScalar.isJSONNumber(text), !PlainScalar.isNumber(text) {
                return (text, node.line, "is a number to JSON and YAML 1.2 but a string to PyYAML, which the file is read with")
            }
            guard PlainScalar.isNumber(text) else { return nil }
            var digits = Substring(text)
            if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
            if digits.count > 1, digits.first == "0", digits.allSatisfy({ $0.isNumber || $0 == "_" }) {
                return (text, node.line, "is an octal number to PyYAML (YAML 1.1) but a decimal one to YAML 1.2")
            }
            if text.contains(":") {
                return (text, node.line, "is a base-60 number to PyYAML (YAML 1.1) but a string to YAML 1.2")
            }
            if json, !PlainScalar.isJSONNumber(text) {
                return (text, node.line, "is a number to YAML but not one JSON can hold, and the file is JSON")
            }
            return nil
        case .sequence(let items):
            return items.lazy.compactMap { disputedScalar($0, json: json) }.first
        case .mapping(let pairs):
            return pairs.lazy.compactMap { disputedScalar($0.value, json: json) }.first
        }
    }

    // MARK: - Observing

    static func read(_ options: Options, root: HostRoot) throws -> (LineFile, ConfigDocument)? {
        guard let read = try FileIO.read(options.path, in: root) else { return nil }
        // A file with another name is that file too: a hard link to etc/shadow would be read
        // (its hashes in the record), and its copy with the values written put where the link was.
        guard read.links <= 1 else {
            throw HostError("has \(read.links) hard links, and its content is that of every other name it has "
                            + "(a link to etc/shadow, say); not managed: remove the other links", path: read.path)
        }
        let file = try LineFile(bytes: read.bytes, origin: read.identity, path: read.path)
        guard !file.escaped else { throw HostError("is not UTF-8; not managed", path: root.full(root.components(of: options.path))) }
        do {
            return (file, try ConfigDocument(text: file.text, format: ConfigDocument.Format(rawValue: options.format) ?? .yaml))
        } catch {
            throw HostError(error.message, path: root.full(root.components(of: options.path)))
        }
    }

    /// A property's observed value: nil when missing; the first value that differs from
    /// `desired` where a path names several; left out (not applicable) where it names none.
    static func observed(_ property: DesiredProperty, in document: ConfigDocument) -> String?? {
        guard case .success(let path) = ConfigPath.parse(property.name) else { return .some(nil) }
        let values = document.values(path)
        guard !values.isEmpty else { return .none }
        // A URL's password in the file, under whatever key, is never shown (`redactedURLPasswords`),
        // nor a credential inside a mapping or list the path names (`redactedSecrets`): what is
        // hidden must not depend on the policy's path or value alone.
        for value in values where value?.canonical != property.value {
            return .some(value.map { value in
                holdsSecret(value, at: path) ? ConfigValue.string("[redacted]").canonical : redactedURLPasswords(redactedSecrets(value).canonical)
            })
        }
        return .some(property.value)
    }

    /// Whether `value`, found at `path`, is a credential: under a key that names one (a switch,
    /// null and empty aside), or a string that is one by its shape (`isCredentialValue`). Its
    /// property is then sensitive whatever the policy's value (`Observation.sensitive`). What a
    /// list or a mapping holds of one, or a URL of a password, is redacted in place instead
    /// (`redactedSecrets`, `redactedURLPasswords`), so the rest stays readable.
    static func holdsSecret(_ value: ConfigValue, at path: ConfigPath) -> Bool {
        if secrecy(path) == .credential, !isUnsecret(value) { return true }
        if case .string(let text) = value { return isCredentialValue(text) }
        return false
    }

    /// The managed properties of `resource` whose value in `document` holds a credential
    /// (`holdsSecret`).
    static func sensitive(_ resource: Resource, in document: ConfigDocument) -> Set<String> {
        var found: Set<String> = []
        for property in managed(resource) {
            guard case .success(let path) = ConfigPath.parse(property.name) else { continue }
            if document.values(path).contains(where: { $0.map { holdsSecret($0, at: path) } ?? false }) { found.insert(property.name) }
        }
        return found
    }

    /// `value` with what it holds of a credential or a connection written `[redacted]`: the value
    /// of every key that names one, at any depth (a switch, null and empty are kept: they say
    /// nothing secret), and a list element's `value` picked by a name that names one
    /// (`{name: OPENAI_API_KEY, value: sk-…}`), and any string that is a credential by its shape
    /// (`isCredentialValue`: `Bearer …`, `ghp_…`, `AKIA…`). Any other scalar is returned as it is.
    static func redactedSecrets(_ value: ConfigValue) -> ConfigValue {
        switch value {
        case .list(let items):
            return .list(items.map(redactedSecrets))
        case .map(let map):
            let named = map.values.contains { if case .string(let s) = $0 { isSecretKey(s) || isConnectionKey(s) } else { false } }
            var result: [String: ConfigValue] = [:]
            for (key, inner) in map {
                let secret = isSecretKey(key) || isConnectionKey(key) || (named && valueKeys.contains(key.lowercased()))
                result[key] = secret && !isUnsecret(inner) ? .string("[redacted]") : redactedSecrets(inner)
            }
            return .map(result)
        case .string(let text) where isCredentialValue(text):
            return .string("[redacted]")
        default:
            return value
        }
    }

    /// A value that holds nothing secret wherever it is: a switch, null, an empty string.
    static func isUnsecret(_ value: ConfigValue) -> Bool {
        switch value {
        case .null, .bool: true
        case .string(let s): s.isEmpty
        default: false
        }
    }

    /// The credentials `value` holds, as key paths below it (`master_key`,
    /// `model_list[].litellm_params.api_key`): each key that names a credential with a value that
    /// is not null, empty or a switch.
    static func credentialPaths(_ value: ConfigValue, prefix: String = "") -> Set<String> {
        switch value {
        case .list(let items):
            return items.reduce(into: []) { $0.formUnion(credentialPaths($1, prefix: prefix + "[]")) }
        case .map(let map):
            var found: Set<String> = []
            for (key, inner) in map {
                let path = prefix.isEmpty ? key : prefix + "." + key
                if isSecretKey(key), !isUnsecret(inner) { found.insert(path) }
                found.formUnion(credentialPaths(inner, prefix: path))
            }
            return found
        default:
            return []
        }
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let root = try HostRoot(target: target)
        let options = try Self.options(resource)
        // A missing file is not "in sync": read so, a weakening held for a second person was
        // taken as reached while the file was away, and applied once it was put back.
        guard let (_, document) = try Self.read(options, root: root) else {
            let path = root.full(root.components(of: options.path))
            var info = stat()
            // For the message only: what is there instead of a file (a link is never followed).
            if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
                throw HostError("is a symbolic link, which Bulwark does not follow, so none of its managed values can be read; "
                                + "manage the file it points to", path: path)
            }
            throw HostError("does not exist, so none of its managed values are in place; Bulwark edits a configuration file, "
                            + "it does not create one", path: path)
        }
        var values: [String: String?] = [:]
        for property in Self.managed(resource) {
            if let observed = Self.observed(property, in: document) { values[property.name] = .some(observed) }
        }
        var owed: [String: String] = [:]
        if let reload = Self.reloadProperty(resource), let argv = options.reload {
            let pending = try Self.owedReloads(options.path, in: root).contains(command: OwedReloads.key(argv), resource: Self.reloadOwner(reload))
            values[reload] = .some(pending ? Self.reloadOwed : Self.reloadDone)
            if pending { owed[reload] = Self.reloadOwedReason }
        }
        return Observation(values: values, owed: owed, sensitive: Self.sensitive(resource, in: document))
    }

    // MARK: - Applying

    /// One resource of a write: its changes, its file's options, and its
    /// `[reload of ConfigFile/NAME]` property when it has a reload command.
    struct Part: Sendable {
        var changes: [PropertyDrift]
        var options: Options
        var reload: String?

        /// Its reload as `OwedReloads` keeps it; nil without one.
        var owedReload: OwedReloads.Reload? {
            guard let reload, let argv = options.reload else { return nil }
            return OwedReloads.Reload(command: OwedReloads.key(argv), resource: ConfigFileDriver.reloadOwner(reload))
        }

        /// Whether its reload is owed in `owed`.
        func owes(in owed: OwedReloads.Owed) -> Bool {
            owedReload.map { owed.contains(command: $0.command, resource: $0.resource) } ?? false
        }
    }

    static func part(_ changes: [PropertyDrift], of resource: Resource) throws(HostError) -> Part {
        Part(changes: changes, options: try options(resource), reload: reloadProperty(resource))
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let root = try HostRoot(target: target)
        let part = try Self.part(changes, of: resource)
        let pass = PassScope.current?.slot { ConfigFilePass() }
        let policy = PolicyScope.current
        let found = try await root.applying { try applyOnce([part], root: root, pass: pass, policy: policy) }
        try AlreadyInSync.unless(changes, found: found)
    }

    /// Under the lock: reads the file again, leaves out the changes it already holds, edits the
    /// rest, validates the candidate, marks the reloads owed (`OwedReloads`), writes it, reads it
    /// back, and runs each reload owed, taking it off the marker once its command succeeded. A
    /// reload owed from before (the file written, its reload failed or cut short) runs though
    /// every value already holds. Returns the properties found already as desired, none of a part
    /// whose earlier owed reload ran now: that reload completes its fix. A reload that fails
    /// throws `IncompleteFix` with the values the file holds. `pass` (`ConfigFilePass`) keeps
    /// what earlier writes of the pass did: a reload that already failed in it is not run again
    /// (it fails the same way), and a value one of them wrote is not counted as found. `policy`
    /// tells which owed reloads no resource asks for any more (`owedReloads`).
    func applyOnce(_ parts: [Part], root: HostRoot, pass: ConfigFilePass? = nil, policy: DesiredState? = nil) throws -> Set<String> {
        guard let first = parts.first?.options else { return [] }
        guard let (file, original) = try Self.read(first, root: root) else {
            throw HostError("does not exist; Bulwark edits a configuration file, it does not create one", path: first.path)
        }
        let display = root.full(root.components(of: first.path))
        // Read again under the lock: another Bulwark may have run a reload since the plan. A
        // marker that names resources (`Owed.everyCommand`) owes every command of the write; it
        // counts as holding them, so that it is written again only once one has run.
        let stored = try Self.owedReloads(first.path, in: root, policy: policy)
        let owedBefore = OwedReloads.Owed(reloads: stored.everyCommand ? stored.reloads.union(parts.compactMap(\.owedReload)) : stored.reloads,
                                          orphaned: stored.orphaned)
        var document = original
        var found: Set<String> = []
        var edited = false
        var made: [PropertyDrift] = []
        for (part, change) in parts.flatMap({ part in part.changes.map { (part, $0) } }) {
            if change.property.hasPrefix(Self.reloadPrefix) {
                guard change.desired == Self.reloadDone else {
                    throw HostError("\(change.property) can only be made done: a reload that ran cannot be taken back", path: display)
                }
                if !part.owes(in: owedBefore) { found.insert(change.property) }
                continue
            }
            let property = DesiredProperty(change.property, change.desired)
            if let now = Self.observed(property, in: document), now == change.desired {
                // Written by an earlier write of this pass (a coalesced one whose reload failed,
                // retried now resource by resource): a change this pass made, not one found made.
                if pass?.wrote(change, to: first.path, in: root) != true { found.insert(change.property) }
                continue
            }
            guard case .success(let path) = ConfigPath.parse(change.property),
                  let value = ConfigValue.fromCanonical(change.desired) else {
                throw HostError("cannot read the desired value of \(change.property)", path: display)
            }
            do {
                try document.set(path, to: value)
            } catch {
                throw HostError(error.message, path: display)
            }
            edited = true
            made.append(change)
        }
        // The edited text parsed again, before anything is written: each property must read back
        // as desired from it (two paths of one write that reach one value, such as `list[0]` and
        // `list[name=x]` where the file's first element is x, leave one of them overwritten).
        if edited {
            let candidate: ConfigDocument
            do {
                candidate = try ConfigDocument(text: document.text, format: ConfigDocument.Format(rawValue: first.format) ?? .yaml)
            } catch {
                throw HostError("the edited text does not parse (\(error.message)); the file was not changed", path: display)
            }
            for change in parts.flatMap(\.changes) where !change.property.hasPrefix(Self.reloadPrefix) {
                let now = Self.observed(DesiredProperty(change.property, change.desired), in: candidate)
                guard now == nil || now == .some(change.desired) else {
                    throw HostError("\(change.property) does not read back as desired from the edited text (another path of the "
                                    + "write reaches the same value); the file was not changed", path: display)
                }
            }
        }
        // The reloads owed once the file is written: the command of every reloading resource of
        // the write, and those owed from before.
        let reloading = parts.compactMap { part in part.owedReload.map { (reload: $0, part: part) } }
        let owedNow = edited ? OwedReloads.Owed(reloads: owedBefore.reloads.union(reloading.map(\.reload)), orphaned: owedBefore.orphaned)
            : owedBefore
        let due = reloading.filter { $0.part.owes(in: owedNow) }
        guard edited || !due.isEmpty else { return found }
        // Checked again now, before anything is written: a command refused must not leave a file
        // written and never reloaded.
        for argv in parts.compactMap(\.options.validate) + parts.compactMap(\.options.reload) {
            if let problem = CommandTrust.problem(argv) {
                throw HostError("the command \(Self.shown(argv)) would run as root: \(problem); the file was not changed", path: display)
            }
        }
        let timeout = Duration.seconds(parts.map(\.options.timeoutSeconds).max() ?? 60)
        var onDisk = owedBefore
        var current = document
        if edited {
            let validations = Array(Set(parts.compactMap(\.options.validate))).sorted { $0.joined(separator: " ") < $1.joined(separator: " ") }
            var bytes = Array(document.text.utf8)
            bytes.reserveCapacity(bytes.count)
            do {
                try FileIO.write(bytes, to: root.resolve(first.path), in: root, expected: file.origin, validate: { candidate in
                    for argv in validations {
                        let outcome = try BoundedCommand(arguments: argv, timeout: timeout).run(file: candidate)
                        guard outcome.status == 0, !outcome.timedOut else {
                            throw HostError("validation \(argv[0]) rejected the candidate ("
                                            + (outcome.timedOut ? "killed after \(timeout)" : "exit status \(outcome.status)")
                                            + (outcome.output.isEmpty ? "" : ": \(outcome.output)") + "); the file was not changed", path: display)
                        }
                    }
                    // Validated: the marker and the rename change the host, so the fix's intents are
                    // marked tried now (`ChangeGate`), not before the validation commands.
                    try ChangeGate.passCurrent()
                    // Owed from the rename on: on disk before the file holds values its service has not read.
                    if owedNow != onDisk {
                        try OwedReloads.record(owedNow.reloads, for: first.path, in: root)
                        onDisk = owedNow
                    }
                })
            } catch {
                // Nothing was renamed into place (a rename is the write's last step): nothing more is owed.
                if onDisk != owedBefore { try? OwedReloads.record(owedBefore.reloads, for: first.path, in: root) }
                throw error
            }
            // Read back what is now on disk: the edit must hold before anything is reloaded.
            guard let (_, written) = try Self.read(first, root: root) else { throw HostError("vanished after the write", path: display) }
            for change in parts.flatMap(\.changes) where !change.property.hasPrefix(Self.reloadPrefix) {
                let now = Self.observed(DesiredProperty(change.property, change.desired), in: written)
                guard now == nil || now == .some(change.desired) else {
                    throw HostError("\(change.property) does not read back as desired after the write", path: display)
                }
            }
            current = written
            pass?.write(made, to: first.path, in: root)
        }
        // A reload owed from before runs with no write: it is this fix's change.
        try ChangeGate.passCurrent()
        var remaining = owedNow
        // Each command once, however many resources share it.
        let commands = Dictionary(due.compactMap { item in item.part.options.reload.map { (item.reload.command, $0) } }, uniquingKeysWith: { a, _ in a })
        for (key, argv) in commands.sorted(by: { $0.value.joined(separator: " ") < $1.value.joined(separator: " ") }) {
            var failure = pass?.failure(of: key, for: first.path, in: root)
            let ranBefore = failure != nil
            if failure == nil {
                do {
                    let outcome = try BoundedCommand(arguments: argv, timeout: timeout).run()
                    if outcome.status != 0 || outcome.timedOut {
                        failure = (outcome.timedOut ? "killed after \(timeout)" : "exit status \(outcome.status)")
                            + (outcome.output.isEmpty ? "" : ": \(outcome.output)")
                    }
                } catch {
                    failure = "\(error)"
                }
                if let failure { pass?.failed(key, for: first.path, in: root, failure) }
            }
            if let failure {
                // The reloads that did complete are no longer owed; this one and those after it are.
                if remaining != onDisk { try? OwedReloads.record(remaining.reloads, for: first.path, in: root) }
                let message = HostError((edited ? "written, but " : "") + "the reload command \(argv[0]) failed (\(failure))"
                                        + (ranBefore ? " when it ran earlier in this pass" : "")
                                        + "; the reload is owed and runs again on the next pass", path: display).description
                throw IncompleteFix(message, observed: Self.holding(parts, in: current, owed: remaining))
            }
            remaining.ran(key, for: due.filter { $0.reload.command == key }.map(\.reload.resource))
        }
        if remaining != onDisk { try OwedReloads.record(remaining.reloads, for: first.path, in: root) }
        for item in due where item.part.owes(in: owedBefore) { found.subtract(item.part.changes.map(\.property)) }
        return found
    }

    /// What the file holds for each change of `parts` (`document`, as read back after the write),
    /// and whether each reload is `owed`, by property: a failed reload's record says what the
    /// file holds, not "(unset)".
    static func holding(_ parts: [Part], in document: ConfigDocument, owed: OwedReloads.Owed) -> [String: String?] {
        var values: [String: String?] = [:]
        for (part, change) in parts.flatMap({ part in part.changes.map { (part, $0) } }) {
            if change.property.hasPrefix(reloadPrefix) {
                values[change.property] = .some(part.owes(in: owed) ? reloadOwed : reloadDone)
            } else if let now = observed(DesiredProperty(change.property, change.desired), in: document) {
                values[change.property] = .some(now)
            }
        }
        return values
    }

    // MARK: - Guards

    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let file = (try? Self.options(resource).path) ?? resource.spec.subject
        let publicLabel = target.labels["public"] == "true" || resource.labels["public"] == "true"
        // What the file holds now, to tell which credentials a change would remove (nil: the
        // file cannot be read; the fix then fails and changes nothing).
        let document = (try? Self.options(resource)).flatMap { options in
            (try? HostRoot(target: target)).flatMap { root in (try? Self.read(options, root: root))?.1 }
        }
        // The commands Bulwark would run as root for this change (see `CommandTrust`).
        if !changes.isEmpty, let options = try? Self.options(resource) {
            for (field, argv) in [("validate", options.validate), ("reload", options.reload)] {
                guard let argv, let problem = CommandTrust.problem(argv) else { continue }
                return .block("\(file)'s \(field) command \(Self.shown(argv)) would run as root: \(problem)")
            }
        }
        // A reload owed runs the command judged above and changes no value.
        for change in changes where !change.property.hasPrefix(Self.reloadPrefix) {
            guard case .success(let path) = ConfigPath.parse(change.property), let key = path.leafKey,
                  let value = ConfigValue.fromCanonical(change.desired) else {
                return .block("cannot read the change of \(change.property) to judge it")
            }
            let secrecy = Self.secrecy(path)
            if secrecy == .credential, let literal = Self.literalSecret(value) {
                return .block("\(change.property) in \(file) would be written as a literal \(literal); a credential in a "
                              + "configuration file must be a reference to the environment (os.environ/NAME)")
            }
            if secrecy != .credential, let inside = Self.literalSecretInside(value) {
                return .block("\(change.property).\(inside.path) in \(file) would be written as a literal \(inside.literal); a credential in a "
                              + "configuration file must be a reference to the environment (os.environ/NAME)")
            }
            if secrecy == .credential, value == .null || value == .string(""), let document,
               document.values(path).contains(where: { $0.map { !Self.isUnsecret($0) } ?? false }) {
                return .block("\(change.property) in \(file) would empty the credential the file holds there; "
                              + "remove it in the file by hand if that is what you mean")
            }
            if let document {
                // A value that holds a credential, replaced by one that does not: the credential is
                // gone (a master key wiped leaves the gateway open).
                let held = document.values(path).compactMap { $0 }.reduce(into: Set<String>()) { $0.formUnion(Self.credentialPaths($1)) }
                let lost = held.subtracting(Self.credentialPaths(value))
                if !lost.isEmpty {
                    return .block("\(change.property) in \(file) would remove the credential\(lost.count == 1 ? "" : "s") "
                                  + lost.sorted().map { "\(change.property).\($0)" }.joined(separator: ", ")
                                  + " that the file holds there; set each credential by its own path, or remove it in the file by hand")
                }
            }
            if Self.passwordInURL(value) {
                return .block("\(change.property) in \(file) would be written with a password in its URL; a credential in a "
                              + "configuration file must be a reference to the environment (os.environ/NAME)")
            }
            if Self.isBindKey(key), let address = Self.wildcardAddress(value), !publicLabel {
                return .block("\(change.property) in \(file) would bind to \(address), every network interface, on a target "
                              + "not labelled public: \"true\"; bind to 127.0.0.1 or label the target public")
            }
        }
        return .allow
    }

    /// A command as a person reads it in a plan or a record: its words, anything that looks
    /// like a key redacted (`BoundedCommand.redacted`).
    static func shown(_ argv: [String]) -> String {
        "[" + argv.map { BoundedCommand.redacted($0, file: nil) }.joined(separator: ", ") + "]"
    }

    /// What makes `value` a literal credential (nil for an environment reference, null or empty).
    static func literalSecret(_ value: ConfigValue) -> String? {
        switch value {
        case .null: return nil
        case .string(let s):
            if s.isEmpty || isEnvironmentReference(s) { return nil }
            return "value of \(s.count) characters"
        case .bool: return nil  // a switch such as dangerously_permit_weak_or_unset_master_key
        case .number: return "number"
        case .list(let items): return items.lazy.compactMap(literalSecret).first
        case .map(let map): return map.values.lazy.compactMap(literalSecret).first
        }
    }

    /// The first key inside a mapping (at any depth) that names a credential and would be
    /// written as a literal (`general_settings: {master_key: sk-…}`), with what makes it one.
    static func literalSecretInside(_ value: ConfigValue) -> (path: String, literal: String)? {
        switch value {
        case .list(let items):
            for item in items { if let found = literalSecretInside(item) { return ("[]" + found.path, found.literal) } }
        case .map(let map):
            for key in map.keys.sorted() {
                guard let inner = map[key] else { continue }
                if isSecretKey(key), let literal = literalSecret(inner) { return (key, literal) }
                if let found = literalSecretInside(inner) { return (key + (found.path.hasPrefix("[") ? "" : ".") + found.path, found.literal) }
            }
        default:
            break
        }
        return nil
    }

    /// The first key, through mappings only, that a guard or the weakening rule judges by its
    /// own path (a bind address, an unsafe switch, a guardrail's `default_on`, a list of
    /// guardrails or callbacks), as `a.b`; nil when there is none. Set inside a parent's
    /// mapping, it would be compared with nothing: `general_settings: {host: 0.0.0.0}` went past
    /// the bind guard, `litellm_settings: {callbacks: []}` past the second person.
    static func guardedKeyInside(_ value: ConfigValue) -> String? {
        guard case .map(let map) = value else { return nil }
        for key in map.keys.sorted() {
            if isBindKey(key) || ConfigFileWeakening.isUnsafeSwitch(key) || key.lowercased() == "default_on"
                || ConfigFileWeakening.isGuardList(key) {
                return key
            }
            if let inner = map[key].flatMap(guardedKeyInside) { return key + "." + inner }
        }
        return nil
    }

    /// Whether `value` is, or holds anywhere inside it (a list's item, a mapping's value), an
    /// `os.environ/NAME` reference.
    static func holdsEnvironmentReference(_ value: ConfigValue) -> Bool {
        switch value {
        case .string(let text): isEnvironmentReference(text)
        case .list(let items): items.contains(where: holdsEnvironmentReference)
        case .map(let map): map.values.contains(where: holdsEnvironmentReference)
        default: false
        }
    }

    /// `os.environ/NAME`, LiteLLM's way to read a value from the proxy's environment.
    static func isEnvironmentReference(_ s: String) -> Bool {
        guard s.hasPrefix("os.environ/") else { return false }
        let name = s.dropFirst("os.environ/".count)
        guard let first = name.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic || first == "_" else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
    }

    static func isBindKey(_ key: String) -> Bool {
        ["host", "bind", "bind_address", "bind_host", "listen", "listen_address", "listen_host", "server_host", "address"]
            .contains(key.lowercased())
    }

    /// The wildcard address `value` binds to, if any, as written: every spelling of the
    /// unspecified address, alone or with a port (`0.0.0.0`, `0`, `0.0`, `::`, `::0`, `[::]:4000`,
    /// `0:0:0:0:0:0:0:0`, `::ffff:0.0.0.0`, `*`, `:4000`, an empty host), as the C library reads it
    /// (`inet_aton`, which also takes `0` and `0x0`; `inet_pton` for IPv6). A number is read as
    /// its text (`listen: 0`).
    static func wildcardAddress(_ value: ConfigValue) -> String? {
        let s: String
        switch value {
        case .string(let text): s = text
        case .number(let text): s = text
        default: return nil
        }
        let text = s.trimmingCharacters(in: .whitespaces)
        var host: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            host = text[..<colon]
        } else {
            host = Substring(text)
        }
        if let percent = host.firstIndex(of: "%") { host = host[..<percent] }  // a zone: `::%eth0`
        return isUnspecified(String(host)) ? text : nil
    }

    /// Whether `host` names the unspecified address (every interface).
    static func isUnspecified(_ host: String) -> Bool {
        if host.isEmpty || host == "*" { return true }
        if host.contains(":") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, host, &address) == 1 else { return false }
            let bytes = withUnsafeBytes(of: &address) { Array($0) }
            // `::` itself, or an IPv4-mapped or -compatible form of 0.0.0.0.
            return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[12..<16].allSatisfy { $0 == 0 }
                && (bytes[10..<12].allSatisfy { $0 == 0 } || bytes[10..<12].allSatisfy { $0 == 0xFF })
        }
        var address = in_addr()
        return inet_aton(host, &address) == 1 && address.s_addr == 0
    }
}

extension ConfigFileDriver: CoalescingDriver {
    func coalescingKey(_ resource: Resource, on target: Target) -> String? { resource.spec.subject }

    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws -> Set<String> {
        let root = try HostRoot(target: target)
        let parts = try batch.map { item throws(HostError) in try Self.part(item.changes, of: item.resource) }
        let pass = PassScope.current?.slot { ConfigFilePass() }
        let policy = PolicyScope.current
        return try await root.applying { try applyOnce(parts, root: root, pass: pass, policy: policy) }
    }
}

/// What the `ConfigFile` fixes of one pass (`PassScope`) did, by target root and file, for the
/// ones after them. A coalesced write whose reload fails is retried resource by resource
/// (`CoalescingDriver`):
///
/// - each of those found the reload owed and ran it again, so a failing reload ran 1 + N times
///   for N resources of one file. A reload command that failed (by `OwedReloads.key`) is kept
///   with how it failed, and is not run again in the pass: every resource that reloads with it
///   fails with the outcome of the one run, each with its own record; it stays owed for the
///   next pass. One that succeeded is not kept: owed again in the same pass, it is owed by a
///   later write of the file, which its service has not read.
/// - a resource whose value the write made and whose own reload (another command) succeeded
///   found its value in place and its reload done, and was counted in sync: a change made with
///   no record. The changes each write made are kept, and are not counted as found.
final class ConfigFilePass: Sendable {
    private let failures = Mutex<[String: String]>([:])
    private let written = Mutex<Set<String>>([])

    private static func key(_ root: HostRoot, _ file: String, _ rest: String...) -> String {
        ([root.path, file] + rest).joined(separator: "\u{0}")
    }

    /// How the command `command` (`OwedReloads.key`) of `file` failed in this pass; nil when it
    /// did not run or succeeded.
    func failure(of command: String, for file: String, in root: HostRoot) -> String? {
        failures.withLock { $0[Self.key(root, file, command)] }
    }

    /// Keeps how the command failed.
    func failed(_ command: String, for file: String, in root: HostRoot, _ failure: String) {
        failures.withLock { $0[Self.key(root, file, command)] = failure }
    }

    /// Keeps the changes a write of `file` made (renamed into place and read back).
    func write(_ changes: [PropertyDrift], to file: String, in root: HostRoot) {
        written.withLock { kept in for change in changes { kept.insert(Self.key(root, file, change.property, change.desired)) } }
    }

    /// Whether a write of this pass made `change` in `file`.
    func wrote(_ change: PropertyDrift, to file: String, in root: HostRoot) -> Bool {
        written.withLock { $0.contains(Self.key(root, file, change.property, change.desired)) }
    }
}
