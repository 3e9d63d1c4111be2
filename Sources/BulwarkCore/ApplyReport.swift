/// What a driver says about a fix beyond its properties' values, for the audit record: what it
/// did (`openssh-server 1:9.2p1-2 → 1:9.2p1-2+deb12u3 from http://deb.debian.org/… bookworm-security/main`)
/// and what must be restarted for the fix to take effect (`ssh`, `reboot`) that it did not restart.
public struct ApplyReport: Sendable, Hashable {
    public var notes: [String]
    public var needsRestart: [String]

    public init(notes: [String] = [], needsRestart: [String] = []) {
        self.notes = notes
        self.needsRestart = needsRestart
    }
}

/// A driver whose `apply` has more to say than the values it set: the reconciler calls
/// `applyReporting` instead of `apply` and keeps the report in the record.
public protocol ReportingDriver: ResourceDriver {
    func applyReporting(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws -> ApplyReport
}

/// Thrown by `applyReporting` when the fix failed after doing something worth recording.
public struct ReportedFailure: Error, Sendable, CustomStringConvertible {
    public var report: ApplyReport
    public var message: String

    public init(_ message: String, report: ApplyReport) {
        self.message = message
        self.report = report
    }

    public var description: String { message }
}

extension AuditRecord {
    /// Keeps a driver's report: its notes, and what needs a restart (`Bulwark-Needs-Restart`).
    mutating func include(_ report: ApplyReport) {
        if !report.notes.isEmpty { notes = (notes ?? []) + report.notes }
        if !report.needsRestart.isEmpty { needsRestart = report.needsRestart.joined(separator: ", ") }
    }
}
