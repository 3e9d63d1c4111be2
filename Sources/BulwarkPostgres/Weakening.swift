internal import BulwarkCore

/// Which way a change of a `PostgresRole` attribute or a `PostgresPrivilege` goes
/// (`KindDefinition.weakens`): a revision that moves one the less secure way is held for a second
/// person, as a weakened sshd setting is. Both kinds judge every property they have, so a
/// finding's change to them that is not weaker may be merged by itself.
enum PostgresWeakening {
    /// A role given a power (`SUPERUSER`, `CREATEROLE`, `CREATEDB`, `REPLICATION`, `BYPASSRLS`),
    /// let log in, its connection limit raised or lifted, or its password valid longer.
    static func role(_ property: String, _ from: String, _ to: String) -> String? {
        switch property {
        case "superuser", "createrole", "createdb", "replication", "bypassrls":
            return from == "false" && to == "true" ? "gives the role \(property.uppercased())" : nil
        case "login":
            return from == "false" && to == "true" ? "lets the role log in" : nil
        case "connectionLimit":
            guard let was = Int(from), let now = Int(to), was != -1 else { return nil }
            return now == -1 ? "lifts the role's connection limit" : now > was ? "raises the role's connection limit" : nil
        case "validUntil":
            guard from != "infinity" else { return nil }
            if to == "infinity" { return "makes the role's password valid forever" }
            guard let was = DesiredStateLoader.endOfDay(from), let now = DesiredStateLoader.endOfDay(to) else { return nil }
            return now > was ? "makes the role's password valid longer" : nil
        default:
            return nil
        }
    }

    /// A property no earlier revision set (a new resource, a renamed one, an attribute added):
    /// a power or LOGIN set to true. Judged only by `role`, a resource added with
    /// `superuser: true` passed with no second person, though `false → true` was held.
    static func roleNew(_ property: String, _ value: String) -> String? {
        ["superuser", "createrole", "createdb", "replication", "bypassrls", "login"].contains(property) ? role(property, "false", value) : nil
    }

    /// A privilege newly listed as granted (`privilege` from revoked).
    static func privilegeNew(_ property: String, _ value: String) -> String? {
        privilege(property, "revoked", value)
    }

    /// A schema privilege granted where it was revoked (`CREATE` on `public` to `PUBLIC`: anyone
    /// who can connect may create objects another role's search path finds first).
    static func privilege(_ property: String, _ from: String, _ to: String) -> String? {
        from == "revoked" && to == "granted" ? "grants \(property.split(separator: "/").last.map(String.init) ?? property)" : nil
    }

    /// A `PostgresSetting` that weakens how clients reach the server or what is kept of who did:
    /// `ssl` turned off (every client that requires TLS is refused, and passwords and data cross
    /// the network in clear), `ssl_min_protocol_version` lowered, `password_encryption` from
    /// `scram-sha-256` to anything else (`md5`: every password set from then on is stored as an
    /// MD5 hash, and sent as one), `log_connections` or `log_disconnections` turned off. Any other
    /// setting's direction is not known (nil), so the kind is not marked as judging direction.
    static func setting(_ property: String, _ from: String, _ to: String) -> String? {
        switch property {
        case "ssl":
            return SettingValue.bool(from) == true && SettingValue.bool(to) != true
                ? "turns TLS off: every client that requires it is refused, and the others send passwords and data in clear" : nil
        case "ssl_min_protocol_version":
            guard let was = tlsRank(from) else { return nil }
            return tlsRank(to).map { $0 < was } ?? true ? "accepts an older TLS version than \(from)" : nil
        case "password_encryption":
            return from.lowercased() == "scram-sha-256" && to.lowercased() != "scram-sha-256"
                ? "stores every password set from then on as a weaker hash than SCRAM-SHA-256" : nil
        case "log_connections", "log_disconnections":
            return SettingValue.bool(from) == true && SettingValue.bool(to) != true
                ? "stops recording who \(property == "log_connections" ? "connects" : "disconnects")" : nil
        default:
            return nil
        }
    }

    /// A setting no earlier revision set, judged from the secure value (`ssl` on,
    /// `password_encryption` scram-sha-256, the connection logs on, `ssl_min_protocol_version`
    /// TLSv1.2, the server's default): added with `ssl: off`, it weakens as changing it would.
    static func settingNew(_ property: String, _ value: String) -> String? {
        let secure = ["ssl": "on", "password_encryption": "scram-sha-256", "log_connections": "on", "log_disconnections": "on",
                      "ssl_min_protocol_version": "TLSv1.2"]
        return secure[property].flatMap { setting(property, $0, value) }
    }

    /// The order of the TLS versions `ssl_min_protocol_version` takes; nil for any other value.
    static func tlsRank(_ version: String) -> Int? {
        ["tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"].firstIndex(of: version.lowercased())
    }
}
