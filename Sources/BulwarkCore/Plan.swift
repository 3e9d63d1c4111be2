public import struct Foundation.Date

/// One property that differs from what the desired state wants.
public struct PropertyDrift: Sendable, Hashable, Codable {
    public var property: String
    public var desired: String
    /// nil: unset on the target.
    public var observed: String?
    public var sensitive: Bool

    public init(property: String, desired: String, observed: String?, sensitive: Bool = false) {
        self.property = property
        self.desired = desired
        self.observed = observed
        self.sensitive = sensitive
    }

    /// The values as they may be shown: sensitive ones redacted, unset spelled out.
    public var shownDesired: String { sensitive ? "[redacted]" : desired }
    public var shownObserved: String { sensitive ? "[redacted]" : (observed ?? "(unset)") }
}

/// What Bulwark does about a drift.
public enum Decision: String, Sendable, Codable, CaseIterable {
    /// Fixed now.
    case applied
    /// Waiting for approval.
    case held
    /// Left alone under a waiver.
    case waived
    /// Not now: a limit or a window.
    case deferred
    /// The flap breaker stopped automatic fixes.
    case escalated
    /// Audit mode: reported only.
    case reported
}

/// Whether an applied fix held when observed again.
public enum RemediationResult: String, Sendable, Codable {
    case verified, failed
}

/// A drifted resource on a target, with the decision the policy gate made.
public struct PlannedRemediation: Sendable, Hashable {
    public var binding: Binding
    public var severity: Severity
    /// Severity weighted by the target's exposure: the order remediations are taken in.
    public var risk: Int
    public var mode: Mode
    public var changes: [PropertyDrift]
    public var decision: Decision
    /// Why a decision other than `applied` was made.
    public var reason: String?
    public var detectedAt: Date
}

/// A resource that could not be observed on a target.
public struct ObservationFailure: Sendable, Hashable {
    public var binding: Binding
    public var message: String
    public init(binding: Binding, message: String) {
        self.binding = binding
        self.message = message
    }
}

/// Drift and decisions for one revision against what was observed.
public struct Plan: Sendable {
    /// Riskiest first.
    public var remediations: [PlannedRemediation]
    public var inSync: [Binding]
    public var failures: [ObservationFailure]

    public var hasDrift: Bool { !remediations.isEmpty }
}

public enum Planner {
    /// The pure heart of a cycle: compares what is wanted with what was observed and decides,
    /// per drifted resource, what to do. No I/O; the same inputs always give the same plan.
    public static func plan(
        _ state: DesiredState, observations: [Binding: Observation], failures: [ObservationFailure] = []
    ) -> Plan {
        var drifted: [PlannedRemediation] = []
        var inSync: [Binding] = []
        for binding in state.bindings {
            guard let observation = observations[binding],
                  let resource = state.resources[binding.resource],
                  let controller = state.controllers[binding.controller],
                  let target = state.targets[binding.target] else { continue }
            let changes = drift(resource.spec.properties, observation)
            guard !changes.isEmpty else {
                inSync.append(binding)
                continue
            }
            drifted.append(PlannedRemediation(
                binding: binding, severity: resource.severity, risk: resource.severity.weight * target.exposureWeight,
                mode: controller.mode, changes: changes, decision: controller.mode == .audit ? .reported : .applied,
                reason: controller.mode == .audit ? "controller \(controller.name) is in audit mode" : nil,
                detectedAt: observation.observedAt))
        }
        drifted.sort { a, b in
            if a.risk != b.risk { return a.risk > b.risk }
            if a.severity != b.severity { return a.severity > b.severity }
            return a.binding < b.binding
        }
        var applied: [String: Int] = [:]
        for index in drifted.indices where drifted[index].decision == .applied {
            let name = drifted[index].binding.controller
            if let limit = state.controllers[name]?.maxChangesPerCycle, applied[name, default: 0] >= limit {
                drifted[index].decision = .deferred
                drifted[index].reason = "maxChangesPerCycle \(limit) of controller \(name) reached"
            } else {
                applied[name, default: 0] += 1
            }
        }
        return Plan(remediations: drifted, inSync: inSync, failures: failures.sorted { $0.binding < $1.binding })
    }

    /// The desired properties whose observed value differs (properties the observation left out
    /// do not apply on this target).
    public static func drift(_ desired: [DesiredProperty], _ observation: Observation) -> [PropertyDrift] {
        desired.compactMap { property in
            guard let observed = observation.values[property.name], observed != property.value else { return nil }
            return PropertyDrift(property: property.name, desired: property.value, observed: observed,
                                 sensitive: property.sensitive)
        }
    }
}
