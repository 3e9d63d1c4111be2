@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

@Suite struct AuditIndexTests {
    let a = "01AAAAAAAAAAAAAAAAAAAAAAAA"
    let b = "01BBBBBBBBBBBBBBBBBBBBBBBB"
    let c = "01CCCCCCCCCCCCCCCCCCCCCCCC"
    let absent = "01ZZZZZZZZZZZZZZZZZZZZZZZZ"

    /// One process: opens the state directory, fetches, runs `body`, and lets the lock go.
    func process<R>(_ s: Scenario, _ body: (PolicyRepository) async throws -> R) async throws -> R {
        let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
        _ = try await repo.sync()
        return try await body(repo)
    }

    func writeAndPublish(_ s: Scenario, _ ids: String...) async throws {
        try await process(s) { (repo: PolicyRepository) async throws in
            for id in ids { _ = try await repo.write(PolicyRepositoryTests().record(id)) }
            #expect(try await repo.publish() == .pushed(commits: ids.count))
        }
    }

    func answers(_ repo: PolicyRepository) async throws -> [Bool] {
        [try await repo.contains(recordID: a), try await repo.contains(recordID: b), try await repo.contains(recordID: absent)]
    }

    func indexPath(_ s: Scenario) -> String { s.state + "/" + AuditIndex.fileName }

    @Test func idsWrittenByOneProcessAreFoundByTheNextThroughTheIndex() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a, b)
            // The file says which audit commit it is up to date with.
            let head = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try read(indexPath(s)).hasPrefix("bulwark-audit-index 1 \(head) 2\n"))

            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await answers(repo) == [true, true, false])
                #expect(await repo.indexStatistics == .init(loadedFromFile: true, rebuilds: 0, commitsRead: 0))
            }

            // Another writer adds a record: the next process reads that one commit only.
            #expect(try await PolicyRepositoryTests.otherWriter(s, dir: dir, id: c) == .pushed(commits: 1))
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await repo.contains(recordID: c))
                #expect(try await answers(repo) == [true, true, false])
                #expect(await repo.indexStatistics == .init(loadedFromFile: true, rebuilds: 0, commitsRead: 1))
            }
        }
    }

    @Test func aDeletedIndexIsRebuiltAndGivesTheSameAnswer() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a, b)
            try FileManager.default.removeItem(atPath: indexPath(s))
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await answers(repo) == [true, true, false])
                let statistics = await repo.indexStatistics
                #expect(!statistics.loadedFromFile && statistics.rebuilds == 1)
            }
            #expect(AuditIndex.read(in: s.state)?.ids == [a, b])
        }
    }

    @Test(arguments: [
        "garbage\n",
        "",
        // Truncated: the header counts two ids, one is there.
        "bulwark-audit-index 1 HEAD 2\n01AAAAAAAAAAAAAAAAAAAAAAAA\n",
        // No final newline (a write cut short).
        "bulwark-audit-index 1 HEAD 1\n01AAAAAAAAAAAAAAAAAAAAAAAA",
        // A head that is no commit.
        "bulwark-audit-index 1 0123456789012345678901234567890123456789 1\n01ZZZZZZZZZZZZZZZZZZZZZZZZ\n",
    ])
    func aCorruptIndexIsRebuilt(contents: String) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a, b)
            let head = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
            try write(indexPath(s), contents.replacingOccurrences(of: "HEAD", with: head))
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await answers(repo) == [true, true, false])
                #expect(await repo.indexStatistics.rebuilds == 1)
            }
            #expect(AuditIndex.read(in: s.state) == AuditIndex(head: ObjectID(hex: head), ids: [a, b]))
        }
    }

    @Test func aRewrittenAuditBranchRebuildsTheIndexAndForgetsTheIdsThatAreGone() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a)
            let older = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
            try await writeAndPublish(s, b)
            // The branch is rewritten to the older commit on the origin and in the state clone
            // (Bulwark itself would replay its local commits on top, as unpushed ones).
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", older)
            for ref in ["refs/heads/bulwark/audit", "refs/remotes/origin/bulwark/audit"] {
                try git("--git-dir", s.state + "/repository.git", "update-ref", ref, older)
            }
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await answers(repo) == [true, false, false])
                #expect(await repo.indexStatistics.rebuilds == 1)
            }
            #expect(AuditIndex.read(in: s.state)?.ids == [a])
        }
    }

    @Test func aStateCloneMadeAgainDoesNotTrustAnIndexOfTheOldOne() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a)
            let older = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
            try await writeAndPublish(s, b)
            // The origin is reset and the state clone is removed; the index file stays behind
            // and names a commit the new clone does not have.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", older)
            try FileManager.default.removeItem(atPath: s.state + "/repository.git")
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await answers(repo) == [true, false, false])
                #expect(await repo.indexStatistics.rebuilds == 1)
            }
        }
    }

    @Test func aRecordWrittenInThisProcessIsFoundAndSavedWithItsCommitAtPublish() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await !repo.contains(recordID: a))
                _ = try await repo.write(PolicyRepositoryTests().record(a))
                #expect(try await repo.contains(recordID: a))
                #expect(try await !repo.contains(recordID: b))
                _ = try await repo.publish()
            }
            let head = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(AuditIndex.read(in: s.state) == AuditIndex(head: ObjectID(hex: head), ids: [a]))
        }
    }

    @Test func theFileFormatRoundTripsAndRefusesIdsItCannotHold() {
        let index = AuditIndex(head: ObjectID(hex: String(repeating: "ab", count: 20)), ids: [a, b])
        #expect(index.serialized().flatMap(AuditIndex.parse) == index)
        #expect(AuditIndex(head: nil, ids: []).serialized().flatMap(AuditIndex.parse) == AuditIndex(head: nil, ids: []))
        #expect(AuditIndex(head: nil, ids: ["two\nlines"]).serialized() == nil)
        #expect(AuditIndex(head: nil, ids: ["a space"]).serialized() == nil)
    }
}

