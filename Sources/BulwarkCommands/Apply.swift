internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation
internal import Synchronization

extension Bulwark {
    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "apply",
            abstract: "Run one reconcile pass: fix drift the policy allows, verify each fix, commit and push an audit record.",
            discussion: """
                Exit codes: 0 every fix verified (deferred and reported drift is not an error), 1 an error: \
                an invalid revision (nothing is changed), a fix that did not verify, a resource that could \
                not be observed, or an audit record that could not be committed. Audit commits that cannot \
                be pushed stay in the state directory and are pushed by the next run. With \
                --detailed-exitcode: 2 when held, deferred, blocked or escalated drift remains. 3: done, \
                but against the last fetched revision (the origin could not be fetched) or with audit \
                commits kept locally (not pushed); 1 and 2 win over 3. 130: interrupted (SIGINT or \
                SIGTERM): no fix was started after the signal, the fixes in flight were finished, recorded \
                and pushed (a signal during the push: no other attempt, the commits not pushed are kept \
                for the next run); a second signal stops at once (the next run records what was in flight).
                """)

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var review: ReviewOptions
        @OptionGroup var agent: AgentOptions

        @Option(help: "Seconds to keep retrying notifications after the pass; undelivered ones are retried by the next run.")
        var notifyTimeout: Int = 10

        func validate() throws {
            guard (0...600).contains(notifyTimeout) else { throw ValidationError("--notify-timeout takes 0 to 600 seconds") }
        }

        @Flag(help: "Exit 2 when drift remains after the pass: held, deferred, blocked or escalated (as `terraform apply -detailed-exitcode`; 1 still wins).")
        var detailedExitcode = false

        func run() async throws {
            let console = Console()
            var repository = self.repository
            let targets = try agent.prepare(&repository)
            let result: ApplyRun
            do {
                result = try await ApplyRun.run(repository: repository, console: console, text: output.output == .text,
                                                notifyTimeout: .seconds(notifyTimeout), review: try review.review(console),
                                                targets: targets)
            } catch let refused as RevisionRefused {
                if output.output == .json { console.json(ApplyRun.Refused(refused)) }
                throw refused
            }
            if output.output == .json { console.json(result) }
            if result.interrupted { throw ExitCode(130) }
            if !result.succeeded { throw ExitCode.failure }
            if detailedExitcode, result.remainingDrift > 0 { throw ExitCode(2) }
            if result.stale != nil || result.keptLocally > 0 || result.heldAside > 0 { throw ExitCode.staleOrUnpushed }
        }
    }
}

extension ApplyRun {
    /// `apply --output json` of a refused revision: nothing changed, the errors, `refused`, and
    /// the refusal's record when this run committed it.
    struct Refused: Encodable {
        var schemaVersion = JSONSchema.version
        var revision: Revision
        var records: [DecisionJSON] = []
        var errors: [String]
        var pushed = 0
        var keptLocally = 0
        var pushError: String?
        var notificationsDelivered = 0
        var notificationsPending = 0
        var remainingDrift = 0
        var refused = true

        init(_ refused: RevisionRefused) {
            revision = Revision(refused.revision)
            errors = refused.errors
            if let recorded = refused.recorded {
                records = recorded.entry.map { [DecisionJSON($0.record, commit: $0.commit)] } ?? []
                (pushed, keptLocally, pushError) = recorded.publication.counts
            }
        }
    }
}

/// The outcome of one pass, for people and scripts.
struct ApplyRun: Encodable {
    var schemaVersion = JSONSchema.version
    var revision: Revision
    var records: [AuditRecord]
    var commits: [String: String]
    var errors: [String]
    var pushed: Int
    var keptLocally: Int
    var pushError: String?
    /// The branch the audit commits went to: the audit branch, or the recovery branch while the
    /// origin's audit branch lost what was pushed to it (not in the JSON, whose shape is fixed).
    var pushedTo: String?
    var notificationsDelivered = 0
    var notificationsPending = 0
    /// Remediations this pass left open (held, deferred, blocked, escalated), recorded now or before.
    var remainingDrift = 0
    /// Why the origin could not be fetched, when the pass ran against the last fetched revision
    /// (exit 3; not in the JSON, whose shape is fixed by its schema: `pushError` and the exit say it).
    var stale: String?
    /// Damaged state clones set aside whose unpushed records Bulwark could not carry over
    /// (exit 3; not in the JSON: the warnings name them and say how to get them back).
    var heldAside = 0

