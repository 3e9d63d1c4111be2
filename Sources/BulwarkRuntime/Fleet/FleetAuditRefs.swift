package import BulwarkGit
import Foundation

/// The audit refs a repository holds, for readers of a whole fleet's trail (`verify-audit`).
package enum FleetAuditRefs {
    /// The shared branch and every per-writer ref (`AuditRef`), each as a local branch, else as
    /// the origin's fetched one, sorted by name; a ref that exists in neither form is left out.
    package static func branches(in repository: Repository, shared: String) throws -> [(branch: String, head: ObjectID)] {
        var found: [String: ObjectID] = [:]
        for folder in AuditRef.agentFolders + [AuditRef.replicasFolder] {
            for prefix in ["refs/remotes/origin/", "refs/heads/"] {
                // Local branches win over the fetched ones (they hold what waits to be pushed).
                for (name, head) in try repository.references(matching: prefix + folder + "*") {
                    found[String(name.dropFirst(prefix.count))] = head
                }
            }
        }
        if let head = try repository.resolve("refs/heads/\(shared)") ?? repository.resolve("refs/remotes/origin/\(shared)") {
            found[shared] = head
        }
        return found.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
