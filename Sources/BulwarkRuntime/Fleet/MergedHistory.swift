package import BulwarkGit
import Foundation

/// Several audit refs read as one history: a k-way merge of each ref's commits (newest first)
/// by commit time. Each ref keeps its own order (git times have whole seconds: records of one
/// second stay in the order their writer committed them); between refs, the newer commit comes
/// first and a tie goes to the ref whose head has the lower id, so every process shows the same
/// order. A commit reachable from two refs is listed once.
package enum MergedHistory {
    package static func merge(heads: [ObjectID], limit: Int,
                              commits: (ObjectID, Int) throws -> [CommitInfo]) throws -> [CommitInfo] {
        let unique = Set(heads).sorted()
        guard unique.count > 1 else { return try unique.first.map { try commits($0, limit) } ?? [] }
        // The newest `limit` of the merge are among the newest `limit` of each ref.
        let lists = try unique.map { try commits($0, limit) }
        var positions = [Int](repeating: 0, count: lists.count)
        var seen = Set<ObjectID>()
        var result: [CommitInfo] = []
        while result.count < limit {
            var best: Int?
            for index in lists.indices where positions[index] < lists[index].count {
                guard let current = best else { best = index; continue }
                if lists[index][positions[index]].committer.time > lists[current][positions[current]].committer.time { best = index }
            }
            guard let best else { break }
            let commit = lists[best][positions[best]]
            positions[best] += 1
            if seen.insert(commit.id).inserted { result.append(commit) }
        }
        return result
    }
}
