internal import BulwarkCore
internal import BulwarkGit
internal import BulwarkServer
internal import Foundation
internal import Logging
internal import Metrics
internal import Prometheus

/// The long-running reconciler behind `bulwark run`: one owner of the policy clone and of every
/// cycle. Triggers (controller intervals, a new revision, a watched file, a finding) only mark
/// work as pending and wake the single worker, so cycles never overlap and a burst of triggers
/// is one cycle.
actor Daemon: DaemonControl {
    struct Settings: Sendable {
        var poll: Duration = .seconds(30)
        var debounce: Duration = .milliseconds(100)
        /// The shortest wait before retrying a controller that failed; doubled per failure, capped at its interval.
        var retryBase: Duration = .seconds(5)
    }

    let options: RepositoryOptions
    let settings: Settings
    let logger: Logger
    private let repository: PolicyRepository
    private let registry = Bulwark.registry()
    private lazy var reconciler = Reconciler(registry: registry)
    private let meters: DaemonMetrics
    let watcher: FileWatcher?

    // Desired state: the last good revision.
    private var state: DesiredState?
    private var head: ObjectID?
    private var sourceError: String?
    private var synced = false

    // Work waiting for the worker.
    private var pendingSource = false
    private var pendingAll = false
    private var pendingBindings = Set<Binding>()
    private var detections: [Binding: Date] = [:]
    private let wake: AsyncStream<Void>.Continuation
    let wakeups: AsyncStream<Void>

    // Schedule.
    private var nextRun: [String: Date] = [:]
    private var failures: [String: Int] = [:]
    private var nextPoll = Date()

    // What the status page shows.
    private var lastCycle: (at: Date, seconds: Double, error: String?)?
    private var open: [Binding: PlannedRemediation] = [:]
    private var recent: [(record: AuditRecord, commit: String?)] = []
    /// Remediations of the last week, for MTTR on the status page.
    private var history: [RemediationReport.Entry] = []
    /// Verified fixes within the longest flap period, for the flap breaker: read from the audit
    /// branch once per revision, then kept up to date from the daemon's own records.
    private var fixes: FixHistory?

    init(options: RepositoryOptions, settings: Settings, logger: Logger, registry: PrometheusCollectorRegistry) throws {
        self.options = options
        self.settings = settings
        self.logger = logger
        repository = try PolicyRepository(try options.configuration())
        meters = DaemonMetrics(registry: registry)
        watcher = try? FileWatcher()
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: - Triggers

    func requestSource() {
        pendingSource = true
        wake.yield()
    }

    func request(_ bindings: Set<Binding>) {
        guard !bindings.isEmpty else { return }
        pendingBindings.formUnion(bindings)
        wake.yield()
    }

    func requestAll() {
        pendingAll = true
        wake.yield()
    }

    /// Called on every tick of the scheduler: polls the source and runs controllers that are due.
    /// Returns how long the scheduler may sleep.
    func tick(now: Date = Date()) -> Duration {
        if now >= nextPoll {
            nextPoll = now.addingTimeInterval(settings.poll.timeInterval)
            requestSource()
        }
        guard let state else { return .seconds(1) }
        var due = Set<Binding>()
        for controller in state.controllers.values {
            let next = nextRun[controller.name] ?? now
            if now >= next {
                due.formUnion(state.bindings.filter { $0.controller == controller.name })
                nextRun[controller.name] = now.addingTimeInterval(jittered(controller.interval))
            }
        }
        request(due)
        let soonest = ([nextPoll] + Array(nextRun.values)).min() ?? now.addingTimeInterval(1)
        return .milliseconds(max(50, min(5000, Int(soonest.timeIntervalSince(now) * 1000))))
    }

    /// A file changed: the resources whose drift it can hold are re-observed. `seenAt`, when the
    /// watcher saw the first of these changes, is the detection time of any drift they hold, so
    /// MTTR counts the debounce too.
    func fileChanged(_ paths: Set<String>, seenAt: Date = Date()) {
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
        var files: [String: Set<Binding>] = [:]
        var folders: [String: Set<Binding>] = [:]
        var paths: [String] { Array(files.keys) + folders.keys.map { $0 + "/" } }
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
    func noteChanged(_ path: String) {
        changedPaths.insert(path)
        guard firstChangeAt == nil else { return }
        firstChangeAt = Date()
        Task {
            try? await Task.sleep(for: settings.debounce)
            await flushChanges()
        }
    }

    private func flushChanges() {
        let seenAt = firstChangeAt ?? Date()
        firstChangeAt = nil
        let paths = changedPaths
        changedPaths = []
        fileChanged(paths, seenAt: seenAt)
    }

    // MARK: - DaemonControl

    func readiness() -> (ready: Bool, reason: String) {
        guard synced, state != nil else { return (false, "source not synced yet" + (sourceError.map { ": \($0)" } ?? "")) }
        guard let lastCycle else { return (false, "no cycle has run yet") }
        if let error = lastCycle.error { return (false, "last cycle failed: \(error)") }
        return (true, "ready: revision \(head?.short ?? "?")")
    }

    func sourcePushed() {
        logger.info("push webhook verified; fetching")
        requestSource()
    }

    func received(_ findings: [Finding]) -> Int {
        guard let state else { return 0 }
        var matched = Set<Binding>()
        for finding in findings {
            for binding in state.bindings where finding.matches(binding) {
                matched.insert(binding)
                detections[binding] = min(detections[binding] ?? finding.firstObservedAt, finding.firstObservedAt)
            }
        }
        logger.info("findings received", metadata: ["findings": .stringConvertible(findings.count),
                                                    "matched": .stringConvertible(matched.count)])
        request(matched)
        return matched.count
    }

    func metrics() -> String {
        meters.setOpen(open.values.map { ($0.binding.controller, $0.severity.rawValue) })
        var buffer: [UInt8] = []
        meters.registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    // MARK: - The worker

    /// Runs what is pending, in order: the source first (a new revision replaces the work), then
    /// every pending resource in one cycle.
    func runPending() async {
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
        // Polling asks where the branches are first, and fetches only when one moved.
        if synced, sourceError == nil, !(await repository.remoteMoved()) { return false }
        do {
            let (newHead, stale) = try await repository.sync()
            if let stale { logger.warning("source", metadata: ["problem": .string(stale)]) }
            synced = true
            guard newHead != head else { return false }
            let files = try await repository.files(at: newHead)
            do {
                let loaded = try DesiredStateLoader(registry: registry).load(files, revision: newHead.hex)
                for warning in loaded.warnings { logger.warning("manifest", metadata: ["warning": .string(warning.description)]) }
                if let previous = head { meters.revision(previous.hex, active: false) }
                meters.revision(newHead.hex, active: true)
                state = loaded
                head = newHead
                fixes = nil
                sourceError = nil
                nextRun = [:]
                failures = [:]
                watchIndex = index(loaded)
                watcher?.watch(watchIndex.paths)
                logger.info("revision in force", metadata: ["revision": .string(newHead.short),
                                                            "bindings": .stringConvertible(loaded.bindings.count),
                                                            "watchedFolders": .stringConvertible(watcher?.watchedFolders ?? 0)])
                if history.isEmpty { await loadHistory() }
                return true
            } catch {
                sourceError = "revision \(newHead.short) refused: \(error)"
                head = head ?? nil
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
    }

    private func cycle(only: Set<Binding>?) async {
        guard var cycleState = state else { return }
        if let only { cycleState.bindings = cycleState.bindings.filter { only.contains($0) } }
        let started = Date()
        var cycleError: String?
        do {
            let window = started.addingTimeInterval(-cycleState.longestFlapPeriod.timeInterval)
            var known: FixHistory
            if let fixes { known = fixes } else { known = try await repository.recentFixes(since: window) }
            known.forget(before: window)
            fixes = known
            var plan = try await reconciler.plan(cycleState, history: known)
            for index in plan.remediations.indices {
                if let detected = detections[plan.remediations[index].binding], detected < plan.remediations[index].detectedAt {
                    plan.remediations[index].detectedAt = detected
                }
            }
            for binding in only ?? Set(cycleState.bindings) { detections[binding] = nil }
            for remediation in plan.remediations {
                meters.driftDetected(remediation)
            }
            let logger = self.logger
            let outcome = await reconciler.apply(plan, state: cycleState, audit: repository) { entry in
                let r = entry.record
                logger.info("decision", metadata: [
                    "target": .string(r.target), "resource": .string(r.resource), "decision": .string(r.decision.rawValue),
                    "result": .string(r.result?.rawValue ?? "-"), "audit": .string(entry.commit ?? (entry.alreadyRecorded ? "recorded-before" : "-")),
                    "id": .string(r.id),
                ])
            }
            for entry in outcome.entries where !entry.alreadyRecorded {
                fixes?.add(entry.record)
                meters.remediation(entry.record)
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
            var failedControllers = Set(plan.failures.map(\.binding.controller))
            failedControllers.formUnion(outcome.failed.map(\.remediation.binding.controller))
            let problems = plan.failures.map { "\($0.binding): \($0.message)" } + outcome.failed.map { "\($0.remediation.binding): \($0.record.error ?? "fix did not verify")" }
                + outcome.auditFailures
            for failure in plan.failures {
                logger.error("observation failed", metadata: ["target": .string(failure.binding.target),
                                                              "resource": .string(failure.binding.resource.description),
                                                              "error": .string(failure.message)])
            }
            if !problems.isEmpty { cycleError = problems.joined(separator: "; ") }
            backOff(failed: failedControllers, looked: Set(cycleState.bindings.map(\.controller)), now: started)
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
        let seconds = Date().timeIntervalSince(started)
        for controller in Set(cycleState.bindings.map(\.controller)) { meters.cycle(controller: controller, seconds: seconds) }
        lastCycle = (started, seconds, cycleError)
    }

    /// A controller that failed is retried sooner, with a wait that doubles per failure up to its
    /// interval; one that succeeded goes back to its interval.
    private func backOff(failed: Set<String>, looked: Set<String>, now: Date) {
        guard let state else { return }
        for name in looked {
            guard let controller = state.controllers[name] else { continue }
            if failed.contains(name) {
                let count = (failures[name] ?? 0) + 1
                failures[name] = count
                let wait = min(controller.interval.timeInterval, settings.retryBase.timeInterval * pow(2, Double(min(count - 1, 20))))
                nextRun[name] = now.addingTimeInterval(wait)
            } else {
                failures[name] = nil
            }
        }
    }

    private func jittered(_ interval: Duration) -> Double {
        interval.timeInterval * Double.random(in: 0.9...1.1)
    }

    /// Pushes what is left (SIGTERM), once the service has stopped the watcher and the worker.
    func shutdown() async {
        if case .keptLocally(let count, let reason) = (try? await repository.publish()) ?? .upToDate {
            logger.warning("audit commits kept locally for the next run", metadata: ["commits": .stringConvertible(count), "reason": .string(reason)])
        }
        wake.finish()
    }

    // MARK: - Status

    func statusJSON() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array((try? encoder.encode(status())) ?? Data("{}".utf8))
    }

    struct Status: Encodable {
        struct Item: Encodable {
            var target: String
            var resource: String
            var severity: String
            var decision: String
            var properties: [String]
        }
        struct Recent: Encodable {
            var id: String
            var target: String
            var resource: String
            var decision: String
            var result: String?
            var commit: String?
            var detectedAt: String
            var verifiedAt: String?
        }
        struct TargetInfo: Encodable {
            var name: String
            var adapter: String
            var resources: Int
        }
        var revision: String?
        var ready: Bool
        var readiness: String
        var sourceError: String?
        var lastCycleAt: String?
        var lastCycleSeconds: Double?
        var lastCycleError: String?
        var targets: [TargetInfo]
        var openDrift: [Item]
        var recent: [Recent]
        var mttrLastDay: RemediationReport.Summary
        var mttrLastWeek: RemediationReport.Summary
    }

    func status(now: Date = Date()) -> Status {
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
            revision: head?.hex, ready: ready, readiness: reason, sourceError: sourceError,
            lastCycleAt: lastCycle.map { Timestamp.format($0.at) }, lastCycleSeconds: lastCycle?.seconds, lastCycleError: lastCycle?.error,
            targets: targets, openDrift: openItems,
            recent: recent.reversed().prefix(30).map { r in
                Status.Recent(id: r.record.id, target: r.record.target, resource: r.record.resource, decision: r.record.decision.rawValue,
                              result: r.record.result?.rawValue, commit: r.commit, detectedAt: r.record.detectedAt, verifiedAt: r.record.verifiedAt)
            },
            mttrLastDay: RemediationReport(entries: history, since: now.addingTimeInterval(-86400), now: now, top: 0).mttr,
            mttrLastWeek: RemediationReport(entries: history, since: now.addingTimeInterval(-7 * 86400), now: now, top: 0).mttr)
    }

    func statusPage() -> String { StatusPage.render(status(), repository: options.displayURL) }
}

extension RemediationReport.Entry {
    init?(_ record: AuditRecord) {
        guard let detected = Timestamp.parse(record.detectedAt) else { return nil }
        self.init(target: record.target, resource: record.resource, controller: record.controller, severity: record.severity,
                  decision: record.decision, result: record.result, detectedAt: detected,
                  verifiedAt: record.verifiedAt.flatMap(Timestamp.parse))
    }
}
