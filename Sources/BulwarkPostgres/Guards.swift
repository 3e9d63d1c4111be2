internal import BulwarkCore
internal import Foundation
internal import PostgresNIO

// MARK: - Safety guards
//
// - A server keeps a superuser that can log in (SUPERUSER, LOGIN, no VALID UNTIL, a connection
//   limit other than 0): no change to a role and no trimming of the superusers removes the last.
//   A superuser with a VALID UNTIL, even a year away, is not counted: its logins end that day.
//   The role and superuser changes of one pass on one server are judged together, each with
//   those allowed before it (`JointlyGuardedDriver`): two superusers losing their login leave none.
// - The role Bulwark connects as keeps LOGIN (and a usable password and connection limit) and the
//   rights it manages with: SUPERUSER if it has it, else CREATEROLE. It is given no VALID UNTIL
//   (nor an earlier one than it has): on that day its password stops working, and Bulwark with it.
// - A setting that stops every client's work is not set server-wide: `default_transaction_read_only`
//   on, a statement, lock, idle or transaction timeout under 1 s other than 0, `exit_on_error` on,
//   or a `temp_file_limit` under 1 GB other than -1 (`stopsClients`).
// - Nor one that breaks the data's integrity (`breaksIntegrity`): `session_replication_role`
//   replica (no trigger fires, foreign keys included), `zero_damaged_pages` on, `fsync` or
//   `full_page_writes` off (a crash can corrupt the whole cluster; `synchronous_commit` off
//   loses at most the last commits, and is allowed).
// - Nor a `search_path` that lets a schema's owner take over names every session calls, or
//   misplaces what sessions create (`hijacksNames`): only `"$user"` and `public`, then `pg_temp`.
// - A setting whose pg_settings.context is `postmaster` takes effect only at a restart, which
//   Bulwark never does; `internal` ones cannot be changed at all. Neither is applied: blocked once
//   with that reason, instead of being written and failing to verify on every pass. Nor is one
//   that belongs to a single transaction (`perTransaction`), which ALTER SYSTEM refuses.
// - Nor `ssl` off while sessions or replicas use TLS, Bulwark's own target requires it, or
//   pg_hba.conf admits clients only over TLS (`hostssl`), nor an `ssl_min_protocol_version`
//   above a version a session or replica uses (`cutsOffTLSClients`), nor a TLS file the server
//   cannot read (`unloadableTLSFiles`): its reload keeps no usable TLS configuration while SHOW
//   reports the new file, and its next start fails.
// - Sessions are client backends and walsenders (`ServerProcess`), never background processes;
//   one Bulwark's role may not see the kind of blocks, saying so, and is never guessed either way.
// A guard that cannot read the server blocks: it never lets a change through unjudged. One that
// failed for want of resources (`PostgresShortage`) judged nothing: `GuardVerdict.unjudged`.

/// A role as far as logging in and managing go.
struct RoleState {
    var superuser: Bool
    var login: Bool
    var createRole: Bool
    var connectionLimit: Int
    var expired: Bool
    /// When its password stops working (`VALID UNTIL`); nil: never.
    var validUntil: Date?

    /// A superuser someone can log in as, and will still be able to: one with a VALID UNTIL
    /// is a way in only until that day (as an administrator's expiry is for `UserAccount`).
    var isUsableSuperuser: Bool { superuser && canLogIn && validUntil == nil }
    var canLogIn: Bool { login && !expired && connectionLimit != 0 }

    static func read(_ connection: PostgresConnection, including names: [String]) async throws -> [String: RoleState] {
        let rows = try await PostgresAdapter.rows(connection, """
            SELECT rolname, rolsuper::text, rolcanlogin::text, rolcreaterole::text, rolconnlimit::text,
                   (rolvaliduntil IS NOT NULL AND rolvaliduntil <> 'infinity' AND rolvaliduntil <= now())::text,
                   CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' THEN NULL
                        WHEN NOT isfinite(rolvaliduntil) THEN '0' ELSE extract(epoch FROM rolvaliduntil)::text END
            FROM pg_roles WHERE rolsuper OR rolname = ANY(\(names))
            """, columns: 7)
        var roles: [String: RoleState] = [:]
        for row in rows {
            guard let name = row[0] else { continue }
            roles[name] = RoleState(superuser: row[1] == "true", login: row[2] == "true", createRole: row[3] == "true",
                                    connectionLimit: Int(row[4] ?? "") ?? -1, expired: row[5] == "true",
                                    validUntil: row[6].map { Date(timeIntervalSince1970: Double($0) ?? 0) })
        }
        return roles
    }

    /// What is left of a login and its powers in both `self` and `other`: an earlier change of
    /// the pass is counted against what a guard protects, never for it (it may still fail to be
    /// written), so a role keeps a power or its login only if it has it both before and after.
    func worse(_ other: RoleState) -> RoleState {
        var result = self
        result.superuser = superuser && other.superuser
        result.login = login && other.login
        result.createRole = createRole && other.createRole
        if other.connectionLimit == 0 { result.connectionLimit = 0 }
        result.expired = expired || other.expired
        result.validUntil = [validUntil, other.validUntil].compactMap { $0 }.min()
        return result
    }

    /// `roles` once the role and superuser changes a pass allowed before (`alongside`) are made,
    /// counted only against them (`worse`): two superusers each losing their login in one pass,
    /// each allowed alone, left none.
    static func after(_ alongside: [AllowedChange], _ roles: [String: RoleState], now: Date) -> [String: RoleState] {
        var result = roles
        for allowed in alongside {
            switch allowed.resource.id.kind {
            case "PostgresRole":
                guard let role = try? PostgresAdapter.spec(allowed.resource, RoleDriver.Spec.self).role, let state = result[role] else { continue }
                result[role] = state.worse(state.applying(allowed.changes, now: now))
            case "PostgresSuperusers":
                guard let permitted = try? PostgresAdapter.spec(allowed.resource, SuperusersDriver.Spec.self).allowed else { continue }
                for (name, state) in result where state.superuser && !permitted.contains(name) { result[name]?.superuser = false }
            default:
                continue
            }
        }
        return result
    }

