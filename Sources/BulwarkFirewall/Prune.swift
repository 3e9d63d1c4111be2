internal import BulwarkCore
internal import Foundation

// MARK: - What Bulwark created, and pruning it
//
// Everything a resource puts in Bulwark's table (`inet bulwark`) is named after it:
// `Transaction.chainName(prefix, id)` gives `bl_NAME_HASH` (a blocklist's chain, with its sets
// `…_4` and `…_6`), `qr_NAME_HASH_in` / `_out` (a quarantine) and `ai_NAME_HASH` (allowed
// ingress). The names alone say whether a current resource owns an object, with no state kept
// anywhere; the first rule of each chain also carries `comment "owner Kind/name"` so that a
// leftover is recorded under the resource that made it. Objects in the table that follow none of
// these patterns were not made by Bulwark and are left alone.

enum Ownership {
    static let kinds = ["bl": "FirewallBlocklist", "qr": "Quarantine", "ai": "AllowedIngress"]

    /// The resource chain an object of the table belongs to (`bl_x_1a2b3c_4` → `bl_x_1a2b3c`),
    /// or nil for a name Bulwark never makes.
    static func base(of name: String) -> String? {
        if isResourceChain(name) { return name }
        for suffix in ["_in", "_out", "_4", "_6"] where name.hasSuffix(suffix) {
            let stripped = String(name.dropLast(suffix.count))
            if isResourceChain(stripped) { return stripped }
        }
        return nil
    }

    /// `PREFIX_NAME_HASH`: a known prefix, letters, digits and `_`, then `_` and a 6-character hash.
    private static func isResourceChain(_ name: String) -> Bool {
        let characters = Array(name)
        guard characters.count >= 3 + 1 + 7, kinds[String(characters[0..<2])] != nil, characters[2] == "_",
              characters[characters.count - 7] == "_" else { return false }
        let hash = characters.suffix(6)
        let safe = characters[3..<(characters.count - 7)]
        return hash.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber) }
            && safe.allSatisfy { ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// Leftovers with `prefix` in the table: objects whose resource chain is not in `owned`.
    static func leftovers(_ table: Table, prefix: String, owned: Set<String>) -> [Leftover] {
        var objects: [String: [String]] = [:]
        for name in table.chains.keys where name != "input" && name != "output" {
            if let base = base(of: name), base.hasPrefix(prefix + "_"), !owned.contains(base) {
                objects[base, default: []].append("chain \(name)")
            }
        }
        for name in table.sets.keys {
            if let base = base(of: name), base.hasPrefix(prefix + "_"), !owned.contains(base) {
                objects[base, default: []].append("set \(name)")
            }
        }
        return objects.keys.sorted().map { base in
            let comments = ([base, base + "_in"]).flatMap { table.chains[$0] ?? [] }.compactMap(\.comment)
            let owner = comments.lazy.compactMap(Self.owner).first
                // Made before chains carried their owner: the kind from the prefix, the name as the chain spells it.
                ?? ResourceID(kind: kinds[prefix] ?? prefix, name: String(base.dropFirst(prefix.count + 1).dropLast(7)))
            return Leftover(owner: owner, handle: base,
                            summary: "in table \(Table.family) \(Table.name): " + (objects[base] ?? []).sorted().joined(separator: ", "))
        }
    }

    private static func owner(_ comment: String) -> ResourceID? {
        guard comment.hasPrefix("owner ") else { return nil }
        let parts = comment.dropFirst(6).split(separator: "/", maxSplits: 1).map(String.init)
        return parts.count == 2 ? ResourceID(kind: parts[0], name: parts[1]) : nil
    }

    /// Removes the leftovers' chains and sets in one transaction, and persists the table.
    static func prune(_ leftovers: [Leftover], on target: Target) throws {
        let chains = leftovers.map(\.handle).filter { base(of: $0) == $0 }
        guard !chains.isEmpty else { return }
        try FirewallAdapter.commit(target, replace: [], remove: chains.flatMap { [$0, $0 + "_in", $0 + "_out"] })
    }
}

extension BlocklistDriver: PruningDriver {
    func leftovers(on target: Target, keeping current: [Resource]) async throws -> [Leftover] {
        Ownership.leftovers(try Table.read(FirewallAdapter.nft(target)), prefix: "bl",
                            owned: Set(current.map { Transaction.chainName("bl", $0.id) }))
    }

    func prune(_ leftovers: [Leftover], on target: Target) async throws { try Ownership.prune(leftovers, on: target) }
}

extension QuarantineDriver: PruningDriver {
    /// A quarantine owns its chains on a target only while it lists that target in `hosts`:
    /// taking a host off the list lifts its quarantine.
    func leftovers(on target: Target, keeping current: [Resource]) async throws -> [Leftover] {
        let owning = current.filter { $0.spec.properties.contains { $0.name == "quarantine:\(target.name)" } }
        return Ownership.leftovers(try Table.read(FirewallAdapter.nft(target)), prefix: "qr",
                                   owned: Set(owning.map { Transaction.chainName("qr", $0.id) }))
    }

    func prune(_ leftovers: [Leftover], on target: Target) async throws { try Ownership.prune(leftovers, on: target) }
}

extension IngressDriver: PruningDriver {
    func leftovers(on target: Target, keeping current: [Resource]) async throws -> [Leftover] {
        Ownership.leftovers(try Table.read(FirewallAdapter.nft(target)), prefix: "ai",
                            owned: Set(current.map { Transaction.chainName("ai", $0.id) }))
    }

    func prune(_ leftovers: [Leftover], on target: Target) async throws { try Ownership.prune(leftovers, on: target) }
}