    /// How many of the pass's records have each result and each decision, whether committed now
    /// or by an earlier pass: the summary's counts (it counted only what this pass committed, so
    /// "FAILED … (recorded before)" beside "Failed: 0").
    var results: [RemediationResult: Int] = [:]
    var decisions: [Decision: Int] = [:]
    /// Fixes found already as desired under the target's lock (another Bulwark or a person was
    /// first): in sync, though the plan saw them drifted.
    var alreadyAsDesired = 0
    /// Records of the pass that could not be committed (`CycleOutcome.auditFailures`).
    var notRecorded = 0

    /// Fixes this pass tried that failed again, whose failure was recorded by an earlier pass
    /// (not in `records`, which holds what this pass committed): the pass did not succeed either.
    var failedAgain = 0
    /// An operator stopped the pass (SIGINT or SIGTERM): exit 130 whatever else happened.
    var interrupted = false
    var succeeded: Bool {
        errors.isEmpty && failedAgain == 0 && !records.contains { $0.result == .failed || $0.result == .interrupted }
    }

    private enum CodingKeys: String, CodingKey {
        case schemaVersion, revision, records, errors, pushed, keptLocally, pushError, notificationsDelivered, notificationsPending,
             remainingDrift
    }

    /// The records in the JSON outputs' one vocabulary (`DecisionJSON`), each with its audit commit.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(revision, forKey: .revision)
        try container.encode(records.map { DecisionJSON($0, commit: commits[$0.id]) }, forKey: .records)
        try container.encode(errors, forKey: .errors)
        try container.encode(pushed, forKey: .pushed)
        try container.encode(keptLocally, forKey: .keptLocally)
        try container.encodeIfPresent(pushError, forKey: .pushError)
        try container.encode(notificationsDelivered, forKey: .notificationsDelivered)
        try container.encode(notificationsPending, forKey: .notificationsPending)
        try container.encode(remainingDrift, forKey: .remainingDrift)
    }

    static func run(
        repository options: RepositoryOptions, console: Console, text: Bool, notifyTimeout: Duration = .seconds(10),
        review: Review? = nil, targets: Set<String>? = nil
    ) async throws -> ApplyRun {
        // Ctrl-C from start-up to the end: the pass stops between fixes, not in the middle of
        // one, and the push makes no other attempt; a second one stops at once.
        let interrupts = PassInterrupts()
        defer { interrupts.end() }
        if let signal = FaultInjection.signalAtStart { kill(getpid(), signal) }
        var loaded = try await options.load(console: console, recordRefusal: true, revision: review?.pin, reviewed: review?.plan,
                                            targets: targets)
        interrupts.acting.request()
        if let signal = FaultInjection.signalWhenLoaded { kill(getpid(), signal) }
        let reconciler = Reconciler(registry: Bulwark.registry())
        // Intents a killed run left open are resolved and recorded before anything else acts.
        let journal = FileJournal(stateDirectory: options.stateDirectory)
        let recovered: [CycleEntry]
        do {
            let repository = loaded.repository, registry = reconciler.registry
            recovered = try await reconciler.recover(
                journal: journal, state: loaded.state, audit: FaultInjection.KillInRecovery(repository),
                earlier: { await repository.desiredState(at: $0, registry: registry) },
                onUntried: { record in
                    guard text else { return }
                    console.warn("closed an intent of an earlier run that was never carried out: \(record.resource) on "
                                 + "\(record.target) (found as it was; planned again)")
                })
        } catch {
            throw CommandError("cannot resolve the open intents in \(options.stateDirectory)/intents.log: \(error); "
                               + "nothing was changed. Free the state directory (space, permissions) and run again.")
        }
        for entry in recovered where text {
            console.warn("recorded an interrupted fix of an earlier run: \(entry.record.resource) on \(entry.record.target) "
                         + "(\(entry.record.result?.rawValue ?? "?"))")
        }
        let journalDamage = await journal.damage
        var plan = try await loaded.plan(reconciler, console: console)
        // `--plan FILE`: only the reviewed fixes act; anything else is deferred (see PlanFile).
        if let review { plan = review.restrict(plan) }
        let notifiers = loaded.state.notifiers
        let outbox = notifiers.isEmpty ? nil : try Outbox(stateDirectory: options.stateDirectory, notifiers: notifiers)
        // At most one signal waits: a burst of records is one delivery round.
        let (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        // Notifications go out while the pass goes on; the pass never waits for them.
        async let delivery: Outbox.Delivery? = {
            guard let outbox else { return nil }
            var total = Outbox.Delivery()
            for await _ in signals { total.add(await outbox.deliver(until: .now + .seconds(2))) }
            total.add(await outbox.deliver(until: .now + notifyTimeout))
            return total
        }()
        let audit = FaultInjection.KillBeforeRecord(loaded.repository, stop: interrupts.stop)
        let outcome = await reconciler.apply(plan, state: loaded.state, audit: audit, journal: journal,
                                             stop: interrupts.stop) { entry in
            if text { ApplyRun.print(entry, console) }
            if let outbox, entry.commit != nil,
               Outbox.enqueue(entry.record, commit: entry.commit, notifiers: notifiers, folder: outbox.folder) > 0 {
                signal.yield()
            }
        }
        signal.finish()
        if text {
            // Found fixed under the target's lock (another Bulwark or a person was first): no record.
            for remediation in outcome.inSync {
                console.print("\(console.paint("in sync ", .blue)) \(remediation.binding.target) \(remediation.binding.resource): "
                              + "already as desired when looked at again; nothing changed, nothing recorded")
            }
        }
        await journal.compact()
        let baselineHeld = loaded.provenance.advanceBaseline(to: loaded.head, after: plan, outcome: outcome,
                                                             bindings: loaded.state.bindings, stateDirectory: options.stateDirectory)
        if text, let baselineHeld { console.print(console.paint("note: " + baselineHeld, .dim)) }
        // No copy of the pass's entries when nothing was recovered, and no filtered copy of them:
        // each is about 600 bytes, and these copies were alive through the push.
        let entries = recovered.isEmpty ? outcome.entries : recovered + outcome.entries
        // Refused approvals were recorded and pushed while the revision loaded and planned: records of this run too.
        let refusals = loaded.refusalsRecorded
        let refused = refusals.compactMap(\.entry)
        var run = ApplyRun(
            revision: loaded.state.revision, records: refused.map(\.record) + entries.compactMap { $0.alreadyRecorded ? nil : $0.record },
            commits: Dictionary(refused.map { ($0.record.id, $0.commit) } + entries.lazy.compactMap { e in e.commit.map { (e.record.id, $0) } },
                                uniquingKeysWith: { a, _ in a }),
            errors: (journalDamage.map { [$0] } ?? []) + outcome.auditFailures.map { "audit record not committed: \($0)" }
                + (outcome.halted.map { ["stopped changing systems: \($0) (\(outcome.notAttempted) fix\(outcome.notAttempted == 1 ? "" : "es") left for the next run)"] } ?? [])
                + plan.failures.map(\.line)
                // Another Bulwark holds the target: nothing tried, nothing recorded; the drift stays.
                + outcome.busy.map { "not applied, nothing recorded: \($0.remediation.binding.target) \($0.remediation.binding.resource): \($0.reason)" },
            pushed: 0, keptLocally: 0, pushError: nil)
        run.stale = loaded.stale
        run.failedAgain = outcome.entries.reduce(0) { $1.alreadyRecorded && $1.record.result == .failed ? $0 + 1 : $0 }
        run.alreadyAsDesired = outcome.inSync.count
        run.notRecorded = outcome.auditFailures.count
        for record in refused.lazy.map(\.record) + entries.lazy.map(\.record) {
            if let result = record.result { run.results[result, default: 0] += 1 }
            run.decisions[record.decision, default: 0] += 1
        }
        run.remainingDrift = outcome.entries.reduce(0) { [.held, .deferred, .blocked, .escalated].contains($1.record.decision) ? $0 + 1 : $0 }
            + outcome.busy.count
        interrupts.pushing.request()
        if FaultInjection.sayPush { FileHandle.standardError.write(Data("fault: pushing\n".utf8)) }
        let stop = interrupts.stop
        (run.pushed, run.keptLocally, run.pushError) = try await loaded.repository.publish(stop: { stop.isRequested }).counts
        run.pushedTo = await loaded.repository.pushedBranch
        run.heldAside = await loaded.repository.heldAside.count
        // Refusals pushed on their own (those kept locally went out with this push, or are counted in it).
        run.pushed += refusals.reduce(0) { $0 + $1.publication.counts.pushed }
        if let delivered = await delivery {
            run.notificationsDelivered = delivered.delivered
            run.notificationsPending = delivered.pending
            if text, delivered.delivered + delivered.pending > 0 {
                console.print("Notifications: \(delivered.delivered) delivered, \(delivered.pending) pending.")
            }
            if delivered.pending > 0, let last = delivered.errors.last {
                console.warn("\(delivered.pending) notification\(delivered.pending == 1 ? "" : "s") kept in \(options.stateDirectory)/outbox for the next run: \(last)")
            }
        }
        if text { run.summarize(console, plan: plan, options: options) }
        run.interrupted = interrupts.stop.isRequested
        return run
    }

    static func print(_ entry: CycleEntry, _ console: Console) {
        let r = entry.record
        let changes = r.changes.map { "\($0.property) \($0.observedBefore ?? "(unset)") -> \($0.desired)" }.joined(separator: ", ")
        let label: String
        switch (r.decision, r.result) {
        case (.applied, .verified?): label = console.paint("fixed   ", .green)
        case (.applied, _): label = console.paint("FAILED  ", .red)
        case (.deferred, _): label = console.paint("deferred", .yellow)
        case (.reported, _): label = console.paint("reported", .blue)
        case (.escalated, _): label = console.paint("ESCALATE", .red)
        case (.held, _): label = console.paint("held    ", .yellow)
        case (.waived, _): label = console.paint("waived  ", .blue)
        case (.blocked, _): label = console.paint("BLOCKED ", .red)
        case (.refused, _): label = console.paint("REFUSED ", .red)
        case (.pruned, _): label = console.paint("pruned  ", .green)
        case (.unobserved, _): label = console.paint("UNOBSERV", .red)
        case (.resolved, _): label = console.paint("resolved", .green)
        }
        var line = "\(label) \(r.target)  \(r.resource): \(changes)"
        if let verified = r.verifiedAt {
            // As `%.0f` rounds, without Foundation's formatter: a line per fix, 20,000 in a large pass.
            let milliseconds = (verified.timeIntervalSince(r.detectedAt) * 1000).rounded(.toNearestOrEven)
            line += console.paint("  verified in \(Int64(exactly: milliseconds).map { String($0) } ?? "\(milliseconds)") ms", .dim)
        }
        if let reason = r.reason { line += console.paint("  (\(reason))", .dim) }
        if entry.alreadyRecorded { line += console.paint("  (recorded before)", .dim) }
        if let commit = entry.commit { line += console.paint("  audit \(commit.prefix(12))", .dim) }
        console.print(line)
        // An observation's error is among the run's errors, printed once at the end.
        if let error = r.error, r.decision != .unobserved { console.print("         " + console.paint(error, .red)) }
    }

    func summarize(_ console: Console, plan: Plan, options: RepositoryOptions) {
        // Resources that could not be observed (also in `errors`): alike ones of a target as one line.
        let observed = Set(plan.failures.map(\.line))
        for error in errors where !observed.contains(error) { console.error(error) }
        for line in ObservationFailure.lines(plan.failures) { console.error(line) }
        var line = "Fixed and verified: \(results[.verified] ?? 0). Failed: \(results[.failed] ?? 0). "
            + "Deferred: \(decisions[.deferred] ?? 0). Reported: \(decisions[.reported] ?? 0)."
        for decision in [Decision.held, .waived, .escalated, .blocked, .pruned, .unobserved, .refused, .resolved] {
            if let count = decisions[decision], count > 0 { line += " \(decision.rawValue.capitalized): \(count)." }
        }
        if let count = results[.interrupted], count > 0 { line += " Interrupted: \(count)." }
        console.print(line + " In sync: \(plan.inSync.count + alreadyAsDesired).")
        if notRecorded > 0 {
            console.warn("\(notRecorded) of these record\(notRecorded == 1 ? " was" : "s were") not committed (see the errors above): "
                         + "what they say is not on the audit branch")
        }
        if pushed > 0 {
            console.print("Pushed \(pushed) audit commit\(pushed == 1 ? "" : "s") to \(options.displayURL) \(pushedTo ?? options.auditBranch).")
        }
        if let pushError {
            console.warn("\(keptLocally) audit commit\(keptLocally == 1 ? "" : "s") kept in \(options.stateDirectory) and pushed on the next run: \(pushError)")
        }
    }
}

