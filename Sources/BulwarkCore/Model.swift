public import struct Foundation.Date
internal import Synchronization

/// How much a drift matters. Ordered: `low < medium < high < critical`.
public enum Severity: String, Sendable, Codable, CaseIterable, Comparable {
    case low, medium, high, critical

    public var weight: Int {
        switch self {
        case .low: 1
        case .medium: 2
        case .high: 3
        case .critical: 4
        }
    }

    public static func < (a: Severity, b: Severity) -> Bool { a.weight < b.weight }
}

/// What a controller may do about drift.
public enum Mode: String, Sendable, Codable, CaseIterable, Comparable {
    /// Correct drift now.
    case enforce
    /// Hold each drift until a person approves it by committing `approvals/<id>.yaml`.
    case approve
    /// Only report drift.
    case audit

    /// How much a mode lets Bulwark do by itself: enforce < approve < audit in strictness.
    private var strictness: Int {
        switch self {
        case .enforce: 0
        case .approve: 1
        case .audit: 2
        }
    }

    /// `a < b`: `b` is stricter.
    public static func < (a: Mode, b: Mode) -> Bool { a.strictness < b.strictness }
}

/// Which targets a controller or resource applies to. Empty means every target.
public struct TargetSelector: Sendable, Hashable, Codable {
    public var names: [String]?
    public var labels: [String: String]?

    public static let all = TargetSelector(names: nil, labels: nil)

    public init(names: [String]? = nil, labels: [String: String]? = nil) {
        self.names = names
        self.labels = labels
    }

    public func matches(_ target: Target) -> Bool {
        if let names, !names.contains(target.name) { return false }
        if let labels, !labels.allSatisfy({ target.labels[$0.key] == $0.value }) { return false }
        return true
    }
}

/// A system Bulwark manages: a host tree, a database, a cloud account.
public struct Target: Sendable, Hashable {
    public var name: String
    /// The adapter that reaches it (`host`, ...).
    public var adapter: String
    public var labels: [String: String]
    /// Adapter-specific settings (for `host`: `root`).
    public var settings: [String: String]
    /// The settings as the adapter typed them when the target was read (see `typedSettings`).
    public var typed: AnyTypedSpec?
    public var location: SourceLocation

    public init(name: String, adapter: String, labels: [String: String] = [:], settings: [String: String],
                location: SourceLocation) {
        self.name = name
        self.adapter = adapter
        self.labels = labels
        self.settings = settings
        self.location = location
    }

    public init(name: String, adapter: String, labels: [String: String] = [:], settings: some TypedTargetSettings,
                location: SourceLocation) {
        self.init(name: name, adapter: adapter, labels: labels, settings: settings.strings, location: location)
        self.typed = AnyTypedSpec(settings)
    }

    /// Adapters that act only on the machine Bulwark runs on: `host` (its files) and `nftables`
    /// (its ruleset or a network namespace of it). In a fleet, such a target belongs to the agent
    /// of the host it is bound to, never to a controller replica, which would change its own
    /// machine instead.
    public static let machineLocalAdapters: Set<String> = ["host", "nftables"]

    /// Whether only a process on the target's own machine can reconcile it (see `machineLocalAdapters`).
    public var isMachineLocal: Bool { Self.machineLocalAdapters.contains(adapter) }

    /// What the target must be the only one of its adapter to manage (`ExclusiveClaim`), with
    /// the key two targets that claim the same thing share; nil for most targets.
    public var exclusiveClaim: (key: String, claim: ExclusiveClaim)? {
        guard let claim = (typed?.base as? any TypedTargetSettings)?.exclusive else { return nil }
        return (adapter + "\u{0}" + claim.key, claim)
    }

