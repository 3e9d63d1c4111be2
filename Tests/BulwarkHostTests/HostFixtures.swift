import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Synchronization


/// A desired state with one host target rooted at `root` and one controller for every host kind.
func hostState(root: String, _ manifests: String, extra: [SourceFile] = []) throws -> DesiredState {
    let inventory = """
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: sandbox}
        spec: {adapter: host, root: \(root)}
        ---
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: host}
        spec: {kinds: [SSHDConfig, Sysctl, FileMode, LoginDefs, UserAccount]}
        """
    return try hostState(inventory: inventory, manifests, extra: extra)
}

/// A desired state from `inventory` (targets and controllers) and `manifests`.
func hostState(inventory: String, _ manifests: String, extra: [SourceFile] = []) throws -> DesiredState {
    try DesiredStateLoader(registry: Registry([HostAdapter.definition()])).load([
        SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
        SourceFile(path: "desired-state/r.yaml", contents: Array(manifests.utf8)),
    ] + extra, revision: "test")
}

func resource(_ kind: String, _ name: String, _ spec: String) -> String {
    "---\napiVersion: bulwark/v1\nkind: \(kind)\nmetadata: {name: \(name)}\nspec:\n" + spec
        .split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n"
}

/// Plans and applies once; returns the plan and what was recorded.
func reconcile(_ state: DesiredState) async throws -> (Plan, CycleOutcome) {
    let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
    let plan = try await reconciler.plan(state)
    return (plan, await reconciler.apply(plan, state: state, audit: RecordingSink()))
}

/// Runs the real `sshd -t` on a file; nil when sshd accepts it (or sshd is not installed).
func sshdRejects(_ path: String) throws -> String? {
    guard let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"].first(where: FileManager.default.isExecutableFile) else { return nil }
    let result = try run(sshd, ["-t", "-f", path])
    let lines = result.stderr.split(separator: "\n")
    if result.status == 0 || (lines.count == 1 && lines[0].hasPrefix("Missing privilege separation directory")) { return nil }
    return result.stderr
}

func inode(_ path: String) -> UInt64 {
    var info = stat()
    return stat(path, &info) == 0 ? UInt64(info.st_ino) : 0
}

func modeAndOwner(_ path: String) -> (mode: Int, uid: UInt32, gid: UInt32) {
    var info = stat()
    _ = stat(path, &info)
    return (Int(info.st_mode & 0o7777), info.st_uid, info.st_gid)
}
