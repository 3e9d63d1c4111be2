import BulwarkCore
import BulwarkTestSupport
import Synchronization
import Testing

/// What the drift episodes take in from the audit branch, whose records can be anyone's where no
/// key checks them: an id is quoted in a resolution's reason and salts later ids.
@Suite struct DriftEpisodesTests {
    @Test func anIdNotOfBulwarksFormIsNotTakenIn() {
        var episodes = DriftEpisodes()
        for forged in ["4AQX8B12QZQP4YM7G6D4ZMP61G\u{1b}[2J", String(repeating: "A", count: 4000), "x\ry", "4aqx8b12qzqp4ym7g6d4zmp61g", "4AQX8B12QZQP4YM7G6D4ZMPOIL"] {
            episodes.add(id: forged, target: "web-1", resource: "SSHDConfig/root", decision: .held, result: nil, isRevert: false)
            episodes.add(id: forged, target: "web-2", resource: "SSHDConfig/root", decision: .resolved, result: nil, isRevert: false)
        }
        #expect(episodes.entries.isEmpty, "\(episodes.entries)")
    }

    @Test func bulwarksIdsAreTakenInAndEndTheirDrift() {
        var episodes = DriftEpisodes()
        let binding = Binding(controller: "c", target: "web-1", resource: ResourceID(kind: "SSHDConfig", name: "root"))
        let held = AuditID.stable("held")
        episodes.add(id: held, target: "web-1", resource: "SSHDConfig/root", decision: .held, result: nil, isRevert: false)
        #expect(episodes.open(binding) == [held])
        #expect(episodes.salted("X", for: binding) == "X")
        let resolution = DriftEpisodes.resolutionID(after: held)
        episodes.add(id: resolution, target: "web-1", resource: "SSHDConfig/root", decision: .resolved, result: nil, isRevert: false)
        #expect(episodes.open(binding).isEmpty)
        #expect(episodes.salted("X", for: binding) != "X")
    }

    /// What was pruned is gone: the drift of its resource ends, as with a fix; one whose removal
    /// failed keeps it open.
    @Test func aVerifiedPruningEndsTheDrift() {
        var episodes = DriftEpisodes()
        let binding = Binding(controller: "c", target: "web-1", resource: ResourceID(kind: "Setting", name: "gone"))
        episodes.add(id: AuditID.stable("held"), target: "web-1", resource: "Setting/gone", decision: .held, result: nil, isRevert: false)
        episodes.add(id: AuditID.stable("failed"), target: "web-1", resource: "Setting/gone", decision: .pruned, result: .failed, isRevert: false)
        #expect(episodes.open(binding) == [AuditID.stable("held"), AuditID.stable("failed")])
        episodes.add(id: AuditID.stable("pruned"), target: "web-1", resource: "Setting/gone", decision: .pruned, result: .verified, isRevert: false)
        #expect(episodes.open(binding).isEmpty)
    }
}

/// A resource found in sync ends its open drift (`Plan.resolved`), but only when every property
/// it desires was observed: one whose key or file is gone says nothing about the drift
/// (`Plan.partlyObserved`), so the drift stays open.
@Suite struct DriftResolutionPlanTests {
    func planned(unobserved: Set<String>) async throws -> Plan {
        let driver = MemoryDriver()
        driver.set("web-1", "a", "1")
        driver.set("web-1", "b", "1")
        driver.state.withLock { $0.unobserved = unobserved }
        var state = try DesiredStateLoader(registry: memoryRegistry(driver)).load([inventory, file("desired-state/r.yaml", """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: root}
            targets: {names: [web-1]}
            spec: {a: "1", b: "1"}
            """)], revision: "rev1")
        state.episodes.add(id: AuditID.stable("held"), target: "web-1", resource: "Setting/root", decision: .held, result: nil, isRevert: false)
        return try await Reconciler(registry: memoryRegistry(driver)).plan(state)
    }

    @Test func everyPropertyObservedInSyncEndsTheDrift() async throws {
        let plan = try await planned(unobserved: [])
        #expect(plan.resolved.map(\.binding.description) == ["web-1 Setting/root"], "\(plan.resolved)")
        #expect(plan.resolved.first?.id == DriftEpisodes.resolutionID(after: AuditID.stable("held")))
    }

    @Test func aPropertyNotObservedLeavesTheDriftOpen() async throws {
        let plan = try await planned(unobserved: ["b"])
        #expect(plan.inSync.map(\.description) == ["web-1 Setting/root"], "in sync as far as it was seen")
        #expect(plan.partlyObserved.map(\.description) == ["web-1 Setting/root"])
        #expect(plan.resolved.isEmpty, "\(plan.resolved)")
    }
}
