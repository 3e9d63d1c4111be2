public import BulwarkCore
internal import BulwarkHost
internal import Foundation

/// The nftables adapter: blocklists, quarantine and allowed ingress, in Bulwark's own table.
///
/// Targets: `spec: {adapter: nftables, root: PATH, netns: NAME, management: [NETWORKS], sshPort: 22}`.
/// `netns` (optional) is the network namespace whose ruleset is managed; the table is persisted
/// as `etc/nftables.d/bulwark.nft` under `root` so that it survives a reboot. `management`
/// (required) lists the networks people administer the target from: no change may cut them off
/// (see Guards.swift). `sshPort` (default 22) is where they log in.
public enum FirewallAdapter {
    public static let name = "nftables"

    public static func definition() -> AdapterDefinition {
        // A weakening is held for a second person; the other direction (more blocked, less let in)
        // can still cut traffic someone needs, so a finding's change to these kinds stays a
        // proposal for a person (`judgesDirection`), as before.
        var blocklist = KindDefinition(name: "FirewallBlocklist", adapter: name, parse: BlocklistDriver.parse, driver: BlocklistDriver(),
                                       weakens: FirewallWeakening.blocklist)
        blocklist.judgesDirection = false
        var ingress = KindDefinition(name: "AllowedIngress", adapter: name, parse: IngressDriver.parse, driver: IngressDriver(),
                                     weakens: FirewallWeakening.ingress)
        ingress.judgesDirection = false
        var quarantine = KindDefinition(name: "Quarantine", adapter: name, parse: QuarantineDriver.parse, driver: QuarantineDriver(),
                                        weakens: FirewallWeakening.quarantine)
        quarantine.judgesDirection = false
        return AdapterDefinition(
            name: name, settings: FirewallTargetSettings.parse,
            kinds: [
                blocklist,
                quarantine,
                ingress,
            ])
    }

    static func nft(_ target: Target) throws -> NFT { NFT(namespace: try target.firewall().netns) }

    /// The target's management networks (validated when the target was read: at least one).
    static func management(_ target: Target) throws -> [Network] { try target.firewall().management }

    static func sshPort(_ target: Target) throws -> Int { try target.firewall().sshPort ?? 22 }

    /// Applies one transaction, then persists the table under the target's root.
    static func commit(_ target: Target, replace: [ChainContent], remove: [String]) throws {
        let settings = try target.firewall()
        var nft = NFT(namespace: settings.netns)
        // One writer at a time, from the read to the persisted digests: another Bulwark's
        // commit between this one's read and its transaction lost its jumps (the base chains
        // are rebuilt from what was read) and each overwrote the other's digests.
        // Under the root through the host path layer (`RootFiles`): no link in it is followed.
        let lockFolder = settings.root + "/run/bulwark"
        let lock = try RootFiles.openLock("run/bulwark/nftables.lock", under: settings.root)
        defer { close(lock) }
        let code = FileLock.exclusive(lock, attempts: 300)
        guard code == 0 else {
            throw NFT.Failure(program: "lock", arguments: [lockFolder + "/nftables.lock"], status: code,
                              message: "another Bulwark is changing \(target.name)'s firewall (held for 3 s): \(String(cString: strerror(code)))")
        }
        // The namespace the plan saw, checked now, and written through the descriptor of that
        // check (`nsenter --net=/proc/PID/fd/N`): a name bound to another namespace between the
        // plan and this write made the fix land there (review: re-bound /run/netns path).
        var held: Int32?
        defer { if let held { close(held) } }
        if let planned = PlannedTargets.identities?[target.name], let fd = try settings.openPlanned(planned, target: target.name) {
            held = fd
            nft.entered = "/proc/\(getpid())/fd/\(fd)"
        }
        let current = try Table.read(nft)
        // Where the table is persisted, checked before the ruleset changes: a folder that is a
        // link fails the change with nothing done, rather than after it.
        try RootFiles.prepareFolder(of: persisted, under: settings.root)
        let earlier = try written(target)
        try nft.apply(Transaction.render(current: current, replace: replace, remove: remove))
        let listing = String(decoding: try nft.run(["list", "table", Table.family, Table.name]), as: UTF8.self)
        // What the chains this transaction wrote hold now (the base chains and those replaced),
        // as observe compares them (`Table.changedByHand`). Any other chain keeps the digest of
        // the commit that wrote it: read afresh, a rule put there by hand would pass for Bulwark's.
        let now = try Table.read(nft)
        let rewritten = Set(["input", "output"] + replace.map(\.name))
        var digests = ""
        for chain in now.chains.keys.sorted() {
            guard let digest = rewritten.contains(chain) ? now.digest(of: chain) : earlier[chain] else { continue }
            digests += "\(digestMark) \(chain) \(digest)\n"
        }
        let text = """
            #!/usr/sbin/nft -f
            # Written by Bulwark: its own table, replaced whole when this file is loaded.
            # The rules of each chain as Bulwark wrote them (SHA-256), against which it finds them changed by hand:

            """ + digests + """
            table \(Table.family) \(Table.name) {}
            delete table \(Table.family) \(Table.name)

            """ + listing
        try RootFiles.write(Array(text.utf8), to: persisted, under: settings.root)
    }

    static let digestMark = "# bulwark-chain"
    /// Where the table is persisted for boot, under the target's root.
    static let persisted = "etc/nftables.d/bulwark.nft"

    /// The digest of each chain as the last commit wrote it, from the persisted table (none
    /// where it is missing, or was written before Bulwark recorded them).
    static func written(_ target: Target) throws -> [String: String] {
        // Read through the path layer: a link out of the root is refused (the digests would be
        // whoever wrote that file's), and a file that cannot be read fails the resource.
        guard let bytes = try RootFiles.read(persisted, under: try target.firewall().root) else { return [:] }
        let text = String(decoding: bytes, as: UTF8.self)
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix(digestMark + " ") {
            let words = line.dropFirst(digestMark.count + 1).split(separator: " ")
            if words.count == 2 { result[String(words[0])] = String(words[1]) }
        }
        return result
    }

    /// `value`, unless someone changed the resource's chains since Bulwark wrote them.
    static func unlessChanged(_ value: String?, _ table: Table, _ chains: [String], _ target: Target) throws -> String? {
        guard let changed = table.changedByHand(chains, written: try written(target)) else { return value }
        return "(changed outside Bulwark: \(changed))"
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
            guard network.prefix > 0 else {
                item.fail("\(text) is every address: a prefix length of 0 is refused; list the networks you mean")
                return nil
            }
            if let other = result.first(where: { $0.overlaps(network) }) {
                item.fail("\(network) overlaps \(other); list each address once")
                return nil
            }
            result.append(network)
        }
        return result.sorted()
    }
}
