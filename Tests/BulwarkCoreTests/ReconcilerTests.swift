import BulwarkCore
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing


@Suite struct ReconcilerTests {
    func setup(_ resources: String, controller: String? = nil) throws -> (MemoryDriver, DesiredState) {
        let driver = MemoryDriver()
        var files = [inventory, file("desired-state/r.yaml", resources)]
        if let controller { files[0] = file("controllers/inventory.yaml", read(inventory).replacingOccurrences(of: "  mode: enforce\n", with: controller)) }
        let state = try DesiredStateLoader(registry: memoryRegistry(driver)).load(files, revision: "rev1")
        return (driver, state)
    }

    func read(_ file: SourceFile) -> String { String(decoding: file.contents ?? [], as: UTF8.self) }

    let threeResources = """
        apiVersion: bulwark/v1
        kind: Setting
        metadata: {name: low-thing, annotations: {severity: low}}
        targets: {names: [db-1]}
        spec: {a: "1"}
        ---
        apiVersion: bulwark/v1
        kind: Setting
        metadata: {name: critical-thing, annotations: {severity: critical}}
        targets: {names: [db-1]}
        spec: {b: "1"}
        ---
        apiVersion: bulwark/v1
        kind: Setting
        metadata: {name: high-thing, annotations: {severity: high}}
        targets: {names: [web-1]}
        spec: {c: "1"}
        """

    @Test func planIsPureAndOrdersByRisk() async throws {
        let (driver, state) = try setup(threeResources)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let plan = try await reconciler.plan(state)
        // critical × internal (4×1) < high × internet (3×3); low × internal last.
        #expect(plan.remediations.map(\.binding.description) == ["web-1 Setting/high-thing", "db-1 Setting/critical-thing", "db-1 Setting/low-thing"])
        #expect(plan.inSync.isEmpty)
        #expect(plan.remediations.allSatisfy { $0.decision == .applied })
        #expect(plan.remediations[0].changes == [PropertyDrift(property: "c", desired: "1", observed: nil)])
        let applied = driver.state.withLock { $0.applied }
        #expect(applied.isEmpty, "planning changes nothing")
        driver.set("db-1", "b", "1")
        #expect(try await reconciler.plan(state).inSync.map(\.description) == ["db-1 Setting/critical-thing"])
    }

    /// Observations in flight at once are on different targets while there are enough targets:
    /// a target's resources mostly read the same files, and two of them observed at once each
    /// read and parsed what the other was about to cache. Each target's resources keep their
    /// order; a single target is still observed several at a time.
    @Test func observationsInFlightAreOnDifferentTargets() async throws {
        let resources = (1...4).map { index in
            """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: s\(index)}
            targets: {names: [web-1, db-1]}
            spec: {k\(index): "1"}
            """
        }.joined(separator: "\n---\n")
        let (driver, state) = try setup(resources)
        driver.state.withLock { $0.observeDelay = .milliseconds(20) }
        let observed = await Reconciler(registry: memoryRegistry(driver), concurrency: 2).observe(state)
        #expect(observed.observations.count == 8)
        let starts = driver.state.withLock { $0.observed }
        // Sorted, the bindings are db-1's four, then web-1's: the first two used to be db-1's.
        // (The order within a target, and the rule at every start, are `TargetTurnsTests`'.)
        #expect(Set(starts.prefix(2).map { $0.binding.split(separator: " ")[0] }) == ["db-1", "web-1"])
        #expect(starts.prefix(2).allSatisfy { start in start.inFlight.values.allSatisfy { $0 <= 1 } })
        #expect(Set(starts.map(\.binding)).count == 8)

        let single = try setup(resources.replacingOccurrences(of: "[web-1, db-1]", with: "[web-1]"))
        // The first two observations wait for each other: two at once are seen however busy
        // the machine is, and one at a time never.
        single.0.state.withLock { $0.meetingAt = 2 }
        _ = await Reconciler(registry: memoryRegistry(single.0), concurrency: 2).observe(single.1)
        #expect(single.0.state.withLock { $0.observed.map { $0.inFlight["web-1"] ?? 0 }.max() } == 2, "one target: two at once")
    }

    @Test func maxChangesPerCycleDefersTheLeastRisky() async throws {
        let (driver, state) = try setup(threeResources, controller: "  mode: enforce\n  maxChangesPerCycle: 2\n")
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let plan = try await reconciler.plan(state)
        #expect(plan.remediations.map(\.decision) == [.applied, .applied, .deferred])
        #expect(plan.remediations[2].reason?.contains("maxChangesPerCycle 2") == true)
        let sink = RecordingSink()
        let outcome = await reconciler.apply(plan, state: state, audit: sink)
        #expect(outcome.verified.count == 2)
        #expect(driver.get("db-1", "a") == nil, "the deferred resource is left alone")
        // The same deferral is recorded once, not every cycle.
        let again = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
        #expect(again.entries.map(\.alreadyRecorded) == [false], "the last drifted resource is fixed in the second cycle")
        let deferred = sink.records.filter { $0.decision == .deferred }.count
        #expect(deferred == 1)
    }

    @Test func auditModeOnlyReports() async throws {
        let (driver, state) = try setup(threeResources, controller: "  mode: audit\n")
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let sink = RecordingSink()
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
        #expect(outcome.entries.allSatisfy { $0.record.decision == .reported && $0.record.result == nil })
        let applied = driver.state.withLock { $0.applied }
        #expect(applied.isEmpty)
        let second = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
        let allRecorded = second.entries.allSatisfy(\.alreadyRecorded)
        #expect(allRecorded)
        let count = sink.records.count
        #expect(count == 3)
    }

