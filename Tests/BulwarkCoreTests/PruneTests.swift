import BulwarkCore
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing

/// What an adapter created for a resource that left the desired state is taken away and
/// recorded as `pruned`, but only where the controller allows weakening; elsewhere a person approves.
@Suite struct PruneTests {
    func load(_ controller: String, approvals: [SourceFile] = [], driver: MemoryDriver) throws -> DesiredState {
        let inventory = String(decoding: inventory.contents ?? [], as: UTF8.self) + controller
        return try DesiredStateLoader(registry: memoryRegistry(driver)).load([
            file("controllers/inventory.yaml", inventory),
            file("desired-state/r.yaml", """
                apiVersion: bulwark/v1
                kind: Setting
                metadata: {name: kept}
                targets: {names: [web-1]}
                spec: {a: "1"}
                """),
        ] + approvals, revision: "rev1")
    }

    /// web-1 with `a` at `value`, and what the driver created there: `kept`, and `old-blocklist`,
    /// which no resource wants any more; weakening allowed.
    func leftover(a value: String) throws -> (driver: MemoryDriver, gone: ResourceID, state: DesiredState, reconciler: Reconciler) {
        let driver = MemoryDriver()
        driver.set("web-1", "a", value)
        let gone = ResourceID(kind: "Setting", name: "old-blocklist")
        driver.state.withLock { $0.created["web-1"] = [gone, ResourceID(kind: "Setting", name: "kept")] }
        return (driver, gone, try load("  weakening: allow\n", driver: driver), Reconciler(registry: memoryRegistry(driver)))
    }

    @Test func aRemovedResourcesLeftoversArePrunedVerifiedAndRecorded() async throws {
        let (driver, gone, state, reconciler) = try leftover(a: "1")
        let plan = try await reconciler.plan(state)
        let prune = try #require(plan.remediations.first)
        #expect(plan.remediations.count == 1, "only what no current resource owns")
        #expect(prune.decision == .pruned)
        #expect(prune.binding.resource == gone)
        let sink = RecordingSink()
        let outcome = await reconciler.apply(plan, state: state, audit: sink)
        #expect(outcome.entries.first?.record.result == .verified)
        #expect(sink.records.first?.commitMessage.contains("Bulwark-Decision: pruned") == true)
        #expect(driver.state.withLock { $0.created["web-1"] } == [ResourceID(kind: "Setting", name: "kept")])
        #expect(try await reconciler.plan(state).remediations.isEmpty, "nothing left to prune")
    }

    /// A prune is never begun ahead of its step (its resource has left the desired state, so a
    /// restart could not tell it untried): it is begun as the step at hand, while the fix before
    /// it on the same target shares nothing with it.
    @Test func aPruneIsBegunOnlyAsTheStepAtHand() async throws {
        let (driver, _, state, reconciler) = try leftover(a: "0")
        var plan = try await reconciler.plan(state)
        // The fix first, then the prune (as a riskier fix would order them).
        plan.remediations.sort { $0.decision == .applied && $1.decision == .pruned }
        #expect(plan.remediations.map(\.decision) == [.applied, .pruned])
        let journal = IntentJournalTests.WatchingJournal(driver: driver, intentsAhead: 32)
        let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink(), journal: journal)
        #expect(outcome.halted == nil)
        #expect(await journal.begins.map(\.ids.count) == [1, 1], "the prune not begun with the fix before it")
        #expect(driver.state.withLock { $0.created["web-1"] } == [ResourceID(kind: "Setting", name: "kept")])
    }

    /// A pass narrowed to part of the revision (a watched file, a finding, the targets an agent
    /// or a lease holder owns) keeps everything the whole revision wants: the resource it left
    /// out is not a leftover, and a target outside it is not touched. A real leftover on a target
    /// the pass acts on is still pruned.
    @Test func aNarrowedPassPrunesNothingTheRevisionWantsAndStillPrunesARealLeftover() async throws {
        let driver = MemoryDriver()
        driver.set("web-1", "a", "1")
        let kept = ResourceID(kind: "Setting", name: "kept"), gone = ResourceID(kind: "Setting", name: "old-blocklist")
        driver.state.withLock { $0.created = ["web-1": [kept], "db-1": [gone]] }
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        var state = try load("  weakening: allow\n", driver: driver)
        #expect(state.bindings.map(\.target) == ["web-1"])

        // A pass about db-1 only (a finding, a watched file there): web-1's resource is still wanted.
        var elsewhere = state
        elsewhere.narrow { $0.target == "db-1" }
        #expect(elsewhere.bindings.isEmpty && elsewhere.revisionBindings == state.bindings)
        let plan = try await reconciler.plan(elsewhere)
        #expect(plan.remediations.isEmpty, "\(plan.remediations.map { "\($0.binding) \($0.decision)" })")
        _ = await reconciler.apply(plan, state: elsewhere, audit: RecordingSink())
        #expect(driver.state.withLock { $0.created } == ["web-1": [kept], "db-1": [gone]], "nothing taken away")

        // An owner of web-1 only (agent, lease holder): db-1's leftover is not its to prune.
        var owner = state
        owner.narrow(toTargets: ["web-1"]) { $0.target == "web-1" }
        #expect(try await reconciler.plan(owner).remediations.isEmpty)

        // The owner of db-1, which no resource binds any more: its real leftover is pruned.
        state.narrow(toTargets: ["db-1"]) { $0.target == "db-1" }
        let pruning = try await reconciler.plan(state)
        #expect(pruning.remediations.map(\.binding.resource) == [gone] && pruning.remediations.first?.decision == .pruned)
        let outcome = await reconciler.apply(pruning, state: state, audit: RecordingSink())
        #expect(outcome.entries.first?.record.result == .verified)
        #expect(driver.state.withLock { $0.created } == ["web-1": [kept], "db-1": []])
    }

    @Test func withoutWeakeningAllowedAPruneIsHeldUntilApproved() async throws {
        let driver = MemoryDriver()
        driver.set("web-1", "a", "1")
        let gone = ResourceID(kind: "Setting", name: "old-blocklist")
        driver.state.withLock { $0.created["web-1"] = [gone] }
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let held = try #require(try await reconciler.plan(try load("", driver: driver)).remediations.first)
        #expect(held.decision == .held)
        let id = try #require(held.id)
        _ = await reconciler.apply(try await reconciler.plan(try load("", driver: driver)), state: try load("", driver: driver), audit: RecordingSink())
        #expect(driver.state.withLock { $0.created["web-1"] } == [gone], "a held prune removes nothing")

        let approved = try load("", approvals: [file("approvals/\(id).yaml", """
            apiVersion: bulwark/v1
            kind: Approval
            metadata: {name: a}
            spec: {id: \(id), approver: "Sam <sam@example.org>", reason: "the incident is over"}
            """)], driver: driver)
        let plan = try await reconciler.plan(approved)
        #expect(plan.remediations.first?.decision == .pruned)
        _ = await reconciler.apply(plan, state: approved, audit: RecordingSink())
        #expect(driver.state.withLock { $0.created["web-1"] }?.isEmpty == true)
    }
}
