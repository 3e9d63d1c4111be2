import BulwarkCore
@testable import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// The PostgreSQL guards against a real server: the last superuser and the role Bulwark connects
/// as are never locked out, a setting that needs a restart is never applied, and the password
/// goes only to the secrets directory's files and only over TLS (loopback and Unix sockets aside).
@Suite(.serialized, .enabled(if: PostgresServer.available, "needs PostgreSQL 15 (initdb, psql)"))
struct PostgresGuardTests {
    /// What psql sees of roles and of the settings written with ALTER SYSTEM.
    func snapshot(_ server: PostgresServer) throws -> String {
        try server.psql("SELECT string_agg(rolname || ':' || rolsuper || rolcanlogin || rolcreaterole || rolconnlimit, ',' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'")
            + "|" + server.psql("SELECT coalesce(string_agg(name || '=' || setting, ',' ORDER BY name), '') FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf'")
    }

    /// Two passes with one sink: `name` is blocked, recorded once, and nothing changes on the server.
    func expectBlocked(_ state: DesiredState, _ server: PostgresServer, name: String,
                       sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws -> String {
        let before = try snapshot(server)
        let sink = RecordingSink()
        let (plan, outcome) = try await reconcilePostgres(state, server, audit: sink)
        let entry = try #require(outcome.entries.first { $0.record.name == name }, sourceLocation: sourceLocation)
        #expect(plan.remediations.first { $0.binding.resource.name == name }?.decision == .blocked, sourceLocation: sourceLocation)
        #expect(entry.record.decision == .blocked, sourceLocation: sourceLocation)
        let (_, again) = try await reconcilePostgres(state, server, audit: sink)
        #expect(again.entries.first { $0.record.name == name }?.alreadyRecorded == true, "recorded once", sourceLocation: sourceLocation)
        #expect(sink.records.filter { $0.name == name }.count == 1, sourceLocation: sourceLocation)
        if outcome.entries.count == 1 {
            #expect(try snapshot(server) == before, "roles and settings unchanged", sourceLocation: sourceLocation)
        }
        return entry.record.reason ?? ""
    }

    // MARK: - Settings

    @Test func aSettingThatNeedsARestartIsBlockedOnceAndAReloadSettingIsApplied() async throws {
        let server = try PostgresServer()
        try server.psql("ALTER SYSTEM SET log_checkpoints = off")
        try server.psql("SELECT pg_reload_conf()")
        let started = try server.psql("SELECT pg_postmaster_start_time()")
        let state = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSetting
            metadata: {name: memory}
            spec: {settings: {max_connections: "150"}}
            ---
            apiVersion: bulwark/v1
            kind: PostgresSetting
            metadata: {name: logging}
            spec: {settings: {log_checkpoints: on}}
            """)
        let reason = try await expectBlocked(state, server, name: "memory")
        #expect(reason.hasPrefix("max_connections takes effect only when the server restarts (pg_settings.context is postmaster), and Bulwark never restarts a server"))
        #expect(try server.psql("SELECT count(*) FROM pg_file_settings WHERE name = 'max_connections' AND sourcefile LIKE '%auto.conf'") == "0",
                "never written to postgresql.auto.conf")
        #expect(try server.psql("SHOW log_checkpoints") == "on", "the reload setting beside it was applied")
        #expect(try server.psql("SELECT pg_postmaster_start_time()") == started, "never restarted")
    }

    // MARK: - Settings every new session depends on

    func preload(_ server: PostgresServer, _ libraries: String) throws -> DesiredState {
        try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSetting
            metadata: {name: preload}
            spec: {settings: {session_preload_libraries: "\(libraries)"}}
            """)
    }

    /// A library every new session loads and that does not load (a typo) would stop every
    /// connection, Bulwark's included: blocked, recorded, nothing written. Two libraries that
    /// load are written as two items (as one literal they were one item, `"a,b"`, that no session
    /// could load), new sessions start, and the next pass finds it in sync.
    @Test func aPreloadLibraryThatDoesNotLoadIsBlockedAndAListThatLoadsIsWrittenItemByItem() async throws {
        let server = try PostgresServer()
        let reason = try await expectBlocked(try preload(server, "auto_explain,pg_stat_statments"), server, name: "preload")
        #expect(reason.contains("session_preload_libraries: the library 'pg_stat_statments' does not load"), "\(reason)")
        #expect(try server.psql("SELECT count(*) FROM pg_file_settings WHERE name = 'session_preload_libraries'") == "0")
        #expect(try server.psql("SELECT 1") == "1", "new sessions start")
        // A library from a folder the policy names is never loaded, not even to judge it: the
        // guard runs before approvals are, and loading would run the file's code.
        let elsewhere = try await expectBlocked(try preload(server, "auto_explain,/tmp/evil"), server, name: "preload")
        #expect(elsewhere.contains("'/tmp/evil' names a folder; Bulwark sets only libraries installed with the server ($libdir), by name"),
                "\(elsewhere)")
        #expect(!(try read(server.directory + "/log")).contains("/tmp/evil"), "never loaded")

