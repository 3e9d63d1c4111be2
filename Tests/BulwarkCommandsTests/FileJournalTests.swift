@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// The intent journal on disk after a line was cut short (a full state disk mid-write, a kill):
/// the next intent starts on a line of its own and is found open on restart, so a fix made after
/// it is never left without its record.
@Suite struct FileJournalTests {
    func record(_ id: String) -> AuditRecord {
        AuditRecord(id: id, controller: "c", target: "t", resource: "K/n", kind: "K", name: "n", severity: .high, risk: 6,
                    mode: .enforce, decision: .applied, result: nil, reason: nil,
                    changes: [.init(property: "p", desired: "1", observedBefore: "0", observedAfter: nil)],
                    detectedAt: Date(timeIntervalSince1970: 1_795_341_600), appliedAt: nil, verifiedAt: nil,
                    desiredCommit: "abc", approver: nil, error: nil)
    }

    @Test func anIntentWrittenAfterALineCutShortIsFoundOpenOnRestart() async throws {
        try await withTemporaryDirectory { dir in
            // What a write cut short by a full disk leaves: part of a line, no newline.
            try write(dir + "/intents.log", #"{"begin":{"id":"01JD3M000000000000000TORN","contr"#)
            let journal = FileJournal(stateDirectory: dir)
            try await journal.begin(record("01JD3M0000000000000000000A"))
            let restarted = FileJournal(stateDirectory: dir)
            #expect(try await restarted.openIntents().map(\.id) == ["01JD3M0000000000000000000A"])
            // Lines written whole stay as they are: one per line, no blank line added; the line
            // cut short is gone (its begin was never durable), so it never reads as damage.
            try await journal.begin(record("01JD3M0000000000000000000B"))
            try await journal.end("01JD3M0000000000000000000A")
            let lines = try read(dir + "/intents.log").split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.count == 4 && lines.last == "" && !lines.contains { $0.contains("TORN") }, "\(lines)")
            let again = FileJournal(stateDirectory: dir)
            #expect(try await again.openIntents().map(\.id) == ["01JD3M0000000000000000000B"])
            #expect(await again.damage == nil)
        }
    }

    /// Intents begun together, one of them tried: after a restart the journal tells which were
    /// never carried out, and a closed intent is neither.
    @Test func aRestartTellsTheIntentsNeverTriedFromTheOnesTried() async throws {
        try await withTemporaryDirectory { dir in
            let journal = FileJournal(stateDirectory: dir)
            #expect(journal.intentsAhead == 32)
            try await journal.begin(["01JD3M0000000000000000000A", "01JD3M0000000000000000000B",
                                     "01JD3M0000000000000000000C"].map(record))
            try await journal.trying(["01JD3M0000000000000000000A", "01JD3M0000000000000000000C"])
            try await journal.end("01JD3M0000000000000000000C")
            let restarted = FileJournal(stateDirectory: dir)
            #expect(try await restarted.openIntents().map(\.id) == ["01JD3M0000000000000000000A", "01JD3M0000000000000000000B"])
            #expect(try await restarted.untriedIntents() == ["01JD3M0000000000000000000B"])
            // A tried line of an intent already closed does not count for the same id begun again.
            try await journal.begin(record("01JD3M0000000000000000000C"))
            #expect(try await FileJournal(stateDirectory: dir).untriedIntents()
                    == ["01JD3M0000000000000000000B", "01JD3M0000000000000000000C"])
        }
    }

    /// A begin written by a version without `tried` lines counts as tried: recovery records it
    /// (verified or interrupted), never closes it unrecorded.
    @Test func anIntentFromAnEarlierVersionCountsAsTried() async throws {
        try await withTemporaryDirectory { dir in
            let line = FileJournal.lineBytes(begin: record("01JD3M0000000000000000000A"), end: nil)
            #expect(!String(decoding: line, as: UTF8.self).contains("tried"))
            try write(dir + "/intents.log", String(decoding: line, as: UTF8.self))
            let journal = FileJournal(stateDirectory: dir)
            try await journal.begin(record("01JD3M0000000000000000000B"))
            let restarted = FileJournal(stateDirectory: dir)
            #expect(try await restarted.openIntents().count == 2)
            #expect(try await restarted.untriedIntents() == ["01JD3M0000000000000000000B"])
        }
    }
}
