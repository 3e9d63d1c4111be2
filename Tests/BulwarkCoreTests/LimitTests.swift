import BulwarkCore
import Foundation
import Testing

@Suite struct LimitTests {
    /// Monday 2026-11-23 10:00 UTC.
    let monday = Date(timeIntervalSince1970: 1_795_428_000)

    func state(controller: String, extra: String = "") throws -> DesiredState {
        let targets = (1...4).map { "---\napiVersion: bulwark/v1\nkind: Target\nmetadata: {name: t\($0)}\nspec: {adapter: memory}\n" }.joined()
        return try DesiredStateLoader(registry: memoryRegistry(MemoryDriver()), now: monday).load([
            file("controllers/c.yaml", targets + "---\napiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: c}\nspec:\n  kinds: [Setting]\n" + controller + extra),
            file("desired-state/r.yaml", "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: a}\nspec: {x: \"1\", }\n---\napiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: b}\nspec: {y: \"1\"}\n"),
        ], revision: "r")
    }

    func plan(_ state: DesiredState, at now: Date) -> Plan {
        var observations: [Binding: Observation] = [:]
        for binding in state.bindings { observations[binding] = Observation(values: ["x": String?.none, "y": String?.none]) }
        return Planner.plan(state, observations: observations, now: now)
    }

    @Test func changeWindowsDeferWithTheNextOpening() throws {
        let s = try state(controller: "  windows: [{days: [tue, wed], start: \"02:00\", end: \"04:00\", timeZone: Europe/Berlin}]\n")
        let outside = plan(s, at: monday)
        #expect(outside.remediations.allSatisfy { $0.decision == .deferred })
        // Tuesday 02:00 in Berlin is Tuesday 01:00 UTC.
        #expect(outside.remediations.first?.nextWindow == Date(timeIntervalSince1970: 1_795_482_000))
        #expect(outside.remediations.first?.reason?.contains("the next opens at 2026-11-24T01:00:00.000Z") == true)
        let inside = plan(s, at: Date(timeIntervalSince1970: 1_795_482_000 + 1800))
        #expect(inside.remediations.allSatisfy { $0.decision == .applied })
    }

    @Test func windowsPastMidnight() {
        let window = ChangeWindow(days: [2], start: 23 * 60, end: 60, timeZone: .gmt)  // Monday 23:00 to Tuesday 01:00
        #expect(window.contains(Date(timeIntervalSince1970: 1_795_428_000 + 13 * 3600 + 1800)))   // Mon 23:30
        #expect(window.contains(Date(timeIntervalSince1970: 1_795_428_000 + 14 * 3600 + 1800)))   // Tue 00:30
        #expect(!window.contains(Date(timeIntervalSince1970: 1_795_428_000 + 15 * 3600 + 1800)))  // Tue 01:30
    }

    @Test func aShareOfTargetsAndAGlobalLimit() throws {
        let shared = plan(try state(controller: "  maxTargetShare: 50%\n"), at: monday)
        let applied = shared.remediations.filter { $0.decision == .applied }
        #expect(Set(applied.map(\.binding.target)).count == 2, "both resources on two of four targets")
        #expect(applied.count == 4)
        #expect(shared.remediations.first { $0.decision == .deferred }?.reason?.contains("maxTargetShare 50%") == true)

        let global = plan(try state(controller: "", extra: "---\napiVersion: bulwark/v1\nkind: GlobalLimits\nmetadata: {name: g}\nspec: {maxChangesPerCycle: 3}\n"), at: monday)
        #expect(global.remediations.filter { $0.decision == .applied }.count == 3)
        #expect(global.remediations.filter { $0.decision == .deferred }.allSatisfy { $0.reason == "global maxChangesPerCycle 3 reached" })
        #expect(try state(controller: "").maxChangesPerCycle == DesiredStateLoader.defaultGlobalLimit)
    }

    @Test func badLimitsAndWindowsAreRefused() {
        for bad in ["  maxTargetShare: 150%\n", "  windows: [{days: [funday], start: \"02:00\", end: \"03:00\"}]\n",
                    "  windows: [{start: \"25:00\", end: \"03:00\"}]\n", "  windows: [{start: \"01:00\", end: \"03:00\", timeZone: Mars/Olympus}]\n"] {
            #expect(throws: ValidationFailure.self, "\(bad)") { _ = try state(controller: bad) }
        }
    }
}
