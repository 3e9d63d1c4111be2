import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

/// The package kind reads a host target's root typed (`Target.root`, the `TargetRoot` the
/// target's adapter checked), never the settings' text: a root the host adapter refuses
/// (relative, climbing with `..`) is refused when the target is read, by the same check, and a
/// target that carries a root only as text (not read by a rooted adapter) is neither observed
/// nor changed, so no hand-made `root: /` can point apt at the machine.
@Suite struct PackageTargetRootTests {
    func load(root: String) throws -> DesiredState {
        let inventory = """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: sandbox}
            spec: {adapter: host, root: "\(root)"}
            ---
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: packages}
            spec: {kinds: [DebianPackage]}
            """
        return try DesiredStateLoader(registry: packageRegistry).load([
            SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
            SourceFile(path: "desired-state/r.yaml", contents: Array(package("telnetd", "name: telnetd, state: absent").utf8)),
        ], revision: "test")
    }

    @Test func aRootThatIsRelativeOrClimbsIsRefusedWhenTheTargetIsRead() {
        for root in ["var/lib", "/srv/../", "/srv/box/.."] {
            #expect {
                _ = try load(root: root)
            } throws: { error in
                "\(error)".contains("controllers/c.yaml") && "\(error)".contains("expected an absolute path")
            }
        }
    }

    @Test func aRootOnlyAsTextIsNeitherObservedNorChangedAndATypedOneIs() async throws {
        try await withTemporaryDirectory { dir in
            let machine = try MachineFingerprint.take()
            var state = try load(root: dir)
            let typed = try #require(state.targets["sandbox"])
            #expect(typed.root?.path == dir && typed.settings == ["root": dir])
            let resource = try #require(state.resources.values.first)
            #expect(DebianPackageDriver().watchedPaths(resource, on: typed) == [dir + "/var/lib/dpkg/status"])

            // The same target with its root as text only, naming the machine itself.
            let handMade = Target(name: "sandbox", adapter: "host", settings: ["root": "/"], location: typed.location)
            #expect(handMade.root == nil)
            #expect(DebianPackageDriver().watchedPaths(resource, on: handMade).isEmpty)
            state.targets["sandbox"] = handMade
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.isEmpty && plan.inSync.isEmpty)
            // Only the record that it could not be observed.
            #expect(outcome.entries.map(\.record.decision) == [.unobserved])
            let failure = try #require(plan.failures.first?.message)
            #expect(failure.contains("has no root read by its adapter"), "\(failure)")
            #expect(try MachineFingerprint.take() == machine)
        }
    }
}
