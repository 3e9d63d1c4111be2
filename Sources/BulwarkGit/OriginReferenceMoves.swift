internal import Foundation
internal import Synchronization

/// The moves of a reference in a local origin (`Repository.push` to a path): git's lock file
/// `REF.lock` is there from the moment the move begins until its rename (about 10 ms, mostly
/// fsync). A process that ends in between leaves the lock, and every writer of that branch, every
/// Bulwark and every person, is refused until someone removes it. A process that ends on purpose
/// (`apply`'s second Ctrl-C) ends through `exit`, which waits for a move under way to finish and
/// lets no other begin.
public enum OriginReferenceMoves {
    private static let moving = Mutex(())

    /// Runs `body`, a move under a local origin's lock file, never at the same time as `exit`.
    static func move<T>(_ body: () throws(GitError) -> T) throws(GitError) -> T {
        try moving.withLock { (_: inout ()) throws(GitError) -> T in try body() }
    }

    /// Ends the process with `status` (`_exit`) once no move is under way; none begins after.
    public static func exit(_ status: Int32) -> Never {
        moving.withLock { (_: inout ()) -> Never in _exit(status) }
    }
}
