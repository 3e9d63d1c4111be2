import BulwarkCore
import BulwarkFirewall
import BulwarkTestSupport
import Foundation
import Testing

/// A record's value from before a fix can be one no driver writes (`(changed by hand)`, a chain
/// changed outside Bulwark), and `revert` hands it to the driver as the value to put back.
@Suite(.serialized, .enabled(if: NetworkLab.available, "needs root, nft and ip"))
struct UnwritableValueTests {
    /// Harmful: `Quarantine`'s apply read such a value as an active quarantine allowing no
    /// network, and wrote it: the host cut off both ways from everyone but loopback (only the
    /// management guard, in front of it, stood in the way). It is now refused, naming the
    /// value, and nothing is written in the namespace. Legitimate: a value it writes (`active
    /// allow=… until=…`) is written and observed back as it is.
    @Test func aQuarantineValueItDoesNotWriteIsRefusedUnwritten() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            let state = try firewallState(root: root, namespace: lab.host, """
                apiVersion: bulwark/v1
                kind: Quarantine
                metadata: {name: incident-7}
                spec: {hosts: [edge-1], allow: [192.0.2.200/32]}
                """)
            let driver = try #require(Registry([FirewallAdapter.definition()]).kinds["Quarantine"]?.driver)
            let resource = try #require(state.resources[ResourceID(kind: "Quarantine", name: "incident-7")])
            let target = try #require(state.targets["edge-1"])
            for value in ["(changed by hand)", "(changed outside Bulwark: chain qr_x_in holds rules Bulwark did not write)",
                          "(a value recorded as sha256:0123456789ab)", "active allow=not-a-network",
                          "active allow=192.0.2.200 until=someday", "active allow=192.0.2.200 and more",
                          "active allow=192.0.2.200/32"] {
                let change = PropertyDrift(property: "quarantine:edge-1", desired: value, observed: "lifted")
                do {
                    try await driver.apply([change], to: resource, on: target)
                    Issue.record("\(value) was written")
                } catch {
                    #expect("\(error)" == "Quarantine/incident-7: the quarantine \(quotedForMessage(value)) is not one Bulwark writes (active allow=... "
                            + "until=..., or lifted); nothing was written", "\(error)")
                }
                #expect(try !lab.nft(["list", "ruleset"]).stdout.contains("qr_incident_7"), "\(value): nothing written")
            }

            for value in ["active allow=192.0.2.200 until=2099-12-31", "active allow=192.0.2.200"] {
                try await driver.apply([PropertyDrift(property: "quarantine:edge-1", desired: value, observed: "lifted")],
                                       to: resource, on: target)
                #expect(try lab.nft(["list", "ruleset"]).stdout.contains("qr_incident_7"))
                let observed = try await driver.observe(resource, on: target)
                #expect(observed.values["quarantine:edge-1"] == value, "\(observed.values)")
            }
        }
    }
}
