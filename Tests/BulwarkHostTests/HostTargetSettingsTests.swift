@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A host target's settings are read once, typed (`HostTargetSettings`), when the desired state
/// is loaded: a root that could leave its folder is refused there, naming the field; a good one
/// travels typed to the drivers, its text form unchanged.
@Suite struct HostTargetSettingsTests {
    func load(root: String) throws -> DesiredState {
        try hostState(root: root, resource("Sysctl", "ip-forward", "net.ipv4.ip_forward: \"0\""))
    }

    @Test func aRootThatIsRelativeOrClimbsIsRefusedWhenTheTargetIsRead() {
        for root in ["etc", "/srv/../etc", "/srv/root/.."] {
            #expect {
                _ = try load(root: root)
            } throws: { error in
                "\(error)".contains("controllers/c.yaml") && "\(error)".contains("expected an absolute path")
            }
        }
    }

    @Test func aGoodRootIsTypedOnceAndItsTextFormIsKept() async throws {
        try await withTemporaryDirectory { dir in
            let state = try load(root: dir)
            let target = try #require(state.targets["sandbox"])
            #expect(try target.typedSettings(HostTargetSettings.self) == HostTargetSettings(root: try #require(TargetRoot(dir))))
            #expect(target.root?.path == dir)
            #expect(target.hostRoot == dir && target.settings == ["root": dir])
            #expect(HostAdapter.paths(target, ["etc/ssh/sshd_config"]) == [dir + "/etc/ssh/sshd_config"])
            // A target the host adapter did not read has no root: nothing is watched or touched.
            let handMade = Target(name: "x", adapter: "host", settings: ["root": dir], location: target.location)
            #expect(handMade.hostRoot == nil && HostAdapter.paths(handMade, ["etc/passwd"]).isEmpty)
            #expect(throws: HostError.self) { _ = try HostRoot(target: handMade) }
        }
    }
}
