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
    private let repository: PolicyRepository
    private var registry: Registry { options.registry }
    private lazy var reconciler = Reconciler(registry: registry, clock: clock.wall)
    private let meters: DaemonMetrics
    package nonisolated let watcher: FileWatcher?

    // Desired state: the last good revision.
    private var state: DesiredState?
    private var head: ObjectID?
    private var sourceError: String?
    /// Why the newest revision was refused, while the last good one stays in force.
    private var refusal: String?
    private var synced = false
    /// The managed resources findings can name, read by the HTTP server without the actor.
    private let findings = Mutex(FindingIndex())

    // Work waiting for the worker.
    private var pendingSource = false
    private var pendingAll = false
    private var pendingBindings = Set<Binding>()
    private var detections: [Binding: Date] = [:]
    /// When each resource was last observed in sync: a finding cannot date drift before it.
    private var lastInSync: [Binding: Date] = [:]
    /// Limits over each controller's interval, across cycles.
    private var budget = ChangeBudget()
    /// The drift of a fix that failed, per resource: the same fix is not tried (and recorded)
    /// again until the drift, the revision or the daemon changes.
    private var failedFixes: [Binding: String] = [:]
    /// The drift open per resource, so that drift is counted once however often it is seen.
    private var driftSeen: [Binding: String] = [:]
    private var working = false
    private var cycles = 0
    // Notifications: written to the outbox as records are committed, delivered by their own loop.
    private var notifiers: [NotifierConfig] = []
    private var outbox: Outbox?
    private let notify: AsyncStream<Void>.Continuation
    package nonisolated let notifications: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    package nonisolated let wakeups: AsyncStream<Void>

    // Schedule (on the monotonic clock).
    private var scheduler: Scheduler
    private let startedAt: ContinuousClock.Instant
    /// Hands memory freed during a cycle back to the system (see `MemoryTrimmer`).
    private var trimmer = MemoryTrimmer()

    // What the status page shows.
    private var lastCycle: (at: Date, seconds: Double, error: String?)?
    private var open: [Binding: PlannedRemediation] = [:]
    private var recent: [(record: AuditRecord, commit: String?)] = []
    /// Remediations of the last week, for MTTR on the status page.
    private var history: [RemediationReport.Entry] = []
    /// Verified fixes within the longest flap period, for the flap breaker: read from the audit
    /// branch once per revision, then kept up to date from the daemon's own records.
    private var fixes: FixHistory?
    /// Intent before action: every fix is announced here before it is made.
    private let journal: FileJournal
    /// Whether the intents a killed process left open were resolved (before the first cycle).
    private var recovered = false
    /// Approvals as git proves them, and what weakened since the last applied revision.
    private var provenance = Provenance()

    package init(options: RuntimeOptions, settings: Settings, logger: Logger, registry: PrometheusCollectorRegistry,
                 clock: DaemonClock = .system) throws {
        self.options = options
        self.settings = settings
        self.logger = logger
        self.clock = clock
        scheduler = Scheduler(poll: settings.poll, retryBase: settings.retryBase)
        startedAt = clock.now()
        repository = try PolicyRepository(options.configuration)
        journal = FileJournal(stateDirectory: options.stateDirectory)
        meters = DaemonMetrics(registry: registry)
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

    // MARK: - Triggers

    package func requestSource() {
        pendingSource = true
        wake.yield()
    }

    package func request(_ bindings: Set<Binding>) {
        guard !bindings.isEmpty else { return }
        pendingBindings.formUnion(bindings)
        wake.yield()
    }

    package func requestAll() {
        pendingAll = true
        wake.yield()
    }

    /// Called on every tick of the scheduler: polls the source and runs controllers that are due
    /// (see `Scheduler`, on the monotonic clock). Returns how long the scheduler may sleep.
    package func tick() -> Duration {
        let due = scheduler.tick(at: clock.now(), intervals: state?.controllers.mapValues(\.interval) ?? [:])
        if due.source { requestSource() }
        if let state, !due.controllers.isEmpty {
            request(Set(state.bindings.filter { due.controllers.contains($0.controller) }))
        }
        return due.sleep
    }

    /// A file changed: the resources whose drift it can hold are re-observed. `seenAt`, when the
    /// watcher saw the first of these changes, is the detection time of any drift they hold, so
    /// MTTR counts the debounce too.
    package func fileChanged(_ paths: Set<String>, seenAt: Date = Date()) {
        var hit = Set<Binding>()
        for path in paths {
            hit.formUnion(watchIndex.files[path] ?? [])
            // A change inside a watched folder (or to the folder itself).
            var folder = path
            while !folder.isEmpty {
                hit.formUnion(watchIndex.folders[folder] ?? [])
                guard let slash = folder.lastIndex(of: "/") else { break }
                folder = String(folder[..<slash])
            }
        }
        if !hit.isEmpty {
            logger.debug("watched file changed", metadata: ["paths": .string(paths.sorted().joined(separator: ",")),
                                                            "resources": .stringConvertible(hit.count)])
        }
        for binding in hit { detections[binding] = min(detections[binding] ?? seenAt, seenAt) }
        request(hit)
    }

    /// Which bindings each watched file and folder can drift, built once per revision.
    private struct WatchIndex {
        package var files: [String: Set<Binding>] = [:]
        package var folders: [String: Set<Binding>] = [:]
        package var paths: [String] { Array(files.keys) + folders.keys.map { $0 + "/" } }
    }
    private var watchIndex = WatchIndex()

    private func index(_ state: DesiredState) -> WatchIndex {
        var index = WatchIndex()
        for binding in state.bindings {
            guard let resource = state.resources[binding.resource], let target = state.targets[binding.target],
                  let kind = registry.kinds[resource.id.kind] else { continue }
            for path in kind.driver.watchedPaths(resource, on: target) {
                if path.hasSuffix("/") {
                    index.folders[String(path.dropLast()), default: []].insert(binding)
                } else {
                    index.files[path, default: []].insert(binding)
                }
            }
        }
        return index
    }

    private var changedPaths = Set<String>()
    private var firstChangeAt: Date?

    /// A watched path changed: after the debounce, everything that changed is one request.
    package func noteChanged(_ path: String) {
        changedPaths.insert(path)
        guard firstChangeAt == nil else { return }
        firstChangeAt = clock.wall()
        Task {
            try? await Task.sleep(for: settings.debounce)
            await flushChanges()
        }
    }

    private func flushChanges() {
        let seenAt = firstChangeAt ?? clock.wall()
        firstChangeAt = nil
        let paths = changedPaths
        changedPaths = []
        fileChanged(paths, seenAt: seenAt)
    }

    // MARK: - DaemonControl

    package func readiness() -> (ready: Bool, reason: String) {
        guard synced, state != nil else { return (false, "source not synced yet" + (sourceError.map { ": \($0)" } ?? "")) }
        if let refusal { return (false, "\(refusal); revision \(head?.short ?? "?") stays in force") }
        guard let lastCycle else { return (false, "no cycle has run yet") }
        if let error = lastCycle.error { return (false, "last cycle failed: \(error)") }
        if let overdue = scheduler.overdue(at: clock.now(), startedAt: startedAt) { return (false, overdue) }
        return (true, "ready: revision \(head?.short ?? "?")")
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

    package func metrics() -> String {
        meters.setOpen(Array(open.values))
        var buffer: [UInt8] = []
        meters.registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
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

    /// Fetches and loads the head revision; returns whether a new good revision is in force. An
    /// invalid revision is refused and reported; the last good one stays.
    private func sync() async -> Bool {
        defer { scheduler.sourceChecked(at: clock.now()) }
        if !synced {
            for repair in await repository.repairs { logger.warning("state directory repaired", metadata: ["repair": .string(repair)]) }
        }
        // Polling asks where the branches are first, and fetches only when one moved.
        if synced, sourceError == nil, !(await repository.remoteMoved()) { return false }
        do {
            let (newHead, stale) = try await repository.sync()
            if let stale { logger.warning("source", metadata: ["problem": .string(stale)]) }
            let tampering = await repository.takeTampering()
            for problem in tampering {
                logger.error("the audit branch on the origin was tampered with", metadata: ["problem": .string(problem)])
                meters.auditTampered()
            }
            // The record of it, and the records the origin lost, go out now rather than after the next cycle.
            if !tampering.isEmpty, case .keptLocally(_, let reason) = try await repository.publish() {
                logger.warning("the record of the tampering is kept locally; pushed on the next cycle", metadata: ["reason": .string(reason)])
            }
            synced = true
            guard newHead != head else { return false }
            let files = try await repository.files(at: newHead)
            do {
                if let verification = options.sourceVerification {
                    let outcome = try await verification.verify(head: newHead, repository: repository, stateDirectory: options.stateDirectory)
                    if let note = outcome.note { logger.warning("source", metadata: ["signatures": .string(note)]) }
                }
                    var loaded = try DesiredStateLoader(registry: registry).load(files, revision: newHead.hex)
                for warning in loaded.warnings { logger.warning("manifest", metadata: ["warning": .string(warning.description)]) }
                let provenance = await Provenance.establish(&loaded, head: newHead, repository: repository, registry: registry,
                                                            stateDirectory: options.stateDirectory,
                                                            verification: options.sourceVerification)
                await provenance.recordRefusals(head: newHead, in: repository, console: Console())
                // Intents a killed process left open are resolved and recorded before anything acts.
                if !recovered {
                    do {
                        for entry in try await reconciler.recover(journal: journal, state: loaded, audit: repository) {
                            logger.warning("recorded an interrupted fix of an earlier run",
                                           metadata: ["target": .string(entry.record.target), "resource": .string(entry.record.resource),
                                                      "result": .string(entry.record.result?.rawValue ?? "-")])
                        }
                        recovered = true
                    } catch {
                        sourceError = "cannot resolve the open intents in \(options.stateDirectory)/intents.log: \(error); nothing is changed until it can"
                        logger.error("open intents cannot be resolved; nothing is changed", metadata: ["error": .string("\(error)")])
                        return false
                    }
                }
                self.provenance = provenance
                meters.revision(newHead.hex, state: loaded)
                state = loaded
                head = newHead
                fixes = nil
                sourceError = nil
                refusal = nil
                failedFixes = [:]
                findings.withLock { $0 = FindingIndex(bindings: loaded.bindings) }
                notifiers = loaded.notifiers
                do {
                    outbox = notifiers.isEmpty ? nil : try Outbox(stateDirectory: options.stateDirectory, notifiers: notifiers)
                } catch {
                    outbox = nil
                    logger.error("notifications disabled: the outbox cannot be created", metadata: ["error": .string("\(error)")])
                }
                scheduler.restart()
                watchIndex = index(loaded)
                watcher?.watch(watchIndex.paths)
                logger.info("revision in force", metadata: ["revision": .string(newHead.short),
                                                            "bindings": .stringConvertible(loaded.bindings.count),
                                                            "watchedFolders": .stringConvertible(watcher?.watchedFolders ?? 0)])
                if history.isEmpty { await loadHistory() }
                return true
            } catch {
                sourceError = "revision \(newHead.short) refused: \(error)"
                refusal = "revision \(newHead.short) refused: \(error)"
                let errors = (error as? ValidationFailure)?.errors.map(\.description)
                    ?? (error as? SourceVerification.Refusal)?.problems ?? ["\(error)"]
                await RevisionRefusal.record(of: newHead, errors: errors, in: repository, console: Console())
                logger.error("revision refused; the last good revision stays in force",
                             metadata: ["revision": .string(newHead.short), "errors": .string("\(error)")])
                return false
            }
        } catch {
            sourceError = "\(error)"
            logger.error("source sync failed", metadata: ["error": .string("\(error)")])
            return false
        }
    }

    private func loadHistory() async {
        guard let commits = try? await repository.auditHistory(limit: 10_000) else { return }
        history = commits.reversed().compactMap(RemediationReport.Entry.init)
        // A restart does not renew the controllers' budgets: fixes of the last interval count.
        for entry in history where entry.decision == .applied {
            budget.record(controller: entry.controller, target: entry.target, at: clock.instant(ofWall: entry.verifiedAt ?? entry.detectedAt))
        }
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

    private func cycle(only: Set<Binding>?) async {
        guard var cycleState = state else { return }
        if let only { cycleState.bindings = cycleState.bindings.filter { only.contains($0) } }
        let started = clock.wall()
        let began = clock.now()
        var cycleError: String?
        do {
            let window = started.addingTimeInterval(-cycleState.longestFlapPeriod.timeInterval)
            var known: FixHistory
            if let fixes { known = fixes } else { known = try await repository.recentFixes(since: window) }
            known.forget(before: window)
            fixes = known
            var plan = try await reconciler.plan(cycleState, history: known, weakened: provenance.weakened)
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
            for binding in only ?? Set(cycleState.bindings) { detections[binding] = nil }
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
                    failedFixes[entry.remediation.binding] = entry.record.result == .failed ? Self.fingerprint(entry.remediation.changes) : nil
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
            var failedControllers = Set(plan.failures.map(\.binding.controller))
            failedControllers.formUnion(outcome.failed.map(\.remediation.binding.controller))
            let problems = plan.failures.map { "\($0.binding): \($0.message)" } + outcome.failed.map { "\($0.remediation.binding): \($0.record.error ?? "fix did not verify")" }
                + outcome.auditFailures + (outcome.halted.map { ["stopped changing systems: \($0)"] } ?? [])
                + notRetried.map { "\($0.binding): a fix for this drift failed before; not retried until the drift or the policy changes" }
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
    private func apply(_ plan: Plan, state cycleState: DesiredState) async -> CycleOutcome {
        let logger = self.logger
        let (outbox, notifiers, notify) = (self.outbox, self.notifiers, self.notify)
        return await reconciler.apply(plan, state: cycleState, audit: repository, journal: journal) { entry in
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

    // MARK: - Status

    package func statusJSON() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array((try? encoder.encode(status())) ?? Data("{}".utf8))
    }

    package struct Status: Encodable {
        package struct Item: Encodable {
            package var target: String
            package var resource: String
            package var severity: String
            package var decision: String
            package var properties: [String]
        }
        package struct Recent: Encodable {
            package var id: String
            package var target: String
            package var resource: String
            package var decision: String
            package var result: String?
            package var commit: String?
            package var detectedAt: String
            package var verifiedAt: String?
        }
        package struct TargetInfo: Encodable {
            package var name: String
            package var adapter: String
            package var resources: Int
        }
        /// `JSONSchema.version` (docs/schemas/status.schema.json).
        package var schemaVersion = 1
        package var revision: String?
        /// A cycle is running or waiting to run.
        package var busy: Bool
        /// Cycles run since the start.
        package var cycles: Int
        package var ready: Bool
        package var readiness: String
        package var sourceError: String?
        package var lastCycleAt: String?
        package var lastCycleSeconds: Double?
        package var lastCycleError: String?
        package var targets: [TargetInfo]
        package var openDrift: [Item]
        package var recent: [Recent]
        package var mttrLastDay: RemediationReport.Summary
        package var mttrLastWeek: RemediationReport.Summary
    }

    package func status(now: Date = Date()) -> Status {
        let (ready, reason) = readiness()
        var bound: [String: Int] = [:]
        for binding in state?.bindings ?? [] { bound[binding.target, default: 0] += 1 }
        let targets = (state?.targets.values.sorted { $0.name < $1.name } ?? []).map { target in
            Status.TargetInfo(name: target.name, adapter: target.adapter, resources: bound[target.name] ?? 0)
        }
        let openItems = open.values.sorted { ($0.risk, $1.binding) > ($1.risk, $0.binding) }.map {
            Status.Item(target: $0.binding.target, resource: $0.binding.resource.description, severity: $0.severity.rawValue,
                        decision: $0.decision.rawValue, properties: $0.changes.map { "\($0.property): \($0.shownObserved) -> \($0.shownDesired)" })
        }
        return Status(
            revision: head?.hex, busy: working || pendingSource || pendingAll || !pendingBindings.isEmpty, cycles: cycles, ready: ready, readiness: reason, sourceError: sourceError,
            lastCycleAt: lastCycle.map { Timestamp.format($0.at) }, lastCycleSeconds: lastCycle.map { RemediationReport.seconds($0.seconds) }, lastCycleError: lastCycle?.error,
            targets: targets, openDrift: openItems,
            recent: recent.reversed().prefix(30).map { r in
                Status.Recent(id: r.record.id, target: r.record.target, resource: r.record.resource, decision: r.record.decision.rawValue,
                              result: r.record.result?.rawValue, commit: r.commit, detectedAt: r.record.detectedAt, verifiedAt: r.record.verifiedAt)
            },
            mttrLastDay: RemediationReport(entries: history, since: now.addingTimeInterval(-86400), now: now, top: 0).mttr,
            mttrLastWeek: RemediationReport(entries: history, since: now.addingTimeInterval(-7 * 86400), now: now, top: 0).mttr)
    }

    package func statusPage() -> String { StatusPage.render(status(), repository: options.displayURL) }
}

extension RemediationReport.Entry {
    package init?(_ record: AuditRecord) {
        guard let detected = Timestamp.parse(record.detectedAt) else { return nil }
        self.init(target: record.target, resource: record.resource, controller: record.controller, severity: record.severity,
                  decision: record.decision, result: record.result, detectedAt: detected,
                  verifiedAt: record.verifiedAt.flatMap(Timestamp.parse))
    }
}