    /// The state after `changes` (a PostgresRole's properties) are applied.
    func applying(_ changes: [PropertyDrift], now: Date) -> RoleState {
        var after = self
        for change in changes {
            switch change.property {
            case "superuser": after.superuser = change.desired == "true"
            case "login": after.login = change.desired == "true"
            case "createrole": after.createRole = change.desired == "true"
            case "connectionLimit": after.connectionLimit = Int(change.desired) ?? -1
            case "validUntil":
                // Applied as the start of that day, UTC.
                let start = DesiredStateLoader.endOfDay(change.desired).map { $0.addingTimeInterval(-86_400) }
                after.expired = change.desired != "infinity" && (start.map { $0 <= now } ?? true)
                after.validUntil = change.desired == "infinity" ? nil : start ?? now
            default: break
            }
        }
        return after
    }
}

extension Connector {
    /// Runs a guard's reading of the server; a failure blocks, or leaves the change unjudged
    /// where it was for want of the machine's resources (`cannotJudge`).
    func judge(_ target: Target, _ check: (PostgresConnection) async throws -> [String]) async -> GuardVerdict {
        do {
            let problems = try await withConnection(target) { connection in try await check(connection) }
            return problems.isEmpty ? .allow : .block(problems.joined(separator: "; "))
        } catch {
            return Self.cannotJudge(target, error)
        }
    }

    /// A guard that could not read the server blocks: it never lets a change through unjudged.
    /// Where it failed for want of the server's or this machine's resources (`PostgresShortage`:
    /// too many connections, out of memory, disk full, no file descriptor) it judged nothing,
    /// and no person is offered to approve the change past it: `GuardVerdict.unjudged`.
    static func cannotJudge(_ target: Target, _ error: any Error) -> GuardVerdict {
        let reason = "cannot read \(target.name) to judge the change, so it is not applied: \(error)"
        return PostgresShortage.isShortage(error) ? .unjudged(reason + "; the server or this machine ran short of resources, "
                                                              + "and the change is judged again at the next pass") : .block(reason)
    }

    /// The problems of going from `before` to `after` (role name to state) for a target Bulwark
    /// connects to as `me`.
    ///
    /// `live` is the server as it is, when `before` already counts changes a pass allowed before
    /// this one: the server has a superuser that can log in now, and would be left without.
    static func lockouts(before: [String: RoleState], after: [String: RoleState], me: String?, target: String,
                         live: [String: RoleState]? = nil) -> [String] {
        var problems: [String] = []
        if let me, let was = before[me], let will = after[me] {
            let prefix = "Bulwark connects to \(target) as \(me)"
            if was.login && !will.login { problems.append("\(prefix): removing its LOGIN would lock Bulwark out") }
            if was.connectionLimit != 0 && will.connectionLimit == 0 { problems.append("\(prefix): a connection limit of 0 would lock Bulwark out") }
            if !was.expired && will.expired {
                problems.append("\(prefix): a VALID UNTIL in the past would lock Bulwark out")
            } else if let until = will.validUntil, was.validUntil.map({ until < $0 }) ?? true {
                problems.append("\(prefix): a VALID UNTIL of \(Self.day(until)) would lock Bulwark out on that day")
            }
            if was.superuser && !will.superuser {
                problems.append("\(prefix): removing its SUPERUSER would leave Bulwark unable to manage settings and superusers")
            } else if !was.superuser && was.createRole && !will.createRole {
                problems.append("\(prefix): removing its CREATEROLE would leave Bulwark unable to manage roles")
            }
        }
        let usableBefore = (live ?? before).filter(\.value.isUsableSuperuser).keys.sorted()
        let usableAfter = after.filter(\.value.isUsableSuperuser).keys
        if !usableBefore.isEmpty && usableAfter.isEmpty {
            let expiring = after.filter { $0.value.superuser && $0.value.canLogIn && $0.value.validUntil != nil }.keys.sorted()
            problems.append("this would leave \(target) without a superuser that can log in (now: \(usableBefore.joined(separator: ", ")))"
                            + (expiring.isEmpty ? "" : "; a superuser with a VALID UNTIL (\(expiring.joined(separator: ", "))) "
                                + "is not counted: its logins end that day"))
        }
        return problems
    }

    /// `YYYY-MM-DD`, UTC, as `validUntil` is written.
    static func day(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        return formatter.string(from: date)
    }
}

extension Connector {
    /// The question the role and superuser guards answer together about a server: is a superuser
    /// left that can log in, and can Bulwark still log in. Asked of the server (`host:port`), so
    /// two targets naming one server (another database) are judged together.
    static func rolesDomain(_ target: Target) -> GuardDomain {
        let scope = (try? PostgresAdapter.settings(target)).map { "postgres \($0.host):\($0.port)" }
        return GuardDomain(name: "postgres-logins", stage: 0, scope: scope)
    }
}

extension RoleDriver: JointlyGuardedDriver {
    func guardDomain(_ resource: Resource, on target: Target) -> GuardDomain? { Connector.rolesDomain(target) }

    /// Judged with the role and superuser changes the pass allowed before it on the same server
    /// (`alongside`): each of two superusers losing their login was allowed alone, and together
    /// they left none.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target, alongside: [AllowedChange]) async -> GuardVerdict {
        let me = target.settings["user"]
        return await connector.judge(target) { connection in
            let role = try PostgresAdapter.spec(resource, RoleDriver.Spec.self).role
            let live = try await RoleState.read(connection, including: [role] + (me.map { [$0] } ?? []))
            guard let current = live[role] else { return [] }  // gone since observed: nothing to apply
            let now = Date()
            let before = RoleState.after(alongside, live, now: now)
            var after = before
            after[role] = (before[role] ?? current).applying(changes, now: now)
            var problems = Connector.lockouts(before: before, after: after, me: me, target: target.name, live: live)
            // A role in use now: its sessions (an application's pool) and a replica streaming as
            // it are refused when they reconnect, an outage a second person's word does not make
            // safe. Bulwark's own is judged above; a superuser's by the count of usable superusers.
            if role != me, current.canLogIn, after[role]?.canLogIn == false {
                let processes = try await ServerProcess.read(connection).filter { $0.user == role }
                let clients = processes.filter { $0.kind == .client }.count, replicas = processes.filter { $0.kind == .replica }.count
                if clients + replicas > 0 {
                    problems.append("\(quotedForMessage(role)) has \(ServerProcess.counted(clients: clients, replicas: replicas)) open on "
                                    + "\(target.name) now: without its login, each would be refused when it connects again (an "
                                    + "application's pool reconnecting); stop what connects as \(quotedForMessage(role)) first, then apply the change")
                }
                let unseen = processes.filter { $0.kind == .unseen }.count
                if unseen > 0 {
                    problems.append(ServerProcess.unseen(unseen, of: role, me: me, target: target.name)
                                    + ": each may be a session that would be refused when it connects again, so the change is not "
                                    + "judged safe; grant pg_read_all_stats to \(quotedForMessage(me ?? "Bulwark's role")), or stop what "
                                    + "connects as \(quotedForMessage(role)) first")
                }
            }
            return problems
        }
    }
}

