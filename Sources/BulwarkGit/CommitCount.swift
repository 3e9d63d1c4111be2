internal import CLibGit2

extension Repository {
    /// How many commits are reachable from `head` and not from `hidden`: what `history(from:hiding:)`
    /// would list, counted without reading their messages into memory (a push after a pass of
    /// 2,400 records built 2,400 `CommitInfo`s only to count them).
    public func commitCount(from head: ObjectID, hiding hidden: ObjectID? = nil) throws(GitError) -> Int {
        if let hidden, let count = try firstParentDistance(from: head, to: hidden) { return count }
        let walk = try unsortedWalk(from: head, hiding: hidden)
        defer { git_revwalk_free(walk) }
        var count = 0
        var oid = git_oid()
        while true {
            let code = git_revwalk_next(&oid, walk)
            if code == GIT_ITEROVER.rawValue { break }
            try check(code, "git_revwalk_next")
            count += 1
        }
        return count
    }

    /// How many commits lie between `head` and its ancestor `hidden` when every one of them has a
    /// single parent (an audit branch after a pass: records on top of what was pushed), or nil at
    /// a merge or a root, where only a full walk can tell. libgit2's walk also reads a few
    /// generations below `hidden` to be sure nothing there is still wanted; after 100,000 records
    /// those sit in one large pack, and each read touches its index (11 of a 100-root apply's
    /// 38 page faults in it). This reads only the commits it counts, never `hidden` itself, and
    /// gives up after `limit` of them (when `hidden` is not an ancestor, it would read the whole
    /// branch before the walk read it again).
    func firstParentDistance(from head: ObjectID, to hidden: ObjectID, limit: Int = 1 << 16) throws(GitError) -> Int? {
        var current = head
        var count = 0
        while current != hidden {
            guard count < limit else { return nil }
            let commit = try lookupCommit(current)
            defer { git_commit_free(commit) }
            guard git_commit_parentcount(commit) == 1, let parent = git_commit_parent_id(commit, 0) else { return nil }
            current = ObjectID(parent.pointee)
            count += 1
        }
        return count
    }

    /// A revision walk from `head` (not into `hidden`), in no particular order: a sorted walk
    /// reads every commit before returning the first. The caller frees it.
    func unsortedWalk(from head: ObjectID, hiding hidden: ObjectID? = nil) throws(GitError) -> OpaquePointer? {
        var walk: OpaquePointer?
        try check(git_revwalk_new(&walk, pointer), "git_revwalk_new")
        do {
            try check(git_revwalk_sorting(walk, GIT_SORT_NONE.rawValue), "git_revwalk_sorting")
            var start = head.raw
            try check(git_revwalk_push(walk, &start), "git_revwalk_push")
            if let hidden {
                var h = hidden.raw
                try check(git_revwalk_hide(walk, &h), "git_revwalk_hide")
            }
        } catch {
            git_revwalk_free(walk)
            throw error
        }
        return walk
    }
}
