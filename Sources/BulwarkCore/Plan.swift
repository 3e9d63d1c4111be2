public import struct Foundation.Date

/// One property that differs from what the desired state wants.
public struct PropertyDrift: Sendable, Hashable, Codable {
    public var property: String
    public var desired: String
    /// nil: unset on the target.
    public var observed: String?
    public var sensitive: Bool

    public init(property: String, desired: String, observed: String?, sensitive: Bool = false) {
        self.property = property
        self.desired = desired
        self.observed = observed
        self.sensitive = sensitive
    }

    /// The values as they may be shown: sensitive ones redacted, unset spelled out.
    public var shownDesired: String { sensitive ? "[redacted]" : desired }
    public var shownObserved: String { sensitive ? "[redacted]" : (observed ?? "(unset)") }
}

/// What Bulwark does about a drift.
public enum Decision: String, Sendable, Codable, CaseIterable {
    /// Fixed now.
    case applied
    /// Waiting for approval.
    case held
    /// Left alone under a waiver.
    case waived
    /// Not now: a limit or a window.
    case deferred
    /// The flap breaker stopped automatic fixes.
    case escalated
    /// Audit mode: reported only.
    case reported
    /// A safety guard refused the change: it would lock people out or break the floor.
    case blocked
    /// Nothing acted: the revision, an approval or a signature was refused.
    case refused
    /// Something Bulwark created for a resource that was removed from the desired state was taken away.
    case pruned
    /// The resource could not be observed on its target: nothing was judged or changed (the
    /// record's error says why). Recorded once per revision and cause.
    case unobserved
    /// Drift recorded open (held, blocked, deferred, failed…) was found gone without a fix of
    /// Bulwark's: someone fixed it by hand, or the system changed back. Nothing was changed; the
    /// record ends the open item (`report`), and is no fix in the MTTR figures.
    case resolved

    /// Whether a record with this decision (and no verified fix) keeps its resource's drift open
    /// for MTTR: anything but a waiver (drift accepted), a failed observation (no drift found),
    /// a refusal (of a revision, an approval, a command: no drift, whatever it names) or a
    /// resolution (the drift found gone).
    public var opensDrift: Bool { self != .waived && self != .unobserved && self != .refused && self != .resolved }
}

/// Whether an applied fix held when observed again.
public enum RemediationResult: String, Sendable, Codable {
    case verified, failed
    /// The process died between the intent and the record; found and recorded on the next start.
    case interrupted
}

/// A drifted resource on a target, with the decision the policy gate made.
public struct PlannedRemediation: Sendable, Hashable {
    public var binding: Binding
    public var severity: Severity
    /// Severity weighted by the target's exposure: the order remediations are taken in.
    public var risk: Int
    public var mode: Mode
    public var changes: [PropertyDrift]
    public var decision: Decision
    /// Why a decision other than `applied` was made.
    public var reason: String?
    public var detectedAt: Date
    /// The record's id when it must be stable: a held drift (the id a person approves) or a
    /// waived one (recorded once per waiver).
    public var id: String?
    /// Who approved it, for a held drift that was approved.
    public var approver: String?
    /// The approval used (its id), for an approved fix: an approval is used once, so the fix's
    /// record id is derived from it (`AuditID.approved`).
    public var approvalID: String?
    /// The guard's reason, where a person approved it past that block (`ApplyContext.approvedBlock`).
    public var approvedBlock: String?
    /// For drift deferred by a change window: when the next window opens.
    public var nextWindow: Date?
    /// For a prune: what the adapter created for a removed resource, to take away.
    public var leftovers: [Leftover] = []
    /// For a resource that could not be observed: why (credentials redacted), the record's error.
    public var error: String? = nil
}

/// A resource that could not be observed on a target.
public struct ObservationFailure: Sendable, Hashable {
    public var binding: Binding
    public var message: String
    public init(binding: Binding, message: String) {
        self.binding = binding
        self.message = message
    }

    /// The message as its record is told apart by (`AuditID.cause`).
    var cause: String { AuditID.cause(message) }

    /// `target Kind/name: message`, as `errors` in the JSON outputs says it.
    public var line: String { "\(binding.target) \(binding.resource): \(message)" }

