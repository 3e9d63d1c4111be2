internal import BulwarkCore
internal import CLibGit2

/// An error reported by libgit2, naming the libgit2 function that failed.
public struct GitError: Error, Sendable, CustomStringConvertible {
    /// The libgit2 function (or Bulwark operation) that failed.
    public let function: String
    /// libgit2's return code (`git_error_code`).
    public let code: Int32
    /// libgit2's error class (`git_error_t`), 0 when libgit2 set none.
    public let errorClass: Int32
    /// libgit2's words, with any credentials in URLs it quotes redacted (it quotes a malformed
    /// URL whole, password and all).
    public let message: String

    init(function: String, code: Int32, errorClass: Int32 = 0, message: String) {
        self.function = function
        self.code = code
        self.errorClass = errorClass
        self.message = Redaction.urls(in: message)
    }

    public var description: String { "\(function): \(message)" }

    /// The remote refused an update that is not a fast-forward.
    public var isNonFastForward: Bool { code == GIT_ENONFASTFORWARD.rawValue }
    /// A reference changed under us (compare-and-swap lost).
    public var isModified: Bool { code == GIT_EMODIFIED.rawValue }
    /// A lock file (`<name>.lock`) is held: someone is updating it, or a killed process left it.
    public var isLocked: Bool { code == GIT_ELOCKED.rawValue }
}

/// Checks a libgit2 return code at once: a negative code becomes a `GitError` carrying
/// `git_error_last()` (which Debian's libgit2 1.5 may leave NULL).
@discardableResult
func check(_ code: Int32, _ function: String = #function) throws(GitError) -> Int32 {
    guard code < 0 else { return code }
    if let last = git_error_last(), let text = last.pointee.message {
        throw GitError(function: function, code: code, errorClass: last.pointee.klass,
                       message: String(cString: text))
    }
    throw GitError(function: function, code: code, message: "failed with code \(code)")
}

// MARK: - Typed errors through the standard library's byte views

// `withUnsafeBytes` rethrows `any Error`; these keep a body's `GitError` typed.
extension Array where Element == UInt8 {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(GitError) -> R) throws(GitError) -> R {
        try withUnsafeBytes { raw in Result { () throws(GitError) in try body(raw) } }.get()
    }
}

extension ArraySlice where Element == UInt8 {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(GitError) -> R) throws(GitError) -> R {
        try withUnsafeBytes { raw in Result { () throws(GitError) in try body(raw) } }.get()
    }
}
