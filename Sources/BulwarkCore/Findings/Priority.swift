public import Foundation

/// How urgent a finding is: P1 (most) to P4. Queues, proposals and reports follow it.
public enum Priority: String, Sendable, Codable, CaseIterable, Comparable {
    case p1 = "P1", p2 = "P2", p3 = "P3", p4 = "P4"

    private var rank: Int { Priority.allCases.firstIndex(of: self) ?? 0 }
    /// `a < b`: `a` is more urgent.
    public static func < (a: Priority, b: Priority) -> Bool { a.rank < b.rank }

    /// The default remediation SLA: P1 24 h, P2 7 days, P3 30 days, P4 90 days.
    public var defaultSLA: Duration {
        switch self {
        case .p1: .seconds(86_400)
        case .p2: .seconds(7 * 86_400)
        case .p3: .seconds(30 * 86_400)
        case .p4: .seconds(90 * 86_400)
        }
    }
}

/// priority = severity × exposure × exploitability, and the factors it came from.
public struct FindingPriority: Sendable, Hashable, Codable {
    public var priority: Priority
    /// severity (1 low … 4 critical) × exposure (1 internal, 2 unlabelled, 3 internet) ×
    /// exploitability (1, 2 with EPSS ≥ 0.1 or CVSS ≥ 9, 3 when known exploited): 1…36.
    public var score: Int
    public var severity: Int
    public var exposure: Int
    public var exploitability: Int

    /// The priority of `finding` on targets of `exposure` (`Target.exposureWeight`; 2 when unknown).
    public init(_ finding: Finding, exposure: Int = 2) {
        severity = finding.severity.weight
        self.exposure = min(3, max(1, exposure))
        if let vulnerability = finding.vulnerability, vulnerability.knownExploited {
            exploitability = 3
        } else if let vulnerability = finding.vulnerability, (vulnerability.epss ?? 0) >= 0.1 || (vulnerability.cvss ?? 0) >= 9 {
            exploitability = 2
        } else {
            exploitability = 1
        }
        score = severity * self.exposure * exploitability
        priority = score >= 18 ? .p1 : score >= 8 ? .p2 : score >= 4 ? .p3 : .p4
    }

    /// "P2 (score 12 = severity 4 × exposure 3 × exploitability 1)".
    public var explanation: String {
        "\(priority.rawValue) (score \(score) = severity \(severity) × exposure \(exposure) × exploitability \(exploitability))"
    }

    /// The exposure of the targets a finding is about: its own target's, else the highest of the
    /// targets of the resources it names, else 2 (unlabelled).
    public static func exposure(of finding: Finding, in state: DesiredState?, matched: [Binding]) -> Int {
        guard let state else { return 2 }
        if let name = finding.target, let target = state.targets[name] { return target.exposureWeight }
        if let target = state.targets[finding.resource] { return target.exposureWeight }
        let weights = Set(matched.map(\.target)).compactMap { state.targets[$0]?.exposureWeight }
        return weights.max() ?? 2
    }
}

/// Remediation SLAs per priority (`Priority.defaultSLA` unless a rule says otherwise).
public struct SLAPolicy: Sendable, Hashable {
    public var limits: [Priority: Duration]
    public init(limits: [Priority: Duration] = [:]) { self.limits = limits }

    public func limit(_ priority: Priority) -> Duration { limits[priority] ?? priority.defaultSLA }

    /// When a finding of `priority` first seen at `firstSeen` must be fixed by.
    public func deadline(_ priority: Priority, firstSeen: Date) -> Date {
        firstSeen.addingTimeInterval(limit(priority).timeInterval)
    }
}