/// A process of the server other than the judging session, as Bulwark's role sees it in
/// `pg_stat_activity`. A role that is neither superuser nor a member of `pg_read_all_stats` sees
/// another role's process's user, database and pid, but not its `backend_type` nor its TLS
/// (`pg_stat_ssl`): such a process is told apart only where what it shows rules out a client
/// (no user or no database: a background process; a pid `pg_stat_get_wal_senders()` lists: a
/// replication connection); any other is `unseen`, and a guard says it cannot judge, never
/// counting it either way.
struct ServerProcess {
    enum Kind: String { case client, replica, other, unseen }

    var user: String?
    var kind: Kind
    /// Whether it uses TLS; nil: not shown to Bulwark's role.
    var tls: Bool?
    /// Its TLS version; empty: none, or not shown.
    var version: String
    /// `application_name`, which every role sees (a replica's is its `cluster_name`, or the
    /// streaming program's name).
    var application: String

    static func read(_ connection: PostgresConnection) async throws -> [ServerProcess] {
        let rows = try await PostgresAdapter.rows(connection, """
            SELECT a.usename::text,
                   CASE WHEN a.backend_type = 'client backend' THEN 'client'
                        WHEN a.backend_type = 'walsender' OR w.pid IS NOT NULL THEN 'replica'
                        WHEN a.backend_type IS NOT NULL OR a.usesysid IS NULL OR a.datid IS NULL THEN 'other'
                        ELSE 'unseen' END,
                   s.ssl::text, coalesce(s.version, ''), coalesce(a.application_name, '')
            FROM pg_stat_activity a
            LEFT JOIN pg_stat_ssl s ON s.pid = a.pid
            LEFT JOIN (SELECT pid FROM pg_stat_get_wal_senders()) w ON w.pid = a.pid
            WHERE a.pid <> pg_backend_pid()
            """, columns: 5)
        return rows.map { row in
            ServerProcess(user: row[0], kind: row[1].flatMap(Kind.init(rawValue:)) ?? .unseen,
                          tls: row[2].map { $0 == "true" }, version: row[3] ?? "", application: row[4] ?? "")
        }
    }

    /// `1 session`, `2 sessions and 1 replication connection`.
    static func counted(clients: Int, replicas: Int) -> String {
        let sessions = clients > 0 ? "\(clients) session\(clients == 1 ? "" : "s")" : nil
        let streams = replicas > 0 ? "\(replicas) replication connection\(replicas == 1 ? "" : "s")" : nil
        return [sessions, streams].compactMap { $0 }.joined(separator: " and ")
    }

    /// What Bulwark's role `me` cannot see of `count` processes (of `role`, if given).
    static func unseen(_ count: Int, of role: String? = nil, me: String?, target: String) -> String {
        "Bulwark's role \(quotedForMessage(me ?? "(the target's user)")) may not see what \(count) process\(count == 1 ? "" : "es")"
            + (role.map { " of \(quotedForMessage($0))" } ?? "") + " on \(target) \(count == 1 ? "is" : "are") (it is neither superuser "
            + "nor a member of pg_read_all_stats, so pg_stat_activity and pg_stat_ssl hide \(count == 1 ? "its" : "their") backend_type "
            + "and TLS use)"
    }
}

extension PrivilegeDriver {
    /// Blocks taking `USAGE` on a schema away from a grantee while roles that have it only
    /// through that grant are connected to the database: every query of theirs on the schema's
    /// tables would fail from the next statement on (the application is in use, so this is an
    /// outage, not a hardening). A superuser, the schema's owner (or a member of it), and a role
    /// that keeps it through another grant lose nothing. `CREATE` is not judged: revoking it is
    /// the hardening, and what a session will create is not known.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        do {
            let spec = try PostgresAdapter.spec(resource, Spec.self)
            var problems: [String] = []
            for change in changes where change.desired == "revoked" {
                let entry = try Self.entry(spec, change.property)
                guard entry.privilege == "USAGE" else { continue }
                let users = try await connector.withConnection(target, database: entry.database) { connection in
                    try await Self.losingUsage(spec.grantee, schema: spec.schema, connection)
                }
                guard !users.isEmpty else { continue }
                let shown = users.map { "\(quotedForMessage($0.role)) (\($0.sessions) session\($0.sessions == 1 ? "" : "s"))" }.joined(separator: ", ")
                problems.append("revoking USAGE on schema \(quotedForMessage(spec.schema)) from \(quotedForMessage(spec.grantee)) in \(quotedForMessage(entry.database)) would cut off \(shown), "
                                + "connected now and with USAGE only through that grant: every query of theirs on the schema's tables "
                                + "would fail; grant USAGE to them first, or stop what connects as them")
            }
            return problems.isEmpty ? .allow : .block(problems.joined(separator: "; "))
        } catch {
            return Connector.cannotJudge(target, error)
        }
    }

    /// The roles connected to this database now, and their sessions, that have `USAGE` on
    /// `schema` only through `grantee`'s grant (PUBLIC's: every role's): not superusers, not
    /// members of the schema's owner, and with no other grant of it reaching them (an
    /// explicit one, one to a role they are a member of, or PUBLIC's when another is revoked).
    static func losingUsage(_ grantee: String, schema: String, _ connection: PostgresConnection) async throws
        -> [(role: String, sessions: Int)] {
        let rows = try await PostgresAdapter.rows(connection, """
            WITH g AS (SELECT CASE WHEN \(grantee) = 'PUBLIC' THEN 0::oid
                                   ELSE (SELECT oid FROM pg_roles WHERE rolname = \(grantee)) END AS oid)
            SELECT a.usename::text, count(*)::text
            FROM pg_stat_activity a
            JOIN pg_roles r ON r.rolname = a.usename
            JOIN pg_namespace n ON n.nspname = \(schema)
            CROSS JOIN g
            WHERE a.datname = current_database() AND (a.backend_type = 'client backend' OR a.backend_type IS NULL)
              AND a.pid <> pg_backend_pid()
              AND g.oid IS NOT NULL AND NOT r.rolsuper
              AND has_schema_privilege(r.oid, n.oid, 'USAGE')
              AND NOT pg_has_role(r.oid, n.nspowner, 'USAGE')
              AND (g.oid = 0 OR pg_has_role(r.oid, g.oid, 'USAGE'))
              AND NOT EXISTS (SELECT 1 FROM aclexplode(n.nspacl) x
                              WHERE x.privilege_type = 'USAGE' AND x.grantee <> g.oid
                                AND (x.grantee = 0 OR pg_has_role(r.oid, x.grantee, 'USAGE')))
            GROUP BY a.usename ORDER BY a.usename
            """, columns: 2)
        return rows.compactMap { row in
            guard let role = row[0], let count = row[1].flatMap({ Int($0) }) else { return nil }
            return (role, count)
        }
    }
}

