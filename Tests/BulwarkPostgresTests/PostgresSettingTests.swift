import BulwarkCore
import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// `PostgresSetting` judged by what every session gets, not by Bulwark's own session: a role or
/// database override (`ALTER ROLE … SET`) neither hides the server's value nor is called fixed,
/// and values that can hold a secret are never shown or recorded.
@Suite(.serialized, .enabled(if: PostgresServer.available, "needs PostgreSQL 15 (initdb, psql)"))
struct PostgresSettingTests {
    func setting(_ server: PostgresServer, _ settings: String) throws -> DesiredState {
        try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSetting
            metadata: {name: s}
            spec: {settings: \(settings)}
            """)
    }

    /// An override on Bulwark's own role hid what other sessions get (md5 behind Bulwark's
    /// scram-sha-256): Bulwark said in sync. What the server gives others cannot be read past
    /// such an override with certainty (a value on the command line, files not yet reloaded),
    /// so the observation fails, saying how to let Bulwark see it; without the override, the
    /// md5 is drift and fixed.
    @Test func anOverrideOnBulwarksOwnRoleDoesNotHideWhatOtherSessionsGet() async throws {
        let server = try PostgresServer()
        for sql in ["ALTER ROLE postgres SET password_encryption = 'scram-sha-256'", "ALTER SYSTEM SET password_encryption = 'md5'",
                    "SELECT pg_reload_conf()"] {
            try server.psql(sql)
        }
        let state = try setting(server, "{password_encryption: scram-sha-256}")
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.isEmpty && outcome.verified.isEmpty)
        let failure = try #require(plan.failures.first?.message)
        #expect(failure.contains("Bulwark's own session gets password_encryption from an override (user)"), "\(failure)")
        try server.psql("ALTER ROLE postgres RESET password_encryption")
        let (fixedPlan, fixed) = try await reconcilePostgres(state, server)
        #expect(fixedPlan.remediations.first?.changes.map(\.observed) == ["md5"])
        #expect(fixed.verified.count == 1, "\(fixed.failed.map { $0.record.error ?? "" })")
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false)
    }

    @Test func anOverrideThatGivesSomeSessionsAnotherValueIsDriftApplyDoesNotCallFixed() async throws {
        let server = try PostgresServer()
        for sql in ["CREATE ROLE eve LOGIN", "CREATE DATABASE app", "ALTER ROLE eve SET log_statement = 'none'",
                    "ALTER DATABASE app SET log_statement = 'none'", "ALTER ROLE eve IN DATABASE app SET log_statement = 'ddl'",
                    "ALTER SYSTEM SET log_statement = 'none'", "SELECT pg_reload_conf()"] {
            try server.psql(sql)
        }
        let state = try setting(server, "{log_statement: ddl}")
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.first?.changes.map(\.observed) == ["none (database app gets none; role eve gets none)"])
        let record = try #require(outcome.entries.first?.record)
        #expect(record.result == .failed)
        let error = record.error ?? ""
        #expect(error.contains("log_statement is overridden: database app gets none, role eve gets none"), "\(error)")
        #expect(error.contains("ALTER DATABASE \"app\" RESET log_statement") && error.contains("ALTER ROLE \"eve\" RESET log_statement"), "\(error)")
        // The server's value was fixed; the overrides, which the spec does not name, were left alone.
        #expect(try server.psql("SELECT setting FROM pg_file_settings WHERE name = 'log_statement' ORDER BY seqno DESC LIMIT 1") == "ddl")
        #expect(try server.psql("SELECT count(*) FROM pg_db_role_setting") == "3")

        // Still drift on the next pass, naming only the overrides.
        let (again, _) = try await reconcilePostgres(state, server)
        #expect(again.remediations.first?.changes.map(\.observed) == ["ddl (database app gets none; role eve gets none)"])

        // Without the differing overrides every session gets ddl: in sync.
        try server.psql("ALTER ROLE eve RESET log_statement")
        try server.psql("ALTER DATABASE app RESET log_statement")
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false)
    }

    /// `ALTER ROLE ALL SET` reaches Bulwark's own session too: not judged (the observation
    /// fails, naming it), and in sync once it is reset.
    @Test func aValueEveryRoleGetsIsNotGuessedPast() async throws {
        let server = try PostgresServer()
        try server.psql("ALTER ROLE ALL SET log_statement = 'all'")  // Bulwark's own session too
        let state = try setting(server, "{log_statement: none}")
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.isEmpty && outcome.entries.map(\.record.decision) == [.unobserved])
        #expect(plan.failures.first?.message.contains("Bulwark's own session gets log_statement from an override") == true,
                "\(plan.failures.map(\.message))")
        #expect(try server.psql("SELECT count(*) FROM pg_file_settings WHERE name = 'log_statement'") == "0", "nothing written")
        try server.psql("ALTER ROLE ALL RESET log_statement")
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false)
    }

    /// The server shows `statement_timeout` as `1min`: a desired `60s` was drift on every pass,
    /// and a desired `30000ms` was written and never verified (the server showed `30s`). Values
    /// are now read in the setting's units, as the server reads them, overrides too; another
    /// value is still drift and fixed.
    @Test func aValueIsComparedAsTheServerReadsItsUnits() async throws {
        let server = try PostgresServer()
        for sql in ["CREATE ROLE eve LOGIN", "ALTER ROLE eve SET statement_timeout = '60000'", "ALTER SYSTEM SET statement_timeout = '1min'",
                    "ALTER SYSTEM SET work_mem = '8MB'", "ALTER SYSTEM SET log_statement = 'ddl'", "SELECT pg_reload_conf()"] {
            try server.psql(sql)
        }
        // 1.0001min: PostgreSQL rounds to whole seconds first (60006 ms is stored as 60000).
        let same = try setting(server, "{statement_timeout: 1.0001min, work_mem: 8192kB, log_statement: DDL}")
        let (plan, _) = try await reconcilePostgres(same, server)
        #expect(plan.hasDrift == false, "\(plan.remediations.flatMap(\.changes).map { "\($0.property): \($0.observed ?? "-")" })")

        try server.psql("ALTER ROLE eve SET statement_timeout = '30s'")
        let other = try setting(server, "{statement_timeout: 30000ms, work_mem: 8192kB}")
        let (drifted, fixed) = try await reconcilePostgres(other, server)
        #expect(drifted.remediations.first?.changes.map(\.observed) == ["1min"], "another value is still drift")
        #expect(fixed.verified.count == 1, "\(fixed.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SHOW statement_timeout") == "30s")
        #expect(try await reconcilePostgres(other, server).0.hasDrift == false)
    }

    @Test func aSettingThatCanHoldASecretIsNeverShownOrRecorded() async throws {
        let server = try PostgresServer()
        for sql in ["ALTER SYSTEM SET primary_conninfo = 'host=db1 user=rep password=S3cret'", "ALTER SYSTEM SET log_connections = off",
                    "ALTER SYSTEM SET password_encryption = md5", "SELECT pg_reload_conf()"] {
            try server.psql(sql)
        }
        let state = try setting(server, """
            {primary_conninfo: "host=db2 user=rep password=0ther", log_connections: on, password_encryption: scram-sha-256}
            """)
        let (plan, outcome) = try await reconcilePostgres(state, server)
        let changes = Dictionary(uniqueKeysWithValues: (plan.remediations.first?.changes ?? []).map { ($0.property, $0) })
        #expect(changes["primary_conninfo"]?.sensitive == true)
        #expect(changes["primary_conninfo"]?.shownObserved == "[redacted]")
        #expect(changes["log_connections"]?.sensitive == false, "a setting without a secret stays visible")
        #expect(changes["log_connections"]?.shownObserved == "off")
        #expect(changes["password_encryption"]?.shownObserved == "md5", "an algorithm's name is no secret")
        #expect(outcome.verified.count == 1, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SHOW primary_conninfo") == "host=db2 user=rep password=0ther")
        let recorded = outcome.entries.map { $0.record.commitMessage + String(decoding: $0.record.json(), as: UTF8.self) }.joined()
        #expect(!recorded.contains("S3cret") && !recorded.contains("0ther"))
        #expect(recorded.contains("log_connections"))
    }
}
