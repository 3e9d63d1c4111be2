public import BulwarkCore
internal import Foundation
internal import Logging
internal import NIOSSL
internal import PostgresNIO

/// The PostgreSQL adapter: server settings, role attributes, schema privileges and the set of
/// superusers, over postgres-nio.
///
/// Targets: `spec: {adapter: postgres, host, port, user, database, passwordEnv | passwordFile,
/// sslmode: disable | require | verify-full}`. `host` is a name, an address, or the folder of a
/// Unix socket (`/run/postgresql`). The password is read when connecting and never stored,
/// logged or recorded; it is sent only over TLS (`sslmode` defaults to `verify-full`), except to a
/// loopback address or a Unix socket, the only places `sslmode: disable` is accepted. A
/// `passwordFile` is read only from the operator's secrets directories (see `SecretsDirectories`).
/// Each observation and each fix uses its own connection, so a connection that drops fails that
/// resource cleanly and the next cycle starts afresh.
public enum PostgresAdapter {
    public static let name = "postgres"

    /// - Parameter secretsDirectories: where `passwordFile`s may be read from; nil: the
    ///   `BULWARK_SECRETS_DIR` environment variable, else `/run/secrets` and `$CREDENTIALS_DIRECTORY`.
    public static func definition(secretsDirectories: [String]? = nil) -> AdapterDefinition {
        let connector = Connector(secrets: SecretsDirectories(explicit: secretsDirectories))
        var role = KindDefinition(name: "PostgresRole", adapter: name, parse: RoleDriver.parse, driver: RoleDriver(connector: connector),
                                  weakens: PostgresWeakening.role)
        role.weakensNew = PostgresWeakening.roleNew
        var privilege = KindDefinition(name: "PostgresPrivilege", adapter: name, parse: PrivilegeDriver.parse,
                                       driver: PrivilegeDriver(connector: connector), weakens: PostgresWeakening.privilege)
        privilege.weakensNew = PostgresWeakening.privilegeNew
        // The setting kind judges a few settings' direction only (`PostgresWeakening.setting`):
        // any other's is not known, so a finding's change to it still waits for a person.
        var setting = KindDefinition(name: "PostgresSetting", adapter: name, parse: SettingDriver.parse,
                                     driver: SettingDriver(connector: connector), weakens: PostgresWeakening.setting)
        setting.judgesDirection = false
        setting.weakensNew = PostgresWeakening.settingNew
        return AdapterDefinition(
            name: name, settings: parseSettings,
            kinds: [
                setting, role, privilege,
                KindDefinition(name: "PostgresSuperusers", adapter: name,
                               parse: SuperusersDriver.parse, driver: SuperusersDriver(connector: connector)),
            ])
    }

    /// The folders `passwordFile`s are read from when none are given: `BULWARK_SECRETS_DIR`, else
    /// `/run/secrets` and `$CREDENTIALS_DIRECTORY`.
    public static func secretsDirectories(environment: [String: String]) -> [String] {
        SecretsDirectories().roots(environment)
    }

