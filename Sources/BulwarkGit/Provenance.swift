internal import CLibGit2

/// Who changed what in a repository's history: the authority behind approvals and the authors of
/// a weakening come from git, never from what a file says about itself.
extension Repository {
    /// The authors of the commits that changed any of `paths`, newest first, walking from `head`
    /// back to (not including) `base`, at most `limit` commits. A merge counts as changing a path
    /// when it differs from its first parent.
    public func authors(
        changing paths: Set<String>, from head: ObjectID, since base: ObjectID?, limit: Int = 1000
    ) throws(GitError) -> [String: [Signature]] {
        var result: [String: [Signature]] = [:]
        for commit in try history(from: head, hiding: base, limit: limit) {
            let changed = try changedPaths(from: commit.parents.first, to: commit.id)
            for path in changed where paths.contains(path) {
                if !(result[path]?.contains { $0.email == commit.author.email } ?? false) {
                    result[path, default: []].append(commit.author)
                }
            }
        }
        return result
    }

    /// The commit that last wrote `path` as it is at `head` (present in it, different or absent in
    /// its first parent), walking back from `head` at most `limit` commits; nil when not found.
    /// Whoever wrote a file's current content vouches for it.
    public func commitWriting(_ path: String, from head: ObjectID, limit: Int = 1000) throws(GitError) -> CommitInfo? {
        for commit in try history(from: head, limit: limit) {
            guard let content = try file(at: commit.id, path: path) else { continue }
            if let parent = commit.parents.first, try file(at: parent, path: path) == content { continue }
            return commit
        }
        return nil
    }
}
