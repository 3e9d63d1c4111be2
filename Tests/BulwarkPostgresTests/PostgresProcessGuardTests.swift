import BulwarkCore
@testable import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// A replica's stream: `pg_receivewal`, which streams the WAL as a standby's walreceiver does,
/// as `postgres` over TLS or not (libpq's `sslmode`), at most `maxTLS`. Shows in
/// `pg_stat_replication` as `name`; `stop` ends it (by its pid).
final class WALStream {
    let server: PostgresServer
    let name: String
    let process = Process()

    init(_ server: PostgresServer, name: String, sslmode: String, maxTLS: String? = nil) throws {
        (self.server, self.name) = (server, name)
        let folder = server.directory + "/wal-" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: PostgresServer.binaries + "/pg_receivewal")
        process.arguments = ["-D", folder, "-h", "127.0.0.1", "-p", String(server.port), "-U", "postgres", "-w"]
        var environment = ["PGPASSWORD": server.password, "PGSSLMODE": sslmode, "PGAPPNAME": name]
        environment["PGSSLMAXPROTOCOLVERSION"] = maxTLS
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 {
            if try server.psql("SELECT count(*) FROM pg_stat_replication WHERE application_name = '\(name)' AND state = 'streaming'") == "1" {
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        stop()
        throw SupportError("pg_receivewal \(name) did not start streaming")
    }

    /// SIGINT, which pg_receivewal takes as its stop (it outlived a SIGTERM); SIGKILL if it has
    /// not ended within 5 s.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGINT)
        for _ in 0..<100 where process.isRunning { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// An outside review of the PostgreSQL guards: a background process counted as a session where
/// Bulwark's role may not see its type (`ssl: off` always blocked so, and a role's login judged
/// on processes that were not its sessions); a replica streaming over TLS not counted when TLS
/// was turned off; a certificate the reload could not load verified because TLS still worked
/// with the old one; `ssl: off` applied while pg_hba.conf admitted clients only over TLS; and a
/// guard that ran out of connections blocked, offering a person the approval of a change no
/// guard had judged.
extension PostgresGuardTests {
    /// A target `db-1` on which Bulwark connects as `user`.
    func state(_ server: PostgresServer, as user: String, _ manifest: String) throws -> DesiredState {
        try postgresState(server, target: """
            {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: \(user), database: postgres,
                   passwordFile: \(server.passwordFile("db-1")), sslmode: disable}
            """, manifest)
    }

    /// `manager`: may set `ssl` and reload, and read pg_hba_file_rules, but is neither superuser
    /// nor a member of pg_read_all_stats.
    func manager(_ server: PostgresServer) throws {
        try server.psql("""
            CREATE ROLE manager LOGIN CREATEROLE PASSWORD '\(server.password)';
            GRANT ALTER SYSTEM ON PARAMETER ssl TO manager; GRANT EXECUTE ON FUNCTION pg_reload_conf() TO manager;
            GRANT SELECT ON pg_hba_file_rules TO manager; GRANT EXECUTE ON FUNCTION pg_hba_file_rules() TO manager;
            """)
    }

    func waitUntilGone(_ server: PostgresServer, application: String) async throws {
        for _ in 0..<100 where try server.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '\(application)'") != "0" {
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    // MARK: - Processes Bulwark's role may not see

    /// Bulwark connects as `manager`, which sees of another role's process its user and
    /// database but neither its type nor its TLS. The server's background processes (the
    /// checkpointer, the autovacuum and logical replication launchers) were each counted as a
    /// session using TLS, and `ssl: off` was always blocked. Now, with only those running, it is
    /// applied (the twin); with an application's TLS session open, which `manager` cannot see
    /// the TLS of, it is blocked, saying what it cannot see, never counted either way.
    @Test func sslOffJudgedByARoleThatMayNotSeeProcessesCountsNoBackgroundProcessAndSaysWhatItCannotSee() async throws {
        let (server, _, _) = try tlsServer()
        try manager(server)
        try server.psql("CREATE ROLE app LOGIN PASSWORD '\(server.password)'")
        let state = try state(server, as: "manager", "apiVersion: bulwark/v1\nkind: PostgresSetting\nmetadata: {name: tls}\nspec: {settings: {ssl: \"off\"}}\n")
        #expect(try server.psql("SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type <> 'client backend'") == "t")

        let session = try server.hold("SELECT 1", application: "tls-app", user: "app")
        defer { session.release() }
        #expect(try server.psql("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'tls-app'") == "t")
        let reason = try await expectBlocked(state, server, name: "tls")
        #expect(reason.contains("ssl: 'off': Bulwark's role manager may not see what 1 process on db-1 is (it is neither superuser nor a "
                                + "member of pg_read_all_stats"), "\(reason)")
        #expect(reason.contains("whether it is a session or a replica that uses TLS cannot be judged"), "\(reason)")
        #expect(!reason.contains("turns TLS off while"), "nothing it cannot see is counted as a session: \(reason)")
        #expect(try server.psql("SHOW ssl", sslmode: "require") == "on")

        session.release()
        try await waitUntilGone(server, application: "tls-app")
        let (_, outcome) = try await reconcilePostgres(state, server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl", sslmode: "disable") == "off")
    }

    // MARK: - Replicas

    /// A replica streaming over TLS (here pg_receivewal, as a standby's walreceiver streams) was
    /// not counted: `ssl: off`, or a least TLS version above the one it uses, was applied, and
    /// the replica was cut off when its stream restarted. Both are blocked and recorded once,
    /// naming it; the server keeps TLS.
    @Test func turningSslOffOrRaisingTheLeastTLSVersionWhileAReplicaStreamsOverTLSIsBlocked() async throws {
        let (server, _, _) = try tlsServer()
        let stream = try WALStream(server, name: "standby-1", sslmode: "require", maxTLS: "TLSv1.2")
        defer { stream.stop() }
        #expect(try server.psql("SELECT s.ssl || ' ' || s.version FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid)") == "true TLSv1.2")

        let off = try await expectBlocked(try settings(server, "ssl: \"off\""), server, name: "tls")
        #expect(off.contains("ssl: 'off' turns TLS off while 1 replication connection (pg_stat_replication: 'standby-1') on db-1 uses it now"),
                "\(off)")
        #expect(try server.psql("SHOW ssl", sslmode: "require") == "on")

        let minimum = try await expectBlocked(try settings(server, "ssl_min_protocol_version: TLSv1.3"), server, name: "tls")
        #expect(minimum.contains("ssl_min_protocol_version: 'TLSv1.3' refuses the TLS version TLSv1.2 that 1 replication connection "
                                 + "(pg_stat_replication: 'standby-1') on db-1 uses now"), "\(minimum)")
        #expect(try server.psql("SHOW ssl_min_protocol_version") == "TLSv1.2")
        #expect(try server.psql("SELECT state FROM pg_stat_replication WHERE application_name = 'standby-1'") == "streaming")
    }

