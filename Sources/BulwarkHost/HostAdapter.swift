public import BulwarkCore

/// The host adapter: Linux security settings under a target's root directory.
public enum HostAdapter {
    public static let name = "host"

    /// `relative` paths (`etc/passwd`, `/etc/shadow`; a trailing `/` for a folder) under the
    /// target's root, as absolute paths. Only for watching: no symlink is followed here.
    static func paths(_ target: Target, _ relative: [String]) -> [String] {
        guard let root = target.settings["root"] else { return [] }
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        return relative.map { base + "/" + ($0.hasPrefix("/") ? String($0.dropFirst()) : $0) }
    }

    /// The adapter and its kinds. `sshd` checks candidate sshd configurations.
    public static func definition(sshd: SSHDValidator = .system) -> AdapterDefinition {
        AdapterDefinition(
            name: name,
            parseTarget: parseTarget,
            kinds: [
                KindDefinition(name: "SSHDConfig", adapter: name,
                               parse: SSHDConfigDriver.parse, driver: SSHDConfigDriver(validator: sshd), weakens: HostWeakening.sshd),
                KindDefinition(name: "Sysctl", adapter: name,
                               parse: SysctlDriver.parse, driver: SysctlDriver(), weakens: HostWeakening.sysctl),
                KindDefinition(name: "FileMode", adapter: name,
                               parse: FileModeDriver.parse, driver: FileModeDriver(), weakens: HostWeakening.fileMode),
                KindDefinition(name: "LoginDefs", adapter: name,
                               parse: LoginDefsDriver.parse, driver: LoginDefsDriver(), weakens: HostWeakening.loginDefs),
                KindDefinition(name: "UserAccount", adapter: name,
                               parse: UserAccountDriver.parse, driver: UserAccountDriver(), weakens: HostWeakening.account),
                KindDefinition(name: "ConfigFile", adapter: name, summary: "values in a YAML or JSON configuration file",
                               parse: ConfigFileDriver.parse, driver: ConfigFileDriver()),
            ])
    }

    @Sendable static func parseTarget(_ spec: SpecReader) -> [String: String]? {
        spec.allowOnly(["adapter", "root"])
        guard let reader = spec.field("root", required: true), let root = reader.string() else { return nil }
        let parts = root.split(separator: "/")
        guard root.hasPrefix("/"), !parts.contains("..") else {
            reader.fail("expected an absolute path (the folder that stands for /; / for the machine itself), got '\(root)'")
            return nil
        }
        return ["root": root]
    }
}
