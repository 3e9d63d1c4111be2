internal import BulwarkCore
internal import Foundation
internal import NIOSSL
internal import PostgresNIO

/// `PostgresSetting`: `spec: {settings: {log_connections: on, password_encryption: scram-sha-256}}`.
/// Set with `ALTER SYSTEM` and `pg_reload_conf()`. A setting that only takes effect after a
/// restart is reported as pending restart (the fix does not verify); the server is never restarted.
///
/// What is observed is what every session gets, not what Bulwark's own session got: a role or
/// database override (`ALTER ROLE eve SET`, `ALTER DATABASE app SET`, `ALTER ROLE ALL SET`) gives
/// the sessions it applies to another value, and one on Bulwark's own role would otherwise hide
/// the server's value from it. The observed value is the server's, followed by each override
/// that differs from the desired value (`scram-sha-256 (role eve gets md5)`). Apply sets the server's value
/// but leaves the overrides alone: they belong to roles and databases the spec does not name, and
/// may be there on purpose. While one differs, apply fails naming it and the SQL that removes it,
/// so the drift is never recorded as fixed.
///
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
        let last = name.split(separator: ".").last.map(String.init) ?? name
        return name.contains("conninfo") || name.contains("password") || name.contains("passphrase") || name.hasSuffix("_command")
            || name.contains("secret") || name.contains("token") || last == "key" || last.hasSuffix("_key") || last.hasSuffix("apikey")
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let names = resource.spec.properties.map(\.name)
        let states = try await connector.withConnection(target) { connection in
            try await SettingState.read(connection, names: names)
        }
        var values: [String: String?] = [:]
        for property in resource.spec.properties {
            // nil: a setting the server does not have (the guard names it).
            values.updateValue(states[property.name]?.shown(desired: property.value), forKey: property.name)
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let names = changes.map(\.property)
        let before = try await connector.withConnection(target) { connection in
            try await SettingState.read(connection, names: names)
        }
        // Only the server's values that differ are written; an override alone writes nothing.
        let written = changes.filter { before[$0.property]?.serverIs($0.desired) != true }
        var after = before
        if !written.isEmpty {
            try await connector.withConnection(target) { connection in
                // What to put back if new sessions cannot start. pg_file_settings is for superusers
                // and pg_read_all_settings; a role granted only ALTER SYSTEM ON PARAMETER cannot
                // read it, and its undo resets the setting instead.
                let previous = (try? await Self.systemValues(connection, names: written.map(\.property))) ?? [:]
                for change in written {
                    try await PostgresAdapter.execute(connection, Self.alterSystem(change.property, to: change.desired))
                }
                try await PostgresAdapter.execute(connection, "SELECT pg_reload_conf()")
                // The postmaster reloads asynchronously: wait (briefly) until new sessions see the
                // change. A new session that cannot start (a library no session can load) is undone
                // through this one, which is already in: otherwise nobody, Bulwark included, could
                // connect to put it back.
                do {
                    for attempt in 0..<20 {
                        after = try await connector.withConnection(target) { connection in
                            try await SettingState.read(connection, names: names)
                        }
                        let settled = written.allSatisfy { change in
                            after[change.property].map { $0.serverIs(change.desired) || $0.pendingRestart } ?? false
                        }
                        if settled || attempt == 19 { break }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    try await expectLoaded(written, after: after, connection, target: target)
                } catch where !(error is CancellationError) {
                    for change in written {
                        let name = change.property
                        try await PostgresAdapter.execute(connection, previous[name].map { Self.alterSystem(name, to: $0) }
                                                          ?? "ALTER SYSTEM RESET \(PostgresAdapter.identifier(name))")
                    }
                    try await PostgresAdapter.execute(connection, "SELECT pg_reload_conf()")
                    let undone = "the change was undone: postgresql.auto.conf holds what it held before, and the server reloaded it"
                    if let error = error as? NotLoaded { throw PostgresAdapterError(error.description + "; " + undone) }
                    throw PostgresAdapterError("new sessions could not start after setting "
                        + written.map(\.property).joined(separator: ", ") + " (\(PostgresAdapter.describe(error))); " + undone)
                }
            }
        }
        let overridden = changes.compactMap { change -> String? in
            guard let state = after[change.property] else { return nil }

            let differing = state.differing(from: change.desired)
            guard !differing.isEmpty else { return nil }
            let name = change.property
            let who = differing.map { change.sensitive ? $0.scope : "\($0.scope) gets \($0.value)" }.joined(separator: ", ")
            return "\(name) is overridden: \(who) (remove with "
                + differing.map { $0.reset(name) }.joined(separator: "; ") + ", or set it there to the desired value)"
        }
        // Another writer made it so since the plan: nothing was changed, nothing to record.
        if written.isEmpty && overridden.isEmpty { throw AlreadyInSync(properties: Set(names)) }
        if !overridden.isEmpty {
            throw PostgresAdapterError((written.isEmpty ? "" : "the server's value was set, but ")
                + overridden.joined(separator: "; ") + "; Bulwark does not change another role's or database's settings")
        }
    }
}

