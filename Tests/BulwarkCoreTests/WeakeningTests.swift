import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// Weakening needs a second person: a desired value moved in the less secure direction since the
/// last applied revision is held until someone other than its author approves it.
@Suite struct WeakeningTests {
    func state(_ value: String, name: String = "root-login", controller extra: String = "", approvals: [SourceFile] = [],
               driver: MemoryDriver) throws -> DesiredState {
        let controllers = String(decoding: inventory.contents ?? [], as: UTF8.self) + extra
        return try DesiredStateLoader(registry: memoryRegistry(driver)).load([
            file("controllers/inventory.yaml", controllers),
            file("desired-state/r.yaml", """
                apiVersion: bulwark/v1
                kind: Setting
                metadata: {name: \(name)}
                targets: {names: [web-1]}
                spec: {permitRootLogin: "\(value)", banner: "hello"}
                """),
        ] + approvals, revision: Revision("rev-\(value)"))
    }

    func approval(_ id: String, by approver: String) -> SourceFile {
        file("approvals/\(id).yaml", """
            apiVersion: bulwark/v1
            kind: Approval
            metadata: {name: a}
            spec: {id: \(id), approver: "\(approver)", reason: "break-glass week"}
            """)
    }

    @Test func aWeakeningIsHeldAndOnlyASecondPersonCanApproveIt() async throws {
        let driver = MemoryDriver()
        driver.set("web-1", "permitRootLogin", "no")
        driver.set("web-1", "banner", "hello")
        let registry = memoryRegistry(driver)
        let previous = try state("no", driver: driver)
        var current = try state("yes", driver: driver)
        var weakened = Weakening.compare(previous: previous, current: current, registry: registry)
        let rid = ResourceID(kind: "Setting", name: "root-login")
        #expect(weakened[rid]?.changes == ["permitRootLogin: no → yes (turns it on)"])
        weakened[rid]?.authors = ["Alice <alice@example.org>"]
        let reconciler = Reconciler(registry: registry)

        func plan(_ state: DesiredState) async throws -> PlannedRemediation {
            let observed = await reconciler.observe(state)
            return try #require(Planner.plan(state, observations: observed.observations, weakened: weakened).remediations.first)
        }
        let held = try await plan(current)
        #expect(held.decision == .held)
        #expect(held.reason?.hasPrefix("weakens the policy by Alice <alice@example.org>: permitRootLogin: no → yes (turns it on); needs approval by someone else: bulwark approve ") == true)
        let id = try #require(held.id)

        // The author approving their own weakening changes nothing.
        current = try state("yes", approvals: [approval(id, by: "A. Lice <ALICE@example.org>")], driver: driver)
        #expect(try await plan(current).decision == .held)
        // A second person's approval lets it through.
        current = try state("yes", approvals: [approval(id, by: "Bob <bob@example.org>")], driver: driver)
        let approved = try await plan(current)
        #expect(approved.decision == .applied)
        #expect(approved.approver == "Bob <bob@example.org>")
    }

