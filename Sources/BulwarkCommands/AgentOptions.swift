internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import Foundation

/// A host agent's selection: which targets this process reconciles (`--self`, `--target`).
struct AgentOptions: ParsableArguments {
    @Flag(name: .customLong("self"), help: ArgumentHelp("Reconcile only the targets bound to this host: named after its host name, or labelled machine-id (/etc/machine-id) or hostname. Records go to this agent's own audit ref, bulwark/audit-hosts/<machine id, else host name>."))
    var selfHost = false

    @Option(name: .customLong("target"), help: ArgumentHelp("Reconcile only this target (repeatable); records go to bulwark/audit-targets/<target>.", valueName: "name"))
    var targets: [String] = []

    @Option(help: ArgumentHelp("The root folder whose etc/machine-id and etc/hostname identify this host for --self (default: $BULWARK_IDENTITY_ROOT, else /).", valueName: "path"))
    var identityRoot: String?

    func validate() throws {
        if selfHost, !targets.isEmpty { throw ValidationError("--self and --target exclude each other: pick one") }
        try checkNotEmpty(["--identity-root": identityRoot])
        for name in targets where name.isEmpty || name.utf8.count > 253 {
            throw ValidationError("--target '\(quotedForMessage(name))' is not a target name")
        }
    }

    var selection: AgentSelection {
        if selfHost {
            let root = identityRoot ?? ProcessInfo.processInfo.environment["BULWARK_IDENTITY_ROOT"].flatMap { $0.isEmpty ? nil : $0 } ?? "/"
            return .host(HostIdentity.read(root: root))
        }
        return targets.isEmpty ? .all : .named(targets)
    }

    /// Resolves the agent's targets and points `repository` at the agent's own audit ref; nil
    /// (and `repository` unchanged) for a process that owns every target.
    func prepare(_ repository: inout RepositoryOptions) throws -> Set<String>? {
        let selection = selection
        guard selection != .all else { return nil }
        guard repository.auditBranch == "bulwark/audit" else {
            throw ValidationError("--audit-branch does not go with --self or --target: an agent writes to its own ref (bulwark/audit-hosts/<host>, or bulwark/audit-targets/<target> with --target)")
        }
        guard let (names, ref) = try selection.resolve(configuration: try repository.configuration(), registry: Bulwark.registry()) else {
            return nil
        }
        repository.auditBranch = ref.branch
        return Set(names)
    }
}