    /// Whether the password may travel unencrypted to `host`: a loopback address or a Unix socket.
    static func isLocal(_ host: String) -> Bool {
        if host.hasPrefix("/") { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: &v4) { $0.first } == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } == [UInt8](repeating: 0, count: 15) + [1] }
        return false
    }

    /// Whether `passwordEnv` may name `name`: `PGPASSWORD` (libpq's), or `BULWARK_…_PASSWORD`
    /// (upper case, digits, `_`), the names an operator gives a database password for Bulwark.
    /// The policy chooses the host the password is sent to, so a variable the operator set for
    /// anything else (`AWS_SECRET_ACCESS_KEY`, a CI token, another tool's password) is never
    /// one; Bulwark's own are refused before this (`OwnSecrets.isReservedVariable`).
    static func isPasswordVariable(_ name: String) -> Bool {
        if name == "PGPASSWORD" { return true }
        let (prefix, suffix) = ("BULWARK_", "_PASSWORD")
        guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.count > prefix.count + suffix.count else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isUppercase || $0.isNumber || $0 == "_") }
    }

    /// The one `BULWARK_…_PASSWORD` a target may name: its own name in upper case, each `-` and
    /// `.` as `_` (target `db-1`: `BULWARK_DB_1_PASSWORD`). Any well-formed name used to do, and
    /// a policy could give its own target (`staging`, on a host its author controls) another
    /// target's variable (`BULWARK_PROD_PASSWORD`), and receive prod's password. Two names that
    /// map to one variable (`db-1`, `db.1`) cannot both name it (`PostgresTargetSettings.exclusive`).
    static func passwordVariable(forTarget name: String) -> String {
        "BULWARK_" + String(name.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" }) + "_PASSWORD"
    }

    /// The names a target's `passwordFile` may have (its last path component): the target's own
    /// name (`db-1`), or `bulwark_` and its name, as systemd's `LoadCredential=bulwark:FOLDER`
    /// names the files of that folder. Any file in the secrets directory used to do, and a policy
    /// could give its own target (`staging`, on a host its author controls) prod's file, and
    /// receive prod's password. No two targets can name one file: target names are unique and
    /// hold no `_`.
    static func passwordFileNames(forTarget name: String) -> [String] {
        [name, "bulwark_" + name]
    }

    static let cleartextAdvice = "sslmode defaults to verify-full; set sslmode: disable only for loopback (127.0.0.1, ::1) or a Unix socket (host: /run/postgresql)"

    @Sendable static func parseSettings(_ spec: SpecReader) -> PostgresTargetSettings? {
        spec.allowOnly(["adapter", "host", "port", "user", "database", "passwordEnv", "passwordFile", "sslmode", "timeout"])
        guard let hostReader = spec.field("host", required: true), let host = hostReader.string(),
              let user = spec.field("user", required: true)?.string() else { return nil }
        if host.hasPrefix("/"), host.split(separator: "/").contains("..") {
            hostReader.fail("expected the folder of a Unix socket without '..', got '\(host)'")
            return nil
        }
        var settings = PostgresTargetSettings(host: host, user: user, database: spec.field("database")?.string() ?? "postgres")
        if let reader = spec.field("port") {
            guard let port = reader.int(in: 1...65535) else { return nil }
            settings.port = port
        }
        if let reader = spec.field("sslmode") {
            guard let mode = reader.oneOf(["disable", "require", "verify-full"]) else { return nil }
            if mode == "disable", !isLocal(host) {
                reader.fail("sslmode: disable would send the password in clear text to \(host); \(cleartextAdvice)")
                return nil
            }
            settings.sslmode = PostgresTargetSettings.SSLMode(rawValue: mode) ?? .verifyFull
        }
        if let reader = spec.field("timeout"), let text = reader.string() {
            do {
                let seconds = try DurationParser.seconds(text, bareNumberIsSeconds: true)
                guard (1...3600).contains(seconds) else {
                    reader.fail("expected a timeout from 1s to 1h, got '\(text)'")
                    return nil
                }
                settings.timeout = seconds
            } catch {
                reader.fail(error.description)
                return nil
            }
        }
        let envReader = spec.field("passwordEnv")
        let env = envReader?.string()
        if let env, let envReader, OwnSecrets.isReservedVariable(env) {
            envReader.fail("\(env) holds Bulwark's own credentials (AWS credentials and Bulwark's own variables are never sent to a "
                           + "database); name a variable that holds this target's password alone, such as BULWARK_DB1_PASSWORD")
            return nil
        }
        if let env, let envReader, !isPasswordVariable(env) {
            envReader.fail("'\(quotedForMessage(env))' is not a variable for a database password: name one that starts with BULWARK_ "
                           + "and ends with _PASSWORD (such as BULWARK_DB1_PASSWORD), or PGPASSWORD; another variable may hold a "
                           + "secret given for something else (AWS_…, another tool's token), and the policy chooses where it is sent")
            return nil
        }
        if let env, let envReader, env != "PGPASSWORD" {
            let own = spec.documentName.map(passwordVariable(forTarget:))
            guard env == own else {
                envReader.fail("'\(quotedForMessage(env))' is not this target's password variable: "
                               + (own.map { "target \(spec.documentName ?? "") reads \($0)" } ?? "a target reads its own")
                               + " (BULWARK_, the target's name in upper case with '-' and '.' as '_', then _PASSWORD) or "
                               + "PGPASSWORD; a variable named for another target holds that target's password, and this target "
                               + "would send it to its own host")
                return nil
            }
        }
        let fileReader = spec.field("passwordFile")
        let file = fileReader?.string()
        if env != nil && file != nil { spec.fail("set only one of passwordEnv, passwordFile"); return nil }
        if let file, let fileReader {
            guard !file.isEmpty, !file.split(separator: "/").contains("..") else {
                fileReader.fail("expected a file in the secrets directory (BULWARK_SECRETS_DIR, default /run/secrets or "
                                + "$CREDENTIALS_DIRECTORY), by name or absolute path, without '..'; got '\(file)'")
                return nil
            }
            let name = file.split(separator: "/").last.map(String.init) ?? file
            guard !OwnSecrets.isReservedFileName(name) else {
                fileReader.fail("'\(quotedForMessage(file))' is named as one of Bulwark's own credentials (\(OwnSecrets.credentialFileNames.sorted().joined(separator: ", ")), "
                                + "or bulwark_ and one of them); they are never sent to a database: give the target a file of its own, "
                                + "named after it")
                return nil
            }
            let own = spec.documentName.map(passwordFileNames(forTarget:)) ?? []
            guard own.contains(name) else {
                fileReader.fail("'\(quotedForMessage(file))' is not this target's password file: "
                                + (spec.documentName.map { "target \(quotedForMessage($0)) reads a file named \(quotedForMessage($0)) or bulwark_\(quotedForMessage($0))" }
                                   ?? "a target reads a file named after it")
                                + " in the secrets directory (bulwark_ as systemd's LoadCredential=bulwark:… names it); a file named for "
                                + "another target holds that target's password, and this target would send it to its own host")
                return nil
            }
        }
        settings.passwordEnv = env
        settings.passwordFile = file
        return settings
    }

    /// The text settings of a target (what `Target.settings` holds).
    @Sendable static func parseTarget(_ spec: SpecReader) -> [String: String]? { parseSettings(spec)?.strings }

    /// The target's settings as `parseSettings` typed them when the target was read.
    static func settings(_ target: Target) throws -> PostgresTargetSettings {
        do {
            return try target.typedSettings(PostgresTargetSettings.self)
        } catch {
            throw PostgresAdapterError(error.description)
        }
    }

    /// A resource's spec as its kind's parser typed it.
    static func spec<T: TypedSpec>(_ resource: Resource, _ type: T.Type) throws -> T {
        do {
            return try resource.typedSpec(type)
        } catch {
            throw PostgresAdapterError(error.description)
        }
    }

    // MARK: - Connections

    static let logger: Logger = {
        var logger = Logger(label: "bulwark.postgres")
        logger.logLevel = .critical
        return logger
    }()

    /// A server error's SQLSTATE and message, or what went wrong reaching the server.
    static func describe(_ error: any Error, host: String) -> String {
        if let error = error as? PSQLError, error.code == .sslUnsupported {
            return "the server \(host) does not offer TLS; \(cleartextAdvice)"
        }
        return describe(error)
    }

    /// A server error's SQLSTATE and message; postgres-nio's own description hides both.
    ///
    /// An error without the server's word (the connection closed, a query cancelled) is said in
    /// words with postgres-nio's code, and what it wraps is described the same way: printed as
    /// is, a wrapped `PSQLError` (a server's FATAL behind `serverClosedConnection`) recorded only
    /// postgres-nio's placeholder, "Generic description to prevent accidental leakage". The
    /// query text and the raw bytes of a value that did not decode are never shown: they can
    /// hold a secret.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PostgresAdapterError { return error.description }
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                return "\(message) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))"
            }
            // postgres-nio at times wraps the same error in itself: said once.
            let words = happened(error.code)
            guard let inner = error.underlying.map(describe), inner != words else { return words }
            return words + ": " + inner
        }
        if let error = error as? PostgresDecodingError {
            return "column \(error.columnName) (\(error.postgresType)) could not be read as \(error.targetType) "
                + "(postgres-nio: \(error.code))"
        }
        return "\(error)"
    }

    /// What a postgres-nio error code means, with the code.
    private static func happened(_ code: PSQLError.Code) -> String {
        let words: String
        switch code {
        case .serverClosedConnection: words = "the server closed the connection"
        case .clientClosedConnection: words = "the connection was already closed"
        case .uncleanShutdown: words = "the connection ended without a clean shutdown"
        case .connectionError: words = "the connection failed"
        case .queryCancelled: words = "the query was cancelled"
        case .sslUnsupported, .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest: words = "TLS could not be set up"
        case .unsupportedAuthMechanism, .authMechanismRequiresPassword, .saslError: words = "authentication failed"
        case .messageDecodingFailure, .unexpectedBackendMessage, .invalidCommandTag: words = "the server sent what postgres-nio cannot read"
        default: words = "postgres-nio failed"
        }
        return "\(words) (postgres-nio: \(code))"
    }

    /// How long one query waits for the server's answer, and to what (`Connector` sets both for
    /// the connection's lifetime from the target's `timeout`).
    @TaskLocal static var answer = (limit: Duration.seconds(PostgresTargetSettings.defaultTimeout), from: "the server")

    /// Runs `query` on `connection` and gives up on it after `answer.limit`: a server that
    /// stopped answering, or a network that drops what is sent (no TCP keepalive would notice for
    /// hours), held the pass, every target after it, and the daemon's next cycles for ever. The
    /// query is left to postgres-nio; the caller closes the connection.
    static func answered<T: Sendable>(_ connection: PostgresConnection,
                                      _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try open(connection)
        let answer = answer
        return try await Deadline.run(answer.limit, awaiting: "answer from \(answer.from)") { try await body(connection) }
    }

    /// Runs SQL that takes no parameters (utility statements cannot bind them).
    static func execute(_ connection: PostgresConnection, _ sql: String) async throws {
        try await answered(connection) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
    }

    /// Throws when the connection has closed. postgres-nio hands a query to the channel without
    /// a promise for the write: once a closed channel has let go of its handlers, the write fails
    /// unseen and the query never completes, and a pass that went on after a swallowed failure
    /// (a server that ended the session) waited for ever. The check narrows that to a close
    /// racing the write; it does not rule it out.
    static func open(_ connection: PostgresConnection) throws {
        guard !connection.isClosed else {
            throw PostgresAdapterError("the connection was closed (by the server, or after an earlier failure on it); nothing more was sent")
        }
    }

    /// How long a change waits for a lock someone else holds (an open transaction that altered
    /// the same role) before it fails: without it, one idle session in a transaction held the
    /// whole pass, and every target after it, for as long as it stayed open.
    static let lockTimeout = "5s"

    /// Runs `body` in one transaction that waits at most `lockTimeout` for each lock; rolled
    /// back when `body` throws. `SET LOCAL` ends with the transaction, so the setting is never
    /// the session's (`PostgresSetting` may manage `lock_timeout` itself).
    static func transaction<T: Sendable>(_ connection: PostgresConnection, _ body: () async throws -> T) async throws -> T {
        try await execute(connection, "BEGIN")
        do {
            try await execute(connection, "SET LOCAL lock_timeout = '\(lockTimeout)'")
            let result = try await body()
            try await execute(connection, "COMMIT")
            return result
        } catch {
            try? await execute(connection, "ROLLBACK")
            throw error
        }
    }

    /// Rows of text columns.
    static func rows(_ connection: PostgresConnection, _ query: PostgresQuery, columns: Int) async throws -> [[String?]] {
        try await answered(connection) { connection in
            var result: [[String?]] = []
            for try await row in try await connection.query(query, logger: logger) {
                var values: [String?] = []
                for cell in row { values.append(try cell.decode(String?.self)) }
                result.append(Array(values.prefix(columns)))
            }
            return result
        }
    }

    static func identifier(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    /// A name as people read it: bare when it is a plain lower-case identifier (`eve`), else quoted
    /// as SQL quotes it (`"admin, x"`, `"Admin"`), so that a name holding `, ` or a capital
    /// cannot pass for another name or for a list.
    static func shownIdentifier(_ name: String) -> String {
        let plain = name.first.map { $0 == "_" || ($0.isASCII && $0.isLowercase) } == true
            && name.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLowercase || $0.isNumber)) }
        return plain ? name : identifier(name)
    }
    static func literal(_ value: String) -> String { "'" + value.replacingOccurrences(of: "'", with: "''") + "'" }
}

