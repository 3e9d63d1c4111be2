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
        let blocked = try #require(plan.remediations.first { $0.decision == .blocked })
        state = try load([try approvalFile(blocked, reason: "console access exists")], driver: driver)
        let approved = try await reconciler.plan(state)
        let entry = try #require(approved.remediations.first { $0.binding.resource.name == "access" })
        #expect(entry.decision == .applied)
        #expect(entry.approver == "Sam Admin <sam@example.org>")
        _ = await reconciler.apply(approved, state: state, audit: RecordingSink())
        #expect(driver.get("web-1", "login") == "nobody")
    }

    /// An approval lets through the block a person saw, and no other block of the same drift.
    /// Approved past "could not judge", a pass whose guard now finds a lockout blocks the
    /// drift under an id of its own, new to the audit branch so that it is recorded, and the
    /// approval of that block lets it through. An approval that names no block (written by
    /// hand, or before approvals named their block) lets no block through.
    @Test func anApprovalOfOneBlockIsNoApprovalOfAnother() async throws {
        let driver = MemoryDriver()
        driver.set("web-1", "login", "admin")
        driver.state.withLock { $0.guarded["login=nobody"] = "the login guard could not judge this change (timed out)" }
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let first = try #require(try await reconciler.plan(try load(driver: driver)).remediations.first { $0.decision == .blocked })
        let approval = try approvalFile(first, reason: "it only timed out")
        #expect(String(decoding: approval.contents ?? [], as: UTF8.self)
            .contains("block: \"the login guard could not judge this change (timed out)\""))

        // The guard now finds a lockout: the approval of "could not judge" does not let it through.
        driver.state.withLock { $0.guarded["login=nobody"] = "no account could log in" }
        var state = try load([approval], driver: driver)
        let plan = try await reconciler.plan(state)
        let blocked = try #require(plan.remediations.first { $0.binding.resource.name == "access" })
        #expect(blocked.decision == .blocked && blocked.approver == nil)
        let firstID = try #require(first.id)
        #expect(blocked.id != firstID)
        #expect(blocked.id == Planner.blockedID(blocked.binding, blocked.changes, reason: "no account could log in"))
        #expect(blocked.reason == "no account could log in; approvals/\(firstID).yaml does not approve this block; "
                + "to apply it anyway: bulwark approve \(blocked.id ?? "")")
        let sink = RecordingSink()
        let outcome = await reconciler.apply(plan, state: state, audit: sink)
        let record = try #require(outcome.entries.first { $0.record.resource == "Setting/access" })
        #expect(record.record.decision == .blocked && !record.alreadyRecorded, "the new block is recorded")
        #expect(driver.get("web-1", "login") == "admin")

        // Approved as the new record showed it, the next pass makes the change.
        state = try load([approval, try approvalFile(blocked, reason: "console access exists")], driver: driver)
        #expect(Planner.approvedBlock(fromRecorded: blocked.reason ?? "", id: blocked.id ?? "") == "no account could log in")
        let approved = try await reconciler.plan(state)
        let entry = try #require(approved.remediations.first { $0.binding.resource.name == "access" })
        #expect(entry.decision == .applied && entry.approvalID == blocked.id, "\(entry.reason ?? "")")
        _ = await reconciler.apply(approved, state: state, audit: sink)
        #expect(driver.get("web-1", "login") == "nobody")

        // Approved under the block's own id, it holds when the drift's approval is gone.
        driver.set("web-1", "login", "admin")
        let alone = try await reconciler.plan(try load([try approvalFile(blocked, reason: "console access exists")], driver: driver))
        #expect(alone.remediations.first { $0.binding.resource.name == "access" }?.decision == .applied)
        #expect(Planner.approvedBlock(fromRecorded: "x; approvals/not-an-id-but-26-characters.yaml does not approve this block; "
                                      + "to apply it anyway: bulwark approve ABC", id: "ABC")
                == "x; approvals/not-an-id-but-26-characters.yaml does not approve this block")

        // An approval that names no block lets none through.
        driver.set("web-1", "login", "admin")
        let bare = file("approvals/\(firstID).yaml", """
            apiVersion: bulwark/v1
            kind: Approval
            metadata: {name: bare}
            spec: {id: \(firstID), approver: "Sam Admin <sam@example.org>", reason: "by hand"}
            """)
        let unnamed = try #require(try await reconciler.plan(try load([bare], driver: driver)).remediations
            .first { $0.binding.resource.name == "access" })
        #expect(unnamed.decision == .blocked && unnamed.reason?.contains("approvals/\(firstID).yaml does not approve this block") == true)
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