    /// `exclusiveClaim` as it stands on this machine now: keyed by what the claim is here
    /// (`TypedTargetSettings.exclusiveIdentity`, with it), so that two targets whose claims name
    /// one thing differently share a key; by `exclusiveClaim`'s key where that cannot be read.
    /// Reads the system: for a pass, never for the loader.
    public func resolvedExclusiveClaim() -> (key: String, claim: ExclusiveClaim, identity: String?)? {
        guard let (key, claim) = exclusiveClaim else { return nil }
        guard let identity = (typed?.base as? any TypedTargetSettings)?.exclusiveIdentity() else { return (key, claim, nil) }
        return (adapter + "\u{1}" + identity, claim, identity)
    }

    /// The labels that bind a machine-local target to one host of a fleet (`HostIdentity`).
    public static let hostnameLabel = "hostname"
    public static let machineIDLabel = "machine-id"

    /// Whether the labels of this target and `other` bind them to different hosts of a fleet:
    /// both name a host by `hostname`, or both by `machine-id`, and not the same one. Anything
    /// else may be one machine: names alone, or one target labelled by hostname and the other by
    /// machine id, and every target of a single Bulwark that reconciles them all.
    public func placedApart(from other: Target) -> Bool {
        if let mine = labels[Self.hostnameLabel], let theirs = other.labels[Self.hostnameLabel], mine != theirs { return true }
        if let mine = labels[Self.machineIDLabel]?.lowercased(), let theirs = other.labels[Self.machineIDLabel]?.lowercased(),
           mine != theirs { return true }
        return false
    }

    /// The target's `exposure` label weighs a drift's risk: internet-facing drift goes first.
    public var exposureWeight: Int {
        switch labels["exposure"] {
        case "internet": 3
        case "internal": 1
        default: 2
        }
    }
}

/// How and where a set of kinds is reconciled.
public struct ControllerConfig: Sendable, Hashable {
    public var name: String
    public var kinds: [String]
    public var targets: TargetSelector
    public var interval: Duration
    public var mode: Mode
    /// At most this many remediations per cycle; the rest are deferred, riskiest first.
    public var maxChangesPerCycle: Int?
    /// At most this percentage of the controller's targets is changed in one cycle (at least one).
    public var maxTargetShare: Int?
    /// When changes may be made; empty means at any time.
    public var windows: [ChangeWindow]
    /// A property fixed this many times within `flapPeriod` is escalated instead of fixed again.
    public var flapCount: Int = 3
    public var flapPeriod: Duration = .seconds(3600)
    /// Kinds whose changes in the less secure direction apply without a second person
    /// (`weakening: allow`); by default such a change is held.
    public var weakeningAllowed: Set<String> = []
    public var location: SourceLocation

    public init(name: String, kinds: [String], targets: TargetSelector = .all, interval: Duration = .seconds(300),
                mode: Mode = .enforce, maxChangesPerCycle: Int? = nil, maxTargetShare: Int? = nil,
                windows: [ChangeWindow] = [], location: SourceLocation) {
        self.name = name
        self.kinds = kinds
        self.targets = targets
        self.interval = interval
        self.mode = mode
        self.maxChangesPerCycle = maxChangesPerCycle
        self.maxTargetShare = maxTargetShare
        self.windows = windows
        self.location = location
    }
}

/// `Kind/name`, the identity of a desired-state resource.
public struct ResourceID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var kind: String
    public var name: String
    public init(kind: String, name: String) {
        self.kind = kind
        self.name = name
    }
    public var description: String { "\(kind)/\(name)" }
    public static func < (a: ResourceID, b: ResourceID) -> Bool { (a.kind, a.name) < (b.kind, b.name) }
}

/// One property a resource wants, in canonical form (what the adapter compares).
public struct DesiredProperty: Sendable, Hashable {
    public var name: String
    public var value: String
    /// Never written to logs or audit records.
    public var sensitive: Bool

    public init(_ name: String, _ value: String, sensitive: Bool = false) {
        self.name = name
        self.value = value
        self.sensitive = sensitive
    }
}

