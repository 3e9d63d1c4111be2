package import BulwarkCore
package import BulwarkGit
import Foundation

/// Which targets one Bulwark process reconciles.
///
/// `all` (the default) is a single process owning every target, writing to the shared audit
/// branch. A host agent is either told its targets (`--target NAME`, repeatable) or finds them
/// itself (`--self`: the targets bound to this host, see `HostIdentity`); it reconciles only
/// those and writes its records to its own audit ref (`auditRef`).
package enum AgentSelection: Sendable, Equatable {
    case all
    case named([String])
    case host(HostIdentity)

    /// The targets of `state` this process reconciles; nil for every target.
    package func targets(in state: DesiredState) -> Set<String>? {
        switch self {
        case .all: nil
        case .named(let names): Set(names)
        case .host(let identity): Set(state.targets.values.filter(identity.binds).map(\.name))
        }
    }

    /// Restricts a revision to this process's targets, chosen for that revision: a host agent
    /// takes the targets a new revision binds to its host, and leaves those it no longer binds,
    /// without a restart. Returns the targets kept (nil: every target). The agent's audit ref is
    /// named after the host, not the targets (`auditRef`).
    package func select(_ state: inout DesiredState) -> Set<String>? {
        let owned = targets(in: state).map { $0.intersection(state.targets.keys) }
        Self.restrict(&state, to: owned)
        return owned
    }

    /// Keeps only the bindings of `targets` (nil: all of them).
    package static func restrict(_ state: inout DesiredState, to targets: Set<String>?) {
        guard let targets else { return }
        state.narrow(toTargets: targets) { targets.contains($0.target) }
    }

    /// The targets this agent owns in `state`, checked: every named target exists, and a host
    /// agent is bound to at least one. Nil for `all`.
    package func resolve(in state: DesiredState) throws -> [String]? {
        switch self {
        case .all:
            return nil
        case .named(let names):
            let missing = Set(names).subtracting(state.targets.keys).sorted()
            guard missing.isEmpty else {
                throw CommandError("revision \(state.revision.short) has no target named \(missing.joined(separator: ", ")); "
                                   + "nothing was changed")
            }
            return Set(names).sorted()
        case .host(let identity):
            let bound = targets(in: state)?.sorted() ?? []
            guard !bound.isEmpty else {
                throw CommandError("no target of revision \(state.revision.short) is bound to this host (\(identity)): name a "
                                   + "target after the host, or give it the label \(HostIdentity.machineIDLabel) or "
                                   + "\(HostIdentity.hostnameLabel); nothing was changed")
            }
            return bound
        }
    }

    /// The audit ref of an agent with these targets whose state clone is `repository`: the agent
    /// ref the state directory already writes to (a local branch under an agents' folder), so
    /// that a restart, a revision that binds other targets, or an upgrade never moves an agent's
    /// records to another ref (which its tamper check would take for a deleted branch); else,
    /// for a new state directory, one named after the host (`--self`: `AuditRef.host`) or after
    /// the targets it is told (`--target`: `AuditRef.agent`). Nil for `all`.
    package func auditRef(targets: [String], repository: Repository) throws -> AuditRef? {
        let fresh: AuditRef
        switch self {
        case .all: return nil
        case .named: fresh = try AuditRef.agent(targets: targets)
        case .host(let identity): fresh = try AuditRef.host(identity)
        }
        var existing: [String] = []
        for folder in AuditRef.agentFolders {
            existing += try repository.references(matching: "refs/heads/\(folder)*").map { String($0.name.dropFirst("refs/heads/".count)) }
        }
        if existing.isEmpty || existing.contains(fresh.branch) { return fresh }
        guard existing.count == 1, let only = existing.first else {
            throw CommandError("the state directory holds several agent audit refs (\(existing.sorted().joined(separator: ", "))): "
                               + "one state directory is one agent; remove the ones this agent does not write to")
        }
        return try AuditRef.existing(only)
    }

    /// Resolves a host agent's targets and its audit ref (`auditRef`): fetches only the policy
    /// branch into the state clone, under the state directory's lock, and reads the head
    /// revision. The full sync that follows reuses what was fetched. When the origin cannot be
    /// reached, the last fetched revision is used.
    package func resolve(configuration: PolicyRepository.Configuration, registry: Registry) throws -> (targets: [String], ref: AuditRef)? {
        if case .all = self { return nil }
        let directory = configuration.stateDirectory
        try PolicyRepository.makeStateDirectory(directory)
        let lock = try StateLock(directory + "/lock", directory: directory)
        defer { withExtendedLifetime(lock) {} }
        let path = directory + "/repository.git"
        let repository = FileManager.default.fileExists(atPath: path)
            ? try Repository.open(at: path) : try StateClone.create(at: path, url: configuration.url)
        if let existing = try repository.remoteURL("origin"), !PolicyRepository.sameRepository(existing, configuration.url) {
            throw PolicyRepository.Failure.otherRemote(directory, existing)
        }
        try repository.ensureRemote("origin", url: configuration.url)
        let tracking = "refs/remotes/origin/\(configuration.branch)"
        do {
            try repository.fetch(remote: "origin", refspecs: ["+refs/heads/\(configuration.branch):\(tracking)"],
                                 access: configuration.access)
        } catch {
            guard try repository.resolve(tracking) != nil else {
                if let missing = PolicyRepository.missingLocalOrigin(configuration.url) { throw PolicyRepository.Failure.noRepository(missing) }
                throw PolicyRepository.Failure.unreachable(configuration.url, error)
            }
        }
        guard let head = try repository.resolve(tracking) else {
            throw PolicyRepository.Failure.noBranch(configuration.branch, configuration.url)
        }
        let files = try repository.files(at: head, under: DesiredStateLoader.folders, maxSize: DesiredStateLoader.maxFileSize)
            .map { file in
                SourceFile(path: file.path, kind: file.kind == .symlink ? .symlink : file.kind == .submodule ? .other : .regular,
                           size: file.size, contents: file.contents)
            }
        let state = try DesiredStateLoader(registry: registry).load(files, revision: Revision(head))
        guard let targets = try resolve(in: state), let ref = try auditRef(targets: targets, repository: repository) else { return nil }
        return (targets, ref)
    }
}
