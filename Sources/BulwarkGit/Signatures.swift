internal import CLibGit2

/// A commit's signature and the bytes it signs (the commit object without its `gpgsig` header),
/// as git stores them, for a verifier outside libgit2 (`ssh-keygen -Y verify`).
public struct CommitSignature: Sendable, Hashable {
    /// The armored signature (`-----BEGIN SSH SIGNATURE-----` for an SSH-signed commit).
    public let signature: [UInt8]
    /// The commit object as it was signed.
    public let signedData: [UInt8]
}

extension Repository {
    /// The signature of `commit`, or nil when the commit is unsigned.
    public func signature(of commit: ObjectID) throws(GitError) -> CommitSignature? {
        var signature = git_buf()
        var data = git_buf()
        var oid = commit.raw
        let code = git_commit_extract_signature(&signature, &data, pointer, &oid, nil)
        defer {
            git_buf_dispose(&signature)
            git_buf_dispose(&data)
        }
        if code == GIT_ENOTFOUND.rawValue {
            // Also the code for a missing commit: only a commit that exists is "unsigned".
            git_commit_free(try lookupCommit(commit))
            return nil
        }
        try check(code, "git_commit_extract_signature(\(commit.short))")
        return CommitSignature(signature: Self.bytes(signature), signedData: Self.bytes(data))
    }

    private static func bytes(_ buffer: git_buf) -> [UInt8] {
        guard let start = buffer.ptr, buffer.size > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: start, count: buffer.size))
    }
}
