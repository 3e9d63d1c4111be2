internal import BulwarkCore
internal import Foundation

/// `FirewallBlocklist`: `spec: {addresses: [192.0.2.7, 2001:db8::/32]}`; traffic from them is dropped.
struct BlocklistDriver: ResourceDriver {
    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["addresses"])
        guard let reader = spec.field("addresses", required: true), let list = FirewallAdapter.networks(reader) else { return nil }
        return ResourceSpec(subject: "table", properties: [DesiredProperty("addresses", render(list))])
    }

    static func render(_ networks: [Network]) -> String {
        networks.isEmpty ? "(none)" : networks.sorted().map(\.description).joined(separator: ", ")
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let chain = Transaction.chainName("bl", resource.id)
        let table = try Table.read(FirewallAdapter.nft(target))
        guard table.isHooked(chain), !(table.chains[chain] ?? []).isEmpty else {
            return Observation(values: ["addresses": String?.none])
        }
        let elements = (table.sets[chain + "_4"] ?? []) + (table.sets[chain + "_6"] ?? [])
        let parsed = elements.compactMap(Network.init)
        // A range (someone else's edit) does not parse as a network: show it as nft does.
        let shown = parsed.count == elements.count ? Self.render(parsed) : elements.sorted().joined(separator: ", ")
        return Observation(values: ["addresses": try FirewallAdapter.unlessChanged(shown, table, [chain], target)])
    }

    /// The networks a desired `addresses` value lists.
    static func networks(_ value: String) -> [Network] {
        value == "(none)" ? [] : value.split(separator: ",").compactMap { Network($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// A value that is not a list of networks (`(changed outside Bulwark: ...)`, a range someone
    /// else put in the set, as a record's value from before a fix shows it) cannot be written.
    struct Unwritable: Error, CustomStringConvertible {
        var resource: String
        var value: String
        var description: String {
            "\(resource): the addresses \(quotedForMessage(value)) are not a list of addresses or networks; nothing was written"
        }
    }

    /// Every item must read as a network: one that does not would be dropped, and the set
    /// written without it would let that traffic in.
    func checkWritable(_ changes: [PropertyDrift], to resource: Resource) throws {
        guard let wanted = changes.first(where: { $0.property == "addresses" })?.desired else { return }
        guard wanted == "(none)" || Self.networks(wanted).count == wanted.split(separator: ",").count else {
            throw Unwritable(resource: resource.id.description, value: wanted)
        }
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        try checkWritable(changes, to: resource)
        let chain = Transaction.chainName("bl", resource.id)
        // The value the change asks for, which is not the spec's when `revert` puts back the one
        // from before a fix (writing the spec's, the revert never held).
        let wanted = changes.first { $0.property == "addresses" }?.desired ?? resource.spec.properties.first?.value ?? "(none)"
        let networks = Self.networks(wanted)
        let owner = Transaction.ownerComment(resource.id)
        let content = ChainContent(
            name: chain,
            rules: ["ip saddr @\(chain)_4 drop \(owner)", "ip6 saddr @\(chain)_6 drop \(owner)"],
            sets: [(chain + "_4", false, networks.filter { !$0.isIPv6 }.map(\.description)),
                   (chain + "_6", true, networks.filter(\.isIPv6).map(\.description))])
        try FirewallAdapter.commit(target, replace: [content], remove: [])
    }
}

/// `AllowedIngress`: `spec: {tcp: [22, 443], udp: [53], from: [optional networks]}`: inbound
/// traffic is dropped but to these ports (loopback, established traffic and IPv6 neighbour
/// discovery excepted).
struct IngressDriver: ResourceDriver {
    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["tcp", "udp", "from"])
        func ports(_ key: String) -> [Int]? {
            guard let reader = spec.field(key) else { return [] }
            guard let items = reader.items() else { return nil }
            let values = items.compactMap { $0.int(in: 1...65535) }
            return values.count == items.count ? Array(Set(values)).sorted() : nil
        }
        guard let tcp = ports("tcp"), let udp = ports("udp") else { return nil }
        var from: [Network] = []
        if let reader = spec.field("from") {
            guard let list = FirewallAdapter.networks(reader) else { return nil }
            from = list
        }
        let text = "tcp=\(tcp.map(String.init).joined(separator: ",")) udp=\(udp.map(String.init).joined(separator: ",")) from=\(from.isEmpty ? "any" : BlocklistDriver.render(from).replacingOccurrences(of: " ", with: ""))"
        return ResourceSpec(subject: "table", properties: [DesiredProperty("ingress", text)])
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let chain = Transaction.chainName("ai", resource.id)
        let table = try Table.read(FirewallAdapter.nft(target))
        guard table.isHooked(chain), let last = table.chains[chain]?.last else { return Observation(values: ["ingress": String?.none]) }
        let shown = Transaction.recordedValue(last.comment, desired: resource.spec.properties.first?.value) ?? "(changed by hand)"
        return Observation(values: ["ingress": try FirewallAdapter.unlessChanged(shown, table, [chain], target)])
    }

    /// A desired `ingress` value, `tcp=22,443 udp= from=any`, read back.
    struct Rules {
        var tcp: [Int] = []
        var udp: [Int] = []
        /// Empty: from anywhere.
        var from: [Network] = []

        init(_ value: String) {
            for part in value.split(separator: " ") {
                let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { continue }
                switch pair[0] {
                case "tcp": tcp = pair[1].split(separator: ",").compactMap { Int($0) }
                case "udp": udp = pair[1].split(separator: ",").compactMap { Int($0) }
                case "from" where pair[1] != "any": from = pair[1].split(separator: ",").compactMap { Network(String($0)) }
                default: break
                }
            }
        }
    }

    /// `(changed by hand)` from a record read as no ports at all: everything but loopback dropped.
    func checkWritable(_ changes: [PropertyDrift], to resource: Resource) throws {
        guard let wanted = changes.first(where: { $0.property == "ingress" })?.desired else { return }
        let words = wanted.split(separator: " ")
        guard words.count == 3, words[0].hasPrefix("tcp="), words[1].hasPrefix("udp="), words[2].hasPrefix("from=") else {
            throw IngressValueUnwritable(resource: resource.id.description, value: wanted)
        }
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        try checkWritable(changes, to: resource)
        // The change's value, as the blocklist's: `revert` puts back the one from before a fix.
        guard let wanted = changes.first(where: { $0.property == "ingress" })?.desired ?? resource.spec.properties.first?.value else { return }
        let chain = Transaction.chainName("ai", resource.id)
        let parsed = Rules(wanted)
        let from = parsed.from
        var rules = ["iifname \"lo\" accept \(Transaction.ownerComment(resource.id))", "ct state established,related accept",
                     "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept"]
        for (proto, list) in [("tcp", parsed.tcp), ("udp", parsed.udp)] {
            guard !list.isEmpty else { continue }
            let set = "{ \(list.map(String.init).joined(separator: ", ")) }"
            if from.isEmpty {
                rules.append("\(proto) dport \(set) accept")
            } else {
                let v4 = from.filter { !$0.isIPv6 }.map(\.description)
                let v6 = from.filter(\.isIPv6).map(\.description)
                if !v4.isEmpty { rules.append("ip saddr { \(v4.joined(separator: ", ")) } \(proto) dport \(set) accept") }
                if !v6.isEmpty { rules.append("ip6 saddr { \(v6.joined(separator: ", ")) } \(proto) dport \(set) accept") }
            }
        }
        rules.append("drop \(Transaction.valueComment(wanted))")
        try FirewallAdapter.commit(target, replace: [ChainContent(name: chain, rules: rules)], remove: [])
    }
}

