import BulwarkCore
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing

/// The safety guards at the core's seam: a driver's `assess` turns a harmful change into a
/// `blocked` decision in every mode, recorded once, unless the blocked id is approved.
@Suite struct GuardTests {
    let resources = """
        apiVersion: bulwark/v1
        kind: Setting
        metadata: {name: access, annotations: {severity: critical}}
        targets: {names: [web-1]}
        spec: {login: "nobody"}
        ---
        apiVersion: bulwark/v1
        kind: Setting
        metadata: {name: banner}
        targets: {names: [web-1]}
        spec: {banner: "authorized use only"}
        """

    func load(_ extra: [SourceFile] = [], driver: MemoryDriver, mode: String = "enforce") throws -> DesiredState {
        let controllers = String(decoding: inventory.contents ?? [], as: UTF8.self)
            .replacingOccurrences(of: "  mode: enforce\n", with: "  mode: \(mode)\n")
        return try DesiredStateLoader(registry: memoryRegistry(driver))
            .load([file("controllers/inventory.yaml", controllers), file("desired-state/r.yaml", resources)] + extra, revision: "rev1")
    }

    @Test(arguments: ["enforce", "approve", "audit"])
    func harmfulChangeIsBlockedInEveryModeAndRecordedOnce(mode: String) async throws {
        let driver = MemoryDriver()
        driver.set("web-1", "login", "admin")
        driver.state.withLock { $0.guarded["login=nobody"] = "no account could log in" }
        let state = try load(driver: driver, mode: mode)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let plan = try await reconciler.plan(state)
        let blocked = try #require(plan.remediations.first { $0.binding.resource.name == "access" })
        #expect(blocked.decision == .blocked)
        #expect(blocked.reason?.hasPrefix("no account could log in; to apply it anyway: bulwark approve ") == true)
        #expect(blocked.id == Planner.blockedID(blocked.binding, blocked.changes))
        // The legitimate change beside it is untouched by the guard.
        let banner = try #require(plan.remediations.first { $0.binding.resource.name == "banner" })
        #expect(banner.decision != .blocked)

        let sink = RecordingSink()
        let first = await reconciler.apply(plan, state: state, audit: sink)
        #expect(driver.get("web-1", "login") == "admin", "a blocked change is never applied")
        let record = try #require(first.entries.first { $0.record.resource == "Setting/access" }?.record)
        #expect(record.decision == .blocked)
        #expect(record.commitMessage.contains("Bulwark-Decision: blocked"))
        #expect(record.commitMessage.hasPrefix("block(Setting/access): web-1 login admin -> nobody"))
        // Recorded once: the next pass finds the same drift blocked and writes nothing new.
        let second = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
        #expect(second.entries.first { $0.record.resource == "Setting/access" }?.alreadyRecorded == true)
        #expect(driver.get("web-1", "login") == "admin")
    }

    @Test func legitimateChangeGoesThroughAndApprovalPassesABlock() async throws {
        let driver = MemoryDriver()
        driver.set("web-1", "login", "admin")
        driver.state.withLock { $0.guarded["login=root"] = "only root could log in" }
        // The guard blocks `root`, not `nobody`: the policy's change is legitimate here.
        var state = try load(driver: driver)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        _ = await reconciler.apply(try await reconciler.plan(state), state: state, audit: RecordingSink())
        #expect(driver.get("web-1", "login") == "nobody")

        // Now the guard blocks it; a person approves the blocked id and the next pass applies it.
        driver.set("web-1", "login", "admin")
        driver.state.withLock { $0.guarded["login=nobody"] = "no account could log in" }
        let plan = try await reconciler.plan(state)
        let id = try #require(plan.remediations.first { $0.decision == .blocked }?.id)
        state = try load([file("approvals/\(id).yaml", """
            apiVersion: bulwark/v1
            kind: Approval
            metadata: {name: approve-block}
            spec: {id: \(id), approver: "Sam Admin <sam@example.org>", reason: "console access exists"}
            """)], driver: driver)
        let approved = try await reconciler.plan(state)
        let entry = try #require(approved.remediations.first { $0.binding.resource.name == "access" })
        #expect(entry.decision == .applied)
        #expect(entry.approver == "Sam Admin <sam@example.org>")
        _ = await reconciler.apply(approved, state: state, audit: RecordingSink())
        #expect(driver.get("web-1", "login") == "nobody")
    }

    @Test func guardsAreNotAskedAboutWaivedOrInSyncResources() async throws {
        let driver = MemoryDriver()
        driver.set("web-1", "login", "nobody")
        driver.set("web-1", "banner", "authorized use only")
        let state = try load(driver: driver)
        let plan = try await Reconciler(registry: memoryRegistry(driver)).plan(state)
        #expect(plan.remediations.isEmpty)
        #expect(driver.state.withLock { $0.assessed } == 0)
    }
}
