import BulwarkCore
import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// Kind specs and target settings are typed once, when the desired state is read; observe and
/// apply use those values and never split text again, so names holding the characters the old
/// text form joined with (`/`, `,`) reach the server whole.
@Suite(.serialized, .enabled(if: PostgresServer.available, "needs PostgreSQL 15 (initdb, psql)"))
struct PostgresTypedSpecTests {
    @Test func aDatabaseWhoseNameHoldsASlashIsTheDatabaseThatIsFixed() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE DATABASE \"a/b\"")
        try server.psql("GRANT CREATE ON SCHEMA public TO PUBLIC", database: "a/b")
        let state = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresPrivilege
            metadata: {name: public-schema}
            spec: {databases: ["a/b"], privileges: {CREATE: false}}
            """)
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.flatMap(\.changes).map(\.property) == ["a/b/CREATE"])
        #expect(outcome.failed.isEmpty, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(outcome.verified.count == 1)
        #expect(try server.psql("SELECT has_schema_privilege('public', 'public', 'CREATE')", database: "a/b") == "f")
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false)
    }

    @Test func anAllowedSuperuserWhoseNameHoldsACommaKeepsTheAttributeAndAnotherLosesIt() async throws {
        let server = try PostgresServer()
        for sql in ["CREATE ROLE \"ops,admin\" SUPERUSER", "CREATE ROLE ops SUPERUSER", "CREATE ROLE admin SUPERUSER"] {
            try server.psql(sql)
        }
        // Allowed: "ops,admin" and postgres. Read as text split at commas, this list would allow
        // ops and admin and demote "ops,admin".
        let state = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: superusers}
            spec: {allowed: [postgres, "ops,admin"]}
            """)
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.first?.changes.first?.observed == "admin, ops")
        #expect(outcome.failed.isEmpty, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'ops,admin'") == "t")
        #expect(try server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'ops'") == "f")
        #expect(try server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'admin'") == "f")
    }

    @Test func aSuperuserWhoseNameHoldsACommaAndASpaceIsDemotedByItsOwnNameAndShownQuoted() async throws {
        let server = try PostgresServer()
        for sql in ["CREATE ROLE admin SUPERUSER LOGIN", "CREATE ROLE \"admin, x\" SUPERUSER", "CREATE ROLE x"] {
            try server.psql(sql)
        }
        // Split again at ", ", the rogue "admin, x" would read as admin and x: the allowed admin
        // demoted and the rogue kept, on every pass.
        let state = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: superusers}
            spec: {allowed: [postgres, admin]}
            """)
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.first?.changes.first?.observed == "\"admin, x\"")
        #expect(outcome.failed.isEmpty, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(outcome.verified.count == 1)
        #expect(try server.psql("SELECT string_agg(rolname || ':' || rolsuper, '|' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('admin', 'admin, x', 'x')")
                == "admin:true|admin, x:false|x:false")

        // A rogue named "x, postgres" is not the connecting user postgres: it is demoted.
        try server.psql("CREATE ROLE \"x, postgres\" SUPERUSER")
        let (again, second) = try await reconcilePostgres(state, server)
        #expect(again.remediations.first?.changes.first?.observed == "\"x, postgres\"")
        #expect(second.failed.isEmpty, "\(second.failed.map { $0.record.error ?? "" })")
        #expect(second.verified.count == 1)
        #expect(try server.psql("SELECT string_agg(rolname, '|' ORDER BY rolname) FROM pg_roles WHERE rolsuper") == "admin|postgres")
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false)
    }

    @Test func aResourceOrTargetNotReadByTheAdapterFailsItsObservationWithoutTouchingTheServer() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE eve SUPERUSER")
        let state = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: eve}
            spec: {role: eve, superuser: false}
            """)
        // The same target with only its text settings, as a caller that bypasses the adapter makes it.
        var bare = state
        for (name, target) in state.targets {
            bare.targets[name] = Target(name: target.name, adapter: target.adapter, labels: target.labels,
                                        settings: target.settings, location: target.location)
        }
        let plan = try await Reconciler(registry: postgresRegistry(server)).plan(bare)
        #expect(plan.remediations.isEmpty)
        #expect(plan.failures.map(\.message).contains { $0.contains("has no PostgresTargetSettings settings") })
        #expect(try server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'eve'") == "t")
    }
}
