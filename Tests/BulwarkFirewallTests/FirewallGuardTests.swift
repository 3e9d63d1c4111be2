import BulwarkCore
import BulwarkFirewall
import BulwarkTestSupport
import Foundation
import Testing

/// The firewall's safety guards: no blocklist, quarantine or allowed ingress may cut a target
/// off from its management networks, the peers of its SSH sessions, or its default gateway.
/// Each harmful change is blocked, recorded once, and leaves the ruleset and the persisted file
/// as they were; the legitimate change beside it goes through.
@Suite(.serialized, .enabled(if: NetworkLab.available, "needs root, nft and ip"))
struct FirewallGuardTests {
    func blocklist(_ addresses: String, name: String = "attackers") -> String {
        "apiVersion: bulwark/v1\nkind: FirewallBlocklist\nmetadata: {name: \(name)}\nspec: {addresses: [\(addresses)]}\n"
    }

    func quarantine(_ allow: String) -> String {
        "apiVersion: bulwark/v1\nkind: Quarantine\nmetadata: {name: incident-7}\nspec: {hosts: [edge-1], allow: [\(allow)]}\n"
    }

    func ingress(_ spec: String) -> String {
        "apiVersion: bulwark/v1\nkind: AllowedIngress\nmetadata: {name: edge}\nspec: \(spec)\n"
    }

    /// What an independent reader sees: the namespace's whole ruleset and the persisted file.
    func snapshot(_ lab: NetworkLab, _ root: String) throws -> String {
        try lab.nft(["list", "ruleset"]).stdout + "\n--- persisted ---\n"
            + ((try? read(root + "/etc/nftables.d/bulwark.nft")) ?? "(none)")
    }

