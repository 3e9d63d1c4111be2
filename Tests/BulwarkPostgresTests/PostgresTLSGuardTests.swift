import BulwarkCore
@testable import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// An outside review: `ssl: off` was applied while clients used TLS (each refused when it
/// connected again: "server does not support SSL, but SSL was required"), and a typo in
/// `ssl_cert_file` was recorded verified though the server could not load it (and its next
/// start failed).
extension PostgresGuardTests {
    /// TLS on, with a certificate and key of its own.
    func tlsServer(on: Bool = true) throws -> (server: PostgresServer, certificate: String, key: String) {
        let server = try PostgresServer()
        let (certificate, key) = try server.makeCertificate()
        try server.psql("ALTER SYSTEM SET ssl_cert_file = '\(certificate)'")
        try server.psql("ALTER SYSTEM SET ssl_key_file = '\(key)'")
        try server.psql("ALTER SYSTEM SET ssl = \(on ? "on" : "off")")
        try server.psql("SELECT pg_reload_conf()")
        if on { #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t") }
        return (server, certificate, key)
    }

    func settings(_ server: PostgresServer, _ settings: String) throws -> DesiredState {
        try postgresState(server, "apiVersion: bulwark/v1\nkind: PostgresSetting\nmetadata: {name: tls}\nspec: {settings: {\(settings)}}\n")
    }

    /// Harmful: `ssl: off` while an application's session uses TLS. Blocked, recorded once,
    /// nothing written, and a client that requires TLS still connects. Once that session is
    /// gone the same change goes through (the guard's twin).
    @Test func turningSslOffWhileASessionUsesTLSIsBlocked() async throws {
        let (server, _, _) = try tlsServer()
        let session = try server.hold("SELECT 1", application: "tls-pool")
        defer { session.release() }
        #expect(try server.psql("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'tls-pool'") == "t")
        let state = try settings(server, "ssl: \"off\"")
        let reason = try await expectBlocked(state, server, name: "tls")
        #expect(reason.contains("ssl: 'off' turns TLS off while 1 session on db-1 uses it"), "\(reason)")
        #expect(try server.psql("SHOW ssl", sslmode: "require") == "on", "a client that requires TLS still connects")

        session.release()
        for _ in 0..<100 where try server.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tls-pool'") != "0" {
            try await Task.sleep(for: .milliseconds(50))
        }
        let (_, outcome) = try await reconcilePostgres(state, server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl", sslmode: "disable") == "off")
    }

    /// Harmful: `ssl: off` where Bulwark's own target uses `sslmode: require`: it would be
    /// refused itself (the change used to be made, then undone only because Bulwark's next
    /// session failed). Blocked before anything is written, recorded once.
    @Test func turningSslOffWhileBulwarksOwnTargetRequiresTLSIsBlocked() async throws {
        let (server, _, _) = try tlsServer()
        let state = try postgresState(server, target: """
            {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, database: postgres,
                   passwordFile: \(server.passwordFile("db-1")), sslmode: require}
            """, "apiVersion: bulwark/v1\nkind: PostgresSetting\nmetadata: {name: tls}\nspec: {settings: {ssl: \"off\"}}\n")
        let reason = try await expectBlocked(state, server, name: "tls")
        #expect(reason.contains("ssl: 'off': Bulwark connects to db-1 with sslmode require, and would be refused itself"), "\(reason)")
        #expect(try server.psql("SHOW ssl", sslmode: "require") == "on")
    }

    /// Harmful: `ssl_min_protocol_version: TLSv1.3` while a session uses TLSv1.2 (made so by a
    /// server-wide maximum, lifted again once it is connected): that client would be refused
    /// when it connects again. Blocked, recorded once; once it is gone, applied (the twin).
    @Test func raisingTheLeastTLSVersionAboveOneInUseIsBlocked() async throws {
        let (server, _, _) = try tlsServer()
        try server.psql("ALTER SYSTEM SET ssl_max_protocol_version = 'TLSv1.2'")
        try server.psql("SELECT pg_reload_conf()")
        let session = try server.hold("SELECT 1", application: "old-tls")
        defer { session.release() }
        try server.psql("ALTER SYSTEM RESET ssl_max_protocol_version")
        try server.psql("SELECT pg_reload_conf()")
        #expect(try server.psql("SELECT s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'old-tls'")
                == "TLSv1.2")
        let state = try settings(server, "ssl_min_protocol_version: TLSv1.3")
        let reason = try await expectBlocked(state, server, name: "tls")
        #expect(reason.contains("ssl_min_protocol_version: 'TLSv1.3' refuses the TLS version TLSv1.2 that 1 session on db-1 uses now"),
                "\(reason)")
        #expect(try server.psql("SHOW ssl_min_protocol_version") == "TLSv1.2")

