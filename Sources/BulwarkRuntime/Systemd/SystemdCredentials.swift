internal import Foundation

/// Secrets systemd hands the service (`LoadCredential=`): the packaged unit loads every file of
/// `/etc/bulwark/credentials` as `bulwark_<file>`, so that an operator drops `webhook-secret`,
/// `findings-token`, `findings-secret`, `ssh-key`, `git-password` or `signing-key` there and nothing else. They are
/// used only when neither a flag nor the environment names the secret; the files live in a
/// private, read-only folder of the service and never in its environment.
package enum SystemdCredentials {
    package static func path(_ name: String, environment: [String: String]) -> String? {
        guard let folder = environment["CREDENTIALS_DIRECTORY"], folder.hasPrefix("/") else { return nil }
        for candidate in ["\(folder)/bulwark_\(name)", "\(folder)/\(name)"] {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue {
                return candidate
            }
        }
        return nil
    }
}
