package import BulwarkCore
internal import Foundation

/// The flap breaker's memory in the daemon: the verified fixes within the longest flap period,
/// read from the audit branch once (per revision, and again after a lease takeover), then kept
/// up to date from the daemon's own records and trimmed to the period at every cycle, so it
/// holds at most the fixes of one flap period.
package struct FlapHistory: Sendable {
    /// What is known, or nil when it must be read from the audit branch again.
    package private(set) var known: FixHistory?

    package init() {}

    /// Forgets what is known: the next cycle reads the audit branch again (a new revision, or
    /// fixes another replica made).
    package mutating func invalidate() { known = nil }

    /// What is known, taken out (nil left in its place): trimmed and used by a cycle without a
    /// copy, then given back with `keep`. While two copies share it, every change copies it whole.
    package mutating func take() -> FixHistory? {
        defer { known = nil }
        return known
    }

    /// Keeps `fixes` (what was known, or what was just read, already trimmed to the window).
    package mutating func keep(_ fixes: consuming FixHistory) {
        known = fixes
    }

    /// Adds a record the daemon committed (only verified fixes count), while something is known.
    package mutating func add(_ record: AuditRecord) {
        known?.add(record)
    }
}
