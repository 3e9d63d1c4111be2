public import struct Foundation.Date

/// Where audit records go: in practice the audit branch of the policy repository.
public protocol AuditSink: Sendable {
    /// Whether a record with this id was committed before (decisions other than `applied`
    /// carry stable ids and are recorded once).
    func contains(recordID: String) async throws -> Bool
    /// Commits the record; returns the commit id.
    func write(_ record: AuditRecord) async throws -> String
    /// From now on `write` may keep records in memory until `flush` makes them durable (one
    /// pack and one reference update for many records). Returns whether it does; a sink that
    /// returns false makes every record durable in `write`, as by default.
    func beginBuffering() async -> Bool
    /// Makes every record written so far durable; buffering goes on. Throws when they could not
    /// be made durable: then they are not recorded.
    func flush() async throws
    /// `flush`, and stop buffering.
    func endBuffering() async throws
    /// Throws when `records` more records could not be written (a sink that numbers its records
    /// has no number left for them): called before a pass changes anything, since a fix whose
    /// record cannot be written must not be made.
    func prepareToWrite(records: Int) async throws
    /// A verified record of the change `intent` announced that **another** Bulwark wrote after
    /// the intent's drift was detected (its id and the instance that wrote it), nil when there is
    /// none. Recovery asks it before recording an interrupted fix found made: two Bulwarks with
    /// their own state directories on one host both fix a drift, and the one killed between its
    /// `tried` line and its change must not claim, in a second verified record, the change the
    /// other one made and recorded.
    func verifiedElsewhere(_ intent: AuditRecord) async throws -> (id: String, instance: String)?
}

extension AuditSink {
    public func beginBuffering() async -> Bool { false }
    public func flush() async throws {}
    public func endBuffering() async throws {}
    public func prepareToWrite(records: Int) async throws {}
    public func verifiedElsewhere(_ intent: AuditRecord) async throws -> (id: String, instance: String)? { nil }
}

extension AuditRecord {
    /// The start of the error of a recovery's `interrupted` record found as desired whose fix
    /// owes something besides its values (a reload): the system is not yet as desired.
    public static let incompleteAfterRestart = "found as desired after a restart, but the fix did not complete"
    /// The error of a recovery's `interrupted` record found as desired whose fix was never tried.
    public static let untriedAfterRestart = "found as desired after a restart, but this fix was never tried by the process that stopped"
}

/// What a pass observed: values per binding, failures per binding, and anything that makes the
/// revision unsafe to act on at all.
public struct ObservationSet: Sendable {
    public var observations: [Binding: Observation] = [:]
    public var failures: [ObservationFailure] = []
    public var unsafe: [ManifestError] = []
}

/// One remediation carried out (or recorded) in a pass.
public struct CycleEntry: Sendable {
    public var remediation: PlannedRemediation
    public var record: AuditRecord
    /// The audit commit, or nil when the decision had been recorded before.
    public var commit: String?
    public var alreadyRecorded: Bool
}

public struct CycleOutcome: Sendable {
    public var entries: [CycleEntry] = []
    /// Records that could not be committed.
    public var auditFailures: [String] = []
    /// Why the pass stopped changing systems (the intent journal or the audit branch could not be
    /// written): every later fix of the plan was left undone, without a record, for the next pass.
    public var halted: String?
    /// Fixes the plan wanted that were left undone because the pass halted.
    public var notAttempted: Int = 0
    /// Fixes found already made when their driver read the resource again under the target's
    /// lock (another writer corrected it after the plan observed the drift): nothing was changed
    /// and nothing is recorded for them, in plan order.
    public var inSync: [PlannedRemediation] = []
    /// Fixes not attempted because another process (another Bulwark) was changing the target,
    /// with the message that names it: nothing was changed and nothing is recorded; the drift
    /// stays for the next pass. In plan order.
    public var busy: [(remediation: PlannedRemediation, reason: String)] = []

    public var failed: [CycleEntry] { entries.filter { $0.record.result == .failed } }
    public var verified: [CycleEntry] { entries.filter { $0.record.result == .verified } }
}

/// Runs a cycle's steps through the drivers the registry provides: observe, plan (pure),
/// apply, verify by observing again, and record.
public struct Reconciler: Sendable {
    public let registry: Registry
    public let clock: @Sendable () -> Date
    /// How many resources are observed at once.
    public var concurrency: Int

    public init(registry: Registry, concurrency: Int = 8, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.registry = registry
        self.clock = clock
        self.concurrency = max(1, concurrency)
    }

    /// Observes every binding. Never throws: failures are per binding.
    public func observe(_ state: DesiredState) async -> ObservationSet {
        await PolicyScope.$current.withValue(state) { await observeInScope(state) }
    }

    private func observeInScope(_ state: DesiredState) async -> ObservationSet {
        var result = ObservationSet()
        // Targets that manage one thing (`ExclusiveClaim`) are never reconciled by one process:
        // the loader lets targets labelled for different hosts share a claim, for each host's
        // agent to reconcile its own, but one `apply` given all of them would act on one ruleset
        // through each, and a change one target's guard blocked would go through another. Nor
        // targets whose claims differ by name but are one thing here (two namespace names bound
        // to one namespace), which the loader cannot see.
        let clashing = Self.sharedClaims(state)
        if !clashing.isEmpty {
            result.failures = state.bindings.compactMap { binding in
                clashing[binding.target].map { ObservationFailure(binding: binding, message: $0) }
            }
            var rest = state
            rest.bindings.removeAll { clashing[$0.target] != nil }
            let others = await observeInScope(rest)
            result.observations = others.observations
            result.unsafe = others.unsafe
            result.failures += others.failures
            return result
        }
        await withTaskGroup(of: (Binding, Swift.Result<Observation, any Error>).self) { group in
            var turns = TargetTurns(state.bindings)
            func startNext() {
                guard let binding = turns.next() else { return }
                group.addTask { (binding, await self.observe(binding, in: state)) }
            }
            for _ in 0..<concurrency { startNext() }
            while let (binding, outcome) = await group.next() {
                turns.finished(binding)
                switch outcome {
                case .success(let observation):
                    result.observations[binding] = observation
                case .failure(let error as UnsafeDesiredState):
                    let location = state.resources[binding.resource]?.location ?? SourceLocation(file: "?", line: 0)
                    result.unsafe.append(ManifestError("on target \(binding.target): \(error.message)", at: location,
                                                       resource: binding.resource.description))
                case .failure(let error):
                    result.failures.append(ObservationFailure(binding: binding, message: "\(error)"))
                }
                startNext()
            }
        }
        return result
    }

    /// The targets of the pass's bindings that claim what another of them claims, each with
    /// why it is not reconciled. Claims are compared as they stand on this machine now
    /// (`Target.resolvedExclusiveClaim`): two namespace names bound to one namespace are one
    /// ruleset, though the loader, which compares names, let them through.
    static func sharedClaims(_ state: DesiredState) -> [String: String] {
        var byClaim: [String: [String]] = [:]
        var what: [String: [String]] = [:]
        var identity: [String: String] = [:]
        for name in Set(state.bindings.map(\.target)).sorted() {
            guard let (key, claim, resolved) = state.targets[name]?.resolvedExclusiveClaim() else { continue }
            byClaim[key, default: []].append(name)
            if !what[key, default: []].contains(claim.what) { what[key, default: []].append(claim.what) }
            identity[key] = resolved
        }
        var clashing: [String: String] = [:]
        for (key, names) in byClaim where names.count > 1 {
            let named = what[key] ?? []
            // Claims named alike say what they share; named differently, that the names are one.
            let shared = named.count == 1 ? named[0]
                : "one thing: \(named.joined(separator: " and ")) are \(identity[key] ?? key)"
            for name in names {
                clashing[name] = "not reconciled: targets \(names.joined(separator: ", ")) of this pass all manage \(shared); "
                    + "targets labelled for different hosts are reconciled each by its own host's agent (bulwark run --self), "
                    + "never together by one process"
            }
        }
        return clashing
    }

