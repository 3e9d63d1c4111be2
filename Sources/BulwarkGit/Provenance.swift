/// Who changed what in a repository's history: the authority behind approvals and the authors of
/// a weakening come from git, never from what a file says about itself.
extension Repository {
    /// The commits that changed any of `paths` (as `pathsChanged(by:)` counts a change, so a merge
    /// that did not take a path cleanly from a parent changed it), per path, newest first, walking
    /// from `head` back to (not including) `base`, at most `limit` commits.
    public func commits(
        changing paths: Set<String>, from head: ObjectID, since base: ObjectID?, limit: Int = 1000
    ) throws(GitError) -> [String: [CommitInfo]] {
        var result: [String: [CommitInfo]] = [:]
        for commit in try history(from: head, hiding: base, limit: limit) {
            for path in try pathsChanged(by: commit, among: paths) { result[path, default: []].append(commit) }
        }
        return result
    }

    /// The git authors of `commits(changing:from:since:limit:)`, one per e-mail address.
    public func authors(
        changing paths: Set<String>, from head: ObjectID, since base: ObjectID?, limit: Int = 1000
    ) throws(GitError) -> [String: [Signature]] {
        try commits(changing: paths, from: head, since: base, limit: limit).mapValues { commits in
            var authors: [Signature] = []
            for commit in commits where !authors.contains(where: { $0.email == commit.author.email }) { authors.append(commit.author) }
            return authors
        }
    }
}
