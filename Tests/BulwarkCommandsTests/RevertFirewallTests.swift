@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing

extension FirewallEndToEndTests {
    static func blocklist(_ addresses: String) -> String {
        "apiVersion: bulwark/v1\nkind: FirewallBlocklist\nmetadata: {name: known-bad}\nspec: {addresses: [\(addresses)]}\n"
    }

    /// A blocklist fix in a namespace of the test's own: the second address added, then reverted.
    /// `netns`: a name of the test's own bound to `lab`'s namespace; default: `lab`'s own name.
    static func blocklistFixed(_ s: Scenario, _ lab: NetworkLab, _ dir: String, netns: String? = nil) throws -> String {
        try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
        try s.commitPolicy("controllers/edge.yaml", """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-1, labels: {role: edge}}
            spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(netns ?? lab.host), management: [192.0.2.200/32]}
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

    /// Binds `path` (a file of the test's own in /run/netns) to `lab`'s namespace, as `ip netns` binds a name.
    static func bind(_ path: String, to lab: NetworkLab) throws {
        let bound = try run("/usr/bin/mount", ["--bind", "/run/netns/" + lab.host, path])
        guard bound.status == 0 else { throw SupportError("mount --bind /run/netns/\(lab.host) \(path): \(bound.stderr)") }
    }

    /// A kind whose fix a revert undoes, in two specs: `wide`, then `tight` (a tightening, fixed
    /// without approval), and the chain it writes (a rule is added there by hand).
    struct RevertedKind: Sendable, CustomTestStringConvertible {
        var resource: String
        var wide: String
        var tight: String
        var chain: String
        /// What the ruleset holds once `wide` is put back.
        var restored: String
        var testDescription: String { resource }

        static let all = [
            RevertedKind(resource: "Quarantine/incident-7",
                         wide: "apiVersion: bulwark/v1\nkind: Quarantine\nmetadata: {name: incident-7}\nspec: {hosts: [edge-1], allow: [192.0.2.200/32, 198.51.100.0/24]}\n",
                         tight: "apiVersion: bulwark/v1\nkind: Quarantine\nmetadata: {name: incident-7}\nspec: {hosts: [edge-1], allow: [192.0.2.200/32]}\n",
                         chain: "qr_incident_7_[a-z0-9]+_in", restored: "198.51.100.0/24"),
            RevertedKind(resource: "AllowedIngress/web",
                         wide: "apiVersion: bulwark/v1\nkind: AllowedIngress\nmetadata: {name: web}\nspec: {tcp: [22, 8080, 9090]}\n",
                         tight: "apiVersion: bulwark/v1\nkind: AllowedIngress\nmetadata: {name: web}\nspec: {tcp: [22, 8080]}\n",
                         chain: "ai_web_[a-z0-9]+", restored: "9090"),
        ]
    }

    /// Harmful: a fix of a chain changed by hand records the value before it as `(changed
    /// outside Bulwark: …)`, which `revert` would put back. A quarantine read it as one allowing
    /// no network (only the management guard kept the host from being cut off), and an ingress
    /// revert committed its waiver before the driver refused the value. Now the driver's check
    /// refuses it before anything is committed: no waiver on main, the ruleset as it was, and
    /// the refusal recorded once however often it is tried. Legitimate: the revert of the
    /// tightening, a value the driver writes, is committed, written and verified.
    @Test(arguments: RevertedKind.all)
    func aRevertOfAValueTheDriverDoesNotWriteIsRefusedBeforeAnythingIsCommitted(_ kind: RevertedKind) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
            try s.commitPolicy("controllers/edge.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: edge-1, labels: {role: edge}}
                spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(lab.host), management: [192.0.2.200/32]}
                """)
            try s.commitPolicy("desired-state/firewall/blocklist.yaml", Self.blocklist("192.0.2.9"))
            let file = "desired-state/firewall/reverted.yaml"
            try s.commitPolicy(file, kind.wide)
            try s.acceptHead()
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
            try s.commitPolicy(file, kind.tight)
            let second = try s.run("apply")
            #expect(second.status == 0, "\(second.stdout)\n\(second.stderr)")
            let tightening = try RevertTests.recordID(s, resource: kind.resource, decision: "applied")

            // A rule made by hand in the chain; the next apply puts the chain back.
            let listing = try lab.nft(["list", "table", "inet", "bulwark"]).stdout
            let chain = try #require(listing.range(of: kind.chain, options: .regularExpression).map { String(listing[$0]) }, "\(listing)")
            #expect(try lab.nft(["insert", "rule", "inet", "bulwark", chain, "tcp", "dport", "7070", "accept"]).status == 0)
            let third = try s.run("apply")
            #expect(third.status == 0, "\(third.stdout)\n\(third.stderr)")
            let handEdit = try RevertTests.recordID(s, resource: kind.resource, decision: "applied")
            #expect(handEdit != tightening)
            let ruleset = try lab.nft(["list", "ruleset"]).stdout
            #expect(!ruleset.contains("7070") && !ruleset.contains(kind.restored), "\(ruleset)")

            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            for _ in 0..<2 {
                let refused = try RevertTests.revert(s, handEdit)
                #expect(refused.status == 1, "\(refused.stdout)\n\(refused.stderr)")
                #expect(refused.stderr.contains("the revert of \(handEdit) is refused, nothing was changed: \(kind.resource): the "), "\(refused.stderr)")
                // (The value quoted, cut short at 64 characters.)
                #expect(refused.stderr.contains(" (changed outside Bulwark: chain \(chain.prefix(16))"), "\(refused.stderr)")
                #expect(refused.stderr.contains(" is not one Bulwark writes"), "\(refused.stderr)")
                #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main, "no waiver committed")
                #expect(try lab.nft(["list", "ruleset"]).stdout == ruleset, "nothing written")
            }
            let records = try RevertTests.refusedReverts(s, handEdit)
            #expect(records.count == 1, "recorded once: \(records)")
            #expect(records.first?.contains("Bulwark-Resource: \(kind.resource)") == true, "\(records)")
            #expect(records.first?.contains("Bulwark-Target: edge-1") == true, "\(records)")

            // Legitimate: the tightening's revert puts back a value the driver writes.
            let reverted = try RevertTests.revert(s, tightening)
            #expect(reverted.status == 0, "\(reverted.stdout)\n\(reverted.stderr)")
            #expect(reverted.stdout.contains("Committed waivers/revert-\(tightening.lowercased()).yaml"), "\(reverted.stdout)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") != main)
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Reason: revert of \(tightening) by Olga Operator <olga@example.org>"), "\(record)")
            #expect(record.contains("Bulwark-Result: verified"), "\(record)")
            #expect(try lab.nft(["list", "ruleset"]).stdout.contains(kind.restored))
        }
    }

    /// Harmful: the target's netns name is bound to another namespace between the revert's
    /// observation and its write (held there by the ruleset lock every nftables write takes
    /// first, until the waiver is on main). The write is refused, the revert recorded failed
    /// with why, and neither namespace gets the restored blocklist. Legitimate: the same revert,
    /// held at the same point and the name left alone, is written and verified.
    @Test(arguments: [true, false])
    func aRevertWritesOnlyToTheNamespaceItObserved(rebound: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let observed = try NetworkLab()
            defer { observed.remove() }
            let other = try NetworkLab()
            defer { other.remove() }
            let name = "bwv" + observed.host.dropFirst(3)
            let path = "/run/netns/" + name
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            defer { _ = try? run("/usr/sbin/ip", ["netns", "del", name]) }
            func bind(to lab: NetworkLab) throws { try Self.bind(path, to: lab) }
            try bind(to: observed)
            let fix = try Self.blocklistFixed(s, observed, dir, netns: name)

            let lock = open(dir + "/edge-root/run/bulwark/nftables.lock", O_RDWR | O_CLOEXEC)
            try #require(lock >= 0 && flock(lock, LOCK_EX) == 0)
            var locked = true
            defer { if locked { close(lock) } }
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            // The revert runs on a thread of its own while this one holds the lock, re-binds and lets go.
            final class Outcome: Sendable {
                let output = Mutex<Result<ProcessOutput, any Error>?>(nil)
                let done = DispatchSemaphore(value: 0)
            }
            let outcome = Outcome()
            let (origin, state) = (s.origin, s.state)
            DispatchQueue.global().async {
                let result = Result {
                    try run(try bulwarkExecutable(), ["revert", fix, "--repo", origin, "--state-dir", state, "--reason", "CHG-42",
                                                      "--expires", RevertTests.day(in: 30)], environment: RevertTests.person)
                }
                outcome.output.withLock { $0 = result }
                outcome.done.signal()
            }
            // The waiver on main: the revert has observed and is about to write (it waits 3 s for the lock).
            var waited = 0
            while try git("--git-dir", s.origin, "rev-parse", "main") == main, waited < 3000 {
                usleep(20_000)
                waited += 20
            }
            if rebound {
                #expect(try run("/usr/bin/umount", [path]).status == 0)
                try bind(to: other)
            }
            close(lock)
            locked = false
            outcome.done.wait()
            let reverted = try #require(try outcome.output.withLock { $0 }?.get())
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Reason: revert of \(fix) by Olga Operator <olga@example.org>"), "\(record)")
            if rebound {
                #expect(reverted.status == 1, "\(reverted.stdout)\n\(reverted.stderr)")
                #expect(record.contains("Bulwark-Result: failed"), "\(record)")
                #expect(record.contains("Error: revert failed: refused: the network namespace \(name) of target edge-1 is not the one "
                                        + "planned against"), "\(record)")
                #expect(try observed.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"), "the fix's blocklist stays")
                #expect(try !other.nft(["list", "ruleset"]).stdout.contains("192.0.2.9"), "nothing written in the other namespace")
                #expect(try read(dir + "/edge-root/etc/nftables.d/bulwark.nft").contains("198.51.100.7"), "the persisted table is the fix's")
            } else {
                #expect(reverted.status == 0, "\(reverted.stdout)\n\(reverted.stderr)")
                #expect(record.contains("Bulwark-Result: verified"), "\(record)")
                let ruleset = try observed.nft(["list", "ruleset"]).stdout
                #expect(ruleset.contains("192.0.2.9") && !ruleset.contains("198.51.100.7"), "\(ruleset)")
            }
        }
    }
}
