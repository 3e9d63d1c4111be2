import BulwarkCore
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing

/// Intent before action: no change to a system without its record, no record for a change
/// that did not happen.
@Suite struct IntentJournalTests {
    let resources = """
        apiVersion: bulwark/v1
        kind: Setting
        metadata: {name: one, annotations: {severity: critical}}
        targets: {names: [web-1]}
        spec: {a: "1"}
        ---
        apiVersion: bulwark/v1
        kind: Setting
        metadata: {name: two, annotations: {severity: high}}
        targets: {names: [web-1]}
        spec: {b: "1"}
        ---
        apiVersion: bulwark/v1
        kind: Setting
        metadata: {name: three, annotations: {severity: low}}
        targets: {names: [web-1]}
        spec: {c: "1"}
        """

    func load(_ driver: MemoryDriver) throws -> DesiredState {
        try DesiredStateLoader(registry: memoryRegistry(driver)).load([inventory, file("desired-state/r.yaml", resources)], revision: "rev1")
    }

    /// An audit sink whose writes start failing after `failAfter` records (a full disk, a held lock).
    final class FailingSink: AuditSink {
        let inner = RecordingSink()
        let failAfter: Int
        init(failAfter: Int) { self.failAfter = failAfter }
        func contains(recordID: String) async throws -> Bool { try await inner.contains(recordID: recordID) }
        func write(_ record: AuditRecord) async throws -> String {
            guard inner.records.count < failAfter else { throw TestFailure("No space left on device") }
            return try await inner.write(record)
        }
    }

