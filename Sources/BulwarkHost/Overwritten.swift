internal import BulwarkCore

// Fixes written by renaming a file into place can tell, when their verification finds the fix
// gone, whether the file is still the one Bulwark wrote (`FixWitness`): when it is not, another
// writer changed it after the fix.

extension FixWitness {
    /// The files Bulwark wrote under `relative` (files, or folders ending in `/`) on `target`
    /// that are no longer what it wrote.
    static func changed(_ relative: [String], on target: Target) -> [String] {
        guard let root = try? HostRoot(target: target) else { return [] }
        let prefixes = relative.map { root.full(root.components(of: $0)) + ($0.hasSuffix("/") ? "/" : "") }
        let mine = written(where: { path in prefixes.contains { $0.hasSuffix("/") ? path.hasPrefix($0) : path == $0 } })
        return changed(mine, in: root)
    }
}

extension SSHDConfigDriver: OverwriteWitness {
    func changedSinceFix(_ resource: Resource, on target: Target) async -> [String] {
        FixWitness.changed([Self.configPath, "etc/ssh/sshd_config.d/"], on: target)
    }
}

extension LoginDefsDriver: OverwriteWitness {
    func changedSinceFix(_ resource: Resource, on target: Target) async -> [String] {
        FixWitness.changed([Self.path], on: target)
    }
}

extension SysctlDriver: OverwriteWitness {
    func changedSinceFix(_ resource: Resource, on target: Target) async -> [String] {
        FixWitness.changed(["etc/sysctl.conf", "etc/sysctl.d/", "run/sysctl.d/"], on: target)
    }
}

extension UserAccountDriver: OverwriteWitness {
    func changedSinceFix(_ resource: Resource, on target: Target) async -> [String] {
        FixWitness.changed(["etc/passwd", "etc/shadow"], on: target)
    }
}
