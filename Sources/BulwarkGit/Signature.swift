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

    /// The seconds since 1970 written into a commit, in full 64 bits: libgit2 1.5 writes
    /// signatures with `%u` (32 bits, so 1960 became 2096 and 2107 wrapped), so Bulwark writes
    /// commit headers itself. Git stores timestamps unsigned (a negative one fails
    /// `git fsck` with badDateOverflow and hosts that check pushes refuse it), so a clock before
    /// 1970 is written as 0; the audit record's own JSON keeps the times it was given.
    var gitSeconds: Int64 {
        let seconds = time.timeIntervalSince1970.rounded(.down)
        guard seconds > 0 else { return 0 }
        // Past the year 9999 (or not finite) is a broken clock too; git's tools stop there.
        return Int64(exactly: min(seconds, 253_402_300_799)) ?? 253_402_300_799
    }

    /// The `author`/`committer` header line for a commit (without the newline), with the name
    /// and email checked and trimmed by libgit2 and the time in full 64 bits.
    func header(_ role: String) throws(GitError) -> String {
        var sig: UnsafeMutablePointer<git_signature>?
        // libgit2 validates the name and email (no angle brackets or newlines) and trims them.
        try check(git_signature_new(&sig, name, email, 0, 0), "git_signature_new")
        guard let sig else { throw GitError(function: "git_signature_new", code: -1, message: "returned no signature") }
        defer { git_signature_free(sig) }
        // libgit2 checks angle brackets, not line ends: a newline would start a forged header.
        guard !(name + email).contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) else {
            throw GitError(function: "signature", code: -1, message: "a name or email with a line break cannot go in a commit")
        }
        guard (-(99 * 60 + 59)...(99 * 60 + 59)).contains(offsetMinutes) else {
            throw GitError(function: "signature", code: -1, message: "time zone offset \(offsetMinutes) minutes is out of range")
        }
        let sign = offsetMinutes < 0 ? "-" : "+"
        let hours = abs(offsetMinutes) / 60, minutes = abs(offsetMinutes) % 60
        let zone = sign + (hours < 10 ? "0" : "") + String(hours) + (minutes < 10 ? "0" : "") + String(minutes)
        return "\(role) \(String(cString: sig.pointee.name)) <\(String(cString: sig.pointee.email))> \(gitSeconds) \(zone)"
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

extension Repository {
    /// A configuration value as git would read it here (the repository's, the user's, the
    /// system's configuration), or nil when it is not set.
    public func configString(_ name: String) -> String? {
        var config: OpaquePointer?
        guard git_repository_config_snapshot(&config, pointer) == 0, let config else { return nil }
        defer { git_config_free(config) }
        var buffer = git_buf()
        defer { git_buf_dispose(&buffer) }
        guard git_config_get_string_buf(&buffer, config, name) == 0, let text = buffer.ptr else { return nil }
        return String(cString: text)
    }
}
