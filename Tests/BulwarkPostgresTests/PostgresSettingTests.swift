import BulwarkCore
import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// `PostgresSetting` against a real server: values that can hold a secret are never shown or recorded.
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