    private func observe(_ binding: Binding, in state: DesiredState) async -> Swift.Result<Observation, any Error> {
        guard let resource = state.resources[binding.resource], let target = state.targets[binding.target],
              let kind = registry.kinds[binding.resource.kind] else {
            return .failure(UnsafeDesiredState("binding \(binding) refers to nothing"))
        }
        do {
            var observation = try await kind.driver.observe(resource, on: target)
            observation.observedAt = clock()
            return .success(observation)
        } catch {
            return .failure(error)
        }
    }

    /// Observes, asks each drifted binding's safety guards, and plans; a revision that turns out
    /// unsafe on a target is refused whole.
    public func plan(
        _ state: DesiredState, history: FixHistory = .init(), weakened: [ResourceID: Weakening] = [:],
        urgent: [Binding: Priority] = [:], usedApproval: (@Sendable (String) async -> Bool)? = nil
    ) async throws(ValidationFailure) -> Plan {
        try await plan(state, history: { history }, weakened: weakened, urgent: urgent, usedApproval: usedApproval)
    }

    /// As `plan(_:history:weakened:urgent:)`, with the fix history that `history` reads while the
    /// targets are observed: only the planner needs it, after them. (The index of a pass's 2,400
    /// fixes took a plan 5 % of its time before any target was read.)
    ///
    /// `usedApproval`: whether a fix already used the approval of an id (the audit branch
    /// says), asked of the ids the plan holds, blocks or escalates drift under that are not in
    /// `state.consumedApprovals` already: such drift came back after its approved fix, and is
    /// planned again under the next id of its episode (`Planner.episode`), even where the
    /// approval's file was removed since.
    public func plan(
        _ state: DesiredState, history: @escaping @Sendable () async -> FixHistory, weakened: [ResourceID: Weakening] = [:],
        urgent: [Binding: Priority] = [:], usedApproval: (@Sendable (String) async -> Bool)? = nil
    ) async throws(ValidationFailure) -> Plan {
        // What each target's exclusive claim is on this machine as the plan begins (a network
        // namespace's device and inode): a fix checks it right before it writes (`PlannedTargets`).
        let identities = Self.targetIdentities(state)
        // Its own observation scope: what it read of a file changed a moment ago is reused
        // by this plan alone (`ObservationScope`).
        let planned: Swift.Result<Plan, ValidationFailure> = await ObservationScope.$current.withValue(ObservationScope()) {
            do throws(ValidationFailure) {
                return .success(try await planInScope(state, history: history, weakened: weakened, urgent: urgent,
                                                      usedApproval: usedApproval))
            } catch {
                return .failure(error)
            }
        }
        var plan = try planned.get()
        plan.targetIdentities = identities
        return plan
    }

    /// The identity of each bound target's exclusive claim as this machine has it now
    /// (`Target.resolvedExclusiveClaim`), by target name; targets without one are left out.
    static func targetIdentities(_ state: DesiredState) -> [String: String] {
        targetIdentities(of: Set(state.bindings.map(\.target)).compactMap { state.targets[$0] })
    }

    /// `targetIdentities` of these targets (`revert`'s one target, read before it observes).
    public static func targetIdentities(of targets: [Target]) -> [String: String] {
        var result: [String: String] = [:]
        for target in targets {
            if let identity = target.resolvedExclusiveClaim()?.identity { result[target.name] = identity }
        }
        return result
    }

    private func planInScope(
        _ state: DesiredState, history read: @escaping @Sendable () async -> FixHistory, weakened: [ResourceID: Weakening],
        urgent: [Binding: Priority], usedApproval: (@Sendable (String) async -> Bool)?
    ) async throws(ValidationFailure) -> Plan {
        var state = state
        async let reading = read()
        let observed = await observe(state)
        let history = await reading
        guard observed.unsafe.isEmpty else { throw ValidationFailure(errors: observed.unsafe) }
        let now = clock()
        // The guards judge exactly the changes a remediation would make (waived properties left
        // out), so plan once without them, then again with their verdicts: the plan stays pure.
        let leftovers = await leftovers(in: state)
        let unguarded = Planner.plan(state, observations: observed.observations, failures: observed.failures,
                                     history: history, weakened: weakened, leftovers: leftovers, urgent: urgent, now: now)
        func judged(_ plan: Plan) async -> [Binding: GuardBlock] {
            await assess(plan.remediations.filter { $0.decision != .waived && $0.leftovers.isEmpty }, in: state)
        }
        // A guard that could not run for want of the machine's resources judged nothing: its
        // resource counts as not observed this pass (the pass fails), never as blocked, which
        // would offer a person an approval of a change no guard looked at.
        var observations = observed.observations, failures = observed.failures
        func judgedOnly(_ verdicts: [Binding: GuardBlock]) -> [Binding: GuardBlock] {
            for (binding, block) in verdicts.sorted(by: { $0.key < $1.key }) where block.unjudged {
                observations[binding] = nil
                failures.append(ObservationFailure(binding: binding, message: block.reason))
            }
            return verdicts.filter { !$0.value.unjudged }
        }
        var guards = judgedOnly(await judged(unguarded))
        func replan() -> Plan {
            Planner.plan(state, observations: observations, failures: failures, history: history,
                         guards: guards, weakened: weakened, leftovers: leftovers, urgent: urgent, now: now)
        }
        var guarded = guards.isEmpty && failures.count == observed.failures.count ? unguarded : replan()
        // A block frees a place under a change limit, and a drift that came back after its
        // approved fix is held anew, or applied under its new id's approval: a remediation newly
        // applied in a later plan was judged without the changes now made beside it (or they
        // without it). Judged again until no remediation newly applied remains; a block is never
        // lifted and an approval once used stays used, so this ends.
        var applied = Set(unguarded.remediations.filter { $0.decision == .applied }.map(\.binding))
        for _ in 0..<8 {
            let consumed = state.consumedApprovals.count
            if let usedApproval {
                for remediation in guarded.remediations {
                    switch remediation.decision {
                    case .held, .blocked, .escalated:
                        // The whole line at once: each approved recurrence is one step of it.
                        guard var id = remediation.id else { continue }
                        var steps = 0
                        while state.approvals[id] == nil, !state.consumedApprovals.contains(id), steps < Planner.episodeSteps,
                              await usedApproval(id) {
                            state.consumedApprovals.insert(id)
                            id = Planner.nextEpisode(id)
                            steps += 1
                        }
                    case .applied, .pruned:
                        // An approval a fix used since the revision was loaded (the daemon loads
                        // approvals when the policy changes): it does not let the drift back through.
                        guard let id = remediation.approvalID, !state.consumedApprovals.contains(id), await usedApproval(id) else { continue }
                        state.approvals[id] = nil
                        state.consumedApprovals.insert(id)
                    default:
                        continue
                    }
                }
                if state.consumedApprovals.count > consumed { guarded = replan() }
            }
            let newly = Set(guarded.remediations.filter { $0.decision == .applied }.map(\.binding))
            guard !newly.isSubset(of: applied) else {
                if state.consumedApprovals.count > consumed { continue }
                break
            }
            applied.formUnion(newly)
            let found = failures.count
            let again = judgedOnly(await judged(guarded).filter { guards[$0.key] == nil })
            guard !again.isEmpty || failures.count > found else {
                if state.consumedApprovals.count > consumed { continue }
                break
            }
            guards.merge(again) { first, _ in first }
            guarded = replan()
        }
        guarded.resolved = Self.resolutions(guarded, in: state, at: now)
        return guarded
    }