extension SuperusersDriver: JointlyGuardedDriver {
    func guardDomain(_ resource: Resource, on target: Target) -> GuardDomain? { Connector.rolesDomain(target) }

    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target, alongside: [AllowedChange]) async -> GuardVerdict {
        let me = target.settings["user"]
        return await connector.judge(target) { connection in
            let allowed = try PostgresAdapter.spec(resource, SuperusersDriver.Spec.self).allowed
            let live = try await RoleState.read(connection, including: me.map { [$0] } ?? [])
            let before = RoleState.after(alongside, live, now: Date())
            var after = before
            for (name, state) in before where state.superuser && !allowed.contains(name) {
                after[name]?.superuser = false
            }
            return Connector.lockouts(before: before, after: after, me: me, target: target.name, live: live).map {
                $0.hasPrefix("Bulwark connects") ? $0 + ": add \(me ?? "it") to allowed or connect as another role" : $0
            }
        }
    }
}

extension SettingDriver {
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let names = changes.map(\.property)
        return await connector.judge(target) { connection in
            let rows = try await PostgresAdapter.rows(connection, "SELECT name, context, vartype, unit FROM pg_settings WHERE name = ANY(\(names))",
                                                      columns: 4)
            var contexts: [String: String] = [:]
            var kinds: [String: SettingValue.Kind] = [:]
            for row in rows {
                guard let name = row[0], let context = row[1] else { continue }
                contexts[name] = context
                kinds[name] = SettingValue.Kind(vartype: row[2] ?? "string", unit: row[3])
            }
            var problems = changes.compactMap { change in
                kinds[change.property].flatMap { Self.stopsClients(change, $0) ?? Self.breaksIntegrity(change, $0) }
                    ?? Self.hijacksNames(change)
            }
            // A library every new session loads must load: one that does not stops every
            // connection, Bulwark's included. Tried here, in the judging session.
            for change in changes where ["session_preload_libraries", "local_preload_libraries"].contains(change.property) {
                for library in SettingValue.items(change.desired) {
                    // Only a library installed with the server (no folder named): the guard runs
                    // before approvals are judged, and loading a file from anywhere would run its
                    // code on the word of the commit alone.
                    guard !library.contains("/"), !library.contains("\\") else {
                        problems.append("\(change.property): '\(quotedForMessage(library))' names a folder; Bulwark sets only libraries "
                                        + "installed with the server ($libdir), by name")
                        continue
                    }
                    // From $libdir itself (local_preload_libraries: $libdir/plugins/), never through
                    // dynamic_library_path, which a policy can point at a folder of its choosing.
                    let path = (change.property == "local_preload_libraries" ? "$libdir/plugins/" : "$libdir/") + library
                    do {
                        try await PostgresAdapter.execute(connection, "LOAD \(PostgresAdapter.literal(path))")
                    } catch {
                        problems.append("\(change.property): the library '\(quotedForMessage(library))' does not load (\(PostgresAdapter.describe(error))), "
                                        + "and every new session would fail to start")
                    }
                }
            }
            problems += try await Self.cutsOffTLSClients(changes, connection, target: target)
            let unloadable = try await Self.unloadableTLSFiles(changes, connection)
            problems += unloadable
            // A file said unloadable is not said again as unreadable for judging.
            let reported = Set(changes.map(\.property).filter { name in unloadable.contains { $0.hasPrefix(name) } })
            problems += try await Self.unusableTLSFiles(changes, connection, reported: reported)
            if names.contains("dynamic_library_path") {
                problems.append("dynamic_library_path decides where every library a session loads comes from; Bulwark does not set it "
                                + "(set it by hand, in a maintenance window)")
            }
            return problems + names.compactMap { name in
                switch contexts[name] {
                case nil:
                    return "\(name) is not a setting of this server"
                case "postmaster":
                    return "\(name) takes effect only when the server restarts (pg_settings.context is postmaster), "
                        + "and Bulwark never restarts a server: set it and restart in a maintenance window"
                case "internal":
                    return "\(name) cannot be changed (pg_settings.context is internal)"
                case _ where Self.perTransaction.contains(name):
                    return "\(name) belongs to one transaction and cannot be set server-wide (ALTER SYSTEM refuses it); "
                        + "the server-wide default is default_\(name)"
                default:
                    return nil
                }
            }
        }
    }
}

// MARK: - TLS

extension SettingDriver {
    /// The settings that name a file (or, `ssl_crl_dir`, a folder) the server loads its TLS
    /// configuration from, at a reload and at every start.
    static let tlsFiles = ["ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_crl_file", "ssl_crl_dir", "ssl_dh_params_file"]