extension SettingDriver {
    /// A setting the server did not take at the reload, though SHOW may report it.
    struct NotLoaded: Error, CustomStringConvertible {
        var description: String
    }

    /// Throws `NotLoaded` when the reload did not take what was written: a line of
    /// postgresql.auto.conf the server refused (`pg_file_settings.error`; not `applied` alone is
    /// no refusal: a setting for new sessions, `log_connections`, is never applied to the session
    /// that reads the view), or,
    /// after a change to `ssl` or a TLS file with `ssl` on, a server that offers no TLS to a new
    /// connection (a certificate it could not load: "SSL configuration was not reloaded", while
    /// SHOW reports the new file). A setting pending a restart is left to `pendingRestart`;
    /// `pg_file_settings` is not read by a role that may not (its fix is still checked for TLS).
    func expectLoaded(_ written: [PropertyDrift], after: [String: SettingState], _ connection: PostgresConnection,
                      target: Target) async throws {
        let names = written.filter { after[$0.property]?.pendingRestart != true }.map(\.property)
        guard !names.isEmpty else { return }
        let refused = (try? await PostgresAdapter.rows(connection, """
            SELECT name, error FROM pg_file_settings
            WHERE name = ANY(\(names)) AND sourcefile LIKE '%/postgresql.auto.conf' AND error IS NOT NULL
            ORDER BY seqno
            """, columns: 2)) ?? []
        if !refused.isEmpty {
            throw NotLoaded(description: "the server did not take " + refused.map { "\($0[0] ?? "?") (\($0[1] ?? "?"))" }.joined(separator: ", ")
                            + " at the reload")
        }
        guard names.contains(where: { $0 == "ssl" || Self.tlsFiles.contains($0) }), !(try PostgresAdapter.settings(target)).host.hasPrefix("/"),
              try await PostgresAdapter.rows(connection, "SELECT current_setting('ssl')", columns: 1).first?[0] == "on" else { return }
        do {
            // Over TLS as the target asks for it (`verify-full` stays so); `require` where it uses none.
            let settings = try PostgresAdapter.settings(target)
            try await connector.withConnection(target, sslmode: settings.sslmode == .disable ? .require : nil) { _ in }
        } catch let error as PostgresAdapterError where error.noTLS {
            throw NotLoaded(description: "ssl is on, but after the reload the server offers no TLS to a new connection: it did not load "
                            + "its TLS configuration (its log says why: a certificate or key it cannot read or use), and its next start "
                            + "would fail")
        }
        // With `ssl` on before, a reload that cannot load the new certificate or key keeps the
        // old ones: TLS still works, and only the certificate a new connection gets tells.
        if names.contains(where: { $0 == "ssl_cert_file" || $0 == "ssl_key_file" }) {
            try await expectPresented(connection, target: target)
        }
    }

