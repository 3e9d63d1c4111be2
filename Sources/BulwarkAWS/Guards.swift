internal import BulwarkCore
internal import Foundation

// MARK: - Safety guards
//
// No AWS change may cut Bulwark, or the people a rule lets in, off from what they reach now.
//
// - IAMAccessKey: blocked when a key it would deactivate is one Bulwark signs its own requests
//   to the target with (the static key, or the key behind the role it assumes): every AWS
//   controller would fail from then on, and nothing would turn the key back on.
// - SecurityGroupIngress: a forbid revokes a rule only when all the rule lets in is forbidden
//   (`Rule.isForbidden`): every port of its range, from a network the forbidden ones hold. A
//   broader rule (tcp 0-65535 from 0.0.0.0/0, all traffic, 22 from the world where only
//   10.0.0.0/8 is forbidden) is blocked, never revoked: revoking it would cut off what nobody
//   forbade; the operator splits it so that the forbidden part is a rule of its own.
// - SecurityGroupIngress: a rule through a managed prefix list is revoked as a whole (a group
//   cannot take one entry of a list off). Blocked when the list also holds networks that are not
//   forbidden: they would lose that port on the group too.
// A guard that cannot judge (credentials or a prefix list that cannot be read) blocks. Where AWS
// or this machine ran short while it read (`AWSError.isShortage`: throttled, the service
// unavailable, or `Shortage`), it judged nothing: the change is left unjudged
// (`GuardVerdict.unjudged`), the pass fails, and no approval is offered.

/// A guard's verdict when it could not read what it needs: `cannotJudge`'s (a block, or
/// `.unjudged` where this machine ran short since `shortages`), or `.unjudged` where AWS
/// throttled or was unavailable (`AWSError.isShortage`).
func cannotJudge(_ reason: String, _ error: AWSError, since shortages: UInt64) -> GuardVerdict {
    error.isShortage ? .unjudged(reason + "; AWS or this machine ran short of resources, and the change is judged again at the next pass")
        : .cannotJudge(reason, error, since: shortages)
}

extension AccessKeyDriver {
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let deactivated = changes.filter { $0.desired == Self.compliant }.compactMap { Self.key($0.property) }
        guard !deactivated.isEmpty else { return .allow }
        let shortages = Shortage.count
        let own: Set<String>
        do {
            own = try await AWSAdapter.credentialChain(target).resolveWithKeys().keyIDs
        } catch {
            return cannotJudge("cannot tell which access key Bulwark signs its requests to \(target.name) with, so deactivating keys "
                               + "is not judged safe: \(error)", error, since: shortages)
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
        let forbid: [Scope.Forbidden]
        do {
            forbid = try AWSAdapter.spec(resource, Scope.self).forbid
        } catch {
            return .block("cannot read what \(resource.id) forbids, so revoking rules is not judged safe: \(error)")
        }
        var problems: [String] = []
        var revoked: [(group: String, rule: Rule, taken: Set<String>)] = []
        for change in changes where change.property.hasPrefix("ingress:") && change.desired == Self.none {
            let group = String(change.property.dropFirst("ingress:".count))
            let rules = (change.observed ?? Self.none) == Self.none ? [] : (change.observed ?? "").components(separatedBy: "; ").compactMap(Rule.init)
            for rule in rules where !rule.isForbidden(by: forbid) {
                problems.append("rule \(rule) on security group \(group) lets in more than is forbidden ("
                                + Self.forbidden(forbid, overlapping: rule) + "): revoking it would also cut off what no one forbade, "
                                + "so it is not revoked. Split it so that what is forbidden is a rule of its own (or change it by "
                                + "hand); the next pass revokes that rule and nothing else")
            }
            for rule in rules where rule.prefixList != nil && !revoked.contains(where: { $0.group == group && $0.rule.revokes(rule) }) {
                revoked.append((group, rule, Set(rules.filter { rule.revokes($0) }.map(\.cidr))))
            }
        }
        guard !revoked.isEmpty else { return problems.isEmpty ? .allow : .block(problems.joined(separator: "; ")) }
        let shortages = Shortage.count
        let client: AWSClient
        do {
            client = try await AWSAdapter.client(target)
        } catch {
            return cannotJudge("cannot read the prefix lists the revoked rules go through on \(target.name), so the change is not "
                               + "judged safe: \(error)", error, since: shortages)
        }
        for (group, rule, taken) in revoked {
            guard let list = rule.prefixList else { continue }
            let entries: [String]
            do {
                entries = try await Self.entries(client, list, group: group)
            } catch {
                return cannotJudge("cannot read prefix list \(list), so revoking it on \(group) is not judged safe: \(error)",
                                   error, since: shortages)
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
