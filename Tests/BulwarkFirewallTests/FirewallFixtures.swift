import BulwarkCore
import BulwarkFirewall
import BulwarkTestSupport
import Foundation
import Synchronization


/// The lab's management network: an address no test uses as a peer.
let labManagement = "192.0.2.200/32"

func firewallState(root: String, namespace: String, management: String = labManagement, _ manifests: String) throws -> DesiredState {
    let inventory = """
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: edge-1}
        spec: {adapter: nftables, root: \(root), netns: \(namespace), management: [\(management)]}
        ---
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: firewall}
        spec: {kinds: [FirewallBlocklist, Quarantine, AllowedIngress]}
        """
    return try DesiredStateLoader(registry: Registry([FirewallAdapter.definition()])).load([
        SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
        SourceFile(path: "desired-state/f.yaml", contents: Array(manifests.utf8)),
    ], revision: "test")
}

func reconcile(_ state: DesiredState, audit: RecordingSink = RecordingSink()) async throws -> (Plan, CycleOutcome) {
    let reconciler = Reconciler(registry: Registry([FirewallAdapter.definition()]))
    let plan = try await reconciler.plan(state)
    return (plan, await reconciler.apply(plan, state: state, audit: audit))
}
