import BulwarkCore
import BulwarkTestSupport
import Synchronization
import Testing

/// A `MemoryDriver` whose `Setting`s on one target are corrected in one write
/// (`CoalescingDriver`), noting the observation scope of every observation.
final class CoalescingMemoryDriver: CoalescingDriver {
    let memory: MemoryDriver
    /// Each observation: the scope it ran in (nil: none), and whether it came after a write.
    let seen = Mutex<[(scope: UInt64?, afterWrite: Bool)]>([])
    let writes = Mutex(0)

    init(_ memory: MemoryDriver) { self.memory = memory }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let written = writes.withLock { $0 } > 0
        seen.withLock { $0.append((ObservationScope.current?.id, written)) }
        return try await memory.observe(resource, on: target)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        try await memory.apply(changes, to: resource, on: target)
    }

    func coalescingKey(_ resource: Resource, on target: Target) -> String? { "one file" }

    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws -> Set<String> {
        writes.withLock { $0 += 1 }
        for (changes, resource) in batch { try await memory.apply(changes, to: resource, on: target) }
        return []
    }
}

@Suite struct CoalescedVerifyTests {
    /// One write corrects three resources; their verifications share one observation scope of
    /// their own (one snapshot of the target after the write), not the plan's, and not none.
    @Test func aCoalescedWritesVerificationsShareOneScopeAfterTheWrite() async throws {
        let memory = MemoryDriver()
        let driver = CoalescingMemoryDriver(memory)
        let registry = memoryRegistry(memory, setting: driver)
        let resources = (1...3).map { index in
            """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: s\(index)}
            targets: {names: [web-1]}
            spec: {k\(index): "1"}
            """
        }.joined(separator: "\n---\n")
        let state = try DesiredStateLoader(registry: registry).load([inventory, file("desired-state/r.yaml", resources)], revision: "rev1")
        let reconciler = Reconciler(registry: registry)
        let plan = try await reconciler.plan(state)
        #expect(plan.remediations.filter { $0.decision == .applied }.count == 3)
        let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
        #expect(outcome.verified.count == 3)
        #expect(driver.writes.withLock { $0 } == 1, "one write for the three")
        let seen = driver.seen.withLock { $0 }
        let planScopes = Set(seen.filter { !$0.afterWrite }.map(\.scope))
        let verifyScopes = Set(seen.filter(\.afterWrite).map(\.scope))
        #expect(seen.filter(\.afterWrite).count == 3)
        #expect(verifyScopes.count == 1 && verifyScopes.first! != nil, "the three verifications in one scope")
        #expect(verifyScopes.isDisjoint(with: planScopes), "not the plan's snapshot")
    }
}
