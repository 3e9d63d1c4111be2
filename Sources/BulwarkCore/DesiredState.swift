public import Foundation

/// A file of a desired-state revision, as read from git.
public struct SourceFile: Sendable, Hashable {
    public enum Kind: Sendable, Hashable { case regular, symlink, other }
    public var path: String
    public var kind: Kind
    public var size: Int
    /// nil when the file was too large to read.
    public var contents: [UInt8]?

    public init(path: String, kind: Kind = .regular, size: Int? = nil, contents: [UInt8]?) {
        self.path = path
        self.kind = kind
        self.size = size ?? contents?.count ?? 0
        self.contents = contents
    }
}

/// Waivers and approvals read from a revision.
struct PolicyObjects {
    var globalLimit: (value: Int, location: SourceLocation)?
    var waivers: [Waiver] = []
    var approvals: [String: Approval] = [:]
    var notifiers: [NotifierConfig] = []
    var pause: Pause?
    var findingRules: [FindingRule] = []
    /// The targets that claim each thing a target must manage alone (`ExclusiveClaim`), by
    /// adapter and key, with where each one's field is, for the error on a later one.
    var claims: [String: [(target: Target, location: SourceLocation, field: String)]] = [:]
}

/// One validated revision of the desired state: everything a cycle acts on.
public struct DesiredState: Sendable {
    /// The commit the state was read from.
    public var revision: Revision
    public var targets: [String: Target]
    public var controllers: [String: ControllerConfig]
    public var resources: [ResourceID: Resource]
    /// Every (controller, target, resource) to reconcile, sorted.
    public var bindings: [Binding]
    /// Fixes allowed per cycle over every controller (`kind: GlobalLimits`, default 100).
    public var maxChangesPerCycle: Int
    public var waivers: [Waiver]
    public var notifiers: [NotifierConfig]
    /// Approvals by the id of the held remediation they approve.
    public var approvals: [String: Approval]
    /// Ids whose approval a fix already used (`Provenance` takes them out of `approvals`): the
    /// drift they approved came back after that fix, so it is held again under the next id of
    /// its episode (`Planner.episode`), recorded anew and approved anew.
    public var consumedApprovals: Set<String> = []
    /// What the audit branch says of each resource's drift (`DriftEpisodes`): what is recorded
    /// open, and when drift last ended. Empty until the runtime reads the branch.
    public var episodes = DriftEpisodes()
    public var warnings: [ManifestError]
    /// The emergency brake (`bulwark pause`): while set, no pass changes any system.
    public var pause: Pause? = nil
    /// What to do about scanners' findings (`kind: FindingRule`, under `finding-rules/`).
    public var findingRules: [FindingRule] = []
    /// Every binding of the revision, once a pass has narrowed `bindings` to part of it (see
    /// `narrow`); nil while `bindings` are the revision's. Pruning keeps what these want: a
    /// resource left out of one pass is still wanted.
    public var revisionBindings: [Binding]? = nil
    /// The targets a narrowed pass may act on; nil: those its bindings name (or, not narrowed,
    /// every target).
    public var targetScope: Set<String>? = nil
    /// The commit id of the last revision accepted with no weakening pending, as
    /// `Provenance.establish` judged this one: the revision itself when nothing of it weakens (or a second person is not
    /// needed), the revision it was compared with while a weakening of it is pending, `none`
    /// when no revision was accepted yet (`AuditRecord.noBaseline`); nil when not judged. Each
    /// applied record states it (`Bulwark-Baseline`), and a new state directory compares with
    /// the newest one's (`Provenance.lastApplied`).
    public var acceptedBaseline: String? = nil
}

extension DesiredState {
    /// A revision that sets nothing: what a revision is judged against when no earlier one
    /// was accepted (each of its values is new, `KindDefinition.weakensNew`).
    public static func empty(revision: Revision) -> DesiredState {
        DesiredState(revision: revision, targets: [:], controllers: [:], resources: [:], bindings: [],
                     maxChangesPerCycle: DesiredStateLoader.defaultGlobalLimit, waivers: [], notifiers: [], approvals: [:], warnings: [])
    }
}

extension DesiredState {
    /// The first time a resource's desired values stop being those read (`ResourceSpec.changesAt`,
    /// a quarantine's expiry): a daemon reads the same revision again then.
    public var changesAt: Date? { resources.values.lazy.compactMap(\.spec.changesAt).min() }

    /// Narrows a pass to the bindings `keep` accepts (a watched file, a finding, the targets an
    /// agent or a lease holder owns), remembering the revision's bindings so that nothing the
    /// revision still wants looks like a leftover. With `targets`, the pass may act on (prune
    /// on) those targets, even where none of its bindings remains.
    public mutating func narrow(toTargets targets: Set<String>? = nil, _ keep: (Binding) -> Bool) {
        if revisionBindings == nil { revisionBindings = bindings }
        bindings = bindings.filter(keep)
        if let targets { targetScope = targetScope.map { $0.intersection(targets) } ?? targets }
    }