    @Test func aJournalThatCannotBeWrittenStopsEveryFix() async throws {
        let driver = MemoryDriver()
        let state = try load(driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let journal = MemoryJournal()
        await journal.fail(with: "read-only file system")
        let sink = RecordingSink()
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
        #expect(outcome.halted?.contains("intent journal cannot be written") == true)
        #expect(outcome.notAttempted == 3)
        #expect(driver.state.withLock { $0.applied }.isEmpty, "no fix without a durable intent")
        #expect(sink.records.isEmpty, "no record for a change that did not happen")
    }

    /// With intents begun ahead too (`ahead` 32): the third fix's intent, begun with the others,
    /// is closed at the halt, not left for the next start to record as a fix never tried.
    @Test(arguments: [(1, [1, 1]), (32, [3])])
    func anAuditBranchThatCannotBeWrittenStopsLaterFixesAndTheOpenIntentIsRecordedOnRecovery(ahead: Int, begun: [Int]) async throws {
        let driver = MemoryDriver()
        let state = try load(driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let journal = MemoryJournal(intentsAhead: ahead)
        let failing = FailingSink(failAfter: 1)
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: failing, journal: journal)
        #expect(await journal.begun.map(\.count) == begun)
        // The first fix is recorded; the second is made, its record fails, and the pass halts.
        #expect(failing.inner.records.count == 1)
        #expect(driver.state.withLock { $0.applied }.count == 2)
        #expect(outcome.halted?.contains("audit branch cannot be written") == true)
        #expect(outcome.notAttempted == 1)
        #expect(driver.get("web-1", "c") == nil, "nothing after the halt is changed")
        let open = await journal.openIntents()
        #expect(open.map(\.resource) == ["Setting/two"], "only the fix whose record failed stays open")

        // The next start: the open intent is observed again and recorded as verified, once.
        let sink = failing.inner
        let recovered = try await reconciler.recover(journal: journal, state: state, audit: sink)
        #expect(recovered.count == 1)
        #expect(recovered[0].record.result == .verified)
        #expect(recovered[0].record.changes.first?.observedAfter == "1")
        #expect(await journal.openIntents().isEmpty)
        #expect(sink.records.count == 2)
        #expect(try await reconciler.recover(journal: journal, state: state, audit: sink).isEmpty)
    }

    /// A journal that notes, at each `begin`, which fixes the driver had made by then.
    actor WatchingJournal: IntentJournal {
        let base: MemoryJournal
        let driver: MemoryDriver
        nonisolated let intentsAhead: Int
        /// Per `begin`: its record ids, and the fixes made before it; the same per `trying`.
        var begins: [(ids: [String], madeBefore: [String])] = []
        var tries: [(ids: [String], madeBefore: [String])] = []
        init(driver: MemoryDriver, intentsAhead: Int) {
            self.base = MemoryJournal(intentsAhead: intentsAhead)
            self.driver = driver
            self.intentsAhead = intentsAhead
        }
        func begin(_ record: AuditRecord) async throws { try await begin([record]) }
        func begin(_ records: [AuditRecord]) async throws {
            begins.append((records.map(\.id), driver.state.withLock { $0.applied }))
            try await base.begin(records)
        }
        func end(_ id: String) async throws { await base.end(id) }
        func openIntents() async throws -> [AuditRecord] { await base.openIntents() }
        func trying(_ ids: [String]) async throws {
            tries.append((ids, driver.state.withLock { $0.applied }))
            await base.trying(ids)
        }
        func untriedIntents() async throws -> Set<String> { await base.untriedIntents() }
    }

    /// A target's next fixes share one durable intent write, up to the journal's `intentsAhead`
    /// records, and each is still begun before any of them is made.
    @Test(arguments: [(1, [1, 1, 1]), (2, [2, 1]), (32, [3])])
    func aTargetsNextFixesShareOneIntentSync(ahead: Int, sizes: [Int]) async throws {
        let driver = MemoryDriver()
        let state = try load(driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let journal = WatchingJournal(driver: driver, intentsAhead: ahead)
        let sink = RecordingSink()
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
        #expect(outcome.halted == nil)
        let begins = await journal.begins
        #expect(begins.map(\.ids.count) == sizes)
        // Every fix made after its intent: the fixes made before a begin are those of earlier begins.
        var earlier = 0
        for begin in begins {
            #expect(begin.madeBefore.count == earlier, "no fix before its intent is durable")
            earlier += begin.ids.count
        }
        // Each fix marked tried right before it is made: the fixes made before are those tried before.
        let tries = await journal.tries
        #expect(tries.map(\.ids.count) == [1, 1, 1])
        for (position, tried) in tries.enumerated() {
            #expect(tried.madeBefore.count == position, "tried before made, made right after")
        }
        #expect(driver.state.withLock { $0.applied }.count == 3)
        #expect(Set(sink.records.map(\.id)) == Set(begins.flatMap(\.ids)), "one record per intent, same ids")
        #expect(try await journal.openIntents().isEmpty)
    }

    /// `one`'s fix (`a` 0 → 1) begun in a journal, and marked tried or not; then a kill.
    func killedAfterTheIntentOfOne(tried: Bool) async throws -> (MemoryDriver, DesiredState, Reconciler, MemoryJournal) {
        let driver = MemoryDriver()
        driver.set("web-1", "a", "0")
        let state = try load(driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let plan = try await reconciler.plan(state)
        let journal = MemoryJournal(intentsAhead: 32)
        let remediation = try #require(plan.remediations.first { $0.binding.resource.name == "one" })
        let record = AuditRecord(
            id: AuditID.ulid(at: Date()), controller: remediation.binding.controller, target: "web-1",
            resource: remediation.binding.resource.description, kind: "Setting", name: remediation.binding.resource.name,
            severity: .critical, risk: 12, mode: .enforce, decision: .applied, result: nil, reason: nil,
            changes: [.init(property: "a", desired: "1", observedBefore: "0", observedAfter: nil)],
            detectedAt: Date(), appliedAt: nil, verifiedAt: nil, desiredCommit: "rev1", approver: nil, error: nil)
        try await journal.begin([record])
        if tried { await journal.trying([record.id]) }
        return (driver, state, reconciler, journal)
    }

    /// Recovery of an intent killed before its change was tried: nothing changed, so no record;
    /// the next pass fixes it and records it once. Guard: one never tried whose value is found
    /// neither as before nor as desired is still recorded `interrupted` with what was found, and
    /// one found as desired is recorded `interrupted` too, not as this process's verified fix.
    @Test(arguments: [("0", nil), ("7", "a is 7"), ("1", "never tried")] as [(String, String?)])
    func anIntentNeverTriedIsClosedWithoutARecordWhenNothingChanged(found: String, recorded: String?) async throws {
        let (driver, state, reconciler, journal) = try await killedAfterTheIntentOfOne(tried: false)
        driver.set("web-1", "a", found)
        let sink = RecordingSink()
        let recovered = try await reconciler.recover(journal: journal, state: state, audit: sink)
        #expect(await journal.openIntents().isEmpty)
        if let recorded {
            #expect(recovered.map(\.record.result) == [.interrupted])
            #expect(sink.records.first?.error?.contains(recorded) == true)
        } else {
            #expect(recovered.isEmpty && sink.records.isEmpty, "no record for a change that did not happen")
            let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
            #expect(outcome.halted == nil)
            #expect(sink.records.filter { $0.resource == "Setting/one" }.map(\.result) == [.verified], "fixed and recorded once")
        }
    }

    @Test func anIntentWhoseChangeNeverHappenedIsRecordedInterruptedWithWhatWasFound() async throws {
        // Killed as the fix was tried, before it took: begin, tried, then nothing.
        let (_, state, reconciler, journal) = try await killedAfterTheIntentOfOne(tried: true)
        let sink = RecordingSink()
        let recovered = try await reconciler.recover(journal: journal, state: state, audit: sink)
        #expect(recovered.map(\.record.result) == [.interrupted])
        #expect(sink.records.first?.error?.contains("a is 0") == true)
        #expect(sink.records.first?.commitMessage.contains("Bulwark-Result: interrupted") == true)
    }

    @Test func anIntentAlreadyRecordedIsOnlyClosed() async throws {
        let driver = MemoryDriver()
        let state = try load(driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let sink = RecordingSink()
        let journal = MemoryJournal()
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
        #expect(outcome.halted == nil)
        // A crash after the commit, before the journal's end line: begin the same record again.
        try await journal.begin(try #require(sink.records.first))
        #expect(try await reconciler.recover(journal: journal, state: state, audit: sink).isEmpty)
        #expect(sink.records.count == 3, "no duplicate record")
        #expect(await journal.openIntents().isEmpty)
    }

    @Test func aFailingFixIsRecordedOncePerDistinctFailure() async throws {
        let driver = MemoryDriver()
        driver.state.withLock { $0.failApply = "read-only file system" }
        let state = try load(driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let sink = RecordingSink()
        let journal = MemoryJournal()
        _ = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
        #expect(sink.records.count == 3)
        #expect(sink.records.allSatisfy { $0.result == .failed })
        let again = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
        #expect(sink.records.count == 3, "the same failure is not recorded again")
        #expect(again.entries.allSatisfy { $0.alreadyRecorded })
        #expect(await journal.openIntents().isEmpty)
        // A different failure is a new record.
        driver.state.withLock { $0.failApply = "no space left on device" }
        _ = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
        #expect(sink.records.count == 6)
    }

    /// A `Setting` driver that says it announces its changes (`ResourceDriver.announcesChanges`);
    /// `passes`: it passes the change gate right before its change, as it must. Otherwise it
    /// changes the system without passing it.
    struct AnnouncingDriver: ResourceDriver {
        let base: MemoryDriver
        let passes: Bool
        var announcesChanges: Bool { true }
        func observe(_ resource: Resource, on target: Target) async throws -> Observation {
            try await base.observe(resource, on: target)
        }
        func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
            if passes { try await ChangeGate.current?.pass() }
            try await base.apply(changes, to: resource, on: target)
        }
    }

    /// A journal that notes, at each `trying`, how many fixes were made and records written by then.
    actor TryingJournal: IntentJournal {
        let base = MemoryJournal()
        let driver: MemoryDriver
        let sink: RecordingSink
        var tries: [(ids: [String], madeBefore: Int, recordsBefore: Int)] = []
        init(driver: MemoryDriver, sink: RecordingSink) {
            self.driver = driver
            self.sink = sink
        }
        nonisolated var intentsAhead: Int { 1 }
        func begin(_ record: AuditRecord) async throws { try await base.begin(record) }
        func end(_ id: String) async throws { await base.end(id) }
        func openIntents() async throws -> [AuditRecord] { await base.openIntents() }
        func trying(_ ids: [String]) async throws {
            tries.append((ids, driver.state.withLock { $0.applied.count }, sink.records.count))
            await base.trying(ids)
        }
        func untriedIntents() async throws -> Set<String> { await base.untriedIntents() }
    }

    /// A driver that announces its changes is trusted to pass the gate before its first; one
    /// that came back from a fix without passing it (it should not have changed anything, but
    /// may have) gets its intent marked tried all the same, right after, before the fix is
    /// verified and recorded: a kill in between leaves a tried intent that recovery records
    /// with what it finds, never an untried one it would close without a record of a change
    /// made. The twin: a driver that passes the gate is marked tried before its change, once.
    @Test(arguments: [true, false])
    func aFixIsMarkedTriedBeforeItsRecordEvenWhenItsDriverDidNotPassTheGate(passes: Bool) async throws {
        let driver = MemoryDriver()
        let registry = memoryRegistry(driver, setting: AnnouncingDriver(base: driver, passes: passes))
        let state = try DesiredStateLoader(registry: registry).load([inventory, file("desired-state/r.yaml", resources)], revision: "rev1")
        let reconciler = Reconciler(registry: registry)
        let sink = RecordingSink()
        let journal = TryingJournal(driver: driver, sink: sink)
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
        #expect(outcome.halted == nil)
        let tries = await journal.tries
        #expect(tries.map(\.ids.count) == [1, 1, 1], "each fix marked tried, once")
        for (position, tried) in tries.enumerated() {
            // Passed by the driver: before its change; not: right after it. Before its record either way.
            #expect(tried.madeBefore == position + (passes ? 0 : 1))
            #expect(tried.recordsBefore == position, "marked tried before its record is written")
        }
        #expect(sink.records.map(\.result) == [.verified, .verified, .verified])
        #expect(try await journal.openIntents().isEmpty)
    }
}