    /// Throws `NotLoaded` unless a new TLS connection gets the certificate `ssl_cert_file` names,
    /// as the server reads it (`pg_read_binary_file`: a role that may not read it cannot tell,
    /// and the fix is not taken as loaded).
    func expectPresented(_ connection: PostgresConnection, target: Target) async throws {
        let settings = try PostgresAdapter.settings(target)
        let file = try await PostgresAdapter.rows(connection, "SELECT current_setting('ssl_cert_file')", columns: 1).first?[0] ?? ""
        let shown = "'\(quotedForMessage(file))'"
        let content: [UInt8]
        do {
            content = try await Self.tlsFileContent(file, connection)
        } catch {
            throw NotLoaded(description: "ssl_cert_file: Bulwark's role cannot read \(shown) through the server "
                            + "(\(PostgresAdapter.describe(error))), so whether the server loaded it at the reload cannot be told; "
                            + "grant it pg_read_server_files, or change the certificate by hand")
        }
        guard let certificate = try? NIOSSLCertificate.fromPEMBytes(content).first?.toDERBytes() else {
            throw NotLoaded(description: "ssl_cert_file: \(shown) holds no PEM certificate: the server did not load it at the reload "
                            + "(it still presents the certificate it had), and its next start would fail")
        }
        let presented = try await PresentedCertificate.read(host: settings.host, port: settings.port)
        guard presented == certificate else {
            throw NotLoaded(description: "ssl is on, but after the reload a new connection still gets the certificate the server had "
                            + "before, not the one in \(shown): the server did not load its new TLS configuration (its log says why: "
                            + "a certificate or key it cannot use, or a key that does not match the certificate), and its next start would fail")
        }
    }

    /// `ALTER SYSTEM SET name TO value`: a list setting item by item (`'a', 'b'`), since one
    /// literal would be one item; any other as one literal.
    static func alterSystem(_ name: String, to value: String) -> String {
        let items = SettingValue.listQuoted.contains(name) ? SettingValue.items(value) : [value]
        let literals = items.isEmpty ? "''" : items.map(PostgresAdapter.literal).joined(separator: ", ")
        return "ALTER SYSTEM SET \(PostgresAdapter.identifier(name)) TO \(literals)"
    }

    /// What postgresql.auto.conf holds for `names` (`pg_file_settings`, as written there); a name
    /// it does not hold is left out.
    static func systemValues(_ connection: PostgresConnection, names: [String]) async throws -> [String: String] {
        let rows = try await PostgresAdapter.rows(connection, """
            SELECT name, setting FROM pg_file_settings
            WHERE name = ANY(\(names)) AND sourcefile LIKE '%/postgresql.auto.conf' AND error IS NULL ORDER BY seqno
            """, columns: 2)
        var values: [String: String] = [:]
        for row in rows { if let name = row[0], let value = row[1] { values[name] = value } }
        return values
    }
}

/// What sessions get of one setting: the server's value and the role and database overrides.
struct SettingState: Sendable {
    /// A value `ALTER ROLE … SET` or `ALTER DATABASE … SET` gives the sessions of a role, of a
    /// database, or of a role in a database (`pg_db_role_setting`).
    struct Override: Sendable {
        /// nil: every role (`ALTER ROLE ALL SET`).
        var role: String?
        /// nil: every database.
        var database: String?
        var value: String

        /// Whom it applies to, as people read it: `role eve in database app`.
        var scope: String {
            switch (role, database) {
            case let (role?, database?):
                "role \(PostgresAdapter.shownIdentifier(role)) in database \(PostgresAdapter.shownIdentifier(database))"
            case let (role?, nil): "role \(PostgresAdapter.shownIdentifier(role))"
            case let (nil, database?): "database \(PostgresAdapter.shownIdentifier(database))"
            case (nil, nil): "every role"
            }
        }

        /// `pg_settings.source` of a session that got its value from this override.
        var source: String {
            switch (role, database) {
            case (_?, _?): "database user"
            case (_?, nil): "user"
            case (nil, _?): "database"
            case (nil, nil): "global"
            }
        }

        /// Which of two overrides reaching one session wins, as PostgreSQL applies them.
        static func precedence(_ source: String) -> Int { ["global", "database", "user", "database user"].firstIndex(of: source) ?? -1 }

