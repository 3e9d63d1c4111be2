public import BulwarkCore
internal import Foundation
internal import Logging
internal import NIOSSL
internal import PostgresNIO

/// The PostgreSQL adapter: server settings, role attributes, schema privileges and the set of
/// superusers, over postgres-nio.
///
/// Targets: `spec: {adapter: postgres, host, port, user, database, passwordEnv | passwordFile,
/// sslmode: disable | require | verify-full}`. The password is read when connecting and never
/// stored, logged or recorded. Each observation and each fix uses its own connection, so a
/// connection that drops fails that resource cleanly and the next cycle starts afresh.
public enum PostgresAdapter {
    public static let name = "postgres"

    public static func definition() -> AdapterDefinition {
        AdapterDefinition(
            name: name, parseTarget: parseTarget,
            kinds: [
                KindDefinition(name: "PostgresSetting", adapter: name, summary: "server settings via ALTER SYSTEM",
                               parse: SettingDriver.parse, driver: SettingDriver()),
                KindDefinition(name: "PostgresRole", adapter: name, summary: "attributes of a role",
                               parse: RoleDriver.parse, driver: RoleDriver()),
                KindDefinition(name: "PostgresPrivilege", adapter: name, summary: "privileges on a schema, per database",
                               parse: PrivilegeDriver.parse, driver: PrivilegeDriver()),
                KindDefinition(name: "PostgresSuperusers", adapter: name, summary: "no superusers beyond an allowed list",
                               parse: SuperusersDriver.parse, driver: SuperusersDriver()),
            ])
    }

    @Sendable static func parseTarget(_ spec: SpecReader) -> [String: String]? {
        spec.allowOnly(["adapter", "host", "port", "user", "database", "passwordEnv", "passwordFile", "sslmode"])
        guard let host = spec.field("host", required: true)?.string(),
              let user = spec.field("user", required: true)?.string() else { return nil }
        var settings = ["host": host, "user": user, "database": spec.field("database")?.string() ?? "postgres",
                        "port": "5432", "sslmode": "verify-full"]
        if let reader = spec.field("port") {
            guard let port = reader.int(in: 1...65535) else { return nil }
            settings["port"] = String(port)
        }
        if let reader = spec.field("sslmode") {
            guard let mode = reader.oneOf(["disable", "require", "verify-full"]) else { return nil }
            settings["sslmode"] = mode
        }
        let env = spec.field("passwordEnv")?.string()
        let file = spec.field("passwordFile")?.string()
        if env != nil && file != nil { spec.fail("set only one of passwordEnv, passwordFile"); return nil }
        if let env { settings["passwordEnv"] = env }
        if let file { settings["passwordFile"] = file }
        return settings
    }

    // MARK: - Connections

    static let logger: Logger = {
        var logger = Logger(label: "bulwark.postgres")
        logger.logLevel = .critical
        return logger
    }()

    static func password(_ target: Target) throws -> String? {
        if let name = target.settings["passwordEnv"] {
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                throw PostgresAdapterError("environment variable \(name) (the password of target \(target.name)) is not set")
            }
            return value
        }
        if let path = target.settings["passwordFile"] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw PostgresAdapterError("cannot read the password file of target \(target.name): \(path)")
            }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
        return nil
    }

    /// Runs `body` on a new connection to `database` (default: the target's), then closes it.
    static func withConnection<T: Sendable>(
        _ target: Target, database: String? = nil, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        guard let host = target.settings["host"], let user = target.settings["user"] else {
            throw PostgresAdapterError("target \(target.name) has no host or user")
        }
        let tls: PostgresConnection.Configuration.TLS
        switch target.settings["sslmode"] {
        case "disable":
            tls = .disable
        case "require":
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            tls = .require(try NIOSSLContext(configuration: configuration))
        default:
            tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(
            host: host, port: Int(target.settings["port"] ?? "") ?? 5432, username: user,
            password: try password(target), database: database ?? target.settings["database"], tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        if target.settings["sslmode"] == "verify-full" { configuration.options.tlsServerName = host }
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        } catch {
            throw PostgresAdapterError("cannot connect to \(host):\(configuration.port ?? 5432) as \(user): \(describe(error))")
        }
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw PostgresAdapterError(describe(error))
        }
    }

    /// A server error's SQLSTATE and message; postgres-nio's own description hides both.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PostgresAdapterError { return error.description }
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                return "\(message) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))"
            }
            return "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
        }
        return "\(error)"
    }

    /// Runs SQL that takes no parameters (utility statements cannot bind them).
    static func execute(_ connection: PostgresConnection, _ sql: String) async throws {
        try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
    }

    /// Rows of text columns.
    static func rows(_ connection: PostgresConnection, _ query: PostgresQuery, columns: Int) async throws -> [[String?]] {
        var result: [[String?]] = []
        for try await row in try await connection.query(query, logger: logger) {
            var values: [String?] = []
            for cell in row { values.append(try cell.decode(String?.self)) }
            result.append(Array(values.prefix(columns)))
        }
        return result
    }

    static func identifier(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
    static func literal(_ value: String) -> String { "'" + value.replacingOccurrences(of: "'", with: "''") + "'" }
}

/// A failure of the PostgreSQL adapter, with the server's message when there is one.
struct PostgresAdapterError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
