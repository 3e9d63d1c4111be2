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
}