    /// Why a change would refuse clients that reach the server over TLS now, when they connect
    /// again (an application's pool reconnecting, a replica's stream restarting): `ssl` off while
    /// sessions or replication connections use TLS (a client with `sslmode=require` or stricter is
    /// refused: "server does not support SSL"), while Bulwark's own target requires it, or while
    /// pg_hba.conf admits clients only over TLS (`hostssl`); `ssl_min_protocol_version` raised
    /// above the version one of them uses. Only client backends and walsenders are counted, never
    /// a background process; one whose kind or TLS Bulwark's role may not see blocks, saying so.
    static func cutsOffTLSClients(_ changes: [PropertyDrift], _ connection: PostgresConnection, target: Target) async throws -> [String] {
        let off = changes.first { $0.property == "ssl" && SettingValue.bool($0.desired) != true }
        let minimum = changes.first { $0.property == "ssl_min_protocol_version" }
        guard off != nil || minimum != nil else { return [] }
        let me = target.settings["user"]
        let processes = try await ServerProcess.read(connection).filter { $0.kind != .other }
        let unseen = processes.filter { $0.kind == .unseen || $0.tls == nil }.count
        let tls = processes.filter { $0.kind != .unseen && $0.tls == true }
        /// `1 session … uses`, `2 sessions and 1 replication connection … use`, and the replicas' names.
        func counted(_ list: [ServerProcess]) -> String {
            let clients = list.filter { $0.kind == .client }.count, replicas = list.filter { $0.kind == .replica }
            let names = Set(replicas.map(\.application).filter { !$0.isEmpty }).sorted().map { "'\(quotedForMessage($0))'" }
            return ServerProcess.counted(clients: clients, replicas: replicas.count)
                + (names.isEmpty ? "" : " (pg_stat_replication: \(names.joined(separator: ", ")))")
                + " on \(target.name) \(list.count == 1 ? "uses" : "use")"
        }
        func cannotSee(_ setting: PropertyDrift) -> String {
            "\(setting.property): '\(quotedForMessage(setting.desired))': " + ServerProcess.unseen(unseen, me: me, target: target.name)
                + ": whether \(unseen == 1 ? "it is a session or a replica that uses" : "they are sessions or replicas that use") TLS cannot be "
                + "judged, so the change is not judged safe; grant pg_read_all_stats to \(quotedForMessage(me ?? "Bulwark's role"))"
        }
        var problems: [String] = []
        if let off {
            let settings = try PostgresAdapter.settings(target)
            if settings.sslmode != .disable, !settings.host.hasPrefix("/") {
                problems.append("ssl: '\(quotedForMessage(off.desired))': Bulwark connects to \(target.name) with sslmode \(settings.sslmode.rawValue), "
                                + "and would be refused itself")
            }
            if !tls.isEmpty {
                problems.append("ssl: '\(quotedForMessage(off.desired))' turns TLS off while \(counted(tls)) it now: "
                                + "each client that requires TLS (sslmode=require or stricter) would be refused when it connects again, "
                                + "a replica's stream cut off; move them off TLS first, or set it by hand, in a maintenance window")
            }
            if unseen > 0 { problems.append(cannotSee(off)) }
            problems += try await tlsOnlyRules(off, connection, me: me)
        }
        if let minimum, let wanted = PostgresWeakening.tlsRank(minimum.desired) {
            let older = tls.filter { PostgresWeakening.tlsRank($0.version).map { $0 < wanted } ?? true }
            if !older.isEmpty {
                let versions = older.map { $0.version.isEmpty ? "an unknown version" : $0.version }
                problems.append("ssl_min_protocol_version: '\(quotedForMessage(minimum.desired))' refuses the TLS version "
                                + "\(Array(Set(versions)).sorted().joined(separator: ", ")) that \(counted(older)) now: each "
                                + "would be refused when it connects again; upgrade those clients first")
            }
            if unseen > 0 { problems.append(cannotSee(minimum)) }
        }
        return problems
    }

