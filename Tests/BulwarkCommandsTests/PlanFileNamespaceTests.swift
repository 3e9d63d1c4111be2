@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

extension FirewallEndToEndTests {
    /// Harmful: `apply --plan FILE` checked a target's netns, right before each write, against
    /// the plan made in that run. A name bound to another namespace after the review (one that
    /// shows the same values) was planned afresh there, and the reviewed fix was written into
    /// it. The plan file now carries each target's namespace identity (`targetIdentities`) and
    /// the write is checked against that: refused, recorded failed with why, nothing written in
    /// either namespace. Legitimate: the name left alone, the same reviewed plan is written and
    /// verified.
    @Test(arguments: [true, false])
    func applyPlanWritesOnlyToTheNamespaceTheReviewedPlanSaw(rebound: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let reviewed = try NetworkLab()
            defer { reviewed.remove() }
            let other = try NetworkLab()
            defer { other.remove() }
            let name = "bwq" + reviewed.host.dropFirst(3)
            let path = "/run/netns/" + name
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            defer { _ = try? run("/usr/sbin/ip", ["netns", "del", name]) }
            func rebind(to lab: NetworkLab) throws {
                _ = try run("/usr/bin/umount", [path])
                try Self.bind(path, to: lab)
            }

            try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
            try s.commitPolicy("controllers/edge.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: edge-1, labels: {role: edge}}
                spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(name), management: [192.0.2.200/32]}
                """)
            try s.commitPolicy("desired-state/firewall/blocklist.yaml", Self.blocklist("192.0.2.9"))
            try s.acceptHead()
            // Both namespaces block 192.0.2.9: each looks the same to a plan.
            for lab in [other, reviewed] {
                try rebind(to: lab)
                let applied = try s.run("apply")
                #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
                #expect(try lab.nft(["list", "ruleset"]).stdout.contains("192.0.2.9"))
            }

            try s.commitPolicy("desired-state/firewall/blocklist.yaml", Self.blocklist("192.0.2.9, 198.51.100.7"))
            let file = dir + "/plan.json"
            let planned = try s.run("plan", "--out", file)
            #expect(planned.status == 2, "\(planned.stdout)\n\(planned.stderr)")
            let saved = try read(file)
            #expect(saved.contains("\"targetIdentities\""), "\(saved)")
            if rebound { try rebind(to: other) }

            let applied = try s.run("apply", "--plan", file)
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Bulwark-Resource: FirewallBlocklist/known-bad"), "\(record)")
            if rebound {
                #expect(applied.status != 0, "\(applied.stdout)\n\(applied.stderr)")
                #expect(record.contains("Bulwark-Result: failed"), "\(record)")
                #expect(record.contains("refused: the network namespace \(name) of target edge-1 is not the one planned against"),
                        "\(record)")
                for lab in [reviewed, other] {
                    #expect(try !lab.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"), "nothing written in \(lab.host)")
                }
            } else {
                #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
                #expect(record.contains("Bulwark-Result: verified"), "\(record)")
                #expect(try reviewed.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"))
                #expect(try !other.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"))
            }
        }
    }
}
