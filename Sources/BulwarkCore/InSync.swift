/// Thrown by a driver's `apply` when, holding the target's lock and reading the resource again,
/// it found every change already made: another writer (another Bulwark, a person) corrected it
/// after the plan observed the drift. Nothing was changed, so the reconciler records no fix and
/// counts the remediation as found in sync (`CycleOutcome.inSync`).
public struct AlreadyInSync: Error, Sendable, CustomStringConvertible {
    /// The properties found already holding their desired values.
    public var properties: Set<String>

    public init(properties: Set<String>) {
        self.properties = properties
    }

    public var description: String {
        "already as desired when looked at again: " + properties.sorted().joined(separator: ", ")
    }
}