    /// The resolutions `plan` found (`Plan.resolved`): a resource found in sync whose drift the
    /// audit branch has open (`DriftEpisodes.open`), once per target and resource. A resource
    /// with a desired property not observed at all (`Plan.partlyObserved`: its file or key
    /// gone) is left open: nothing says the drift is over.
    static func resolutions(_ plan: Plan, in state: DesiredState, at now: Date) -> [PlannedRemediation] {
        var seen = Set<DriftEpisodes.Key>()
        return plan.inSync.compactMap { binding in
            guard !plan.partlyObserved.contains(binding) else { return nil }
            let open = state.episodes.open(binding)
            guard let last = open.last, let resource = state.resources[binding.resource],
                  seen.insert(.init(target: binding.target, resource: binding.resource.description)).inserted else { return nil }
            let exposure = state.targets[binding.target]?.exposureWeight ?? 1
            let shown = open.count == 1 ? "the drift recorded as \(last)" : "the drift recorded as \(open.joined(separator: ", "))"
            return PlannedRemediation(
                binding: binding, severity: resource.severity, risk: resource.severity.weight * exposure,
                mode: state.controllers[binding.controller]?.mode ?? .enforce, changes: [], decision: .resolved,
                reason: "found as desired without a fix of Bulwark's: \(shown) is over (fixed by someone else, "
                    + "or changed back)",
                detectedAt: now, id: DriftEpisodes.resolutionID(after: last))
        }
    }

    /// What pruning drivers created for resources no longer bound to a target, per controller
    /// binding of their kind. A driver that cannot tell is skipped (nothing is pruned unseen).
    func leftovers(in state: DesiredState) async -> [Binding: [Leftover]] {
        var result: [Binding: [Leftover]] = [:]
        for controller in state.controllers.values.sorted(by: { $0.name < $1.name }) {
            for kindName in controller.kinds {
                guard let kind = registry.kinds[kindName], let driver = kind.driver as? any PruningDriver else { continue }
                // Only targets this pass acts on, and what the whole revision wants kept there:
                // a pass narrowed to a file, a finding or an owner's targets prunes nothing wanted.
                for target in state.targets.values.sorted(by: { $0.name < $1.name })
                where target.adapter == kind.adapter && controller.targets.matches(target) && state.inScope(target.name) {
                    let current = state.wantedBindings.filter { $0.target == target.name && $0.resource.kind == kindName }
                        .compactMap { state.resources[$0.resource] }
                    guard let found = try? await driver.leftovers(on: target, keeping: current) else { continue }
                    // A driver may serve several kinds: each kind answers only for its own.
                    for leftover in found where leftover.owner.kind == kindName {
                        result[Binding(controller: controller.name, target: target.name, resource: leftover.owner), default: []]
                            .append(leftover)
                    }
                }
            }
        }
        return result
    }

    /// The safety guards' verdicts on each remediation's changes: the reasons of those blocked.
    ///
    /// Remediations that one pass writes into one file (the `applied` ones of a
    /// `CoalescingDriver`'s kind and key on one target) are judged together, in plan order: each
    /// with the changes allowed before it, since that is the file written. Two changes that are
    /// each harmless can lock everyone out together (`PasswordAuthentication no` and
    /// `PubkeyAuthentication no`); the second is then blocked.
    ///
    /// Likewise, the remediations of one target whose kinds' guards answer one question about it
    /// (`JointlyGuardedDriver`: who can still log in) are judged together, by stage and then in
    /// plan order, each shown the `applied` changes of other files allowed before it: two
    /// administrators locked by two resources, or an administrator's account and sshd's password
    /// logins. Every other remediation is judged alone, against the target as it is.
    func assess(_ remediations: [PlannedRemediation], in state: DesiredState) async -> [Binding: GuardBlock] {
        var groups: [[(remediation: PlannedRemediation, file: String?, stage: Int)]] = []
        var open: [String: Int] = [:]
        // Asked once per kind and target (a host's domain looks its root up on disk).
        var domains: [String: GuardDomain?] = [:]
        for remediation in remediations {
            let file = coalescingGroup(remediation, in: state)
            let asked = remediation.binding.resource.kind + "\u{0}" + remediation.binding.target
            let domain = domains[asked] ?? guardDomain(remediation, in: state)
            domains[asked] = .some(domain)
            guard let group = domain.map({ [$0.scope ?? remediation.binding.target, $0.name].joined(separator: "\u{2}") }) ?? file else {
                groups.append([(remediation, nil, 0)])
                continue
            }
            if let index = open[group] {
                groups[index].append((remediation, file, domain?.stage ?? 0))
            } else {
                open[group] = groups.count
                groups.append([(remediation, file, domain?.stage ?? 0)])
            }
        }
        return await withTaskGroup(of: [(Binding, GuardBlock?)].self) { group in
            var pending = groups[...]
            func startNext() {
                guard let members = pending.popFirst() else { return }
                group.addTask {
                    var verdicts: [(Binding, GuardBlock?)] = []
                    var allowed = AllowedSoFar()
                    // By stage; within one, in plan order (the sort is stable).
                    for (remediation, file, _) in members.enumerated().sorted(by: { ($0.element.stage, $0.offset) < ($1.element.stage, $1.offset) }).map(\.element) {
                        let binding = remediation.binding
                        guard let resource = state.resources[binding.resource], let target = state.targets[binding.target],
                              let kind = self.registry.kinds[binding.resource.kind] else {
                            verdicts.append((binding, nil))
                            continue
                        }
                        // The same file: its earlier allowed changes are part of the candidate judged.
                        let taken = Set(remediation.changes.map(\.property))
                        let before = allowed.inFile(file).flatMap(\.changes).filter { !taken.contains($0.property) }
                        let joint = kind.driver as? any JointlyGuardedDriver
                        let part = joint?.part(resource, on: target)
                        let alongside = allowed.bearing(on: part, outside: file)
                        let verdict: GuardVerdict
                        if let joint {
                            verdict = await joint.assess(before + remediation.changes, to: resource, on: target, alongside: alongside)
                        } else {
                            verdict = await kind.driver.assess(before + remediation.changes, to: resource, on: target)
                        }
                        // What this pass will write counts for the ones judged after it: an allowed
                        // change, or a block a person approved (it is made all the same).
                        if remediation.decision == .applied, !verdict.isUnjudged, verdict.blockReason.map({
                            Planner.blockApproval(binding, remediation.changes, GuardBlock($0), in: state, at: self.clock()).approval != nil
                        }) ?? true {
                            allowed.append(AllowedChange(resource: resource, changes: remediation.changes), file: file, part: part)
                        }
                        guard let reason = verdict.blockReason else {
                            verdicts.append((binding, nil))
                            continue
                        }
                        var context: [String] = []
                        if !before.isEmpty {
                            context.append("the changes this pass also writes to the same file: "
                                           + before.map(Self.shown).joined(separator: ", "))
                        }
                        if let joint, case let bearing = alongside.filter({ joint.bears($0, on: resource, on: target) }), !bearing.isEmpty {
                            context.append("the changes this pass also makes on this host: "
                                           + bearing.map { "\($0.resource.id) " + $0.changes.map(Self.shown).joined(separator: ", ") }
                                               .joined(separator: "; "))
                        }
                        verdicts.append((binding, GuardBlock(reason, context: context, unjudged: verdict.isUnjudged)))
                    }
                    return verdicts
                }
            }
            for _ in 0..<concurrency { startNext() }
            var blocked: [Binding: GuardBlock] = [:]
            while let verdicts = await group.next() {
                for case let (binding, reason?) in verdicts { blocked[binding] = reason }
                startNext()
            }
            return blocked
        }
    }

