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

    /// The head and the ids of the index file, after checking it whole; nil when it does not check out.
    func stored(_ s: Scenario) -> (head: String?, ids: Set<String>)? {
        guard let file = AuditIndex.open(in: s.state), let ids = file.allIDs() else { return nil }
        return (file.head?.hex, ids)
    }

    func originHead(_ s: Scenario) throws -> String {
        try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A well-formed index file of one block.
    func indexFile(head: String?, ids: [String]) -> String {
        let block = ids.map { $0 + "\n" }.joined()
        let line = AuditIndex.checkpointLine(head: head.flatMap { ObjectID(hex: $0) }, count: ids.count, block: AuditIndex.header.count,
                                             checksum: AuditIndex.checksum(Array(block.utf8)))
        return "bulwark-audit-index 2\n" + block + String(decoding: line, as: UTF8.self)
    }

    @Test func idsWrittenByOneProcessAreFoundByTheNextThroughTheIndex() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a, b)
            // The file says which audit commit it is up to date with.
            let head = try originHead(s)
            #expect(stored(s)?.head == head)
            #expect(stored(s)?.ids == [a, b])

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
            #expect(stored(s)?.ids == [a, b])
        }
    }

    @Test func aPassThatOnlyAddsRecordsDoesNotWalkTheBranchAndAppendsToTheFile() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a)
            let before = try read(indexPath(s))
            // Appended, not rewritten: the first pass's bytes stay as they were.
            try await process(s) { (repo: PolicyRepository) async throws in
                _ = try await repo.write(PolicyRepositoryTests().record(b))
                _ = try await repo.publish()
                #expect(await repo.indexStatistics == .init(loadedFromFile: true, rebuilds: 0, commitsRead: 0))
            }
            let after = try read(indexPath(s))
            #expect(after.hasPrefix(before) && after.count > before.count)
            #expect(stored(s)?.ids == [a, b])
            #expect(stored(s)?.head == (try originHead(s)))

            // Without the file, a pass that only adds records reads no history and makes none;
            // the first lookup builds it once.
            try FileManager.default.removeItem(atPath: indexPath(s))
            try await process(s) { (repo: PolicyRepository) async throws in
                _ = try await repo.write(PolicyRepositoryTests().record(c))
                _ = try await repo.publish()
                #expect(await repo.indexStatistics == .init(loadedFromFile: false, rebuilds: 0, commitsRead: 0))
            }
            #expect(!FileManager.default.fileExists(atPath: indexPath(s)))
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await repo.contains(recordID: c))
                #expect(try await answers(repo) == [true, true, false])
                #expect(await repo.indexStatistics.rebuilds == 1)
            }
            #expect(stored(s)?.ids == [a, b, c])
        }
    }

    @Test func aTornAppendIsCutOffAndTheIndexBeforeItIsKept() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a, b)
            // A process killed in the middle of its append: an id and half a checkpoint.
            let handle = try #require(FileHandle(forWritingAtPath: indexPath(s)))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("\(absent)\n@ 0123".utf8))
            try handle.close()
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await answers(repo) == [true, true, false])
                _ = try await repo.write(PolicyRepositoryTests().record(c))
                _ = try await repo.publish()
                #expect(await repo.indexStatistics == .init(loadedFromFile: true, rebuilds: 0, commitsRead: 0))
            }
            #expect(stored(s)?.ids == [a, b, c])
            #expect(try !read(indexPath(s)).contains(absent))
        }
    }

    /// A file of two blocks (`a`, then `b` appended), as two passes leave it.
    func twoBlocks(_ s: Scenario, head: String) throws -> String {
        let file = try AuditIndex.create(in: s.state, head: nil, ids: [a])
        try file.append([b], head: try #require(ObjectID(hex: head)))
        return try read(indexPath(s))
    }

    /// Damaged files, each made from a good one of `a` (and `b`) at the branch's head.
    enum Damage: CaseIterable { case garbage, empty, formatOne, badChecksum, changedID, idAbsentFromTheBranch, headNoCommit, truncated, impossibleCount }

    @Test(arguments: Damage.allCases)
    func aCorruptIndexIsRebuiltAndGivesTheSameAnswers(damage: Damage) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try await writeAndPublish(s, a, b)
            let head = try originHead(s)
            let good = indexFile(head: head, ids: [a, b])
            let contents: String = switch damage {
            case .garbage: "garbage\n"
            case .empty: ""
            case .formatOne: "bulwark-audit-index 1 \(head) 2\n\(a)\n\(b)\n"
            // One id changed, the checksum left as it was.
            case .badChecksum: good.replacingOccurrences(of: a, with: absent)
            // A block in the middle of the file damaged: found at the first lookup.
            case .changedID: try twoBlocks(s, head: head).replacingOccurrences(of: a, with: absent)
            // Well formed, but claims a record the branch does not hold.
            case .idAbsentFromTheBranch: indexFile(head: "0123456789012345678901234567890123456789", ids: [a, b, absent])
            case .headNoCommit: indexFile(head: "0123456789012345678901234567890123456789", ids: [a, b])
            case .truncated: String(good.dropLast(30))
            // A checkpoint whose block checks out but whose count no file of its size can hold
            // (it sized a dictionary and crashed the process at the first lookup).
            case .impossibleCount: "bulwark-audit-index 2\n\(a)\n\(b)\n" + String(decoding: AuditIndex.checkpointLine(
                head: ObjectID(hex: head), count: 999_999_999_999_999, block: AuditIndex.header.count,
                checksum: AuditIndex.checksum(Array("\(a)\n\(b)\n".utf8))), as: UTF8.self)
            }
            try write(indexPath(s), contents)
            try await process(s) { (repo: PolicyRepository) async throws in
                #expect(try await answers(repo) == [true, true, false])
                #expect(await repo.indexStatistics.rebuilds == 1)
            }
            #expect(stored(s)?.head == head)
            #expect(stored(s)?.ids == [a, b])
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
            #expect(stored(s)?.ids == [a])
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
            #expect(stored(s)?.head == (try originHead(s)))
            #expect(stored(s)?.ids == [a])
        }
    }

    @Test func theFileRoundTripsThroughAppendsAndHoldsNoIdItCannotWriteOnOneLine() async throws {
        try await withTemporaryDirectory { dir in
            let one = try #require(ObjectID(hex: String(repeating: "ab", count: 20)))
            let two = try #require(ObjectID(hex: String(repeating: "cd", count: 20)))
            let file = try AuditIndex.create(in: dir, head: one, ids: [a, "two\nlines", "a space", "@checkpoint"])
            #expect(try file.contains(a) && !file.contains(b) && !file.contains("two\nlines") && !file.contains("a space"))
            try file.append([b, c], head: two)
            // Known at once to this process, and to the next one from the file.
            #expect(try file.contains(b) && file.contains(c) && !file.contains(absent))
            let again = try #require(AuditIndex.open(in: dir))
            #expect(again.head == two && again.count == 3)
            #expect(try again.contains(a) && again.contains(c) && !again.contains(absent))
            #expect(again.allIDs() == [a, b, c])
        }
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
            #expect(AuditIndex.open(in: s.state)?.head?.hex == head)

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
