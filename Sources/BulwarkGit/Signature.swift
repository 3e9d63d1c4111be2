public import struct Foundation.Date
internal import CLibGit2

/// Who wrote a commit, and when.
public struct Signature: Sendable, Hashable {
    public var name: String
    public var email: String
    public var time: Date
    /// Offset from UTC in minutes.
    public var offsetMinutes: Int

    public init(name: String, email: String, time: Date = Date(), offsetMinutes: Int = 0) {
        self.name = name
        self.email = email
        self.time = time
        self.offsetMinutes = offsetMinutes
    }

    /// Calls `body` with a libgit2 signature that lives only for the call.
    func withPointer<R>(_ body: (UnsafeMutablePointer<git_signature>) throws(GitError) -> R) throws(GitError) -> R {
        var sig: UnsafeMutablePointer<git_signature>?
        let seconds = git_time_t(time.timeIntervalSince1970.rounded(.down))
        try check(git_signature_new(&sig, name, email, seconds, Int32(offsetMinutes)), "git_signature_new")
        guard let sig else { throw GitError(function: "git_signature_new", code: -1, message: "returned no signature") }
        defer { git_signature_free(sig) }
        return try body(sig)
    }

    init(_ sig: UnsafePointer<git_signature>) {
        name = String(cString: sig.pointee.name)
        email = String(cString: sig.pointee.email)
        time = Date(timeIntervalSince1970: Double(sig.pointee.when.time))
        offsetMinutes = Int(sig.pointee.when.offset)
    }
}

extension Repository {
    /// The identity git itself would use here (`user.name` and `user.email` from the
    /// repository's, the user's or the system's configuration), or nil when none is set.
    public func configuredSignature() -> Signature? {
        var sig: UnsafeMutablePointer<git_signature>?
        guard git_signature_default(&sig, pointer) == 0, let sig else { return nil }
        defer { git_signature_free(sig) }
        return Signature(sig)
    }
}