/// Faults the crash tests inject into a real `bulwark` process. Off unless the environment names
/// one; nothing here changes what a normal run does.
enum FaultInjection {
    /// `BULWARK_FAULT_PAUSE_BEFORE_SERVICES=SECONDS`: `run` waits this long after its shutdown
    /// watchdog took SIGTERM and SIGINT and before the service group traps them (a window a
    /// loaded machine opens by chance), so that a test can signal inside it.
    static var pauseBeforeServices: Duration? {
        ProcessInfo.processInfo.environment["BULWARK_FAULT_PAUSE_BEFORE_SERVICES"].flatMap { Int($0) }.map { .seconds($0) }
    }

    /// `BULWARK_FAULT_SIGNAL_AT_START=N`: `apply` (and `run`) sends itself signal N as soon as
    /// its handlers are in place, before the revision is loaded (before the state clone is
    /// opened); `BULWARK_FAULT_SIGNAL_WHEN_LOADED=N`, once it is.
    static var signalAtStart: Int32? {
        ProcessInfo.processInfo.environment["BULWARK_FAULT_SIGNAL_AT_START"].flatMap { Int32($0) }
    }
    static var signalWhenLoaded: Int32? {
        ProcessInfo.processInfo.environment["BULWARK_FAULT_SIGNAL_WHEN_LOADED"].flatMap { Int32($0) }
    }