    /// Why turning `ssl` off would refuse the clients pg_hba.conf admits only over TLS, if it
    /// would: its `hostssl` lines (other than `reject`) match no connection without TLS, so each
    /// client they admit is refused, or falls to a later line that may admit it otherwise.
    /// Read from `pg_hba_file_rules` (the file as it is on disk), which is for superusers and
    /// roles granted it: a role that may not read it blocks, saying so.
    static func tlsOnlyRules(_ off: PropertyDrift, _ connection: PostgresConnection, me: String?) async throws -> [String] {
        let value = "ssl: '\(quotedForMessage(off.desired))'"
        let readable = try await PostgresAdapter.rows(connection, """
            SELECT (has_table_privilege('pg_catalog.pg_hba_file_rules', 'SELECT')
                    AND has_function_privilege('pg_catalog.pg_hba_file_rules()', 'EXECUTE'))::text
            """, columns: 1)
        guard readable.first?[0] == "true" else {
            return ["\(value): Bulwark's role \(quotedForMessage(me ?? "(the target's user)")) may not read pg_hba_file_rules, so whether "
                    + "pg_hba.conf admits clients only over TLS (hostssl lines) cannot be judged, and the change is not judged safe; "
                    + "grant it SELECT on pg_catalog.pg_hba_file_rules and EXECUTE on pg_catalog.pg_hba_file_rules()"]
        }
        let rows = try await PostgresAdapter.rows(connection, """
            SELECT line_number::text, array_to_string(database, ','), array_to_string(user_name, ','),
                   coalesce(address || coalesce('/' || netmask, ''), ''), auth_method,
                   (SELECT setting FROM pg_settings WHERE name = 'hba_file')
            FROM pg_hba_file_rules WHERE type = 'hostssl' AND error IS NULL AND auth_method <> 'reject' ORDER BY line_number
            """, columns: 6)
        guard !rows.isEmpty else { return [] }
        let lines = rows.map { row in
            let rule = ["hostssl", row[1], row[2], row[3], row[4]].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return "line \(row[0] ?? "?") ('\(quotedForMessage(rule))')"
        }
        let file = rows.first?[5].map { " ('\(quotedForMessage($0))')" } ?? ""
        return ["\(value): pg_hba.conf\(file) admits clients only over TLS at \(lines.joined(separator: ", ")): with TLS off no "
                + "connection matches \(rows.count == 1 ? "that line" : "those lines"), and each client \(rows.count == 1 ? "it admits" : "they admit") "
                + "would be refused (or fall to a later line); change pg_hba.conf first, or set it by hand, in a maintenance window"]
    }

    /// Why a change would leave the server unable to load its TLS configuration, if it would:
    /// a file it names (or, turning `ssl` on, the certificate and key it will load) that the
    /// server cannot read. The reload keeps the old configuration ("SSL configuration was not
    /// reloaded": TLS clients refused where there was none) while SHOW reports the new value,
    /// and the next start fails: blocked, as a setting that needs a restart is. Read through the
    /// server, as its own user (`pg_read_binary_file` of no bytes: a key is opened, never read).
    /// An empty `ssl_ca_file`, `ssl_crl_file`, `ssl_crl_dir` or `ssl_dh_params_file` is none.
    static func unloadableTLSFiles(_ changes: [PropertyDrift], _ connection: PostgresConnection) async throws -> [String] {
        var files: [(name: String, path: String)] = changes.filter { tlsFiles.contains($0.property) }.map { ($0.property, $0.desired) }
        if changes.contains(where: { $0.property == "ssl" && SettingValue.bool($0.desired) == true }) {
            for name in ["ssl_cert_file", "ssl_key_file"] where !files.contains(where: { $0.name == name }) {
                let rows = try await PostgresAdapter.rows(connection, "SELECT current_setting(\(name))", columns: 1)
                files.append((name, rows.first?[0] ?? ""))
            }
        }
        var problems: [String] = []
        for (name, path) in files {
            guard !path.isEmpty else {
                if ["ssl_cert_file", "ssl_key_file"].contains(name) {
                    problems.append("\(name) is empty: the server could not load its TLS configuration, and the next start would fail")
                }
                continue
            }
            let folder = name == "ssl_crl_dir"
            do {
                let rows = try await PostgresAdapter.rows(connection, folder
                    ? "SELECT (pg_stat_file(\(path))).isdir::text"
                    : "SELECT (NOT (pg_stat_file(\(path))).isdir AND pg_read_binary_file(\(path), 0, 0) IS NOT NULL)::text", columns: 1)
                if rows.first?[0] != "true" {
                    problems.append("\(name): '\(quotedForMessage(path))' is \(folder ? "not a folder" : "a folder, not a file"): the server "
                                    + "could not load its TLS configuration, and the next start would fail")
                }
            } catch {
                problems.append("\(name): the server cannot read '\(quotedForMessage(path))' (\(PostgresAdapter.describe(error))): it would not "
                                + "load its TLS configuration at the reload (SHOW would still report the new value), and the next start "
                                + "would fail; a relative path is read from the data directory")
            }
        }
        return problems
    }
}

extension SettingDriver {
    /// The most of a TLS file the guard reads (a CA bundle is a few hundred kB): a longer one is
    /// not judged usable.
    static let tlsFileLimit = 16 << 20

    /// A file's bytes as the server reads them, as its own user (`pg_read_binary_file`: for
    /// superusers and pg_read_server_files), at most `tlsFileLimit`.
    static func tlsFileContent(_ path: String, _ connection: PostgresConnection) async throws -> [UInt8] {
        let rows = try await PostgresAdapter.rows(connection, "SELECT encode(pg_read_binary_file(\(path), 0, \(tlsFileLimit)), 'base64')",
                                                  columns: 1)
        return (rows.first?[0]).flatMap { Data(base64Encoded: $0, options: .ignoreUnknownCharacters) }.map { Array($0) } ?? []
    }

