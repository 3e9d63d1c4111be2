internal import BulwarkCore
internal import Foundation
internal import PostgresNIO

/// `PostgresSetting`: `spec: {settings: {log_connections: on, password_encryption: scram-sha-256}}`.
/// Set with `ALTER SYSTEM` and `pg_reload_conf()`. A setting that only takes effect after a
/// restart is reported as pending restart (the fix does not verify); the server is never restarted.
/// Settings whose value can hold a secret (`isSensitive`) are shown and recorded redacted.
struct SettingDriver: ResourceDriver {
    var connector: Connector

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["settings"])
        return spec.field("settings", required: true)?.keyedProperties { name, reader in
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_" || $0 == ".") }),
                  name.first?.isLetter == true else {
                reader.fail("'\(name)' is not a PostgreSQL setting name such as log_connections")
                return nil
            }
            guard let text = reader.string() else { return nil }
            return DesiredProperty(name, normalize(text), sensitive: isSensitive(name))
        }
    }

    /// Booleans as SHOW prints them.
    static func normalize(_ value: String) -> String {
        switch value.lowercased() {
        case "true", "yes", "on": "on"
        case "false", "no", "off": "off"
        default: value
        }
    }

    /// Whether a setting's value can hold a secret: a password in a connection string
    /// (`primary_conninfo`), a passphrase, or a shell command that may carry credentials
    /// (`archive_command`, `ssl_passphrase_command`). `password_encryption` names an algorithm
    /// (`md5`, `scram-sha-256`), not a secret, and stays visible: a downgrade to md5 is exactly
    /// what the audit trail must show.
    static func isSensitive(_ name: String) -> Bool {
        guard name != "password_encryption" else { return false }
        return name.contains("conninfo") || name.contains("password") || name.contains("passphrase") || name.hasSuffix("_command")
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let names = resource.spec.properties.map(\.name)
        let rows = try await connector.withConnection(target) { connection in
            try await PostgresAdapter.rows(connection, """
                SELECT name, current_setting(name), pending_restart::text FROM pg_settings WHERE name = ANY(\(names))
                """, columns: 3)
        }
        var values: [String: String?] = [:]
        for name in names { values[name] = String?.none }
        for row in rows {
            guard let name = row[0], let value = row[1] else { continue }
            values[name] = row[2] == "true" ? "\(value) (pending restart)" : Self.normalize(value)
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        try await connector.withConnection(target) { connection in
            for change in changes {
                try await PostgresAdapter.execute(connection,
                    "ALTER SYSTEM SET \(PostgresAdapter.identifier(change.property)) TO \(PostgresAdapter.literal(change.desired))")
            }
            try await PostgresAdapter.execute(connection, "SELECT pg_reload_conf()")
        }
        // The postmaster reloads asynchronously: wait (briefly) until new sessions see the change.
        let names = changes.map(\.property)
        for _ in 0..<20 {
            let current = try await connector.withConnection(target) { connection in
                try await PostgresAdapter.rows(connection, "SELECT name, current_setting(name), pending_restart::text FROM pg_settings WHERE name = ANY(\(names))", columns: 3)
            }
            let settled = changes.allSatisfy { change in
                current.contains { $0[0] == change.property && (Self.normalize($0[1] ?? "") == change.desired || $0[2] == "true") }
            }
            if settled { return }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// `PostgresRole`: `spec: {role: eve, superuser: false, login: true, connectionLimit: 5, validUntil: 2027-01-01}`.
/// Only the attributes listed are managed, all in one `ALTER ROLE`. A role that does not exist
/// fails its observation, naming it: the spec names it on purpose, and reporting it in sync would
/// hide a typo or a name PostgreSQL folded to lower case (`CREATE ROLE Admin` makes `admin`).
struct RoleDriver: ResourceDriver {
    var connector: Connector

    static let flags = [("superuser", "rolsuper", "SUPERUSER"), ("createrole", "rolcreaterole", "CREATEROLE"),
                        ("createdb", "rolcreatedb", "CREATEDB"), ("replication", "rolreplication", "REPLICATION"),
                        ("bypassrls", "rolbypassrls", "BYPASSRLS"), ("login", "rolcanlogin", "LOGIN")]

    /// The role and the attributes it must have, typed once when the spec is read.
    struct Spec: TypedSpec {
        var role: String
        /// Attribute key (`superuser`) to wanted value.
        var flags: [String: Bool]
        /// -1: no limit.
        var connectionLimit: Int?
        /// `YYYY-MM-DD` or `infinity`.
        var validUntil: String?
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["role"] + flags.map(\.0) + ["connectionLimit", "validUntil"])
        guard let role = spec.field("role", required: true)?.string() else { return nil }
        var typed = Spec(role: role, flags: [:])
        var properties: [DesiredProperty] = []
        for (key, _, _) in flags {
            guard let reader = spec.field(key) else { continue }
            guard let value = reader.bool() else { return nil }
            typed.flags[key] = value
            properties.append(DesiredProperty(key, String(value)))
        }
        if let reader = spec.field("connectionLimit") {
            guard let limit = reader.int(in: -1...1_000_000) else { return nil }
            typed.connectionLimit = limit
            properties.append(DesiredProperty("connectionLimit", String(limit)))
        }
        if let reader = spec.field("validUntil"), let text = reader.string() {
            guard text == "infinity" || DesiredStateLoader.endOfDay(text) != nil else {
                reader.fail("expected a date (YYYY-MM-DD) or infinity, got '\(text)'")
                return nil
            }
            typed.validUntil = text
            properties.append(DesiredProperty("validUntil", text))
        }
        guard !properties.isEmpty else {
            spec.fail("list at least one attribute: \((flags.map(\.0) + ["connectionLimit", "validUntil"]).joined(separator: ", "))")
            return nil
        }
        return ResourceSpec(subject: role, properties: properties, typed: typed)
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let role = try PostgresAdapter.spec(resource, Spec.self).role
        let (rows, similar) = try await connector.withConnection(target) { connection -> ([[String?]], [String]) in
            let rows = try await PostgresAdapter.rows(connection, """
                SELECT rolsuper::text, rolcreaterole::text, rolcreatedb::text, rolreplication::text, rolbypassrls::text,
                       rolcanlogin::text, rolconnlimit::text,
                       CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' THEN 'infinity'
                            ELSE to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD') END
                FROM pg_roles WHERE rolname = \(role)
                """, columns: 8)
            guard rows.isEmpty else { return (rows, [String]()) }
            let similar = try await PostgresAdapter.rows(connection, "SELECT rolname FROM pg_roles WHERE lower(rolname) = lower(\(role)) ORDER BY rolname",
                                                         columns: 1)
            return (rows, similar.compactMap { $0[0] })
        }
        guard let row = rows.first else { throw Self.absent(role, target: target.name, similar: similar) }
        let observed = Dictionary(uniqueKeysWithValues: zip(Self.flags.map(\.0) + ["connectionLimit", "validUntil"], row))
        var values: [String: String?] = [:]
        for property in resource.spec.properties { values[property.name] = observed[property.name] ?? nil }
        return Observation(values: values)
    }

    /// Why a role named in a spec was not found, with the names it may have been meant as.
    static func absent(_ role: String, target: String, similar: [String]) -> PostgresAdapterError {
        var message = "role \(PostgresAdapter.shownIdentifier(role)) does not exist on \(target)"
        if !similar.isEmpty {
            message += ": PostgreSQL folds unquoted names to lower case (CREATE ROLE \(role) makes \(role.lowercased())); there is "
                + similar.map { "a role \(PostgresAdapter.shownIdentifier($0))" }.joined(separator: " and ") + ": name it as the server holds it"
        } else if role != role.lowercased() {
            message += " (PostgreSQL folds unquoted names to lower case: CREATE ROLE \(role) makes \(role.lowercased()))"
        }
        return PostgresAdapterError(message)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let spec = try PostgresAdapter.spec(resource, Spec.self)
        var options: [String] = []
        // What is set is what the spec says (typed when it was read), for each drifted attribute.
        for change in changes {
            if let flag = Self.flags.first(where: { $0.0 == change.property }), let wanted = spec.flags[flag.0] {
                options.append(wanted ? flag.2 : "NO" + flag.2)
            } else if change.property == "connectionLimit", let limit = spec.connectionLimit {
                options.append("CONNECTION LIMIT \(limit)")
            } else if change.property == "validUntil", let until = spec.validUntil {
                options.append("VALID UNTIL " + PostgresAdapter.literal(until == "infinity" ? "infinity" : until + " 00:00:00+00"))
            }
        }
        guard !options.isEmpty else { return }
        try await connector.withConnection(target) { connection in
            try await PostgresAdapter.execute(connection,
                "ALTER ROLE \(PostgresAdapter.identifier(spec.role)) \(options.joined(separator: " "))")
        }
    }
}

/// `PostgresPrivilege`: `spec: {databases: [app], schema: public, grantee: PUBLIC, privileges: {CREATE: false}}`:
/// in each listed database, the grantee has (true) or lacks (false) each privilege on the schema.
struct PrivilegeDriver: ResourceDriver {
    var connector: Connector

    /// The grantee, the schema and, per property, its database and privilege: typed once when the
    /// spec is read (a database name may hold a `/`, so the property name is never split).
    struct Spec: TypedSpec {
        struct Entry: Hashable, Sendable {
            var database: String
            var privilege: String
        }

        var grantee: String
        var schema: String
        /// Property name (`app/CREATE`) to what it governs.
        var entries: [String: Entry]
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["databases", "schema", "grantee", "privileges"])
        guard let databases = spec.field("databases", required: true)?.strings(), !databases.isEmpty else { return nil }
        let schema = spec.field("schema")?.string() ?? "public"
        let grantee = spec.field("grantee")?.string() ?? "PUBLIC"
        guard let privileges = spec.field("privileges", required: true)?.entries() else { return nil }
        var properties: [DesiredProperty] = []
        var typed = Spec(grantee: grantee, schema: schema, entries: [:])
        for (name, reader) in privileges {
            guard ["CREATE", "USAGE"].contains(name) else {
                reader.fail("expected a schema privilege: CREATE or USAGE, got '\(name)'")
                return nil
            }
            guard let granted = reader.bool() else { return nil }
            for database in databases {
                properties.append(DesiredProperty("\(database)/\(name)", granted ? "granted" : "revoked"))
                typed.entries["\(database)/\(name)"] = Spec.Entry(database: database, privilege: name)
            }
        }
        return ResourceSpec(subject: "\(grantee) on schema \(schema)", properties: properties, typed: typed)
    }

    /// What a property governs, from the typed spec.
    static func entry(_ spec: Spec, _ property: String) throws -> Spec.Entry {
        guard let entry = spec.entries[property] else { throw PostgresAdapterError("no privilege \(property) in the spec") }
        return entry
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let spec = try PostgresAdapter.spec(resource, Spec.self)
        let (grantee, schema) = (spec.grantee, spec.schema)
        var values: [String: String?] = [:]
        for property in resource.spec.properties {
            let entry = try Self.entry(spec, property.name)
            let rows = try await connector.withConnection(target, database: entry.database) { connection in
                try await PostgresAdapter.rows(connection, "SELECT has_schema_privilege(\(grantee == "PUBLIC" ? "public" : grantee), \(schema), \(entry.privilege))::text", columns: 1)
            }
            values[property.name] = rows.first?[0] == "true" ? "granted" : "revoked"
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let spec = try PostgresAdapter.spec(resource, Spec.self)
        let (grantee, schema) = (spec.grantee, spec.schema)
        let who = grantee == "PUBLIC" ? "PUBLIC" : PostgresAdapter.identifier(grantee)
        for change in changes {
            let entry = try Self.entry(spec, change.property)
            let statement = change.desired == "granted"
                ? "GRANT \(entry.privilege) ON SCHEMA \(PostgresAdapter.identifier(schema)) TO \(who)"
                : "REVOKE \(entry.privilege) ON SCHEMA \(PostgresAdapter.identifier(schema)) FROM \(who)"
            try await connector.withConnection(target, database: entry.database) { connection in
                try await PostgresAdapter.execute(connection, statement)
            }
        }
    }
}

/// `PostgresSuperusers`: `spec: {allowed: [postgres]}`: any other superuser loses the attribute.
/// The connecting user is never demoted (Bulwark would lock itself out).
///
/// Role names may hold any character, `, ` included: the observed list is for people only, each
/// name shown as it would be written in SQL (`"admin, x"` quoted), and apply never reads it back.
/// It asks the server again, in the transaction that demotes, which superusers are not allowed.
struct SuperusersDriver: ResourceDriver {
    var connector: Connector

    /// The roles that may be superusers, typed once when the spec is read (a role name may hold a comma).
    struct Spec: TypedSpec {
        var allowed: Set<String>
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["allowed"])
        guard let allowed = spec.field("allowed", required: true)?.strings() else { return nil }
        return ResourceSpec(subject: allowed.sorted().joined(separator: ","), properties: [DesiredProperty("unexpectedSuperusers", "(none)")],
                            typed: Spec(allowed: Set(allowed)))
    }

    /// The superusers not in `allowed`, by name as the server holds it, in the server's order.
    static func unexpected(_ connection: PostgresConnection, allowed: Set<String>) async throws -> [String] {
        let rows = try await PostgresAdapter.rows(connection, "SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY rolname", columns: 1)
        return rows.compactMap { $0[0] }.filter { !allowed.contains($0) }
    }

    /// The observed value: `(none)`, or the names as SQL would write them, so that no two lists read alike.
    static func shown(_ roles: [String]) -> String {
        roles.isEmpty ? "(none)" : roles.map(PostgresAdapter.shownIdentifier).joined(separator: ", ")
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let allowed = try PostgresAdapter.spec(resource, Spec.self).allowed
        let unexpected = try await connector.withConnection(target) { connection in
            try await Self.unexpected(connection, allowed: allowed)
        }
        return Observation(values: ["unexpectedSuperusers": Self.shown(unexpected)])
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let allowed = try PostgresAdapter.spec(resource, Spec.self).allowed
        let me = try PostgresAdapter.settings(target).user
        let demoted = try await connector.withConnection(target) { connection -> [String] in
            try await PostgresAdapter.execute(connection, "BEGIN")
            let roles = try await Self.unexpected(connection, allowed: allowed)
            if roles.contains(me) {
                try await PostgresAdapter.execute(connection, "ROLLBACK")
                throw PostgresAdapterError("the connecting user \(PostgresAdapter.shownIdentifier(me)) is a superuser not on the allowed list; "
                                           + "add it or connect as another user")
            }
            for role in roles { try await PostgresAdapter.execute(connection, "ALTER ROLE \(PostgresAdapter.identifier(role)) NOSUPERUSER") }
            try await PostgresAdapter.execute(connection, "COMMIT")
            return roles
        }
        // Another writer demoted them since the plan: nothing was changed, nothing to record.
        if demoted.isEmpty { throw AlreadyInSync(properties: Set(changes.map(\.property))) }
    }
}
