public import BulwarkCore

/// The host adapter: Linux security settings under a target's root directory.
public enum HostAdapter {
    public static let name = "host"

    /// `relative` paths (`etc/passwd`, `/etc/shadow`; a trailing `/` for a folder) under the
    /// target's root, as absolute paths. Only for watching: no symlink is followed here.
    static func paths(_ target: Target, _ relative: [String]) -> [String] {
        guard let root = target.hostRoot else { return [] }
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        return relative.map { base + "/" + ($0.hasPrefix("/") ? String($0.dropFirst()) : $0) }
    }

    /// Keeps sshd's and ssh's answers about configurations in `stateDirectory`'s `sshd-answers`
    /// folder for the processes that follow (`SSHDAnswerStore`). Returns why not, where that
    /// folder is not this user's alone: answers are then kept for this process only.
    public static func keepAnswers(in stateDirectory: String) -> String? {
        SSHDProbeCache.shared.keep(in: stateDirectory + "/sshd-answers")
    }

    /// The adapter and its kinds. `sshd` checks candidate sshd configurations.
    public static func definition(sshd: SSHDValidator = .system) -> AdapterDefinition {
        let sshdDriver = SSHDConfigDriver(validator: sshd)
        // ConfigFile's judgement spots known weakenings only: the direction of any other key is
        // not known, so a finding's change to it still waits for a person (`judgesDirection`).
        var configFile = KindDefinition(name: "ConfigFile", adapter: name, parse: ConfigFileDriver.parse, driver: ConfigFileDriver(),
                                        weakens: ConfigFileWeakening.weakens)
        configFile.judgesDirection = false
        configFile.weakensNew = ConfigFileWeakening.weakensNew
        configFile.weakensThrough = ConfigFileWeakening.weakensThrough
        configFile.conflicts = ConfigFileWeakening.conflicts
        // Every host kind judges a property no earlier revision set as if it had been off, by
        // its own rule (`HostWeakening.judgedNew`).
        func judged(_ kind: KindDefinition, new: @escaping @Sendable (String, String) -> String?) -> KindDefinition {
            var kind = kind
            kind.weakensNew = new
            return kind
        }
        return AdapterDefinition(
            name: name,
            settings: HostTargetSettings.parse,
            kinds: [
                judged(KindDefinition(name: "SSHDConfig", adapter: name,
                                      parse: SSHDConfigDriver.parse, driver: sshdDriver, weakens: HostWeakening.sshd),
                       new: HostWeakening.sshdNew),
                judged(KindDefinition(name: "Sysctl", adapter: name,
                                      parse: SysctlDriver.parse, driver: SysctlDriver(), weakens: HostWeakening.sysctl),
                       new: HostWeakening.sysctlNew),
                judged(KindDefinition(name: "FileMode", adapter: name,
                                      parse: FileModeDriver.parse, driver: FileModeDriver(), weakens: HostWeakening.fileMode),
                       new: HostWeakening.fileModeNew),
                judged(KindDefinition(name: "LoginDefs", adapter: name,
                                      parse: LoginDefsDriver.parse, driver: LoginDefsDriver(), weakens: HostWeakening.loginDefs),
                       new: HostWeakening.loginDefsNew),
                judged(KindDefinition(name: "UserAccount", adapter: name,
                                      parse: UserAccountDriver.parse, driver: UserAccountDriver(sshd: sshdDriver),
                                      weakens: HostWeakening.account),
                       new: HostWeakening.accountNew),
                configFile,
            ])
    }
}
