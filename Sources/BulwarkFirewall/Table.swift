internal import BulwarkCore
internal import Crypto
internal import Foundation

/// What is in Bulwark's table (`inet bulwark`), read with `nft -j`.
struct Table {
    static let family = "inet"
    static let name = "bulwark"

    struct Rule {
        var comment: String?
        var jump: String?
        /// The rule as nft lists it, without its handle: its expressions (keys sorted) and comment.
        var text = ""
    }

    var exists = false
    var chains: [String: [Rule]] = [:]
    var sets: [String: [String]] = [:]

    static func read(_ nft: NFT) throws -> Table {
        let data: Data
        do {
            data = try nft.run(["-j", "list", "table", family, name])
        } catch let failure as NFT.Failure where failure.message.contains("No such file or directory") {
            return Table()
        }
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let items = root["nftables"] as? [[String: Any]] else {
            throw NFT.Failure(arguments: ["-j", "list"], status: 0, message: "unexpected JSON from nft")
        }
        var table = Table(exists: true)
        for item in items {
            if let chain = item["chain"] as? [String: Any], let name = chain["name"] as? String {
                table.chains[name, default: []] = table.chains[name] ?? []
            } else if let set = item["set"] as? [String: Any], let name = set["name"] as? String {
                table.sets[name] = (set["elem"] as? [Any] ?? []).compactMap(Self.element)
            } else if let rule = item["rule"] as? [String: Any], let chain = rule["chain"] as? String {
                let expressions = rule["expr"] as? [[String: Any]] ?? []
                let jump = expressions.compactMap { ($0["jump"] as? [String: Any])?["target"] as? String }.first
                let canonical = (try? JSONSerialization.data(withJSONObject: ["expr": expressions, "comment": rule["comment"] ?? NSNull()],
                                                             options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "?"
                table.chains[chain, default: []].append(Rule(comment: rule["comment"] as? String, jump: jump, text: canonical))
            }
        }
        return table
    }

    /// A set element as text: `192.0.2.1`, `198.51.100.0/24`, or `a-b` for a range.
    private static func element(_ value: Any) -> String? {
        if let text = value as? String { return text }
        if let object = value as? [String: Any] {
            if let prefix = object["prefix"] as? [String: Any], let address = prefix["addr"] as? String, let length = prefix["len"] as? Int {
                return "\(address)/\(length)"
            }
            if let range = object["range"] as? [String], range.count == 2 { return "\(range[0])-\(range[1])" }
            if let inner = object["elem"] as? [String: Any], let val = inner["val"] { return element(val) }
        }
        return nil
    }

    /// A chain's rules, in order, as one SHA-256 (hex): what Bulwark wrote there, recorded with
    /// the persisted table (`Persisted`), against what the kernel has now.
    func digest(of chain: String) -> String {
        var hash = SHA256()
        for rule in chains[chain] ?? [] { hash.update(data: Array((rule.text + "\n").utf8)) }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Whether a resource's `chains` and the base chains that jump to them hold exactly the
    /// rules Bulwark last wrote there (`written`, from the persisted table): a rule inserted by
    /// hand before a drop (`accept`), or in a base chain before the jumps, let traffic past a
    /// chain whose last rule still said what Bulwark wrote. Nil when they do; else what differs.
    func changedByHand(_ chains: [String], written: [String: String]) -> String? {
        for chain in Set(chains.map(Self.hook(of:))).sorted() + chains where digest(of: chain) != written[chain] {
            return written[chain] == nil ? "chain \(chain) is not one Bulwark recorded writing" : "chain \(chain) holds rules Bulwark did not write"
        }
        return nil
    }

    /// Whether a base chain jumps to `chain`.
    func isHooked(_ chain: String) -> Bool {
        (chains[Self.hook(of: chain)] ?? []).contains { $0.jump == chain }
    }

    /// Resource chains: the chains named as Bulwark names a resource's (see Prune.swift); a chain
    /// someone else added to the table is never hooked.
    var resourceChains: [String] { chains.keys.filter { Ownership.base(of: $0) != nil }.sorted() }

    static func hook(of chain: String) -> String { chain.hasSuffix("_out") ? "output" : "input" }
}

/// One resource's part of the table: its chains and sets, replaced whole in one transaction.
struct ChainContent {
    var name: String
    var rules: [String]
    var sets: [(name: String, ipv6: Bool, elements: [String])] = []
}

enum Transaction {
    /// Jump order in a base chain: blocklists first, quarantine next, allowed ingress last.
    private static func rank(_ chain: String) -> Int {
        chain.hasPrefix("bl_") ? 0 : chain.hasPrefix("qr_") ? 1 : 2
    }

    /// An nft script that, in one transaction, replaces `replace`, removes `remove`, and re-points
    /// the base chains at every resource chain. Idempotent; works on a kernel without `destroy`.
    static func render(current: Table, replace: [ChainContent], remove: [String]) -> String {
        let t = "\(Table.family) \(Table.name)"
        var lines = [
            "add table \(t)",
            "add chain \(t) input { type filter hook input priority -10 ; policy accept ; }",
            "add chain \(t) output { type filter hook output priority -10 ; policy accept ; }",
            "flush chain \(t) input",
            "flush chain \(t) output",
        ]
        for chain in replace {
            lines += ["add chain \(t) \(chain.name)", "flush chain \(t) \(chain.name)"]
            for set in chain.sets {
                lines += ["add set \(t) \(set.name) { type \(set.ipv6 ? "ipv6_addr" : "ipv4_addr") ; flags interval ; }",
                          "flush set \(t) \(set.name)"]
                if !set.elements.isEmpty { lines.append("add element \(t) \(set.name) { \(set.elements.joined(separator: ", ")) }") }
            }
            lines += chain.rules.map { "add rule \(t) \(chain.name) \($0)" }
        }
        for chain in remove where current.chains[chain] != nil {
            lines.append("delete chain \(t) \(chain)")
        }
        for chain in remove {
            for suffix in ["_4", "_6"] where current.sets[chain + suffix] != nil { lines.append("delete set \(t) \(chain)\(suffix)") }
        }
        let chains = Set(current.resourceChains).union(replace.map(\.name)).subtracting(remove)
        for chain in chains.sorted(by: { (rank($0), $0) < (rank($1), $1) }) {
            lines.append("add rule \(t) \(Table.hook(of: chain)) jump \(chain)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The comment on a resource chain's first rule that says which resource it belongs to, so
    /// that what a removed resource left behind can be named when it is pruned.
    /// A resource name may be 253 bytes; a comment that would not fit is left out, and the
    /// leftover is then named from its chain.
    static func ownerComment(_ resource: ResourceID) -> String {
        let text = "owner \(resource.description)"
        return text.utf8.count <= maxComment ? "comment \"\(text)\"" : ""
    }

    /// nftables keeps at most 128 bytes of a rule's comment (`nft -c`: "comment too long").
    static let maxComment = 128

    /// The comment on a chain's last rule that records the desired value Bulwark wrote there. A
    /// value too long for a comment (an AllowedIngress of forty ports) is recorded as its
    /// SHA-256, which `recordedValue` reads back against the desired value.
    static func valueComment(_ value: String) -> String {
        let text = "bulwark \(value)"
        guard text.utf8.count > maxComment else { return "comment \"\(text)\"" }
        return "comment \"bulwark sha256:\(hex(value))\""
    }

    /// What a chain's last comment says was written there, read against the desired value: the
    /// value itself, or the desired value when the comment holds its SHA-256. Nil without a
    /// comment of Bulwark's.
    static func recordedValue(_ comment: String?, desired: String?) -> String? {
        guard let comment, comment.hasPrefix("bulwark ") else { return nil }
        let value = String(comment.dropFirst("bulwark ".count))
        guard value.hasPrefix("sha256:") else { return value }
        if let desired, value == "sha256:" + hex(desired) { return desired }
        return "(a value recorded as \(value.prefix(19)))"
    }

    private static func hex(_ value: String) -> String {
        SHA256.hash(data: Array(value.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A chain name for a resource: nft identifiers allow letters, digits and `_`; a short hash
    /// of the full name keeps distinct names distinct.
    static func chainName(_ prefix: String, _ resource: ResourceID) -> String {
        let safe = String(resource.name.map { $0.isLetter || $0.isNumber ? $0 : "_" }.prefix(40))
        return "\(prefix)_\(safe)_\(AuditID.stable(resource.description).prefix(6).lowercased())"
    }
}
