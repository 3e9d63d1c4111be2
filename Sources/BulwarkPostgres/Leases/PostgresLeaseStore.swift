package import BulwarkCore
internal import Foundation
internal import Logging
internal import NIOSSL
internal import PostgresNIO

/// Leases on targets held in a PostgreSQL table, for controller replicas (`run --controller`).
///
/// A lease is a row `(target, holder, nonce, token, expires_at)`: the holder is one process, its
/// replica name and the nonce it made at start (`ReplicaIdentity`); `token` comes from one sequence, so a
/// target's tokens only grow: a replica that took a target over holds a larger token than the
/// replica it took it from (a fencing token). Every comparison of time is the server's `now()`,
/// so replicas' clocks do not matter. Replicas announce themselves in `bulwark_replicas`
/// (heartbeat rows that expire) so that each can compute the same sharding of targets; a name
/// whose heartbeat is live belongs to the process (nonce) that wrote it until it expires.
///
/// One connection, opened on first use and opened again after an error.
package actor PostgresLeaseStore {
    package struct Settings: Sendable {
        package var host: String
        package var port: Int
        package var user: String
        package var database: String
        package var password: String?
        /// disable (loopback and Unix sockets only), require, verify-full (the default).
        package var sslmode: String
        /// How long one exchange with the store waits for its answer: a store that stopped
        /// answering held this replica's every lease call, and with them its cycles, for ever.
        package var answerLimit = Duration.seconds(30)

        /// `postgres://user@host:port/database?sslmode=…`. A password in the URL is refused: it
        /// would be on the command line and in `ps` (give it with the password file or variable).
        package init(dsn: String, password: String?) throws {
            guard let url = URLComponents(string: dsn), url.scheme == "postgres" || url.scheme == "postgresql",
                  let host = url.host, !host.isEmpty, let user = url.user, !user.isEmpty else {
                throw LeaseStoreError("--lease-dsn takes postgres://USER@HOST:PORT/DATABASE?sslmode=MODE")
            }
            guard url.password == nil else {
                throw LeaseStoreError("--lease-dsn must not hold a password (it would show in ps and logs): use --lease-password-file or BULWARK_LEASE_PASSWORD")
            }
            let mode = url.queryItems?.first { $0.name == "sslmode" }?.value ?? "verify-full"
            guard ["disable", "require", "verify-full"].contains(mode) else {
                throw LeaseStoreError("--lease-dsn: sslmode takes disable, require or verify-full, not '\(mode)'")
            }
            if mode == "disable", !PostgresAdapter.isLocal(host) {
                throw LeaseStoreError("--lease-dsn: sslmode=disable would send the password in clear text to \(host); \(PostgresAdapter.cleartextAdvice)")
            }
            self.host = host
            port = url.port ?? 5432
            self.user = user
            let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
            database = path.isEmpty ? "postgres" : path
            self.password = password
            sslmode = mode
        }
    }

    private let settings: Settings
    private var connection: PostgresConnection?
    private var prepared = false
    private var nextID = 1

    package init(_ settings: Settings) {
        self.settings = settings
    }

    // MARK: - The lease protocol

    /// Announces `replica` as live until `ttl` from now (server time), unless another process holds
    /// its name: a heartbeat under that name with another nonce that has not expired. Returns nil
    /// when announced, else that other heartbeat (nothing is written then). One statement.
    package func heartbeat(_ replica: ReplicaIdentity, ttl: Duration) async throws -> ReplicaHeartbeat? {
        try await run { connection in
            let rows = try await connection.query("""
                WITH announced AS (
                  INSERT INTO bulwark_replicas AS r (name, nonce, process, expires_at)
                  VALUES (\(replica.name), \(replica.nonce), \(replica.process), now() + \(Self.milliseconds(ttl)) * interval '1 millisecond')
                  ON CONFLICT (name) DO UPDATE SET nonce = EXCLUDED.nonce, process = EXCLUDED.process, expires_at = EXCLUDED.expires_at
                    WHERE r.nonce = EXCLUDED.nonce OR r.expires_at <= now()
                  RETURNING 1)
                SELECT true, ''::text, now(), 0::bigint FROM announced
                UNION ALL
                SELECT false, process, expires_at, (extract(epoch FROM expires_at - now()) * 1000)::bigint FROM bulwark_replicas
                  WHERE name = \(replica.name) AND NOT EXISTS (SELECT 1 FROM announced)
                """, logger: PostgresAdapter.logger)
            for try await (announced, process, expiresAt, milliseconds) in rows.decode((Bool, String, Date, Int64).self) {
                return announced ? nil : ReplicaHeartbeat(name: replica.name, process: process, expiresAt: expiresAt,
                                                          expiresIn: .milliseconds(max(0, milliseconds)))
            }
            // The other heartbeat went between the two halves of the statement (expired or left).
            throw LeaseStoreError("the heartbeat of \(replica.name) was neither written nor refused; tried again next round")
        }
    }

    /// The replicas whose heartbeat has not expired, sorted.
    package func liveReplicas() async throws -> [String] {
        try await run { connection in
            var names: [String] = []
            for try await name in try await connection.query("SELECT name FROM bulwark_replicas WHERE expires_at > now() ORDER BY name",
                                                             logger: PostgresAdapter.logger).decode(String.self) {
                names.append(name)
            }
            return names
        }
    }

    /// Takes `target` for `holder` until `ttl` from now, or renews it: when nobody holds it, its
    /// lease expired, or `holder` (this very process: name and nonce) already holds it. Returns the fencing token (the same while a
    /// lease is renewed without expiring, a new larger one when taken), nil when another live
    /// replica holds it. One statement: two replicas racing for a target cannot both win.
    package func acquire(_ target: String, holder: ReplicaIdentity, ttl: Duration) async throws -> Int64? {
        try await run { connection in
            let rows = try await connection.query("""
                INSERT INTO bulwark_leases AS l (target, holder, nonce, token, expires_at)
                VALUES (\(target), \(holder.name), \(holder.nonce), nextval('bulwark_lease_token'), now() + \(Self.milliseconds(ttl)) * interval '1 millisecond')
                ON CONFLICT (target) DO UPDATE
                  SET token = CASE WHEN l.holder = EXCLUDED.holder AND l.nonce = EXCLUDED.nonce AND l.expires_at > now() THEN l.token ELSE EXCLUDED.token END,
                      holder = EXCLUDED.holder, nonce = EXCLUDED.nonce, expires_at = EXCLUDED.expires_at
                  WHERE (l.holder = EXCLUDED.holder AND l.nonce = EXCLUDED.nonce) OR l.expires_at <= now()
                RETURNING token
                """, logger: PostgresAdapter.logger)
            for try await token in rows.decode(Int64.self) { return token }
            return nil
        }
    }

    /// Gives `target` up, if `holder` holds it.
    package func release(_ target: String, holder: ReplicaIdentity) async throws {
        _ = try await run { connection in
            try await connection.query("DELETE FROM bulwark_leases WHERE target = \(target) AND holder = \(holder.name) AND nonce = \(holder.nonce)",
                                       logger: PostgresAdapter.logger)
        }
    }

    /// Whether `holder` still holds `target` with `token`, unexpired: asked right before a change.
    package func holds(_ target: String, holder: ReplicaIdentity, token: Int64) async throws -> Bool {
        try await run { connection in
            let rows = try await connection.query("""
                SELECT 1 FROM bulwark_leases
                WHERE target = \(target) AND holder = \(holder.name) AND nonce = \(holder.nonce) AND token = \(token) AND expires_at > now()
                """, logger: PostgresAdapter.logger)
            for try await _ in rows { return true }
            return false
        }
    }

    /// Says `replica` is gone and gives up its leases (a graceful stop: others take over at once).
    /// Only this process's: another process's heartbeat or leases under the same name stay.
    package func leave(_ replica: ReplicaIdentity) async throws {
        try await run { connection in
            try await connection.query("DELETE FROM bulwark_leases WHERE holder = \(replica.name) AND nonce = \(replica.nonce)",
                                       logger: PostgresAdapter.logger)
            try await connection.query("DELETE FROM bulwark_replicas WHERE name = \(replica.name) AND nonce = \(replica.nonce)",
                                       logger: PostgresAdapter.logger)
        }
    }

    package func close() async {
        try? await connection?.close()
        connection = nil
    }

    // MARK: - Connection

    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds.multipliedReportingOverflow(by: 1000).overflow ? Int64.max : seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Runs `body` on the connection (opened, and the tables made, on first use); an error drops
    /// the connection, so the next call opens a new one.
    private func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        do {
            let connection = try await connected()
            return try await Deadline.run(settings.answerLimit, awaiting: "answer from the lease store") { try await body(connection) }
        } catch {
            try? await connection?.close()
            connection = nil
            throw LeaseStoreError("lease store \(settings.host):\(settings.port)/\(settings.database): \(PostgresAdapter.describe(error))")
        }
    }

    private func connected() async throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        var configuration: PostgresConnection.Configuration
        if settings.host.hasPrefix("/") {
            configuration = .init(unixSocketPath: settings.host + "/.s.PGSQL.\(settings.port)", username: settings.user,
                                  password: settings.password, database: settings.database)
        } else {
            let tls: PostgresConnection.Configuration.TLS
            switch settings.sslmode {
            case "disable": tls = .disable
            case "require":
                var client = TLSConfiguration.makeClientConfiguration()
                client.certificateVerification = .none
                tls = .require(try NIOSSLContext(configuration: client))
            default: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
            configuration = .init(host: settings.host, port: settings.port, username: settings.user, password: settings.password,
                                  database: settings.database, tls: tls)
            if settings.sslmode == "verify-full" { configuration.options.tlsServerName = settings.host }
        }
        configuration.options.connectTimeout = .seconds(5)
        nextID += 1
        let opened = try await PostgresConnection.connect(configuration: configuration, id: nextID, logger: PostgresAdapter.logger)
        connection = opened
        if !prepared {
            // One replica at a time creates the tables (CREATE … IF NOT EXISTS races with itself).
            try await opened.query("SELECT pg_advisory_lock(4242170001)", logger: PostgresAdapter.logger)
            do {
                // Tables an older Bulwark made have no nonce (nor process) column: it is added, with
                // '' for the rows already there (the nonce of no process this version starts).
                for statement in [
                    "CREATE SEQUENCE IF NOT EXISTS bulwark_lease_token",
                    "CREATE TABLE IF NOT EXISTS bulwark_leases (target text PRIMARY KEY, holder text NOT NULL, token bigint NOT NULL, expires_at timestamptz NOT NULL)",
                    "ALTER TABLE bulwark_leases ADD COLUMN IF NOT EXISTS nonce text NOT NULL DEFAULT ''",
                    "CREATE TABLE IF NOT EXISTS bulwark_replicas (name text PRIMARY KEY, expires_at timestamptz NOT NULL)",
                    "ALTER TABLE bulwark_replicas ADD COLUMN IF NOT EXISTS nonce text NOT NULL DEFAULT ''",
                    "ALTER TABLE bulwark_replicas ADD COLUMN IF NOT EXISTS process text NOT NULL DEFAULT ''",
                ] { try await PostgresAdapter.execute(opened, statement) }
            } catch {
                _ = try? await opened.query("SELECT pg_advisory_unlock(4242170001)", logger: PostgresAdapter.logger)
                throw error
            }
            try await opened.query("SELECT pg_advisory_unlock(4242170001)", logger: PostgresAdapter.logger)
            prepared = true
        }
        return opened
    }
}

package struct LeaseStoreError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