    /// The failures as people read them: a line each, except that resources of one target that
    /// failed with the same message (a target whose root does not exist fails every one of its
    /// resources alike) are one line, with how many and the first few, once there are three.
    public static func lines(_ failures: [ObservationFailure]) -> [String] {
        var groups: [(key: String, failures: [ObservationFailure])] = []
        var place: [String: Int] = [:]
        for failure in failures {
            let key = failure.binding.target + "\u{0}" + failure.message
            if let index = place[key] { groups[index].failures.append(failure) } else {
                place[key] = groups.count
                groups.append((key, [failure]))
            }
        }
        return groups.flatMap { group -> [String] in
            guard group.failures.count >= 3, let first = group.failures.first else { return group.failures.map(\.line) }
            let named = group.failures.prefix(3).map { $0.binding.resource.description }.joined(separator: ", ")
            let more = group.failures.count > 3 ? " and \(group.failures.count - 3) more" : ""
            return ["\(first.binding.target): \(group.failures.count) resources could not be observed (\(named)\(more)): \(first.message)"]
        }
    }

    /// Its record (`Decision.unobserved`): once per binding, revision and cause.
    func remediation(state: DesiredState, at now: Date) -> PlannedRemediation {
        let controller = state.controllers[binding.controller]
        let severity = state.resources[binding.resource]?.severity ?? .medium
        let id = AuditID.stable(["unobserved", binding.controller, binding.target, binding.resource.description,
                                 state.revision.description, cause].joined(separator: "\u{1}"))
        return PlannedRemediation(binding: binding, severity: severity, risk: severity.weight, mode: controller?.mode ?? .enforce,
                                  changes: [], decision: .unobserved,
                                  reason: "could not be observed; nothing was judged or changed", detectedAt: now, id: id,
                                  error: Redaction.words(in: message))
    }
}

/// Drift and decisions for one revision against what was observed.
public struct Plan: Sendable {
    /// Riskiest first.
    public var remediations: [PlannedRemediation]
    public var inSync: [Binding]
    public var failures: [ObservationFailure]
    /// Bindings in `inSync` of a weakened resource where a property that became weaker was not
    /// observed at all (a wildcard path that matches nothing, a key the target does not have):
    /// in sync, but the weakening has not reached the target, so the last applied revision
    /// must not move past it (`Provenance.advanceBaseline`).
    public var weakenedUnobserved: [Binding] = []
    /// Approvals of a weakening given by its own author (`Weakening.refusal(of:identity:)`), by
    /// approval id, each with why: the weakening stays held, and the refusal is recorded as a
    /// refused approval is (`RevisionRefusal`).
    public var refusedApprovals: [(id: String, reason: String)] = []
    /// Bindings in `inSync` where a desired property was not observed at all (a file or key
    /// the target does not have, a `*` property that matches nothing): in sync as far as could
    /// be seen, but no proof that an open drift is over (`Reconciler.resolutions` leaves them).
    public var partlyObserved: Set<Binding> = []
    /// Resources found in sync whose drift the audit branch has open (`DriftEpisodes`): each is
    /// recorded `resolved` by a pass (not by `plan`), which ends its open item.
    public var resolved: [PlannedRemediation] = []
    /// What each target's exclusive claim was when the plan began (`TypedTargetSettings.exclusiveIdentity`,
    /// a network namespace's device and inode), by target name: a fix checks the target is still
    /// that one right before it writes (`PlannedTargets`).
    public var targetIdentities: [String: String] = [:]

    public var hasDrift: Bool { !remediations.isEmpty }
    /// Drift a person or a pass still has to act on: all but what a waiver covers, an
    /// exception decided already (`plan` exits 2 on this, so that a gate on 0 can pass).
    public var hasUnwaivedDrift: Bool { remediations.contains { $0.decision != .waived } }
}

public enum Planner {
    /// The label that marks a resource Bulwark must never change by itself.
    public static let protectedLabel = "protected"

