internal import Synchronization
/// A driver whose resources on one target live in one file (every `SSHDConfig` keyword in
/// sshd_config, every `LoginDefs` key in login.defs, every `Sysctl` in Bulwark's sysctl.d file)
/// and can therefore be corrected together: one candidate, one validation (one `sshd -t`), one
/// atomic write and one fsync for the file, where one remediation per resource would write,
/// validate and sync the same file once per resource. Each resource is still verified by
/// observing it again and still gets its own audit record.
public protocol CoalescingDriver: ResourceDriver {
    /// Resources of this kind with the same key on a target are corrected together by
    /// `apply(batch:on:)`; nil corrects this one alone.
    func coalescingKey(_ resource: Resource, on target: Target) -> String?
    /// Corrects the changes of several resources on `target` as one write, as `apply` would
    /// correct them one after another. Property names are distinct across the batch. When it
    /// throws, the reconciler corrects each resource on its own (`apply`), so that one bad value
    /// fails only its own resource. Returns the properties it found already holding their desired
    /// values when it read the file again under its lock, and so left alone: a resource whose
    /// changes are all among them was not changed, and gets no record of a fix.
    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws -> Set<String>
}

/// One step of a pass: a remediation on its own, or the `applied` remediations of one target
/// that a `CoalescingDriver` corrects in one write (in plan order, at the place of the first).
struct PassStep: Sendable {
    var remediations: [PlannedRemediation]
    var coalesced: Bool { remediations.count > 1 }
}

extension Reconciler {
    /// The plan's remediations as steps, in plan order (riskiest first): applied remediations of
    /// one target, one coalescing kind and one key join the step of the first of them, as long
    /// as their property names do not overlap.
    func steps(_ plan: Plan, state: DesiredState) -> [PassStep] {
        var steps: [PassStep] = []
        var open: [String: Int] = [:]
        for remediation in inJudgedOrder(plan.remediations, state: state) {
            if remediation.leftovers.isEmpty, let group = coalescingGroup(remediation, in: state) {
                if let index = open[group] {
                    let taken = Set(steps[index].remediations.flatMap { $0.changes.map(\.property) })
                    if taken.isDisjoint(with: remediation.changes.map(\.property)) {
                        steps[index].remediations.append(remediation)
                        continue
                    }
                }
                open[group] = steps.count
            }
            steps.append(PassStep(remediations: [remediation]))
        }
        return steps.compacted()
    }

    /// The remediations in the order a pass makes them: plan order, except that the `applied`
    /// ones judged together in one guard domain (`JointlyGuardedDriver`: who can log in to a
    /// host) are made in the order they were judged, by stage and then plan order (the accounts
    /// before sshd), in the places they hold. Each is judged again at its write against what the
    /// ones before it made: made sshd first (plan order ties by kind name), an sshd change
    /// judged with an approved account lock was refused, the lock not yet made.
    func inJudgedOrder(_ remediations: [PlannedRemediation], state: DesiredState) -> [PlannedRemediation] {
        var domains: [String: GuardDomain?] = [:]
        var groups: [String: [Int]] = [:]
        var stages: [Int: Int] = [:]
        for (index, remediation) in remediations.enumerated() where remediation.decision == .applied {
            let binding = remediation.binding
            guard registry.kinds[binding.resource.kind]?.driver is any JointlyGuardedDriver else { continue }
            let asked = binding.resource.kind + "\u{0}" + binding.target
            let domain = domains[asked] ?? guardDomain(remediation, in: state)
            domains[asked] = .some(domain)
            guard let domain else { continue }
            groups[[domain.scope ?? binding.target, domain.name].joined(separator: "\u{2}"), default: []].append(index)
            stages[index] = domain.stage
        }
        var ordered = remediations
        for places in groups.values where places.count > 1 {
            let judged = places.sorted { (stages[$0, default: 0], $0) < (stages[$1, default: 0], $1) }
            for (place, index) in zip(places, judged) { ordered[place] = remediations[index] }
        }
        return ordered
    }

    /// The file one pass writes `remediation`'s changes into together with others (its target,
    /// kind and coalescing key), when it is `applied` and its kind coalesces; nil otherwise.
    func coalescingGroup(_ remediation: PlannedRemediation, in state: DesiredState) -> String? {
        let binding = remediation.binding
        guard remediation.decision == .applied, let driver = registry.kinds[binding.resource.kind]?.driver as? any CoalescingDriver,
              let resource = state.resources[binding.resource], let target = state.targets[binding.target],
              let key = driver.coalescingKey(resource, on: target) else { return nil }
        return [binding.target, binding.resource.kind, key].joined(separator: "\u{1}")
    }
}

/// A request to stop a pass (an operator's Ctrl-C): no fix is started after it, the fixes in
/// flight finish and are recorded, and the pass ends as halted, its records made durable.
public final class PassStop: Sendable {
    private let requested = Atomic(false)

    public init() {}

    /// Asks the pass to stop; true the first time.
    @discardableResult
    public func request() -> Bool {
        !requested.exchange(true, ordering: .sequentiallyConsistent)
    }

    public var isRequested: Bool { requested.load(ordering: .sequentiallyConsistent) }

