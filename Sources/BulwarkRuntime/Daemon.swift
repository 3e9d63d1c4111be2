package import BulwarkCore
import BulwarkGit
import BulwarkServer
package import Foundation
package import Logging
import Metrics
package import Prometheus
import Synchronization

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

        /// How long fetches of the source may fail, or audit commits wait unpushed, before the
        /// daemon is not ready: twice the poll interval and a minute (as for a source not checked).
        package var staleAfter: Duration { poll * 2 + .seconds(60) }

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
    /// When the revision in force's desired values change with time (`DesiredState.changesAt`),
    /// found once when it comes into force rather than at every poll.
    var changesAt: Date?
    /// The expiry the revision in force was last read again for: a read that failed is not
    /// tried again every poll.
    var reloadedFor: Date?
    var sourceError: String?
    /// Why the newest revision was refused, while the last good one stays in force.
    var refusal: String?
    /// The pause in force came from a refused revision (`brake(fromRefused:)`), not from the
    /// revision in force.
    var pausedFromRefused = false
    /// The refusal last logged: a revision refused again at every poll is logged once.
    var loggedRefusal: String?
    var synced = false
    /// The recovery branch audit records go to while the origin's audit branch lost records
    /// (`PolicyRepository.divertedTo`), as last asked: a readiness reason until it ends.
    var auditDiverted: String?
    /// The managed resources findings can name, read by the HTTP server without the actor.
    let findings = Mutex(FindingIndex())

    // Work waiting for the worker.
    var pendingSource = false
    var pendingAll = false
    var pendingBindings = Set<Binding>()
    var detections: [Binding: Date] = [:]
    /// When each resource was last observed in sync: a finding cannot date drift before it.
    var lastInSync: [Binding: Date] = [:]
    /// Why the last whole cycle left the last applied revision where it was, as logged.
    var baselineHeld: String?
    /// Limits over each controller's interval, across cycles.
    var budget = ChangeBudget()
    /// A fix that failed, per resource: the same fix is not tried again until the drift, the
    /// revision or the daemon changes, or its hold ends (`HeldFix`).
    var failedFixes: [Binding: HeldFix] = [:]
    /// Fixes undone by another writer before their verification, in a row per resource: tried
    /// again by the next cycle, at most `Daemon.overwrittenRetries` times, then held back as a
    /// failed fix (a writer that undoes every fix is a fight, not a race).
    var overwrittenFixes: [Binding: Int] = [:]
    static let overwrittenRetries = 3
    /// What stands between the daemon and ready beyond one cycle: per binding problems, the
    /// source's failing fetches, unpushed audit commits (see `DaemonHealth`).
    var health = DaemonHealth()
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
    /// Remediations of the last week, for MTTR on the status page (bounded: see `MTTRHistory`).
    var history = MTTRHistory()
    /// Verified fixes within the longest flap period, for the flap breaker (see `FlapHistory`).
    var flapHistory = FlapHistory()
    /// Intent before action: every fix is announced here before it is made.
    let journal: FileJournal
    /// Whether the intents a killed process left open were resolved (before the first cycle).
    var recovered = false
    /// Approvals as git proves them, and what weakened since the last applied revision.
    var provenance = Provenance()
    /// Approvals a plan refused (`Plan.refusedApprovals`) already recorded: once, not every cycle.
    var approvalRefusalsRecorded: Set<String> = []

    package init(options: RuntimeOptions, settings: Settings, logger: Logger, registry: PrometheusCollectorRegistry,
                 clock: DaemonClock = .system) throws {
        self.options = options
        self.settings = settings
        self.logger = logger
        self.clock = clock
        scheduler = Scheduler(poll: settings.poll, retryBase: settings.retryBase)
        scheduler.pollJitter = min(max(settings.pollJitter, 0), 0.5)
        startedAt = clock.now()
        var configuration = options.configuration
        // Every drift is a pass here: the file of recent fixes is written every few seconds
        // and at the stop, not at each (its whole rewrite grew with the fixes in the window).
        configuration.recentFixesAtEveryPass = false
        repository = try PolicyRepository(configuration)
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
        var reasons = health.reasons(at: clock.now(), threshold: settings.staleAfter, origin: options.displayURL)
        if let diverted = auditDiverted { reasons.insert(Self.divertedReason(diverted, auditBranch: repository.configuration.auditBranch), at: 0) }
        guard lastCycle != nil else { return (false, (["no cycle has run yet"] + reasons).joined(separator: "; ")) }
        if !reasons.isEmpty { return (false, reasons.joined(separator: "; ")) }
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

    /// A fix that failed and is held back: its drift (`fingerprint`), how many times in a row
    /// it failed, and when it is tried again. A cause that goes away by itself (a service that
    /// was down for its reload, a file system mounted read-only for a while) is not left
    /// standing until someone changes the policy or restarts the daemon: the fix is tried again
    /// after its controller's interval, then twice that, and so on up to a day, each failure
    /// recorded once (its record id is stable: `recorded before`).
    package struct HeldFix: Sendable, Equatable {
        package var fingerprint: String
        package var failures: Int
        package var retryAt: ContinuousClock.Instant

        /// How long a fix that failed `failures` times in a row is held: the interval doubled per
        /// failure after the first, up to a day; 0.8 of that, so that the controller's next
        /// regular cycle (its interval, −10 % jitter) comes after the hold, not just before it.
        package static func hold(after failures: Int, interval: Duration) -> Duration {
            let doubled = interval * (1 << min(max(failures - 1, 0), 16))
            return min(doubled, .seconds(86_400)) * 0.8
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

    /// Pushes what is left (SIGTERM), once the service has stopped the watcher and the worker, and
    /// lets a webhook fan-out in flight finish.
    package func shutdown() async {
        let publication: PolicyRepository.Publication
        do {
            publication = try await repository.publish()
        } catch {
            publication = .keptLocally(commits: 0, reason: "\(error)")
        }
        if case .keptLocally(let count, let reason, _) = publication {
            logger.warning("audit commits kept locally for the next run", metadata: ["commits": .stringConvertible(count), "reason": .string(reason)])
        }
        await repository.saveRecentFixesNow()
        await options.webhookRelay?.finish()
        wake.finish()
        notify.finish()
    }

}
