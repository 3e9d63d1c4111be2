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
    /// A resource new in `current` is not a weakening of anything, unless its kind says one of
    /// its properties is weak on its own (`KindDefinition.weakensNew`); a removed one is not.
    public static func compare(previous: DesiredState, current: DesiredState, registry: Registry) -> [ResourceID: Weakening] {
        var result: [ResourceID: Weakening] = [:]
        for (id, resource) in current.resources {
            guard let kind = registry.kinds[id.kind] else { continue }
            guard let before = previous.resources[id] else {
                guard let weakensNew = kind.weakensNew else { continue }
                let changes = resource.spec.properties.compactMap { property in
                    weakensNew(property.name, property.value).map { "\(property.name): (new resource) (\($0))" }
                }
                if !changes.isEmpty { result[id] = Weakening(changes: changes.sorted()) }
                continue
            }
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
