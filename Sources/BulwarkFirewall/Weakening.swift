internal import BulwarkCore

/// Which way a change of a blocklist's addresses, of allowed ingress or of a quarantine goes
/// (`KindDefinition.weakens`): a revision that moves one the less secure way is held for a second
/// person, as a weakened sshd setting is.
enum FirewallWeakening {
    /// A blocklist that no longer covers an address it blocked (taken out, or narrowed).
    static func blocklist(_ property: String, _ from: String, _ to: String) -> String? {
        guard property == "addresses" else { return nil }
        let now = BlocklistDriver.networks(to)
        let unblocked = BlocklistDriver.networks(from).filter { was in !now.contains { $0.contains(was) } }
        guard !unblocked.isEmpty else { return nil }
        return "no longer blocks " + BlocklistDriver.render(unblocked)
    }

    /// Ingress that lets more in: a port added, or a source range widened (`from` dropped, or a
    /// network added that the ranges before did not cover).
    static func ingress(_ property: String, _ from: String, _ to: String) -> String? {
        guard property == "ingress", let was = Ingress(from), let now = Ingress(to) else { return nil }
        var reasons: [String] = []
        let tcp = now.tcp.subtracting(was.tcp), udp = now.udp.subtracting(was.udp)
        if !tcp.isEmpty { reasons.append("opens TCP \(tcp.sorted().map(String.init).joined(separator: ", "))") }
        if !udp.isEmpty { reasons.append("opens UDP \(udp.sorted().map(String.init).joined(separator: ", "))") }
        if let before = was.from {
            if let after = now.from {
                let wider = after.filter { network in !before.contains { $0.contains(network) } }
                if !wider.isEmpty { reasons.append("lets in from \(BlocklistDriver.render(wider)) too") }
            } else {
                reasons.append("lets in from anywhere, not only \(BlocklistDriver.render(before))")
            }
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// A quarantine lifted or narrowed by the policy: lifted (its expiry moved into the past; a
    /// host taken off the list or the resource removed is a prune, held the same way), a network
    /// added to `allow` that it did not cover, or its end moved earlier (or set where it had none),
    /// which lifts it sooner with no second person once that day passes. An expiry that passes by
    /// itself is not a change of revision: both revisions are read at the same time and say
    /// `lifted` alike. Adding, widening or lengthening a quarantine is not a weakening.
    static func quarantine(_ property: String, _ from: String, _ to: String) -> String? {
        guard property.hasPrefix("quarantine:"), let was = QuarantineDriver.Value(from) else { return nil }
        let host = String(property.dropFirst("quarantine:".count))
        guard let now = QuarantineDriver.Value(to) else {
            return "lifts the quarantine of \(host), set to last " + (was.lastDay.map { "until \($0)" } ?? "with no end")
        }
        var reasons: [String] = []
        let wider = now.allow.filter { network in !was.allow.contains { $0.contains(network) } }
        if !wider.isEmpty { reasons.append("lets \(host) reach \(BlocklistDriver.render(wider)) too") }
        if let end = now.lastDay {
            if let before = was.lastDay {
                if end < before { reasons.append("ends the quarantine of \(host) after \(end), not \(before)") }
            } else {
                reasons.append("ends the quarantine of \(host) after \(end); it had no end")
            }
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// `IngressDriver`'s value: `tcp=22,443 udp=53 from=any` (or `from=10.0.0.0/8,192.0.2.1`).
    struct Ingress {
        var tcp: Set<Int> = []
        var udp: Set<Int> = []
        /// nil: any source.
        var from: [Network]?

        init?(_ text: String) {
            for part in text.split(separator: " ") {
                guard let equals = part.firstIndex(of: "=") else { return nil }
                let key = part[..<equals], value = part[part.index(after: equals)...]
                switch key {
                case "tcp": tcp = Set(value.split(separator: ",").compactMap { Int($0) })
                case "udp": udp = Set(value.split(separator: ",").compactMap { Int($0) })
                case "from": from = value == "any" ? nil : value.split(separator: ",").compactMap { Network(String($0)) }
                default: return nil
                }
            }
        }
    }
}