    /// The changes a group's judgments allowed so far, in order, found by the file they write
    /// and the part of the target they are about (`JointlyGuardedDriver.part`) without going
    /// through all of them for each judgment.
    struct AllowedSoFar {
        private var changes: [AllowedChange] = []
        private var files: [String?] = []
        private var byFile: [String: [Int]] = [:]
        private var byPart: [String: [Int]] = [:]
        private var unparted: [Int] = []

        mutating func append(_ change: AllowedChange, file: String?, part: String?) {
            let index = changes.count
            changes.append(change)
            files.append(file)
            if let file { byFile[file, default: []].append(index) }
            if let part { byPart[part, default: []].append(index) } else { unparted.append(index) }
        }

        /// The changes allowed to `file`, in order (none when there is no file).
        func inFile(_ file: String?) -> [AllowedChange] {
            file.map { (byFile[$0] ?? []).map { changes[$0] } } ?? []
        }

        /// The changes that bear on a verdict about `part` (every one when nil; else those of the
        /// same part or of none), in order, leaving out those written to `file` itself.
        func bearing(on part: String?, outside file: String?) -> [AllowedChange] {
            let indices: [Int]
            if let part {
                let same = byPart[part] ?? []
                indices = unparted.isEmpty ? same : (same + unparted).sorted()
            } else {
                indices = Array(changes.indices)
            }
            return indices.filter { file == nil || files[$0] != file }.map { changes[$0] }
        }
    }

    /// A change as a block reason shows it: a sensitive value is left out.
    static func shown(_ change: PropertyDrift) -> String {
        change.sensitive ? change.property : "\(change.property) \(change.desired)"
    }

    /// The question about the whole target that `remediation`'s guard answers with others, if any.
    func guardDomain(_ remediation: PlannedRemediation, in state: DesiredState) -> GuardDomain? {
        let binding = remediation.binding
        guard let driver = registry.kinds[binding.resource.kind]?.driver as? any JointlyGuardedDriver,
              let resource = state.resources[binding.resource], let target = state.targets[binding.target] else { return nil }
        return driver.guardDomain(resource, on: target)
    }

    /// Carries out a plan with an in-memory intent journal (tests, and callers without a state
    /// directory); see `apply(_:state:audit:journal:onEntry:)`.
    public func apply(
        _ plan: Plan, state: DesiredState, audit: some AuditSink,
        onEntry: @Sendable (CycleEntry) -> Void = { _ in }
    ) async -> CycleOutcome {
        await apply(plan, state: state, audit: audit, journal: MemoryJournal(), onEntry: onEntry)
    }

    /// Carries out a plan, riskiest first: applies what was decided `applied`, verifies each fix
    /// by observing again, and records every decision (others only once) through `audit`.
    ///
    /// Intent before action: a fix is made only after its intent is durable in `journal`, and the
    /// intent is closed once its record is committed. When the journal or the audit branch cannot
    /// be written, the pass stops changing systems (`halted`): the fix whose record failed stays
    /// an open intent for the next start, and no later fix is made.
    ///
    /// Targets are worked on in parallel (at most `concurrency` at once), each target's steps in
    /// plan order, and targets in the order of their riskiest remediation. The `applied`
    /// remediations of one target that a `CoalescingDriver` corrects in one file are one step:
    /// one write, then each verified and recorded on its own. A target's next steps, up to
    /// `journal.intentsAhead` records, have their intents made durable with one sync. A sink that
    /// buffers (`beginBuffering`) gets its records made durable every `flushEvery` records and at
    /// the end; intents are closed only after that.
    ///
    /// `stop` (an operator's Ctrl-C) halts the pass at its next step: what is in flight
    /// finishes and is recorded, nothing else is started, and the records are made durable.
    public func apply(
        _ plan: Plan, state: DesiredState, audit: some AuditSink, journal: some IntentJournal, stop: PassStop? = nil,
        onEntry: @Sendable (CycleEntry) -> Void = { _ in }
    ) async -> CycleOutcome {
        // Each pass in its own scope: drivers' once-a-pass work (`PassScope`) is shared by its steps.
        await PassScope.$current.withValue(PassScope()) {
            await PolicyScope.$current.withValue(state) {
                await PlannedTargets.$identities.withValue(plan.targetIdentities) {
                    await applyInScope(plan, state: state, audit: audit, journal: journal, stop: stop, onEntry: onEntry)
                }
            }
        }
    }

    private func applyInScope(
        _ plan: Plan, state: DesiredState, audit: some AuditSink, journal: some IntentJournal, stop: PassStop?,
        onEntry: @Sendable (CycleEntry) -> Void
    ) async -> CycleOutcome {
        // What could not be observed is recorded too (once per revision and cause), after the fixes.
        var plan = plan
        let now = clock()
        plan.remediations += plan.failures.map { $0.remediation(state: state, at: now) }
        // Drift found gone without a fix: recorded, so that it is no longer open.
        plan.remediations += plan.resolved
        let passSteps = steps(plan, state: state)
        let ledger = PassLedger(buffered: await audit.beginBuffering(),
                                expected: passSteps.reduce(0) { $0 + $1.remediations.count }, stop: stop)
        // Every record of the pass must be writable before its first fix (a numbered sink with no
        // number left): otherwise nothing is changed, and the decisions that change nothing are
        // still tried (they fail as they write, and say why).
        let changing = passSteps.filter(Self.changes).reduce(0) { $0 + $1.remediations.count }
        if changing > 0 {
            do {
                try await audit.prepareToWrite(records: passSteps.reduce(0) { $0 + $1.remediations.count })
            } catch {
                await ledger.halt("the audit branch cannot be written (\(error)); no fix is made without its record", skipped: 0)
            }
        }
        // One lane per target, in the order of each target's first step.
        var lanes: [[(Int, PassStep)]] = []
        var laneOf: [String: Int] = [:]
        for (position, step) in passSteps.enumerated() {
            let target = step.remediations[0].binding.target
            if let lane = laneOf[target] {
                lanes[lane].append((position, step))
            } else {
                laneOf[target] = lanes.count
                lanes.append([(position, step)])
            }
        }
        await withoutActuallyEscaping(onEntry) { onEntry in
            await withTaskGroup(of: Void.self) { group in
                var pending = lanes[...]
                func startNext() {
                    guard let lane = pending.popFirst() else { return }
                    group.addTask {
                        await self.run(lane: lane, state: state, audit: audit, journal: journal, ledger: ledger,
                                       onEntry: onEntry)
                    }
                }
                for _ in 0..<concurrency { startNext() }
                while await group.next() != nil { startNext() }
            }
        }
        if ledger.buffered {
            await flush(audit: audit, journal: journal, ledger: ledger, last: true, onEntry: onEntry)
        }
        return await ledger.outcome()
    }

    /// How many records a buffering sink may hold before they are flushed.
    public static let flushEvery = 512

