@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

extension FirewallEndToEndTests {
    /// An edge target in `lab`'s namespace whose blocklist holds `addresses`, taken as accepted.
    static func shortageBlocklist(_ s: Scenario, _ lab: NetworkLab, _ dir: String, _ addresses: String) throws {
        try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
        try s.commitPolicy("controllers/edge.yaml", """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-1, labels: {role: edge}}
            spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(lab.host), management: [192.0.2.200/32]}
            """)
        try s.commitPolicy("desired-state/firewall/blocklist.yaml", blocklist(addresses))
        try s.acceptHead()
    }

    /// The firewall guards out of file descriptors (`BULWARK_FAULT_NO_DESCRIPTORS_IN_GUARD=firewall`):
    /// the blocklist's guard cannot start what reads the namespace's SSH sessions and gateways,
    /// so it judged nothing. The blocklist is not observed this pass (exit 1, recorded
    /// `unobserved` with the guard's error), never `blocked` with an approval offered for a
    /// change no guard looked at; the ruleset is as it was. The twin: the next pass, with
    /// descriptors, judges the same change and applies it.
    @Test func aFirewallGuardOutOfDescriptorsFailsThePassAndOffersNoApproval() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8443)
            try Self.shortageBlocklist(s, lab, dir, "192.0.2.2")
            let short = try s.run("apply", environment: ["BULWARK_FAULT_NO_DESCRIPTORS_IN_GUARD": "firewall"])
            #expect(short.status == 1, "a failed pass: \(short.stdout)\(short.stderr)")
            #expect(short.stderr.contains("cannot read what must stay reachable on edge-1"), "\(short.stderr)")
            #expect(!short.stdout.contains("BLOCKED") && !short.stdout.contains("bulwark approve"), "\(short.stdout)")
            #expect(try lab.connects(port: 8443), "the peer still connects")
            #expect(try !lab.nft(["list", "ruleset"]).stdout.contains("192.0.2.2"), "nothing written")
            let records = try CrashSafetyTests.records(of: "FirewallBlocklist/", s)
            #expect(!records.isEmpty && records.allSatisfy {
                $0.contains("Bulwark-Decision: unobserved") && $0.contains("Too many open files")
            }, "\(records)")

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect(try !lab.connects(port: 8443), "blocked by the next pass")
            #expect(try CrashSafetyTests.records(of: "FirewallBlocklist/", s).contains { $0.contains("Bulwark-Result: verified") })
        }
    }

    /// Out of descriptors, a guard's real answer is still a block: loopback in a blocklist is
    /// refused without reading anything, recorded `blocked`, and a person is offered the approval.
    @Test func aFirewallGuardOutOfDescriptorsStillBlocksWhatItJudgesWithoutReading() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try Self.shortageBlocklist(s, lab, dir, "127.0.0.0/8")
            let short = try s.run("apply", environment: ["BULWARK_FAULT_NO_DESCRIPTORS_IN_GUARD": "firewall"])
            #expect(short.stdout.contains("BLOCKED") && short.stdout.contains("bulwark approve"), "\(short.stdout)\(short.stderr)")
            #expect(try !lab.nft(["list", "ruleset"]).stdout.contains("127.0.0.0/8"), "nothing written")
            let records = try CrashSafetyTests.records(of: "FirewallBlocklist/", s)
            #expect(!records.isEmpty && records.allSatisfy {
                $0.contains("Bulwark-Decision: blocked") && $0.contains("would cut off loopback")
            }, "\(records)")
        }
    }
}
