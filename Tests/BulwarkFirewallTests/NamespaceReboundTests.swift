import BulwarkCore
import BulwarkFirewall
import BulwarkTestSupport
import Foundation
import Testing

/// A target's `netns` is a name (`/run/netns/NAME`) that can be bound to another namespace
/// between the plan and its fix: the plan judged one namespace's ruleset and the fix would
/// have written into another's. Right before it writes, the fix checks the namespace is the
/// one the plan began with (device and inode) and writes through the descriptor of that check.
@Suite(.serialized, .enabled(if: NetworkLab.available, "needs root, nft and ip"))
struct NamespaceReboundTests {
    /// A name of the test's own for `lab`'s host namespace, bound as `ip netns` binds one.
    static func bind(_ path: String, to lab: NetworkLab) throws {
        let bound = try run("/usr/bin/mount", ["--bind", "/run/netns/" + lab.host, path])
        guard bound.status == 0 else { throw SupportError("mount --bind /run/netns/\(lab.host) \(path): \(bound.stderr)") }
    }

    /// Harmful: the name is bound to a second namespace after the plan; the fix is refused,
    /// recorded as failed with why, and neither namespace's ruleset gets the table. Legitimate:
    /// planned again against what the name is now, the same fix is written there and verified.
    @Test func aNameReboundBetweenPlanAndApplyIsRefusedAndAFreshPlanIsWritten() async throws {
        try await withTemporaryDirectory { root in
            let planned = try NetworkLab()
            defer { planned.remove() }
            let other = try NetworkLab()
            defer { other.remove() }
            let name = "bwr" + planned.host.dropFirst(3)
            let path = "/run/netns/" + name
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            defer { _ = try? run("/usr/sbin/ip", ["netns", "del", name]) }
            try Self.bind(path, to: planned)

            let blocklist = "apiVersion: bulwark/v1\nkind: FirewallBlocklist\nmetadata: {name: attackers}\nspec: {addresses: [198.51.100.7]}\n"
            let state = try firewallState(root: root, namespace: name, blocklist)
            let reconciler = Reconciler(registry: Registry([FirewallAdapter.definition()]))
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map(\.reason))")

            // Between the plan and the fix, the name is bound to the other namespace.
            #expect(try run("/usr/bin/umount", [path]).status == 0)
            try Self.bind(path, to: other)
            let sink = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: sink)
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            #expect(record.error?.contains("refused: the network namespace \(name) of target edge-1 is not the one planned against") == true,
                    "\(record.error ?? "")")
            #expect(record.commitMessage.contains("Bulwark-Result: failed"), "\(record.commitMessage)")
            #expect(sink.records.map(\.id) == [record.id])
            for lab in [planned, other] {
                #expect(try !lab.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"), "nothing written in \(lab.host)")
            }
            #expect(!FileManager.default.fileExists(atPath: root + "/etc/nftables.d/bulwark.nft"))

            // Legitimate: planned again, against the namespace the name is bound to now.
            let again = try await reconciler.plan(state)
            let written = await reconciler.apply(again, state: state, audit: sink)
            #expect(written.verified.count == 1, "\(written.entries.map { $0.record.error ?? "" })")
            #expect(try other.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"))
            #expect(try !planned.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"))
        }
    }
}