    /// A property is compared with what the previous revision gave it under any name: renaming
    /// the resource in the commit that weakens it is still a weakening; renaming it alone, or
    /// renaming it while tightening, is not.
    @Test func aRenamedResourceIsComparedWithTheValueItsPropertyHadBefore() throws {
        let driver = MemoryDriver()
        let registry = memoryRegistry(driver)
        let previous = try state("no", driver: driver)
        let renamed = Weakening.compare(previous: previous, current: try state("yes", name: "root-login-v2", driver: driver),
                                        registry: registry)
        #expect(renamed[ResourceID(kind: "Setting", name: "root-login-v2")]?.changes == ["permitRootLogin: no → yes (turns it on)"])
        #expect(Weakening.compare(previous: previous, current: try state("no", name: "root-login-v2", driver: driver),
                                  registry: registry).isEmpty)
        #expect(Weakening.compare(previous: try state("yes", driver: driver), current: try state("no", name: "root-login-v2", driver: driver),
                                  registry: registry).isEmpty)
    }

    /// A claim the baseline no longer makes is remembered from the revision that last made it
    /// (`Claim.retiring`), and a resource setting it again is compared with that; once set
    /// again, the current revision's value is the one compared with from then on.
    @Test func aRetiredClaimIsComparedWithWhenItIsSetAgain() throws {
        let driver = MemoryDriver()
        let registry = memoryRegistry(driver)
        let strict = try state("no", driver: driver)
        let empty = try DesiredStateLoader(registry: registry).load([inventory], revision: Revision("rev-empty"))
        let retired = Weakening.Claim.retiring(previous: strict, current: empty, retired: [:])
        let claim = Weakening.Claim(kind: "Setting", subject: "", property: "permitRootLogin")
        #expect(retired[claim] == ["no"])
        #expect(Weakening.compare(previous: empty, current: try state("yes", driver: driver), registry: registry).isEmpty,
                "compared with the baseline alone there is nothing to compare with")
        let again = Weakening.compare(previous: empty, current: try state("yes", name: "other", driver: driver), registry: registry,
                                      retired: retired)
        #expect(again[ResourceID(kind: "Setting", name: "other")]?.changes == ["permitRootLogin: no → yes (turns it on)"])
        #expect(Weakening.compare(previous: empty, current: try state("no", driver: driver), registry: registry, retired: retired).isEmpty)
        // Applied again, the claim is live: the memory lets go of it.
        #expect(Weakening.Claim.retiring(previous: empty, current: try state("yes", driver: driver), retired: retired)[claim] == nil)
    }

    @Test func verifiedSignersAreComparedWholeAndAnUnknownAuthorLetsNoApprovalThrough() async throws {
        // Principals on both sides: `mallory` is `mallory`, whatever git's author field said.
        let signed = Weakening(changes: ["x"], authors: ["mallory"], identity: .verifiedSigner)
        #expect(!signed.isSecondPerson("mallory") && !signed.isSecondPerson("Mallory"))
        #expect(signed.isSecondPerson("sam"))
        // Git's author fields compare on the e-mail address.
        #expect(!Weakening(changes: ["x"], authors: ["Mallory <mallory@example.org>"]).isSecondPerson("M <MALLORY@example.org>"))

        // A change whose author is unknown: no approval is a second person's, and the plan says why.
        let driver = MemoryDriver()
        driver.set("web-1", "permitRootLogin", "no")
        driver.set("web-1", "banner", "hello")
        let registry = memoryRegistry(driver)
        let rid = ResourceID(kind: "Setting", name: "root-login")
        var weakened = Weakening.compare(previous: try state("no", driver: driver), current: try state("yes", driver: driver), registry: registry)
        weakened[rid]?.identity = .verifiedSigner
        weakened[rid]?.authors = ["alice"]
        weakened[rid]?.unknownAuthors = ["commit 0123456789ab: the commit is not signed"]
        #expect(weakened[rid]?.isSecondPerson("bob") == false)
        let held = try #require(Planner.plan(try state("yes", driver: driver), observations: await Reconciler(registry: registry)
            .observe(try state("yes", driver: driver)).observations, weakened: weakened).remediations.first)
        let id = try #require(held.id)
        let approved = try state("yes", approvals: [approval(id, by: "bob")], driver: driver)
        let plan = Planner.plan(approved, observations: await Reconciler(registry: registry).observe(approved).observations, weakened: weakened)
        #expect(plan.remediations.first?.decision == .held)
        #expect(plan.remediations.first?.reason?.contains("by alice: permitRootLogin: no → yes (turns it on); its author is not known "
                                                          + "(commit 0123456789ab: the commit is not signed)") == true)
    }

    /// Signers are people: a shared name or key is the same person whatever each was called; a
    /// key no name ties to a person cannot be told apart from anyone, on either side.
    @Test func verifiedSignersAreComparedAsPeople() {
        let aliceOpenPGP = SignerIdentity(shown: "A1B2", names: ["alice@example.org", "alice@corp.example"], keys: ["openpgp:A1B2"])
        let aliceSSH = SignerIdentity(shown: "alice@corp.example", names: ["alice@corp.example"], keys: ["ssh:AAAA"])
        let bob = SignerIdentity(shown: "bob@example.org", names: ["bob@example.org"], keys: ["ssh:BBBB"])
        let nameless = SignerIdentity(shown: "C3D4", names: [], keys: ["openpgp:C3D4"])
        let weakening = Weakening(changes: ["x"], authors: ["A1B2"], identity: .verifiedSigner, authorIdentities: [aliceOpenPGP])
        #expect(!weakening.isSecondPerson("alice@corp.example", identity: aliceSSH))
        #expect(weakening.refusal(of: "alice@corp.example", identity: aliceSSH)?.contains("both are 'alice@corp.example'") == true)
        #expect(weakening.isSecondPerson("bob@example.org", identity: bob))
        // Nameless: refused as an approver, and as an author no approver can be told from.
        #expect(weakening.refusal(of: "C3D4", identity: nameless)?.contains("'C3D4' is known only by its key") == true)
        let byNameless = Weakening(changes: ["x"], authors: ["C3D4"], identity: .verifiedSigner, authorIdentities: [nameless])
        #expect(!byNameless.isSecondPerson("bob@example.org", identity: bob))
        // The same key under two principals, and an approver whose identity is not known.
        let sameKey = SignerIdentity(shown: "ops", names: ["ops"], keys: ["ssh:BBBB"])
        #expect(Weakening(changes: ["x"], authors: ["ops"], identity: .verifiedSigner, authorIdentities: [sameKey])
            .refusal(of: "bob@example.org", identity: bob)?.contains("both hold the SSH key") == true)
        #expect(!weakening.isSecondPerson("bob@example.org"))
        // A principal pattern is each name it matches, and they are not one another.
        let robots = SignerIdentity(shown: "*@Example.org", names: ["*@example.org"], keys: ["ssh:RRRR"])
        #expect(robots.samePerson(as: bob)?.contains("both are '*@example.org'") == true)
        #expect(bob.samePerson(as: aliceSSH) == nil && aliceSSH.samePerson(as: robots) == nil)
    }

    @Test func aStricterChangeAndAnOptedOutKindApplyWithoutASecondPerson() async throws {
        let driver = MemoryDriver()
        driver.set("web-1", "permitRootLogin", "yes")
        let registry = memoryRegistry(driver)
        // yes → no is stricter: nothing to hold.
        #expect(Weakening.compare(previous: try state("yes", driver: driver), current: try state("no", driver: driver),
                                  registry: registry).isEmpty)
        // A controller that opts out with `weakening: allow` applies a weakening at once.
        let optedOut = "  weakening: {Setting: allow}\n"
        driver.set("web-1", "permitRootLogin", "no")
        let previous = try state("no", controller: optedOut, driver: driver)
        let current = try state("yes", controller: optedOut, driver: driver)
        let weakened = Weakening.compare(previous: previous, current: current, registry: registry)
        #expect(!weakened.isEmpty)
        let observed = await Reconciler(registry: registry).observe(current)
        let plan = Planner.plan(current, observations: observed.observations, weakened: weakened)
        #expect(plan.remediations.first?.decision == .applied)
        // A `weakening` entry for a kind the controller does not run is refused at validation.
        #expect(throws: ValidationFailure.self) { _ = try state("no", controller: "  weakening: {Sysctl: allow}\n", driver: driver) }
    }
}
