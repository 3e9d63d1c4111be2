/// A driver that can tell, when a fix it made is found gone at verification, whether another
/// writer changed the resource after the fix was written (rather than the fix not taking).
///
/// Such a fix is recorded `failed` with an error that starts with
/// `AuditRecord.overwrittenMarker` and names what changed; unlike other failures it is not
/// recorded once per distinct failure and not held back: the next pass plans and fixes the drift
/// again (the fix was made, and undone by someone else).
public protocol OverwriteWitness: ResourceDriver {
    /// What changed after this process's last fix of `resource` was written (files, as the host
    /// names them); empty when nothing is known to have changed since.
    func changedSinceFix(_ resource: Resource, on target: Target) async -> [String]
}

extension AuditRecord {
    /// How the error of a fix undone by another writer during its verification begins.
    public static let overwrittenMarker = "changed by another writer after the fix was written"

    /// A fix that was made and then undone by another writer before it was verified: failed,
    /// and fixed again by the next pass rather than held back as a repeated failure.
    public var overwrittenAfterFix: Bool {
        decision == .applied && result == .failed && error?.hasPrefix(Self.overwrittenMarker) == true
    }
}
