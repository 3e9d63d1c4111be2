/// Something an adapter created on a target for a resource that no current resource owns any
/// more: the resource left the desired state (or stopped applying to the target).
public struct Leftover: Sendable, Hashable, CustomStringConvertible {
    /// The resource it was created for, as the adapter recorded it when it created it.
    public var owner: ResourceID
    /// The adapter's own name for it, given back to `prune` (an nftables chain, say).
    public var handle: String
    /// What it is, for a person and the audit record.
    public var summary: String

    public init(owner: ResourceID, handle: String, summary: String) {
        self.owner = owner
        self.handle = handle
        self.summary = summary
    }

    public var description: String { "\(owner): \(summary)" }
}

/// A driver that can find, and take away, what it created for resources that are gone: removing
/// a resource from the desired state then removes its effect instead of leaving it in force.
///
/// The core asks, per target and kind, for the leftovers given the resources of that kind bound
/// to the target, records each as decision `pruned` (subject to the controller's mode), prunes,
/// and verifies by asking again.
public protocol PruningDriver: ResourceDriver {
    /// What this kind created on `target` that none of `current` (the resources of this kind bound
    /// to the target now) owns. Must not change anything.
    func leftovers(on target: Target, keeping current: [Resource]) async throws -> [Leftover]
    /// Removes `leftovers` (as `leftovers(on:keeping:)` returned them), in one step where the
    /// system allows; idempotent.
    func prune(_ leftovers: [Leftover], on target: Target) async throws
}
