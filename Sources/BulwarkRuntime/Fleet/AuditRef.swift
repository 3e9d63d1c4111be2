import BulwarkCore
import BulwarkGit
import Foundation

/// Where one Bulwark process commits its audit records, and where readers find everyone's.
///
/// - `shared`: one branch (`bulwark/audit`, or `--audit-branch`) for a single process that owns
///   every target: the default, and the layout of every existing repository.
/// - per writer: a host agent (`run --self`) writes to `refs/heads/bulwark/audit-hosts/<host>`,
///   named after the host's identity (its machine id, else its host name), which does not change
///   when a revision binds other targets to the host; an agent told its targets (`--target NAME`)
///   writes to `refs/heads/bulwark/audit-targets/<target>` (the names it is given); a controller
///   replica sharing leased targets writes to `refs/heads/bulwark/audit-replicas/<replica>`. A
///   state directory keeps the ref it first wrote to (`AgentSelection.auditRef`), so refs of
///   agents from before (`audit-targets/<targets --self found>`) go on as they were. Each writer owns its ref, so a fleet
///   of agents never races on one ref (no rejected push, no fetch-and-replay loop), and an agent
///   fetches only the policy branch and its own ref.
///
/// Why not `bulwark/audit/<target>`: git stores `refs/heads/bulwark/audit` as a file, and
/// `refs/heads/bulwark/audit/<target>` would need a folder of the same name, so no repository
/// that already has the audit branch could take per-target refs (git refuses with "cannot lock
/// ref … exists"). A sibling folder keeps both layouts side by side in one repository, under
/// `refs/heads/` so that every git server serves them and the default fetch refspec
/// (`refs/heads/*`) of readers (`log`, `report`, the status page) brings them along.
package struct AuditRef: Sendable, Hashable, CustomStringConvertible {
    /// The branch name (without `refs/heads/`).
    package let branch: String

    package static let targetsFolder = "bulwark/audit-targets/"
    package static let hostsFolder = "bulwark/audit-hosts/"
    package static let replicasFolder = "bulwark/audit-replicas/"
    /// The folders of agents' refs.
    package static let agentFolders = [targetsFolder, hostsFolder]

    package init(shared branch: String) {
        self.branch = branch
    }

    private init(unchecked branch: String) {
        self.branch = branch
    }

    /// A host agent's ref: named after the target it owns, or the targets joined with `+` (sorted)
    /// when the host is bound to several. Throws when git could not name a branch so.
    package static func agent(targets: [String]) throws -> AuditRef {
        let names = Set(targets).sorted()
        guard !names.isEmpty else { throw CommandError("an agent's audit ref needs at least one target") }
        return try checked(targetsFolder + names.joined(separator: "+"), what: "the targets \(names.joined(separator: ", "))")
    }

    /// A `--self` host agent's ref, named after the host: its machine id (stable across renames),
    /// else its host name. Throws when the host has neither.
    package static func host(_ identity: HostIdentity) throws -> AuditRef {
        guard let name = identity.machineID ?? identity.hostname else {
            throw CommandError("this host has no machine id nor host name to name its audit ref after (\(identity))")
        }
        return try checked(hostsFolder + name, what: "the host \(identity)")
    }

    /// An existing per-writer ref, by its branch name (a state directory's own, kept across restarts).
    package static func existing(_ branch: String) throws -> AuditRef {
        guard isPerWriter(branch) else { throw CommandError("\(quotedForMessage(branch)) is not an agent's or a replica's audit ref") }
        return try checked(branch, what: "the existing ref")
    }

    /// A controller replica's ref, named after the replica.
    package static func replica(_ name: String) throws -> AuditRef {
        try checked(replicasFolder + name, what: "the replica '\(quotedForMessage(name))'")
    }

    private static func checked(_ branch: String, what: String) throws -> AuditRef {
        guard branch.utf8.count <= 200, GitLibrary.isValidBranchName(branch) else {
            throw CommandError("cannot name an audit ref after \(what): \(quotedForMessage(branch)) is not a valid git branch "
                               + "name of at most 200 bytes (a name with '..', or too many targets on one host)")
        }
        return AuditRef(unchecked: branch)
    }

    /// Whether this is one writer's own ref (an agent or a replica) rather than the shared branch.
    package var isPerWriter: Bool { Self.isPerWriter(branch) }

    package static func isPerWriter(_ branch: String) -> Bool {
        branch.hasPrefix(targetsFolder) || branch.hasPrefix(hostsFolder) || branch.hasPrefix(replicasFolder)
    }

    package var description: String { branch }

    /// What a sync fetches: everything for the shared branch (readers see every writer's ref),
    /// only the policy branch and its own ref for a per-writer one (an agent's fetch stays the
    /// same size however many agents the fleet has).
    package func fetchRefspecs(policyBranch: String) -> [String] {
        guard isPerWriter else { return ["+refs/heads/*:refs/remotes/origin/*"] }
        return [policyBranch, branch].map { "+refs/heads/\($0):refs/remotes/origin/\($0)" }
    }

    /// The fetched refs of every other writer, which readers merge into one history; and the
    /// recovery branches (`AuditTrail.recoveryPrefix`) a Bulwark writes to after the origin's
    /// audit branch was rewritten: its records there, the tampering record first, are no less
    /// records (they were seen by no reader but the writer itself).
    package static let otherWriterGlobs = ["refs/remotes/origin/\(targetsFolder)*", "refs/remotes/origin/\(hostsFolder)*",
                                           "refs/remotes/origin/\(replicasFolder)*",
                                           "refs/remotes/origin/\(AuditTrail.recoveryPrefix)*"]
}