    /// The pure heart of a cycle: compares what is wanted with what was observed and decides,
    /// per drifted property, what to do: waived (a waiver matches), held (a protected resource,
    /// or approve mode without an approval), reported (audit mode), deferred (a limit) or
    /// applied. No I/O; the same inputs always give the same plan.
    ///
    /// `guards` holds the safety guards' reasons for blocking a binding's drift (see
    /// `ResourceDriver.assess`): such drift is `blocked` in every mode, recorded once, unless the
    /// blocked id was approved.
    ///
    /// `urgent` holds the priority of the findings that name a binding (the daemon's queue): such
    /// drift goes first, P1 first, so that limits defer the drift no scanner is waiting on.
    public static func plan(
        _ state: DesiredState, observations: [Binding: Observation], failures: [ObservationFailure] = [],
        history: FixHistory = .init(), guards: [Binding: GuardBlock] = [:], weakened: [ResourceID: Weakening] = [:],
        leftovers: [Binding: [Leftover]] = [:], urgent: [Binding: Priority] = [:], now: Date = Date()
    ) -> Plan {
        var drifted: [PlannedRemediation] = []
        var inSync: [Binding] = []
        var weakenedUnobserved: [Binding] = []
        var partlyObserved = Set<Binding>()
        var refusedApprovals: [(id: String, reason: String)] = []
        // Protection belongs to the object, not to one resource: a protected resource's subject
        // (an account, a path, a role) on a target holds every change to it, from any resource.
        let brakes = Brakes(state)
        for binding in state.bindings {
            guard let observation = observations[binding],
                  let resource = state.resources[binding.resource],
                  let controller = state.controllers[binding.controller],
                  let target = state.targets[binding.target] else { continue }
            let changes = drift(resource.spec.properties, observation)
            guard !changes.isEmpty else {
                inSync.append(binding)
                if resource.spec.properties.contains(where: { !isObserved($0.name, in: observation) }) { partlyObserved.insert(binding) }
                if let weak = weakened[resource.id], weak.properties.contains(where: { !isObserved($0, in: observation) }) {
                    weakenedUnobserved.append(binding)
                }
                continue
            }
            // An annotation can only make a resource stricter than its controller (enforce →
            // approve → audit), never looser.
            let mode = Brakes.mode(of: resource, under: controller)
            func add(_ changes: [PropertyDrift], _ decision: Decision, _ reason: String?, id: String? = nil, approver: String? = nil,
                     approvalID: String? = nil) {
                drifted.append(PlannedRemediation(
                    binding: binding, severity: resource.severity, risk: resource.severity.weight * target.exposureWeight,
                    mode: mode, changes: changes, decision: decision, reason: reason, detectedAt: observation.observedAt,
                    id: id, approver: approver, approvalID: approvalID))
            }
            var remaining: [PropertyDrift] = []
            var waived: [(Waiver, [PropertyDrift])] = []
            for change in changes {
                if let waiver = state.waivers.first(where: { $0.matches(binding, property: change.property, at: now) }) {
                    if let index = waived.firstIndex(where: { $0.0.name == waiver.name }) {
                        waived[index].1.append(change)
                    } else {
                        waived.append((waiver, [change]))
                    }
                } else {
                    remaining.append(change)
                }
            }
            for (waiver, changes) in waived {
                let until = Timestamp.format(waiver.expiresAt.addingTimeInterval(-1)).prefix(10)
                add(changes, .waived,
                    "waiver \(waiver.name) (owner \(waiver.owner)\(waiver.ticket.map { ", " + $0 } ?? ""), until \(until)): \(waiver.reason)",
                    id: AuditID.stable(["waived", waiver.name, binding.target, binding.resource.description].joined(separator: "\u{1}")))
            }
            guard !remaining.isEmpty else { continue }
            func approved(_ id: String) -> Approval? {
                activeApproval(id, in: state, at: now)
            }
            var approver: String?
            var approvalID: String?
            // A safety guard's block comes before everything else: no mode, label or limit can
            // let a lockout through; only an approval of the blocked id can.
            if let block = guards[binding] {
                let (approval, id, other) = blockApproval(binding, remaining, block, in: state, at: now)
                if let approval {
                    approver = approval.approver
                    approvalID = id
                } else {
                    add(remaining, .blocked, blockedReason(block, id: id, approvalOfAnother: other), id: id)
                    continue
                }
            }
            // Made where a drift is held (most are not: a 100-root plan made 2,300 for nothing).
            func held() -> String { episode(heldID(binding, remaining), of: binding, in: state) }
            if let protection = brakes.protection(of: resource, on: binding.target) {
                add(remaining, .held, protection, id: held())
                continue
            }
            // A change of policy in the less secure direction waits for a second person.
            if let weakening = weakened[binding.resource], !controller.weakeningAllowed.contains(binding.resource.kind),
               mode != .audit {
                let id = episode(weakeningID(binding, remaining, weakening), of: binding, in: state)
                if let approval = approved(id), weakening.isSecondPerson(approval.approver, identity: approval.signer) {
                    approver = approval.approver
                    approvalID = id
                } else {
                    if let approval = approved(id), weakening.unknownAuthors.isEmpty,
                       let why = weakening.refusal(of: approval.approver, identity: approval.signer),
                       !refusedApprovals.contains(where: { $0.id == id }) {
                        refusedApprovals.append((id, "approval \(id) in \(approval.location.file) of the weakening of \(binding.resource) "
                                                 + "on \(binding.target) is refused: \(why); a weakening needs a second person"))
                    }
                    let who = weakening.authors.isEmpty ? "" : " by " + weakening.authors.joined(separator: ", ")
                    // A change whose author is unknown: no approver can be shown to be someone else.
                    let next = weakening.unknownAuthors.isEmpty ? "needs approval by someone else: bulwark approve \(id)"
                        : "its author is not known (\(weakening.unknownAuthors.joined(separator: "; "))), so no approval can "
                            + "come from a second person: revert the change, or make it again in a commit signed by a trusted key"
                    add(remaining, .held, "weakens the policy\(who): \(weakening.changes.joined(separator: "; ")); " + next, id: id)
                    continue
                }
            }
            switch mode {
            case .enforce:
                break
            case .audit:
                add(remaining, .reported, "audit mode")
                continue
            case .approve:
                if approver == nil {
                    let heldID = held()
                    guard let approval = approved(heldID) else {
                        add(remaining, .held, "waiting for approval: bulwark approve \(heldID)", id: heldID)
                        continue
                    }
                    approver = approval.approver
                    approvalID = heldID
                }
            }
            // The flap breaker: a property fixed again and again within the period is escalated.
            let since = now.addingTimeInterval(-controller.flapPeriod.timeInterval)
            let flapping = remaining.compactMap { change -> (PropertyDrift, Int, Date)? in
                let key = FixHistory.Key(target: binding.target, resource: binding.resource, property: change.property)
                let (count, first) = history.count(key, desired: change.desired, since: since)
                return count >= controller.flapCount ? (change, count, first ?? now) : nil
            }
            if let worst = flapping.max(by: { $0.1 < $1.1 }) {
                let id = episode(AuditID.stable((["escalated", binding.target, binding.resource.description, Timestamp.format(worst.2)]
                                                 + flapping.map { "\($0.0.property)>\($0.0.desired)" }).joined(separator: "\u{1}")),
                                 of: binding, in: state)
                if let acknowledgement = approved(id) {
                    approver = acknowledgement.approver
                    approvalID = id
                } else {
                    add(remaining, .escalated,
                        "flap breaker: \(worst.0.property) was fixed \(worst.1) times since \(Timestamp.format(since)); "
                            + "change its policy or acknowledge with bulwark approve \(id)", id: id)
                    continue
                }
            }
            add(remaining, .applied, nil, approver: approver, approvalID: approvalID)
            // Applied past a guard's block: only its approval let it through.
            drifted[drifted.count - 1].approvedBlock = guards[binding]?.shown
        }
        drifted += prunes(leftovers, state: state, now: now)
        // The emergency brake: while paused, nothing that would change a system goes ahead.
        if let pause = state.pause {
            for index in drifted.indices where drifted[index].decision == .applied || drifted[index].decision == .pruned {
                drifted[index].decision = .deferred
                drifted[index].reason = "paused\(pause.by.map { " by \($0)" } ?? ""): \(pause.reason); bulwark resume lifts it"
                drifted[index].approver = nil
                drifted[index].approvalID = nil
            }
        }
        drifted = inPlanOrder(drifted, urgent: urgent)
        applyLimits(&drifted, state: state, now: now)
        var plan = Plan(remediations: drifted.compacted(), inSync: inSync.compacted(), failures: failures.sorted { $0.binding < $1.binding },
                        weakenedUnobserved: weakenedUnobserved, refusedApprovals: refusedApprovals)
        plan.partlyObserved = partlyObserved
        return plan
    }

