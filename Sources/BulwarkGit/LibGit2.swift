internal import CLibGit2
internal import CSSHInit
internal import Foundation

/// Runs `git_libgit2_init()` exactly once per process, and sets how much memory libgit2 may hold.
enum LibGit2 {
    private static let initialized: Bool = {
        // Before libgit2's init: with libssh2's OpenSSL backend, OpenSSL initialises itself when
        // an ssh:// remote is first used, not in every process (see CSSHInit.c).
        _ = bulwark_ssh_defer_crypto_init()
        git_libgit2_init()
        // Every connection to an origin gives up on a connect after 30 s, and is closed once
        // nothing went either way on it for `BULWARK_ORIGIN_IDLE_TIMEOUT` seconds (120): an
        // origin that accepted and never answered held a fetch, and the pass, for ever (GitStream.c).
        precondition(bulwark_git_register_stream(30, Int32(originIdleTimeout)) == 0, "libgit2 refused Bulwark's socket stream")
        // libgit2 keeps every commit and tree it parses in a per-repository object cache (256 MiB
        // by default). Bulwark reads almost every object once: the objects of each audit commit
        // it writes (the flush walks them to pack them, the next commit looks its parent up),
        // each record the flap breaker or the index reads. The cache grew by about 11 KiB a
        // remediation in the daemon (heaptrack: parsed trees and commits under
        // `newObjects`/`writeCommit`), and to about 20 MiB in one apply of 2,400 fixes; bounded
        // at 8 MiB of object bytes it still held about three times that in parsed form. The
        // trees Bulwark builds upon it keeps itself (`TreeCache`), so libgit2's cache is off.
        _ = bulwark_git_enable_caching(0)
        // Packs are read through mappings of `mappingWindow` bytes, at most `mappedLimit` of them
        // at once (the least recently used window is unmapped first), instead of one mapping of
        // each whole pack (libgit2's default windows are 1 GiB, up to 8 GiB in all). A page of a
        // mapping, once read, stays in the resident set until it is unmapped: reading the
        // commits of a pass (every few KiB of each flushed pack) kept every pack of the pass
        // resident, 11 MiB for 2,400 records, and a daemon's consolidated packs for its lifetime.
        // At 1 MiB windows and 4 MiB, the flush's reads of the trees a pass's records replaced
        // (spread over the packs it flushed before) still kept 2-4 MiB of them resident at the
        // end of a 100-root apply; at 256 KiB and 1 MiB, 0.6 MiB, at no measurable cost in time.
        _ = bulwark_git_set_mwindow(mappingWindow, mappedLimit)
        // What libgit2 writes itself (loose objects, packs it indexes, each reference it moves,
        // and their folders) is fsynced, as Bulwark's own packs are: off by default, and a power
        // loss after a record's intent was closed could leave the audit branch pointing at an
        // object never written, or an origin's ref at a pack that is not there.
        precondition(bulwark_git_enable_fsync(1) == 0, "libgit2 refused GIT_OPT_ENABLE_FSYNC_GITDIR")
        return true
    }()

    /// Seconds without data either way after which a connection to an origin is closed:
    /// `BULWARK_ORIGIN_IDLE_TIMEOUT` (1 to 86,399), else 120. A git server sends keepalives
    /// while it prepares a pack (every 5 s), so a live one is never cut off.
    static let originIdleTimeout: Int = {
        guard let text = ProcessInfo.processInfo.environment["BULWARK_ORIGIN_IDLE_TIMEOUT"], let seconds = Int(text),
              (1..<86_400).contains(seconds) else { return 120 }
        return seconds
    }()

    /// The size of one mapping of a pack, in bytes.
    static let mappingWindow = 256 << 10
    /// How many bytes of packs may be mapped at once.
    static let mappedLimit = 1 << 20

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