    /// One target's steps, in plan order. The intents of the step about to change something and
    /// of the target's next such steps, up to `journal.intentsAhead` records, are made durable
    /// together with one sync before the first of them is carried out; a step's intents are
    /// always durable before its change.
    private func run(
        lane: [(Int, PassStep)], state: DesiredState, audit: some AuditSink, journal: some IntentJournal,
        ledger: PassLedger, onEntry: @Sendable (CycleEntry) -> Void
    ) async {
        let ahead = journal.intentsAhead
        // Records whose intents are durable, by the index in `lane` of their step.
        var begun: [Int: [AuditRecord]] = [:]
        for (index, (position, step)) in lane.enumerated() {
            guard Self.changes(step) else {
                await run(step, at: position, begun: nil, state: state, audit: audit, journal: journal, ledger: ledger,
                          onEntry: onEntry)
                continue
            }
            if begun[index] == nil, await !ledger.isHalted {
                var batch: [(index: Int, records: [AuditRecord])] = []
                var count = 0
                for next in index..<lane.count where Self.changes(lane[next].1) {
                    let members = lane[next].1.remediations
                    if count > 0, count + members.count > ahead { break }
                    // A prune is begun only as the step at hand: its resource has left the desired
                    // state, so recovery cannot observe it and would record it untried.
                    if next != index, members.contains(where: { $0.decision == .pruned }) { break }
                    batch.append((next, members.map { makeRecord($0, state: state) }))
                    count += members.count
                }
                do {
                    try await journal.begin(batch.flatMap(\.records))
                    for (next, records) in batch { begun[next] = records }
                } catch {
                    await ledger.halt("the intent journal cannot be written (\(error)); no fix is made without its record",
                                      skipped: step.remediations.count)
                    continue
                }
            }
            await run(step, at: position, begun: begun.removeValue(forKey: index), state: state, audit: audit,
                      journal: journal, ledger: ledger, onEntry: onEntry)
        }
    }

    /// Whether a step changes a system (and so needs its intents durable first).
    private static func changes(_ step: PassStep) -> Bool {
        step.remediations.contains { $0.decision == .applied || $0.decision == .pruned }
    }

    /// One step: a single remediation as before, or a coalesced group of applied ones. `begun`
    /// holds the records of a changing step, their intents durable; nil for a step that changes
    /// nothing, or one not begun because the pass halted.
    private func run(
        _ step: PassStep, at position: Int, begun: [AuditRecord]?, state: DesiredState, audit: some AuditSink,
        journal: some IntentJournal, ledger: PassLedger, onEntry: @Sendable (CycleEntry) -> Void
    ) async {
        let members = step.remediations
        guard Self.changes(step) else {
            // Decisions that change nothing: recorded once.
            for remediation in members {
                let record = makeRecord(remediation, state: state)
                var entry = CycleEntry(remediation: remediation, record: record, commit: nil, alreadyRecorded: false)
                do {
                    if try await audit.contains(recordID: record.id) {
                        entry.alreadyRecorded = true
                        await ledger.add(entry, at: position, intent: nil)
                        onEntry(entry)
                        continue
                    }
                } catch {
                    await ledger.auditFailed("\(record.resource) on \(record.target): \(error)", halt: nil)
                }
                await write(entry, at: position, intent: nil, audit: audit, journal: journal, ledger: ledger, onEntry: onEntry)
            }
            return
        }
        guard var records = begun, await !ledger.isHalted else {
            // Begun ahead of a halt: never carried out, so nothing is left open.
            for record in begun ?? [] { try? await journal.end(record.id) }
            await ledger.skipped(members.count)
            return
        }
        let intents = records.map(\.id)
        // Marked tried right before the change: a kill before the line leaves intents that
        // recovery closes without a record when it finds nothing changed. A driver that
        // announces its changes writes the line itself, through the gate, right before its first
        // change (after its checks: `sshd -t` takes a while); for any other, it is written now.
        let gate: ChangeGate?
        if members.allSatisfy({ $0.decision != .pruned && registry.kinds[$0.binding.resource.kind]?.driver.announcesChanges == true }) {
            gate = ChangeGate { [journal] in try await journal.trying(intents) }
        } else {
            gate = nil
            do {
                try await journal.trying(intents)
            } catch {
                for id in intents { try? await journal.end(id) }
                await ledger.halt("the intent journal cannot be written (\(error)); no fix is made without its record",
                                  skipped: members.count)
                return
            }
        }
        // Members the driver found already corrected, under the lock, before writing anything;
        // members not tried because another process holds the target.
        var inSync: Set<Int> = []
        var busy: [Int: String] = [:]
        await ChangeGate.$current.withValue(gate) {
            if step.coalesced, let carried = await carryOut(batch: members, state: state, into: &records) {
                // Written together; each verified on its own.
                inSync = carried.inSync
                if let reason = carried.busy { for index in members.indices { busy[index] = reason } }
            } else {
                for index in members.indices {
                    // The gate did not let the first change through: no other is tried.
                    if gate?.failure != nil { break }
                    if members[index].decision == .pruned {
                        await prune(members[index], state: state, into: &records[index])
                        continue
                    }
                    switch await carryOut(members[index], state: state, into: &records[index]) {
                    case .done: break
                    case .inSync: inSync.insert(index)
                    case .busy(let reason): busy[index] = reason
                    }
                }
            }
        }
        if let failure = gate?.failure {
            // The gate stops a driver before its first change, and was never passed: nothing was
            // changed, so nothing is recorded (as when the step could not be marked tried).
            for id in intents { try? await journal.end(id) }
            await ledger.halt("the intent journal cannot be written (\(failure)); no fix is made without its record",
                              skipped: members.count)
            return
        }
        for index in members.indices {
            // No change was made: no record of one. The intent is closed, there is nothing to commit.
            if inSync.contains(index) {
                try? await journal.end(intents[index])
                await ledger.foundInSync(members[index], at: position)
                continue
            }
            if let reason = busy[index] {
                try? await journal.end(intents[index])
                await ledger.foundBusy(members[index], reason: reason, at: position)
                continue
            }
            var record = records[index]
            // A failure is recorded once per distinct failure: the same drift failing the same
            // way at the same revision gets the same id, and is not written again.
            // A fix another writer undid before its verification was a change made: it keeps its
            // own record, and is made again by the next pass.
            if record.result == .failed, !record.overwrittenAfterFix {
                record.id = state.episodes.failureSalted(failureID(record), target: record.target, resource: record.resource)
                if (try? await audit.contains(recordID: record.id)) == true {
                    try? await journal.end(intents[index])
                    let entry = CycleEntry(remediation: members[index], record: record, commit: nil, alreadyRecorded: true)
                    await ledger.add(entry, at: position, intent: nil)
                    onEntry(entry)
                    continue
                }
            }
            let entry = CycleEntry(remediation: members[index], record: record, commit: nil, alreadyRecorded: false)
            await write(entry, at: position, intent: intents[index], audit: audit, journal: journal, ledger: ledger,
                        onEntry: onEntry)
        }
    }

    /// Commits one entry's record; closes its intent once the record is durable (at once, or
    /// with the flush that makes it so).
    private func write(
        _ entry: CycleEntry, at position: Int, intent: String?, audit: some AuditSink, journal: some IntentJournal,
        ledger: PassLedger, onEntry: @Sendable (CycleEntry) -> Void
    ) async {
        var entry = entry
        let record = entry.record
        do {
            entry.commit = try await audit.write(record)
        } catch {
            let halt = intent == nil
                ? "the audit branch cannot be written (\(error)); no further fix is made"
                : "the audit branch cannot be written (\(error)); the record of \(record.resource) on "
                    + "\(record.target) stays in the intent journal and is committed on the next start; no further fix is made"
            await ledger.auditFailed("\(record.resource) on \(record.target): \(error)", halt: halt)
            await ledger.add(entry, at: position, intent: nil)
            onEntry(entry)
            return
        }
        if ledger.buffered {
            // Told (`onEntry`) with the flush that makes its commit durable: until then the commit
            // is in memory only, and a process killed before the flush leaves an id that never
            // existed (its fix is recorded again, under another id, by the next start).
            if await ledger.add(entry, at: position, intent: intent) >= Self.flushEvery {
                await flush(audit: audit, journal: journal, ledger: ledger, onEntry: onEntry)
            }
            return
        }
        if let intent { try? await journal.end(intent) }
        await ledger.add(entry, at: position, intent: nil)
        onEntry(entry)
    }

