import BulwarkCore
@testable import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// An outside review: two superusers each losing their login in one pass, each allowed alone
/// against the server as it was, left it with none (Bulwark's own role, with a VALID UNTIL, is
/// not counted). The role and superuser changes of one pass are now judged together.
extension PostgresGuardTests {
    func twoLogins(_ server: PostgresServer, second: String = "postgres") throws -> DesiredState {
        try postgresState(server, target: """
            {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: bulwark, database: postgres,
                   passwordFile: \(server.passwordFile("db-1")), sslmode: disable}
            """, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: a}
            spec: {role: alice, login: false}
            ---
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: p}
            spec: {role: \(second), login: false}
            """)
    }

    /// Bulwark a superuser with a VALID UNTIL (not counted); alice and postgres the superusers
    /// that can log in. Each losing its login alone is allowed; in one pass the second is
    /// blocked, judged with the first, and recorded; alice's change is made.
    @Test func twoSuperusersLosingTheirLoginInOnePassLeaveTheSecondBlocked() async throws {
        let server = try PostgresServer()
        let until = Connector.day(Date().addingTimeInterval(200 * 86_400))
        try server.psql("CREATE ROLE bulwark LOGIN SUPERUSER PASSWORD '\(server.password)' VALID UNTIL '\(until)'")
        try server.psql("CREATE ROLE alice LOGIN SUPERUSER")
        let sink = RecordingSink()
        let (plan, outcome) = try await reconcilePostgres(try twoLogins(server), server, audit: sink)
        #expect(plan.remediations.map(\.decision) == [.applied, .blocked])
        let blocked = try #require(sink.records.first { $0.name == "p" })
        #expect(blocked.decision == .blocked)
        let reason = blocked.reason ?? ""
        #expect(reason.contains("this would leave db-1 without a superuser that can log in (now: alice, postgres)"), "\(reason)")
        #expect(reason.contains("PostgresRole/a login false"), "judged with alice's change: \(reason)")
        #expect(outcome.verified.count == 1)
        #expect(try server.psql("SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper")
                == "alice:false,bulwark:true,postgres:true")
    }

    /// The legitimate twin: two superusers lose their login in one pass while a third
    /// (postgres) can still log in: both are applied.
    @Test func twoSuperusersLoseTheirLoginWhileAThirdCanStillLogIn() async throws {
        let server = try PostgresServer()
        let until = Connector.day(Date().addingTimeInterval(200 * 86_400))
        try server.psql("CREATE ROLE bulwark LOGIN SUPERUSER PASSWORD '\(server.password)' VALID UNTIL '\(until)'")
        try server.psql("CREATE ROLE alice LOGIN SUPERUSER")
        try server.psql("CREATE ROLE dave LOGIN SUPERUSER")
        let (plan, outcome) = try await reconcilePostgres(try twoLogins(server, second: "dave"), server)
        #expect(plan.remediations.map(\.decision) == [.applied, .applied])
        #expect(outcome.verified.count == 2, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SELECT string_agg(rolname || ':' || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper")
                == "alice:false,bulwark:true,dave:false,postgres:true")
    }

    /// A superusers list and role changes in one pass: demoting carol, taking alice's login and
    /// giving postgres a connection limit of 0 are each allowed alone (bulwark, with a VALID
    /// UNTIL, does not count); together they leave none, so whichever is judged last is blocked.
    @Test func aSuperusersListAndRoleChangesInOnePassAreJudgedTogether() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE alice LOGIN SUPERUSER")
        try server.psql("CREATE ROLE carol LOGIN SUPERUSER")
        let until = Connector.day(Date().addingTimeInterval(200 * 86_400))
        try server.psql("CREATE ROLE bulwark LOGIN SUPERUSER PASSWORD '\(server.password)' VALID UNTIL '\(until)'")
        let state = try postgresState(server, target: """
            {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: bulwark, database: postgres,
                   passwordFile: \(server.passwordFile("db-1")), sslmode: disable}
            """, """
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: s}
            spec: {allowed: [alice, bulwark, postgres]}
            ---
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: a}
            spec: {role: alice, login: false}
            ---
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: p}
            spec: {role: postgres, connectionLimit: 0}
            """)
        // psql's sessions as postgres end after psql does: the role guard would count them.
        for _ in 0..<100 where try server.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'postgres' "
                                               + "AND backend_type = 'client backend' AND pid <> pg_backend_pid()") != "0" {
            try await Task.sleep(for: .milliseconds(50))
        }
        let sink = RecordingSink()
        let (plan, _) = try await reconcilePostgres(state, server, audit: sink)
        // Whichever is judged last is the one that would leave none.
        let blocked = plan.remediations.filter { $0.decision == .blocked }.map(\.binding.resource.name)
        #expect(blocked.count == 1 && plan.remediations.count == 3, "\(plan.remediations.map { ($0.binding.resource.name, $0.decision) })")
        let record = try #require(sink.records.first { $0.decision == .blocked })
        #expect(record.reason?.contains("this would leave db-1 without a superuser that can log in (now: alice, carol, postgres)") == true,
                "\(record.reason ?? "")")
        #expect(try server.psql("SELECT count(*) FROM pg_roles WHERE rolsuper AND rolcanlogin AND rolconnlimit <> 0") != "0",
                "a superuser that can log in is left")
    }
}
