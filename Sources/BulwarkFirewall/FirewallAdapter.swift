public import BulwarkCore
internal import Foundation

/// The nftables adapter: blocklists, quarantine and allowed ingress, in Bulwark's own table.
///
/// Targets: `spec: {adapter: nftables, root: PATH, netns: NAME}`. `netns` (optional) is the
/// network namespace whose ruleset is managed; the table is persisted as
/// `etc/nftables.d/bulwark.nft` under `root` so that it survives a reboot.
public enum FirewallAdapter {
    public static let name = "nftables"

    public static func definition() -> AdapterDefinition {
        AdapterDefinition(
            name: name, parseTarget: parseTarget,
            kinds: [
                KindDefinition(name: "FirewallBlocklist", adapter: name, summary: "drop traffic from addresses and networks",
                               parse: BlocklistDriver.parse, driver: BlocklistDriver()),
                KindDefinition(name: "Quarantine", adapter: name, summary: "cut a host off except from management networks",
                               parse: QuarantineDriver.parse, driver: QuarantineDriver()),
                KindDefinition(name: "AllowedIngress", adapter: name, summary: "drop inbound traffic but to the listed ports",
                               parse: IngressDriver.parse, driver: IngressDriver()),
            ])
    }

    @Sendable static func parseTarget(_ spec: SpecReader) -> [String: String]? {
        spec.allowOnly(["adapter", "root", "netns"])
        guard let reader = spec.field("root", required: true), let root = reader.string() else { return nil }
        guard root.hasPrefix("/"), !root.split(separator: "/").contains("..") else {
            reader.fail("expected an absolute path (where etc/nftables.d/ is), got '\(root)'")
            return nil
        }
        var settings = ["root": root]
        if let reader = spec.field("netns"), let namespace = reader.string() {
            guard !namespace.isEmpty, namespace.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }),
                  namespace.count <= 64 else {
                reader.fail("expected a network namespace name (letters, digits, '-', '_', '.'), got '\(namespace)'")
                return nil
            }
            settings["netns"] = namespace
        }
        return settings
    }

    static func nft(_ target: Target) -> NFT { NFT(namespace: target.settings["netns"]) }

    /// Applies one transaction, then persists the table under the target's root.
    static func commit(_ target: Target, replace: [ChainContent], remove: [String]) throws {
        let nft = nft(target)
        let current = try Table.read(nft)
        try nft.apply(Transaction.render(current: current, replace: replace, remove: remove))
        let listing = String(decoding: try nft.run(["list", "table", Table.family, Table.name]), as: UTF8.self)
        let text = """
            #!/usr/sbin/nft -f
            # Written by Bulwark: its own table, replaced whole when this file is loaded.
            table \(Table.family) \(Table.name) {}
            delete table \(Table.family) \(Table.name)

            """ + listing
        guard let root = target.settings["root"] else { return }
        let folder = root + "/etc/nftables.d"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: folder + "/bulwark.nft"), options: .atomic)
    }

    /// Reads a list of addresses or networks; nil after recording errors. Overlaps are refused:
    /// nftables would merge them and the set would never match the desired state.
    static func networks(_ reader: SpecReader) -> [Network]? {
        guard let items = reader.items() else { return nil }
        var result: [Network] = []
        for item in items {
            guard let text = item.string() else { return nil }
            guard let network = Network(text) else {
                item.fail("expected an IPv4 or IPv6 address or network such as 192.0.2.7 or 2001:db8::/32, got '\(text)'")
                return nil
            }
            if let other = result.first(where: { $0.isIPv6 == network.isIPv6 && $0.overlaps(network) }) {
                item.fail("\(network) overlaps \(other); list each address once")
                return nil
            }
            result.append(network)
        }
        return result.sorted()
    }
}

extension Network {
    func overlaps(_ other: Network) -> Bool {
        let common = min(prefix, other.prefix)
        for bit in 0..<common where (bytes[bit / 8] >> (7 - bit % 8)) & 1 != (other.bytes[bit / 8] >> (7 - bit % 8)) & 1 {
            return false
        }
        return true
    }
}
