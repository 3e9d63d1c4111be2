@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

extension FirewallEndToEndTests {
    static func blocklist(_ addresses: String) -> String {
        "apiVersion: bulwark/v1\nkind: FirewallBlocklist\nmetadata: {name: known-bad}\nspec: {addresses: [\(addresses)]}\n"
    }

    /// A blocklist fix in a namespace of the test's own: the second address added, then reverted.
    static func blocklistFixed(_ s: Scenario, _ lab: NetworkLab, _ dir: String) throws -> String {
        try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
        try s.commitPolicy("controllers/edge.yaml", """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-1, labels: {role: edge}}
            spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(lab.host), management: [192.0.2.200/32]}
            """)
        try s.commitPolicy("desired-state/firewall/blocklist.yaml", blocklist("192.0.2.9"))
        // The shipped blocklist replaced: taken as accepted, as an operator who reviewed it would.
        try s.acceptHead()
        let first = try s.run("apply")
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
        try s.commitPolicy("desired-state/firewall/blocklist.yaml", blocklist("192.0.2.9, 198.51.100.7"))
        let second = try s.run("apply")
        #expect(second.status == 0, "\(second.stdout)\n\(second.stderr)")
        #expect(try lab.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"), "\(first.stdout)\n\(second.stdout)")
        return try RevertTests.recordID(s, resource: "FirewallBlocklist/known-bad", decision: "applied")
    }

    /// `revert` of a blocklist fix writes the addresses from before it, observes the ruleset
    /// again and records verified (the driver wrote the spec's addresses, not the restored ones:
    /// the revert never held). What nft lists in the namespace is the old blocklist.
    @Test func aBlocklistRevertIsWrittenVerifiedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            let fix = try Self.blocklistFixed(s, lab, dir)
            let reverted = try RevertTests.revert(s, fix)
            #expect(reverted.status == 0, "\(reverted.stdout)\n\(reverted.stderr)")
            #expect(reverted.stdout.contains("addresses 192.0.2.9, 198.51.100.7 -> 192.0.2.9, now 192.0.2.9"), "\(reverted.stdout)")
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Reason: revert of \(fix) by Olga Operator <olga@example.org>"), "\(record)")
            #expect(record.contains("Bulwark-Result: verified"), "\(record)")
            let ruleset = try lab.nft(["list", "ruleset"]).stdout
            #expect(ruleset.contains("192.0.2.9") && !ruleset.contains("198.51.100.7"), "\(ruleset)")
            #expect(try !read(dir + "/edge-root/etc/nftables.d/bulwark.nft").contains("198.51.100.7"))
        }
    }

    /// A revert whose write fails is recorded failed, truthfully: the folder the table is
    /// persisted in is read-only (even for root), so the restored table cannot be made to
    /// survive a reboot. (A write that succeeds and then observes otherwise could not be made
    /// to happen honestly: nothing else writes the ruleset between the write and its check.)
    @Test func aBlocklistRevertThatCannotBePersistedIsRecordedFailed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            let fix = try Self.blocklistFixed(s, lab, dir)
            let readOnly = try ReadOnlyFolder(dir + "/edge-root/etc/nftables.d")
            defer { readOnly.release() }
            let reverted = try RevertTests.revert(s, fix)
            #expect(reverted.status == 1, "\(reverted.stdout)\n\(reverted.stderr)")
            #expect(reverted.stderr.contains("the revert of \(fix) did not verify"), "\(reverted.stderr)")
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Reason: revert of \(fix) by Olga Operator <olga@example.org>"), "\(record)")
            #expect(record.contains("Bulwark-Result: failed"), "\(record)")
            #expect(!record.contains("Bulwark-Result: verified"), "\(record)")
            #expect(try read(dir + "/edge-root/etc/nftables.d/bulwark.nft").contains("198.51.100.7"), "the persisted table is the fix's")
        }
    }
}
