package import BulwarkCore
package import BulwarkGit

extension CommitInfo {
    /// One of Bulwark's trailers on this commit.
    package func trailer(_ key: AuditTrailer) -> String? { trailer(key.rawValue) }

    /// The audit record this commit carries, typed; nil for a commit that is not one.
    package var recorded: RecordedDecision? { RecordedDecision(trailer: { trailer($0) }) }
}