    /// Plans and applies twice with one audit sink; expects the resource blocked, nothing changed,
    /// and the decision recorded once. Returns the reason.
    func expectBlocked(_ state: DesiredState, lab: NetworkLab, root: String,
                       sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws -> String {
        let before = try snapshot(lab, root)
        let sink = RecordingSink()
        let (plan, outcome) = try await reconcile(state, audit: sink)
        let entry = try #require(outcome.entries.first, sourceLocation: sourceLocation)
        #expect(plan.remediations.map(\.decision) == [.blocked], sourceLocation: sourceLocation)
        #expect(entry.record.decision == .blocked, sourceLocation: sourceLocation)
        #expect(entry.record.commitMessage.contains("Bulwark-Decision: blocked"), sourceLocation: sourceLocation)
        #expect(try snapshot(lab, root) == before, "the ruleset and the persisted file are unchanged", sourceLocation: sourceLocation)
        let (_, again) = try await reconcile(state, audit: sink)
        #expect(again.entries.map(\.alreadyRecorded) == [true], "recorded once", sourceLocation: sourceLocation)
        #expect(sink.records.count == 1, sourceLocation: sourceLocation)
        #expect(try snapshot(lab, root) == before, sourceLocation: sourceLocation)
        return entry.record.reason ?? ""
    }

    // MARK: - Validation

    @Test func aTargetMustNameItsManagementNetworks() throws {
        let inventory = """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-1}
            spec: {adapter: nftables, root: /tmp}
            """
        let failure = try #require(throws: ValidationFailure.self) {
            _ = try DesiredStateLoader(registry: Registry([FirewallAdapter.definition()]))
                .load([SourceFile(path: "controllers/edge.yaml", contents: Array(inventory.utf8))], revision: "test")
        }
        let error = try #require(failure.errors.first)
        #expect(error.location.file == "controllers/edge.yaml" && error.location.line == 4)
        #expect(error.field == "spec")
        #expect(error.message.hasPrefix("missing required field 'management'"))

        let empty = try #require(throws: ValidationFailure.self) {
            _ = try firewallState(root: "/tmp", namespace: "x", management: "", blocklist("192.0.2.9"))
        }
        #expect(empty.errors.first?.field == "spec.management")
    }

    @Test func everyAddressIsRefusedWherever() {
        for every in ["0.0.0.0/0", "\"::/0\"", "10.0.0.0/0"] {
            #expect(throws: ValidationFailure.self, "blocklist \(every)") {
                _ = try firewallState(root: "/tmp", namespace: "x", blocklist(every))
            }
            #expect(throws: ValidationFailure.self, "quarantine allow \(every)") {
                _ = try firewallState(root: "/tmp", namespace: "x", quarantine(every))
            }
            #expect(throws: ValidationFailure.self, "management \(every)") {
                _ = try firewallState(root: "/tmp", namespace: "x", management: every, blocklist("192.0.2.9"))
            }
        }
        do {
            let failure = try firewallState(root: "/tmp", namespace: "x", blocklist("0.0.0.0/0"))
            Issue.record("accepted \(failure.resources.count) resources")
        } catch let failure as ValidationFailure {
            #expect(failure.errors.first?.field == "spec.addresses[0]")
            #expect(failure.errors.first?.message.contains("prefix length of 0") == true)
        } catch {
            Issue.record("\(error)")
        }
    }

    // MARK: - Blocklist

    @Test func aBlocklistThatCoversManagementIsBlockedAndOneOutsideGoesThrough() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8080)
            let reason = try await expectBlocked(
                try firewallState(root: root, namespace: lab.host, management: "192.0.2.0/28", blocklist("192.0.2.8/29, 198.51.100.7")),
                lab: lab, root: root)
            #expect(reason.hasPrefix("blocking 192.0.2.8/29 would cut off management network 192.0.2.0/28 of edge-1"))
            #expect(reason.contains("bulwark approve "))
            #expect(try lab.connects(port: 8080), "the peer (inside management) still connects")

            // Outside management: applied, and the peer is cut off.
            let (_, outcome) = try await reconcile(
                try firewallState(root: root, namespace: lab.host, management: "192.0.2.200/29", blocklist("192.0.2.0/29")))
            #expect(outcome.entries.map(\.record.decision) == [.applied])
            #expect(outcome.verified.count == 1)
            #expect(try !lab.connects(port: 8080))
        }
    }

    @Test func aBlocklistThatCutsAnSSHSessionOrTheGatewayIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 22, holding: true)
            try lab.openSession(port: 22)  // from 192.0.2.2, seen by the host as ::ffff:192.0.2.2
            try lab.addDefaultRoute(via: "192.0.2.254")

            let session = try await expectBlocked(try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.0/30")),
                                                  lab: lab, root: root)
            #expect(session.hasPrefix("blocking 192.0.2.0/30 would cut off 192.0.2.2, the peer of an established SSH session of edge-1; to apply"))
            let gateway = try await expectBlocked(try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.254")),
                                                  lab: lab, root: root)
            #expect(gateway.hasPrefix("blocking 192.0.2.254 would cut off default gateway 192.0.2.254 of edge-1"))

            // An IPv6 session (its peer read from /proc/net/tcp6 as four 32-bit words).
            try lab.openSession(port: 22, to: "2001:db8::1")
            let v6 = try await expectBlocked(try firewallState(root: root, namespace: lab.host, blocklist("\"2001:db8::/120\"")),
                                             lab: lab, root: root)
            #expect(v6.hasPrefix("blocking 2001:db8::/120 would cut off 2001:db8::2, the peer of an established SSH session of edge-1"))

            // Neither the sessions' peers, the gateway nor management: applied.
            let (_, outcome) = try await reconcile(try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.4/30, \"2001:db8:bad::/48\"")))
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
            #expect(try lab.nft(["list", "table", "inet", "bulwark"]).stdout.contains("192.0.2.4/30"))
        }
    }

    /// sshd listens on 2222 and the Target leaves sshPort at 22 (review M1): a session to 2222
    /// was no lifeline, and a blocklist of its peer went through and cut it. A session to any
    /// port sshd listens on counts: that blocklist is blocked and recorded, and the session's
    /// peer still gets in; one that leaves the peer out goes through.
    @Test func aBlocklistThatCutsASessionToThePortSSHDListensOnIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.sshd(port: 2222, folder: root)
            try lab.openSession(port: 2222)  // from 192.0.2.2, held open by sshd
            let reason = try await expectBlocked(try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.0/30")),
                                                 lab: lab, root: root)
            #expect(reason.hasPrefix("blocking 192.0.2.0/30 would cut off 192.0.2.2, the peer of an established SSH session of edge-1"),
                    "\(reason)")
            #expect(try lab.connects(port: 2222))

            let (_, outcome) = try await reconcile(try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.4/30")))
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
            #expect(try lab.nft(["list", "table", "inet", "bulwark"]).stdout.contains("192.0.2.4/30"))
            #expect(try lab.connects(port: 2222))
        }
    }

    /// Review M2: a blocklist entry that covers loopback (127.0.0.0/8 or a part of it, ::1, or a
    /// wider network holding them) would drop every service the host reaches on itself (the
    /// blocklist drops by source on `lo` too), with no SSH session over loopback to protect it.
    /// Blocked and recorded, the ruleset unchanged and a loopback listener still answering over
    /// IPv4 and IPv6; an ordinary network goes through, and loopback still answers.
    @Test func aBlocklistThatCoversLoopbackIsBlockedAndAnOrdinaryNetworkGoesThrough() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 5432)
            for (entries, shown) in [("203.0.113.0/24, 127.0.0.0/8", "127.0.0.0/8"), ("127.0.0.53", "127.0.0.53"),
                                     ("\"::1\"", "::1"), ("0.0.0.0/1", "0.0.0.0/1"), ("\"::/1\"", "::/1")] {
                let reason = try await expectBlocked(try firewallState(root: root, namespace: lab.host, blocklist(entries)), lab: lab, root: root)
                #expect(reason.hasPrefix("blocking \(shown) would cut off loopback (127.0.0.0/8 and ::1) of edge-1"), "\(reason)")
                #expect(try lab.connects(to: "127.0.0.1", port: 5432, from: lab.host), "\(entries)")
                #expect(try lab.connects(to: "::1", port: 5432, from: lab.host), "\(entries)")
            }

            // The twin: an ordinary network, and 128.0.0.0/8 right after loopback's. Applied.
            let (_, outcome) = try await reconcile(try firewallState(root: root, namespace: lab.host, blocklist("203.0.113.0/24, 128.0.0.0/8")))
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
            #expect(try lab.nft(["list", "table", "inet", "bulwark"]).stdout.contains("203.0.113.0/24"))
            #expect(try lab.connects(to: "127.0.0.1", port: 5432, from: lab.host))
            #expect(try lab.connects(to: "::1", port: 5432, from: lab.host))
        }
    }

    @Test func emptyingABlocklistIsBlockedButShorteningItIsNot() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            let (_, first) = try await reconcile(try firewallState(root: root, namespace: lab.host, blocklist("198.51.100.7, 203.0.113.0/24")))
            #expect(first.verified.count == 1)
            let reason = try await expectBlocked(try firewallState(root: root, namespace: lab.host, blocklist("")), lab: lab, root: root)
            #expect(reason.hasPrefix("this would empty the blocklist, which drops 2 addresses on edge-1 now"))
            let (_, shorter) = try await reconcile(try firewallState(root: root, namespace: lab.host, blocklist("203.0.113.0/24")))
            #expect(shorter.verified.count == 1)
            #expect(try !lab.nft(["list", "table", "inet", "bulwark"]).stdout.contains("198.51.100.7"))
        }
    }

    // MARK: - Quarantine

    @Test func aQuarantineThatCutsManagementOrASessionIsBlockedAndOneThatKeepsThemGoesThrough() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            let reason = try await expectBlocked(try firewallState(root: root, namespace: lab.host, quarantine("192.0.2.64/26")),
                                                 lab: lab, root: root)
            #expect(reason.hasPrefix("the quarantine would cut off management network 192.0.2.200 of edge-1: add it to allow"))

            try lab.listen(port: 22, holding: true)
            try lab.openSession(port: 22)
            let session = try await expectBlocked(try firewallState(root: root, namespace: lab.host, quarantine("192.0.2.192/26")),
                                                  lab: lab, root: root)
            #expect(session.hasPrefix("the quarantine would cut off 192.0.2.2, the peer of an established SSH session of edge-1"))
            #expect(try lab.connects(port: 22))

            // Management and the session's peer allowed: the host is isolated from everything else.
            try lab.listen(port: 8080)
            let (_, outcome) = try await reconcile(try firewallState(root: root, namespace: lab.host, quarantine("192.0.2.0/30, 192.0.2.192/26")))
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
            #expect(try lab.connects(port: 22), "the allowed peer still reaches SSH")
            #expect(try lab.connects(to: "2001:db8::1", port: 8080) == false, "IPv6 from outside allow is cut off")
        }
    }

    // MARK: - Allowed ingress

    @Test func anAllowedIngressThatShutsOutManagementIsBlockedAndOneThatKeepsSSHGoesThrough() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 22)
            try lab.listen(port: 9090)
            let empty = try await expectBlocked(try firewallState(root: root, namespace: lab.host, ingress("{}")), lab: lab, root: root)
            #expect(empty.hasPrefix("the allowed ingress would drop new SSH connections to edge-1 from its management networks: it allows no port at all"))
            let web = try await expectBlocked(try firewallState(root: root, namespace: lab.host, ingress("{tcp: [443]}")), lab: lab, root: root)
            #expect(web.contains("it does not allow tcp 22"))
            let narrow = try await expectBlocked(
                try firewallState(root: root, namespace: lab.host, ingress("{tcp: [22], from: [198.51.100.0/24]}")), lab: lab, root: root)
            #expect(narrow.hasPrefix("the allowed ingress would stop management network 192.0.2.200 of edge-1 from reaching tcp 22"))
            #expect(try lab.connects(port: 9090))

            let (_, outcome) = try await reconcile(
                try firewallState(root: root, namespace: lab.host, ingress("{tcp: [22, 443], from: [192.0.2.0/24]}")))
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
            #expect(try lab.connects(port: 22))
            #expect(try !lab.connects(port: 9090))
        }
    }

    /// The Target's sshPort is 22 by default, and sshd may listen elsewhere: an allowed
    /// ingress of tcp 22 passed the guard and dropped every new SSH connection to the port sshd
    /// listens on. A real sshd (root's, in the lab's namespace) on 2222: the change that drops
    /// 2222 is blocked and recorded, even with a user's process named sshd on a port it allows;
    /// the one that keeps 2222 goes through.
    @Test func anAllowedIngressThatDropsThePortSSHDListensOnIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.sshd(port: 2222, folder: root)
            // A user's own sshd (the same program, unprivileged) on 8080 is no sshd people log in to.
            try lab.listenAsSSHD(port: 8080, user: "nobody")
            let reason = try await expectBlocked(try firewallState(root: root, namespace: lab.host, ingress("{tcp: [22, 443, 8080]}")),
                                                 lab: lab, root: root)
            #expect(reason.contains("sshd listens on tcp 2222, which it does not allow (the target's sshPort is 22"), "\(reason)")
            let (_, outcome) = try await reconcile(try firewallState(root: root, namespace: lab.host, ingress("{tcp: [22, 2222]}")))
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
            #expect(try lab.connects(port: 2222))
        }
    }

    @Test func anotherSSHPortIsWhatManagementMustReach() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            let state = try DesiredStateLoader(registry: Registry([FirewallAdapter.definition()])).load([
                SourceFile(path: "controllers/c.yaml", contents: Array("""
                    apiVersion: bulwark/v1
                    kind: Target
                    metadata: {name: edge-1}
                    spec: {adapter: nftables, root: \(root), netns: \(lab.host), management: [\(labManagement)], sshPort: 2222}
                    ---
                    apiVersion: bulwark/v1
                    kind: Controller
                    metadata: {name: firewall}
                    spec: {kinds: [AllowedIngress]}
                    """.utf8)),
                SourceFile(path: "desired-state/f.yaml", contents: Array(ingress("{tcp: [22]}").utf8)),
            ], revision: "test")
            let reason = try await expectBlocked(state, lab: lab, root: root)
            #expect(reason.contains("it does not allow tcp 2222 (the target's sshPort is 2222)"))
        }
    }

    // MARK: - Targets and rulesets

    /// One nftables target per ruleset (two on one are refused when read: FirewallTargetSettingsTests).
    /// Two targets in two namespaces, one blocklist bound to both, load and apply: each namespace
    /// drops the address, and each persists its table under its own root.
    @Test func twoTargetsInTwoNamespacesEachApply() async throws {
        try await withTemporaryDirectory { root in
            let labs = [try NetworkLab(), try NetworkLab()]
            defer { labs.forEach { $0.remove() } }
            var inventory = ""
            for (index, lab) in labs.enumerated() {
                try FileManager.default.createDirectory(atPath: "\(root)/\(index)", withIntermediateDirectories: true)
                try lab.listen(port: 8080)
                inventory += """
                    apiVersion: bulwark/v1
                    kind: Target
                    metadata: {name: edge-\(index)}
                    spec: {adapter: nftables, root: \(root)/\(index), netns: \(lab.host), management: [\(labManagement)]}
                    ---

                    """
            }
            inventory += "apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: firewall}\nspec: {kinds: [FirewallBlocklist]}\n"
            let state = try DesiredStateLoader(registry: Registry([FirewallAdapter.definition()])).load([
                SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
                SourceFile(path: "desired-state/f.yaml", contents: Array(blocklist("192.0.2.2").utf8)),
            ], revision: "test")
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.map(\.binding.target).sorted() == ["edge-0", "edge-1"])
            #expect(outcome.verified.count == 2, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
            for (index, lab) in labs.enumerated() {
                #expect(try !lab.connects(port: 8080), "edge-\(index) drops 192.0.2.2")
                #expect(try read("\(root)/\(index)/etc/nftables.d/bulwark.nft").contains("192.0.2.2"))
            }
        }
    }

    // MARK: - Pruning

    @Test func aRemovedBlocklistAndQuarantineLeaveNoTraceAndTheRestStays() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8080)
            let everything = try firewallState(root: root, namespace: lab.host,
                                               blocklist("192.0.2.2, 198.51.100.0/24") + "---\n" + quarantine("192.0.2.200/32")
                                                   + "---\n" + ingress("{tcp: [22, 8080]}"))
            let (_, outcome) = try await reconcile(everything)
            #expect(outcome.verified.count == 3, "\(outcome.entries.map { $0.record.reason ?? $0.record.error ?? "" })")
            #expect(try !lab.connects(port: 8080))
            let registry = Registry([FirewallAdapter.definition()])
            let target = try #require(everything.targets["edge-1"])
            func driver(_ kind: String) throws -> any PruningDriver {
                try #require(registry.kinds[kind]?.driver as? any PruningDriver)
            }
            // While the resources are in the desired state, nothing is left over.
            func resources(_ kind: String) -> [Resource] { everything.resources.values.filter { $0.id.kind == kind } }
            #expect(try await driver("FirewallBlocklist").leftovers(on: target, keeping: resources("FirewallBlocklist")).isEmpty)
            #expect(try await driver("Quarantine").leftovers(on: target, keeping: resources("Quarantine")).isEmpty)
            #expect(try await driver("AllowedIngress").leftovers(on: target, keeping: resources("AllowedIngress")).isEmpty)

            // The blocklist and the quarantine leave the desired state; the allowed ingress stays.
            let kept = resources("AllowedIngress")
            let lostBlocklist = try await driver("FirewallBlocklist").leftovers(on: target, keeping: [])
            let lostQuarantine = try await driver("Quarantine").leftovers(on: target, keeping: [])
            #expect(lostBlocklist.map(\.owner) == [ResourceID(kind: "FirewallBlocklist", name: "attackers")])
            #expect(try await driver("AllowedIngress").leftovers(on: target, keeping: kept).isEmpty)
            #expect(lostQuarantine.map(\.owner) == [ResourceID(kind: "Quarantine", name: "incident-7")])
            #expect(lostBlocklist.first?.summary.contains("set bl_attackers_") == true)
            let handles = (lostBlocklist + lostQuarantine).map(\.handle)
            try await driver("FirewallBlocklist").prune(lostBlocklist, on: target)
            try await driver("Quarantine").prune(lostQuarantine, on: target)

            let ruleset = try lab.nft(["list", "ruleset"]).stdout
            let persisted = try read(root + "/etc/nftables.d/bulwark.nft")
            for handle in handles {
                #expect(!ruleset.contains(handle), "\(handle) gone from the ruleset")
                #expect(!persisted.contains(handle), "\(handle) gone from the persisted file")
            }
            #expect(!ruleset.contains("192.0.2.2") && !ruleset.contains("bl_") && !ruleset.contains("qr_"))
            #expect(!persisted.contains("192.0.2.2") && !persisted.contains("bl_") && !persisted.contains("qr_"))
            #expect(ruleset.contains("ai_edge_") && persisted.contains("ai_edge_"), "the allowed ingress still wanted stays")
            #expect(try lab.connects(port: 8080), "the peer gets back in")
            #expect(try await driver("AllowedIngress").leftovers(on: target, keeping: kept).isEmpty)
            #expect(try await driver("FirewallBlocklist").leftovers(on: target, keeping: []).isEmpty)
            #expect(try await driver("Quarantine").leftovers(on: target, keeping: []).isEmpty)
            #expect(try lab.nft(["-c", "-f", root + "/etc/nftables.d/bulwark.nft"]).status == 0)

            // A chain from before chains named their owner is found by its name; one Bulwark never
            // names (someone's own, in Bulwark's table) is not Bulwark's to prune.
            for command in [["add", "chain", "inet", "bulwark", "bl_old_list_ab12cd"],
                            ["add", "set", "inet", "bulwark", "bl_old_list_ab12cd_4", "{ type ipv4_addr ; }"],
                            ["add", "chain", "inet", "bulwark", "mine"]] {
                #expect(try lab.nft(command).status == 0)
            }
            let legacy = try await driver("FirewallBlocklist").leftovers(on: target, keeping: [])
            #expect(legacy.map(\.owner) == [ResourceID(kind: "FirewallBlocklist", name: "old_list")])
            #expect(legacy.first?.summary == "in table inet bulwark: chain bl_old_list_ab12cd, set bl_old_list_ab12cd_4")
            try await driver("FirewallBlocklist").prune(legacy, on: target)
            let after = try lab.nft(["list", "table", "inet", "bulwark"]).stdout
            #expect(!after.contains("bl_old_list") && after.contains("chain mine"))
            #expect(!after.contains("jump mine"), "a chain Bulwark did not make is not hooked")
        }
    }
}