    /// `BULWARK_FAULT_SAY_PUSH=1`: `apply` says on stderr when its pass is over and its push
    /// begins, so that a test can signal during the push.
    static var sayPush: Bool { ProcessInfo.processInfo.environment["BULWARK_FAULT_SAY_PUSH"] != nil }

    /// `BULWARK_FAULT_RELAY_TIMEOUT=SECONDS`: how long a webhook relay waits for each agent's
    /// answer (5 s otherwise), so that a test can hold an agent's answer for as long as it needs.
    static var relayTimeout: Duration? {
        ProcessInfo.processInfo.environment["BULWARK_FAULT_RELAY_TIMEOUT"].flatMap { Int($0) }.map { .seconds($0) }
    }

    /// `BULWARK_FAULT_KILL_BEFORE_RECORD=N`: SIGKILL the process when the audit record of the Nth
    /// applied fix is about to be committed: the fix is made, its record is not (the worst moment
    /// to die, which the intent journal exists for).
    final class KillBeforeRecord<Sink: AuditSink>: AuditSink {
        let inner: Sink
        let killAt: Int?
        let count = Mutex(0)

        /// `BULWARK_FAULT_PAUSE_BEFORE_RECORD=N`: the record of the Nth applied fix waits (up to
        /// 60 s) until the pass is asked to stop, so that a test can interrupt a pass in its middle.
        let pauseAt: Int?
        /// `BULWARK_FAULT_HOLD_BEFORE_RECORD=N`: the record of the Nth applied fix waits 60 s
        /// whatever happens, a fix that does not finish, for a test of the second signal.
        let holdAt: Int?
        let stop: PassStop?

