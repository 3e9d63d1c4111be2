package import BulwarkCore
import Foundation

/// A controller's limits (`maxChangesPerCycle`, `maxTargetShare`) held over its interval,
/// across cycles: the planner counts within one cycle, and a daemon runs a cycle for every
/// trigger (a finding, a watched file), so without this a stream of triggers could fix
/// `maxChangesPerCycle` resources per trigger. The daemon keeps the fixes of each controller's
/// last interval (a sliding window) and defers, in the plan's risk order, what the window has no
/// room left for. Times are monotonic (`ContinuousClock`): a wall clock stepped back cannot keep
/// a fix inside the window for as long as the step, nor a step forward empty it.
package struct ChangeBudget: Sendable {
    package typealias Instant = ContinuousClock.Instant

    package struct Change: Sendable {
        package var at: Instant
        package var controller: String
        package var target: String
    }

    private(set) var changes: [Change] = []

    /// A fix was attempted (whatever its result: an attempt changes the system).
    package mutating func record(controller: String, target: String, at: Instant) {
        changes.append(Change(at: at, controller: controller, target: target))
    }

    /// Drops what is older than the longest interval of any controller. Not each controller's
    /// own: a revision that lengthens an interval must still find the fixes made within it.
    package mutating func forget(olderThan longest: Duration, now: Instant) {
        let cutoff = now - longest
        changes.removeAll { $0.at < cutoff }
    }

    /// Defers the plan's applied remediations that would take a controller past its limits
    /// within its interval. Reasons are stable (no counts or times), so a deferral is
    /// recorded once for the same drift.
    package func limit(_ remediations: inout [PlannedRemediation], state: DesiredState, now: Instant) {
        var used: [String: Int] = [:]
        var targets: [String: Set<String>] = [:]
        for change in changes {
            guard let controller = state.controllers[change.controller],
                  change.at >= now - controller.interval else { continue }
            used[change.controller, default: 0] += 1
            targets[change.controller, default: []].insert(change.target)
        }
        var targetCounts: [String: Int] = [:]
        for name in state.controllers.keys {
            targetCounts[name] = Set(state.bindings.filter { $0.controller == name }.map(\.target)).count
        }
        for index in remediations.indices where remediations[index].decision == .applied {
            let binding = remediations[index].binding
            guard let controller = state.controllers[binding.controller] else { continue }
            let interval = RemediationReport.duration(controller.interval.timeInterval)
            func defer_(_ reason: String) {
                remediations[index].decision = .deferred
                remediations[index].reason = reason
                remediations[index].approver = nil
            }
            if let limit = controller.maxChangesPerCycle, used[controller.name, default: 0] >= limit {
                defer_("maxChangesPerCycle \(limit) of controller \(controller.name) reached within its interval of \(interval)")
                continue
            }
            if let share = controller.maxTargetShare {
                let total = targetCounts[controller.name, default: 0]
                let allowed = max(1, total * share / 100)
                let changed = targets[controller.name, default: []]
                if !changed.contains(binding.target), changed.count >= allowed {
                    defer_("maxTargetShare \(share)% of controller \(controller.name) reached within its interval of \(interval) "
                           + "(\(allowed) of \(total) targets)")
                    continue
                }
            }
            used[controller.name, default: 0] += 1
            targets[controller.name, default: []].insert(binding.target)
        }
    }
}