    /// Makes the buffered records durable (`last`: and ends buffering), closes their intents and
    /// tells `onEntry` of each, with its commit; when that fails, the pass halts and those
    /// records, and every other one not yet durable, count as not committed (their fixes stay
    /// open intents) and are told without a commit.
    private func flush(audit: some AuditSink, journal: some IntentJournal, ledger: PassLedger, last: Bool = false,
                       onEntry: @Sendable (CycleEntry) -> Void) async {
        let batch = await ledger.takeFlushable()
        let told: [(index: Int, intent: String?)]
        do {
            if last { try await audit.endBuffering() } else { try await audit.flush() }
            for case let (_, intent?) in batch { try? await journal.end(intent) }
            told = batch
        } catch {
            told = await ledger.notDurable(error, batch: batch)
        }
        for entry in await ledger.entries(told) { onEntry(entry) }
    }

    /// Corrects a coalesced step's remediations with one write, then verifies each. Returns nil
    /// (nothing recorded in `records`) when the one write failed: the caller corrects each alone.
    /// Otherwise returns the members whose every change the driver found already made, under
    /// its lock, before writing: those were not changed, and are not verified or recorded.
    private func carryOut(batch: [PlannedRemediation], state: DesiredState, into records: inout [AuditRecord]) async
        -> (inSync: Set<Int>, busy: String?)? {
        guard let first = batch.first, let target = state.targets[first.binding.target],
              let kind = registry.kinds[first.binding.resource.kind], let driver = kind.driver as? any CoalescingDriver else {
            return nil
        }
        var work: [(changes: [PropertyDrift], resource: Resource)] = []
        for remediation in batch {
            guard let resource = state.resources[remediation.binding.resource] else { return nil }
            work.append((remediation.changes, resource))
        }
        let found: Set<String>
        do {
            found = try await driver.apply(batch: work, on: target)
            // A driver that announces its changes passed the gate before its first; if it did
            // not, its intents are marked tried now, before any record (`ChangeGate.passLate`).
            await ChangeGate.current?.passLate()
        } catch let error as AlreadyInSync {
            found = error.properties
        } catch let error as TargetBusy {
            return ([], error.message)
        } catch {
            return nil
        }
        let applied = clock()
        var inSync: Set<Int> = []
        // The members are verified against one snapshot of the target taken after the write, in
        // an observation scope of their own: seven sysctls written in one file read that file
        // (changed a moment ago, so kept for no other reader) once, not seven times.
        await ObservationScope.$current.withValue(ObservationScope()) {
            for index in batch.indices {
                if !batch[index].changes.isEmpty, batch[index].changes.allSatisfy({ found.contains($0.property) }) {
                    inSync.insert(index)
                    continue
                }
                records[index].appliedAt = applied
                await verify(batch[index], resource: work[index].resource, target: target, driver: driver, into: &records[index])
            }
        }
        return (inSync, nil)
    }

    /// Resolves intents a killed process left open, before anything else acts: an intent whose
    /// record is already on the audit branch is closed; any other is observed again and recorded
    /// as `verified` (the fix was made and holds) or `interrupted` (with what was found), then
    /// closed. An intent the journal has no `trying` line for, whose every value is found as it
    /// was before, is closed without a record: its change never happened; one found as desired
    /// is recorded `interrupted` (someone else made it so). An intent whose resource or target
    /// left the desired state is observed as the revision it was made from gave them (`earlier`,
    /// by the intent's desired commit): its change may well have been made, and the record says
    /// what is found; recorded `interrupted` without observing only where that revision cannot
    /// be read either. An intent whose values are found as desired, with a verified record of
    /// the same values another Bulwark wrote since its drift was detected
    /// (`AuditSink.verifiedElsewhere`), is recorded `interrupted`, naming that record: a record
    /// cannot tell whether the change is that one's or this one's made before it (the host may
    /// have drifted again in between), and a change made must never go unrecorded. `bulwark
    /// report` counts such a record as no open drift (`RemediationReport.Entry.opensDrift`).
    ///
    /// A sink that buffers (`beginBuffering`) keeps the records in memory and makes them
    /// durable as one pack (every `flushEvery` records and at the end); an intent is ended only
    /// after the flush that made its record durable, so a kill at any point leaves no ended
    /// intent without its record (the next start records it again, or finds it and closes it).
    /// Written one by one, each record was about nine loose object files in the state clone,
    /// never packed: 6,200 of them (25 MiB) after 148 kill rounds (outside review).
    /// Returns the records written; `onUntried` is told of each intent closed without one.
    public func recover(
        journal: some IntentJournal, state: DesiredState, audit: some AuditSink,
        earlier: (Revision) async -> DesiredState? = { _ in nil },
        onUntried: (AuditRecord) -> Void = { _ in }
    ) async throws -> [CycleEntry] {
        var entries: [CycleEntry] = []
        // Read once: `untriedIntents` answers from what `openIntents` read.
        let open = try await journal.openIntents()
        let untried = try await journal.untriedIntents()
        // Records written and not yet durable (buffered), whose intents stay open until they are.
        var written: [CycleEntry] = []
        // nil until the first record: buffering begins only when there is one to write.
        var buffered: Bool?
        // Makes the written records durable (`last`: and ends buffering), then ends their intents.
        func settle(last: Bool) async throws {
            guard buffered == true else { return }
            if last {
                buffered = nil
                try await audit.endBuffering()
            } else {
                try await audit.flush()
            }
            let durable = written
            written = []
            for entry in durable { try await journal.end(entry.record.id) }
            entries += durable
        }
        do {
            try await recover(open: open, untried: untried, journal: journal, state: state, audit: audit, earlier: earlier,
                              onUntried: onUntried) { entry in
                if buffered == nil { buffered = await audit.beginBuffering() }
                let commit = try await audit.write(entry.record)
                var entry = entry
                entry.commit = commit
                guard buffered == true else {
                    try await journal.end(entry.record.id)
                    entries.append(entry)
                    return
                }
                written.append(entry)
                if written.count >= Self.flushEvery { try await settle(last: false) }
            }
            try await settle(last: true)
        } catch {
            // What was written before the failure is made durable and its intents ended when it
            // can be; otherwise those intents stay open, and the next start records them.
            if buffered == true { try? await settle(last: true) }
            throw error
        }
        return entries
    }