        init(_ inner: Sink, stop: PassStop? = nil) {
            self.inner = inner
            self.stop = stop
            let environment = ProcessInfo.processInfo.environment
            killAt = environment["BULWARK_FAULT_KILL_BEFORE_RECORD"].flatMap { Int($0) }
            pauseAt = environment["BULWARK_FAULT_PAUSE_BEFORE_RECORD"].flatMap { Int($0) }
            holdAt = environment["BULWARK_FAULT_HOLD_BEFORE_RECORD"].flatMap { Int($0) }
        }

        func contains(recordID: String) async throws -> Bool { try await inner.contains(recordID: recordID) }
        func beginBuffering() async -> Bool { await inner.beginBuffering() }
        func flush() async throws { try await inner.flush() }
        func endBuffering() async throws { try await inner.endBuffering() }
        func prepareToWrite(records: Int) async throws { try await inner.prepareToWrite(records: records) }
        func verifiedElsewhere(_ intent: AuditRecord) async throws -> (id: String, instance: String)? {
            try await inner.verifiedElsewhere(intent)
        }

        func write(_ record: AuditRecord) async throws -> String {
            guard killAt != nil || pauseAt != nil || holdAt != nil, record.decision == .applied else { return try await inner.write(record) }
            let number = count.withLock { $0 += 1; return $0 }
            if number == killAt { kill(getpid(), SIGKILL) }
            if number == pauseAt {
                FileHandle.standardError.write(Data("fault: paused before record \(number)\n".utf8))
                let deadline = ContinuousClock.now + .seconds(60)
                while stop?.isRequested != true, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
            }
            if number == holdAt {
                FileHandle.standardError.write(Data("fault: held before record \(number)\n".utf8))
                try? await Task.sleep(for: .seconds(60))
            }
            return try await inner.write(record)
        }
    }
}