/// What a kind's parser makes of a resource's `spec`.
public struct ResourceSpec: Sendable, Hashable {
    /// What the properties belong to on a target (a path, an account); two resources that
    /// claim the same property of the same subject on one target conflict.
    public var subject: String
    public var properties: [DesiredProperty]
    /// The kind's typed reading of the spec (see `Resource.typedSpec`).
    public var typed: AnyTypedSpec?
    /// When the desired values stop being these (an expiry read against `SpecReader.now`): a
    /// daemon reads the revision again then, though no commit came (`DesiredState.changesAt`).
    public var changesAt: Date?

    public init(subject: String = "", properties: [DesiredProperty]) {
        self.subject = subject
        self.properties = properties
    }
}

/// A validated desired-state resource.
public struct Resource: Sendable, Hashable {
    public var id: ResourceID
    public var severity: Severity
    public var labels: [String: String]
    public var annotations: [String: String]
    public var targets: TargetSelector
    public var spec: ResourceSpec
    public var location: SourceLocation

    public init(id: ResourceID, severity: Severity = .medium, labels: [String: String] = [:],
                annotations: [String: String] = [:], targets: TargetSelector = .all, spec: ResourceSpec,
                location: SourceLocation) {
        self.id = id
        self.severity = severity
        self.labels = labels
        self.annotations = annotations
        self.targets = targets
        self.spec = spec
        self.location = location
    }
}

/// One resource on one target under one controller: the unit that is observed and fixed.
public struct Binding: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var controller: String
    public var target: String
    public var resource: ResourceID

    public init(controller: String, target: String, resource: ResourceID) {
        self.controller = controller
        self.target = target
        self.resource = resource
    }

    public var description: String { "\(target) \(resource)" }
    public static func < (a: Binding, b: Binding) -> Bool {
        (a.target, a.resource.kind, a.resource.name) < (b.target, b.resource.kind, b.resource.name)
    }
}

/// What an adapter saw of a resource's properties on a target.
public struct Observation: Sendable, Hashable {
    /// Property name to observed value; `nil` means unset. Properties the adapter left out do
    /// not apply on this target (an account that does not exist has no shell to fix).
    public var values: [String: String?]
    public var observedAt: Date
    /// What an earlier fix of this resource left undone though the values it set hold, by the
    /// property that drifts until it is done, with what is owed: a `ConfigFile` written whose
    /// reload did not complete (`[reload of ConfigFile/litellm]`: "the file was written but its
    /// reload did not complete"). Recovery never records such a fix `verified`.
    public var owed: [String: String]
    /// Properties whose observed value holds a credential (a `ConfigFile` key that names none,
    /// holding `Bearer …`): shown `[redacted]`, desired and observed alike, as a property the
    /// policy marks sensitive is (`PropertyDrift.sensitive`).
    public var sensitive: Set<String>

    public init(values: [String: String?], observedAt: Date = Date(), owed: [String: String] = [:], sensitive: Set<String> = []) {
        self.values = values
        self.observedAt = observedAt
        self.owed = owed
        self.sensitive = sensitive
    }
}

/// An adapter's way to observe and correct the resources of one kind.
public protocol ResourceDriver: Sendable {
    /// Reads the resource's properties on the target. Must not change anything.
    func observe(_ resource: Resource, on target: Target) async throws -> Observation
    /// Corrects `changes` (drifted properties only), atomically where the system allows, and
    /// idempotently: applying what is already true changes nothing.
    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws
    /// Absolute paths of the files whose changes can drift this resource on this target, for
    /// the daemon to watch (a change re-observes just the resources that file holds). Adapters
    /// whose state is not in files return none, and are polled on their interval.
    func watchedPaths(_ resource: Resource, on target: Target) -> [String]
    /// The adapter's safety guards: judges `changes` (drifted properties that would be applied
    /// together) against the target as it is now, before anything acts. A change that would lock
    /// people out or break a floor is `.block`ed: it is never applied unless a person approves
    /// the blocked id, and it is recorded once as `blocked` with the reason. A guard that cannot
    /// judge (a check that fails to run) blocks; it never lets a change through unjudged. One that
    /// could not run for want of the machine's resources says `.unjudged`
    /// (`GuardVerdict.cannotJudge`, `Shortage`): no approval is offered for what nothing judged.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict
    /// Throws, saying why, when `changes` ask for a value this driver does not write: a record's
    /// value from before a fix (`(changed by hand)`) that `revert` would put back. `apply` checks
    /// it too; `revert` asks first, before it commits anything. Reads nothing. Default: every
    /// value is written.
    func checkWritable(_ changes: [PropertyDrift], to resource: Resource) throws
    /// Whether `apply` (and a coalescing driver's `apply(batch:on:)`) passes `ChangeGate.current`
    /// right before every first change it makes to the system, after its checks: then the
    /// reconciler marks the step tried only there. False (the default): the reconciler marks it
    /// tried before calling the driver.
    var announcesChanges: Bool { get }
}

