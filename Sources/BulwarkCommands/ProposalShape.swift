internal import BulwarkCore
internal import BulwarkRuntime
internal import Foundation

/// What a proposal commit says it is: `propose(<resource>): …` with one `Change: <file>: …` line,
/// as `ProposalEngine` writes it. `accept` merges a branch tip only when its change is exactly
/// that: one resource in one file under `desired-state/`, nothing else in the policy different,
/// and nothing weaker than the policy in force.
struct ProposalShape {
    var resource: String
    var path: String
    var change: String

    init(message: String, branch: String) throws {
        let lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let subject = lines.first, subject.hasPrefix("propose("), let close = subject.range(of: "):") else {
            throw CommandError("\(branch)'s last commit is not a proposal Bulwark made (its subject is not `propose(<resource>): …`). Nothing was committed.")
        }
        resource = String(subject[subject.index(subject.startIndex, offsetBy: 8)..<close.lowerBound])
        let changes = lines.filter { $0.hasPrefix("Change: ") }
        guard changes.count == 1, let change = changes.first,
              let colon = change.dropFirst(8).range(of: ": ") else {
            throw CommandError("\(branch)'s last commit does not name the one file it changes (a `Change: <file>: …` line). Nothing was committed.")
        }
        path = String(change.dropFirst(8)[..<colon.lowerBound])
        self.change = String(change.dropFirst(8))
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.first == "desired-state", !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
              path.hasSuffix(".yaml") || path.hasSuffix(".yml") else {
            throw CommandError("\(branch) changes \(path); a proposal only changes a YAML file under desired-state/. Nothing was committed.")
        }
    }

    /// Why the policy `after` is not `before` with this one resource changed or added, if it is not.
    func problem(from before: DesiredState, to after: DesiredState, registry: Registry) -> String? {
        guard let id = after.resources.keys.first(where: { $0.description == resource }) else {
            return "the policy with it has no resource \(resource)"
        }
        var others: [String] = []
        for key in Set(before.resources.keys).union(after.resources.keys) where key != id {
            if before.resources[key].map(Self.placeless) != after.resources[key].map(Self.placeless) { others.append(key.description) }
        }
        if !others.isEmpty {
            return "it also changes \(others.sorted().prefix(5).joined(separator: ", ")); a proposal changes one resource"
        }
        if before.targets.mapValues(Self.placeless) != after.targets.mapValues(Self.placeless)
            || before.controllers.mapValues(Self.placeless) != after.controllers.mapValues(Self.placeless)
            || before.waivers != after.waivers || before.approvals != after.approvals || before.notifiers != after.notifiers
            || before.findingRules != after.findingRules || before.pause != after.pause
            || before.maxChangesPerCycle != after.maxChangesPerCycle {
            return "it changes more of the policy than \(resource) (targets, controllers, waivers, approvals, notifiers, rules or limits)"
        }
        if let weaker = Weakening.compare(previous: before, current: after, registry: registry)[id] {
            return "it would weaken \(resource): " + weaker.changes.joined(separator: "; ")
        }
        return nil
    }

    private static let nowhere = SourceLocation(file: "", line: 0)
    private static func placeless(_ resource: Resource) -> Resource { var copy = resource; copy.location = nowhere; return copy }
    private static func placeless(_ target: Target) -> Target { var copy = target; copy.location = nowhere; return copy }
    private static func placeless(_ controller: ControllerConfig) -> ControllerConfig {
        var copy = controller; copy.location = nowhere; return copy
    }

    /// The lines removed and added, in order (a plain line diff by longest common subsequence,
    /// bounded: files larger than a few thousand lines are summarised).
    static func diff(_ old: [UInt8], _ new: [UInt8]) -> [String] {
        let a = String(decoding: old, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let b = String(decoding: new, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard a.count * b.count <= 4_000_000 else { return ["(\(a.count) lines before, \(b.count) after)"] }
        var lengths = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            for j in stride(from: b.count - 1, through: 0, by: -1) {
                lengths[i][j] = a[i] == b[j] ? lengths[i + 1][j + 1] + 1 : max(lengths[i + 1][j], lengths[i][j + 1])
            }
        }
        var (i, j, result) = (0, 0, [String]())
        while i < a.count || j < b.count {
            if i < a.count, j < b.count, a[i] == b[j] { i += 1; j += 1 }
            else if j < b.count, i == a.count || lengths[i][j + 1] >= lengths[i + 1][j] { result.append("+ " + b[j]); j += 1 }
            else { result.append("- " + a[i]); i += 1 }
        }
        return result
    }
}