extension FaultInjection {
    /// `BULWARK_FAULT_KILL_IN_RECOVERY=N`: SIGKILL the process once the Nth record of the
    /// recovery of open intents is written (in memory when the state clone buffers records);
    /// `=flushed`: once those records are made durable, before any of their intents is ended.
    final class KillInRecovery<Sink: AuditSink>: AuditSink {
        let inner: Sink
        let killAt: String?
        let count = Mutex(0)

        init(_ inner: Sink) {
            self.inner = inner
            killAt = ProcessInfo.processInfo.environment["BULWARK_FAULT_KILL_IN_RECOVERY"]
        }

        func contains(recordID: String) async throws -> Bool { try await inner.contains(recordID: recordID) }
        func beginBuffering() async -> Bool { await inner.beginBuffering() }
        func flush() async throws {
            try await inner.flush()
            if killAt == "flushed" { kill(getpid(), SIGKILL) }
        }
        func endBuffering() async throws {
            try await inner.endBuffering()
            if killAt == "flushed" { kill(getpid(), SIGKILL) }
        }
        func prepareToWrite(records: Int) async throws { try await inner.prepareToWrite(records: records) }
        func verifiedElsewhere(_ intent: AuditRecord) async throws -> (id: String, instance: String)? {
            try await inner.verifiedElsewhere(intent)
        }