extension ResourceDriver {
    public func checkWritable(_ changes: [PropertyDrift], to resource: Resource) throws {}
    public var announcesChanges: Bool { false }
    public func watchedPaths(_ resource: Resource, on target: Target) -> [String] { [] }
    public func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        .allow
    }
}

/// A change a pass has already allowed on a target, shown to a guard that judges the target
/// as a whole (`JointlyGuardedDriver`).
public struct AllowedChange: Sendable {
    public var resource: Resource
    public var changes: [PropertyDrift]

    public init(resource: Resource, changes: [PropertyDrift]) {
        self.resource = resource
        self.changes = changes
    }
}

/// The question a jointly judged guard answers about a whole target, and when it answers it
/// among the kinds that share the question.
public struct GuardDomain: Sendable, Hashable {
    /// Kinds whose guards share one name answer one question about a target ("who can still log
    /// in": the accounts and sshd's settings).
    public var name: String
    /// Within a domain, lower stages are judged first, and the later ones are judged with what
    /// they allowed: the sshd guard, at a later stage than the account guard, asks who can still
    /// log in once the accounts this pass changes are changed.
    public var stage: Int
    /// What the question is about when two targets can name the same thing (a host's root
    /// folder, by device and inode): their remediations are judged together. Nil: the target.
    public var scope: String?

    public init(name: String, stage: Int, scope: String? = nil) {
        self.name = name
        self.stage = stage
        self.scope = scope
    }
}

/// A driver whose guard answers a question about the whole target that other kinds' changes in
/// the same pass also bear on. Two changes a pass makes, each harmless alone (an administrator's
/// account locked, password logins turned off in sshd), can together leave nobody a way in;
/// judged alone, against the target as it is, each would be allowed.
///
/// The remediations of one target whose kinds share a domain are judged together: by stage,
/// then in plan order, each with the `applied` changes allowed before it (`alongside`). A guard
/// counts an earlier change against what it protects, never for it: a change that would give a
/// login back may still fail to be written, so a guard must not rely on it.
public protocol JointlyGuardedDriver: ResourceDriver {
    /// The same for every resource of one kind on one target: a plan asks once per kind and target.
    func guardDomain(_ resource: Resource, on target: Target) -> GuardDomain?
    /// `assess`, with the changes this pass has already allowed on the target, in order.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target,
                alongside: [AllowedChange]) async -> GuardVerdict
    /// Whether `change`, allowed earlier in the pass, bears on the verdict on `resource`: a
    /// block names those that do as what it was judged with. Every one, unless the guard judges
    /// one object at a time (FileMode: only changes to the same file).
    func bears(_ change: AllowedChange, on resource: Resource, on target: Target) -> Bool
    /// The part of the target that the verdict on `resource` is about, where the guard judges
    /// one part at a time (FileMode: the file its path leads to, by device and inode). Only the
    /// changes allowed earlier to the same part, or to no part, are shown to it (`alongside`):
    /// gathering every earlier change for each of a host's resources made a pass quadratic in
    /// them. Nil (the default): the verdict is about the whole target, and every earlier change
    /// is shown.
    func part(_ resource: Resource, on target: Target) -> String?
}

extension JointlyGuardedDriver {
    public func bears(_ change: AllowedChange, on resource: Resource, on target: Target) -> Bool { true }
    public func part(_ resource: Resource, on target: Target) -> String? { nil }

