@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// A state directory that never applied a revision takes its baseline (what weakenings are
/// compared with, where signature checks start) from the newest applied record on the audit
/// branch. It reads a few commits first and the last 500 only when those hold no applied record.
@Suite struct LastAppliedTests {
    let applied = "1111111111111111111111111111111111111111"

    func record(_ n: Int, _ decision: Decision, desired: String = "2222222222222222222222222222222222222222") -> AuditRecord {
        var record = PolicyRepositoryTests().record(String(format: "01LASTAPPLIED%013d", n))
        record.decision = decision
        record.result = decision == .applied ? .verified : nil
        record.desiredCommit = Revision(desired)
        return record
    }

    /// Pushes an applied record naming `applied`, then `after` records of other decisions on top;
    /// returns what a new state directory takes as its baseline.
    func baseline(in dir: String, after: Int) async throws -> (id: ObjectID, fromAuditBranch: Bool)? {
        let s = try Scenario(in: dir)
        do {
            let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
            _ = try await repo.sync()
            _ = try await repo.write(record(0, .applied, desired: applied))
            for n in 0..<after { _ = try await repo.write(record(n + 1, n.isMultiple(of: 2) ? .held : .reported)) }
            #expect(try await repo.publish() == .pushed(commits: after + 1))
        }
        let fresh = dir + "/fresh-state"
        let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: fresh))
        _ = try await repo.sync()
        return await Provenance.lastApplied(repository: repo, stateDirectory: fresh)
    }

    @Test func theNewestAppliedRecordIsFoundWhenItIsTheNewestCommit() async throws {
        try await withTemporaryDirectory { dir in
            let found = try #require(try await baseline(in: dir, after: 0))
            #expect(found.id.hex == applied && found.fromAuditBranch)
        }
    }

    @Test(arguments: [1, 5, 31, 32, 40, 499])
    func anAppliedRecordBehindOthersIsStillFound(after: Int) async throws {
        try await withTemporaryDirectory { dir in
            let found = try #require(try await baseline(in: dir, after: after))
            #expect(found.id.hex == applied && found.fromAuditBranch)
        }
    }

    @Test func anAppliedRecordBeyondTheLast500IsNotLookedFor() async throws {
        try await withTemporaryDirectory { dir in
            let found = try await baseline(in: dir, after: 500)
            #expect(found == nil)
        }
    }

    @Test func theStateDirectorysOwnFileComesFirst() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
            _ = try await repo.sync()
            _ = try await repo.write(record(0, .applied, desired: applied))
            _ = try await repo.publish()
            let own = "3333333333333333333333333333333333333333"
            try (own + "\n").write(toFile: Provenance.baselineFile(s.state), atomically: true, encoding: .utf8)
            let found = try #require(await Provenance.lastApplied(repository: repo, stateDirectory: s.state))
            #expect(found.id.hex == own && !found.fromAuditBranch)
        }
    }
}