    /// The plan's order: what a finding names first (by its priority), then the riskiest, the
    /// most severe, then by target and resource, and the decision. Sorted as indices over each
    /// entry's keys, then laid out once: sorting the entries themselves moved 600-byte values
    /// and looked `urgent` up twice per comparison, 9 ms on one core of a drifted 100-root plan.
    static func inPlanOrder(_ items: [PlannedRemediation], urgent: [Binding: Priority]) -> [PlannedRemediation] {
        let priorities = urgent.isEmpty ? [] : items.map { urgent[$0.binding] }
        let ranks = items.map { (risk: $0.risk, severity: $0.severity.weight) }
        var order = Array(items.indices)
        order.sort { i, j in
            if !priorities.isEmpty {
                switch (priorities[i], priorities[j]) {
                case let (pa?, pb?) where pa != pb: return pa < pb
                case (.some, nil): return true
                case (nil, .some): return false
                default: break
                }
            }
            if ranks[i].risk != ranks[j].risk { return ranks[i].risk > ranks[j].risk }
            if ranks[i].severity != ranks[j].severity { return ranks[i].severity > ranks[j].severity }
            if items[i].binding != items[j].binding { return items[i].binding < items[j].binding }
            return items[i].decision.rawValue < items[j].decision.rawValue
        }
        return order.map { items[$0] }
    }

