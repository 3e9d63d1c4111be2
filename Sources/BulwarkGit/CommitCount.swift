internal import CLibGit2

extension Repository {
    /// How many commits are reachable from `head` and not from `hidden`: what `history(from:hiding:)`
    /// would list, counted without reading their messages into memory (a push after a pass of
    /// 2,400 records built 2,400 `CommitInfo`s only to count them).
    public func commitCount(from head: ObjectID, hiding hidden: ObjectID? = nil) throws(GitError) -> Int {
        var walk: OpaquePointer?
        try check(git_revwalk_new(&walk, pointer), "git_revwalk_new")
        defer { git_revwalk_free(walk) }
        try check(git_revwalk_sorting(walk, GIT_SORT_NONE.rawValue), "git_revwalk_sorting")
        var start = head.raw
        try check(git_revwalk_push(walk, &start), "git_revwalk_push")
        if let hidden {
            var h = hidden.raw
            try check(git_revwalk_hide(walk, &h), "git_revwalk_hide")
        }
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
}
