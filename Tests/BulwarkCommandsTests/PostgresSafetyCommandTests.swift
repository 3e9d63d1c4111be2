import BulwarkTestSupport
import Foundation
import Testing

/// An outside review of the PostgreSQL kinds, through `bulwark apply` against a real server,
/// each refusal read back from the audit branch with git: `ssl: off` with `password_encryption:
/// md5` from one committer was applied with no second person; a typo in `ssl_cert_file` was
/// recorded verified though the server refused it (and its next start failed); two superusers
/// losing their login in one pass left none. Each harmful change is now held or blocked and
/// recorded; its legitimate twin is applied.
@Suite(.serialized, .enabled(if: PostgresServer.available, "needs PostgreSQL 15"))
struct PostgresSafetyCommandTests {
    static func controllers(_ server: PostgresServer, user: String = "postgres") -> String {
        """
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: db-1}
        spec: {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: \(user), database: postgres,
               passwordEnv: BULWARK_DB_1_PASSWORD, sslmode: disable}
        ---
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: db}
        spec: {kinds: [PostgresSetting, PostgresRole], targets: {names: [db-1]}}
        """
    }

    static func settings(_ settings: String) -> String {
        "apiVersion: bulwark/v1\nkind: PostgresSetting\nmetadata: {name: tls}\nspec: {settings: {\(settings)}}\n"
    }

    /// The newest audit record of `resource`.
    static func record(_ s: Scenario, _ resource: String) throws -> String {
        try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit", "--grep", resource)
    }

    /// A server with a certificate and key of its own, TLS `on` or off.
    static func tlsServer(on: Bool) throws -> (PostgresServer, certificate: String, key: String) {
        let server = try PostgresServer()
        let (certificate, key) = try server.makeCertificate()
        try server.psql("ALTER SYSTEM SET ssl_cert_file = '\(certificate)'")
        try server.psql("ALTER SYSTEM SET ssl_key_file = '\(key)'")
        try server.psql("ALTER SYSTEM SET ssl = \(on ? "on" : "off")")
        try server.psql("SELECT pg_reload_conf()")
        return (server, certificate, key)
    }

    /// The policy `bulwark init` writes sets `password_encryption` and `log_connections` in its
    /// CIS resources; the weaker revision edits them there, and turns `ssl` off in its own.
    @Test func sslOffAndMd5FromOneCommitterAreHeldAndRecordedWhileSslOnIsApplied() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (server, _, _) = try Self.tlsServer(on: true)
            let environment = ["BULWARK_DB_1_PASSWORD": server.password]
            let cis = "desired-state/postgres/cis-postgresql.yaml"
            let strong = try read(s.policy + "/" + cis)
            #expect(strong.contains("password_encryption: scram-sha-256") && strong.contains("log_connections: \"on\""))
            try s.commitPolicy("controllers/db.yaml", Self.controllers(server))
            try s.commitPolicy("desired-state/postgres/tls.yaml", Self.settings("ssl: \"on\""))
            let first = try s.run("apply", environment: environment)
            #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
            #expect(try server.psql("SHOW log_connections") == "on")

            try s.commitPolicy("desired-state/postgres/tls.yaml", Self.settings("ssl: \"off\""), message: "no TLS")
            try s.commitPolicy(cis, strong.replacingOccurrences(of: "password_encryption: scram-sha-256", with: "password_encryption: md5")
                .replacingOccurrences(of: "log_connections: \"on\"", with: "log_connections: \"off\""), message: "weaker")
            let held = try s.run("apply", environment: environment)
            #expect(held.stdout.contains("weakens the policy by Test Person"), "\(held.stdout)\n\(held.stderr)")
            for why in ["ssl: on → off (turns TLS off", "password_encryption: scram-sha-256 → md5", "log_connections: on → off"] {
                #expect(held.stdout.contains(why), "\(why)\n\(held.stdout)")
            }
            let recorded = try HostWeakeningNewCommandTests.decisions(s)
            for name in ["PostgresSetting/tls", "PostgresSetting/cis-password-encryption", "PostgresSetting/cis-logging"] {
                #expect(recorded[name]?.first == "held", "\(name): \(recorded[name] ?? [])")
            }
            #expect(try server.psql("SHOW ssl", sslmode: "require") == "on", "a client that requires TLS still connects")
            #expect(try server.psql("SHOW password_encryption") == "scram-sha-256")
            #expect(try server.psql("SHOW log_connections") == "on")