        /// The statement that removes it. The setting's name was checked when the spec was read
        /// (letters, digits, `_`, `.`), so it is written bare, as people write it.
        func reset(_ setting: String) -> String {
            switch (role, database) {
            case let (role?, database?):
                "ALTER ROLE \(PostgresAdapter.identifier(role)) IN DATABASE \(PostgresAdapter.identifier(database)) RESET \(setting)"
            case let (role?, nil): "ALTER ROLE \(PostgresAdapter.identifier(role)) RESET \(setting)"
            case let (nil, database?): "ALTER DATABASE \(PostgresAdapter.identifier(database)) RESET \(setting)"
            case (nil, nil): "ALTER ROLE ALL RESET \(setting)"
            }
        }
    }

    /// What a session without an override gets, as SHOW prints it (booleans normalized).
    var server: String
    /// The same value as the server reads it (`SettingValue`), from `pg_settings.setting`.
    var serverValue: SettingValue?
    var type: SettingValue.Kind
    var pendingRestart: Bool
    /// In the order of `scope`.
    var overrides: [Override]

    /// Whether a value written as `text` is `desired` as the server reads both: `60s` is
    /// `1min`, `1GB` is `1024MB`, `TRUE` is `on`, `ALL` is `all`. A value the server would not
    /// read is compared as written.
    func same(_ text: String, _ desired: String) -> Bool {
        guard let a = SettingValue.read(text, type), let b = SettingValue.read(desired, type) else { return text == desired }
        return a == b
    }

    /// Whether the server's own value (not counting overrides) is `desired`.
    func serverIs(_ desired: String) -> Bool {
        if server == desired { return true }
        guard let serverValue, let wanted = SettingValue.read(desired, type) else { return false }
        return serverValue == wanted
    }

    /// The overrides whose value is not `desired`.
    func differing(from desired: String) -> [Override] {
        overrides.filter { !same($0.value, desired) }
    }

    /// The observed value: the server's (the desired value's own spelling when the server reads
    /// it as the same value), then what it is pending, then the differing overrides.
    func shown(desired: String) -> String {
        let notes = (pendingRestart ? ["pending restart"] : []) + differing(from: desired).map { "\($0.scope) gets \($0.value)" }
        let value = serverIs(desired) ? desired : server
        return notes.isEmpty ? value : "\(value) (\(notes.joined(separator: "; ")))"
    }

    /// The sources of Bulwark's own session's value that other sessions may not share
    /// (`pg_settings.source`): overrides of its role or database, or its own connection's.
    static let sessionSources: Set<String> = ["global", "database", "user", "database user", "client", "session"]