/// A failure of the PostgreSQL adapter, with the server's message when there is one.
struct PostgresAdapterError: Error, CustomStringConvertible {
    var description: String
    /// The server answered that it offers no TLS (`PSQLError.Code.sslUnsupported`).
    var noTLS = false
    /// It failed for want of the machine's resources (`PostgresShortage`).
    var shortage = false
    init(_ description: String, noTLS: Bool = false, shortage: Bool = false) {
        self.description = description
        self.noTLS = noTLS
        self.shortage = shortage
    }
}

/// A PostgreSQL target's settings, checked once when the target is read.
struct PostgresTargetSettings: TypedTargetSettings {
    enum SSLMode: String, Sendable {
        case disable, require
        case verifyFull = "verify-full"
    }

    /// A name, an address, or the folder of a Unix socket.
    var host: String
    var port = 5432
    var user: String
    var database: String
    var sslmode = SSLMode.verifyFull
    var passwordEnv: String?
    var passwordFile: String?
    /// Seconds one query waits for the server's answer (`timeout`).
    var timeout = Self.defaultTimeout

    static let defaultTimeout = 30

    init(host: String, user: String, database: String) {
        self.host = host
        self.user = user
        self.database = database
    }

    /// The variable the password is read from: one variable holds one password, so no two
    /// targets name it. `PGPASSWORD` names no target, and without this a second target naming it
    /// (on a host of the policy author's choosing) was sent the first one's password; two target
    /// names that map to one `BULWARK_…_PASSWORD` (`db-1`, `db.1`) would share it too.
    /// A `passwordFile` needs no claim: it is named after its target (`parseSettings`), and no
    /// two targets have one name (nor can `bulwark_` begin one: names hold no `_`).
    var exclusive: ExclusiveClaim? {
        guard let passwordEnv else { return nil }
        return ExclusiveClaim(key: "passwordEnv " + passwordEnv, field: "passwordEnv",
                              what: "the password in \(passwordEnv)",
                              why: "one variable holds one password, and each target naming it would send it to its own host; give "
                                  + "each target its own variable, BULWARK_ and its name then _PASSWORD (or a passwordFile)")
    }

    var strings: [String: String] {
        var strings = ["host": host, "user": user, "database": database, "port": String(port), "sslmode": sslmode.rawValue]
        strings["passwordEnv"] = passwordEnv
        strings["passwordFile"] = passwordFile
        if timeout != Self.defaultTimeout { strings["timeout"] = String(timeout) }
        return strings
    }
}
