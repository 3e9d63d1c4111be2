internal import CLibGit2

/// Signs the commits Bulwark writes: given a commit object's bytes (without any signature
/// header), returns the armored signature git stores in the commit's `gpgsig` header.
///
/// An I/O seam, so that the commit writer does not know how (or with which key) it signs.
public protocol CommitSigner: Sendable {
    /// The armored signature of `commit` (`-----BEGIN SSH SIGNATURE-----` …); a final newline is dropped.
    /// An error stops the commit (it is reported as a `GitError` naming the signer).
    func signature(of commit: [UInt8]) throws -> String

    /// The signing public key as SSH encodes it (`string type, string key`), when the signer
    /// knows it without asking anyone: what a record's signature is compared with to tell this
    /// signer's commits from commits anyone could have pushed.
    var publicKeyBlob: [UInt8]? { get }
}

extension CommitSigner {
    public var publicKeyBlob: [UInt8]? { nil }
}

extension Repository {
    /// Writes the commit object `text`, signed by `signer` when there is one: the signature goes
    /// into a `gpgsig` header through `git_commit_create_with_signature`, which also checks that
    /// the tree and the parents exist.
    func writeCommitObject(_ text: String, signer: (any CommitSigner)?) throws(GitError) -> ObjectID {
        var commitID = git_oid()
        if let signer {
            // libgit2 takes the commit as a C string: a NUL would cut it short.
            guard !text.contains("\0") else {
                throw GitError(function: "git_commit_create_with_signature", code: -1, message: "a commit cannot contain a NUL byte")
            }
            var signature: String
            do { signature = try signer.signature(of: Array(text.utf8)) } catch {
                throw (error as? GitError) ?? GitError(function: "CommitSigner", code: -1, message: "cannot sign the commit: \(error)")
            }
            while signature.hasSuffix("\n") { signature.removeLast() }
            // A signature line is continued with a space; a line break anywhere else would end the header.
            guard !signature.isEmpty, !signature.contains("\r"), !signature.contains("\0"), !signature.contains("\n\n") else {
                throw GitError(function: "CommitSigner", code: -1, message: "the signer returned a malformed signature")
            }
            try check(git_commit_create_with_signature(&commitID, pointer, text, signature, "gpgsig"),
                      "git_commit_create_with_signature")
            return ObjectID(commitID)
        }
        commitID = try Array(text.utf8).withBytes { (raw) throws(GitError) in try writeObject(raw, type: GIT_OBJECT_COMMIT) }
        return ObjectID(commitID)
    }
}
