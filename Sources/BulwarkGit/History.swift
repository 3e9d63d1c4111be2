internal import CLibGit2
public import Foundation

/// A commit read from history, with its trailers parsed by libgit2.
public struct CommitInfo: Sendable, Hashable {
    public let id: ObjectID
    public let parents: [ObjectID]
    public let message: String
    public let author: Signature
    public let committer: Signature
    /// Trailers in order (`Key: value` lines of the message's last paragraph).
    public let trailers: [Trailer]

    public struct Trailer: Sendable, Hashable {
        public let key: String
        public let value: String

        /// A value as libgit2 gives it, as one line: git lets a trailer's value go on over lines
        /// that begin with blanks (folding), and libgit2 keeps their line feeds. Bulwark writes
        /// none; a folded value from a pushed commit, printed as it was, added lines of its own to
        /// `verify-audit`, `log`, `apply` and `report` (a fake "no problems found"). Unfolded as
        /// `git interpret-trailers --unfold` does: each line break with the blanks around it is
        /// one space.
        static func unfolded(_ raw: UnsafePointer<CChar>) -> String {
            let value = String(cString: raw)
            guard value.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) else { return value }
            var result = ""
            var pendingBreak = false
            for line in value.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) {
                let trimmed = line.drop { $0 == " " || $0 == "\t" }
                if pendingBreak {
                    while result.last == " " || result.last == "\t" { result.removeLast() }
                    if !trimmed.isEmpty, !result.isEmpty { result += " " }
                    result += trimmed
                } else {
                    result += line
                }
                pendingBreak = true
            }
            return result
        }
    }

    public var summary: String { message.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? "" }

    /// The first trailer with `key` (case-insensitive in ASCII only, as git compares trailer keys
    /// with strncasecmp: a key spelled with a Kelvin sign or a long s is not `Bulwark-Id`).
    public func trailer(_ key: String) -> String? {
        trailers.first { Self.sameKey($0.key, key) }?.value
    }

    /// Whether two trailer keys are equal ignoring ASCII case. Byte by byte: Foundation's
    /// `caseInsensitiveCompare` (Unicode folding, through NSString) was a fifth of a `plan`
    /// that read back 2,400 records.
    static func sameKey(_ a: String, _ b: String) -> Bool {
        var x = a.utf8.makeIterator()
        var y = b.utf8.makeIterator()
        while true {
            switch (x.next(), y.next()) {
            case (nil, nil): return true
            case let (p?, q?):
                if p == q { continue }
                let lower = { (c: UInt8) -> UInt8 in c >= 65 && c <= 90 ? c + 32 : c }
                if lower(p) != lower(q) { return false }
            default: return false
            }
        }
    }
}

extension Repository {
    /// The commits reachable from `head`, newest first, stopping before any reachable from
    /// `hidden`, at most `limit`.
    /// With `since`, the walk stops at the first commit committed before it.
    /// `sorted` (the default): topological and by time, never a commit before one of its
    /// descendants; libgit2 then reads every commit the walk can reach before it gives the first.
    /// Not sorted: libgit2's own order (newest first along a line of commits, each merge before
    /// its parents), read as the walk goes, for a walk meant to stop early on a long branch (a
    /// sorted one of 100,000 records cost a second and 30 MiB); with `hidden`, it reads down to
    /// where the two meet.
    public func history(
        from head: ObjectID, hiding hidden: ObjectID? = nil, limit: Int = .max, since: Date? = nil, sorted: Bool = true
    ) throws(GitError) -> [CommitInfo] {
        var walk: OpaquePointer?
        try check(git_revwalk_new(&walk, pointer), "git_revwalk_new")
        defer { git_revwalk_free(walk) }
        if sorted {
            try check(git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL.rawValue | GIT_SORT_TIME.rawValue), "git_revwalk_sorting")
        }
        var start = head.raw
        try check(git_revwalk_push(walk, &start), "git_revwalk_push")
        if let hidden {
            var h = hidden.raw
            try check(git_revwalk_hide(walk, &h), "git_revwalk_hide")
        }
        var result: [CommitInfo] = []
        var oid = git_oid()
        while result.count < limit {
            let code = git_revwalk_next(&oid, walk)
            if code == GIT_ITEROVER.rawValue { break }
            try check(code, "git_revwalk_next")
            let info = try commitInfo(ObjectID(oid))
            if let since, info.committer.time < since { break }
            result.append(info)
        }
        return result
    }

    /// One commit, with its trailers.
    public func commitInfo(_ id: ObjectID) throws(GitError) -> CommitInfo {
        let commit = try lookupCommit(id)
        defer { git_commit_free(commit) }
        let message = String(cString: git_commit_message(commit))
        var parents: [ObjectID] = []
        for index in 0..<git_commit_parentcount(commit) {
            if let p = git_commit_parent_id(commit, index) { parents.append(ObjectID(p.pointee)) }
        }
        var array = git_message_trailer_array()
        try check(git_message_trailers(&array, message), "git_message_trailers")
        defer { git_message_trailer_array_free(&array) }
        var trailers: [CommitInfo.Trailer] = []
        for index in 0..<array.count {
            let t = array.trailers[index]
            trailers.append(.init(key: String(cString: t.key), value: CommitInfo.Trailer.unfolded(t.value)))
        }
        return CommitInfo(id: id, parents: parents, message: message,
                          author: Signature(git_commit_author(commit)),
                          committer: Signature(git_commit_committer(commit)), trailers: trailers)
    }

    /// Reads one file's contents at a commit, or nil when absent.
    public func file(at commit: ObjectID, path: String) throws(GitError) -> [UInt8]? {
        try file(at: commit, path: path, blobsOnly: false)
    }

    /// `file(at:path:)`, nil also where `path` names a folder or a submodule: for readers of
    /// files anyone who can push may have put there (audit records), where such an entry is no
    /// file rather than an error that would stop the reader.
    public func blob(at commit: ObjectID, path: String) throws(GitError) -> [UInt8]? {
        try file(at: commit, path: path, blobsOnly: true)
    }

    private func file(at commit: ObjectID, path: String, blobsOnly: Bool) throws(GitError) -> [UInt8]? {
        guard let entry = try entry(at: commit, path: path) else { return nil }
        if blobsOnly, ![0o100000, 0o120000].contains(entry.mode & 0o170000) { return nil }
        var oid = entry.id.raw
        var blob: OpaquePointer?
        try check(git_blob_lookup(&blob, pointer, &oid), "git_blob_lookup(\(path))")
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard let raw = git_blob_rawcontent(blob) else { return [] }
        return Array(UnsafeRawBufferPointer(start: raw, count: size))
    }
}
