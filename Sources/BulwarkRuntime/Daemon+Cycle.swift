internal import BulwarkCore
internal import Foundation
internal import Logging

/// One cycle of the daemon: plan the bindings asked for, apply through the core, and keep what
/// the status page, the flap breaker, the change budget and the scheduler learn from it.
extension Daemon {
    /// Holds back a fix that failed (`HeldFix`): one more failure of the same drift in a row,
    /// held twice as long as the last time.
    func hold(_ remediation: PlannedRemediation) {
        let fingerprint = Self.fingerprint(remediation.changes)
        let before = failedFixes[remediation.binding]
        let failures = before?.fingerprint == fingerprint ? (before?.failures ?? 0) + 1 : 1
        let interval = state?.controllers[remediation.binding.controller]?.interval ?? .seconds(300)
        failedFixes[remediation.binding] = HeldFix(fingerprint: fingerprint, failures: failures,
                                                   retryAt: clock.now() + HeldFix.hold(after: failures, interval: interval))
    }

    func cycle(only: Set<Binding>?) async {
        guard var cycleState = state else { return }
        if let only { cycleState.narrow { only.contains($0) } }
        if let leases = options.leases {
            // The pass's targets are kept (renewed, not given up) until `endPass`, even if they move.
            let held = leases.beginPass(over: Set(cycleState.bindings.map(\.target)))
            let asked = cycleState.bindings
            cycleState.narrow(toTargets: Set(held.keys)) { held[$0.target] != nil }
            // Targets another replica holds are its to judge: their problems are not this one's.
            health.looked(at: asked.filter { held[$0.target] == nil })
            let taken = leases.takeNewlyHeld()
            if !taken.isEmpty { await readPreviousOwners(of: taken) }
        }
        let started = clock.wall()
        let began = clock.now()
        var cycleError: String?
        do {
            let window = started.addingTimeInterval(-cycleState.longestFlapPeriod.timeInterval)
            // Taken out of `flapHistory` and given back after the plan, never two copies: the
            // records added after the pass change the only one in place.
            var known: FixHistory
            if let taken = flapHistory.take() { known = taken } else { known = try await readFlapHistory(since: window) }
            known.forget(before: window)
            var plan: Plan
            do {
                let repository = self.repository
                cycleState.episodes = try await repository.driftEpisodes()
                plan = try await reconciler.plan(cycleState, history: known, weakened: provenance.weakened, urgent: findingPriorities,
                                                 usedApproval: { (try? await repository.usedApproval($0)) == true })
            } catch {
                flapHistory.keep(consume known)
                throw error
            }
            flapHistory.keep(consume known)
            // An approval of a weakening by its own author is recorded as a refused approval is.
            if let head {
                for refusal in plan.refusedApprovals where !approvalRefusalsRecorded.contains(refusal.reason) {
                    approvalRefusalsRecorded.insert(refusal.reason)
                    await RevisionRefusal.record(of: head, errors: [refusal.reason], in: repository, console: Console())
                    logger.warning("approval refused", metadata: ["reason": .string(refusal.reason)])
                }
            }
            for binding in plan.inSync {
                lastInSync[binding] = started
                failedFixes[binding] = nil
                driftSeen[binding] = nil
            }
            // A fix that failed for this very drift is not tried again (nor recorded again) while it is held.
            var notRetried: [PlannedRemediation] = []
            let now = clock.now()
            plan.remediations.removeAll { remediation in
                guard remediation.decision == .applied, let held = failedFixes[remediation.binding],
                      held.fingerprint == Self.fingerprint(remediation.changes), now < held.retryAt else {
                    return false
                }
                var shown = remediation
                shown.decision = .deferred
                let seconds = now.duration(to: held.retryAt).components.seconds
                shown.reason = "the same fix failed before (\(held.failures) time\(held.failures == 1 ? "" : "s") in a row); tried again "
                    + "in \(seconds) s, or when the drift or the policy changes, or the daemon restarts"
                notRetried.append(shown)
                return true
            }
            if let full = state {
                budget.forget(olderThan: full.controllers.values.map(\.interval).max() ?? .seconds(0), now: clock.now())
                budget.limit(&plan.remediations, state: full, now: clock.now())
            }
            for index in plan.remediations.indices {
                if let detected = detections[plan.remediations[index].binding], detected < plan.remediations[index].detectedAt {
                    plan.remediations[index].detectedAt = detected
                }
            }
            for binding in only ?? Set(cycleState.bindings) { detections[binding] = nil; findingPriorities[binding] = nil }
            for remediation in plan.remediations + notRetried {
                let key = Self.fingerprint(remediation.changes)
                if driftSeen[remediation.binding] != key {
                    driftSeen[remediation.binding] = key
                    meters.driftDetected(remediation)
                }
            }
            let outcome = await apply(plan, state: cycleState)
            await journal.compact()
            if only == nil, let head {
                let held = provenance.advanceBaseline(to: head, after: plan, outcome: outcome, bindings: cycleState.bindings,
                                                      stateDirectory: options.stateDirectory)
                // Said once, and again when the reason changes: a weakening waiting for its
                // approval holds the baseline through every cycle until then.
                if let held, held != baselineHeld { logger.notice("\(held)") }
                baselineHeld = held
            }
            for entry in outcome.entries where !entry.alreadyRecorded {
                flapHistory.add(entry.record)
                meters.recorded(entry.record)
                if entry.record.decision == .applied {
                    budget.record(controller: entry.record.controller, target: entry.record.target, at: clock.now())
                    let binding = entry.remediation.binding
                    let overwritten = entry.record.overwrittenAfterFix ? (overwrittenFixes[binding] ?? 0) + 1 : 0
                    overwrittenFixes[binding] = overwritten == 0 ? nil : overwritten
                    let holdBack = entry.record.result == .failed && (overwritten == 0 || overwritten > Self.overwrittenRetries)
                    if holdBack { hold(entry.remediation) } else { failedFixes[binding] = nil }
                    // Fixed and verified: the same drift again is a new drift (an edit back), counted
                    // again even when no pass saw the binding in sync in between.
                    if entry.record.result == .verified {
                        lastInSync[entry.remediation.binding] = clock.wall()
                        driftSeen[entry.remediation.binding] = nil
                    }
                }
                recent.append((entry.record, entry.commit))
                if let historyEntry = RemediationReport.Entry(entry.record) { history.add(historyEntry) }
            }
            // A held fix tried again that failed as it did before (its record is there already):
            // held again, for longer.
            for entry in outcome.entries where entry.alreadyRecorded && entry.record.decision == .applied && entry.record.result == .failed {
                hold(entry.remediation)
            }
            if recent.count > 100 { recent.removeFirst(recent.count - 100) }
            history.forget(before: started.addingTimeInterval(-7 * 86400))
            // Fixes the plan wanted that the pass left undone (it halted): no entry, not found
            // fixed, not left to another Bulwark. They are open drift, and a standing problem.
            var accounted = Set(outcome.entries.map(\.remediation.binding))
            accounted.formUnion(outcome.inSync.map(\.binding))
            accounted.formUnion(outcome.busy.map(\.remediation.binding))
            let undone = outcome.halted == nil ? [] : plan.remediations.filter { !accounted.contains($0.binding) }
            // Open drift: what this cycle left unfixed, for the bindings it looked at.
            for binding in only ?? Set(cycleState.bindings) { open[binding] = nil }
            for entry in outcome.entries
            where entry.record.result != .verified && entry.record.decision != .unobserved && entry.record.decision != .resolved {
                open[entry.remediation.binding] = entry.remediation
            }
            for remediation in notRetried { open[remediation.binding] = remediation }
            // Another Bulwark holds the target: nothing tried, nothing recorded; tried again by a later cycle.
            for item in outcome.busy { open[item.remediation.binding] = item.remediation }
            for remediation in undone {
                var shown = remediation
                if shown.decision == .applied || shown.decision == .pruned {
                    shown.decision = .deferred
                    shown.reason = "not attempted: the pass stopped changing systems (\(outcome.halted ?? "")); tried again by the next cycle"
                }
                open[remediation.binding] = shown
            }
            meters.setOpen(Array(open.values))
            var failedControllers = Set(plan.failures.map(\.binding.controller))
            failedControllers.formUnion(outcome.failed.map(\.remediation.binding.controller))
            failedControllers.formUnion(outcome.busy.map(\.remediation.binding.controller))
            let problems = plan.failures.map { "\($0.binding): \($0.message)" } + outcome.failed.map { "\($0.remediation.binding): \($0.record.error ?? "fix did not verify")" }
                + outcome.auditFailures + (outcome.halted.map { ["stopped changing systems: \($0)"] } ?? [])
                + notRetried.map { "\($0.binding): \($0.reason ?? "a fix for this drift failed before")" }
                + outcome.busy.map { "\($0.remediation.binding): not applied, nothing recorded: \($0.reason)" }
            // Standing problems, per binding: set again for each binding this cycle looked at,
            // kept for the others (a small cycle does not clear a failure elsewhere).
            health.looked(at: cycleState.bindings)
            for failure in plan.failures { health.set(failure.binding, "observation failed: \(failure.message)") }
            for entry in outcome.entries where entry.record.result == .failed {
                health.set(entry.remediation.binding, "the fix did not verify: \(entry.record.error ?? "no error given")")
            }
            for remediation in notRetried {
                health.set(remediation.binding, "a fix for this drift failed before; held back: \(remediation.reason ?? "")")
            }
            for item in outcome.busy { health.set(item.remediation.binding, "not applied, nothing recorded: \(item.reason)") }
            for remediation in undone {
                health.set(remediation.binding, "left undone: the pass stopped changing systems (\(outcome.halted ?? ""))")
            }
            let unrecorded = outcome.entries.filter { $0.commit == nil && !$0.alreadyRecorded }
            for entry in unrecorded where health.problems[entry.remediation.binding] == nil {
                health.set(entry.remediation.binding, "its audit record was not committed")
            }
            var general: [String] = []
            if let halted = outcome.halted, undone.isEmpty { general.append("the last pass stopped changing systems: \(halted)") }
            if !outcome.auditFailures.isEmpty, unrecorded.isEmpty {
                general.append("audit records not committed: " + outcome.auditFailures.joined(separator: "; "))
            }
            health.setGeneral(general, wholeRevision: only == nil)
            for failure in plan.failures {
                meters.observationFailed(controller: failure.binding.controller)
                logger.error("observation failed", metadata: ["target": .string(failure.binding.target),
                                                              "resource": .string(failure.binding.resource.description),
                                                              "error": .string(failure.message)])
            }
            if let halted = outcome.halted {
                logger.error("the pass stopped changing systems; the fixes left undone are tried again by the next cycle",
                             metadata: ["reason": .string(halted), "notAttempted": .stringConvertible(undone.count)])
            }
            for failure in outcome.auditFailures {
                logger.error("audit record not committed", metadata: ["error": .string(failure)])
            }
            if !problems.isEmpty { cycleError = problems.joined(separator: "; ") }
            let looked = Set(cycleState.bindings.map(\.controller))
            // A halted pass left fixes undone: its controllers are retried as failed ones are.
            if outcome.halted != nil { failedControllers.formUnion(looked) }
            scheduler.backOff(failed: failedControllers, looked: looked, intervals: state?.controllers.mapValues(\.interval) ?? [:],
                              at: clock.now())
            await published(try await repository.publish())
        } catch {
            cycleError = "\(error)"
            logger.error("cycle failed", metadata: ["error": .string("\(error)")])
            // Retried soon, as a failed controller is (a new revision no longer makes every
            // controller due at the next tick: its own cycle counts as their run).
            let looked = Set(cycleState.bindings.map(\.controller))
            scheduler.backOff(failed: looked, looked: looked, intervals: state?.controllers.mapValues(\.interval) ?? [:], at: clock.now())
            for binding in cycleState.bindings { health.set(binding, "its cycle failed: \(error)") }
            if cycleState.bindings.isEmpty { health.setGeneral(["the last cycle failed: \(error)"], wholeRevision: only == nil) }
        }
        // The pass is over: targets that moved to another replica meanwhile are given up now.
        await options.leases?.endPass()
        let elapsed = began.duration(to: clock.now())
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        for controller in Set(cycleState.bindings.map(\.controller)) { meters.cycle(controller: controller, seconds: seconds) }
        lastCycle = (started, seconds, cycleError)
        cycles += 1
        // Only a cycle that leaves nothing standing (here or from an earlier cycle) counts as successful.
        if cycleError == nil, health.clean { meters.cycleSucceeded(at: clock.wall()) }
        if outbox != nil { notify.yield() }
        trimmer.afterCycle(at: clock.now())
    }

