import BulwarkCore
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing

/// A sink that buffers (as the git-backed one does: one pack per flush): no fix's intent may be
/// closed before the flush that makes its record durable, and a flush that fails leaves every
/// fix of the lost batch an open intent for the next start.
@Suite struct BufferedAuditTests {
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

    final class BufferingSink: AuditSink {
        struct State {
            var buffered: [AuditRecord] = []
            var openAtFlush: [Int] = []
        }
        let durable = RecordingSink()
        let journal: MemoryJournal
        let failFlush: Bool
        let state = Mutex(State())

        init(journal: MemoryJournal, failFlush: Bool = false) {
            self.journal = journal
            self.failFlush = failFlush
        }

        func contains(recordID: String) async throws -> Bool {
            try await durable.contains(recordID: recordID) || state.withLock { $0.buffered.contains { $0.id == recordID } }
        }
        func write(_ record: AuditRecord) async throws -> String {
            state.withLock { $0.buffered.append(record) }
            return "in-memory-\(record.id)"
        }
        func beginBuffering() async -> Bool { true }
        func flush() async throws {
            let open = await journal.open.count
            let records = state.withLock { state in
                state.openAtFlush.append(open)
                defer { state.buffered = [] }
                return state.buffered
            }
            if failFlush { throw TestFailure("No space left on device") }
            for record in records { _ = try await durable.write(record) }
        }
        func endBuffering() async throws { try await flush() }
    }

    func load(_ driver: MemoryDriver) throws -> DesiredState {
        try DesiredStateLoader(registry: memoryRegistry(driver)).load([inventory, file("desired-state/r.yaml", resources)], revision: "rev1")
    }

    @Test func bufferedRecordsCloseTheirIntentsOnlyOnceFlushed() async throws {
        let driver = MemoryDriver()
        let state = try load(driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let journal = MemoryJournal()
        let sink = BufferingSink(journal: journal)
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
        #expect(outcome.halted == nil)
        #expect(outcome.verified.count == 3)
        #expect(sink.state.withLock { $0.openAtFlush } == [3], "every intent was still open when its record was flushed")
        #expect(await journal.openIntents().isEmpty)
        #expect(Set(sink.durable.records.map(\.id)).count == 3, "one record per fix")
        #expect(sink.durable.records.allSatisfy { $0.commitMessage.contains("Bulwark-Result: verified") })
    }

    @Test func aFlushThatFailsLeavesEveryFixOfTheBatchAnOpenIntentRecordedOnTheNextStart() async throws {
        let driver = MemoryDriver()
        let state = try load(driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let journal = MemoryJournal()
        let failing = BufferingSink(journal: journal, failFlush: true)
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: failing, journal: journal)
        #expect(outcome.halted?.contains("audit branch cannot be written") == true)
        #expect(outcome.auditFailures.count == 3)
        #expect(outcome.entries.allSatisfy { $0.commit == nil }, "no entry claims a commit that is not on the branch")
        #expect(failing.durable.records.isEmpty)
        #expect(await journal.openIntents().count == 3, "the fixes stay open intents")

        // The next start records each of them once, as verified after a restart.
        let sink = RecordingSink()
        let recovered = try await reconciler.recover(journal: journal, state: state, audit: sink)
        #expect(recovered.map(\.record.result) == [.verified, .verified, .verified])
        #expect(Set(sink.records.map(\.id)).count == 3)
        #expect(await journal.openIntents().isEmpty)
    }
}
