import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// Waivers, approvals, protected resources and per-resource modes, with an injected clock.
@Suite struct GateTests {
    let now = Date(timeIntervalSince1970: 1_795_000_000)  // 2026-11-18

    func load(_ extra: [SourceFile], mode: String = "enforce", driver: MemoryDriver) throws -> DesiredState {
        let controller = file("controllers/inventory.yaml", String(decoding: inventory.contents ?? [], as: UTF8.self)
            .replacingOccurrences(of: "mode: enforce", with: "mode: \(mode)"))
        return try DesiredStateLoader(registry: memoryRegistry(driver), now: now).load(
            [controller, file("desired-state/r.yaml", """
                apiVersion: bulwark/v1
                kind: Setting
                metadata: {name: net, annotations: {severity: high}}
                targets: {names: [web-1]}
                spec: {ip_forward: "0", rp_filter: "1"}
                """)] + extra, revision: "r")
    }

    func plan(_ state: DesiredState, _ driver: MemoryDriver, at time: Date? = nil) async throws -> Plan {
        let observed = await Reconciler(registry: memoryRegistry(driver)).observe(state)
        return Planner.plan(state, observations: observed.observations, now: time ?? now)
    }

    func waiver(expires: String, property: String = "ip_forward") -> SourceFile {
        file("waivers/router.yaml", """
            apiVersion: bulwark/v1
            kind: Waiver
            metadata: {name: router-needs-forwarding}
            spec:
              match: {kind: Setting, property: \(property), targets: [web-1]}
              reason: this host routes lab traffic
              owner: netops@example.org
              ticket: SEC-123
              expires: \(expires)
            """)
    }

    @Test func aWaiverLeavesItsPropertyAloneUntilItExpires() async throws {
        let driver = MemoryDriver()
        let state = try load([waiver(expires: "2027-01-31")], driver: driver)
        let plan = try await plan(state, driver)
        #expect(plan.remediations.map(\.decision) == [.applied, .waived])
        #expect(plan.remediations[0].changes.map(\.property) == ["rp_filter"])
        let waived = plan.remediations[1]
        #expect(waived.changes.map(\.property) == ["ip_forward"])
        #expect(waived.reason?.contains("router-needs-forwarding (owner netops@example.org, SEC-123, until 2027-01-31)") == true)
        // The day after it expires, the waiver no longer applies.
        let later = try await self.plan(state, driver, at: now.addingTimeInterval(90 * 86_400))
        #expect(later.remediations.map(\.decision) == [.applied])
        #expect(later.remediations[0].changes.count == 2)

        // Recorded once per waiver, not every cycle.
        let sink = RecordingSink()
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        _ = await reconciler.apply(plan, state: state, audit: sink)
        let second = await reconciler.apply(try await self.plan(state, driver), state: state, audit: sink)
        #expect(second.entries.map(\.alreadyRecorded) == [true])
        #expect(driver.get("web-1", "ip_forward") == nil, "the waived property was not touched")
        #expect(driver.get("web-1", "rp_filter") == "1")
    }