    /// Why the pass stopped, as its outcome says it.
    public static let reason = "interrupted: the fixes in flight were finished and recorded, no other was started"
}

/// What a pass did so far, shared by the targets worked on in parallel.
actor PassLedger {
    /// Whether the sink holds records in memory until a flush.
    let buffered: Bool
    /// An operator's request to stop: the pass halts at its next step.
    let stop: PassStop?
    private var entries: [(position: Int, order: Int, entry: CycleEntry)] = []
    private var auditFailures: [String] = []
    private var halted: String?
    private var notAttempted = 0
    private var inSync: [(position: Int, order: Int, remediation: PlannedRemediation)] = []
    private var busy: [(position: Int, order: Int, remediation: PlannedRemediation, reason: String)] = []
    /// Entries (by index in `entries`) written to the buffering sink and not flushed yet, with
    /// the intents to close once they are durable.
    private var unflushed: [(index: Int, intent: String?)] = []

    /// `expected`: how many entries the pass will likely add (its remediations), reserved at
    /// once: grown by doubling, the entries (about 600 bytes each) held up to 4,096 places for a
    /// 100-root pass's 2,400, 2.4 MiB at its peak.
    init(buffered: Bool, expected: Int = 0, stop: PassStop? = nil) {
        self.buffered = buffered
        self.stop = stop
        entries.reserveCapacity(expected)
    }

    var isHalted: Bool {
        if halted == nil, stop?.isRequested == true { halted = PassStop.reason }
        return halted != nil
    }

    /// Adds an entry; with `buffered`, remembers it until the next flush. Returns how many wait.
    @discardableResult
    func add(_ entry: CycleEntry, at position: Int, intent: String?) -> Int {
        entries.append((position, entries.count, entry))
        if buffered, entry.commit != nil { unflushed.append((entries.count - 1, intent)) }
        return unflushed.count
    }

    func skipped(_ count: Int) { notAttempted += count }

    /// A fix its driver found already made: nothing changed, nothing recorded.
    func foundInSync(_ remediation: PlannedRemediation, at position: Int) {
        inSync.append((position, inSync.count, remediation))
    }

    /// A fix not tried because another process holds the target: nothing changed, nothing recorded.
    func foundBusy(_ remediation: PlannedRemediation, reason: String, at position: Int) {
        busy.append((position, busy.count, remediation, reason))
    }

    func halt(_ reason: String, skipped count: Int) {
        if halted == nil { halted = reason }
        notAttempted += count
    }

    /// A record that was not committed; `halt` (when given) stops later fixes.
    func auditFailed(_ message: String, halt reason: String?) {
        auditFailures.append(message)
        if let reason, halted == nil { halted = reason }
    }

    /// The entries about to be flushed, with their intents; the caller closes those once the
    /// flush succeeded, or hands the batch back to `notDurable`.
    func takeFlushable() -> [(index: Int, intent: String?)] {
        let taken = unflushed
        unflushed = []
        return taken
    }

    /// A flush failed: the records of `batch` and of everything still waiting are not on the
    /// branch (a sink whose flush failed keeps failing), their fixes stay open intents, and
    /// the pass stops.
    /// Returns every entry that lost its commit.
    @discardableResult
    func notDurable(_ error: any Error, batch: [(index: Int, intent: String?)]) -> [(index: Int, intent: String?)] {
        let lost = batch + unflushed
        unflushed = []
        for (index, _) in lost {
            let record = entries[index].entry.record
            entries[index].entry.commit = nil
            auditFailures.append("\(record.resource) on \(record.target): \(error)")
        }
        if halted == nil {
            halted = "the audit branch cannot be written (\(error)); the records not yet written stay in the intent journal "
                + "and are committed on the next start; no further fix is made"
        }
        return lost
    }

    /// The entries of `batch` (from `takeFlushable` or `notDurable`), as they are now.
    func entries(_ batch: [(index: Int, intent: String?)]) -> [CycleEntry] {
        batch.map { entries[$0.index].entry }
    }

    /// The outcome, entries in plan order. Called once, at the pass's end: the entries move out
    /// of the ledger (sorted by index, not copied twice as sorted tuples and then mapped).
    func outcome() -> CycleOutcome {
        var outcome = CycleOutcome()
        // `order` is an entry's index in `entries`: this is a stable sort by position.
        let sorted = entries.indices.sorted { (entries[$0].position, $0) < (entries[$1].position, $1) }
        outcome.entries = sorted.map { entries[$0].entry }
        entries = []
        outcome.auditFailures = auditFailures
        outcome.halted = halted
        outcome.notAttempted = notAttempted
        outcome.inSync = inSync.sorted { ($0.position, $0.order) < ($1.position, $1.order) }.map(\.remediation)
        outcome.busy = busy.sorted { ($0.position, $0.order) < ($1.position, $1.order) }.map { ($0.remediation, $0.reason) }
        return outcome
    }
}

extension Array {
    /// The same elements in a buffer of their count, when the array's has much more room: an
    /// array grown by appending doubles its buffer, so one of 2,400 plan entries held 4,096
    /// places (1 MiB at a 100-root pass's peak, a quarter of it unused room per copy).
    func compacted() -> [Element] {
        capacity > count + count / 8 ? withUnsafeBufferPointer { Array($0) } : self
    }
}
