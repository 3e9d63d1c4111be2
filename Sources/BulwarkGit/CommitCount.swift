internal import CLibGit2

extension Repository {
    /// How many commits are reachable from `head` and not from `hidden`: what `history(from:hiding:)`
    /// would list, counted without reading their messages into memory (a push after a pass of
    /// 2,400 records built 2,400 `CommitInfo`s only to count them).
    public func commitCount(from head: ObjectID, hiding hidden: ObjectID? = nil) throws(GitError) -> Int {
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
