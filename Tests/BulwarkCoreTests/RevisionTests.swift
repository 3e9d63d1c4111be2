import BulwarkCore
import Foundation
import Testing

/// `Revision` is typed in the process and the same text at the edges: the audit record's JSON
/// and its `Bulwark-Desired-Commit` trailer read exactly as when the revision was a string.
@Suite struct RevisionTests {
    static let hex = "0123456789abcdef0123456789abcdef01234567"

    static func record(_ revision: Revision) -> AuditRecord {
        AuditRecord(id: "01TESTREVISION", controller: "c", target: "t", resource: "Sysctl/x", kind: "Sysctl", name: "x",
                    severity: .high, risk: 1, mode: .enforce, decision: .held, result: nil, reason: nil, changes: [],
                    detectedAt: Timestamp.parse("2026-11-01T10:00:00.000Z") ?? .distantPast, appliedAt: nil, verifiedAt: nil, desiredCommit: revision,
                    approver: nil, error: nil)
    }

    @Test func aRevisionReadsAsTheTextItWasWrittenAs() throws {
        #expect(Revision(Self.hex) == .commit(Self.hex) && Revision(Self.hex).commitID == Self.hex)
        #expect(Revision("working tree") == .workingTree && Revision.workingTree.commitID == nil)
        #expect(Revision.workingTree.description == "working tree" && Revision(Self.hex).short == "0123456789ab")
        let encoded = try JSONEncoder().encode([Revision(Self.hex), .workingTree])
        #expect(String(decoding: encoded, as: UTF8.self) == #"["\#(Self.hex)","working tree"]"#)
        #expect(try JSONDecoder().decode([Revision].self, from: encoded) == [.commit(Self.hex), .workingTree])
    }

    @Test func theAuditRecordsTrailerAndJSONAreTheTextOfTheRevision() throws {
        let record = Self.record(.commit(Self.hex))
        #expect(record.commitMessage.contains("\nBulwark-Desired-Commit: \(Self.hex)\n"))
        let json = String(decoding: record.json(), as: UTF8.self)
        #expect(json.contains(#""desiredCommit" : "\#(Self.hex)""#))
        #expect(try JSONDecoder().decode(AuditRecord.self, from: Data(record.json())) == record)
        // Read back through the one trailer vocabulary (`RecordedDecision`), typed again.
        let lines = record.commitMessage.split(separator: "\n")
        let recorded = try #require(RecordedDecision(trailer: { key in
            lines.first { $0.hasPrefix(key.rawValue + ": ") }.map { String($0.dropFirst(key.rawValue.count + 2)) }
        }))
        #expect(recorded.desiredCommit == .commit(Self.hex))
    }

    @Test func aRefusedWorkingTreeIsNamedAsBefore() {
        let refusal = AuditRecord.refusal(revision: .workingTree, errors: ["bad"], at: Date(timeIntervalSince1970: 0))
        #expect(refusal.resource == "Revision/working tree" && refusal.name == "working tree")
        #expect(refusal.commitMessage.contains("\nBulwark-Desired-Commit: working tree\n"))
        let commit = AuditRecord.refusal(revision: .commit(Self.hex), errors: ["bad"], at: Date(timeIntervalSince1970: 0))
        #expect(commit.resource == "Revision/0123456789ab" && commit.id != refusal.id)
    }
}
