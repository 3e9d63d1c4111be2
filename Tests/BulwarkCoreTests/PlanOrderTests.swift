@testable import BulwarkCore
import Foundation
import Testing

/// The plan's order, laid out from a table of keys (`Planner.inPlanOrder`), is the order of the
/// rule written out: a finding's priority, then risk, severity, binding, and decision, ties kept
/// in the order they came.
@Suite struct PlanOrderTests {
    /// The rule as a comparison of two entries, as the planner sorted before.
    static func before(_ a: PlannedRemediation, _ b: PlannedRemediation, urgent: [Binding: Priority]) -> Bool {
        switch (urgent[a.binding], urgent[b.binding]) {
        case let (pa?, pb?) where pa != pb: return pa < pb
        case (.some, nil): return true
        case (nil, .some): return false
        default: break
        }
        if a.risk != b.risk { return a.risk > b.risk }
        if a.severity != b.severity { return a.severity > b.severity }
        if a.binding != b.binding { return a.binding < b.binding }
        return a.decision.rawValue < b.decision.rawValue
    }

    /// Entries with many ties: few targets, names, risks and severities, two controllers.
    static func entries(count: Int, seed: UInt64) -> [PlannedRemediation] {
        var state = seed
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        let decisions: [Decision] = [.applied, .held, .blocked, .deferred, .reported]
        return (0..<count).map { index in
            PlannedRemediation(
                binding: Binding(controller: "c\(next(2))", target: "t\(next(5))", resource: ResourceID(kind: "K\(next(2))", name: "n\(next(10))")),
                severity: Severity.allCases[next(4)], risk: next(3), mode: .enforce,
                changes: [PropertyDrift(property: "p", desired: "\(index)", observed: nil)],
                decision: decisions[next(decisions.count)], reason: nil, detectedAt: Date(timeIntervalSince1970: 0))
        }
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func theTableOrderIsTheRulesOrder(seed: UInt64) {
        let items = Self.entries(count: 600, seed: seed)
        #expect(Planner.inPlanOrder(items, urgent: [:]) == items.sorted { Self.before($0, $1, urgent: [:]) })
        // Some bindings named by findings, of different priorities.
        var urgent: [Binding: Priority] = [:]
        for (offset, item) in items.enumerated() where offset % 7 == 0 {
            urgent[item.binding] = Priority.allCases[offset % Priority.allCases.count]
        }
        let ordered = Planner.inPlanOrder(items, urgent: urgent)
        #expect(ordered == items.sorted { Self.before($0, $1, urgent: urgent) })
        #expect(ordered.first.map { urgent[$0.binding] != nil } == true)
    }
}
