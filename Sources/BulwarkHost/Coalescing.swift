internal import BulwarkCore

// One file per target holds every resource of these kinds, so the resources of one target are
// corrected together: one candidate, one `sshd -t`, one atomic write and one fsync per file
// (see `CoalescingDriver`). Each driver's `apply` already takes the changes of a resource as a
// list; a batch is the concatenation of its resources' changes (distinct properties).

extension SSHDConfigDriver: CoalescingDriver {
    func coalescingKey(_ resource: Resource, on target: Target) -> String? { Self.configPath }

    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws {
        let root = try HostRoot(target: target)
        let changes = batch.flatMap(\.changes)
        try root.applying { try applyOnce(changes, root: root) }
    }
}

extension LoginDefsDriver: CoalescingDriver {
    func coalescingKey(_ resource: Resource, on target: Target) -> String? { Self.path }

    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws {
        let root = try HostRoot(target: target)
        let changes = batch.flatMap(\.changes)
        try root.applying { try applyOnce(changes, root: root) }
    }
}

extension SysctlDriver: CoalescingDriver {
    func coalescingKey(_ resource: Resource, on target: Target) -> String? { Self.ownedFile }

    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws {
        let root = try HostRoot(target: target)
        let changes = batch.flatMap(\.changes)
        try root.applying { try applyOnce(changes, root: root) }
    }
}
