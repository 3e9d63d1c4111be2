import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

@Suite(.serialized, .enabled(if: NetworkLab.available, "needs root, nft and ip"))
struct FirewallTests {
    func blocklist(_ addresses: String) -> String {
        "apiVersion: bulwark/v1\nkind: FirewallBlocklist\nmetadata: {name: attackers}\nspec: {addresses: [\(addresses)]}\n"
    }

    @Test func aBlocklistedPeerIsCutOffAndLetBackIn() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8080)
            // Someone else's table, which Bulwark must leave alone.
            #expect(try lab.nft(["add", "table", "inet", "other"]).status == 0)
            #expect(try lab.nft(["add", "chain", "inet", "other", "keep"]).status == 0)
            #expect(try lab.connects(port: 8080))

            let blocked = try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.2, 198.51.100.0/24, \"2001:db8:bad::/48\""))
            let (plan, outcome) = try await reconcile(blocked)
            #expect(plan.remediations.first?.changes.first?.observed == nil)
            #expect(outcome.verified.count == 1, "\(outcome.entries.first?.record.error ?? "")")
            #expect(try !lab.connects(port: 8080), "the blocklisted peer can no longer connect")
            #expect(try lab.connects(to: "2001:db8::1", port: 8080), "IPv6 from an address not listed still works")
            #expect(try await reconcile(blocked).0.hasDrift == false, "a second pass changes nothing")

            // Persisted, loadable, and the other table untouched.
            let persisted = try read(root + "/etc/nftables.d/bulwark.nft")
            #expect(persisted.contains("192.0.2.2") && persisted.contains("198.51.100.0/24"))
            #expect(try lab.nft(["-c", "-f", root + "/etc/nftables.d/bulwark.nft"]).status == 0)
            #expect(try lab.nft(["list", "chain", "inet", "other", "keep"]).status == 0)

            // Drift: someone flushes the set by hand; Bulwark sees it and puts it back.
            let sets = try lab.nft(["-j", "list", "sets", "inet"]).stdout
            let set = try #require(sets.range(of: "bl_attackers_[a-z0-9]+_4", options: .regularExpression).map { String(sets[$0]) })
            #expect(try lab.nft(["flush", "set", "inet", "bulwark", set]).status == 0)
            let (again, fixed) = try await reconcile(blocked)
            #expect(again.remediations.first?.changes.first?.observed == "2001:db8:bad::/48")
            #expect(fixed.verified.count == 1)
            #expect(try !lab.connects(port: 8080))

            // The address leaves the desired state: the peer gets back in.
            let (_, released) = try await reconcile(try firewallState(root: root, namespace: lab.host, blocklist("198.51.100.0/24")))
            #expect(released.verified.count == 1)
            #expect(try lab.connects(port: 8080))
        }
    }

    /// Whoever controls the root (a container's filesystem) makes `etc/nftables.d` a link to
    /// the machine's own `/…/host-nftables.d`. The table is persisted where the host booted from
    /// the root would find it (the absolute link starts again at the root) and nothing is
    /// written outside the root. A link that stays inside the root (a configuration tool's) is
    /// followed; a persisted file that is itself a link fails the fix before the ruleset changes.
    @Test func aPersistFolderLinkedOutOfTheRootIsFollowedInsideItAndNothingIsWrittenOutside() async throws {
        try await withTemporaryDirectory { dir in
            let lab = try NetworkLab()
            defer { lab.remove() }
            let root = dir + "/root"
            let outside = dir + "/host-nftables.d"
            for folder in [root + "/etc", outside] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/nftables.d", withDestinationPath: outside)
            let state = try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.2"))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1, "\(outcome.entries.first?.record.error ?? "")")
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "nothing written through the link")
            #expect(try read(root + outside + "/bulwark.nft").contains("192.0.2.2"), "where the host would read it")

            // A link inside the root, as stow or a configuration tool makes.
            try FileManager.default.removeItem(atPath: root + "/etc/nftables.d")
            try FileManager.default.createDirectory(atPath: root + "/etc/nftables.real", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/nftables.d", withDestinationPath: "nftables.real")
            let (_, moved) = try await reconcile(try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.3")))
            #expect(moved.verified.count == 1, "\(moved.entries.first?.record.error ?? "")")
            #expect(try read(root + "/etc/nftables.real/bulwark.nft").contains("192.0.2.3"))

            // The file itself a link: the fix fails, the ruleset keeps what it had.
            try FileManager.default.removeItem(atPath: root + "/etc/nftables.real/bulwark.nft")
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/nftables.real/bulwark.nft", withDestinationPath: outside + "/stolen.nft")
            let (_, refused) = try await reconcile(try firewallState(root: root, namespace: lab.host, blocklist("192.0.2.4")))
            #expect(refused.entries.first?.record.result == .failed, "\(refused.entries.map(\.record.decision))")
            #expect(!FileManager.default.fileExists(atPath: outside + "/stolen.nft"))
            #expect(try !lab.nft(["list", "ruleset"]).stdout.contains("192.0.2.4"), "the ruleset did not change")
        }
    }

    @Test func allowedIngressDropsEverythingElse() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8080)
            try lab.listen(port: 9090)
            let state = try firewallState(root: root, namespace: lab.host, """
                apiVersion: bulwark/v1
                kind: AllowedIngress
                metadata: {name: web}
                spec: {tcp: [22, 8080, 443]}
                """)
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1, "\(outcome.entries.first?.record.error ?? "")")
            #expect(try lab.connects(port: 8080))
            #expect(try !lab.connects(port: 9090))
            #expect(try lab.connects(to: "127.0.0.1", port: 9090, from: lab.host), "loopback is not filtered")
            #expect(try await reconcile(state).0.hasDrift == false)
        }
    }

    /// nftables keeps at most 128 bytes of a comment, and the desired value went into the drop
    /// rule's comment whole: forty ports, or a 200-byte resource name in the owner comment,
    /// failed at `nft -c` on every pass. A long value is now recorded as its SHA-256, read back
    /// against the desired value: in sync after the fix, drift when the list changes.
    @Test func aValueTooLongForAnNFTCommentIsRecordedByItsDigest() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8080)
            try lab.listen(port: 9090)
            let name = "web-" + String(repeating: "a", count: 200)
            func ingress(_ ports: [Int]) throws -> DesiredState {
                try firewallState(root: root, namespace: lab.host, """
                    apiVersion: bulwark/v1
                    kind: AllowedIngress
                    metadata: {name: \(name)}
                    spec: {tcp: [\(ports.map(String.init).joined(separator: ", "))]}
                    """)
            }
            let many = [22] + Array(10_000..<10_040)
            let (_, first) = try await reconcile(try ingress(many + [8080]))
            #expect(first.verified.count == 1, "\(first.entries.first?.record.error ?? "")")
            #expect(try lab.connects(port: 8080))
            #expect(try !lab.connects(port: 9090))
            #expect(try await reconcile(try ingress(many + [8080])).0.hasDrift == false)

            let (plan, second) = try await reconcile(try ingress(many + [9090]))
            #expect(plan.hasDrift, "another long list is another digest")
            #expect(second.verified.count == 1, "\(second.entries.first?.record.error ?? "")")
            #expect(try lab.connects(port: 9090))
            #expect(try !lab.connects(port: 8080))
        }
    }

    /// A rule inserted by hand into a resource's chain before its drop, or into Bulwark's base
    /// chain before the jumps, let traffic through while the chain's last rule still said what
    /// Bulwark wrote, and the plan said in sync. Each chain's rules are now compared with what
    /// Bulwark recorded writing (the persisted table): drift, fixed, and the port shut again. A
    /// pass after Bulwark's own write finds nothing changed.
    @Test func aRuleInsertedByHandIsDriftAndTakenOut() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 9090)
            let ingress = try firewallState(root: root, namespace: lab.host, """
                apiVersion: bulwark/v1
                kind: AllowedIngress
                metadata: {name: web}
                spec: {tcp: [22, 8080]}
                """)
            let quarantine = try firewallState(root: root, namespace: lab.host, """
                apiVersion: bulwark/v1
                kind: Quarantine
                metadata: {name: incident-7}
                spec: {hosts: [edge-1], allow: [192.0.2.200/32]}
                """)
            for (state, expected) in [(ingress, 1), (quarantine, 2)] {
                let (_, outcome) = try await reconcile(state)
                #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
                #expect(try !lab.connects(port: 9090))
                #expect(try await reconcile(state).0.hasDrift == false, "Bulwark's own write is no change by hand")
                let listing = try lab.nft(["list", "table", "inet", "bulwark"]).stdout
                let chains = ["ai_web_[a-z0-9]+", "qr_incident_7_[a-z0-9]+_in", "qr_incident_7_[a-z0-9]+_out"]
                    .compactMap { listing.range(of: $0, options: .regularExpression).map { String(listing[$0]) } }
                #expect(chains.count == expected, "\(listing)")
                for chain in chains + ["input"] {
                    #expect(try lab.nft(["insert", "rule", "inet", "bulwark", chain, "tcp", "dport", "9090", "accept"]).status == 0)
                    // (A quarantine still drops the answer on its way out.)
                    if expected == 1 { #expect(try lab.connects(port: 9090), "the rule made by hand in \(chain) lets 9090 in") }
                    let (plan, fixed) = try await reconcile(state)
                    let observed = plan.remediations.flatMap(\.changes).compactMap(\.observed)
                    #expect(observed == ["(changed outside Bulwark: chain \(chain) holds rules Bulwark did not write)"], "\(observed)")
                    #expect(fixed.verified.count == 1, "\(fixed.entries.map { $0.record.error ?? "" })")
                    #expect(try !lab.connects(port: 9090), "shut again after the rule in \(chain)")
                    #expect(try await reconcile(state).0.hasDrift == false)
                }
                // The next resource starts from an empty table.
                _ = try lab.nft(["delete", "table", "inet", "bulwark"])
            }
        }
    }

    /// A commit writes the digests of the chains it wrote: another resource's chain, changed by
    /// hand while that resource was held, keeps the digest Bulwark wrote for it, and the change
    /// is found at its next pass (recorded afresh, it passed for Bulwark's own).
    @Test func aHandEditIsStillFoundAfterAnotherResourcesCommit() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 9090)
            func state(blocking address: String, holdIngress: Bool) throws -> DesiredState {
                try firewallState(root: root, namespace: lab.host, """
                    apiVersion: bulwark/v1
                    kind: FirewallBlocklist
                    metadata: {name: attackers}
                    spec: {addresses: [\(address)]}
                    ---
                    apiVersion: bulwark/v1
                    kind: AllowedIngress
                    metadata: {name: web, annotations: {mode: \(holdIngress ? "audit" : "enforce")}}
                    spec: {tcp: [22, 8080]}
                    """)
            }
            let (_, first) = try await reconcile(try state(blocking: "203.0.113.7", holdIngress: false))
            #expect(first.verified.count == 2, "\(first.entries.map { $0.record.error ?? "" })")
            let listing = try lab.nft(["list", "table", "inet", "bulwark"]).stdout
            let chain = try #require(listing.range(of: "ai_web_[a-z0-9]+", options: .regularExpression).map { String(listing[$0]) })
            #expect(try lab.nft(["insert", "rule", "inet", "bulwark", chain, "tcp", "dport", "9090", "accept"]).status == 0)
            // The ingress is only reported (audit mode): the blocklist alone is written, with its new address.
            let (held, blocked) = try await reconcile(try state(blocking: "203.0.113.8", holdIngress: true))
            #expect(held.remediations.map(\.decision).sorted { $0.rawValue < $1.rawValue } == [.applied, .reported])
            #expect(blocked.verified.count == 1)
            #expect(try lab.connects(port: 9090), "the hand-made rule is still there")
            let (plan, fixed) = try await reconcile(try state(blocking: "203.0.113.8", holdIngress: false))
            #expect(plan.remediations.flatMap(\.changes).compactMap(\.observed)
                    == ["(changed outside Bulwark: chain \(chain) holds rules Bulwark did not write)"])
            #expect(fixed.verified.count == 1)
            #expect(try !lab.connects(port: 9090))
        }
    }

    @Test func quarantineLeavesOnlyManagement() async throws {
        try await withTemporaryDirectory { root in
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 22)
            func quarantine(_ extra: String) throws -> DesiredState {
                try firewallState(root: root, namespace: lab.host, """
                    apiVersion: bulwark/v1
                    kind: Quarantine
                    metadata: {name: incident-42}
                    spec: {hosts: [edge-1], allow: [\(extra)]}
                    """)
            }
            let (_, isolated) = try await reconcile(try quarantine("192.0.2.200/32"))
            #expect(isolated.verified.count == 1, "\(isolated.entries.first?.record.error ?? "")")
            #expect(try !lab.connects(port: 22), "cut off")
            let (_, managed) = try await reconcile(try quarantine("192.0.2.2/32, 192.0.2.200/32"))
            #expect(managed.verified.count == 1)
            #expect(try lab.connects(port: 22), "the management address still reaches it")
            let lifted = try firewallState(root: root, namespace: lab.host, """
                apiVersion: bulwark/v1
                kind: Quarantine
                metadata: {name: incident-42}
                spec: {hosts: [edge-1], allow: [192.0.2.200/32], expires: 2020-01-01}
                """)
            let (_, released) = try await reconcile(lifted)
            #expect(released.verified.count == 1)
            #expect(try lab.nft(["list", "table", "inet", "bulwark"]).stdout.contains("qr_") == false)
        }
    }

    @Test func refusesBadAddressesAndOverlaps() {
        for bad in ["300.1.1.1", "192.0.2.0/33", "192.0.2.0/24, 192.0.2.7", "example.org"] {
            #expect(throws: ValidationFailure.self, "\(bad)") {
                _ = try firewallState(root: "/tmp", namespace: "x", blocklist(bad))
            }
        }
    }
}
