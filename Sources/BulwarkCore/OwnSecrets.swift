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
    /// Each credential, and the one destination (`host:port`) it may still be sent to (the lease
    /// database's password to that database, which may also be a managed target), or none.
    private static let values = Mutex<[String: String?]>([:])

    /// Remembers `value` (surrounding whitespace aside) as one of Bulwark's own credentials; with
    /// `destination` (`host:port`), a target there may use it (it is that server's own password).
    public static func register(_ value: String?, destination: String? = nil) {
        guard let value = value.map(normalized), !value.isEmpty else { return }
        values.withLock { values in
            // Once unbound, never bound again: a credential registered for nothing stays so.
            if let existing = values[value], existing == nil { return }
            values[value] = .some(destination.map { $0.lowercased() })
        }
    }

    /// Whether `value` is one of Bulwark's own credentials that may not go to `destination`.
    public static func contains(_ value: String, destination: String? = nil) -> Bool {
        let value = normalized(value)
        return values.withLock { values in
            guard let bound = values[value] else { return false }
            guard let bound, let destination else { return true }
            return bound != destination.lowercased()
        }
    }

    /// Environment variables a policy may not name as a secret's source: Bulwark's own, and the
    /// AWS credentials it signs with, whatever they hold now. (Their values are remembered at
    /// start too: `registerEnvironment`.)
    public static func isReservedVariable(_ name: String) -> Bool {
        reservedVariables.contains(name)
    }

    public static let reservedVariables: Set<String> = [
        "BULWARK_GIT_PASSWORD", "BULWARK_SSH_PASSPHRASE", "BULWARK_SSH_KEY", "BULWARK_SIGNING_KEY", "BULWARK_LEASE_PASSWORD",
        "BULWARK_WEBHOOK_SECRET", "BULWARK_FINDINGS_TOKEN", "BULWARK_FINDINGS_SECRET", "BULWARK_REPO",
        "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    ]

    /// The names of Bulwark's own credentials as systemd hands them over (`$CREDENTIALS_DIRECTORY/NAME`,
    /// or `bulwark_NAME` from `LoadCredential=bulwark:…`), which no target's `passwordFile` may
    /// name: a target called `ssh-key` would otherwise name Bulwark's SSH key as its own file.
    public static let credentialFileNames: Set<String> = [
        "git-password", "signing-key", "ssh-key", "webhook-secret", "findings-token", "findings-secret",
    ]

    /// Whether a secret file named `name` (its last path component) is one of Bulwark's own credentials.
    public static func isReservedFileName(_ name: String) -> Bool {
        credentialFileNames.contains(name) || (name.hasPrefix("bulwark_") && credentialFileNames.contains(String(name.dropFirst(8))))
    }

    /// Remembers the values of the reserved variables this process has (and the password in a
    /// `BULWARK_REPO` URL), so that no other name, nor a file, carries them to a target either.
    public static func registerEnvironment(_ environment: [String: String]) {
        // The lease password is registered with its database (`ControllerOptions`); the key
        // variables name files, read where they are used.
        let named: Set = ["BULWARK_REPO", "BULWARK_SSH_KEY", "BULWARK_SIGNING_KEY", "BULWARK_LEASE_PASSWORD"]
        for name in reservedVariables where !named.contains(name) {
            register(environment[name])
        }
        if let repo = environment["BULWARK_REPO"] { registerURLPassword(repo) }
    }

    /// Remembers the password (or token) a URL carries (`https://user:TOKEN@host/…`).
    public static func registerURLPassword(_ url: String) {
        register(URLComponents(string: url)?.password)
    }

    private static func normalized(_ value: String) -> String {
        value.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