    /// What a push did: the unpushed audit commits (gauge, readiness) follow it.
    func published(_ publication: PolicyRepository.Publication) async {
        switch publication {
        case .upToDate:
            health.pushed()
        case .pushed:
            health.pushed()
            await repository.tidyPacks()
        case .keptLocally(let count, let reason, _):
            meters.pushFailed()
            health.keptLocally(count, reason: reason, at: clock.now(), wall: clock.wall())
            logger.warning("audit commits kept locally; pushed once the origin takes them (tried again at each poll)",
                           metadata: ["commits": .stringConvertible(count), "reason": .string(Redaction.urls(in: reason))])
        }
        meters.setUnpushed(health.unpushed?.count ?? 0)
        await trailChecked()
    }

    /// Asks where audit records go now (a push or a fetch may have found the audit branch
    /// rewritten, or put back): a diverted trail is logged once when it starts and when it ends,
    /// counted in `bulwark_audit_diverted` and given as a readiness reason until it ends.
    func trailChecked() async {
        let diverted = await repository.divertedTo
        guard diverted != auditDiverted else { return }
        if let diverted {
            logger.error("audit records go to a recovery branch, not to the audit branch", metadata: ["recovery": .string(diverted)])
        } else if let earlier = auditDiverted {
            logger.notice("audit records go to the audit branch again", metadata: ["recovery": .string(earlier)])
        }
        auditDiverted = diverted
        meters.setAuditDiverted(diverted != nil)
    }

