internal import BulwarkCore

// One file per target holds every resource of these kinds, so the resources of one target are
// corrected together: one candidate, one `sshd -t`, one atomic write and one fsync per file
// (see `CoalescingDriver`). Each driver's `apply` already takes the changes of a resource as a
// list; a batch is the concatenation of its resources' changes (distinct properties).
//
// Under the target's lock each attempt reads the file again and leaves out the changes it
// already holds (another Bulwark or a person made them after the plan observed the drift, or
// the plan read a file another process was rewriting): those are reported back, so that no
// record says Bulwark fixed what it did not change. A batch is one step: its first change
// passes the step's `ChangeGate` (one `tried` line for every resource in it), later ones find
// it passed.

extension AlreadyInSync {
    /// Throws when every one of `changes` was found already as desired (nothing was written).
    static func unless(_ changes: [PropertyDrift], found: Set<String>) throws(AlreadyInSync) {
        guard !changes.isEmpty, changes.allSatisfy({ found.contains($0.property) }) else { return }
        throw AlreadyInSync(properties: found)
    }
}

extension SSHDConfigDriver: CoalescingDriver {
    func coalescingKey(_ resource: Resource, on target: Target) -> String? { Self.configPath }

    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws -> Set<String> {
        let root = try HostRoot(target: target)
        let changes = batch.flatMap(\.changes)
        return try await root.applying { try applyOnce(changes, root: root) }
    }
}

extension LoginDefsDriver: CoalescingDriver {
    func coalescingKey(_ resource: Resource, on target: Target) -> String? { Self.path }

    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws -> Set<String> {
        let root = try HostRoot(target: target)
        let changes = batch.flatMap(\.changes)
        return try await root.applying(fixing: "LoginDefs") { try applyOnce(changes, root: root) }
    }
}

extension SysctlDriver: CoalescingDriver {
    func coalescingKey(_ resource: Resource, on target: Target) -> String? { Self.ownedFile }

    func apply(batch: [(changes: [PropertyDrift], resource: Resource)], on target: Target) async throws -> Set<String> {
        let root = try HostRoot(target: target)
        let changes = batch.flatMap(\.changes)
        return try await root.applying(fixing: "Sysctl") { try applyOnce(changes, root: root) }
    }
}