    /// What to do about what adapters created for resources that left the desired state: taken
    /// away (`pruned`) under an enforcing controller that allows weakening for the kind; otherwise
    /// held, because removing a blocklist or a quarantine lets traffic back in, so it waits for a
    /// person's approval like any other weakening; reported in audit mode.
    static func prunes(_ leftovers: [Binding: [Leftover]], state: DesiredState, now: Date) -> [PlannedRemediation] {
        var result: [PlannedRemediation] = []
        for (binding, items) in leftovers.sorted(by: { $0.key < $1.key }) where !items.isEmpty {
            guard let controller = state.controllers[binding.controller], let target = state.targets[binding.target] else { continue }
            let changes = items.sorted { $0.handle < $1.handle }
                .map { PropertyDrift(property: $0.handle, desired: "(removed)", observed: $0.summary) }
            let id = AuditID.stable((["pruned", binding.target, binding.resource.description] + changes.map(\.property))
                .joined(separator: "\u{1}"))
            var remediation = PlannedRemediation(
                binding: binding, severity: .high, risk: Severity.high.weight * target.exposureWeight, mode: controller.mode,
                changes: changes, decision: .pruned, reason: "\(binding.resource) is no longer in the desired state", detectedAt: now,
                id: nil, approver: nil, leftovers: items)
            let approval = activeApproval(id, in: state, at: now)
            switch controller.mode {
            case .audit:
                remediation.decision = .reported
                remediation.id = id
            case .enforce, .approve:
                if controller.mode == .enforce, controller.weakeningAllowed.contains(binding.resource.kind) { break }
                if let approval {
                    remediation.approver = approval.approver
                    remediation.approvalID = id
                } else {
                    remediation.decision = .held
                    remediation.id = id
                    remediation.reason = "\(binding.resource) was removed from the desired state; taking away what it created "
                        + "weakens the policy: bulwark approve \(id)"
                }
            }
            result.append(remediation)
        }
        return result
    }

