import BulwarkCore
import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing


@Suite(.serialized, .enabled(if: PostgresServer.available, "needs PostgreSQL 15 (initdb, psql)"))
struct PostgresTests {
    func state(_ server: PostgresServer, _ manifests: String) throws -> DesiredState {
        let inventory = """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: db-1}
            spec: {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, database: postgres,
                   passwordFile: \(server.directory)/pw, sslmode: disable}
            ---
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: postgres}
            spec: {kinds: [PostgresSetting, PostgresRole, PostgresPrivilege, PostgresSuperusers]}
            """
        return try DesiredStateLoader(registry: Registry([PostgresAdapter.definition()])).load([
            SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
            SourceFile(path: "desired-state/p.yaml", contents: Array(manifests.utf8)),
        ], revision: "test")
    }

    func reconcile(_ state: DesiredState) async throws -> (Plan, CycleOutcome) {
        let reconciler = Reconciler(registry: Registry([PostgresAdapter.definition()]))
        let plan = try await reconciler.plan(state)
        return (plan, await reconciler.apply(plan, state: state, audit: RecordingSink()))
    }

    @Test func rolesSettingsPrivilegesAndSuperusers() async throws {
        let server = try PostgresServer()
        for sql in ["CREATE ROLE eve SUPERUSER LOGIN", "CREATE ROLE mallory SUPERUSER", "CREATE DATABASE app",
                    "ALTER SYSTEM SET log_connections = off", "SELECT pg_reload_conf()"] {
            try server.psql(sql)
        }
        try server.psql("GRANT CREATE ON SCHEMA public TO PUBLIC", database: "app")
        let state = try state(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: eve}
            spec: {role: eve, superuser: false, connectionLimit: 3}
            ---
            apiVersion: bulwark/v1
            kind: PostgresSetting
            metadata: {name: logging}
            spec: {settings: {log_connections: on, log_statement: ddl, log_line_prefix: "%m [%p] %q%u@%d "}}
            ---
            apiVersion: bulwark/v1
            kind: PostgresPrivilege
            metadata: {name: public-schema}
            spec: {databases: [app, postgres], privileges: {CREATE: false}}
            ---
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: superusers}
            spec: {allowed: [postgres, eve]}
            """)
        let (plan, outcome) = try await reconcile(state)
        let drift = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0.changes) })
        #expect(drift["eve"]?.map(\.observed) == ["true", "-1"])
        #expect(drift["logging"]?.first?.observed == "off")
        #expect(drift["public-schema"]?.map(\.property) == ["app/CREATE"])
        #expect(drift["superusers"]?.first?.observed == "mallory")
        #expect(outcome.failed.isEmpty, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(outcome.verified.count == 4)

        // psql, an independent client, sees the fixes.
        #expect(try server.psql("SELECT rolsuper, rolconnlimit FROM pg_roles WHERE rolname = 'eve'") == "f|3")
        #expect(try server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'") == "f")
        #expect(try server.psql("SHOW log_connections") == "on")
        #expect(try server.psql("SELECT current_setting('log_line_prefix') || '|'") == "%m [%p] %q%u@%d |")
        #expect(try server.psql("SELECT has_schema_privilege('public', 'public', 'CREATE')", database: "app") == "f")
        #expect(try await reconcile(state).0.hasDrift == false)
        // The password is nowhere in what was recorded.
        #expect(outcome.entries.allSatisfy { !($0.record.commitMessage + String(decoding: $0.record.json(), as: UTF8.self)).contains(server.password) })
    }

    @Test func aSettingThatNeedsARestartIsReportedAndTheServerIsNotRestarted() async throws {
        let server = try PostgresServer()
        let pid = try server.psql("SELECT pg_postmaster_start_time()")
        let (_, outcome) = try await reconcile(try state(server, """
            apiVersion: bulwark/v1
            kind: PostgresSetting
            metadata: {name: memory}
            spec: {settings: {max_connections: "150"}}
            """))
        let record = try #require(outcome.entries.first?.record)
        #expect(record.result == .failed)
        #expect(record.error?.contains("pending restart") == true)
        #expect(try server.psql("SELECT pg_postmaster_start_time()") == pid, "never restarted")
    }

    @Test func aDatabaseThatDropsMidCycleFailsCleanlyAndTheNextCycleRecovers() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE eve SUPERUSER CREATEDB")
        let state = try state(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: eve}
            spec: {role: eve, superuser: false, createdb: false}
            """)
        let reconciler = Reconciler(registry: Registry([PostgresAdapter.definition()]))
        let plan = try await reconciler.plan(state)
        #expect(plan.hasDrift)
        try server.stop(mode: "immediate")  // the database goes away between observing and fixing
        let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
        let record = try #require(outcome.entries.first?.record)
        #expect(record.result == .failed)
        #expect(record.error?.contains("cannot connect") == true)
        try server.start()
        #expect(try server.psql("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = 'eve'") == "t|t", "nothing half-applied")
        let (_, recovered) = try await reconcile(state)
        #expect(recovered.verified.count == 1)
        #expect(try server.psql("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = 'eve'") == "f|f")
    }

    @Test func credentialsAndConnectionsFailAsClearErrors() async throws {
        let server = try PostgresServer()
        let wrong = try state(server, "apiVersion: bulwark/v1\nkind: PostgresRole\nmetadata: {name: x}\nspec: {role: postgres, login: true}\n")
        try "not-the-password".write(toFile: server.directory + "/pw", atomically: true, encoding: .utf8)
        let plan = try await Reconciler(registry: Registry([PostgresAdapter.definition()])).plan(wrong)
        #expect(plan.failures.first?.message.contains("password authentication failed") == true)
        #expect(plan.failures.first?.message.contains("not-the-password") == false)
    }
}