    /// `recover`'s work on each open intent: closes it (`journal.end`) when it needs no record,
    /// else hands its record to `record`, which writes it and ends the intent once it is durable.
    private func recover(
        open: [AuditRecord], untried: Set<String>, journal: some IntentJournal, state: DesiredState, audit: some AuditSink,
        earlier: (Revision) async -> DesiredState?, onUntried: (AuditRecord) -> Void,
        record write: (CycleEntry) async throws -> Void
    ) async throws {
        for var record in open {
            if try await audit.contains(recordID: record.id) {
                try await journal.end(record.id)
                continue
            }
            let resourceID = ResourceID(kind: record.kind, name: record.name)
            record.result = .interrupted
            var resource = state.resources[resourceID], target = state.targets[record.target]
            var gone: String?
            if resource == nil || target == nil, let then = await earlier(record.desiredCommit),
               let oldResource = then.resources[resourceID], let oldTarget = then.targets[record.target] {
                resource = oldResource
                target = oldTarget
                gone = "\(record.resource) on \(record.target) is no longer in the desired state (observed as \(record.desiredCommit.short) "
                    + "gave it)"
            }
            if let resource, let target, let kind = registry.kinds[record.kind] {
                // Read before observing: a failure to read the audit branch stops recovery (as
                // `contains` does), it is not a failure to observe.
                let elsewhere = try await audit.verifiedElsewhere(record)
                do {
                    let after = try await PolicyScope.$current.withValue(state) { try await kind.driver.observe(resource, on: target) }
                    let sensitive = Set(resource.spec.properties.filter(\.sensitive).map(\.name)).union(after.sensitive)
                    var holds = true
                    for index in record.changes.indices {
                        let change = record.changes[index]
                        let observed = after.values[change.property] ?? nil
                        let secret = sensitive.contains(change.property)
                        record.changes[index].observedAfter = secret ? (observed == nil ? nil : "[redacted]") : observed
                        // A sensitive desired value is only in the record redacted: compare with the manifest's.
                        let desired = secret ? resource.spec.properties.first { $0.name == change.property }?.value : change.desired
                        if observed != desired { holds = false }
                    }
                    // Something the fix owes besides its values (a configuration file written whose
                    // reload did not complete): the fix is not done, so it is not recorded verified.
                    let owed = after.owed.filter { name, _ in resource.spec.properties.contains { $0.name == name } }
                    if holds, !owed.isEmpty {
                        record.error = AuditRecord.incompleteAfterRestart + ": "
                            + owed.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")
                            + "; the next pass completes it"
                    } else if holds, let other = elsewhere {
                        // Another Bulwark recorded a fix of these values after the drift was seen.
                        // The change may be its own, or this one's made before it (the host may
                        // have drifted again in between, and a second drift of the same value
                        // reads the same): recorded, never closed without a record (a change made
                        // would go unrecorded), and not claimed as this process's verified fix.
                        record.error = "found as desired after a restart; another Bulwark (\(other.instance)) recorded a fix of the same values "
                            + "since this drift was detected (record \(other.id)), so this is not recorded as this process's fix"
                    } else if holds, untried.contains(record.id) {
                        // Found as desired, but never marked tried: someone else made it so (or a
                        // power cut lost the line). Recorded, not claimed as this process's fix.
                        record.error = AuditRecord.untriedAfterRestart
                    } else if holds {
                        record.result = .verified
                        record.verifiedAt = clock()
                        record.error = "recorded after a restart: the process stopped between the fix and its record"
                    } else if untried.contains(record.id), !record.changes.isEmpty, record.changes.allSatisfy({
                        !sensitive.contains($0.property) && $0.observedAfter == $0.observedBefore
                    }) {
                        // Never tried, and every value is as it was before: no change happened, so
                        // no record of one. The intent is closed; the next plan finds the drift again.
                        try await journal.end(record.id)
                        onUntried(record)
                        continue
                    } else {
                        record.error = "the process stopped between this fix's intent and its record; found afterwards: "
                            + record.changes.map { "\($0.property) is \($0.observedAfter ?? "(unset)")" }.joined(separator: ", ")
                    }
                } catch {
                    record.error = "the process stopped between this fix's intent and its record; observing afterwards failed: \(error)"
                }
                if let gone { record.error = (record.error.map { $0 + "; " } ?? "") + gone }
            } else {
                record.error = "the process stopped between this fix's intent and its record; \(record.resource) on \(record.target) is no longer in the desired state"
            }
            let remediation = PlannedRemediation(
                binding: Binding(controller: record.controller, target: record.target, resource: resourceID),
                severity: record.severity, risk: record.risk, mode: record.mode, changes: [], decision: .applied,
                reason: nil, detectedAt: record.detectedAt)
            try await write(CycleEntry(remediation: remediation, record: record, commit: nil, alreadyRecorded: false))
        }
    }

    /// Takes away a removed resource's leftovers and verifies they are gone.
    private func prune(_ remediation: PlannedRemediation, state: DesiredState, into record: inout AuditRecord) async {
        guard let target = state.targets[remediation.binding.target], let kind = registry.kinds[remediation.binding.resource.kind],
              let driver = kind.driver as? any PruningDriver else {
            record.result = .failed
            record.error = "no pruning driver for \(remediation.binding.resource.kind)"
            return
        }
        do {
            try await driver.prune(remediation.leftovers, on: target)
            record.appliedAt = clock()
            let current = state.wantedBindings.filter { $0.target == target.name && $0.resource.kind == kind.name }
                .compactMap { state.resources[$0.resource] }
            let remaining = Set(try await driver.leftovers(on: target, keeping: current).map(\.handle))
            for index in record.changes.indices {
                record.changes[index].observedAfter = remaining.contains(record.changes[index].property) ? record.changes[index].observedBefore : "(removed)"
            }
            let still = remediation.leftovers.filter { remaining.contains($0.handle) }
            if still.isEmpty {
                record.result = .verified
                record.verifiedAt = clock()
            } else {
                record.result = .failed
                record.error = "still there after pruning: " + still.map(\.summary).joined(separator: ", ")
            }
        } catch {
            record.appliedAt = clock()
            record.result = .failed
            record.error = "prune failed: \(error)"
        }
    }

    /// What carrying out one remediation came to.
    private enum Carried {
        /// Applied (or failed) and verified: `record` says how.
        case done
        /// The driver found every change already made (`AlreadyInSync`) and changed nothing.
        case inSync
        /// Another process holds the target (`TargetBusy`): nothing was tried.
        case busy(String)
    }

    /// Corrects one remediation and verifies it. Nothing is recorded in `record` when it comes
    /// to `.inSync` or `.busy`.
    private func carryOut(_ remediation: PlannedRemediation, state: DesiredState, into record: inout AuditRecord) async -> Carried {
        guard let resource = state.resources[remediation.binding.resource],
              let target = state.targets[remediation.binding.target],
              let kind = registry.kinds[resource.id.kind] else {
            record.result = .failed
            record.error = "binding refers to nothing"
            return .done
        }
        do {
            try await ApplyContext.$approvedBlock.withValue(remediation.approvedBlock) {
                if let reporting = kind.driver as? any ReportingDriver {
                    record.include(try await reporting.applyReporting(remediation.changes, to: resource, on: target))
                } else {
                    try await kind.driver.apply(remediation.changes, to: resource, on: target)
                }
            }
            // A driver that announces its changes passed the gate before its first; if it did
            // not, its intents are marked tried now, before any record (`ChangeGate.passLate`).
            await ChangeGate.current?.passLate()
            record.appliedAt = clock()
        } catch let error as AlreadyInSync
                    where remediation.changes.allSatisfy({ error.properties.contains($0.property) }) {
            return .inSync
        } catch let error as TargetBusy {
            return .busy(error.message)
        } catch {
            record.appliedAt = clock()
            record.result = .failed
            record.error = "apply failed: \(error)"
            if let failure = error as? ReportedFailure { record.include(failure.report) }
            if let incomplete = error as? IncompleteFix {
                await ChangeGate.current?.passLate()
                // The fix wrote its values before its last step failed: the record says what the
                // system holds now, not "(unset)".
                for index in record.changes.indices {
                    let change = remediation.changes[index]
                    guard let observed = incomplete.observed[change.property] else { continue }
                    record.changes[index].observedAfter = Self.shownAfter(change, observed)
                }
            }
            if error is NoAnswer {
                // Whether the system acted on what was sent is unknown: the record says what it
                // holds now, when it can still be observed.
                record.error = "apply failed: \(error); the change may or may not have been made"
                if let after = try? await kind.driver.observe(resource, on: target) {
                    for index in record.changes.indices {
                        let change = remediation.changes[index]
                        let observed = after.values[change.property] ?? nil
                        record.changes[index].observedAfter = Self.shownAfter(change, observed)
                    }
                }
            }
            return .done
        }
        await verify(remediation, resource: resource, target: target, driver: kind.driver, into: &record)
        return .done
    }

