internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension RepositoryOptions {
    /// The key that signs audit commits: `--signing-key`, else `$BULWARK_SIGNING_KEY`, read under
    /// the secrets folder rules (`SecretFiles`); nil when neither is given.
    /// - Throws: `CommandError` naming the file (never its contents) when it is outside the secrets
    ///   folder, unreadable, not private to the user Bulwark runs as (`SecretFiles.privateKeyDoubt`:
    ///   whoever can read it can forge records), or not an unencrypted ed25519 OpenSSH key.
    func auditSigner(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SSHSigningKey? {
        guard let path = signingKey ?? environment["BULWARK_SIGNING_KEY"].flatMap({ $0.isEmpty ? nil : $0 })
            ?? SystemdCredentials.path("signing-key", environment: environment) else { return nil }
        // On the command line a relative path is the shell's: relative to the working directory.
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let text: String
        do { text = try SecretFiles.read(absolute, environment: environment, privateKey: true) } catch {
            throw CommandError("cannot use the signing key: \(error)")
        }
        OwnSecrets.register(text)
        do { return try SSHSigningKey(openSSH: text) } catch {
            throw CommandError("cannot use the signing key \(path): \(error.message)")
        }
    }
}
