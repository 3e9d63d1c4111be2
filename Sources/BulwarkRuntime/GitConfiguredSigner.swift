import BulwarkGit
import Foundation

/// Signs a commit the way `git commit -S` does with `gpg.format ssh`: `ssh-keygen -Y sign -n git`
/// with the key `user.signingkey` names (a private key, a public key whose private half is in
/// the ssh-agent, or a literal `key::ssh-ed25519 …` held by the agent). One process per commit:
/// for the few commits a person makes (`bulwark approve`), not for the audit trail.
package struct GitConfiguredSigner: CommitSigner {
    /// The key file (or the literal public key, for the agent).
    package let key: String
    package let literal: Bool
    /// What the commit is, for the line that says what is signed (`the approval of 01JD…`):
    /// ssh-keygen's own "Signing file /tmp/…/commit" names a temporary file.
    package var subject = "the commit"

    /// The signer git's configuration asks for, nil when it does not ask for an SSH signature
    /// (`gpg.format` is not `ssh` or `user.signingkey` is unset).
    package init?(configuration value: (String) -> String?, home: String = ProcessInfo.processInfo.environment["HOME"] ?? "/root") {
        guard value("gpg.format") == "ssh", let key = value("user.signingkey"), !key.isEmpty else { return nil }
        if key.hasPrefix("key::") {
            self.key = String(key.dropFirst(5))
            literal = true
        } else if key.hasPrefix("ssh-") {
            self.key = key
            literal = true
        } else {
            self.key = key.hasPrefix("~/") ? home + key.dropFirst(1) : key
            literal = false
        }
    }

    package func signature(of commit: [UInt8]) throws -> String {
        let folder = try SourceVerification.privateFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/commit"
        guard FileManager.default.createFile(atPath: data, contents: Data(commit), attributes: [.posixPermissions: 0o600]) else {
            throw CommandError("cannot write \(data) to sign the commit")
        }
        var arguments = ["-Y", "sign", "-n", "git", "-f"]
        if literal {
            let keyFile = folder + "/key.pub"
            guard FileManager.default.createFile(atPath: keyFile, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CommandError("cannot write \(keyFile) to sign the commit")
            }
            arguments += [keyFile, "-U"]
        } else {
            arguments.append(key)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: SourceVerification.executable)
        process.arguments = arguments + [data]
        process.standardOutput = FileHandle.nullDevice
        // A passphrase prompt goes to the terminal (ssh-keygen opens /dev/tty); its messages are
        // passed on but for "Signing file …", which names the temporary file: the line above says what is signed.
        let messages = Pipe()
        process.standardError = messages
        FileHandle.standardError.write(Data("Signing \(subject) with user.signingkey \(literal ? "(a key in the agent)" : key)\n".utf8))
        do { try process.run() } catch {
            throw CommandError("cannot run \(SourceVerification.executable) to sign the commit: \(error.localizedDescription)")
        }
        let said = String(decoding: messages.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let shown = said.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("Signing file ") }.joined(separator: "\n")
        if !shown.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { FileHandle.standardError.write(Data(shown.utf8)) }
        guard process.terminationStatus == 0, let signature = try? String(contentsOfFile: data + ".sig", encoding: .utf8) else {
            throw CommandError("ssh-keygen could not sign the commit with user.signingkey \(literal ? "(a key in the agent)" : key)")
        }
        return signature
    }
}
