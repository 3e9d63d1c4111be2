internal import Foundation
internal import Synchronization

/// Bulwark's own credentials, as this process read them (the git password, the signing key, the
/// webhook secret, the findings token, the lease password, the SSH key and its passphrase), so
/// that no secret a policy names is one of them. A policy chooses both a Target's host and where
/// its password comes from (`passwordEnv`, `passwordFile`): without this, one commit could point
/// a database target at its own server and name the git password, or the audit signing key in
/// the secrets folder, as the password, and receive it. The values stay in memory only, as the
/// credentials themselves do; they are compared, never shown.
public enum OwnSecrets {
    private static let values = Mutex<Set<String>>([])

    /// Remembers `value` (surrounding whitespace aside) as one of Bulwark's own credentials.
    public static func register(_ value: String?) {
        guard let value = value.map(normalized), !value.isEmpty else { return }
        values.withLock { _ = $0.insert(value) }
    }

    /// Whether `value` is one of Bulwark's own credentials.
    public static func contains(_ value: String) -> Bool {
        let value = normalized(value)
        return values.withLock { $0.contains(value) }
    }

    /// Environment variables a policy may not name as a secret's source: Bulwark's own and the
    /// AWS credentials it signs with (`AWS_…`), whatever they hold now.
    public static func isReservedVariable(_ name: String) -> Bool {
        name.hasPrefix("AWS_") || reservedVariables.contains(name)
    }

    public static let reservedVariables: Set<String> = [
        "BULWARK_GIT_PASSWORD", "BULWARK_SSH_PASSPHRASE", "BULWARK_SSH_KEY", "BULWARK_SIGNING_KEY", "BULWARK_LEASE_PASSWORD",
        "BULWARK_WEBHOOK_SECRET", "BULWARK_FINDINGS_TOKEN",
    ]

    private static func normalized(_ value: String) -> String {
        value.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