    public func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        await assess(changes, to: resource, on: target, alongside: [])
    }
}

/// What the reconciler tells a driver's `apply` about the remediation it carries out.
public enum ApplyContext {
    /// The block a person approved this change past (`bulwark approve` of the blocked id): the
    /// guard's reason. A driver that asks its guard again at the write, under the target's lock
    /// (the plan's verdict is seconds old by then, and another writer may have changed what it
    /// judged), lets that same block through, and refuses any other: an approval of a passing
    /// "could not judge" is no approval of a lockout found since. Set for one remediation's
    /// `apply`, never for a coalesced batch: a batch the guard refuses is carried out resource
    /// by resource.
    @TaskLocal public static var approvedBlock: String?
}

/// A safety guard's block of one remediation in a pass: the guard's reason, and what the pass
/// judged the change with (the other changes of the same file or host), as `plan` and the
/// blocked record show it.
public struct GuardBlock: Sendable, Hashable {
    public var reason: String
    public var context: [String]
    /// The guard could not run for want of the machine's resources (`GuardVerdict.unjudged`):
    /// nothing was judged, so the plan counts the resource as not observed, not as blocked.
    public var unjudged: Bool

    public init(_ reason: String, context: [String] = [], unjudged: Bool = false) {
        self.reason = reason
        self.context = context
        self.unjudged = unjudged
    }

    /// The reason with its context, as a person reads it.
    public var shown: String {
        context.isEmpty ? reason : reason + " (judged with " + context.joined(separator: ", and with ") + ")"
    }

    /// Whether `approved`, the block a person approved a change past (as its blocked record
    /// showed it, on one line), is a block for `reason`, judged with whatever changes then.
    public static func approves(_ approved: String, reason: String) -> Bool {
        let approved = TerminalText.oneLine(approved), reason = TerminalText.oneLine(reason)
        return approved == reason || approved.hasPrefix(reason + " (judged with ")
    }
}

/// What a safety guard says about a candidate change.
public enum GuardVerdict: Sendable, Hashable {
    case allow
    /// Refused, with the reason a person reads in `plan` and in the audit record.
    case block(String)
    /// Not judged: the guard could not run for want of the machine's resources (out of file
    /// descriptors or memory, an I/O error). Nothing is changed, as for a block, but no person
    /// can approve it: the resource is not observed this pass (`Decision.unobserved`), and the
    /// pass fails, as for a resource that could not be read.
    case unjudged(String)

    /// Why nothing may be changed: a block's reason, or why the guard could not judge.
    public var blockReason: String? {
        switch self {
        case .allow: nil
        case .block(let reason), .unjudged(let reason): reason
        }
    }

    public var isUnjudged: Bool {
        if case .unjudged = self { return true }
        return false
    }
}

/// Thrown by a driver when the desired state cannot be acted on safely on a target (a path
/// that escapes the target's root through a symlink): the whole revision is refused.
public struct UnsafeDesiredState: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An exception: matching drift is left alone until the waiver expires.
public struct Waiver: Sendable, Hashable {
    public var name: String
    /// nil matches any.
    public var kind: String?
    public var resource: String?
    public var property: String?
    public var targets: [String]?
    public var reason: String
    public var owner: String
    public var ticket: String?
    /// The first moment the waiver no longer applies (the day after `expires`, 00:00 UTC).
    public var expiresAt: Date
    public var location: SourceLocation

    public init(name: String, kind: String? = nil, resource: String? = nil, property: String? = nil,
                targets: [String]? = nil, reason: String, owner: String, ticket: String? = nil, expiresAt: Date,
                location: SourceLocation) {
        self.name = name
        self.kind = kind
        self.resource = resource
        self.property = property
        self.targets = targets
        self.reason = reason
        self.owner = owner
        self.ticket = ticket
        self.expiresAt = expiresAt
        self.location = location
    }