    /// Defers, in risk order, what a change window, a controller's limit, its share of targets
    /// or the global limit does not allow in this cycle.
    static func applyLimits(_ drifted: inout [PlannedRemediation], state: DesiredState, now: Date) {
        var perController: [String: Int] = [:]
        var targetsChanged: [String: Set<String>] = [:]
        var total = 0
        var targetCounts: [String: Int] = [:]
        for name in state.controllers.keys {
            targetCounts[name] = Set(state.bindings.filter { $0.controller == name }.map(\.target)).count
        }
        for index in drifted.indices where drifted[index].decision == .applied {
            let binding = drifted[index].binding
            guard let controller = state.controllers[binding.controller] else { continue }
            func defer_(_ reason: String) {
                drifted[index].decision = .deferred
                drifted[index].reason = reason
                drifted[index].approver = nil
                drifted[index].approvalID = nil
            }
            if !controller.windows.isEmpty, !controller.windows.contains(where: { $0.contains(now) }) {
                let next = controller.windows.compactMap { $0.nextOpening(after: now) }.min()
                drifted[index].nextWindow = next
                defer_("outside the change windows of controller \(controller.name)"
                       + (next.map { "; the next opens at \(Timestamp.format($0))" } ?? ""))
                continue
            }
            if let limit = controller.maxChangesPerCycle, perController[controller.name, default: 0] >= limit {
                defer_("maxChangesPerCycle \(limit) of controller \(controller.name) reached")
                continue
            }
            if let share = controller.maxTargetShare {
                let allowed = max(1, targetCounts[controller.name, default: 0] * share / 100)
                let changed = targetsChanged[controller.name, default: []]
                if !changed.contains(binding.target), changed.count >= allowed {
                    defer_("maxTargetShare \(share)% of controller \(controller.name) reached (\(allowed) of \(targetCounts[controller.name, default: 0]) targets)")
                    continue
                }
            }
            if total >= state.maxChangesPerCycle {
                defer_("global maxChangesPerCycle \(state.maxChangesPerCycle) reached")
                continue
            }
            perController[controller.name, default: 0] += 1
            targetsChanged[controller.name, default: []].insert(binding.target)
            total += 1
        }
    }

    /// A drift as text for stable ids: each property's observed and desired value, in property order.
    public static func driftKey(_ changes: [PropertyDrift]) -> [String] {
        changes.sorted { $0.property < $1.property }.map { "\($0.property)=\($0.observed ?? "\u{0}")>\($0.desired)" }
    }

    /// Whether `id` has an approval that has not expired at `now`.
    static func activeApproval(_ id: String, in state: DesiredState, at now: Date) -> Approval? {
        state.approvals[id].flatMap { approval in approval.expiresAt.map { now < $0 } ?? true ? approval : nil }
    }

    /// The id a blocked drift is approved by: stable for the same drift, new when it changes.
    /// With `reason`: the id of that block of the drift, where the drift's approval was given
    /// for another block (`blockApproval`).
    public static func blockedID(_ binding: Binding, _ changes: [PropertyDrift], reason: String? = nil) -> String {
        AuditID.stable((["blocked", binding.target, binding.resource.description] + driftKey(changes) + (reason.map { [$0] } ?? []))
            .joined(separator: "\u{1}"))
    }

    /// The approval that lets a guard's `block` of this drift through, and the id the block is
    /// recorded and approved under. A person approves what the blocked record showed: the
    /// approval of the drift's id (`blockedID`) names that block (`Approval.block`) and lets
    /// through no other. Where it was given for another block (a passing "could not judge",
    /// and the guard now finds a lockout), or names none, this block has an id of its own,
    /// new to the audit branch so that it is recorded, and approved by that id alone;
    /// `approvalOfAnother` is then the id whose approval did not count.
    public static func blockApproval(
        _ binding: Binding, _ changes: [PropertyDrift], _ block: GuardBlock, in state: DesiredState, at now: Date
    ) -> (approval: Approval?, id: String, approvalOfAnother: String?) {
        func forThisBlock(_ approval: Approval?) -> Approval? {
            approval.flatMap { approval in approval.block.map { GuardBlock.approves($0, reason: block.reason) } == true ? approval : nil }
        }
        let id = episode(blockedID(binding, changes), of: binding, in: state)
        let own = episode(blockedID(binding, changes, reason: block.reason), of: binding, in: state)
        // The block's own id first: its approval holds whatever became of the drift's (expired,
        // or removed after the record said it approves another block).
        if let approval = forThisBlock(activeApproval(own, in: state, at: now)) { return (approval, own, nil) }
        guard let approval = activeApproval(id, in: state, at: now) else { return (nil, id, nil) }
        if let approval = forThisBlock(approval) { return (approval, id, nil) }
        return (nil, own, id)
    }

    /// A blocked remediation's reason: the block as the guard gave it, and how to approve it.
    /// `bulwark approve` reads the block back from the record (`approvedBlock(fromRecorded:id:)`).
    public static func blockedReason(_ block: GuardBlock, id: String, approvalOfAnother other: String?) -> String {
        block.shown + (other.map { "; approvals/\($0).yaml does not approve this block" } ?? "") + "; to apply it anyway: bulwark approve \(id)"
    }

