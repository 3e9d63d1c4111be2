import BulwarkCore
import Foundation
import Synchronization

/// An in-memory system at the `ResourceDriver` seam: key/value properties per target, so the
/// core's logic is tested without any adapter. Real adapters are tested against real systems.
final class MemoryDriver: PruningDriver {
    struct State {
        var values: [String: [String: String]] = [:]
        /// Properties that silently refuse to change (a fix that does not hold).
        var stuck: Set<String> = []
        /// Properties left out of every observation (a key or file gone: nothing observed).
        var unobserved: Set<String> = []
        var failApply: String?
        var failObserve: String?
        var applied: [String] = []
        /// `property=value` desired values the safety guard blocks, with the reason.
        var guarded: [String: String] = [:]
        var assessed = 0
        /// What the driver created per target, by owning resource (for pruning).
        var created: [String: Set<ResourceID>] = [:]
        /// How long an observation takes (so that observations overlap); each observation as it
        /// started ("target Kind/name"), with the observations then in flight per target.
        var observeDelay: Duration?
        var observed: [(binding: String, inFlight: [String: Int])] = []
        var inFlight: [String: Int] = [:]
        /// With n, each of the first n observations waits (up to 60 s) until n have started:
        /// observations made at once then overlap however busy the machine is, and observations
        /// made one after the other never do (the first waits out the 60 s alone).
        var meetingAt = 0
    }

    let state = Mutex(State())

    func set(_ target: String, _ property: String, _ value: String?) {
        state.withLock { $0.values[target, default: [:]][property] = value }
    }

    func get(_ target: String, _ property: String) -> String? {
        state.withLock { $0.values[target]?[property] }
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let (delay, meeting) = state.withLock { state in
            state.inFlight[target.name, default: 0] += 1
            state.observed.append(("\(target.name) \(resource.id)", state.inFlight))
            return (state.observeDelay, state.observed.count < state.meetingAt)
        }
        if meeting {
            let deadline = ContinuousClock.now + .seconds(60)
            while state.withLock({ $0.observed.count < $0.meetingAt }), ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        if let delay { try? await Task.sleep(for: delay) }
        defer { state.withLock { $0.inFlight[target.name, default: 1] -= 1 } }
        return try state.withLock { state in
            if let failure = state.failObserve { throw TestFailure(failure) }
            var result: [String: String?] = [:]
            for property in resource.spec.properties where !state.unobserved.contains(property.name) {
                result[property.name] = .some(state.values[target.name]?[property.name])
            }
            return Observation(values: result)
        }
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        try state.withLock { state in
            if let failure = state.failApply { throw TestFailure(failure) }
            for change in changes where !state.stuck.contains(change.property) {
                state.values[target.name, default: [:]][change.property] = change.desired
            }
            state.applied.append("\(target.name) \(resource.id)")
        }
    }

    func leftovers(on target: Target, keeping current: [Resource]) async throws -> [Leftover] {
        let kept = Set(current.map(\.id))
        return state.withLock { $0.created[target.name, default: []] }.subtracting(kept).sorted()
            .map { Leftover(owner: $0, handle: "obj-\($0.name)", summary: "object of \($0)") }
    }

    func prune(_ leftovers: [Leftover], on target: Target) async throws {
        state.withLock { state in
            for leftover in leftovers { state.created[target.name]?.remove(leftover.owner) }
        }
    }

    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        state.withLock { state in
            state.assessed += 1
            for change in changes {
                if let reason = state.guarded["\(change.property)=\(change.desired)"] { return .block(reason) }
            }
            return .allow
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A registry with one adapter, `memory`, and kinds `Setting` (any key/value pairs) and
/// `Secret` (a sensitive value).
/// `setting`: another driver for the `Setting` kind (default: `driver`).
func memoryRegistry(_ driver: MemoryDriver, setting: (any ResourceDriver)? = nil) -> Registry {
    Registry([
        AdapterDefinition(
            name: "memory",
            parseTarget: { spec in
                spec.allowOnly(["adapter", "zone"])
                return ["zone": spec.field("zone")?.string() ?? "default"]
            },
            kinds: [
                KindDefinition(name: "Setting", adapter: "memory", parse: { spec in
                    guard let entries = spec.entries() else { return nil }
                    var properties: [DesiredProperty] = []
                    for (key, value) in entries {
                        if key == "limit" {
                            guard let n = value.int(in: 1...10) else { return nil }
                            properties.append(DesiredProperty(key, String(n)))
                        } else {
                            guard let text = value.string() else { return nil }
                            properties.append(DesiredProperty(key, text))
                        }
                    }
                    return ResourceSpec(properties: properties)
                }, driver: setting ?? driver, weakens: { _, from, to in from == "no" && to == "yes" ? "turns it on" : nil }),
                KindDefinition(name: "Object", adapter: "memory", parse: { spec in
                    guard let entries = spec.entries() else { return nil }
                    var subject = ""
                    var properties: [DesiredProperty] = []
                    for (key, value) in entries {
                        guard let text = value.string() else { return nil }
                        if key == "object" { subject = text } else { properties.append(DesiredProperty("\(subject).\(key)", text)) }
                    }
                    return ResourceSpec(subject: subject, properties: properties)
                }, driver: driver),
                KindDefinition(name: "Secret", adapter: "memory", parse: { spec in
                    guard let value = spec.field("value", required: true)?.string() else { return nil }
                    return ResourceSpec(subject: "secret", properties: [DesiredProperty("password", value, sensitive: true)])
                }, driver: driver),
            ]),
    ])
}

func file(_ path: String, _ text: String) -> SourceFile { SourceFile(path: path, contents: Array(text.utf8)) }

let inventory = file("controllers/inventory.yaml", """
    apiVersion: bulwark/v1
    kind: Target
    metadata: {name: web-1, labels: {role: web, exposure: internet}}
    spec: {adapter: memory}
    ---
    apiVersion: bulwark/v1
    kind: Target
    metadata: {name: db-1, labels: {role: db, exposure: internal}}
    spec: {adapter: memory}
    ---
    apiVersion: bulwark/v1
    kind: Controller
    metadata: {name: settings}
    spec:
      kinds: [Setting, Secret, Object]
      interval: 5m
      mode: enforce

    """)