        session.release()
        for _ in 0..<100 where try server.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'old-tls'") != "0" {
            try await Task.sleep(for: .milliseconds(50))
        }
        let (_, outcome) = try await reconcilePostgres(state, server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "TLSv1.3")
    }

    /// The legitimate twin of the weakening: TLS turned on, with a certificate and key the
    /// server can load, is applied and verified, and a client that requires TLS connects.
    @Test func turningSslOnWithRealCertificateFilesIsVerified() async throws {
        let (server, _, _) = try tlsServer(on: false)
        #expect(throws: (any Error).self) { try server.psql("SELECT 1", sslmode: "require") }
        let (plan, outcome) = try await reconcilePostgres(try settings(server, "ssl: \"on\""), server)
        #expect(plan.remediations.map(\.decision) == [.applied])
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t")
    }

    /// Harmful: TLS turned on with a certificate file that does not exist. The reload kept no
    /// TLS configuration (TLS clients refused) while SHOW said the new file, the fix was recorded
    /// verified, and the next start failed. Blocked, recorded once, nothing written; the server
    /// still starts.
    @Test func aTLSFileTheServerCannotReadIsBlocked() async throws {
        let (server, _, key) = try tlsServer(on: false)
        let reason = try await expectBlocked(try settings(server, "ssl: \"on\", ssl_cert_file: /nonexistent/server.crt, ssl_key_file: \(key)"),
                                             server, name: "tls")
        #expect(reason.contains("ssl_cert_file: the server cannot read '/nonexistent/server.crt'"), "\(reason)")
        #expect(reason.contains("the next start would fail"), "\(reason)")
        #expect(try server.psql("SHOW ssl_cert_file") != "/nonexistent/server.crt")
        try server.stop()
        try server.start()
        #expect(try server.psql("SHOW ssl") == "off")
    }

    /// Past the guard, a certificate file the server reads but cannot use (not a certificate):
    /// after the reload the server offers no TLS. The fix is not verified: it fails, saying so,
    /// and is undone, so that the next start does not fail.
    @Test func aCertificateTheReloadDidNotLoadIsUndoneNotVerified() async throws {
        let (server, _, key) = try tlsServer(on: false)
        let garbage = server.directory + "/garbage.crt"
        try write(garbage, "not a certificate\n")
        if isRoot, let owner = getpwnam("postgres") { chown(garbage, owner.pointee.pw_uid, owner.pointee.pw_gid) }
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl: \"on\", ssl_cert_file: \(garbage), ssl_key_file: \(key)"), server)
        let entry = try #require(outcome.entries.first)
        #expect(outcome.verified.isEmpty)
        #expect(entry.record.error?.contains("after the reload the server offers no TLS to a new connection") == true,
                "\(entry.record.error ?? entry.record.reason ?? "")")
        #expect(entry.record.error?.contains("the change was undone") == true)
        #expect(try server.psql("SHOW ssl") == "off")
        #expect(try server.psql("SHOW ssl_cert_file") != garbage)
        try server.stop()
        try server.start()
        #expect(try server.psql("SELECT 1") == "1", "the next start does not fail")
    }

    /// The legitimate twin: a certificate file the server can read is verified, and the
    /// server presents it (a client that requires TLS connects after a restart too).
    @Test func aReadableCertificateFileIsVerified() async throws {
        let (server, _, _) = try tlsServer()
        let (certificate, key) = try server.makeCertificate(name: "renewed")
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl: \"on\", ssl_cert_file: \(certificate), ssl_key_file: \(key)"), server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl_cert_file") == certificate)
        try server.stop()
        try server.start()
        #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t")
    }
}