    /// The twin: a replica streaming without TLS keeps streaming when TLS is turned off, and the
    /// change is applied and verified.
    @Test func turningSslOffWhileAReplicaStreamsWithoutTLSIsApplied() async throws {
        let (server, _, _) = try tlsServer()
        let stream = try WALStream(server, name: "standby-2", sslmode: "disable")
        defer { stream.stop() }
        #expect(try server.psql("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid)") == "f")
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl: \"off\""), server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl", sslmode: "disable") == "off")
        #expect(try server.psql("SELECT state FROM pg_stat_replication WHERE application_name = 'standby-2'") == "streaming")
    }

    // MARK: - pg_hba.conf

    /// `ssl: off` while pg_hba.conf admits an application's network only over TLS (`hostssl`):
    /// every client that line admits is refused from then on, connected now or not. Blocked,
    /// recorded once, naming the line; with that line made `host`, applied (the twin).
    @Test func turningSslOffWhilePgHbaAdmitsClientsOnlyOverTLSIsBlocked() async throws {
        let (server, _, _) = try tlsServer()
        let hba = try server.psql("SHOW hba_file")
        let original = try String(contentsOfFile: hba, encoding: .utf8)
        try (original + "hostssl all app 10.0.0.0/8 scram-sha-256\nhostssl all all 192.168.0.0/16 reject\n")
            .write(toFile: hba, atomically: false, encoding: .utf8)
        try server.psql("SELECT pg_reload_conf()")
        let line = try server.psql("SELECT line_number FROM pg_hba_file_rules WHERE type = 'hostssl' AND auth_method <> 'reject'")
        let state = try settings(server, "ssl: \"off\"")
        let reason = try await expectBlocked(state, server, name: "tls")
        #expect(reason.contains("ssl: 'off': pg_hba.conf ('\(hba)') admits clients only over TLS at line \(line) "
                                + "('hostssl all app 10.0.0.0/255.0.0.0 scram-sha-256'): with TLS off no connection matches that line"),
                "\(reason)")
        #expect(!reason.contains("192.168"), "a reject line admits no one: \(reason)")
        #expect(try server.psql("SHOW ssl", sslmode: "require") == "on")

        try (original + "host all app 10.0.0.0/8 scram-sha-256\n").write(toFile: hba, atomically: false, encoding: .utf8)
        try server.psql("SELECT pg_reload_conf()")
        let (_, outcome) = try await reconcilePostgres(state, server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl", sslmode: "disable") == "off")
    }

    // MARK: - A certificate the reload did not load, with TLS on

    /// With TLS already on, a certificate file that exists but holds no certificate was
    /// recorded verified: the reload kept the old certificate ("SSL configuration was not
    /// reloaded"), TLS still worked, SHOW named the new file, and the next start failed. Now the
    /// fix fails, saying so, and is undone; the server starts again.
    @Test func aGarbageCertificateWithTLSOnIsUndoneNotVerified() async throws {
        let (server, certificate, _) = try tlsServer()
        let garbage = server.directory + "/garbage.crt"
        try write(garbage, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
        if isRoot, let owner = getpwnam("postgres") { chown(garbage, owner.pointee.pw_uid, owner.pointee.pw_gid) }
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl_cert_file: \(garbage)"), server)
        let entry = try #require(outcome.entries.first)
        #expect(outcome.verified.isEmpty)
        #expect(entry.record.error?.contains("ssl_cert_file: '\(garbage)' holds no PEM certificate: the server did not load it") == true,
                "\(entry.record.error ?? entry.record.reason ?? "")")
        #expect(entry.record.error?.contains("the change was undone") == true)
        #expect(try server.psql("SHOW ssl_cert_file") == certificate)
        try server.stop()
        try server.start()
        #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t")
    }

    /// A renewed certificate given without its key (the old key does not match it): the reload
    /// kept the old certificate and key, and the fix was verified. Now it fails and is undone;
    /// with its own key beside it, the same certificate is applied and presented (the twin).
    @Test func aCertificateWhoseKeyDoesNotMatchIsUndoneAndWithItsKeyIsVerified() async throws {
        let (server, certificate, _) = try tlsServer()
        let (renewed, renewedKey) = try server.makeCertificate(name: "renewed")
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl_cert_file: \(renewed)"), server)
        let entry = try #require(outcome.entries.first)
        #expect(outcome.verified.isEmpty)
        #expect(entry.record.error?.contains("a new connection still gets the certificate the server had before, not the one in '\(renewed)'")
                == true, "\(entry.record.error ?? entry.record.reason ?? "")")
        #expect(entry.record.error?.contains("the change was undone") == true)
        #expect(try server.psql("SHOW ssl_cert_file") == certificate)

        let (_, fixed) = try await reconcilePostgres(try settings(server, "ssl_cert_file: \(renewed), ssl_key_file: \(renewedKey)"), server)
        #expect(fixed.verified.count == 1, "\(fixed.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        let presented = server.directory + "/presented.der"
        #expect(FileManager.default.createFile(atPath: presented, contents: Data(try await PresentedCertificate.read(host: "127.0.0.1", port: server.port))))
        func fingerprint(_ arguments: [String]) throws -> String {
            try run("/usr/bin/openssl", ["x509", "-noout", "-fingerprint", "-sha256"] + arguments).stdout
        }
        #expect(try fingerprint(["-inform", "DER", "-in", presented]) == fingerprint(["-in", renewed]), "the server presents the renewed certificate")
        #expect(try fingerprint(["-in", renewed]).contains("Fingerprint="))
        try server.stop()
        try server.start()
        #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t")
    }

    // MARK: - A guard that runs short of connections

    /// The guard could not connect: the connections its role may have were all taken (SQLSTATE
    /// 53300, "too many connections for role"). It blocked, and a person could approve a change no
    /// guard had judged; now it is unjudged (the pass counts the resource as not observed). Any
    /// other failure still blocks (a wrong password), and with a connection free the guard
    /// judges (the twin).
    @Test func aGuardThatRunsOutOfConnectionsLeavesTheChangeUnjudgedNotBlocked() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE manager LOGIN CREATEROLE CONNECTION LIMIT 1 PASSWORD '\(server.password)'")
        let manifest = "apiVersion: bulwark/v1\nkind: PostgresSetting\nmetadata: {name: logging}\nspec: {settings: {log_connections: \"on\"}}\n"
        let state = try state(server, as: "manager", manifest)
        let resource = try #require(state.resources.values.first { $0.id.name == "logging" })
        let target = try #require(state.targets["db-1"])
        let driver = try #require(postgresRegistry(server).kinds["PostgresSetting"]).driver
        let change = [PropertyDrift(property: "log_connections", desired: "on", observed: "off")]

        let session = try server.hold("SELECT 1", application: "manager-1", user: "manager")
        defer { session.release() }
        let verdict = await driver.assess(change, to: resource, on: target)
        #expect(verdict.isUnjudged, "\(verdict)")
        #expect(verdict.blockReason?.contains("SQLSTATE 53300") == true, "\(verdict)")
        #expect(verdict.blockReason?.contains("ran short of resources") == true, "\(verdict)")

        session.release()
        try await waitUntilGone(server, application: "manager-1")
        #expect(await driver.assess(change, to: resource, on: target) == .allow)

        try server.psql("ALTER ROLE manager PASSWORD 'another'")
        let wrong = await driver.assess(change, to: resource, on: target)
        #expect(!wrong.isUnjudged && wrong.blockReason?.contains("cannot read db-1 to judge the change") == true, "\(wrong)")
    }
}