    /// Reads `names`; a name the server does not know is left out.
    ///
    /// The server's value is `current_setting` when Bulwark's own session got it from the server
    /// (the configuration files, `ALTER SYSTEM`, the command line, the default). When an override
    /// gave Bulwark's session its value, the read fails (see below). Of the settings Bulwark's
    /// session sets for itself (`Connector.ownSession`) it is the session's reset value: what the
    /// session started with, before its own `set_config`.
    static func read(_ connection: PostgresConnection, names: [String]) async throws -> [String: SettingState] {
        let rows = try await PostgresAdapter.rows(connection, """
            SELECT name, current_setting(name), source, boot_val, pending_restart::text, setting, vartype, unit, reset_val,
                   session_user::text, current_database()::text
            FROM pg_settings WHERE name = ANY(\(names))
            """, columns: 11)
        var states: [String: SettingState] = [:]
        var hidden: [String: String] = [:]
        var sources: [String: String] = [:]
        var own: [String] = []
        var me: (role: String?, database: String?) = (nil, nil)
        for row in rows {
            guard let name = row[0], let value = row[1] else { continue }
            let type = SettingValue.Kind(vartype: row[6] ?? "string", unit: row[7], list: SettingValue.listQuoted.contains(name))
            if Connector.ownSession.contains(where: { $0.name == name }), let start = row[8] {
                // Bulwark's session set this for itself (`Connector.ownSession`): what the server
                // gives sessions is the value it started with, its reset value, in base units.
                states[name] = SettingState(server: SettingValue.shown(start, type), serverValue: SettingValue.read(start, type),
                                            type: type, pendingRestart: row[4] == "true", overrides: [])
                own.append(name)
                me = (row[9], row[10])
                continue
            }
            states[name] = SettingState(server: value, serverValue: row[5].flatMap { SettingValue.read($0, type) },
                                        type: type, pendingRestart: row[4] == "true", overrides: [])
            if let source = row[2], sessionSources.contains(source) {
                hidden[name] = row[3] ?? ""
                sources[name] = source
            }
        }
        let overrides = try await PostgresAdapter.rows(connection, """
            SELECT split_part(c, '=', 1), r.rolname, d.datname, substr(c, strpos(c, '=') + 1)
            FROM pg_db_role_setting s
            LEFT JOIN pg_roles r ON r.oid = s.setrole
            LEFT JOIN pg_database d ON d.oid = s.setdatabase,
            unnest(s.setconfig) AS c
            WHERE split_part(c, '=', 1) = ANY(\(names))
            """, columns: 4)
        for row in overrides {
            guard let name = row[0], let value = row[3] else { continue }
            states[name]?.overrides.append(Override(role: row[1], database: row[2], value: value))
        }
        // For the settings Bulwark's session set itself its source says only that; whether an
        // override gave it its reset value is read from the overrides that reach this session.
        for name in own {
            let reaching = (states[name]?.overrides ?? []).filter {
                ($0.role == nil || $0.role == me.role) && ($0.database == nil || $0.database == me.database)
            }
            if let source = reaching.map(\.source).max(by: { Override.precedence($0) < Override.precedence($1) }) {
                hidden[name] = ""
                sources[name] = source
            }
        }
        // Bulwark's own session got the value from an override: what the server gives other
        // sessions cannot be read past it with certainty (a value given on the command line, or
        // files changed and not yet reloaded, are not shown to this session), so it is not
        // guessed: the observation fails, saying how to let Bulwark see it.
        if !hidden.isEmpty {
            let names = hidden.keys.sorted()
            throw PostgresAdapterError("Bulwark's own session gets " + names.map { "\($0) from an override (\(sources[$0] ?? "?"))" }
                .joined(separator: ", ") + "; what other sessions get cannot be read past it, so it is not judged: remove the override "
                + "for Bulwark's role or database (ALTER ROLE … RESET, ALTER DATABASE … RESET)")
        }
        return states.mapValues { state in
            var state = state
            state.server = SettingDriver.normalize(state.server)
            state.overrides.sort { $0.scope < $1.scope }
            return state
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
            try await PostgresAdapter.transaction(connection) {
                try await PostgresAdapter.execute(connection,
                    "ALTER ROLE \(PostgresAdapter.identifier(spec.role)) \(options.joined(separator: " "))")
            }
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
                try await PostgresAdapter.transaction(connection) { try await PostgresAdapter.execute(connection, statement) }
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
            try await PostgresAdapter.transaction(connection) {
                let roles = try await Self.unexpected(connection, allowed: allowed)
                if roles.contains(me) {
                    throw PostgresAdapterError("the connecting user \(PostgresAdapter.shownIdentifier(me)) is a superuser not on the allowed list; "
                                               + "add it or connect as another user")
                }
                // The record names the superusers the plan saw: demoting others (made superuser
                // since) would be a change without its record, and the guard did not judge them.
                if !roles.isEmpty, let planned = changes.first?.observed, Self.shown(roles) != planned {
                    throw PostgresAdapterError("the superusers changed since the plan (now \(Self.shown(roles)), planned \(planned)); "
                                               + "nothing was changed: the next pass judges them again")
                }
                for role in roles { try await PostgresAdapter.execute(connection, "ALTER ROLE \(PostgresAdapter.identifier(role)) NOSUPERUSER") }
                return roles
            }
        }
        // Another writer demoted them since the plan: nothing was changed, nothing to record.
        if demoted.isEmpty { throw AlreadyInSync(properties: Set(changes.map(\.property))) }
    }
}
