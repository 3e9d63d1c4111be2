internal import CLibGit2
internal import Foundation

/// Runs `git_libgit2_init()` exactly once per process.
enum LibGit2 {
    private static let initialized: Bool = {
        git_libgit2_init()
        // libgit2 keeps parsed commits and trees in a per-repository cache of up to 256 MiB by
        // default, which a daemon reading back every audit commit it writes fills by a few KiB
        // a fix: bounded here (a pass's reads fit in it many times over).
        _ = bulwark_git_set_cache_max_size(cacheLimit)
        return true
    }()

    /// The object cache's bound, in bytes.
    static let cacheLimit = 8 << 20

    static func ensureInitialized() { _ = initialized }
}

/// Calls `body` with a `git_strarray` holding copies of `strings`.
func withStrArray<R>(_ strings: [String], _ body: (UnsafeMutablePointer<git_strarray>) throws(GitError) -> R) throws(GitError) -> R {
    let cStrings: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { cStrings.forEach { free($0) } }
    var pointers = cStrings
    return try pointers.withUnsafeMutableBufferPointer { (buffer) throws(GitError) -> R in
        var array = git_strarray(strings: buffer.baseAddress, count: buffer.count)
        return try body(&array)
    }
}
