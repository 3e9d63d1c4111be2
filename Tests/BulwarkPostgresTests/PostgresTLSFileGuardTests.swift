import BulwarkCore
@testable import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// TLS files the server reads but cannot use, judged before they are set: a key that is not the
/// certificate's (the reload kept the old pair, the fix was verified since the certificate it
/// presented was the file's, and the next start failed), a CA, revocation list or DH parameters
/// file that holds none (a reload keeps the old configuration, or falls back to built-in DH
/// parameters, while SHOW reports the new file; the next start fails). Each harmful change is
/// blocked and recorded once; its legitimate twin is verified, and the server starts again.
extension PostgresGuardTests {
    /// A file in the server's folder holding `text`, the server's to read: its path.
    func serverFile(_ server: PostgresServer, _ name: String, _ text: String) throws -> String {
        let path = server.directory + "/" + name
        try write(path, text)
        try server.giveToServer([path])
        return path
    }

    /// The server still starts, and a client that requires TLS connects.
    func expectStartsWithTLS(_ server: PostgresServer, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        try server.stop()
        try server.start()
        #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t",
                sourceLocation: sourceLocation)
    }

    /// Harmful: `ssl_key_file` alone, naming another certificate's key.
    @Test func aKeyThatIsNotTheCertificatesIsBlocked() async throws {
        let (server, _, key) = try tlsServer()
        let (_, otherKey) = try server.makeCertificate(name: "other")
        let reason = try await expectBlocked(try settings(server, "ssl_key_file: \(otherKey)"), server, name: "tls")
        #expect(reason.contains("ssl_key_file: '\(otherKey)' is not the key of the certificate the server would present (ssl_cert_file '"),
                "\(reason)")
        #expect(!reason.contains("PRIVATE KEY"), "the key's bytes are never shown")
        #expect(try server.psql("SHOW ssl_key_file") == key)
        try expectStartsWithTLS(server)
    }

    /// The twin: the same key under another path (moved to a key store) is verified.
    @Test func theCertificatesOwnKeyUnderAnotherPathIsVerified() async throws {
        let (server, _, key) = try tlsServer()
        let moved = try serverFile(server, "moved.key", try read(key))
        chmod(moved, 0o600)
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl_key_file: \(moved)"), server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl_key_file") == moved)
        try expectStartsWithTLS(server)
    }

    /// Harmful: `ssl_ca_file` naming a file that is no certificate, or none at all.
    @Test func aCAFileWithoutACertificateIsBlocked() async throws {
        let (server, _, _) = try tlsServer()
        let garbage = try serverFile(server, "garbage-ca.crt", "not a certificate\n")
        var reason = try await expectBlocked(try settings(server, "ssl_ca_file: \(garbage)"), server, name: "tls")
        #expect(reason.contains("ssl_ca_file: '\(garbage)' holds no PEM certificate: the server would not load its TLS configuration"),
                "\(reason)")
        reason = try await expectBlocked(try settings(server, "ssl_ca_file: /nonexistent/ca.crt"), server, name: "tls")
        #expect(reason.contains("ssl_ca_file: the server cannot read '/nonexistent/ca.crt'"), "\(reason)")
        #expect(try server.psql("SHOW ssl_ca_file") == "")
        try expectStartsWithTLS(server)
    }

    /// The twin: a real CA certificate is verified.
    @Test func aCAFileWithACertificateIsVerified() async throws {
        let (server, _, _) = try tlsServer()
        let (authority, _) = try server.makeAuthority()
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl_ca_file: \(authority)"), server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl_ca_file") == authority)
        try expectStartsWithTLS(server)
    }

    /// Harmful: `ssl_crl_file` naming a revocation list cut short (a copy that stopped half way).
    @Test func aRevocationListCutShortIsBlocked() async throws {
        let (server, _, _) = try tlsServer()
        let (_, revocations) = try server.makeAuthority()
        let lines = try read(revocations).split(separator: "\n")
        let cut = try serverFile(server, "cut.crl", (lines.prefix(lines.count / 2) + [lines[lines.count - 1]]).joined(separator: "\n") + "\n")
        let reason = try await expectBlocked(try settings(server, "ssl_crl_file: \(cut)"), server, name: "tls")
        #expect(reason.contains("ssl_crl_file: '\(cut)' holds a PEM X509 CRL that cannot be read: the server would not load"), "\(reason)")
        #expect(try server.psql("SHOW ssl_crl_file") == "")
        try expectStartsWithTLS(server)
    }

    /// The twin: the authority's real revocation list is verified.
    @Test func aRevocationListIsVerified() async throws {
        let (server, _, _) = try tlsServer()
        let (_, revocations) = try server.makeAuthority()
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl_crl_file: \(revocations)"), server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl_crl_file") == revocations)
        try expectStartsWithTLS(server)
    }

    /// Harmful: `ssl_dh_params_file` naming a file that holds no DH parameters (a certificate):
    /// the reload falls back to the built-in parameters, so TLS goes on working and the fix was
    /// verified, and the next start fails.
    @Test func aDHParametersFileWithoutParametersIsBlocked() async throws {
        let (server, certificate, _) = try tlsServer()
        let reason = try await expectBlocked(try settings(server, "ssl_dh_params_file: \(certificate)"), server, name: "tls")
        #expect(reason.contains("ssl_dh_params_file: '\(certificate)' holds no PEM DH PARAMETERS: the server would not load"), "\(reason)")
        #expect(try server.psql("SHOW ssl_dh_params_file") == "")
        try expectStartsWithTLS(server)
    }

    /// The twin: RFC 7919's ffdhe2048 group is verified.
    @Test func aDHParametersFileIsVerified() async throws {
        let (server, _, _) = try tlsServer()
        let parameters = try server.makeDHParameters()
        let (_, outcome) = try await reconcilePostgres(try settings(server, "ssl_dh_params_file: \(parameters)"), server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SHOW ssl_dh_params_file") == parameters)
        try expectStartsWithTLS(server)
    }
}
