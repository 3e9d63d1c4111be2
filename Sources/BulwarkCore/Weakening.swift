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
    /// With `.verifiedSigner`: who each author is as a person (`SignerIdentity`), so that an
    /// approver who signs with another kind of key, or under another of her names, is still
    /// the author. Empty: authors are compared by name only.
    public var authorIdentities: [SignerIdentity] = []

    /// Who a person is, for telling a second person from the author of a change.
    public enum Identity: Sendable, Hashable {
        /// Git's author field (`Name <email>`), compared on the e-mail address. Only as good as
        /// that field: whoever makes a commit writes any author they like into it.
        case gitAuthor
        /// The principal of a verified signature (the trusted signers file's name for the key,
        /// an OpenPGP key's e-mail address), on both sides, compared whole (case aside), and each
        /// signer as a person (`authorIdentities`, `Approval.signer`: see `SignerIdentity`).
        case verifiedSigner
    }

    /// The properties that became weaker, by name: a weakened resource has reached a target only
    /// where each of them was observed there (see `Plan.weakenedUnobserved`).
    public var properties: [String] = []

    public init(changes: [String], authors: [String] = [], identity: Identity = .gitAuthor, unknownAuthors: [String] = [],
                properties: [String] = [], authorIdentities: [SignerIdentity] = []) {
        self.properties = properties
        self.authorIdentities = authorIdentities
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
    ///
    /// Where a kind's property names may name one value in more than one way
    /// (`KindDefinition.weakensThrough`), a property changed or new is also compared with what
    /// `previous` gave every other property of the same subject it may reach: a ConfigFile's
    /// `guardrails[0].litellm_params.mode: logging_only` weakens `guardrails[guardrail_name=pii].litellm_params.mode: pre_call`
    /// as editing that path would.
    ///
    /// `retired` holds what earlier applied revisions gave properties that no resource of
    /// `previous` sets any more (`Claim.retiring`): a property set again is compared with it.
    /// Removing a resource in one revision and adding it back weaker in the next would otherwise
    /// find nothing to compare with.
    public static func compare(previous: DesiredState, current: DesiredState, registry: Registry,
                               retired: [Claim: Set<String>] = [:]) -> [ResourceID: Weakening] {
        var claimed = retired
        for (claim, values) in Claim.all(in: previous) { claimed[claim] = values }
        // The claims of each subject, for the kinds whose names of a value are not unique.
        var governed: [Claim: [(property: String, values: [String])]] = [:]
        for (claim, values) in claimed where registry.kinds[claim.kind]?.weakensThrough != nil {
            governed[Claim(kind: claim.kind, subject: claim.subject, property: ""), default: []].append((claim.property, values.sorted()))
        }
        for key in governed.keys { governed[key]?.sort { $0.property < $1.property } }
        var result: [ResourceID: Weakening] = [:]
        for (id, resource) in current.resources {
            guard let kind = registry.kinds[id.kind] else { continue }
            let old = Dictionary((previous.resources[id]?.spec.properties ?? []).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            var changes: [String] = []
            var properties: [String] = []
            for property in resource.spec.properties {
                let before = old[property.name].map { [$0] }
                    ?? claimed[Claim(kind: id.kind, subject: resource.spec.subject, property: property.name)]?.sorted() ?? []
                if before.isEmpty, let why = kind.weakensNew?(property.name, property.value) {
                    changes.append("\(property.name): (new) (\(why))")
                    properties.append(property.name)
                    continue
                }
                var weakened = false
                for was in before where was != property.value {
                    guard let why = kind.weakens(property.name, was, property.value) else { continue }
                    let shown = property.sensitive ? "[redacted] → [redacted]" : "\(was) → \(property.value)"
                    changes.append("\(property.name): \(shown) (\(why))")
                    properties.append(property.name)
                    weakened = true
                    break
                }
                // The same value reached by another name: judged as that name's change. A property
                // as the earlier revision had it is not judged again.
                guard !weakened, !before.contains(property.value), let through = kind.weakensThrough else { continue }
                var reached: [String] = []
                for other in governed[Claim(kind: id.kind, subject: resource.spec.subject, property: "")] ?? []
                where other.property != property.name {
                    if let why = other.values.lazy.compactMap({ through(property.name, property.value, other.property, $0) }).first {
                        reached.append("(reaches \(other.property)) (\(why))")
                    }
                }
                guard !reached.isEmpty else { continue }
                changes.append("\(property.name): " + reached.joined(separator: "; "))
                properties.append(property.name)
            }
            if !changes.isEmpty { result[id] = Weakening(changes: changes.sorted(), properties: properties.sorted()) }
        }
        return result
    }

    /// A property of a subject as a kind names it: what two resources would conflict on, and
    /// what a weakening is judged on whatever resource sets it.
    public struct Claim: Sendable, Hashable, Codable {
        public var kind: String
        public var subject: String
        public var property: String

        public init(kind: String, subject: String, property: String) {
            self.kind = kind
            self.subject = subject
            self.property = property
        }

        /// Every value `state` gives each claim.
        public static func all(in state: DesiredState) -> [Claim: Set<String>] {
            var claimed: [Claim: Set<String>] = [:]
            for (id, resource) in state.resources {
                for property in resource.spec.properties {
                    claimed[Claim(kind: id.kind, subject: resource.spec.subject, property: property.name), default: []].insert(property.value)
                }
            }
            return claimed
        }

        /// The retired claims once `current` is applied after `previous`: those already retired
        /// and those `previous` set, less what `current` sets (compared with `current` itself
        /// from then on). A claim retired twice keeps the later values.
        public static func retiring(previous: DesiredState, current: DesiredState,
                                    retired: [Claim: Set<String>]) -> [Claim: Set<String>] {
            var result = retired
            for (claim, values) in all(in: previous) { result[claim] = values }
            for claim in all(in: current).keys { result[claim] = nil }
            return result
        }
    }

    /// Whether an approver is a second person (`refusal(of:identity:)` finds no reason against).
    public func isSecondPerson(_ approver: String, identity: SignerIdentity? = nil) -> Bool {
        unknownAuthors.isEmpty && refusal(of: approver, identity: identity) == nil
    }

    /// Why `approver` is not shown to be a second person, or nil when it is. With
    /// `.verifiedSigner`, `approver` is a verified principal too, compared whole; and where the
    /// authors' identities are known, the approver's `identity` is compared with each as a
    /// person (`SignerIdentity.samePerson`): a shared name or key, or a signer tied to no name,
    /// is the same person. An approver whose identity is not known then cannot be told apart.
    /// With `.gitAuthor`, compared on the e-mail address when both carry one (`Name <email>`),
    /// else on the whole text. Authors that are unknown are `unknownAuthors`' to say.
    public func refusal(of approver: String, identity: SignerIdentity? = nil) -> String? {
        if self.identity == .verifiedSigner {
            let principal = approver.trimmingCharacters(in: .whitespaces).lowercased()
            if let author = authors.first(where: { $0.trimmingCharacters(in: .whitespaces).lowercased() == principal }) {
                return "'\(quotedForMessage(approver))' signed the approval and the weakening ('\(quotedForMessage(author))')"
            }
            guard !authorIdentities.isEmpty else { return nil }
            guard let identity else {
                return "who signed the approval ('\(quotedForMessage(approver))') is not known as a person, so it cannot be told "
                    + "apart from the weakening's signer"
            }
            return authorIdentities.lazy.compactMap { identity.samePerson(as: $0) }.first
        }
        func key(_ identity: String) -> String {
            if let open = identity.lastIndex(of: "<"), let close = identity.lastIndex(of: ">"), open < close {
                return identity[identity.index(after: open)..<close].lowercased()
            }
            return identity.trimmingCharacters(in: .whitespaces).lowercased()
        }
        return authors.first { key($0) == key(approver) }.map { "'\(quotedForMessage(approver))' is the weakening's author '\(quotedForMessage($0))'" }
    }
}