/// An `ingress` value that is not `tcp=... udp=... from=...` cannot be written.
struct IngressValueUnwritable: Error, CustomStringConvertible {
    var resource: String
    var value: String
    var description: String {
        "\(resource): the ingress \(quotedForMessage(value)) is not one Bulwark writes (tcp=... udp=... from=...); nothing was written"
    }
}

/// `Quarantine`: `spec: {hosts: [target names], allow: [management networks], expires: optional date}`.
/// A listed target is cut off, both ways, from everything but the management networks; after
/// `expires` the quarantine is lifted.
struct QuarantineDriver: ResourceDriver {
    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["hosts", "allow", "expires"])
        guard let hosts = spec.field("hosts", required: true)?.strings() else { return nil }
        var allow: [Network] = []
        if let reader = spec.field("allow") {
            guard let list = FirewallAdapter.networks(reader) else { return nil }
            allow = list
        }
        // Judged against the loader's now, and read again at the expiry (`changesAt`): a daemon
        // whose revision does not move lifts the quarantine when it ends, not at the next commit.
        var ends: Date?
        if let reader = spec.field("expires"), let text = reader.string() {
            guard let end = DesiredStateLoader.endOfDay(text) else {
                reader.fail(DesiredStateLoader.notADay(text))
                return nil
            }
            ends = end
        }
        let active = ends.map { spec.now < $0 } ?? true
        // The last day goes into the value, so that a revision that moves it earlier is seen as
        // the weakening it is (`FirewallWeakening.quarantine`), though the host stays cut off today.
        let state = active ? Value(allow: allow, lastDay: ends.map { String(Timestamp.format($0.addingTimeInterval(-1)).prefix(10)) }).description
                           : "lifted"
        var result = ResourceSpec(subject: "table", properties: hosts.map { DesiredProperty("quarantine:\($0)", state) })
        if active { result.changesAt = ends }
        return result
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let property = "quarantine:\(target.name)"
        guard resource.spec.properties.contains(where: { $0.name == property }) else { return Observation(values: [:]) }
        let chain = Transaction.chainName("qr", resource.id)
        let table = try Table.read(FirewallAdapter.nft(target))
        guard table.isHooked(chain + "_in"), let last = table.chains[chain + "_in"]?.last else {
            return Observation(values: [property: "lifted"])
        }
        let desired = resource.spec.properties.first { $0.name == property }?.value
        let shown = Transaction.recordedValue(last.comment, desired: desired) ?? "(changed by hand)"
        return Observation(values: [property: try FirewallAdapter.unlessChanged(shown, table, [chain + "_in", chain + "_out"], target)])
    }

    /// An active quarantine's desired value: `active allow=192.0.2.0/28,2001:db8::/64 until=2027-01-31`
    /// (`allow=(none)` for no network, no `until` for no expiry). `lifted` reads as nil.
    struct Value: CustomStringConvertible {
        var allow: [Network]
        /// The last day it holds (`expires`), YYYY-MM-DD; nil: it does not end.
        var lastDay: String?

        init(allow: [Network], lastDay: String?) {
            self.allow = allow
            self.lastDay = lastDay
        }

        init?(_ text: String) {
            let words = text.split(separator: " ")
            guard words.first == "active" else { return nil }
            allow = []
            for word in words.dropFirst() {
                if word.hasPrefix("allow="), word != "allow=(none)" {
                    allow = word.dropFirst("allow=".count).split(separator: ",").compactMap { Network(String($0)) }
                } else if word.hasPrefix("until=") {
                    lastDay = String(word.dropFirst("until=".count))
                }
            }
        }

        var description: String {
            "active allow=" + BlocklistDriver.render(allow).replacingOccurrences(of: " ", with: "") + (lastDay.map { " until=" + $0 } ?? "")
        }
    }

    /// The networks an active quarantine's desired value allows.
    static func allowed(_ value: String) -> [Network] { Value(value)?.allow ?? [] }

    /// A value that is not `lifted` nor one `Value` writes back as it is (`(changed by hand)`, a
    /// record's value from before a fix that `revert` would put back) cannot be written: read as
    /// a quarantine, it allowed no network at all, and the host was cut off from everyone.
    struct Unwritable: Error, CustomStringConvertible {
        var resource: String
        var value: String
        var description: String {
            "\(resource): the quarantine \(quotedForMessage(value)) is not one Bulwark writes (active allow=... until=..., or "
                + "lifted); nothing was written"
        }
    }

    func checkWritable(_ changes: [PropertyDrift], to resource: Resource) throws {
        for change in changes where change.property.hasPrefix("quarantine:") && change.desired != "lifted" {
            guard let value = Value(change.desired), value.description == change.desired,
                  value.lastDay.map({ DesiredStateLoader.endOfDay($0) != nil }) ?? true else {
                throw Unwritable(resource: resource.id.description, value: change.desired)
            }
        }
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        try checkWritable(changes, to: resource)
        guard let change = changes.first(where: { $0.property == "quarantine:\(target.name)" }) else { return }
        let chain = Transaction.chainName("qr", resource.id)
        guard change.desired != "lifted" else {
            try FirewallAdapter.commit(target, replace: [], remove: [chain + "_in", chain + "_out"])
            return
        }
        let allow = Self.allowed(change.desired)
        func rules(_ direction: String, _ interface: String) -> [String] {
            // Neighbour discovery stays open so that the allowed networks still reach the host over IPv6.
            let discovery = direction == "saddr" ? "nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert"
                                                 : "nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit"
            var rules = ["\(interface) \"lo\" accept \(Transaction.ownerComment(resource.id))",
                         "icmpv6 type { \(discovery) } accept"]
            let v4 = allow.filter { !$0.isIPv6 }.map(\.description)
            let v6 = allow.filter(\.isIPv6).map(\.description)
            if !v4.isEmpty { rules.append("ip \(direction) { \(v4.joined(separator: ", ")) } accept") }
            if !v6.isEmpty { rules.append("ip6 \(direction) { \(v6.joined(separator: ", ")) } accept") }
            return rules + ["drop \(Transaction.valueComment(change.desired))"]
        }
        try FirewallAdapter.commit(target, replace: [ChainContent(name: chain + "_in", rules: rules("saddr", "iifname")),
                                                     ChainContent(name: chain + "_out", rules: rules("daddr", "oifname"))],
                                   remove: [])
    }
}
