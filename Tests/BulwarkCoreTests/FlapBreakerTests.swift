import BulwarkCore
import Foundation
import Testing

@Suite struct FlapBreakerTests {
    let now = Date(timeIntervalSince1970: 1_795_428_000)

    func setup(_ breaker: String = "") throws -> (DesiredState, Binding, [Binding: Observation]) {
        let state = try DesiredStateLoader(registry: memoryRegistry(MemoryDriver()), now: now).load([
            file("controllers/c.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: web-1}
                spec: {adapter: memory}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: c}
                spec: {kinds: [Setting]\(breaker)}
                """),
            file("desired-state/r.yaml", "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: sshd}\nspec: {PermitRootLogin: \"no\"}\n"),
        ], revision: "r")
        let binding = try #require(state.bindings.first)
        return (state, binding, [binding: Observation(values: ["PermitRootLogin": "yes"])])
    }

    func history(_ binding: Binding, minutesAgo: [Double], desired: String = "no") -> FixHistory {
        let key = FixHistory.Key(target: binding.target, resource: binding.resource, property: "PermitRootLogin")
        return FixHistory(fixes: [key: minutesAgo.map { .init(at: now.addingTimeInterval(-$0 * 60), desired: desired) }])
    }

    @Test func escalatesAPropertyFixedAgainAndAgain() throws {
        let (state, binding, observed) = try setup()
        let two = Planner.plan(state, observations: observed, history: history(binding, minutesAgo: [5, 30]), now: now)
        #expect(two.remediations.first?.decision == .applied)
        let three = Planner.plan(state, observations: observed, history: history(binding, minutesAgo: [5, 30, 50]), now: now)
        let escalated = try #require(three.remediations.first)
        #expect(escalated.decision == .escalated)
        #expect(escalated.reason?.hasPrefix("flap breaker: PermitRootLogin was fixed 3 times") == true)
        // Fixes older than the period do not count.
        #expect(Planner.plan(state, observations: observed, history: history(binding, minutesAgo: [5, 30, 70]), now: now)
            .remediations.first?.decision == .applied)
        // A policy that now wants another value starts afresh.
        #expect(Planner.plan(state, observations: observed, history: history(binding, minutesAgo: [5, 30, 50], desired: "prohibit-password"), now: now)
            .remediations.first?.decision == .applied)
    }

    @Test func anAcknowledgementLetsTheFixThroughAndTheBreakerIsConfigurable() throws {
        let (state, binding, observed) = try setup()
        let escalated = try #require(Planner.plan(state, observations: observed, history: history(binding, minutesAgo: [1, 2, 3]), now: now).remediations.first)
        let id = try #require(escalated.id)
        var acknowledged = state
        acknowledged.approvals[id] = Approval(id: id, approver: "Bob", reason: "fighting config management, fixed", location: .init(file: "a", line: 1))
        let plan = Planner.plan(acknowledged, observations: observed, history: history(binding, minutesAgo: [1, 2, 3]), now: now)
        #expect(plan.remediations.first?.decision == .applied && plan.remediations.first?.approver == "Bob")

        let (strict, b, o) = try setup(", flapBreaker: {count: 1, period: 10m}")
        #expect(Planner.plan(strict, observations: o, history: history(b, minutesAgo: [5]), now: now).remediations.first?.decision == .escalated)
        #expect(Planner.plan(strict, observations: o, history: history(b, minutesAgo: [15]), now: now).remediations.first?.decision == .applied)
    }

    /// `forget` drops the fixes before the start from every list, keeps the rest in their order,
    /// and drops a list left empty.
    @Test func forgetDropsOldFixesInPlaceAndEmptyLists() {
        let base = Date(timeIntervalSince1970: 1_800_000_000)
        func record(_ name: String, _ seconds: Double, _ desired: String) -> AuditRecord {
            AuditRecord(id: "\(name)\(seconds)", controller: "c", target: "t", resource: "Sysctl/\(name)", kind: "Sysctl", name: name,
                        severity: .low, risk: 1, mode: .enforce, decision: .applied, result: .verified, reason: nil,
                        changes: [AuditRecord.Change(property: "p", desired: desired, observedBefore: "0", observedAfter: desired)],
                        detectedAt: base, appliedAt: nil, verifiedAt: base.addingTimeInterval(seconds), desiredCommit: "r1",
                        approver: nil, error: nil)
        }
        var history = FixHistory()
        for (name, seconds, desired) in [("a", 10.0, "1"), ("a", 50, "2"), ("a", 90, "3"), ("b", 20, "1"), ("c", 95, "1")] {
            history.add(record(name, seconds, desired))
        }
        history.forget(before: base.addingTimeInterval(40))
        let key = { (name: String) in FixHistory.Key(target: "t", resource: ResourceID(kind: "Sysctl", name: name), property: "p") }
        #expect(history.fixes[key("a")]?.map(\.desired) == ["2", "3"])
        #expect(history.fixes[key("b")] == nil)
        #expect(history.fixes[key("c")]?.count == 1)
        #expect(history.fixes.count == 2)
    }
}
