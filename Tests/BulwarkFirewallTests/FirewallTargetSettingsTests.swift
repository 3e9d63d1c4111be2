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
            spec: {kinds: [FirewallBlocklist, AllowedIngress]}
            """
        let ingress = "apiVersion: bulwark/v1\nkind: AllowedIngress\nmetadata: {name: edge}\nspec: {tcp: [22]}\n"
        return try DesiredStateLoader(registry: Registry([FirewallAdapter.definition()])).load([
            SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
            SourceFile(path: "desired-state/ingress.yaml", contents: Array(ingress.utf8)),
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
        #expect(try FirewallAdapter.management(target).map(\.description) == ["10.0.0.0/24", "2001:db8::/32"])
        #expect(try FirewallAdapter.sshPort(target) == 2222)
        #expect(target.settings == ["root": "/srv/fw", "netns": "lab-1", "management": "10.0.0.0/24,2001:db8::/32", "sshPort": "2222"])
        // Without sshPort: 22, and the text form names none (as before the settings were typed).
        let plain = try #require(try load("root: /srv/fw, management: [10.0.0.0/24]").targets["edge-1"])
        #expect(try FirewallAdapter.sshPort(plain) == 22 && plain.settings["sshPort"] == nil && plain.settings["netns"] == nil)
    }

    /// Two nftables targets on one ruleset (review H2): edge-a (management 192.0.2.64/26) and
    /// edge-b both in namespace lab-1, a blocklist of 192.0.2.64/26 bound to both. edge-a's guard
    /// blocked it and edge-b applied it to the same ruleset, cutting edge-a's management off, and
    /// both wrote the same chains. Refused when read, on edge-b's `netns`, naming edge-a's; the
    /// same for two targets without one (both the namespace Bulwark runs in), on `spec`.
    @Test func twoTargetsOnOneRulesetAreRefusedWhenRead() throws {
        let taken = "the nftables ruleset of network namespace lab-1 is already managed by Target 'edge-a' (controllers/c.yaml:4, spec.netns): "
            + "two nftables targets on one ruleset write the same table and chains"
        for (a, b, labelsA, labelsB, field, says) in [
            ("netns: lab-1, ", "netns: lab-1, ", "{}", "{}", "spec.netns", taken),
            ("", "", "{}", "{}", "spec",
             "the nftables ruleset of the network namespace Bulwark runs in (no netns) is already managed by Target 'edge-a' "
                + "(controllers/c.yaml:4, spec): two nftables targets on one ruleset"),
            // Labelled with one host, or one by hostname and the other by machine id: maybe one machine.
            ("netns: lab-1, ", "netns: lab-1, ", "{hostname: web-1}", "{hostname: web-1}", "spec.netns", taken),
            ("netns: lab-1, ", "netns: lab-1, ", "{hostname: web-1}", "{machine-id: ab12}", "spec.netns", taken),
        ] {
            let failure = try #require(throws: ValidationFailure.self, "\(a) \(labelsA) / \(b) \(labelsB)") {
                _ = try loadTwo(a, b, labelsA: labelsA, labelsB: labelsB)
            }
            #expect(failure.errors.count == 1, "\(failure)")
            let error = try #require(failure.errors.first)
            #expect(error.location.file == "controllers/c.yaml" && error.location.line == 9, "\(error)")
            #expect(error.field == field, "\(error)")
            #expect(error.message.hasPrefix(says), "\(error)")
        }
    }

    /// Targets on different rulesets load: two namespaces, one namespace and the one Bulwark runs
    /// in, and (a fleet) two targets without netns whose labels bind them to different hosts.
    @Test func targetsOnDifferentRulesetsLoad() throws {
        for (a, b, labelsA, labelsB) in [
            ("netns: lab-1, ", "netns: lab-2, ", "{}", "{}"),
            ("netns: lab-1, ", "", "{}", "{}"),
            ("", "", "{hostname: web-1}", "{hostname: web-2}"),
            ("", "", "{machine-id: ab12}", "{machine-id: CD34}"),
        ] {
            let state = try loadTwo(a, b, labelsA: labelsA, labelsB: labelsB)
            #expect(state.targets.keys.sorted() == ["edge-a", "edge-b"])
            #expect(state.bindings.count == 2)
        }
    }

    /// Harmful (a re-attack): two targets on one ruleset that load because their labels name
    /// different hosts, given to one process (a plain `apply`, not each host's agent). Neither is
    /// observed, each failure says why, and nothing is planned: one target's guard blocked the
    /// blocklist that cut its management network, and the other applied it. Legitimate: the
    /// pass an agent makes, narrowed to its own host's target, plans that target as usual.
    @Test func targetsLabelledForTwoHostsAreNotReconciledByOneProcess() async throws {
        let state = try loadTwo("netns: lab-1, ", "netns: lab-1, ", labelsA: "{hostname: web-1}", labelsB: "{hostname: web-2}")
        let reconciler = Reconciler(registry: Registry([FirewallAdapter.definition()]))
        let plan = try await reconciler.plan(state)
        #expect(plan.remediations.isEmpty)
        #expect(plan.failures.map(\.binding.target).sorted() == ["edge-a", "edge-b"])
        for failure in plan.failures {
            #expect(failure.message.hasPrefix("not reconciled: targets edge-a, edge-b of this pass all manage the nftables ruleset of "
                                              + "network namespace lab-1"), "\(failure.message)")
        }
        var own = state
        own.narrow(toTargets: ["edge-a"]) { $0.target == "edge-a" }
        let agent = try await reconciler.plan(own)
        #expect(agent.failures.allSatisfy { !$0.message.contains("not reconciled") } && agent.failures.allSatisfy { $0.binding.target == "edge-a" },
                "\(agent.failures.map(\.message))")
    }

    /// Namespace names that are not there (no /run/netns/NAME) are compared by name, as the
    /// loader compares them, when the pass looks for targets on one ruleset: two such names are
    /// not taken for one namespace, and each binding goes on as before, its guard blocking what it
    /// cannot judge with the error that names its own namespace.
    @Test func namespacesThatAreNotThereKeepTheirOwnError() async throws {
        let state = try loadTwo("netns: bw-missing-a, ", "netns: bw-missing-b, ")
        let plan = try await Reconciler(registry: Registry([FirewallAdapter.definition()])).plan(state)
        #expect(plan.failures.allSatisfy { !$0.message.contains("not reconciled") }, "\(plan.failures.map(\.message))")
        #expect(plan.remediations.map(\.binding.target).sorted() == ["edge-a", "edge-b"])
        for remediation in plan.remediations {
            let name = remediation.binding.target == "edge-a" ? "bw-missing-a" : "bw-missing-b"
            #expect(remediation.decision == .blocked, "\(remediation)")
            #expect(remediation.reason?.contains("Cannot open network namespace \"\(name)\": No such file or directory") == true,
                    "\(remediation.reason ?? "")")
        }
    }

    /// Two nftables targets, edge-a's spec on line 4 and edge-b's on line 9, and a blocklist bound to both.
    func loadTwo(_ a: String, _ b: String, labelsA: String = "{}", labelsB: String = "{}") throws -> DesiredState {
        let inventory = """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-a, labels: \(labelsA)}
            spec: {adapter: nftables, root: /srv/a, \(a)management: [192.0.2.64/26]}
            ---
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-b, labels: \(labelsB)}
            spec: {adapter: nftables, root: /srv/b, \(b)management: [203.0.113.0/24]}
            ---
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: firewall}
            spec: {kinds: [FirewallBlocklist]}
            """
        let blocklist = "apiVersion: bulwark/v1\nkind: FirewallBlocklist\nmetadata: {name: b-block}\nspec: {addresses: [192.0.2.64/26]}\n"
        return try DesiredStateLoader(registry: Registry([FirewallAdapter.definition()])).load([
            SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
            SourceFile(path: "desired-state/b.yaml", contents: Array(blocklist.utf8)),
        ], revision: "test")
    }

    /// A target that reaches the nftables drivers without the settings this adapter typed (made
    /// by anything but the adapter's own reader) is never taken to mean "no namespace", which is
    /// the network of the machine Bulwark runs on: observing it fails, and its guards block. The
    /// same target as the adapter read it is judged by the guard (which reads its namespace).
    @Test func aTargetWithoutTheAdaptersSettingsIsNeverTakenForTheMachineBulwarkRunsOn() async throws {
        let state = try load("root: /srv/fw, netns: lab-1, management: [10.0.0.0/24]")
        let target = try #require(state.targets["edge-1"])
        let resource = try #require(state.resources.values.first(where: { $0.id.kind == "AllowedIngress" }))
        let change = PropertyDrift(property: "ingress", desired: "tcp=22 udp= from=any", observed: nil)
        // Typed, the guard goes on to read the namespace sshd listens in; lab-1 does not exist
        // here, so that read fails and blocks, naming what it could not read.
        let typed = await IngressDriver().assess([change], to: resource, on: target)
        #expect(typed.blockReason?.hasPrefix("cannot read which ports sshd listens on in edge-1") == true, "\(typed)")
        // A namespace that is not there is no shortage of the machine's: a block, not `.unjudged`.
        #expect(!typed.isUnjudged, "\(typed)")

        var untyped = target
        untyped.typed = nil
        #expect(untyped.settings["netns"] == "lab-1")
        let verdict = await IngressDriver().assess([change], to: resource, on: untyped)
        #expect(verdict.blockReason?.hasPrefix("cannot tell which port people log in to edge-1 on") == true, "\(verdict)")
        #expect(throws: MissingTypedSpec.self) { try FirewallAdapter.nft(untyped) }
        #expect(throws: MissingTypedSpec.self) { try Lifelines.read(untyped) }
        let blocklist = PropertyDrift(property: "addresses", desired: "203.0.113.7", observed: nil)
        let blocked = await BlocklistDriver().assess([blocklist], to: resource, on: untyped)
        #expect(blocked.blockReason?.hasPrefix("cannot read what must stay reachable on edge-1") == true, "\(blocked)")
        #expect(!blocked.isUnjudged, "\(blocked)")
    }
}