    /// The readiness reason of a diverted trail: where the records are and what to do.
    static func divertedReason(_ recovery: String, auditBranch: String) -> String {
        "audit records go to \(recovery) on the origin, not to \(auditBranch): the origin's \(auditBranch) no longer holds "
            + "records this Bulwark pushed (rewritten or deleted; nothing was lost). Find out who changed it, then put the records "
            + "back with \(AuditTrail.restoreCommand(recovery: recovery, auditBranch: auditBranch)) (merged first where several "
            + "Bulwarks each wrote a recovery branch); Bulwark returns to \(auditBranch) at its next poll"
    }

    /// Carries out a cycle's plan through the core, logging each decision and writing the
    /// notifications its committed records call for to the outbox (delivered by their own loop,
    /// so a slow receiver never holds up a cycle). The daemon's only call to `Reconciler.apply`.
    func apply(_ plan: Plan, state cycleState: DesiredState) async -> CycleOutcome {
        let logger = self.logger
        let (outbox, notifiers, notify) = (self.outbox, self.notifiers, self.notify)
        let fenced = LeaseFencedJournal(base: journal, leases: options.leases)
        return await reconciler.apply(plan, state: cycleState, audit: repository, journal: fenced) { entry in
            let r = entry.record
            logger.info("decision", metadata: [
                "target": .string(r.target), "resource": .string(r.resource), "decision": .string(r.decision.rawValue),
                "result": .string(r.result?.rawValue ?? "-"), "audit": .string(entry.commit ?? (entry.alreadyRecorded ? "recorded-before" : "-")),
                "id": .string(r.id),
            ])
            if let outbox, entry.commit != nil,
               Outbox.enqueue(entry.record, commit: entry.commit, notifiers: notifiers, folder: outbox.folder) > 0 {
                notify.yield()
            }
        }
    }
}