@Suite struct AuditIndexEndToEndTests {
    @Test func aHeldDecisionIsRecordedOnceAcrossRunsWithAndWithoutTheIndex() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let controller = try read(s.policy + "/controllers/host-hardening.yaml")
                .replacingOccurrences(of: "mode: enforce", with: "mode: approve")
            try s.commitPolicy("controllers/host-hardening.yaml", controller)
            #expect(try s.run("apply").status == 0)
            let held = try s.trailers("Bulwark-Decision").filter { $0 == "held" }.count
            #expect(held > 0)
            let count = try s.auditCommits().count
            let head = try #require(s.auditCommits().first)
            #expect(try read(s.state + "/" + AuditIndex.fileName).hasPrefix("bulwark-audit-index 1 \(head) "))

            #expect(try s.run("apply").status == 0)
            #expect(try s.auditCommits().count == count)
            try FileManager.default.removeItem(atPath: s.state + "/" + AuditIndex.fileName)
            #expect(try s.run("apply").status == 0)
            #expect(try s.auditCommits().count == count)
            try write(s.state + "/" + AuditIndex.fileName, "garbage\n")
            #expect(try [0, 2].contains(s.run("plan").status))
            #expect(try s.run("apply").status == 0)
            #expect(try s.auditCommits().count == count)
        }
    }
}

@Suite struct AuditHistoryWalkTests {
    @Test func aMergeOnTheAuditBranchIsReadWhole() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let t = AuditIndexTests()
            try await t.writeAndPublish(s, t.a, t.b)
            // Someone merges a side commit into the audit branch on the origin.
            func origin(_ arguments: String...) throws -> String {
                let result = try run("/usr/bin/git", ["--git-dir", s.origin] + arguments)
                guard result.status == 0 else { throw SupportError("git \(arguments) failed: \(result.stderr)") }
                return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let side = try origin("commit-tree", "bulwark/audit~1^{tree}", "-p", "bulwark/audit~1", "-m", "side\n\nBulwark-Id: \(t.c)")
            let merge = try origin("commit-tree", "bulwark/audit^{tree}", "-p", "bulwark/audit", "-p", side, "-m", "merge")
            _ = try origin("update-ref", "refs/heads/bulwark/audit", merge)
            try await t.process(s) { (repo: PolicyRepository) async throws in
                let walked = try await repo.auditHistory().map(\.id.hex)
                #expect(walked.first == merge)
                #expect(Set(walked) == Set(try origin("rev-list", "bulwark/audit").split(separator: "\n").map(String.init)))
                #expect(try await repo.auditHistory(limit: 2).count == 2)
                #expect(try await repo.contains(recordID: t.c))
                #expect(await repo.indexStatistics == .init(loadedFromFile: true, rebuilds: 0, commitsRead: 2))
            }
        }
    }
}
