internal import CLibGit2

/// What a commit itself changed, as opposed to what it took from a parent: the ground of the
/// trust policy's per-path rules, of a weakening's authors and of an approval's writer.
///
/// A merge is the hard case. A merge of two parents that takes a file from one of them took it
/// *cleanly* only when the other parent had not changed that file since their merge base: that is
/// what a clean `git merge` would have written. Where the other parent had changed it (a newer
/// value, a deleted approval) and the merge keeps the first's anyway, the merge threw that change
/// away, and the merge itself wrote the result: a merge whose first parent is an old commit and
/// whose tree keeps that commit's files undoes everything since, while differing from no parent
/// where it matters.
extension Repository {
    /// A tree entry as git compares it: the object and the file mode.
    struct Entry: Hashable {
        let id: ObjectID
        let mode: UInt32
    }

    /// The paths `commit` itself changes, sorted. One parent: what differs from it; a root commit:
    /// everything in it. Two parents: what the merge did not take cleanly from a parent (see the
    /// type's note): a path that differs from both, or one that is as one parent has it where the
    /// other parent had changed it since their merge base (each merge base, when there are
    /// several). More parents: what differs from any of them.
    public func pathsChanged(by commit: CommitInfo) throws(GitError) -> [String] {
        try pathsChanged(by: commit, among: nil)
    }

    /// `pathsChanged(by:)`, looking only at `among` when given (a merge's bases are then sought
    /// only when one of them differs from a parent).
    func pathsChanged(by commit: CommitInfo, among wanted: Set<String>?) throws(GitError) -> [String] {
        func keep(_ paths: [String]) -> [String] { wanted.map { only in paths.filter(only.contains) } ?? paths }
        guard let first = commit.parents.first else { return keep(try changedPathsOfChangedFolders(from: nil, to: commit.id)) }
        guard commit.parents.count > 1 else { return keep(try changedPathsOfChangedFolders(from: first, to: commit.id)) }
        var candidates = Set<String>()
        for parent in commit.parents { candidates.formUnion(keep(try changedPathsOfChangedFolders(from: parent, to: commit.id))) }
        var bases: [ObjectID]?
        var changed: [String] = []
        for path in candidates.sorted() {
            let source = try parent(givingCleanly: path, content: try entry(at: commit.id, path: path), in: commit) { () throws(GitError) in
                if let bases { return bases }
                let found = try mergeBases(commit.parents[0], commit.parents[1])
                bases = found
                return found
            }
            if source == nil { changed.append(path) }
        }
        return changed
    }

    /// The commit that wrote `path` as it is at `head`: followed back from `head` through each
    /// commit that took the same content (object and mode) from a parent, one parent at a time
    /// (a merge: only what it took cleanly, see the type's note), at most `limit` steps. Nil when
    /// `head` has no such path or the walk is longer. Whoever wrote a file's current content
    /// vouches for it; a merge that brings an old commit's file back over a newer change or a
    /// deletion wrote it itself.
    public func commitWriting(_ path: String, from head: ObjectID, limit: Int = 1000) throws(GitError) -> CommitInfo? {
        guard let content = try entry(at: head, path: path) else { return nil }
        var commit = try commitInfo(head)
        for _ in 0..<limit {
            let source = try parent(givingCleanly: path, content: content, in: commit) { () throws(GitError) in
                try mergeBases(commit.parents[0], commit.parents[1])
            }
            guard let source else { return commit }
            commit = try commitInfo(source)
        }
        return nil
    }

    /// The parent `commit` took `path`'s `content` (nil: absent) from unchanged, or nil when the
    /// commit wrote it. One parent: that one when it has the same content. Two: one that has
    /// it (the first when both do), provided the other has it too or has what each merge base of
    /// the two has (`bases`, asked only then; none: the path absent). More: the first, only when
    /// every parent has it.
    private func parent(
        givingCleanly path: String, content: Entry?, in commit: CommitInfo, bases: () throws(GitError) -> [ObjectID]
    ) throws(GitError) -> ObjectID? {
        var contents: [Entry?] = []
        for parent in commit.parents { contents.append(try entry(at: parent, path: path)) }
        guard let same = contents.firstIndex(where: { $0 == content }) else { return nil }
        if contents.allSatisfy({ $0 == content }) { return commit.parents[same] }
        guard commit.parents.count == 2 else { return nil }
        let other = contents[1 - same]
        let found = try bases()
        if found.isEmpty { return other == nil ? commit.parents[same] : nil }
        for base in found {
            if try entry(at: base, path: path) != other { return nil }
        }
        return commit.parents[same]
    }

    /// The merge bases of two commits (several after criss-cross merges); empty when their
    /// histories share no commit.
    func mergeBases(_ one: ObjectID, _ two: ObjectID) throws(GitError) -> [ObjectID] {
        var array = git_oidarray()
        var a = one.raw
        var b = two.raw
        let code = git_merge_bases(&array, pointer, &a, &b)
        if code == GIT_ENOTFOUND.rawValue { return [] }
        try check(code, "git_merge_bases")
        defer { git_oidarray_dispose(&array) }
        var result: [ObjectID] = []
        for index in 0..<array.count { result.append(ObjectID(array.ids[index])) }
        return result
    }

    /// The entry at `path` in the tree of `commit`, or nil when there is none.
    func entry(at commit: ObjectID, path: String) throws(GitError) -> Entry? {
        let tree = try tree(ofCommit: commit)
        defer { git_tree_free(tree) }
        var entry: OpaquePointer?
        let code = git_tree_entry_bypath(&entry, tree, path)
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "git_tree_entry_bypath(\(path))")
        defer { git_tree_entry_free(entry) }
        return Entry(id: ObjectID(git_tree_entry_id(entry).pointee), mode: git_tree_entry_filemode(entry).rawValue)
    }
}