    /// What a record shows of a value observed after a fix: `[redacted]` for a sensitive one.
    private static func shownAfter(_ change: PropertyDrift, _ observed: String?) -> String? {
        change.sensitive ? (observed == nil ? nil : "[redacted]") : observed
    }

    /// Observes a corrected resource again: `verified` when every changed property now holds
    /// its desired value, otherwise `failed` with what was found.
    private func verify(_ remediation: PlannedRemediation, resource: Resource, target: Target, driver: any ResourceDriver,
                        into record: inout AuditRecord) async {
        do {
            let after = try await driver.observe(resource, on: target)
            let now = clock()
            var stillWrong: [String] = []
            for index in record.changes.indices {
                let change = remediation.changes[index]
                let observed = after.values[change.property] ?? nil
                record.changes[index].observedAfter = Self.shownAfter(change, observed)
                if observed != change.desired {
                    stillWrong.append("\(change.property) is \(change.sensitive ? "[redacted]" : observed ?? "(unset)")")
                }
            }
            if stillWrong.isEmpty {
                record.result = .verified
                record.verifiedAt = now
            } else if let witness = driver as? any OverwriteWitness,
                      case let changed = await witness.changedSinceFix(resource, on: target), !changed.isEmpty {
                // The fix was written and someone else changed it before it could be verified:
                // not a fix that does not take; the next pass fixes it again.
                record.result = .failed
                record.error = "\(AuditRecord.overwrittenMarker) (\(changed.joined(separator: ", ")) changed since Bulwark wrote it): "
                    + stillWrong.joined(separator: ", ") + "; fixed again on the next pass"
            } else {
                record.result = .failed
                record.error = "fix did not hold: " + stillWrong.joined(separator: ", ")
            }
        } catch {
            record.result = .failed
            record.error = "verification failed: \(error)"
        }
    }

    /// The stable id of a failed fix: its binding, drift, error and revision.
    private func failureID(_ record: AuditRecord) -> String {
        let drift = record.changes.map { "\($0.property)=\($0.observedBefore ?? "\u{0}")>\($0.desired)" }
        // The error with its digits made `#` (`AuditID.cause`): a reload command that prints the
        // time or its pid fails the same way every time, and is recorded once.
        return AuditID.stable((["failed", record.controller, record.target, record.resource, record.desiredCommit.description,
                                AuditID.cause(record.error ?? "")] + drift).joined(separator: "\u{1}"))
    }

    private func makeRecord(_ remediation: PlannedRemediation, state: DesiredState) -> AuditRecord {
        let binding = remediation.binding
        let id: String
        if let stable = remediation.id {
            id = stable
        } else if remediation.decision == .applied || remediation.decision == .pruned, let approval = remediation.approvalID {
            id = AuditID.approved(approval)
        } else if remediation.decision == .applied || remediation.decision == .pruned {
            id = AuditID.ulid(at: clock())
        } else {
            // The same drift with the same decision and reason is recorded once.
            let drift = remediation.changes.map { "\($0.property)=\($0.observed ?? "\u{0}")>\($0.desired)" }
            id = state.episodes.salted(AuditID.stable([binding.controller, binding.target, binding.resource.description,
                                                       remediation.decision.rawValue, remediation.reason ?? ""].joined(separator: "\u{1}")
                                                      + drift.joined(separator: "\u{1}")), for: binding)
        }
        var record = AuditRecord(
            id: id, controller: binding.controller, target: binding.target, resource: binding.resource.description,
            kind: binding.resource.kind, name: binding.resource.name, severity: remediation.severity,
            risk: remediation.risk, mode: remediation.mode, decision: remediation.decision, result: nil,
            reason: remediation.reason,
            changes: remediation.changes.map {
                .init(property: $0.property, desired: $0.shownDesired,
                      observedBefore: $0.sensitive ? "[redacted]" : $0.observed, observedAfter: nil)
            },
            detectedAt: remediation.detectedAt, appliedAt: nil, verifiedAt: nil,
            desiredCommit: state.revision, approver: remediation.approver, error: remediation.error,
            nextWindowAt: remediation.nextWindow)
        record.finding = state.resources[binding.resource].flatMap { FindingCitation(annotations: $0.annotations) }
        if remediation.decision == .applied { record.baseline = state.acceptedBaseline }
        return record
    }
}

/// The order observations start in. A target already being observed waits while another
/// target has observations waiting and none running: a target's resources mostly read the same
/// files (seven sysctls, the same seven folders), and two of them observed at once both missed
/// the parse the first was about to cache, so each file was read and parsed twice. When an
/// observation ends, its target's next one starts, if it has one: a target's observations follow
/// each other, and what a plan keeps open for a target (`ObservationScope`) is needed by a few
/// targets at a time, not by all of them. Otherwise the next target in order starts. Only when
/// every target with work left is being observed does one get a second observation at once, so
/// a single target (a cloud account's many resources) is still observed several at a time.
/// Each target's resources start in their order.
struct TargetTurns {
    private var queues: [(target: String, bindings: [Binding], next: Int)] = []
    private var position: [String: Int] = [:]
    private var inFlight: [String: Int] = [:]
    /// Targets whose observation just ended, with more waiting: they go first.
    private var resume: [String] = []
    /// Where the look for an idle target starts: the queue after the last one started that way.
    private var cursor = 0
    private var exhausted = 0

    init(_ bindings: [Binding]) {
        for binding in bindings {
            if let at = position[binding.target] {
                queues[at].bindings.append(binding)
            } else {
                position[binding.target] = queues.count
                queues.append((binding.target, [binding], 0))
            }
        }
    }

    /// The next observation to start, or nil when none is waiting.
    mutating func next() -> Binding? {
        while let target = resume.popLast() {
            if let at = position[target], isWaiting(at), inFlight[target, default: 0] == 0 { return take(at) }
        }
        var fallback: Int?
        for step in 0..<queues.count {
            let at = (cursor + step) % queues.count
            guard isWaiting(at) else { continue }
            if inFlight[queues[at].target, default: 0] == 0 {
                cursor = at + 1
                return take(at)
            }
            if fallback == nil { fallback = at }
        }
        return fallback.map { take($0) }
    }

    /// An observation started by `next` has finished.
    mutating func finished(_ binding: Binding) {
        inFlight[binding.target, default: 1] -= 1
        if inFlight[binding.target] == 0, let at = position[binding.target], isWaiting(at) { resume.append(binding.target) }
    }

    private func isWaiting(_ at: Int) -> Bool { queues[at].next < queues[at].bindings.count }

    private mutating func take(_ at: Int) -> Binding {
        let binding = queues[at].bindings[queues[at].next]
        queues[at].next += 1
        inFlight[binding.target, default: 0] += 1
        if !isWaiting(at) {
            exhausted += 1
            // Finished queues are dropped once they are more than half of them, so a look for an idle
            // target never walks over many (one large target among many small ones).
            if exhausted * 2 > queues.count {
                let cursorTarget = (cursor..<queues.count).first { isWaiting($0) }.map { queues[$0].target }
                queues.removeAll { $0.next == $0.bindings.count }
                position = Dictionary(uniqueKeysWithValues: queues.enumerated().map { ($1.target, $0) })
                cursor = cursorTarget.flatMap { position[$0] } ?? 0
                exhausted = 0
            }
        }
        if cursor >= queues.count { cursor = 0 }
        return binding
    }
}
