@testable import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// `commitCount(from:hiding:)` is what a push reports as sent. It counts along first parents when
/// the history between is a line (no libgit2 walk below the hidden commit), and walks in full
/// otherwise; either way it must give `git rev-list --count head ^hidden`.
@Suite struct CommitCountTests {
    /// A history with a side branch merged in, commits on top of the merge, and a branch that
    /// left before the merge (not an ancestor of main's head).
    func history(in dir: String) throws -> (Repository, [String: ObjectID]) {
        let work = dir + "/work"
        try git("init", "-q", "-b", "main", work)
        try git("config", "user.name", "t", in: work)
        try git("config", "user.email", "t@localhost", in: work)
        func commit(_ name: String) throws {
            try git("commit", "-q", "--allow-empty", "-m", name, in: work)
            try git("tag", name, in: work)
        }
        for index in 1...5 { try commit("m\(index)") }
        try git("checkout", "-q", "-b", "side", "m3", in: work)
        for index in 1...3 { try commit("s\(index)") }
        try git("checkout", "-q", "-b", "stray", "m4", in: work)
        try commit("x1")
        try git("checkout", "-q", "main", in: work)
        try git("merge", "-q", "--no-ff", "-m", "merge", "side", in: work)
        try git("tag", "merge", in: work)
        for index in 6...9 { try commit("m\(index)") }
        var ids: [String: ObjectID] = [:]
        for tag in ["m1", "m3", "m5", "m6", "m8", "m9", "s2", "x1", "merge"] {
            let hex = try git("rev-parse", "\(tag)^{commit}", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            ids[tag] = try #require(ObjectID(hex: hex))
        }
        return (try Repository.open(at: work), ids)
    }

    static let pairs: [(String, String)] = [
        ("m9", "m6"), ("m9", "m8"), ("m9", "m9"), ("m9", "merge"), // a line: counted along first parents
        ("m9", "m5"), ("m9", "m3"), ("m9", "s2"), ("m6", "m1"), // across the merge
        ("m9", "x1"), ("x1", "m9"), ("m5", "s2"), ("m1", "m5"), // not an ancestor (m1: behind, on a line)
    ]

    @Test(arguments: pairs)
    func countsWhatGitRevListCounts(head: String, hidden: String) async throws {
        try await withTemporaryDirectory { dir in
            let (repo, ids) = try history(in: dir)
            let expected = try git("rev-list", "--count", head, "^\(hidden)", in: dir + "/work")
            let count = try repo.commitCount(from: try #require(ids[head]), hiding: try #require(ids[hidden]))
            #expect(String(count) == expected.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// The line is counted without the walk only where it is one; a merge, a root, or more
    /// commits than the limit leave it to the walk.
    @Test func theFirstParentCountAnswersOnlyForALine() async throws {
        try await withTemporaryDirectory { dir in
            let (repo, ids) = try history(in: dir)
            let m9 = try #require(ids["m9"])
            #expect(try repo.firstParentDistance(from: m9, to: try #require(ids["m6"])) == 3)
            #expect(try repo.firstParentDistance(from: m9, to: try #require(ids["merge"])) == 4)
            #expect(try repo.firstParentDistance(from: m9, to: try #require(ids["m5"])) == nil)
            #expect(try repo.firstParentDistance(from: try #require(ids["x1"]), to: m9) == nil)
            #expect(try repo.firstParentDistance(from: m9, to: try #require(ids["m6"]), limit: 2) == nil)
            #expect(try repo.firstParentDistance(from: m9, to: try #require(ids["m6"]), limit: 3) == 3)
        }
    }
}
