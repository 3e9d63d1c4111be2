import BulwarkCore
import Foundation
import Testing

/// The daemon's queue follows finding priority: drift a finding names is planned first (P1
/// first), so a limit defers the drift no scanner is waiting on; without findings, risk decides.
@Suite struct FindingQueueTests {
    let monday = Date(timeIntervalSince1970: 1_795_428_000)

    /// Two settings on one target, `a` of high severity and `b` of low, under a limit of one change a cycle.
    func state() throws -> DesiredState {
        try DesiredStateLoader(registry: memoryRegistry(MemoryDriver()), now: monday).load([
            file("controllers/c.yaml", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: t1}\nspec: {adapter: memory}\n---\n"
                 + "apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: c}\nspec:\n  kinds: [Setting]\n  maxChangesPerCycle: 1\n"),
            file("desired-state/r.yaml", "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: a, annotations: {severity: high}}\nspec: {x: \"1\"}\n---\n"
                 + "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: b, annotations: {severity: low}}\nspec: {y: \"1\"}\n"),
        ], revision: "r")
    }

    func plan(_ state: DesiredState, urgent: [Binding: Priority]) -> Plan {
        var observations: [Binding: Observation] = [:]
        for binding in state.bindings { observations[binding] = Observation(values: ["x": String?.none, "y": String?.none]) }
        return Planner.plan(state, observations: observations, urgent: urgent, now: monday)
    }

    func applied(_ plan: Plan) -> [String] {
        plan.remediations.filter { $0.decision == .applied }.map(\.binding.resource.name)
    }

    @Test func withoutFindingsTheRiskierDriftGoesFirst() throws {
        let s = try state()
        #expect(applied(plan(s, urgent: [:])) == ["a"])
        let deferred = plan(s, urgent: [:]).remediations.first { $0.decision == .deferred }
        #expect(deferred?.binding.resource.name == "b" && deferred?.reason?.contains("maxChangesPerCycle 1") == true)
    }

    @Test func driftAFindingNamesGoesFirstAndTheHigherPriorityFirstOfAll() throws {
        let s = try state()
        let a = try #require(s.bindings.first { $0.resource.name == "a" }), b = try #require(s.bindings.first { $0.resource.name == "b" })
        // A scanner waits on the low-severity setting: it is fixed in this cycle, the other deferred.
        #expect(applied(plan(s, urgent: [b: .p3])) == ["b"])
        #expect(plan(s, urgent: [b: .p3]).remediations.map(\.binding.resource.name) == ["b", "a"])
        // Both named: the higher priority first.
        #expect(applied(plan(s, urgent: [a: .p2, b: .p1])) == ["b"])
        #expect(applied(plan(s, urgent: [a: .p1, b: .p2])) == ["a"])
    }
}