    /// Why a change would leave the server with a TLS file it reads but cannot use, if it would
    /// (one it cannot read is `unloadableTLSFiles`'): an `ssl_ca_file` without a PEM certificate,
    /// an `ssl_crl_file` without a PEM revocation list, an `ssl_dh_params_file` without PEM DH
    /// parameters, each one that cannot be read as such; an `ssl_key_file` that is not the key of
    /// the certificate the server will present (`ssl_cert_file`, as changed or as it is), is
    /// encrypted (whether it is cannot be told), or holds no key. The reload would keep the old
    /// configuration ("SSL configuration was not reloaded") while SHOW reports the new file, a
    /// missing CRL or DH file only failing the next start, and that start would fail: every
    /// client and replica cut off. The key's bytes are compared in memory, never shown.
    static func unusableTLSFiles(_ changes: [PropertyDrift], _ connection: PostgresConnection,
                                 reported: Set<String> = []) async throws -> [String] {
        let failed = "the server would not load its TLS configuration at the reload (SHOW would still report the new value), and "
            + "its next start would fail"
        var problems: [String] = []
        let checks: [String: ([UInt8]) -> String?] = [
            "ssl_ca_file": TLSFileContent.caProblem, "ssl_crl_file": TLSFileContent.crlProblem,
            "ssl_dh_params_file": TLSFileContent.dhProblem,
        ]
        // The file a change names, as the server reads it; nil, with the problem said, when it
        // cannot be read: one `unloadableTLSFiles` said already is not said again, and no
        // other is let through unjudged.
        func content(_ change: PropertyDrift) async -> [UInt8]? {
            do {
                return try await tlsFileContent(change.desired, connection)
            } catch {
                if !reported.contains(change.property) {
                    problems.append("\(change.property): '\(quotedForMessage(change.desired))' could not be read through the server to "
                                    + "judge it (\(PostgresAdapter.describe(error)))")
                }
                return nil
            }
        }
        for change in changes where !change.desired.isEmpty {
            guard let check = checks[change.property], let bytes = await content(change) else { continue }
            let tooLong = bytes.count >= tlsFileLimit
            if let problem = tooLong ? "is longer than \(tlsFileLimit >> 20) MB, and is not judged" : check(bytes) {
                problems.append("\(change.property): '\(quotedForMessage(change.desired))' \(problem): \(failed)")
            }
        }
        guard let key = changes.first(where: { $0.property == "ssl_key_file" }), !key.desired.isEmpty,
              let keyBytes = await content(key) else { return problems }
        let certificateChange = changes.first { $0.property == "ssl_cert_file" }
        var certificatePath = certificateChange?.desired ?? ""
        if certificateChange == nil {
            certificatePath = try await PostgresAdapter.rows(connection, "SELECT current_setting('ssl_cert_file')", columns: 1).first?[0] ?? ""
        }
        let shownKey = "'\(quotedForMessage(key.desired))'", shownCertificate = "'\(quotedForMessage(certificatePath))'"
        let certificateBytes: [UInt8]
        do {
            certificateBytes = try await tlsFileContent(certificatePath, connection)
        } catch {
            // A changed certificate the server cannot read is said by `unloadableTLSFiles`.
            if certificateChange == nil {
                problems.append("ssl_key_file: whether \(shownKey) is the key of the certificate the server presents cannot be told: "
                                + "Bulwark's role cannot read ssl_cert_file \(shownCertificate) through the server "
                                + "(\(PostgresAdapter.describe(error))); grant it pg_read_server_files")
            }
            return problems
        }
        switch TLSFileContent.keyProblem(certificate: certificateBytes, key: keyBytes) {
        case nil:
            break
        case .noCertificate:
            problems.append("ssl_key_file: whether \(shownKey) is the key of ssl_cert_file \(shownCertificate) cannot be told: that "
                            + "file holds no PEM certificate the server could load; \(failed)")
        case .encrypted:
            problems.append("ssl_key_file: \(shownKey) is encrypted with a passphrase, so whether it is the key of ssl_cert_file "
                            + "\(shownCertificate) cannot be told, and a key that is not would cut off every TLS client and replica; "
                            + "set it by hand, in a maintenance window")
        case .noKey:
            problems.append("ssl_key_file: \(shownKey) holds no PEM private key the server could load: \(failed)")
        case .unreadable:
            problems.append("ssl_key_file: whether \(shownKey) is the key of ssl_cert_file \(shownCertificate) cannot be told: its key "
                            + "type is one Bulwark's TLS library does not read (DSA, a curve other than P-256, P-384, P-521 or Ed25519, "
                            + "RSA-PSS), and a key that is not would cut off every TLS client and replica; set it by hand")
        case .mismatch:
            problems.append("ssl_key_file: \(shownKey) is not the key of the certificate the server would present (ssl_cert_file "
                            + "\(shownCertificate)): \(failed), cutting off every TLS client and replica; change the certificate "
                            + "and its key together, in one PostgresSetting")
        }
        return problems
    }
}

// MARK: - Settings that stop every client's work

extension SettingDriver {
    /// The timeouts that cancel a statement or end a session, on every session of the server, and
    /// what they do.
    static let clientTimeouts = [
        "statement_timeout": "cancels every statement that runs longer",
        "lock_timeout": "cancels every statement that waits longer for a lock",
        "idle_in_transaction_session_timeout": "ends every session that stays that long in a transaction between two statements",
        "idle_session_timeout": "ends every session that stays idle that long",
        "transaction_timeout": "ends every session whose transaction runs longer",
    ]

    /// Settings of one transaction (`SET TRANSACTION`), which ALTER SYSTEM refuses: writing one
    /// failed on every pass. Each has a server-wide default, `default_` and its name.
    static let perTransaction: Set<String> = ["transaction_read_only", "transaction_isolation", "transaction_deferrable"]

    /// The least server-wide timeout Bulwark sets, other than 0 (off): 1 s. Below it no ordinary
    /// application works (1 ms cancelled every statement, Bulwark's undo included); from it up
    /// (a 30 s `statement_timeout`) it is a choice the policy may make.
    static let timeoutFloor = 1000.0

    /// The least server-wide `temp_file_limit` Bulwark sets, other than -1 (no limit): 1 GB, in
    /// kB (its unit). 0 allows no temporary file at all, and under it a sort, hash or index build
    /// of a table of a few million rows fails for want of the space it spills to (`1MB` failed a
    /// sort of a million numbers).
    static let tempFileFloor = 1_048_576.0

    static let advice = "set it for a role or database (ALTER ROLE … SET, ALTER DATABASE … SET) or by hand, for a maintenance window"

    /// Why a change would stop the work of every client of the server, if it would:
    /// `default_transaction_read_only` on (every application write fails), `exit_on_error` on
    /// (every error ends its session), a `temp_file_limit` of 0 up to `tempFileFloor`, or one of
    /// `clientTimeouts` above 0 and under `timeoutFloor`; or a limit or timeout the guard cannot
    /// read (not left to the server: its reading and the guard's may differ).
    static func stopsClients(_ change: PropertyDrift, _ kind: SettingValue.Kind) -> String? {
        let name = change.property
        if name == "default_transaction_read_only", SettingValue.bool(change.desired) == true {
            return "default_transaction_read_only: on makes every session's transactions read-only, and every application's "
                + "writes fail; Bulwark does not set it server-wide: \(advice)"
        }
        if name == "exit_on_error", SettingValue.bool(change.desired) != false {
            return "exit_on_error: '\(quotedForMessage(change.desired))' ends every session at its first error (a unique violation, "
                + "a serialization failure to retry), on every session of the server; Bulwark sets it server-wide only to off: \(advice)"
        }
        if name == "temp_file_limit" {
            guard let kilobytes = SettingValue.number(change.desired, kind), kind.unit == "kB" else {
                return "temp_file_limit: '\(quotedForMessage(change.desired))' cannot be read as an amount (-1, or a number, then a unit: "
                    + "kB, MB, GB, TB), so its effect on every session of the server cannot be judged"
            }
            guard kilobytes != -1, kilobytes < tempFileFloor else { return nil }
            return "temp_file_limit: '\(quotedForMessage(change.desired))' makes every query whose sorts and hashes spill more to disk fail "
                + "(0 allows none; a number without a unit is kB), on every session of the server; Bulwark sets it server-wide only to -1 "
                + "(no limit) or at least 1GB: \(advice)"
        }
        guard let effect = clientTimeouts[name] else { return nil }
        // A value the guard cannot read is not let through on the word that the server would
        // refuse it too: the two readings may differ (a blank C counts and Swift did not).
        guard let milliseconds = SettingValue.number(change.desired, kind), kind.unit == "ms" else {
            return "\(name): '\(quotedForMessage(change.desired))' cannot be read as a time (a number, then a unit: ms, s, min, h, d), "
                + "so its effect on every session of the server cannot be judged"
        }
        guard milliseconds > 0, milliseconds < timeoutFloor else { return nil }
        let bare = change.desired.trimmingCharacters(in: .whitespaces).last?.isNumber == true
        return "\(name): '\(quotedForMessage(change.desired))'\(bare ? " (a number without a unit is milliseconds: write 30s, not 30)" : "") "
            + "\(effect), on every session of the server; Bulwark sets it server-wide only to 0 (off) or at least 1s: \(advice)"
    }

