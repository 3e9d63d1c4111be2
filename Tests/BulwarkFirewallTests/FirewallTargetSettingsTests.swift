@testable import BulwarkFirewall
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// An nftables target's settings are read once, typed (`FirewallTargetSettings`): a target with
/// no management network, a bad namespace or port is refused when read, naming the field; a good
/// one travels typed to the guards (management networks as `Network`s, the SSH port as a number).
@Suite struct FirewallTargetSettingsTests {
    func load(_ spec: String) throws -> DesiredState {
        let inventory = """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-1}
            spec: {adapter: nftables, \(spec)}
            ---
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: firewall}
            spec: {kinds: [FirewallBlocklist]}
            """
        return try DesiredStateLoader(registry: Registry([FirewallAdapter.definition()])).load([
            SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
        ], revision: "test")
    }

    @Test func aTargetThatCouldCutPeopleOffOrEscapeIsRefusedWhenRead() {
        for (spec, says) in [
            ("root: /srv/fw", "missing required field 'management'"),
            ("root: /srv/fw, management: []", "list at least one management network"),
            ("root: /srv/fw, management: [0.0.0.0/0]", "prefix length of 0 is refused"),
            ("root: srv/fw, management: [10.0.0.0/24]", "expected an absolute path"),
            ("root: /srv/fw, netns: 'a b', management: [10.0.0.0/24]", "expected a network namespace name"),
            ("root: /srv/fw, management: [10.0.0.0/24], sshPort: 70000", "sshPort"),
        ] {
            do {
                _ = try load(spec)
                Issue.record("accepted: \(spec)")
            } catch {
                #expect("\(error)".contains(says), "\(spec): \(error)")
            }
        }
    }

    @Test func aGoodTargetIsTypedOnceAndItsTextFormIsKept() throws {
        let state = try load("root: /srv/fw, netns: lab-1, management: [10.0.0.0/24, 2001:db8::/32], sshPort: 2222")
        let target = try #require(state.targets["edge-1"])
        let settings = try target.typedSettings(FirewallTargetSettings.self)
        #expect(settings.root == "/srv/fw" && settings.netns == "lab-1" && settings.sshPort == 2222)
        #expect(FirewallAdapter.management(target).map(\.description) == ["10.0.0.0/24", "2001:db8::/32"])
        #expect(FirewallAdapter.sshPort(target) == 2222)
        #expect(target.settings == ["root": "/srv/fw", "netns": "lab-1", "management": "10.0.0.0/24,2001:db8::/32", "sshPort": "2222"])
        // Without sshPort: 22, and the text form names none (as before the settings were typed).
        let plain = try #require(try load("root: /srv/fw, management: [10.0.0.0/24]").targets["edge-1"])
        #expect(FirewallAdapter.sshPort(plain) == 22 && plain.settings["sshPort"] == nil && plain.settings["netns"] == nil)
    }
}
