/// What the audit branch says of each resource's drift on each target: which records keep it
/// open now, and the last record that ended it (a verified fix, or a drift found gone without
/// one: `Decision.resolved`). Read from the branch oldest first (`add`); the runtime keeps it in
/// the state directory and gives it to each plan (`DesiredState.episodes`).
///
/// It answers two questions a record id alone cannot:
/// - which resources found in sync had drift recorded open: the drift ended without a fix of
///   Bulwark's (someone fixed it by hand, the system changed back), and the pass records that
///   it is over (`Reconciler.resolutions`), else `report` showed it open for ever and timed the next
///   fix from it;
/// - whether the same drift seen again is a new occurrence: the ids of decisions recorded once
///   (held, blocked, deferred, a failure) come from the drift, so after an ending the same drift
///   would be "recorded before" and never recorded again. Such ids are salted with the ending
///   (`salted(_:for:)`) and so are new after each one.
public struct DriftEpisodes: Sendable, Equatable {
    public struct Key: Hashable, Sendable, Comparable {
        public var target: String
        public var resource: String
        public init(target: String, resource: String) {
            self.target = target
            self.resource = resource
        }

        public static func < (a: Key, b: Key) -> Bool { (a.target, a.resource) < (b.target, b.resource) }
    }

    public struct Entry: Sendable, Equatable {
        /// The ids of the records that keep the drift open, oldest first (empty: nothing open).
        public var open: [String] = []
        /// The last record that found the drift gone without a fix (`Decision.resolved`).
        public var lastResolution: String?
        /// The last verified fix's record, once the resource had drift recorded open.
        public var lastFix: String?

        public init(open: [String] = [], lastResolution: String? = nil, lastFix: String? = nil) {
            self.open = open
            self.lastResolution = lastResolution
            self.lastFix = lastFix
        }
    }

    public var entries: [Key: Entry]

    public init(entries: [Key: Entry] = [:]) { self.entries = entries }

    /// How many open ids one resource keeps (the first ones: the drift's detection, and what
    /// followed): a resource whose drift changes on every pass must not grow the index for ever.
    public static let openLimit = 64

    /// Takes in one record, in branch order. `closes`: a record that ends the drift without
    /// being a fix or a resolution (a recovery's `interrupted` record found as desired).
    public mutating func add(id: String, target: String, resource: String, decision: Decision, result: RemediationResult?,
                             isRevert: Bool, closes: Bool = false) {
        // Only Bulwark's ids (26 Crockford base-32 characters, `AuditID`): an id is quoted in a
        // resolution's reason and salts the ids of the drift back, and a record on the branch can
        // be anyone's (an id of any length, with terminal escapes) where no key checks it.
        guard !isRevert, target != AuditRecord.noTarget, AuditID.isWellFormed(id) else { return }
        let key = Key(target: target, resource: resource)
        if decision == .resolved {
            entries[key, default: Entry()].open = []
            entries[key, default: Entry()].lastResolution = id
        } else if decision == .applied || decision == .pruned, result == .verified {
            // Kept only for a resource that had drift recorded: a fleet's thousands of plain
            // fixes leave nothing here. What was pruned is gone, as a fix ends drift (`report`
            // closes both on a verified result): counted open, a resource added back and found
            // as desired got a resolution of a drift that had ended.
            guard entries[key] != nil else { return }
            entries[key]?.open = []
            entries[key]?.lastFix = id
        } else if closes {
            entries[key]?.open = []
        } else if decision.opensDrift {
            var entry = entries[key] ?? Entry()
            if !entry.open.contains(id), entry.open.count < Self.openLimit { entry.open.append(id) }
            entries[key] = entry
        }
    }

    /// The ids of records that keep `binding`'s drift open.
    public func open(_ binding: Binding) -> [String] {
        entries[Key(target: binding.target, resource: binding.resource.description)]?.open ?? []
    }

    /// `id` (of a decision recorded once, for `binding`'s drift) in the episode it belongs to:
    /// unchanged until the drift was found gone without a fix, then salted with the last such
    /// record, so that the drift seen again is recorded again.
    public func salted(_ id: String, for binding: Binding) -> String {
        salted(id, target: binding.target, resource: binding.resource.description)
    }

    public func salted(_ id: String, target: String, resource: String) -> String {
        guard let ending = entries[Key(target: target, resource: resource)]?.lastResolution else { return id }
        return AuditID.stable("after\u{1}" + ending + "\u{1}" + id)
    }

    /// A failure's id, salted with the resource's last verified fix as well: the same failure at
    /// the same revision after a fix in between is a new failure, recorded again.
    public func failureSalted(_ id: String, target: String, resource: String) -> String {
        let salted = salted(id, target: target, resource: resource)
        guard let fix = entries[Key(target: target, resource: resource)]?.lastFix else { return salted }
        return AuditID.stable("fixed\u{1}" + fix + "\u{1}" + salted)
    }

    /// The record id of the resolution of drift last recorded open as `lastOpen`.
    public static func resolutionID(after lastOpen: String) -> String { AuditID.stable("resolved\u{1}" + lastOpen) }
}
