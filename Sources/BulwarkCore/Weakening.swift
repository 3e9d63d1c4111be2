internal import Foundation

/// Weakening needs a second person: a revision that moves a desired value in the less secure
/// direction, compared with the last revision Bulwark applied, is held until someone other than
/// the author of that change approves it.
public struct Weakening: Sendable, Hashable {
    /// What became weaker, per property: `PermitRootLogin: no → yes (turns root login on)`.
    public var changes: [String]
    /// Who changed the resource's file since the last applied revision (`Name <email>`), when
    /// known: none of them can approve it.
    public var authors: [String]

    public init(changes: [String], authors: [String] = []) {
        self.changes = changes
        self.authors = authors
    }

    /// Resources of `current` whose desired values moved in the less secure direction since
    /// `previous`, as each kind judges it. Pure: the same revisions always give the same answer.
    /// A resource new in `current` is not a weakening of anything; neither is a removed one.
    public static func compare(previous: DesiredState, current: DesiredState, registry: Registry) -> [ResourceID: Weakening] {
        var result: [ResourceID: Weakening] = [:]
        for (id, resource) in current.resources {
            guard let before = previous.resources[id], let kind = registry.kinds[id.kind] else { continue }
            let old = Dictionary(before.spec.properties.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            var changes: [String] = []
            for property in resource.spec.properties {
                guard let was = old[property.name], was.value != property.value,
                      let why = kind.weakens(property.name, was.value, property.value) else { continue }
                let shown = property.sensitive ? "[redacted] → [redacted]" : "\(was.value) → \(property.value)"
                changes.append("\(property.name): \(shown) (\(why))")
            }
            if !changes.isEmpty { result[id] = Weakening(changes: changes.sorted()) }
        }
        return result
    }

    /// Whether an approver is a second person: not the author of the weakening. Compared on the
    /// e-mail address when both carry one (`Name <email>`), else on the whole text.
    public func isSecondPerson(_ approver: String) -> Bool {
        func key(_ identity: String) -> String {
            if let open = identity.lastIndex(of: "<"), let close = identity.lastIndex(of: ">"), open < close {
                return identity[identity.index(after: open)..<close].lowercased()
            }
            return identity.trimmingCharacters(in: .whitespaces).lowercased()
        }
        return !authors.contains { key($0) == key(approver) }
    }
}