    @Test func aFixThatDoesNotHoldIsRecordedAsFailed() async throws {
        let (driver, state) = try setup(threeResources)
        driver.state.withLock { $0.stuck = ["c"] }
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let sink = RecordingSink()
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
        let failed = try #require(outcome.failed.first)
        #expect(failed.record.resource == "Setting/high-thing")
        #expect(failed.record.error == "fix did not hold: c is (unset)")
        #expect(failed.record.commitMessage.contains("Bulwark-Result: failed"))
        #expect(outcome.verified.count == 2)
    }

    @Test func anApplyErrorIsRecordedAndOthersGoOn() async throws {
        let (driver, state) = try setup(threeResources)
        driver.state.withLock { $0.failApply = "disk full" }
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: RecordingSink())
        #expect(outcome.entries.count == 3)
        #expect(outcome.entries.allSatisfy { $0.record.result == .failed && $0.record.error == "apply failed: disk full" })
    }

    @Test func observationFailuresArePerResource() async throws {
        let (driver, state) = try setup(threeResources)
        driver.state.withLock { $0.failObserve = "unreachable" }
        let plan = try await Reconciler(registry: memoryRegistry(driver)).plan(state)
        #expect(plan.failures.count == 3 && plan.remediations.isEmpty)
        #expect(plan.failures[0].message == "unreachable")
    }

    @Test func secretsNeverReachTheRecord() async throws {
        let (driver, state) = try setup("""
            apiVersion: bulwark/v1
            kind: Secret
            metadata: {name: db-password}
            targets: {names: [db-1]}
            spec: {value: hunter2-desired}
            """)
        driver.set("db-1", "password", "old-secret-value")
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let sink = RecordingSink()
        let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
        let record = try #require(outcome.entries.first?.record)
        #expect(record.result == .verified)
        let everything = record.commitMessage + String(decoding: record.json(), as: UTF8.self)
        #expect(!everything.contains("hunter2"))
        #expect(!everything.contains("old-secret"))
        #expect(everything.contains("[redacted]"))
    }

    @Test func recordsHaveTheDesignedTrailersAndPath() async throws {
        let (driver, state) = try setup(threeResources)
        let reconciler = Reconciler(registry: memoryRegistry(driver))
        let sink = RecordingSink()
        _ = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
        // Targets are fixed in parallel, so the sink's order across web-1 and db-1 is not fixed.
        #expect(sink.records.count == 3)
        let record = try #require(sink.records.first { $0.resource == "Setting/high-thing" })
        let message = record.commitMessage
        #expect(message.hasPrefix("remediate(Setting/high-thing): web-1 c (unset) -> 1\n\n"))
        for key in ["Bulwark-Id", "Bulwark-Controller: settings", "Bulwark-Target: web-1", "Bulwark-Resource: Setting/high-thing",
                    "Bulwark-Decision: applied", "Bulwark-Result: verified", "Bulwark-Desired-Commit: rev1",
                    "Bulwark-Detected-At", "Bulwark-Verified-At"] {
            #expect(message.contains("\n" + key), "missing \(key)")
        }
        #expect(record.path.hasPrefix("audit/") && record.path.hasSuffix("/\(record.id).json"))
        #expect(AuditRecord.path(id: "01M82DM6X50HD5B4JKCH9TSFP9", detectedAt: "2026-11-22T20:02:12.163Z")
                == "audit/2026/11/22/20/9/P/01M82DM6X50HD5B4JKCH9TSFP9.json")
        #expect(AuditRecord.paths(id: "01M82DM6X50HD5B4JKCH9TSFP9", detectedAt: "2026-11-22T20:02:12.163Z")
                == ["audit/2026/11/22/20/9/P/01M82DM6X50HD5B4JKCH9TSFP9.json", "audit/2026/11/22/20/9/01M82DM6X50HD5B4JKCH9TSFP9.json"])
        let decoded = try JSONDecoder().decode(AuditRecord.self, from: Data(record.json()))
        #expect(decoded == record)
    }

    @Test func idsSortByTimeAndStableIdsAreStable() {
        let early = AuditID.ulid(at: Date(timeIntervalSince1970: 1_700_000_000))
        let late = AuditID.ulid(at: Date(timeIntervalSince1970: 1_800_000_000))
        #expect(early.count == 26 && late.count == 26 && early < late)
        #expect(AuditID.stable("x") == AuditID.stable("x"))
        #expect(AuditID.stable("x") != AuditID.stable("y"))
        // The ids approvals and records already name: the same text gives the same 26 characters
        // as every earlier version (values from the original bit-by-bit encoder).
        #expect(AuditID.stable("x") == "5FCFTMS1G22W3YBJED7JEY5FZJ")
        #expect(AuditID.stable("") == "6BYAEE91124CJPRRH75R3VP0A2")
        #expect(AuditID.stable("blocked\u{1}h1\u{1}SSHDConfig/sshd-0\u{1}PermitRootLogin=yes>no") == "1ZM63F4QSA085APHX83SW1JGT0")
        // A ULID's first 10 characters are its milliseconds (ULID's own layout).
        #expect(early.hasPrefix("01HF7YAT00"))
    }
}