        let state = try preload(server, "auto_explain,pg_stat_statements")
        let (_, outcome) = try await reconcilePostgres(state, server)
        #expect(outcome.verified.count == 1, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SHOW session_preload_libraries") == "auto_explain, pg_stat_statements")
        #expect(try server.psql("SELECT 1") == "1", "new sessions start with both libraries")
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false, "read back as the same list")
    }

    /// Past the guard (the library removed between the guard and the change, or a kind of
    /// failure it does not know), a change after which new sessions cannot start is undone
    /// through the session that made it: postgresql.auto.conf holds what it held before, and
    /// the error says so.
    @Test func aChangeAfterWhichNewSessionsCannotStartIsUndoneThroughTheSessionThatMadeIt() async throws {
        let server = try PostgresServer()
        try server.psql("ALTER SYSTEM SET session_preload_libraries = 'auto_explain'")
        try server.psql("SELECT pg_reload_conf()")
        let state = try preload(server, "no_such_library")
        let resource = try #require(state.resources.values.first { $0.id.name == "preload" })
        let target = try #require(state.targets["db-1"])
        let driver = try #require(postgresRegistry(server).kinds["PostgresSetting"]).driver
        do {
            try await driver.apply([PropertyDrift(property: "session_preload_libraries", desired: "no_such_library", observed: "auto_explain")],
                                   to: resource, on: target)
            Issue.record("the change was called done")
        } catch {
            #expect("\(error)".contains("new sessions could not start after setting session_preload_libraries"), "\(error)")
            #expect("\(error)".contains("the change was undone"), "\(error)")
        }
        #expect(try server.psql("SELECT 1") == "1", "new sessions start again")
        #expect(try server.psql("SHOW session_preload_libraries") == "auto_explain")
    }

    // MARK: - Errors

    /// An error without the server's word was recorded as postgres-nio's bare code, or, when it
    /// wrapped another, as its placeholder, "Generic description to prevent accidental
    /// leakage": it now says what happened, in words, with the code.
    @Test func aConnectionTheServerEndedIsDescribedNotHidden() async throws {
        let server = try PostgresServer()
        let state = try preload(server, "auto_explain")
        let target = try #require(state.targets["db-1"])
        let connector = Connector(secrets: SecretsDirectories(explicit: [server.directory]))
        do {
            try await connector.withConnection(target) { connection in
                try? await PostgresAdapter.execute(connection, "SELECT pg_terminate_backend(pg_backend_pid())")
                try await PostgresAdapter.execute(connection, "SELECT 1")
            }
            Issue.record("a query on a connection the server ended succeeded")
        } catch {
            // Said in words with postgres-nio's code, or, when the channel had already closed,
            // refused before anything was sent on it (`PostgresAdapter.open`); on a loaded machine
            // (the whole suite on 2 cores) the close may not reach the client before the query's
            // deadline, which is said in words too.
            let text = "\(error)"
            #expect(["the server closed the connection (postgres-nio: serverClosedConnection)",
                     "the connection was closed (by the server, or after an earlier failure on it); nothing more was sent"]
                .contains(text) || (text.hasPrefix("no answer from 127.0.0.1:") && text.hasSuffix("; the wait was abandoned")), "\(error)")
        }
    }

    // MARK: - Settings that stop every client's work

    func clients(_ server: PostgresServer, _ settings: String) throws -> DesiredState {
        try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSetting
            metadata: {name: clients}
            spec: {settings: \(settings)}
            """)
    }

    /// `default_transaction_read_only: on` was fixed and verified, and every application write
    /// failed; `statement_timeout: 1ms` cancelled every statement, Bulwark's undo included.
    /// Read-only on, and a statement, lock or idle timeout above 0 and under 1 s, are blocked
    /// and recorded once, nothing written; a bare number is named as the milliseconds it is.
    @Test func aSettingThatStopsEveryClientsWorkIsBlockedOnce() async throws {
        let server = try PostgresServer()
        let reason = try await expectBlocked(try clients(server, """
            {statement_timeout: "1ms", lock_timeout: "500", idle_session_timeout: "0.5s", default_transaction_read_only: "on"}
            """), server, name: "clients")
        #expect(reason.contains("statement_timeout: '1ms' cancels every statement that runs longer, on every session of the server; "
                                + "Bulwark sets it server-wide only to 0 (off) or at least 1s"), "\(reason)")
        #expect(reason.contains("lock_timeout: '500' (a number without a unit is milliseconds: write 30s, not 30) cancels every statement "
                                + "that waits longer for a lock"), "\(reason)")
        #expect(reason.contains("idle_session_timeout: '0.5s' ends every session that stays idle that long"), "\(reason)")
        #expect(reason.contains("default_transaction_read_only: on makes every session's transactions read-only"), "\(reason)")
        #expect(try server.psql("SHOW statement_timeout") == "0")
        try server.psql("CREATE TABLE app (a int)")  // applications still write
    }

    /// The same timeouts behind a blank C counts and Swift's `.whitespaces` does not (a form
    /// feed, a vertical tab: PostgreSQL skips them after the number), and one the guard cannot
    /// read at all, are blocked too. Harmful, in a re-attack: `5ms\f` and `5\v` were read as an
    /// unknown unit, let through as values the server would refuse, and the server set 5 ms.
    @Test func aTimeoutBehindABlankOrUnreadableIsBlocked() async throws {
        let server = try PostgresServer()
        let reason = try await expectBlocked(try clients(server, """
            {statement_timeout: "5ms\\f", lock_timeout: "5\\v", idle_session_timeout: "5 fortnights"}
            """), server, name: "clients")
        #expect(reason.contains("statement_timeout: '5ms") && reason.contains("cancels every statement that runs longer"), "\(reason)")
        #expect(reason.contains("lock_timeout: '5") && reason.contains("cancels every statement that waits longer"), "\(reason)")
        #expect(reason.contains("idle_session_timeout: '5 fortnights' cannot be read as a time"), "\(reason)")
        #expect(try server.psql("SHOW statement_timeout") == "0")
        #expect(try server.psql("SHOW lock_timeout") == "0")
    }

    /// The legitimate twin: a 30 s statement timeout, a 1 s lock timeout, an idle timeout of
    /// minutes, read-write by default and another isolation level go through, and applications
    /// still write.
    @Test func aTimeoutOfASecondOrMoreAndAReadWriteDefaultAreApplied() async throws {
        let server = try PostgresServer()
        try server.psql("ALTER SYSTEM SET default_transaction_read_only = on")
        try server.psql("SELECT pg_reload_conf()")
        let state = try clients(server, """
            {statement_timeout: "30s", lock_timeout: "1s", idle_in_transaction_session_timeout: "10min",
             default_transaction_read_only: "off", default_transaction_isolation: "repeatable read"}
            """)
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.map(\.decision) == [.applied])
        #expect(outcome.verified.count == 1, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SHOW statement_timeout") == "30s")
        #expect(try server.psql("SHOW lock_timeout") == "1s")
        #expect(try server.psql("SHOW default_transaction_read_only") == "off")
        try server.psql("CREATE TABLE app (a int)")
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false)
    }

    /// Harmful: each was set server-wide, reloaded and verified. `session_replication_role:
    /// replica` let every session write rows a foreign key forbids; `zero_damaged_pages: on`
    /// loses a damaged page's rows without an error; `exit_on_error: on` ends every session at
    /// its first error; `temp_file_limit: 1MB` failed a sort of a million numbers. Each is
    /// blocked and recorded once, nothing written, and foreign keys still hold. A setting of one
    /// transaction (`transaction_read_only`), which ALTER SYSTEM refuses, is blocked with why.
    @Test func aSettingThatBreaksIntegrityOrFailsEveryBigQueryIsBlockedOnce() async throws {
        let server = try PostgresServer()
        let reason = try await expectBlocked(try clients(server, """
            {session_replication_role: "Replica", zero_damaged_pages: "on", exit_on_error: "yes", temp_file_limit: "1MB",
             transaction_read_only: "on"}
            """), server, name: "clients")
        #expect(reason.contains("session_replication_role: 'Replica' stops ordinary triggers from firing, foreign-key checks included, "
                                + "in every session of the server"), "\(reason)")
        #expect(reason.contains("zero_damaged_pages: 'on' replaces a damaged page with an empty one"), "\(reason)")
        #expect(reason.contains("exit_on_error: 'on' ends every session at its first error"), "\(reason)")
        #expect(reason.contains("temp_file_limit: '1MB' makes every query whose sorts and hashes spill more to disk fail"), "\(reason)")
        #expect(reason.contains("transaction_read_only belongs to one transaction and cannot be set server-wide"), "\(reason)")
        #expect(try server.psql("SHOW session_replication_role") == "origin")
        #expect(try server.psql("SHOW temp_file_limit") == "-1")
        try server.psql("CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (parent int REFERENCES parent)")
        #expect(throws: (any Error).self, "the foreign key still holds") { try server.psql("INSERT INTO child VALUES (7)") }
    }

    /// Harmful: `fsync: off` and `full_page_writes: off` were written with ALTER SYSTEM, reloaded
    /// and verified; after an operating system crash or power loss either can leave the whole
    /// cluster corrupt. On a server that forces its writes (fsync on, its default) both are
    /// blocked and recorded once, in any spelling PostgreSQL reads as off (`no`, `0`), and
    /// nothing is written.
    @Test func aSettingThatCanCorruptTheClusterAtACrashIsBlockedOnce() async throws {
        let server = try PostgresServer(fsync: true)
        #expect(try server.psql("SHOW fsync") == "on")
        let reason = try await expectBlocked(try clients(server, #"{fsync: "off", full_page_writes: "no"}"#), server, name: "clients")
        #expect(reason.contains("fsync: 'off' stops the server from forcing what it writes to disk: after an operating system crash "
                                + "or power loss the whole cluster can be left corrupt"), "\(reason)")
        #expect(reason.contains("full_page_writes: 'off' leaves a page half written at a crash beyond what recovery can repair"),
                "\(reason)")
        let alone = try await expectBlocked(try clients(server, #"{fsync: "0"}"#), server, name: "clients")
        #expect(alone.contains("fsync: '0' stops the server from forcing"), "\(alone)")
        #expect(try server.psql("SHOW fsync") == "on")
        #expect(try server.psql("SHOW full_page_writes") == "on")
    }

    /// The legitimate twin: on a server where fsync and full-page writes were turned off by hand,
    /// a policy that turns them on again goes through and is verified, with `synchronous_commit`
    /// off beside them (a crash can lose the last commits, never the cluster's consistency; any
    /// session may set it for itself). And the guard judges what a change writes, not what the
    /// server holds: on the tests' own server, which runs with fsync off from its command line
    /// (where ALTER SYSTEM cannot turn it on), an unrelated fix goes through.
    @Test func fsyncAndFullPageWritesOnAreAppliedAndAServerWithoutFsyncTakesOtherFixes() async throws {
        let server = try PostgresServer(fsync: true)
        for sql in ["ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET full_page_writes = off", "SELECT pg_reload_conf()"] {
            try server.psql(sql)
        }
        let state = try clients(server, #"{fsync: "on", full_page_writes: "yes", synchronous_commit: "off"}"#)
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })")
        #expect(outcome.verified.count == 1, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SHOW fsync") == "on")
        #expect(try server.psql("SHOW full_page_writes") == "on")
        #expect(try server.psql("SHOW synchronous_commit") == "off")
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false)

        let unsynced = try PostgresServer()
        #expect(try unsynced.psql("SHOW fsync") == "off")
        let other = try clients(unsynced, #"{log_connections: "on", full_page_writes: "on", synchronous_commit: "off"}"#)
        let (otherPlan, otherOutcome) = try await reconcilePostgres(other, unsynced)
        #expect(otherPlan.remediations.map(\.decision) == [.applied], "\(otherPlan.remediations.map { $0.reason ?? "" })")
        #expect(otherOutcome.verified.count == 1, "\(otherOutcome.failed.map { $0.record.error ?? "" })")
        #expect(try unsynced.psql("SHOW log_connections") == "on")
    }

    /// Harmful: a server-wide `search_path` naming a schema a role owns let that role's
    /// `lower()` run, with a superuser's rights, in the superuser's own session. Such a path is
    /// blocked and recorded once, as are `pg_catalog` named (after `public` it lets public's
    /// functions stand in for the built-ins; first, every CREATE fails), `PUBLIC` (a schema of
    /// its own, since Bulwark writes each item quoted), `pg_temp` first (tables created without
    /// a schema were temporary) and a path with no schema for tables.
    @Test func aSearchPathThatHandsEverySessionsNamesToASchemaIsBlocked() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE mallory LOGIN; CREATE SCHEMA tools AUTHORIZATION mallory")
        try server.psql("CREATE FUNCTION tools.lower(text) RETURNS text LANGUAGE sql AS $$SELECT 'owned'$$")
        let cases = [
            ("tools, pg_catalog, public", "names the schema tools: its owner, and whoever may create in it, would decide what every "
                + "unqualified name means in every session of the server, superusers' included"),
            (#"\"$user\", public, pg_catalog"#, "names pg_catalog, which every session searches first unless it is named: after another "
                + "schema, that schema's functions would stand in for the built-ins"),
            ("pg_catalog, public", "first, every CREATE without a schema would go to the catalog and fail"),
            ("PUBLIC", #"names the schema "PUBLIC""#),
            ("pg_temp, public", "puts pg_temp before public or among the schemas: a table created without a schema could be temporary"),
            ("pg_temp", "names no schema for applications' tables"),
            ("", "names no schema for applications' tables"),
        ]
        for (path, expected) in cases {
            let reason = try await expectBlocked(try clients(server, "{search_path: \"\(path)\"}"), server, name: "clients")
            #expect(reason.contains(expected), "\(path): \(reason)")
        }
        #expect(try server.psql("SELECT lower('A')") == "a", "the built-in still answers")
        #expect(try server.psql("SHOW search_path") == #""$user", public"#)
    }

    /// The legitimate twin: the same settings at values that keep integrity (set by hand to the
    /// harmful ones first), a temporary-file limit of exactly 1 GB, then none, and a search path
    /// of `"$user"`, `public` and `pg_temp` last, then `"$user"` alone (PostgreSQL's advice for
    /// a server without a writable `public`), go through; foreign keys hold again.
    @Test func integrityKeepingSettingsAndABuiltInSearchPathAreApplied() async throws {
        let server = try PostgresServer()
        for sql in ["ALTER SYSTEM SET session_replication_role = replica", "ALTER SYSTEM SET temp_file_limit = '1MB'",
                    "ALTER SYSTEM SET zero_damaged_pages = on", "ALTER SYSTEM SET search_path = public", "SELECT pg_reload_conf()"] {
            try server.psql(sql)
        }
        let state = try clients(server, #"""
            {session_replication_role: "local", zero_damaged_pages: "off", exit_on_error: "off", temp_file_limit: "1GB",
             search_path: "\"$user\", public, pg_temp"}
            """#)
        let (plan, outcome) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })")
        #expect(outcome.verified.count == 1, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SHOW session_replication_role") == "local")
        #expect(try server.psql("SHOW temp_file_limit") == "1GB")
        #expect(try server.psql("SHOW zero_damaged_pages") == "off")
        #expect(try server.psql("SHOW search_path") == #""$user", public, pg_temp"#)
        try server.psql("CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (parent int REFERENCES parent)")
        #expect(throws: (any Error).self, "the foreign key holds again") { try server.psql("INSERT INTO child VALUES (7)") }
        #expect(try await reconcilePostgres(state, server).0.hasDrift == false)

        let (_, unlimited) = try await reconcilePostgres(try clients(server, #"{temp_file_limit: "-1", search_path: "\"$user\""}"#), server)
        #expect(unlimited.verified.count == 1, "\(unlimited.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SHOW temp_file_limit") == "-1")
        #expect(try server.psql("SHOW search_path") == #""$user""#)
    }

    /// Bulwark's own sessions were held to the server's values: under a server-wide
    /// `default_transaction_read_only` every fix failed, and under a `statement_timeout` its
    /// undo and its reads were cancelled. Set by hand here (Bulwark blocks them): each session
    /// sets them off for itself, so a demotion that waits 2-3 s for another session's lock goes
    /// through, while what is observed is still the server's value, and Bulwark fixes it.
    @Test func bulwarksOwnSessionsAreNotHeldToTheServersTimeoutsOrReadOnlyDefault() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE mallory SUPERUSER LOGIN")
        // Holds off every ALTER ROLE (reads go on) until it commits, 4 s from now.
        let holder = try server.hold("LOCK TABLE pg_authid IN SHARE MODE", application: "holder", seconds: 4)
        defer { holder.release() }
        for sql in ["ALTER SYSTEM SET statement_timeout = '500ms'", "ALTER SYSTEM SET default_transaction_read_only = on",
                    "ALTER SYSTEM SET idle_in_transaction_session_timeout = '200ms'", "SELECT pg_reload_conf()"] {
            try server.psql(sql)
        }
        let (_, demoted) = try await reconcilePostgres(try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: superusers}
            spec: {allowed: [postgres]}
            """), server)
        #expect(demoted.verified.count == 1, "\(demoted.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'") == "f")
        #expect(demoted.entries.first?.record.error == nil)

        let state = try clients(server, "{statement_timeout: \"0\", default_transaction_read_only: \"off\", idle_in_transaction_session_timeout: \"0\"}")
        let (plan, fixed) = try await reconcilePostgres(state, server)
        #expect(plan.remediations.first?.changes.compactMap(\.observed).sorted() == ["200ms", "500ms", "on"], "the server's values, not its own")
        #expect(fixed.verified.count == 1, "\(fixed.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SHOW statement_timeout") == "0")
        #expect(try server.psql("SHOW default_transaction_read_only") == "off")

        // An override on Bulwark's own role is still not read past.
        try server.psql("ALTER ROLE postgres SET statement_timeout = '5s'")
        let (hidden, _) = try await reconcilePostgres(state, server)
        #expect(hidden.failures.first?.message.contains("Bulwark's own session gets statement_timeout from an override (user)") == true,
                "\(hidden.failures.map(\.message))")
    }

    @Test func listSettingsAreReadItemByItemAsTheServerQuotesThem() {
        #expect(SettingValue.items("auto_explain,pg_stat_statements") == ["auto_explain", "pg_stat_statements"])
        #expect(SettingValue.items("\"$user\", public") == ["$user", "public"])
        #expect(SettingValue.items(" a , \"b,c\" ,, \"d\"\"e\" ") == ["a", "b,c", "d\"e"])
        #expect(SettingValue.items("") == [])
    }

    // MARK: - Roles

    @Test func theRoleBulwarkConnectsAsKeepsLoginAndSuperuserWhileAnotherSuperuserIsDemoted() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE eve SUPERUSER LOGIN")
        let login = try await expectBlocked(try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: me}
            spec: {role: postgres, login: false}
            """), server, name: "me")
        #expect(login.hasPrefix("Bulwark connects to db-1 as postgres: removing its LOGIN would lock Bulwark out"))
        let limit = try await expectBlocked(try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: me}
            spec: {role: postgres, connectionLimit: 0, validUntil: 2020-01-01}
            """), server, name: "me")
        #expect(limit.contains("a connection limit of 0 would lock Bulwark out") && limit.contains("a VALID UNTIL in the past"))
        let superuser = try await expectBlocked(try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: me}
            spec: {role: postgres, superuser: false}
            """), server, name: "me")
        #expect(superuser.hasPrefix("Bulwark connects to db-1 as postgres: removing its SUPERUSER would leave Bulwark unable to manage settings and superusers"))
        #expect(try server.psql("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = 'postgres'") == "t|t")

        // eve is demoted: postgres remains a superuser that can log in.
        let (plan, outcome) = try await reconcilePostgres(try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: eve}
            spec: {role: eve, superuser: false}
            """), server)
        #expect(plan.remediations.map(\.decision) == [.applied])
        #expect(outcome.verified.count == 1)
        #expect(try server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'eve'") == "f")
    }

    @Test func theLastSuperuserThatCanLogInIsNeverRemoved() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE eve SUPERUSER NOLOGIN")
        try server.psql("CREATE ROLE mallory SUPERUSER LOGIN")
        let reason = try await expectBlocked(try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: superusers}
            spec: {allowed: [eve]}
            """), server, name: "superusers")
        #expect(reason.contains("Bulwark connects to db-1 as postgres: removing its SUPERUSER would leave Bulwark unable to manage settings and superusers: add postgres to allowed"))
        #expect(reason.contains("this would leave db-1 without a superuser that can log in (now: mallory, postgres)"))
        #expect(try server.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper") == "eve,mallory,postgres")

        // Keeping postgres: eve and mallory lose the attribute.
        let (_, outcome) = try await reconcilePostgres(try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: superusers}
            spec: {allowed: [postgres]}
            """), server)
        #expect(outcome.entries.map(\.record.decision) == [.applied])
        #expect(outcome.verified.count == 1)
        #expect(try server.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper") == "postgres")
    }

    /// A role made superuser between the plan and the fix was demoted too, though the record
    /// named only the superusers the plan saw and the guard never judged it. Now the fix changes
    /// nothing and fails, saying so; the next pass plans, judges and demotes both.
    @Test func aSuperuserMadeSinceThePlanIsNotDemotedUnrecorded() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE eve SUPERUSER LOGIN")
        let state = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: superusers}
            spec: {allowed: [postgres]}
            """)
        let reconciler = Reconciler(registry: postgresRegistry(server))
        let plan = try await reconciler.plan(state)
        #expect(plan.remediations.first?.changes.map(\.observed) == ["eve"])
        try server.psql("CREATE ROLE mallory SUPERUSER LOGIN")
        let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
        let record = try #require(outcome.entries.first?.record)
        #expect(record.result == .failed)
        #expect(record.error?.contains("the superusers changed since the plan (now eve, mallory, planned eve); nothing was changed") == true,
                "\(record.error ?? "")")
        #expect(try server.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper") == "eve,mallory,postgres")

        let (_, again) = try await reconcilePostgres(state, server)
        #expect(again.verified.count == 1, "\(again.failed.map { $0.record.error ?? "" })")
        #expect(again.entries.first?.record.changes.first?.observedBefore == "eve, mallory")
        #expect(try server.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper") == "postgres")
    }

    /// A session that altered a rogue superuser and stayed in its transaction held Bulwark's
    /// demotion, and the pass, for as long as it stayed open. A change now waits at most
    /// `lockTimeout` for a lock: the demotion fails, recorded, nothing half done; once the
    /// session is gone, the next pass demotes.
    @Test func aLockHeldByAnotherSessionFailsTheChangeInsteadOfHoldingThePass() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE mallory SUPERUSER LOGIN")
        try server.psql("CREATE ROLE eve SUPERUSER LOGIN")
        let state = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresSuperusers
            metadata: {name: superusers}
            spec: {allowed: [postgres]}
            """)
        let holder = try server.hold("ALTER ROLE mallory CONNECTION LIMIT 3", application: "holder")
        defer { holder.release() }
        let started = ContinuousClock.now
        let (_, held) = try await reconcilePostgres(state, server)
        let waited = ContinuousClock.now - started
        holder.release()
        let record = try #require(held.entries.first?.record)
        #expect(record.result == .failed)
        #expect(record.error?.contains("lock timeout") == true, "\(record.error ?? "")")
        #expect(waited < .seconds(60), "failed after the lock timeout, not after the other session")
        #expect(try server.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper") == "eve,mallory,postgres",
                "rolled back: eve was not demoted alone")

        let (_, outcome) = try await reconcilePostgres(state, server)
        #expect(outcome.verified.count == 1, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper") == "postgres")
    }

    // MARK: - Roles and schemas in use

    /// An application's role with a session open: taking its login away (a wrong policy) would
    /// refuse its pool's next connection. Blocked, recorded once, nothing changed; once the
    /// session is gone the same change is applied (the twin). Seen by an outside review: the
    /// change was verified, and the application then failed with "not permitted to log in".
    /// Also where Bulwark connects as a role that is neither superuser nor `pg_read_all_stats`
    /// (CREATEROLE is enough to manage `app`): such a role sees the session's user but not its
    /// `backend_type`, and the guard saw no session at all (third review); then it counted every
    /// process it could not see as a session (a background process of `postgres`'s too). Now it
    /// says it cannot see what the process is, and blocks.
    @Test(arguments: ["postgres", "manager"]) func anApplicationRoleInUseKeepsItsLoginUntilItsSessionsEnd(_ user: String) async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE app LOGIN PASSWORD '\(server.password)'")
        try server.psql("CREATE ROLE manager LOGIN CREATEROLE PASSWORD '\(server.password)'")
        let state = try postgresState(server, target: """
            {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: \(user), database: postgres,
                   passwordFile: \(server.passwordFile("db-1")), sslmode: disable}
            """, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: app}
            spec: {role: app, login: false}
            """)
        let session = try server.hold("SELECT 1", application: "app-pool", user: "app")
        defer { session.release() }
        let reason = try await expectBlocked(state, server, name: "app")
        if user == "postgres" {
            #expect(reason.contains("app has 1 session open on db-1 now"), "\(reason)")
        } else {
            #expect(reason.contains("Bulwark's role manager may not see what 1 process of app on db-1 is (it is neither superuser nor "
                                    + "a member of pg_read_all_stats"), "\(reason)")
            #expect(reason.contains("grant pg_read_all_stats to manager"), "\(reason)")
            #expect(!reason.contains("session open"), "\(reason)")
        }
        #expect(try server.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app'") == "t")
        session.release()
        let (_, outcome) = try await reconcilePostgres(state, server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app'") == "f")
    }

    /// Revoking USAGE on a schema from PUBLIC while an application connected to that database
    /// has it only through PUBLIC: its next query on the schema's tables fails ("relation does
    /// not exist"). Blocked and recorded once; with USAGE granted to the application's role
    /// first, the same revoke goes through and the application still reads its table (the twin).
    @Test func revokingUsageAnApplicationConnectedNowNeedsIsBlocked() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE app LOGIN PASSWORD '\(server.password)'")
        try server.psql("CREATE DATABASE shop")
        try server.psql("GRANT USAGE ON SCHEMA public TO PUBLIC; CREATE TABLE items (id int); GRANT SELECT ON items TO app", database: "shop")
        let state = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresPrivilege
            metadata: {name: public-usage}
            spec: {databases: [shop], schema: public, grantee: PUBLIC, privileges: {USAGE: false}}
            """)
        let session = try server.hold("SELECT count(*) FROM items", application: "shop-app", user: "app", database: "shop")
        defer { session.release() }
        let reason = try await expectBlocked(state, server, name: "public-usage")
        #expect(reason.contains("would cut off app (1 session)"), "\(reason)")
        #expect(try server.psql("SELECT has_schema_privilege('app', 'public', 'USAGE')", database: "shop") == "t")

        try server.psql("GRANT USAGE ON SCHEMA public TO app", database: "shop")
        let (_, outcome) = try await reconcilePostgres(state, server)
        #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
        #expect(try server.psql("SELECT has_schema_privilege('public', 'public', 'USAGE')", database: "shop") == "f")
        #expect(try server.psql("SELECT has_table_privilege('app', 'public.items', 'SELECT') AND has_schema_privilege('app', 'public', 'USAGE')",
                                database: "shop") == "t")
    }

    /// The day after today, UTC, as `validUntil` is written.
    var tomorrow: String { Connector.day(Date().addingTimeInterval(86_400)) }

    /// A VALID UNTIL of tomorrow on Bulwark's own role, or on the last superuser, was fixed and
    /// verified: that day every password login, Bulwark's and every administrator's, fails.
    /// Bulwark's role is given no VALID UNTIL, and a superuser that has one is not counted as a
    /// way in (eve, expiring, does not keep postgres's from being the last).
    @Test func aValidUntilOnBulwarksRoleOrTheLastSuperuserIsBlocked() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE eve SUPERUSER LOGIN VALID UNTIL '\(tomorrow) 00:00:00+00'")
        let postgres = try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: expiry}
            spec: {role: postgres, validUntil: \(tomorrow)}
            """)
        let mine = try await expectBlocked(postgres, server, name: "expiry")
        #expect(mine.contains("Bulwark connects to db-1 as postgres: a VALID UNTIL of \(tomorrow) would lock Bulwark out on that day"),
                "\(mine)")
        #expect(mine.contains("this would leave db-1 without a superuser that can log in (now: postgres); a superuser with a VALID UNTIL "
                              + "(eve, postgres) is not counted"), "\(mine)")

        // Connecting as a role with CREATEROLE, the last superuser's expiry is blocked on its own.
        try server.psql("CREATE ROLE bulwark LOGIN CREATEROLE PASSWORD '\(server.password)'")
        let asBulwark = try postgresState(server, target: """
            {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: bulwark, database: postgres,
                   passwordFile: \(server.passwordFile("db-1")), sslmode: disable}
            """, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: expiry}
            spec: {role: postgres, validUntil: \(tomorrow)}
            """)
        let last = try await expectBlocked(asBulwark, server, name: "expiry")
        #expect(last.hasPrefix("this would leave db-1 without a superuser that can log in (now: postgres)"), "\(last)")
        #expect(try server.psql("SELECT rolvaliduntil IS NULL FROM pg_roles WHERE rolname = 'postgres'") == "t")
    }

    /// The legitimate twin: an expiry on an ordinary role, and on a superuser while another
    /// (without one) can still log in, goes through.
    @Test func aValidUntilOnAnOrdinaryRoleOrASuperuserNotTheLastIsApplied() async throws {
        let server = try PostgresServer()
        try server.psql("CREATE ROLE alice LOGIN")
        try server.psql("CREATE ROLE eve SUPERUSER LOGIN")
        let (plan, outcome) = try await reconcilePostgres(try postgresState(server, """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: alice}
            spec: {role: alice, validUntil: \(tomorrow)}
            ---
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: eve}
            spec: {role: eve, validUntil: \(tomorrow)}
            """), server)
        #expect(plan.remediations.map(\.decision) == [.applied, .applied])
        #expect(outcome.verified.count == 2, "\(outcome.failed.map { $0.record.error ?? "" })")
        #expect(try server.psql("SELECT string_agg(rolname || ':' || to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD'), ',' "
                                + "ORDER BY rolname) FROM pg_roles WHERE rolvaliduntil IS NOT NULL") == "alice:\(tomorrow),eve:\(tomorrow)")
    }

    // MARK: - Secrets

    @Test func secretsDirectoriesComeFromTheEnvironment() {
        #expect(PostgresAdapter.secretsDirectories(environment: [:]) == ["/run/secrets"])
        #expect(PostgresAdapter.secretsDirectories(environment: ["CREDENTIALS_DIRECTORY": "/run/credentials/bulwark.service"])
                == ["/run/secrets", "/run/credentials/bulwark.service"])
        #expect(PostgresAdapter.secretsDirectories(environment: ["BULWARK_SECRETS_DIR": "/etc/bulwark/secrets/",
                                                                 "CREDENTIALS_DIRECTORY": "/run/credentials/x"])
                == ["/etc/bulwark/secrets"])
    }

    @Test func aPasswordFileOutsideTheSecretsDirectoryIsNeverRead() async throws {
        let server = try PostgresServer()
        try await withTemporaryDirectory { outside in
            // Each file is named after the target (db-1), the only name its passwordFile may have.
            try write(outside + "/db-1", server.password)
            func target(_ file: String) -> String {
                "{adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, passwordFile: \"\(file)\", sslmode: disable}"
            }
            let role = "apiVersion: bulwark/v1\nkind: PostgresRole\nmetadata: {name: x}\nspec: {role: postgres, login: true}\n"
            func failure(_ file: String) async throws -> String {
                let plan = try await Reconciler(registry: postgresRegistry(server)).plan(try postgresState(server, target: target(file), role))
                let message = try #require(plan.failures.first?.message)
                #expect(!message.contains(server.password))
                return message
            }
            #expect(try await failure(outside + "/db-1").contains("the passwordFile of target db-1 \(outside)/db-1 is outside the secrets directories: put it in \(server.directory) or name its folder with BULWARK_SECRETS_DIR"))
            // Links out of the folder, absolute or relative, are not followed.
            for folder in ["absolute", "relative", "db"] {
                try FileManager.default.createDirectory(atPath: server.directory + "/" + folder, withIntermediateDirectories: true)
            }
            #expect(symlink(outside + "/db-1", server.directory + "/absolute/db-1") == 0)
            #expect(symlink("../../" + (outside as NSString).lastPathComponent + "/db-1", server.directory + "/relative/db-1") == 0)
            #expect(try await failure("absolute/db-1").contains("db-1 is a symbolic link to \(outside)/db-1, out of the folder"))
            #expect(try await failure(server.directory + "/relative/db-1").contains("the path leads out of the folder"))
            #expect(try await failure("missing/db-1").contains("not found"))
            #expect(throws: ValidationFailure.self) { try postgresState(server, target: target(server.directory + "/../db-1"), role) }

            // In the folder, by name or through a link that stays inside: read, and the server answers.
            _ = server.passwordFile("db-1")
            #expect(symlink("../db-1", server.directory + "/db/db-1") == 0)
            for file in ["db-1", server.directory + "/db-1", "db/db-1"] {
                let plan = try await Reconciler(registry: postgresRegistry(server)).plan(try postgresState(server, target: target(file), role))
                #expect(plan.failures.isEmpty, "\(file): \(plan.failures.map(\.message))")
                #expect(plan.inSync.count == 1)
            }
        }
    }

    @Test func thePasswordTravelsInClearOnlyToLoopbackOrAUnixSocket() async throws {
        let server = try PostgresServer()
        let role = "apiVersion: bulwark/v1\nkind: PostgresRole\nmetadata: {name: x}\nspec: {role: postgres, login: true}\n"
        let remote = try #require(throws: ValidationFailure.self) {
            try postgresState(server, target: "{adapter: postgres, host: db-1.example.org, user: postgres, passwordFile: db-1, sslmode: disable}", role)
        }
        #expect(remote.errors.first?.field == "spec.sslmode")
        #expect(remote.errors.first?.message == "sslmode: disable would send the password in clear text to db-1.example.org; "
                + "sslmode defaults to verify-full; set sslmode: disable only for loopback (127.0.0.1, ::1) or a Unix socket (host: /run/postgresql)")

        // The test server offers no TLS: by default (verify-full), and with require, Bulwark stops before sending the password.
        for mode in ["", ", sslmode: require"] {
            let target = "{adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, passwordFile: \(server.passwordFile("db-1"))\(mode)}"
            let plan = try await Reconciler(registry: postgresRegistry(server)).plan(try postgresState(server, target: target, role))
            let message = try #require(plan.failures.first?.message)
            #expect(message.contains("the server 127.0.0.1:\(server.port) does not offer TLS; sslmode defaults to verify-full; set sslmode: disable only for loopback"),
                    "\(message)")
        }

        // A Unix socket needs no TLS.
        let socket = "{adapter: postgres, host: \(server.directory), port: \(server.port), user: postgres, passwordFile: \(server.passwordFile("db-1"))}"
        let plan = try await Reconciler(registry: postgresRegistry(server)).plan(try postgresState(server, target: socket, role))
        #expect(plan.failures.isEmpty, "\(plan.failures.map(\.message))")
        #expect(plan.inSync.count == 1)
    }
}
