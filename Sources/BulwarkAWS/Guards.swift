internal import BulwarkCore
internal import Foundation

// MARK: - Safety guards
//
// No AWS change may cut Bulwark, or the people a rule lets in, off from what they reach now.
//
// - IAMAccessKey: blocked when a key it would deactivate is one Bulwark signs its own requests
//   to the target with (the static key, or the key behind the role it assumes): every AWS
//   controller would fail from then on, and nothing would turn the key back on.
// - SecurityGroupIngress: a rule through a managed prefix list is revoked as a whole (a group
//   cannot take one entry of a list off). Blocked when the list also holds networks that are not
//   forbidden: they would lose that port on the group too.
// A guard that cannot judge (credentials or a prefix list that cannot be read) blocks.

extension AccessKeyDriver {
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let deactivated = changes.filter { $0.desired == Self.compliant }.compactMap { Self.key($0.property) }
        guard !deactivated.isEmpty else { return .allow }
        let own: Set<String>
        do {
            own = try await AWSAdapter.credentialChain(target).resolveWithKeys().keyIDs
        } catch {
            return .block("cannot tell which access key Bulwark signs its requests to \(target.name) with, so deactivating keys "
                          + "is not judged safe: \(error)")
        }
        let mine = deactivated.filter { own.contains($0.id) }
        guard !mine.isEmpty else { return .allow }
        let others = deactivated.count - mine.count
        return .block(mine.map { "access key \($0.id) of \($0.user)" }.joined(separator: " and ")
                      + " is the key Bulwark signs its requests to \(target.name) with: deactivating it would stop every AWS "
                      + "controller. Give Bulwark a new key (or a role) first"
                      + (others > 0 ? "; the \(others) other key\(others == 1 ? "" : "s") of this change wait\(others == 1 ? "s" : "") with it" : ""))
    }
}

extension SecurityGroupDriver {
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        var revoked: [(group: String, rule: Rule, taken: Set<String>)] = []
        for change in changes where change.property.hasPrefix("ingress:") && change.desired == Self.none {
            let group = String(change.property.dropFirst("ingress:".count))
            let rules = (change.observed ?? Self.none) == Self.none ? [] : (change.observed ?? "").components(separatedBy: "; ").compactMap(Rule.init)
            for rule in rules where rule.prefixList != nil && !revoked.contains(where: { $0.group == group && $0.rule.revokes(rule) }) {
                revoked.append((group, rule, Set(rules.filter { rule.revokes($0) }.map(\.cidr))))
            }
        }
        guard !revoked.isEmpty else { return .allow }
        let client: AWSClient
        do {
            client = try await AWSAdapter.client(target)
        } catch {
            return .block("cannot read the prefix lists the revoked rules go through on \(target.name), so the change is not judged "
                          + "safe: \(error)")
        }
        var problems: [String] = []
        for (group, rule, taken) in revoked {
            guard let list = rule.prefixList else { continue }
            let entries: [String]
            do {
                entries = try await Self.entries(client, list, group: group)
            } catch {
                return .block("cannot read prefix list \(list), so revoking it on \(group) is not judged safe: \(error)")
            }
            let spared = entries.filter { !taken.contains($0) }
            if !spared.isEmpty {
                problems.append("revoking \(rule.traffic) via \(list) takes the whole prefix list off security group \(group), "
                                + "which would also cut off " + spared.joined(separator: ", ")
                                + " (not forbidden): take the forbidden entries out of \(list) instead")
            }
        }
        return problems.isEmpty ? .allow : .block(problems.joined(separator: "; "))
    }
}