    @Test func waiversMustExpireWithinAYearAndWarnBeforeExpiry() throws {
        let driver = MemoryDriver()
        #expect {
            _ = try load([waiver(expires: "2028-06-01")], driver: driver)
        } throws: { error in
            "\(error)".contains("waivers/router.yaml:9:") && "\(error)".contains("at most a year")
        }
        let soon = try load([waiver(expires: "2026-11-25")], driver: driver)
        #expect(soon.warnings.contains { $0.message.contains("within 14 days") })
        let expired = try load([waiver(expires: "2026-11-01")], driver: driver)
        #expect(expired.warnings.contains { $0.message.contains("expired") })
    }

    @Test func approveModeHoldsUntilTheExactDriftIsApproved() async throws {
        let driver = MemoryDriver()
        let state = try load([], mode: "approve", driver: driver)
        let held = try #require(try await plan(state, driver).remediations.first)
        #expect(held.decision == .held)
        let id = try #require(held.id)
        #expect(id == Planner.heldID(held.binding, held.changes))
        #expect(held.reason == "waiting for approval: bulwark approve \(id)")

        let approval = file("approvals/\(id).yaml", """
            apiVersion: bulwark/v1
            kind: Approval
            metadata: {name: approval-1}
            spec: {id: \(id), approver: "Alice <alice@example.org>", reason: change ticket 42, expires: 2026-12-01}
            """)
        let approved = try load([approval], mode: "approve", driver: driver)
        let applied = try #require(try await plan(approved, driver).remediations.first)
        #expect(applied.decision == .applied && applied.approver == "Alice <alice@example.org>")
        let outcome = await Reconciler(registry: memoryRegistry(driver)).apply(
            try await plan(approved, driver), state: approved, audit: RecordingSink())
        #expect(outcome.entries.first?.record.commitMessage.contains("\nBulwark-Approved-By: Alice <alice@example.org>\n") == true)

        // A drift that is not exactly the approved one is held again, under a new id.
        driver.set("web-1", "ip_forward", "1")
        let changed = try #require(try await plan(approved, driver).remediations.first)
        #expect(changed.decision == .held && changed.id != id)
        // An approval past its expiry no longer applies.
        driver.set("web-1", "ip_forward", nil)
        driver.set("web-1", "rp_filter", nil)
        #expect(try await plan(approved, driver, at: now.addingTimeInterval(30 * 86_400)).remediations.first?.decision == .held)
    }

    @Test func protectedResourcesAndModeOverrides() async throws {
        let driver = MemoryDriver()
        let protected = file("desired-state/p.yaml", """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: break-glass, labels: {protected: "true"}}
            targets: {names: [db-1]}
            spec: {shell: /bin/bash}
            ---
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: report-only, annotations: {mode: audit}}
            targets: {names: [db-1]}
            spec: {banner: hi}
            """)
        let state = try load([protected], driver: driver)
        let plan = try await plan(state, driver)
        let byName = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0) })
        #expect(byName["break-glass"]?.decision == .held)
        #expect(byName["break-glass"]?.reason == "protected resource: never changed automatically")
        #expect(byName["report-only"]?.decision == .reported)
        #expect(byName["net"]?.decision == .applied)
        #expect(throws: ValidationFailure.self) {
            _ = try load([file("desired-state/x.yaml", "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: x, annotations: {mode: sometimes}}\nspec: {a: b}\n")], driver: driver)
        }
    }

    @Test func protectionBelongsToTheObjectNotToOneResource() async throws {
        let driver = MemoryDriver()
        let resources = file("desired-state/o.yaml", """
            apiVersion: bulwark/v1
            kind: Object
            metadata: {name: keep-root, labels: {protected: "true"}}
            targets: {names: [db-1]}
            spec: {object: root, shell: /bin/bash}
            ---
            apiVersion: bulwark/v1
            kind: Object
            metadata: {name: lock-root}
            targets: {names: [db-1]}
            spec: {object: root, locked: "true"}
            ---
            apiVersion: bulwark/v1
            kind: Object
            metadata: {name: lock-guest}
            targets: {names: [db-1]}
            spec: {object: guest, locked: "true"}
            """)
        let plan = try await plan(try load([resources], driver: driver), driver)
        let byName = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0) })
        // Another resource reaching the protected object is held too; a different object is not.
        #expect(byName["lock-root"]?.decision == .held)
        #expect(byName["lock-root"]?.reason == "root is protected by Object/keep-root: never changed automatically")
        #expect(byName["lock-guest"]?.decision == .applied)
    }

    @Test func anAnnotationCanOnlyMakeAResourceStricter() async throws {
        let driver = MemoryDriver()
        let resources = file("desired-state/m.yaml", """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: looser, annotations: {mode: enforce}}
            targets: {names: [db-1]}
            spec: {a: "1"}
            ---
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: stricter, annotations: {mode: audit}}
            targets: {names: [db-1]}
            spec: {b: "1"}
            """)
        let plan = try await plan(try load([resources], mode: "approve", driver: driver), driver)
        let byName = Dictionary(uniqueKeysWithValues: plan.remediations.map { ($0.binding.resource.name, $0) })
        // `mode: enforce` under an approve controller stays held; `mode: audit` is honoured.
        #expect(byName["looser"]?.decision == .held)
        #expect(byName["looser"]?.mode == .approve)
        #expect(byName["stricter"]?.decision == .reported)
    }

    @Test func approvalsMustLiveInTheirOwnFile() {
        #expect(throws: ValidationFailure.self) {
            _ = try load([file("approvals/other.yaml", """
                apiVersion: bulwark/v1
                kind: Approval
                metadata: {name: a}
                spec: {id: 01ABCDEFGHJKMNPQRSTVWXYZ01, approver: a, reason: b}
                """)], driver: MemoryDriver())
        }
    }
}
