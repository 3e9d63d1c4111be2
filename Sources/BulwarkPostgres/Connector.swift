internal import BulwarkCore
internal import Foundation
internal import NIOSSL
internal import PostgresNIO

/// Opens connections to a target: reads its password (from the environment, or a file in the
/// secrets directories) and refuses to send it anywhere but over TLS, a loopback address or a
/// Unix socket.
struct Connector: Sendable {
    var secrets: SecretsDirectories

    /// The target's password; never one of Bulwark's own credentials (`OwnSecrets`), which a
    /// policy naming them could otherwise send to a server of its choosing.
    func password(_ target: Target) throws -> String? {
        let settings = try PostgresAdapter.settings(target)
        let value: String
        let source: String
        if let name = settings.passwordEnv {
            guard let found = ProcessInfo.processInfo.environment[name], !found.isEmpty else {
                throw PostgresAdapterError("environment variable \(name) (the password of target \(target.name)) is not set")
            }
            (value, source) = (found, "environment variable \(name)")
        } else if let path = settings.passwordFile {
            // Checked when the target was read (`parseSettings`); checked again where it is read.
            let name = path.split(separator: "/").last.map(String.init) ?? path
            guard PostgresAdapter.passwordFileNames(forTarget: target.name).contains(name), !OwnSecrets.isReservedFileName(name) else {
                throw PostgresAdapterError("target \(target.name): the passwordFile \(quotedForMessage(path)) is not its own (a file named "
                                           + "\(target.name) or bulwark_\(target.name)); it is not read")
            }
            (value, source) = (try secrets.read(path, what: "the passwordFile of target \(target.name)"), "passwordFile \(path)")
        } else {
            return nil
        }
        guard !OwnSecrets.contains(value, destination: "\(settings.host):\(settings.port)") else {
            throw PostgresAdapterError("target \(target.name): \(source) holds one of Bulwark's own credentials (its git password, "
                                       + "signing key, SSH key, webhook secret, findings token or lease password); it is never sent "
                                       + "to a database: give the target a password of its own")
        }
        return value
    }

    /// What Bulwark's own sessions set for themselves before anything else: the server's values
    /// are for its applications, and a server-wide `statement_timeout` of 1 ms cancelled the very
    /// session that was undoing it (and every observation after), so that not even reverting the
    /// policy could repair it; `default_transaction_read_only = on` made every fix fail; an
    /// `idle_session_timeout` would end the session kept open to undo a change while new ones
    /// verify it; a `search_path` naming a schema before `pg_catalog` would let its owner stand
    /// in for the functions Bulwark's own SQL calls (this statement's are named with their schema).
    /// `PostgresAdapter.transaction` still bounds its own lock waits (`SET LOCAL`).
    ///
    /// Set with `set_config` in the session, not in the startup packet: a startup value becomes
    /// the session's reset value, which is where `SettingState.read` finds what the server gives
    /// other sessions of these settings (`ownSession`). A setting the server does not have
    /// (`idle_session_timeout` before PostgreSQL 14, `transaction_timeout` before 17) is skipped.
    static let ownSession: [(name: String, value: String)] = [
        ("statement_timeout", "0"), ("lock_timeout", "0"), ("idle_in_transaction_session_timeout", "0"),
        ("idle_session_timeout", "0"), ("transaction_timeout", "0"), ("default_transaction_read_only", "off"),
        ("search_path", "pg_catalog, pg_temp"),
    ]

    /// One statement, so that a server-wide timeout has a single short statement to cancel.
    static let ownSessionStatement = "SELECT " + ownSession.map { name, value in
        "CASE WHEN pg_catalog.current_setting('\(name)', true) IS NOT NULL THEN pg_catalog.set_config('\(name)', '\(value)', false) END"
    }.joined(separator: ", ")

    /// Runs `body` on a new connection to `database` (default: the target's), then closes it.
    /// The session first sets `ownSession` for itself. `sslmode` replaces the target's (a check
    /// that the server offers TLS after a reload).
    func withConnection<T: Sendable>(
        _ target: Target, database: String? = nil, sslmode: PostgresTargetSettings.SSLMode? = nil,
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let settings = try PostgresAdapter.settings(target)
        let (host, user, port, mode) = (settings.host, settings.user, settings.port, sslmode ?? settings.sslmode)
        // Checked when the target was read; checked again here, where the password would leave.
        if mode == .disable, !PostgresAdapter.isLocal(host) {
            throw PostgresAdapterError("target \(target.name): sslmode: disable would send the password in clear text to \(host); "
                                       + PostgresAdapter.cleartextAdvice)
        }
        var configuration: PostgresConnection.Configuration
        if host.hasPrefix("/") {
            configuration = PostgresConnection.Configuration(
                unixSocketPath: host + "/.s.PGSQL.\(port)", username: user, password: try password(target),
                database: database ?? settings.database)
        } else {
            let tls: PostgresConnection.Configuration.TLS
            switch mode {
            case .disable:
                tls = .disable
            case .require:
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.certificateVerification = .none
                tls = .require(try NIOSSLContext(configuration: configuration))
            case .verifyFull:
                tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
            configuration = PostgresConnection.Configuration(
                host: host, port: port, username: user, password: try password(target),
                database: database ?? settings.database, tls: tls)
            if mode == .verifyFull { configuration.options.tlsServerName = host }
        }
        configuration.options.connectTimeout = .seconds(5)
        let place = host.hasPrefix("/") ? "\(host)/.s.PGSQL.\(port)" : "\(host):\(port)"
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: PostgresAdapter.logger)
        } catch {
            throw PostgresAdapterError("cannot connect to \(place) as \(user): \(PostgresAdapter.describe(error, host: place))",
                                       noTLS: (error as? PSQLError)?.code == .sslUnsupported, shortage: PostgresShortage.isShortage(error))
        }
        return try await PostgresAdapter.$answer.withValue((.seconds(settings.timeout), place)) {
            do {
                try await PostgresAdapter.execute(connection, Self.ownSessionStatement)
                let result = try await body(connection)
                try? await connection.close()
                return result
            } catch let error as NoAnswer {
                // Kept as it is: the pass records what the server holds after a fix that ended so.
                try? await connection.close()
                throw error
            } catch {
                try? await connection.close()
                throw PostgresAdapterError(PostgresAdapter.describe(error), shortage: PostgresShortage.isShortage(error))
            }
        }
    }
}