            // The twin: TLS turned off by hand, and a revision that wants it on again.
            try server.psql("ALTER SYSTEM SET ssl = off")
            try server.psql("SELECT pg_reload_conf()")
            try s.commitPolicy(cis, strong, message: "back")
            try s.commitPolicy("desired-state/postgres/tls.yaml", Self.settings("ssl: \"on\""), message: "TLS back on")
            let applied = try s.run("apply", environment: environment)
            #expect(applied.status == 0 && !applied.stdout.contains("weakens the policy"), "\(applied.stdout)\n\(applied.stderr)")
            let fixed = try Self.record(s, "PostgresSetting/tls")
            #expect(fixed.contains("Bulwark-Decision: applied") && fixed.contains("Bulwark-Result: verified"), "\(fixed)")
            #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t")
        }
    }

    @Test func aCertificateFileTheServerCannotReadIsBlockedAndRecordedWhileAReadableOneIsVerified() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (server, certificate, key) = try Self.tlsServer(on: false)
            let environment = ["BULWARK_DB_1_PASSWORD": server.password]
            try s.commitPolicy("controllers/db.yaml", Self.controllers(server))
            try s.commitPolicy("desired-state/postgres/tls.yaml",
                               Self.settings("ssl: \"on\", ssl_cert_file: /nonexistent/server.crt, ssl_key_file: \(key)"))
            let blocked = try s.run("apply", environment: environment)
            #expect(blocked.stdout.contains("ssl_cert_file: the server cannot read '/nonexistent/server.crt'"), "\(blocked.stdout)\n\(blocked.stderr)")
            let refused = try Self.record(s, "PostgresSetting/tls")
            #expect(refused.contains("Bulwark-Decision: blocked") && refused.contains("the next start"), "\(refused)")
            #expect(!refused.contains("verified"), "\(refused)")
            #expect(try server.psql("SHOW ssl") == "off")
            try server.stop()
            try server.start()

            try s.commitPolicy("desired-state/postgres/tls.yaml",
                               Self.settings("ssl: \"on\", ssl_cert_file: \(certificate), ssl_key_file: \(key)"), message: "fixed path")
            let applied = try s.run("apply", environment: environment)
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            let fixed = try Self.record(s, "PostgresSetting/tls")
            #expect(fixed.contains("Bulwark-Decision: applied") && fixed.contains("Bulwark-Result: verified"), "\(fixed)")
            try server.stop()
            try server.start()
            #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t")
        }
    }

    @Test func theSecondOfTwoSuperusersLosingTheirLoginInOnePassIsBlockedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try PostgresServer()
            let until = ISO8601DateFormatter.string(from: Date().addingTimeInterval(200 * 86_400), timeZone: TimeZone(identifier: "UTC")!,
                                                    formatOptions: [.withFullDate])
            try server.psql("CREATE ROLE bulwark LOGIN SUPERUSER PASSWORD '\(server.password)' VALID UNTIL '\(until)'")
            try server.psql("CREATE ROLE alice LOGIN SUPERUSER")
            let environment = ["BULWARK_DB_1_PASSWORD": server.password]
            try s.commitPolicy("controllers/db.yaml", Self.controllers(server, user: "bulwark"))
            try s.commitPolicy("desired-state/postgres/roles.yaml", """
                apiVersion: bulwark/v1
                kind: PostgresRole
                metadata: {name: a}
                spec: {role: alice, login: false}
                ---
                apiVersion: bulwark/v1
                kind: PostgresRole
                metadata: {name: p}
                spec: {role: postgres, login: false}
                """)
            let first = try s.run("apply", environment: environment)
            #expect(first.stdout.contains("would leave db-1 without a superuser that can log in"), "\(first.stdout)\n\(first.stderr)")
            let recorded = try HostWeakeningNewCommandTests.decisions(s)
            #expect(recorded["PostgresRole/a"]?.first == "applied" && recorded["PostgresRole/p"]?.first == "blocked", "\(recorded)")
            let refused = try Self.record(s, "PostgresRole/p")
            #expect(refused.contains("this would leave db-1 without a superuser that can log in (now: alice, postgres)")
                    && refused.contains("PostgresRole/a login false"), "\(refused)")
            #expect(try server.psql("SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper")
                    == "alice:false,bulwark:true,postgres:true")

            // The twin: with carol, another superuser that can log in, postgres loses its login.
            try server.psql("CREATE ROLE carol LOGIN SUPERUSER")
            let applied = try s.run("apply", environment: environment)
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            let fixed = try Self.record(s, "PostgresRole/p")
            #expect(fixed.contains("Bulwark-Decision: applied") && fixed.contains("Bulwark-Result: verified"), "\(fixed)")
        }
    }

    /// A second outside review, read back from the audit branch: Bulwark connecting as a role
    /// that may not see another role's process type counted what it could not see as a session
    /// (a background process of `postgres`'s too); now it says what it cannot see and blocks,
    /// and once `app`'s session is gone the change is applied. A certificate file that exists but
    /// holds no certificate, with TLS already on, was recorded verified (the reload kept the old
    /// certificate); now it is recorded failed and undone, and the real renewed certificate and
    /// its key are verified.
    @Test func whatBulwarksRoleCannotSeeAndACertificateTheReloadKeptAreRecordedNotVerified() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (server, certificate, _) = try Self.tlsServer(on: true)
            try server.psql("CREATE ROLE app LOGIN PASSWORD '\(server.password)'")
            try server.psql("CREATE ROLE manager LOGIN CREATEROLE PASSWORD '\(server.password)'")
            let environment = ["BULWARK_DB_1_PASSWORD": server.password]
            // The policy's CIS settings made so first, as postgres: manager may not set them.
            try s.commitPolicy("controllers/db.yaml", Self.controllers(server))
            let first = try s.run("apply", environment: environment)
            #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
            try s.commitPolicy("controllers/db.yaml", Self.controllers(server, user: "manager"), message: "as manager")
            try s.commitPolicy("desired-state/postgres/app.yaml",
                               "apiVersion: bulwark/v1\nkind: PostgresRole\nmetadata: {name: app}\nspec: {role: app, login: false}\n")
            let session = try server.hold("SELECT 1", application: "app-pool", user: "app")
            defer { session.release() }
            let blocked = try s.run("apply", environment: environment)
            #expect(blocked.stdout.contains("may not see what 1 process of app on db-1 is"), "\(blocked.stdout)\n\(blocked.stderr)")
            let refused = try Self.record(s, "PostgresRole/app")
            #expect(refused.contains("Bulwark-Decision: blocked") && refused.contains("grant pg_read_all_stats to manager"), "\(refused)")
            #expect(try server.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app'") == "t")
            session.release()
            let applied = try s.run("apply", environment: environment)
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            let fixed = try Self.record(s, "PostgresRole/app")
            #expect(fixed.contains("Bulwark-Decision: applied") && fixed.contains("Bulwark-Result: verified"), "\(fixed)")

            // The certificate, as postgres (ALTER SYSTEM on ssl_cert_file is a superuser's).
            try s.commitPolicy("controllers/db.yaml", Self.controllers(server), message: "as postgres")
            let garbage = server.directory + "/garbage.crt"
            try write(garbage, "not a certificate\n")
            if isRoot, let owner = getpwnam("postgres") { chown(garbage, owner.pointee.pw_uid, owner.pointee.pw_gid) }
            try s.commitPolicy("desired-state/postgres/tls.yaml", Self.settings("ssl_cert_file: \(garbage)"), message: "garbage")
            _ = try s.run("apply", environment: environment)
            let undone = try Self.record(s, "PostgresSetting/tls")
            #expect(undone.contains("Bulwark-Result: failed") && undone.contains("holds no PEM certificate")
                    && undone.contains("the change was undone"), "\(undone)")
            #expect(try server.psql("SHOW ssl_cert_file") == certificate)

            let (renewed, key) = try server.makeCertificate(name: "renewed")
            try s.commitPolicy("desired-state/postgres/tls.yaml", Self.settings("ssl_cert_file: \(renewed), ssl_key_file: \(key)"),
                               message: "renewed")
            let renewal = try s.run("apply", environment: environment)
            #expect(renewal.status == 0, "\(renewal.stdout)\n\(renewal.stderr)")
            let verified = try Self.record(s, "PostgresSetting/tls")
            #expect(verified.contains("Bulwark-Decision: applied") && verified.contains("Bulwark-Result: verified"), "\(verified)")
            try server.stop()
            try server.start()
            #expect(try server.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode: "require") == "t")
        }
    }
}
