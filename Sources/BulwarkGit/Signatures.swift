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
        // libgit2 1.5 looks for the header past the end of the headers (into the message) and
        // stops the signed bytes at a NUL: such a commit is one git itself calls unsigned, or
        // one whose id covers more than what was signed. Only a commit with exactly one
        // signature header among its headers and no NUL is read as signed.
        let raw = try rawObject(commit.raw)
        let end = Self.headerEnd(raw)
        let headers = raw[..<end].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let signatureHeaders = headers.filter { $0.starts(with: Array("gpgsig ".utf8)) || $0.starts(with: Array("gpgsig-sha256 ".utf8)) }
        guard !raw.contains(0), signatureHeaders.count == 1 else {
            throw GitError(function: "signature(of: \(commit.short))", code: -1,
                           message: raw.contains(0) ? "the commit holds a NUL byte, which git's signature check does not read past"
                               : signatureHeaders.isEmpty ? "the commit's signature is not among its headers (git reads it as unsigned)"
                               : "the commit carries \(signatureHeaders.count) signature headers")
        }
        return CommitSignature(signature: Self.bytes(signature), signedData: Self.bytes(data))
    }

    /// Where a commit object's headers end: its first empty line (the whole object when none).
    private static func headerEnd(_ raw: [UInt8]) -> Int {
        var index = 0
        while index + 1 < raw.count {
            if raw[index] == UInt8(ascii: "\n"), raw[index + 1] == UInt8(ascii: "\n") { return index }
            index += 1
        }
        return raw.count
    }

    private static func bytes(_ buffer: git_buf) -> [UInt8] {
        guard let start = buffer.ptr, buffer.size > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: start, count: buffer.size))
    }
}
