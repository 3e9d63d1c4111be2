import BulwarkCore
@testable import BulwarkPostgres
import Foundation
import Testing

/// A revision that gives a role a power, lets it log in, raises its connection limit, keeps its
/// password valid longer, or grants a schema privilege weakens the policy in force: a second
/// person approves it before any pass applies it (one author's `superuser: true` was applied at
/// once, in an outside review). The opposite moves are not weakenings.
@Suite struct PostgresWeakeningTests {
    static func state(_ spec: String, kind: String = "PostgresRole") throws -> DesiredState {
        let inventory = """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: db-1}
            spec: {adapter: postgres, host: 127.0.0.1, port: 5432, user: postgres, database: postgres, sslmode: disable}
            ---
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: postgres}
            spec: {kinds: [PostgresRole, PostgresPrivilege, PostgresSetting]}
            """
        return try DesiredStateLoader(registry: Registry([PostgresAdapter.definition()])).load([
            SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
            SourceFile(path: "desired-state/p.yaml", contents: Array("apiVersion: bulwark/v1\nkind: \(kind)\nmetadata: {name: r}\nspec: \(spec)\n".utf8)),
        ], revision: "test")
    }

    static func weakened(_ before: String, _ after: String, kind: String = "PostgresRole") throws -> [String] {
        Weakening.compare(previous: try state(before, kind: kind), current: try state(after, kind: kind),
                          registry: Registry([PostgresAdapter.definition()]))[ResourceID(kind: kind, name: "r")]?.properties ?? []
    }

    @Test func aRoleGivenMoreIsAWeakeningAndOneGivenLessIsNot() throws {
        #expect(try Self.weakened("{role: alice, superuser: false}", "{role: alice, superuser: true}") == ["superuser"])
        #expect(try Self.weakened("{role: alice, bypassrls: false, login: false}", "{role: alice, bypassrls: true, login: true}") == ["bypassrls", "login"])
        #expect(try Self.weakened("{role: alice, connectionLimit: 5}", "{role: alice, connectionLimit: 50}") == ["connectionLimit"])
        #expect(try Self.weakened("{role: alice, connectionLimit: 5}", "{role: alice, connectionLimit: -1}") == ["connectionLimit"])
        #expect(try Self.weakened("{role: alice, validUntil: 2027-01-01}", "{role: alice, validUntil: 2028-01-01}") == ["validUntil"])
        #expect(try Self.weakened("{role: alice, validUntil: 2027-01-01}", "{role: alice, validUntil: infinity}") == ["validUntil"])
        // Legitimate: less power, a lower limit, an earlier expiry.
        #expect(try Self.weakened("{role: alice, superuser: true, login: true}", "{role: alice, superuser: false, login: false}").isEmpty)
        #expect(try Self.weakened("{role: alice, connectionLimit: -1}", "{role: alice, connectionLimit: 5}").isEmpty)
        #expect(try Self.weakened("{role: alice, validUntil: infinity}", "{role: alice, validUntil: 2027-01-01}").isEmpty)
    }

    /// A power or a grant that no earlier revision set (an attribute added to a resource, a new
    /// resource, or one moved to another role) is judged as if it had been off: a re-attack
    /// added `superuser: true` and a new `PostgresRole mallory {superuser: true}`, applied at once.
    @Test func aPowerOrAGrantSetWhereNoneWasIsAWeakening() throws {
        #expect(try Self.weakened("{role: alice, login: true}", "{role: alice, login: true, superuser: true, bypassrls: true}")
                == ["bypassrls", "superuser"])
        #expect(try Self.weakened("{role: bob, connectionLimit: 5}", "{role: mallory, superuser: true}") == ["superuser"])
        #expect(try Self.weakened("{databases: [app], privileges: {USAGE: false}}", "{databases: [app], privileges: {USAGE: false, CREATE: true}}",
                                  kind: "PostgresPrivilege") == ["app/CREATE"])
        // Legitimate: a new resource that takes powers away, limits or expires a role.
        #expect(try Self.weakened("{role: bob, connectionLimit: 5}",
                                  "{role: mallory, superuser: false, login: false, connectionLimit: 5, validUntil: infinity}").isEmpty)
        #expect(try Self.weakened("{databases: [app], privileges: {USAGE: false}}", "{databases: [app], privileges: {USAGE: false, CREATE: false}}",
                                  kind: "PostgresPrivilege").isEmpty)
    }

    @Test func aPrivilegeGrantedIsAWeakeningAndOneRevokedIsNot() throws {
        let revoked = "{databases: [app], privileges: {CREATE: false}}", granted = "{databases: [app], privileges: {CREATE: true}}"
        #expect(try Self.weakened(revoked, granted, kind: "PostgresPrivilege") == ["app/CREATE"])
        #expect(try Self.weakened(granted, revoked, kind: "PostgresPrivilege").isEmpty)
    }

    /// `ssl: off` and `password_encryption: md5` from one committer were applied with no second
    /// person (an outside review): TLS off, a weaker password hash, a lower TLS version and the
    /// connection logs off are weakenings; the opposite moves, and settings whose direction is
    /// not known, are not. The kind still does not judge direction as a whole.
    @Test func aSettingThatWeakensTLSPasswordsOrConnectionLogsIsAWeakening() throws {
        let kind = "PostgresSetting"
        #expect(try Self.weakened("{settings: {ssl: \"on\", password_encryption: scram-sha-256}}",
                                  "{settings: {ssl: \"off\", password_encryption: md5}}", kind: kind) == ["password_encryption", "ssl"])
        #expect(try Self.weakened("{settings: {ssl_min_protocol_version: TLSv1.3}}", "{settings: {ssl_min_protocol_version: TLSv1.2}}",
                                  kind: kind) == ["ssl_min_protocol_version"])
        #expect(try Self.weakened("{settings: {log_connections: \"on\", log_disconnections: \"on\"}}",
                                  "{settings: {log_connections: \"off\", log_disconnections: \"off\"}}", kind: kind)
                == ["log_connections", "log_disconnections"])
        // Set where no revision set it before: judged from the secure value.
        #expect(try Self.weakened("{settings: {log_statement: ddl}}", "{settings: {log_statement: ddl, ssl: \"off\", ssl_min_protocol_version: TLSv1}}",
                                  kind: kind) == ["ssl", "ssl_min_protocol_version"])
        // Legitimate: stronger, or a direction not known.
        #expect(try Self.weakened("{settings: {ssl: \"off\", password_encryption: md5, ssl_min_protocol_version: TLSv1.2}}",
                                  "{settings: {ssl: \"on\", password_encryption: scram-sha-256, ssl_min_protocol_version: TLSv1.3}}",
                                  kind: kind).isEmpty)
        #expect(try Self.weakened("{settings: {work_mem: 4MB}}", "{settings: {work_mem: 64MB, ssl: \"on\", log_connections: \"on\"}}",
                                  kind: kind).isEmpty)
        #expect(Registry([PostgresAdapter.definition()]).kinds[kind]?.judgesDirection == false)
    }
}
