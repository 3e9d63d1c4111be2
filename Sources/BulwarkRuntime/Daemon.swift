package import BulwarkCore
package import BulwarkGit
package import BulwarkServer
package import Foundation
package import Logging
package import Metrics
package import Prometheus
package import Synchronization

/// The long-running reconciler behind `bulwark run`: one owner of the policy clone and of every
/// cycle. Triggers (controller intervals, a new revision, a watched file, a finding) only mark
/// work as pending and wake the single worker, so cycles never overlap and a burst of triggers
/// is one cycle.
package actor Daemon: DaemonControl {
    package struct Settings: Sendable {
        package var poll: Duration = .seconds(30)
        package var debounce: Duration = .milliseconds(100)
        /// The shortest wait before retrying a controller that failed; doubled per failure, capped at its interval.
        package var retryBase: Duration = .seconds(5)
        /// Each poll comes up to this share of `poll` early, at random: agents do not poll in lockstep.
        package var pollJitter = 0.0

        package init(poll: Duration = .seconds(30), debounce: Duration = .milliseconds(100), retryBase: Duration = .seconds(5)) {
            self.poll = poll
            self.debounce = debounce
            self.retryBase = retryBase
        }
    }

    package nonisolated let options: RuntimeOptions
    package nonisolated let settings: Settings
    package nonisolated let logger: Logger
    /// Monotonic time for every interval and wait, wall-clock time only for what records say.
    package nonisolated let clock: DaemonClock
    let repository: PolicyRepository
    var registry: Registry { options.registry }
    lazy var reconciler = Reconciler(registry: registry, clock: clock.wall)
    let meters: DaemonMetrics
    package nonisolated let watcher: FileWatcher?

    // Desired state: the last good revision.
    var state: DesiredState?
    var head: ObjectID?
    var sourceError: String?
    /// Why the newest revision was refused, while the last good one stays in force.
    var refusal: String?
    var synced = false
    /// The managed resources findings can name, read by the HTTP server without the actor.
    let findings = Mutex(FindingIndex())

    // Work waiting for the worker.
    var pendingSource = false
    var pendingAll = false
    var pendingBindings = Set<Binding>()
    var detections: [Binding: Date] = [:]
    /// When each resource was last observed in sync: a finding cannot date drift before it.
    var lastInSync: [Binding: Date] = [:]
    /// Limits over each controller's interval, across cycles.
    var budget = ChangeBudget()
    /// The drift of a fix that failed, per resource: the same fix is not tried (and recorded)
    /// again until the drift, the revision or the daemon changes.
    var failedFixes: [Binding: String] = [:]
    /// Fixes undone by another writer before their verification, in a row per resource: tried
    /// again by the next cycle, at most `Daemon.overwrittenRetries` times, then held back as a
    /// failed fix (a writer that undoes every fix is a fight, not a race).
    var overwrittenFixes: [Binding: Int] = [:]
    static let overwrittenRetries = 3
    /// The drift open per resource, so that drift is counted once however often it is seen.
    var driftSeen: [Binding: String] = [:]
    /// The highest priority of the findings that named each binding since its last cycle (see `prioritize`).
    var findingPriorities: [Binding: Priority] = [:]
    var working = false
    var cycles = 0
    // Notifications: written to the outbox as records are committed, delivered by their own loop.
    var notifiers: [NotifierConfig] = []
    var outbox: Outbox?
    let notify: AsyncStream<Void>.Continuation
    package nonisolated let notifications: AsyncStream<Void>
    let wake: AsyncStream<Void>.Continuation
    package nonisolated let wakeups: AsyncStream<Void>

    // Schedule (on the monotonic clock).
    var scheduler: Scheduler
    let startedAt: ContinuousClock.Instant
    /// Hands memory freed during a cycle back to the system (see `MemoryTrimmer`).
    var trimmer = MemoryTrimmer()

    // What the status page shows.
    var lastCycle: (at: Date, seconds: Double, error: String?)?
    var open: [Binding: PlannedRemediation] = [:]
    var recent: [(record: AuditRecord, commit: String?)] = []
    /// Remediations of the last week, for MTTR on the status page.
    var history: [RemediationReport.Entry] = []
    /// Verified fixes within the longest flap period, for the flap breaker: read from the audit
    /// branch once per revision, then kept up to date from the daemon's own records.
    var fixes: FixHistory?
    /// Intent before action: every fix is announced here before it is made.
    let journal: FileJournal
    /// Whether the intents a killed process left open were resolved (before the first cycle).
    var recovered = false
    /// Approvals as git proves them, and what weakened since the last applied revision.
    var provenance = Provenance()

    package init(options: RuntimeOptions, settings: Settings, logger: Logger, registry: PrometheusCollectorRegistry,
                 clock: DaemonClock = .system) throws {
        self.options = options
        self.settings = settings
        self.logger = logger
        self.clock = clock
        scheduler = Scheduler(poll: settings.poll, retryBase: settings.retryBase)
        scheduler.pollJitter = min(max(settings.pollJitter, 0), 0.5)
        startedAt = clock.now()
        repository = try PolicyRepository(options.configuration)
        journal = FileJournal(stateDirectory: options.stateDirectory)
        meters = DaemonMetrics(registry: registry)
        // The open-drift gauges are kept current as the drift changes (the server only emits them).
        meters.setOpen([])
        do {
            watcher = try FileWatcher()
        } catch {
            // Not fatal: drift is still found by the controllers' intervals, only later.
            logger.warning("cannot watch managed files (\(error)); drift is found at each controller's interval instead")
            watcher = nil
        }
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (notifications, notify) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // The watch index of the revision in force, and the changed paths waiting for the debounce.
    var watchIndex = WatchIndex()
    var changedPaths = Set<String>()
    var firstChangeAt: Date?

    // MARK: - DaemonControl

    package func readiness() -> (ready: Bool, reason: String) {
        guard synced, state != nil else { return (false, "source not synced yet" + (sourceError.map { ": \($0)" } ?? "")) }
        if let refusal { return (false, "\(refusal); revision \(head?.short ?? "?") stays in force") }
        guard let lastCycle else { return (false, "no cycle has run yet") }
        if let error = lastCycle.error { return (false, "last cycle failed: \(error)") }
        if let overdue = scheduler.overdue(at: clock.now(), startedAt: startedAt) { return (false, overdue) }
        return (true, "ready: revision \(head?.short ?? "?")")
    }

    /// Why the daemon looks hung, or nil while its scheduler runs: what systemd's watchdog is
    /// fed on (a source that cannot be reached is a readiness problem, not a hang).
    package func stalled() -> String? {
        scheduler.stalled(at: clock.now())
    }

    package func sourcePushed() {
        logger.info("push webhook verified; fetching")
        requestSource()
    }

    package nonisolated func findingIndex() -> FindingIndex {
        findings.withLock { $0 }
    }

    /// Findings named these resources: each is reconciled at once. A finding's first-observed
    /// time starts the MTTR clock, but never before the resource was last observed in sync.
    package func received(_ matched: [Binding: Date]) {
        for (binding, firstObserved) in matched {
            let detected = max(firstObserved, lastInSync[binding] ?? .distantPast)
            detections[binding] = min(detections[binding] ?? detected, detected)
        }
        request(Set(matched.keys))
    }

    // MARK: - The worker

    /// Runs what is pending, in order: the source first (a new revision replaces the work), then
    /// every pending resource in one cycle.
    package func runPending() async {
        working = true
        defer { working = false }
        if pendingSource {
            pendingSource = false
            if await sync() { pendingAll = true }
        }
        guard state != nil else { return }
        let all = pendingAll
        let bindings = pendingBindings
        pendingAll = false
        pendingBindings = []
        guard all || !bindings.isEmpty else { return }
        await cycle(only: all ? nil : bindings)
    }

    /// What a drift is, for telling the same drift from a new one.
    package static func fingerprint(_ changes: [PropertyDrift]) -> String {
        changes.map { "\($0.property)=\($0.observed ?? "\u{0}")>\($0.desired)" }.sorted().joined(separator: "\u{1}")
    }

    /// Delivers what the outbox holds; what cannot be delivered stays for the next round.
    package func deliverNotifications() async {
        guard let outbox else { return }
        let result = await outbox.deliver(until: .now + .seconds(2))
        meters.notifications(delivered: result.delivered, failed: result.errors.count)
        if let last = result.errors.last {
            logger.warning("notifications kept in the outbox for a later round",
                           metadata: ["pending": .stringConvertible(result.pending), "error": .string(last)])
        }
    }

    func cycle(only: Set<Binding>?) async {
        guard var cycleState = state else { return }
        if let only { cycleState.narrow { only.contains($0) } }
        if let leases = options.leases {
            let held = leases.beginPass()
            cycleState.narrow(toTargets: Set(held.keys)) { held[$0.target] != nil }
            let taken = leases.takeNewlyHeld()
            if !taken.isEmpty { await readPreviousOwners(of: taken) }
        }
        let started = clock.wall()
        let began = clock.now()
        var cycleError: String?
        do {
            let window = started.addingTimeInterval(-cycleState.longestFlapPeriod.timeInterval)
            var known: FixHistory
            if let fixes { known = fixes } else { known = try await repository.recentFixes(since: window) }
            known.forget(before: window)
            fixes = known
            var plan = try await reconciler.plan(cycleState, history: known, weakened: provenance.weakened, urgent: findingPriorities)
            for binding in plan.inSync {
                lastInSync[binding] = started
                failedFixes[binding] = nil
                driftSeen[binding] = nil
            }
            // A fix that failed for this very drift is not tried again (nor recorded again).
            var notRetried: [PlannedRemediation] = []
            plan.remediations.removeAll { remediation in
                guard remediation.decision == .applied, failedFixes[remediation.binding] == Self.fingerprint(remediation.changes) else {
                    return false
                }
                var shown = remediation
                shown.decision = .deferred
                shown.reason = "the same fix failed before; retried when the drift or the policy changes, or the daemon restarts"
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
            if only == nil, let head { provenance.advanceBaseline(to: head, after: plan, stateDirectory: options.stateDirectory) }
            for entry in outcome.entries where !entry.alreadyRecorded {
                fixes?.add(entry.record)
                meters.recorded(entry.record)
                if entry.record.decision == .applied {
                    budget.record(controller: entry.record.controller, target: entry.record.target, at: clock.now())
                    let binding = entry.remediation.binding
                    let overwritten = entry.record.overwrittenAfterFix ? (overwrittenFixes[binding] ?? 0) + 1 : 0
                    overwrittenFixes[binding] = overwritten == 0 ? nil : overwritten
                    let holdBack = entry.record.result == .failed && (overwritten == 0 || overwritten > Self.overwrittenRetries)
                    failedFixes[binding] = holdBack ? Self.fingerprint(entry.remediation.changes) : nil
                    if entry.record.result == .verified { lastInSync[entry.remediation.binding] = clock.wall() }
                }
                recent.append((entry.record, entry.commit))
                if let historyEntry = RemediationReport.Entry(entry.record) { history.append(historyEntry) }
            }
            if recent.count > 100 { recent.removeFirst(recent.count - 100) }
            let weekAgo = started.addingTimeInterval(-7 * 86400)
            history.removeAll { $0.detectedAt < weekAgo }
            // Open drift: what this cycle left unfixed, for the bindings it looked at.
            for binding in only ?? Set(cycleState.bindings) { open[binding] = nil }
            for entry in outcome.entries where entry.record.result != .verified {
                open[entry.remediation.binding] = entry.remediation
            }
            for remediation in notRetried { open[remediation.binding] = remediation }
            // Another Bulwark holds the target: nothing tried, nothing recorded; tried again by a later cycle.
            for item in outcome.busy { open[item.remediation.binding] = item.remediation }
            meters.setOpen(Array(open.values))
            var failedControllers = Set(plan.failures.map(\.binding.controller))
            failedControllers.formUnion(outcome.failed.map(\.remediation.binding.controller))
            failedControllers.formUnion(outcome.busy.map(\.remediation.binding.controller))
            let problems = plan.failures.map { "\($0.binding): \($0.message)" } + outcome.failed.map { "\($0.remediation.binding): \($0.record.error ?? "fix did not verify")" }
                + outcome.auditFailures + (outcome.halted.map { ["stopped changing systems: \($0)"] } ?? [])
                + notRetried.map { "\($0.binding): a fix for this drift failed before; not retried until the drift or the policy changes" }
                + outcome.busy.map { "\($0.remediation.binding): not applied, nothing recorded: \($0.reason)" }
            for failure in plan.failures {
                meters.observationFailed(controller: failure.binding.controller)
                logger.error("observation failed", metadata: ["target": .string(failure.binding.target),
                                                              "resource": .string(failure.binding.resource.description),
                                                              "error": .string(failure.message)])
            }
            if !problems.isEmpty { cycleError = problems.joined(separator: "; ") }
            scheduler.backOff(failed: failedControllers, looked: Set(cycleState.bindings.map(\.controller)),
                              intervals: state?.controllers.mapValues(\.interval) ?? [:], at: clock.now())
            switch try await repository.publish() {
            case .upToDate, .pushed: break
            case .keptLocally(let count, let reason):
                meters.pushFailed()
                logger.warning("audit commits kept locally; pushed on the next cycle",
                               metadata: ["commits": .stringConvertible(count), "reason": .string(reason)])
            }
        } catch {
            cycleError = "\(error)"
            logger.error("cycle failed", metadata: ["error": .string("\(error)")])
        }
        let elapsed = began.duration(to: clock.now())
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        for controller in Set(cycleState.bindings.map(\.controller)) { meters.cycle(controller: controller, seconds: seconds) }
        lastCycle = (started, seconds, cycleError)
        cycles += 1
        if cycleError == nil { meters.cycleSucceeded(at: clock.wall()) }
        if outbox != nil { notify.yield() }
        trimmer.afterCycle(at: clock.now())
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

    /// Pushes what is left (SIGTERM), once the service has stopped the watcher and the worker.
    package func shutdown() async {
        if case .keptLocally(let count, let reason) = (try? await repository.publish()) ?? .upToDate {
            logger.warning("audit commits kept locally for the next run", metadata: ["commits": .stringConvertible(count), "reason": .string(reason)])
        }
        wake.finish()
        notify.finish()
    }

}
