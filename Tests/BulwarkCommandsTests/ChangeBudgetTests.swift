@testable import BulwarkCommands
@testable import BulwarkRuntime
@testable import BulwarkCore
import Foundation
import Testing

/// The daemon's limits over a controller's interval, across cycles (pure: no I/O).
@Suite struct ChangeBudgetTests {
    /// Four host targets under one controller with the given limits, one Sysctl resource.
    func state(_ limits: String) throws -> DesiredState {
        let targets = (1...4).map { index in
            """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: h\(index), labels: {role: baseline}}
            spec: {adapter: host, root: /nonexistent/h\(index)}
            """
        }.joined(separator: "\n---\n")
        let files = [
            SourceFile(path: "controllers/targets.yaml", contents: Array(targets.utf8)),
            SourceFile(path: "controllers/host.yaml", contents: Array("""
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: host}
                spec: {kinds: [Sysctl], targets: {selector: {role: baseline}}, interval: 1h, \(limits)}
                """.utf8)),
            SourceFile(path: "desired-state/hosts/sysctl.yaml", contents: Array("""
                apiVersion: bulwark/v1
                kind: Sysctl
                metadata: {name: ip-forward}
                spec: {net.ipv4.ip_forward: 0}
                """.utf8)),
        ]
        return try DesiredStateLoader(registry: Bulwark.registry()).load(files, revision: "r1")
    }

    func drift(_ state: DesiredState, now: Date) -> [PlannedRemediation] {
        state.bindings.map { binding in
            PlannedRemediation(binding: binding, severity: .medium, risk: 1, mode: .enforce,
                               changes: [PropertyDrift(property: "net.ipv4.ip_forward", desired: "0", observed: "1")],
                               decision: .applied, reason: nil, detectedAt: now)
        }
    }

    @Test func fixesOfEarlierCyclesWithinTheIntervalCountAgainstMaxChangesPerCycle() throws {
        let state = try state("maxChangesPerCycle: 3")
        let now = ContinuousClock.now, wall = Date()
        var budget = ChangeBudget()
        budget.record(controller: "host", target: "h1", at: now - .seconds(600))
        budget.record(controller: "host", target: "h2", at: now - .seconds(300))
        var plan = drift(state, now: wall)
        budget.limit(&plan, state: state, now: now)
        #expect(plan.map(\.decision) == [.applied, .deferred, .deferred, .deferred])
        #expect(plan[1].reason == "maxChangesPerCycle 3 of controller host reached within its interval of 1.0 h")
        // A fix older than the interval no longer counts: two may go now.
        var later = drift(state, now: wall)
        budget.limit(&later, state: state, now: now + .seconds(3600 - 450))
        #expect(later.map(\.decision) == [.applied, .applied, .deferred, .deferred])
    }

    @Test func targetsChangedInEarlierCyclesCountAgainstMaxTargetShare() throws {
        let state = try state("maxTargetShare: \"50%\"")
        let now = ContinuousClock.now, wall = Date()
        var budget = ChangeBudget()
        budget.record(controller: "host", target: "h3", at: now - .seconds(60))
        var plan = drift(state, now: wall)
        budget.limit(&plan, state: state, now: now)
        // Two of four targets: h3 (changed before, may change again) and one more.
        let applied = plan.filter { $0.decision == .applied }.map(\.binding.target)
        #expect(applied == ["h1", "h3"], "\(plan.map { ($0.binding.target, $0.decision) })")
        #expect(plan.first { $0.binding.target == "h2" }?.reason?.contains("maxTargetShare 50% of controller host reached within its interval") == true)
        // Without earlier changes, two targets in this cycle.
        var fresh = drift(state, now: wall)
        ChangeBudget().limit(&fresh, state: state, now: now)
        #expect(fresh.filter { $0.decision == .applied }.count == 2)
    }
}