    /// The bindings of the whole revision, whatever a pass narrowed.
    public var wantedBindings: [Binding] { revisionBindings ?? bindings }

    /// Whether this pass may act on `target`: any target when not narrowed, else those of
    /// `targetScope`, else those its bindings name.
    public func inScope(_ target: String) -> Bool {
        guard revisionBindings != nil else { return true }
        if let targetScope { return targetScope.contains(target) }
        return bindings.contains { $0.target == target }
    }
}

/// Reads and validates a whole revision before anything acts on it.
extension DesiredState {
    /// How far back the flap breaker looks: the longest flap period of any controller.
    public var longestFlapPeriod: Duration {
        controllers.values.map(\.flapPeriod).max() ?? .seconds(3600)
    }
}

public struct DesiredStateLoader: Sendable {
    public static let apiVersion = "bulwark/v1"
    /// Folders of a policy repository that hold manifests.
    public static let folders = ["desired-state", "controllers", "waivers", "approvals", "finding-rules"]

    /// Whether `files` look like a policy repository: something under `desired-state/` or
    /// `controllers/`. A wrong `--repo` or `--branch` (an application's repository, a branch
    /// with only a README) otherwise loads as an empty policy that is always in sync.
    public static func holdsPolicy(_ files: [SourceFile]) -> Bool {
        files.contains { $0.path.hasPrefix("desired-state/") || $0.path.hasPrefix("controllers/") }
    }
    /// Limits are on by default: without a `GlobalLimits` manifest, at most this many fixes per cycle.
    public static let defaultGlobalLimit = 100
    /// Largest manifest file read.
    public static let maxFileSize = 1 << 20

    public let registry: Registry
    public let limits: YAMLLimits
    /// "Now", for waiver and approval expiry.
    public let now: Date

    public init(registry: Registry, limits: YAMLLimits = .init(), now: Date = Date()) {
        self.registry = registry
        self.limits = limits
        self.now = now
    }

    /// Validates every file; throws every problem found, or returns the revision's state.
    public func load(_ files: [SourceFile], revision: Revision) throws(ValidationFailure) -> DesiredState {
        let diagnostics = Diagnostics()
        var targets: [String: Target] = [:]
        var controllers: [String: ControllerConfig] = [:]
        var resources: [ResourceID: Resource] = [:]
        var policy = PolicyObjects()

        for file in files.sorted(by: { $0.path < $1.path }) {
            for document in documents(of: file, diagnostics: diagnostics) {
                read(document, file: file.path, diagnostics: diagnostics,
                     targets: &targets, controllers: &controllers, resources: &resources, policy: &policy)
            }
        }
        let bindings = bind(targets: targets, controllers: controllers, resources: resources, diagnostics: diagnostics)
        guard !diagnostics.hasErrors else { throw diagnostics.failure }
        return DesiredState(revision: revision, targets: targets, controllers: controllers, resources: resources,
                            bindings: bindings, maxChangesPerCycle: policy.globalLimit?.value ?? Self.defaultGlobalLimit,
                            waivers: policy.waivers, notifiers: policy.notifiers, approvals: policy.approvals,
                            warnings: diagnostics.warnings, pause: policy.pause, findingRules: policy.findingRules)
    }

    // MARK: - Helpers

    /// A resource or target name: lowercase letters, digits, '-' and '.', starting and ending
    /// with a letter or digit, at most 253 bytes (so it is also a safe file name).
    public static func isValidName(_ name: String) -> Bool {
        guard (1...253).contains(name.utf8.count) else { return false }
        let bytes = Array(name.utf8)
        func alnum(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 48 && b <= 57) }
        guard let first = bytes.first, let last = bytes.last, alnum(first), alnum(last) else { return false }
        return bytes.allSatisfy { alnum($0) || $0 == 45 || $0 == 46 }
    }

    /// Parses `30s`, `5m`, `1h`, `1h30m` into seconds; nil when malformed, zero or too large.
    /// The parsing is `DurationParser.seconds`, the one duration parser.
    public static func parseDuration(_ text: String) -> Int? {
        guard let seconds = try? DurationParser.seconds(text), seconds > 0 else { return nil }
        return seconds
    }

    /// A duration field from `range` seconds: records why it is refused (too large, malformed,
    /// out of range) and returns nil.
    func duration(_ reader: SpecReader, in range: ClosedRange<Int>, example: String) -> Int? {
        guard let text = reader.string() else { return nil }
        let expected = "expected a duration from \(DurationParser.text(range.lowerBound)) to \(DurationParser.text(range.upperBound)) such as \(example)"
        do {
            let seconds = try DurationParser.seconds(text)
            guard range.contains(seconds) else {
                reader.fail("\(expected), got '\(quotedForMessage(text))'")
                return nil
            }
            return seconds
        } catch {
            reader.fail("\(error.message); \(expected)")
            return nil
        }
    }
}
