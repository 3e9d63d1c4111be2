internal import Foundation

/// Weakening needs a second person: a revision that moves a desired value in the less secure
/// direction, compared with the last revision Bulwark applied, is held until someone other than
/// the author of that change approves it.
public struct Weakening: Sendable, Hashable {
    /// What became weaker, per property: `PermitRootLogin: no → yes (turns root login on)`.
    public var changes: [String]
    /// Who changed the resource's file since the last applied revision, as `identity` names
    /// people: none of them can approve it.
    public var authors: [String]
    /// How `authors`, and the approvers they are compared with, name people.
    public var identity: Identity
    /// Changes to the resource's file since the last applied revision whose author is not known
    /// (a commit without a trusted signature, a history that cannot be read), each in words.
    /// While there is one, no approver can be shown to be a second person: the weakening stays
    /// held until that change is reverted or made again by a known author.
    public var unknownAuthors: [String]

    /// Who a person is, for telling a second person from the author of a change.
    public enum Identity: Sendable, Hashable {
        /// Git's author field (`Name <email>`), compared on the e-mail address. Only as good as
        /// that field: whoever makes a commit writes any author they like into it.
        case gitAuthor
        /// The principal of a verified signature (the trusted signers file's name for the key,
        /// an OpenPGP key's e-mail address), on both sides, compared whole (case aside).
        case verifiedSigner
    }

    public init(changes: [String], authors: [String] = [], identity: Identity = .gitAuthor, unknownAuthors: [String] = []) {
        self.changes = changes
        self.authors = authors
        self.identity = identity
        self.unknownAuthors = unknownAuthors
    }

    /// Resources of `current` whose desired values moved in the less secure direction since
    /// `previous`, as each kind judges it. Pure: the same revisions always give the same answer.
    ///
    /// A property is compared with the same resource's value in `previous`; where that resource
    /// did not set it (renamed, new, or the property moved to it from another resource), with
    /// every value `previous` gave the same property of the same subject under the same kind
    /// (what two resources would conflict on): renaming `Sysctl/ip-forward` to
    /// `Sysctl/ip-forward-v2` with `1` for `0` weakens it as editing it would. A property no
    /// resource set before is a weakening only where its kind says the value is weak on its own
    /// (`KindDefinition.weakensNew`); a removed one is not a weakening of anything.
    public static func compare(previous: DesiredState, current: DesiredState, registry: Registry) -> [ResourceID: Weakening] {
        struct Claim: Hashable {
            var kind: String
            var subject: String
            var property: String
        }
        var claimed: [Claim: Set<String>] = [:]
        for (id, resource) in previous.resources {
            for property in resource.spec.properties {
                claimed[Claim(kind: id.kind, subject: resource.spec.subject, property: property.name), default: []].insert(property.value)
            }
        }
        var result: [ResourceID: Weakening] = [:]
        for (id, resource) in current.resources {
            guard let kind = registry.kinds[id.kind] else { continue }
            let old = Dictionary((previous.resources[id]?.spec.properties ?? []).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            var changes: [String] = []
            for property in resource.spec.properties {
                let before = old[property.name].map { [$0] }
                    ?? claimed[Claim(kind: id.kind, subject: resource.spec.subject, property: property.name)]?.sorted() ?? []
                if before.isEmpty, let why = kind.weakensNew?(property.name, property.value) {
                    changes.append("\(property.name): (new) (\(why))")
                    continue
                }
                for was in before where was != property.value {
                    guard let why = kind.weakens(property.name, was, property.value) else { continue }
                    let shown = property.sensitive ? "[redacted] → [redacted]" : "\(was) → \(property.value)"
                    changes.append("\(property.name): \(shown) (\(why))")
                    break
                }
            }
            if !changes.isEmpty { result[id] = Weakening(changes: changes.sorted()) }
        }
        return result
    }

    /// Whether an approver is a second person: not an author of the weakening, and no author of
    /// it unknown. With `.verifiedSigner`, `approver` is a verified principal too, compared whole;
    /// with `.gitAuthor`, compared on the e-mail address when both carry one (`Name <email>`),
    /// else on the whole text.
    public func isSecondPerson(_ approver: String) -> Bool {
        guard unknownAuthors.isEmpty else { return false }
        if identity == .verifiedSigner {
            let principal = approver.trimmingCharacters(in: .whitespaces).lowercased()
            return !authors.contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == principal }
        }
        func key(_ identity: String) -> String {
            if let open = identity.lastIndex(of: "<"), let close = identity.lastIndex(of: ">"), open < close {
                return identity[identity.index(after: open)..<close].lowercased()
            }
            return identity.trimmingCharacters(in: .whitespaces).lowercased()
        }
        return !authors.contains { key($0) == key(approver) }
    }
}