    public func matches(_ binding: Binding, property name: String, at now: Date) -> Bool {
        guard now < expiresAt else { return false }
        if let kind, kind != binding.resource.kind { return false }
        if let resource, resource != binding.resource.name { return false }
        if let property, property != name { return false }
        if let targets, !targets.contains(binding.target) { return false }
        return true
    }
}

/// The emergency brake: `controllers/pause.yaml` with `kind: Pause`, committed by `bulwark pause`.
public struct Pause: Sendable, Hashable {
    public var reason: String
    /// Who paused (the author of the commit that wrote the file, once provenance is established).
    public var by: String?
    public var location: SourceLocation

    public init(reason: String, by: String? = nil, location: SourceLocation) {
        self.reason = reason
        self.by = by
        self.location = location
    }
}

/// A person's approval of one held remediation, committed as `approvals/<id>.yaml`.
public struct Approval: Sendable, Hashable {
    public var id: String
    public var approver: String
    public var reason: String
    public var expiresAt: Date?
    /// For a safety guard's block: the guard's reason the person saw in the blocked record (what
    /// `bulwark approve` copies from it). The approval lets through that block only; a pass whose
    /// guard finds another reason for the same drift blocks it under an id of its own.
    public var block: String?
    public var location: SourceLocation
    /// Who signed the approval file, as a person (set from git with verified signatures: see
    /// `Weakening.refusal(of:identity:)`); nil where approvers are not verified signers.
    public var signer: SignerIdentity?
    /// The audit commit of the record approved (`bulwark approve` writes it): the approval counts
    /// only where that commit is on the audit branch, so that an approval given in another
    /// repository (a staging copy of the policy, where the same drift has the same id) is not
    /// brought into this one by a merge. Nil in approvals written by hand or by older versions.
    public var record: String?

    public init(id: String, approver: String, reason: String, expiresAt: Date? = nil, block: String? = nil,
                location: SourceLocation, record: String? = nil) {
        self.record = record
        self.id = id
        self.approver = approver
        self.reason = reason
        self.expiresAt = expiresAt
        self.block = block
        self.location = location
    }
}

/// Verified fixes from the audit history, for the flap breaker.
public struct FixHistory: Sendable {
    public struct Key: Hashable, Sendable {
        public var target: String
        public var resource: ResourceID
        public var property: String
        public init(target: String, resource: ResourceID, property: String) {
            self.target = target
            self.resource = resource
            self.property = property
        }
    }

    public struct Fix: Hashable, Sendable {
        public var at: Date
        public var desired: String
        public init(at: Date, desired: String) {
            self.at = at
            self.desired = desired
        }
    }

    public var fixes: [Key: [Fix]]
    public init(fixes: [Key: [Fix]] = [:]) { self.fixes = fixes }

    /// Adds the fixes a record made, if it is a verified fix.
    public mutating func add(_ record: AuditRecord) {
        guard record.decision == .applied, record.result == .verified,
              let at = record.verifiedAt ?? record.appliedAt else { return }
        let resource = ResourceID(kind: record.kind, name: record.name)
        for change in record.changes {
            fixes[Key(target: record.target, resource: resource, property: change.property), default: []]
                .append(Fix(at: at, desired: change.desired))
        }
    }

    /// Forgets fixes older than `start`, in place: the daemon calls this every cycle, and
    /// rebuilding every list (and the dictionary, written while iterated) each time was most of
    /// its allocations, buffers of growing size that fragment malloc's arenas.
    public mutating func forget(before start: Date) {
        let stale = fixes.compactMap { key, list in list.contains { $0.at < start } ? key : nil }
        for key in stale {
            fixes[key]?.removeAll { $0.at < start }
            if fixes[key]?.isEmpty == true { fixes[key] = nil }
        }
    }

    /// Fixes of `key` to `desired` since `start`.
    public func count(_ key: Key, desired: String, since start: Date) -> (count: Int, first: Date?) {
        let recent = (fixes[key] ?? []).filter { $0.at >= start && $0.desired == desired }
        return (recent.count, recent.map(\.at).min())
    }
}