        func write(_ record: AuditRecord) async throws -> String {
            let commit = try await inner.write(record)
            let number = count.withLock { $0 += 1; return $0 }
            if let killAt, Int(killAt) == number { kill(getpid(), SIGKILL) }
            return commit
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM during `apply`, from start-up to the end. Before the revision is
/// loaded (fetching it, or recording its refusal), the first ends the process at once: nothing
/// was started. After, the first asks the pass
/// to stop (`PassStop`): no fix is started after it, the fixes in flight finish and are recorded,
/// and the records are pushed, with no other attempt once the first is refused (the ones not
/// pushed stay in the state directory for the next run); `apply` exits 130. The second ends the
/// process at once (`_exit`, 128 + the signal, as the shell reports a process the signal ended:
/// the handler runs on a dispatch thread that blocks signals, where raising it again would wait
/// for ever), but never while the origin's branch is moved under its lock file, which would stay
/// and block every writer (`OriginReferenceMoves`): the intent journal makes the next run record
/// what was in flight. Before, the signals' default action ended a push with the origin's
/// `bulwark/audit.lock` left behind, silently.
struct PassInterrupts {
    let stop = PassStop()
    /// Set once the pass is over and its records are being pushed (the first signal's words).
    let pushing = PassStop()
    private let sources: [any DispatchSourceSignal]
    /// Each signal's disposition before, put back by `end` (a script's `cmd &` ignores SIGINT).
    private let previous: [(number: Int32, action: sigaction)]

    /// Set once the revision is loaded and the pass may act: before, the first signal ends the
    /// process at once (nothing was started; a fetch from an origin that never answers held it,
    /// and the first signal only said "no other fix is started").
    let acting = PassStop()

    init() {
        var sources: [any DispatchSourceSignal] = []
        var previous: [(Int32, sigaction)] = []
        // Its own queue, not the shared pool: the second signal must get through however busy that is.
        let queue = DispatchQueue(label: "bulwark.pass-interrupts")
        for number in [SIGINT, SIGTERM] {
            var old = sigaction()
            guard sigaction(number, nil, &old) == 0 else { continue }
            // A signal the process was started ignoring stays ignored.
            if unsafeBitCast(old.__sigaction_handler.sa_handler, to: Int.self) == 1 { continue }  // SIG_IGN
            previous.append((number, old))
            // libdispatch (Linux) catches the signal with a handler of its own once the source is
            // registered, which happens on another thread. Ignored first (as was done), a signal
            // in between was thrown away, and the pass made every fix and exited 0 (outside
            // review, 2 of 60 runs); ignored after, libdispatch's handler is replaced. So the
            // signal keeps its action until the source is registered (a signal then ends the
            // process before anything is started), and init waits for that.
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            let stop = self.stop, pushing = self.pushing, acting = self.acting
            let registered = DispatchSemaphore(value: 0)
            source.setRegistrationHandler { registered.signal() }
            source.setEventHandler { [source] in
                guard acting.isRequested else {
                    let line = "bulwark: interrupted before any fix was started: stopped.\n"
                    line.utf8CString.withUnsafeBufferPointer { _ = Glibc.write(2, $0.baseAddress, $0.count - 1) }
                    OriginReferenceMoves.exit(128 + number)
                }
                // Signals that came together are one event: its count tells a second one apart.
                guard stop.request(), source.data < 2 else {
                    let line = "bulwark: interrupted again: stopped at once; the next run records what was in flight and pushes "
                        + "the audit commits kept locally.\n"
                    line.utf8CString.withUnsafeBufferPointer { _ = Glibc.write(2, $0.baseAddress, $0.count - 1) }
                    OriginReferenceMoves.exit(128 + number)
                }
                let line = pushing.isRequested
                    ? "bulwark: interrupted: the push makes no other attempt; the audit commits not pushed stay in the state "
                        + "directory and are pushed by the next run. Interrupt again to stop at once.\n"
                    : "bulwark: interrupted: no other fix is started; the fixes in flight finish, are recorded and pushed. "
                        + "Interrupt again to stop at once (the next run records what was in flight).\n"
                FileHandle.standardError.write(Data(line.utf8))
            }
            source.resume()
            if registered.wait(timeout: .now() + 5) == .timedOut {
                Console().warn("the handler of signal \(number) was not in place after 5 s; an interrupt may end apply at once")
            }
            sources.append(source)
        }
        self.sources = sources
        self.previous = previous
    }

    /// The signals act as before again.
    func end() {
        for source in sources { source.cancel() }
        for (number, action) in previous {
            var action = action
            sigaction(number, &action, nil)
        }
    }
}