    /// Why a change would break the integrity of every database's data, if it would:
    /// `session_replication_role` other than origin or local (PostgreSQL treats the two alike)
    /// fires no ordinary trigger, and foreign keys are triggers: every session could write rows
    /// that reference nothing, and audit triggers would miss them; `zero_damaged_pages` on
    /// replaces a damaged page with an empty one, its rows gone without an error; `fsync` off
    /// (nothing is forced to disk) and `full_page_writes` off (a page torn by a crash cannot be
    /// repaired from the write-ahead log) can leave the whole cluster corrupt after an operating
    /// system crash or power loss. Only the value the change writes is judged, never the one the
    /// server holds: a server running with `fsync` off may still be given any other fix, or `fsync` on.
    ///
    /// `synchronous_commit` off is not refused: a crash can lose the last transactions reported
    /// committed (at most about three times `wal_writer_delay`), but the database stays
    /// consistent (PostgreSQL's own documentation: unlike `fsync` off it risks no inconsistency),
    /// and every session may set it for itself anyway: a trade of durability for speed the policy
    /// may make, not a corruption.
    static func breaksIntegrity(_ change: PropertyDrift, _ kind: SettingValue.Kind) -> String? {
        switch change.property {
        case "session_replication_role":
            // Allowed by name, so that a spelling the server reads otherwise is never let through.
            guard !["origin", "local"].contains(change.desired.lowercased()) else { return nil }
            return "session_replication_role: '\(quotedForMessage(change.desired))' stops ordinary triggers from firing, foreign-key "
                + "checks included, in every session of the server: rows that reference nothing could be written; "
                + "Bulwark sets it server-wide only to origin or local (a replication worker sets replica for itself)"
        case "zero_damaged_pages":
            guard SettingValue.bool(change.desired) != false else { return nil }
            return "zero_damaged_pages: '\(quotedForMessage(change.desired))' replaces a damaged page with an empty one, its rows lost "
                + "without an error, in every session of the server; Bulwark sets it server-wide only to off: set it by hand, to "
                + "recover what can be read of a damaged table"
        case "fsync":
            guard SettingValue.bool(change.desired) != true else { return nil }
            return "fsync: '\(quotedForMessage(change.desired))' stops the server from forcing what it writes to disk: after an "
                + "operating system crash or power loss the whole cluster can be left corrupt, every database's data with it, "
                + "beyond what the write-ahead log can repair; Bulwark sets it server-wide only to on (turning it off is for a "
                + "cluster that can be rebuilt from scratch, set by hand)"
        case "full_page_writes":
            guard SettingValue.bool(change.desired) != true else { return nil }
            return "full_page_writes: '\(quotedForMessage(change.desired))' leaves a page half written at a crash beyond what "
                + "recovery can repair: the cluster can be left corrupt, silently; Bulwark sets it server-wide only to on (off is "
                + "for storage that never tears a page, set by hand)"
        default:
            return nil
        }
    }

    /// The schemas a server-wide `search_path` may name: each session's own (`$user`), `public`,
    /// and the session's temporary schema, last.
    static let searchPathSchemas: Set<String> = ["$user", "public", "pg_temp"]

    /// Why a server-wide `search_path` would hand every session's unqualified names to a schema's
    /// owner, or misplace what sessions create, if it would. A schema named there is searched by
    /// every session, superusers' (and Bulwark's) included: a function its owner creates under a
    /// name they call (`lower`, an application's own), or with argument types that match better,
    /// runs with the caller's rights. Items compare as Bulwark writes them, each quoted: `PUBLIC`
    /// is a schema other than `public`, which anyone allowed to create schemas may make.
    /// `pg_catalog` is searched first unless named: named after a schema, that schema's functions
    /// stand in for the built-ins; named first, every CREATE without a schema goes to the catalog
    /// and fails. `pg_temp` before `public` makes such a table temporary, gone with its session.
    /// A path without `"$user"` and `public` fails every unqualified table name.
    static func hijacksNames(_ change: PropertyDrift) -> String? {
        guard change.property == "search_path" else { return nil }
        let items = SettingValue.items(change.desired)
        let value = "search_path: '\(quotedForMessage(change.desired))'"
        let allowed = "Bulwark sets it server-wide only to \"$user\" and public, then pg_temp if at all: \(advice)"
        if let other = items.first(where: { !searchPathSchemas.contains($0) && $0 != "pg_catalog" }) {
            return "\(value) names the schema \(quotedForMessage(PostgresAdapter.shownIdentifier(other))): its owner, and whoever may "
                + "create in it, would decide what every unqualified name means in every session of the server, superusers' "
                + "included; \(allowed)"
        }
        if items.contains("pg_catalog") {
            return "\(value) names pg_catalog, which every session searches first unless it is named: after another schema, that "
                + "schema's functions would stand in for the built-ins in every session of the server, superusers' included; first, "
                + "every CREATE without a schema would go to the catalog and fail; \(allowed)"
        }
        guard items.contains("$user") || items.contains("public") else {
            return "\(value) names no schema for applications' tables (\"$user\" or public): every unqualified table name would fail "
                + "in every session of the server; \(allowed)"
        }
        if let temp = items.firstIndex(of: "pg_temp"), temp != items.count - 1 || !items[..<temp].contains("public") {
            return "\(value) puts pg_temp before public or among the schemas: a table created without a schema could be "
                + "temporary, and its rows gone when its session ends; \(allowed)"
        }
        return nil
    }
}