    /// The block a blocked record of `id` showed, from its reason (`blockedReason`): what a
    /// person approves. Nil where the reason is not one `blockedReason` wrote for `id`.
    public static func approvedBlock(fromRecorded reason: String, id: String) -> String? {
        let advice = "; to apply it anyway: bulwark approve \(id)"
        guard reason.hasSuffix(advice) else { return nil }
        var block = reason.dropLast(advice.count)
        // "; approvals/<26-character id>.yaml does not approve this block"
        let another = " does not approve this block"
        let marker = "; approvals/"
        if block.hasSuffix(".yaml" + another), block.count >= marker.count + 26 + 5 + another.count {
            let start = block.index(block.endIndex, offsetBy: -(marker.count + 26 + 5 + another.count))
            let named = block[start...].dropFirst(marker.count).prefix(26)
            if block[start...].hasPrefix(marker), named.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber) }) {
                block = block[..<start]
            }
        }
        return String(block)
    }

    /// The id a weakening is approved by: stable for the same drift and the same weakening.
    public static func weakeningID(_ binding: Binding, _ changes: [PropertyDrift], _ weakening: Weakening) -> String {
        AuditID.stable((["weakening", binding.target, binding.resource.description] + driftKey(changes) + weakening.changes)
            .joined(separator: "\u{1}"))
    }

    /// The id a drift is held, blocked or escalated under in this episode: `id` (what the drift
    /// gives) until a fix used its approval, then the next of its line (`consumedApprovals`).
    /// The same drift held again after its approved fix is a new occurrence: recorded again
    /// (the old id's record is on the branch, and no record is written twice) and approved again
    /// (an approval counts for one fix), never held for ever under an id no approval can reach.
    public static func episode(_ id: String, in state: DesiredState) -> String {
        var id = id
        var steps = 0
        // Bounded as the approvals are: each approved recurrence is one more approval file.
        while state.consumedApprovals.contains(id), steps < episodeSteps {
            id = nextEpisode(id)
            steps += 1
        }
        return id
    }

    /// `episode(_:in:)` of `id` salted with the end of `binding`'s last drift
    /// (`DriftEpisodes.salted`): the same drift after it was found gone is a new occurrence.
    public static func episode(_ id: String, of binding: Binding, in state: DesiredState) -> String {
        episode(state.episodes.salted(id, for: binding), in: state)
    }

    /// How many approved recurrences of one drift `episode` follows.
    public static let episodeSteps = 4096

    /// The id of the drift's next episode, once a fix used the approval of `id`.
    public static func nextEpisode(_ id: String) -> String { AuditID.stable("again\u{1}" + id) }

    /// The id a held drift is approved by: the same target, resource, properties, observed and
    /// desired values always give the same id; a drift that changes gets a new one.
    public static func heldID(_ binding: Binding, _ changes: [PropertyDrift]) -> String {
        AuditID.stable((["held", binding.target, binding.resource.description] + driftKey(changes)).joined(separator: "\u{1}"))
    }

    /// The desired properties whose observed value differs (properties the observation left out
    /// do not apply on this target): property-level drift. A desired property whose name ends in `*` is a pattern: it stands
    /// for every observed property with that prefix (`ingress:*` for each security group an
    /// adapter found), so a kind can govern things that are only known once observed.
    ///
    /// (`isObserved`: whether `observation` holds a value, set or unset, for the property
    /// `name`; for a `*` property, for at least one name it covers.)
    static func isObserved(_ name: String, in observation: Observation) -> Bool {
        guard name.hasSuffix("*") else { return observation.values[name] != nil }
        let prefix = name.dropLast()
        return observation.values.keys.contains { $0.hasPrefix(prefix) }
    }

    public static func drift(_ desired: [DesiredProperty], _ observation: Observation) -> [PropertyDrift] {
        desired.flatMap { property -> [PropertyDrift] in
            let names: [String]
            if property.name.hasSuffix("*") {
                let prefix = property.name.dropLast()
                names = observation.values.keys.filter { $0.hasPrefix(prefix) }.sorted()
            } else {
                names = [property.name]
            }
            return names.compactMap { name in
                guard let observed = observation.values[name], observed != property.value else { return nil }
                return PropertyDrift(property: name, desired: property.value, observed: observed,
                                     sensitive: property.sensitive || observation.sensitive.contains(name))
            }
        }
    }
}
