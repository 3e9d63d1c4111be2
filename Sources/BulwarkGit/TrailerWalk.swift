internal import CLibGit2
internal import Foundation

extension Repository {
    /// Calls `body` with every commit reachable from `head` (in no particular order) and the
    /// value of its first trailer `key` (case-insensitive, as `CommitInfo.trailer`), or nil.
    ///
    /// For a walk of a whole branch (rebuilding the audit index): unlike `history`, nothing is
    /// sorted (a sorted walk reads every commit before returning the first), and of each commit
    /// only the message's trailers are read, with the same parser, so it answers as
    /// `commitInfo(_:).trailer(key)` does.
    public func forEachCommit(from head: ObjectID, trailer key: String,
                              _ body: (ObjectID, String?) throws -> Void) throws {
        let walk = try unsortedWalk(from: head)
        defer { git_revwalk_free(walk) }
        var oid = git_oid()
        while true {
            let code = git_revwalk_next(&oid, walk)
            if code == GIT_ITEROVER.rawValue { break }
            try check(code, "git_revwalk_next")
            let id = ObjectID(oid)
            let commit = try lookupCommit(id)
            var value: String?
            do {
                defer { git_commit_free(commit) }
                var array = git_message_trailer_array()
                try check(git_message_trailers(&array, git_commit_message(commit)), "git_message_trailers")
                defer { git_message_trailer_array_free(&array) }
                for index in 0..<array.count {
                    let trailer = array.trailers[index]
                    if CommitInfo.sameKey(String(cString: trailer.key), key) {
                        value = CommitInfo.Trailer.unfolded(trailer.value)
                        break
                    }
                }
            }
            try body(id, value)
        }
    }
}
