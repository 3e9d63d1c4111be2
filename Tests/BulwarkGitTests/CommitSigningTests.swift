import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Commits signed in-process with an ed25519 key that `ssh-keygen` made, read back and verified
/// by the real `git verify-commit` and `ssh-keygen -Y verify`.
@Suite struct CommitSigningTests {
    let author = Signature(name: "Bulwark", email: "bulwark@localhost", time: Date(timeIntervalSince1970: 1_800_000_000))

    /// A fresh key: (private key path, allowed_signers path holding its public half as `bulwark`).
    func makeKey(_ dir: String, name: String = "key", passphrase: String = "") throws -> (key: String, allowed: String) {
        let path = dir + "/" + name
        let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", passphrase, "-C", "bulwark", "-f", path])
        guard made.status == 0 else { throw SupportError("ssh-keygen failed: \(made.stderr)") }
        let publicKey = try read(path + ".pub").split(separator: " ").prefix(2).joined(separator: " ")
        try write(dir + "/\(name).allowed", "bulwark namespaces=\"git\" \(publicKey)\n")
        return (path, dir + "/\(name).allowed")
    }

    func verify(_ gitDir: String, _ commit: String, allowed: String) throws -> ProcessOutput {
        try run("/usr/bin/git", ["--git-dir", gitDir, "-c", "gpg.ssh.allowedSignersFile=\(allowed)", "verify-commit", commit])
    }

    @Test func signedCommitsVerifyWithGitAndUnsignedOnesDoNot() async throws {
        try await withTemporaryDirectory { dir in
            let (keyPath, allowed) = try makeKey(dir)
            let signer = try SSHSigningKey(openSSH: read(keyPath))
            #expect(signer.publicKeyLine == (try read(keyPath + ".pub")).split(separator: " ").prefix(2).joined(separator: " "))
            let fingerprint = try run("/usr/bin/ssh-keygen", ["-l", "-f", keyPath + ".pub"]).stdout
            #expect(fingerprint.contains(signer.fingerprint + " "))

            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            let first = try repo.writeCommit(adding: ["audit/a.json": Array("{}\n".utf8)], parent: nil,
                                             message: "first\n\nBulwark-Id: 01A\n", author: author, signer: signer)
            let second = try repo.writeCommit(adding: ["audit/b.json": Array("[]\n".utf8)], parent: first,
                                              message: "second\n\nBulwark-Id: 01B\n", author: author, signer: signer)
            try repo.updateReference("refs/heads/bulwark/audit", to: second, expected: nil, message: "test")
            for commit in [first, second] {
                let verified = try verify(dir + "/r.git", commit.hex, allowed: allowed)
                #expect(verified.status == 0, "\(verified.stderr)")
                #expect(verified.stderr.contains("Good \"git\" signature for bulwark with ED25519 key \(signer.fingerprint)"))
            }
            let log = try git("--git-dir", dir + "/r.git", "-c", "gpg.ssh.allowedSignersFile=\(allowed)", "log", "--format=%G? %GS", "bulwark/audit")
            #expect(log == "G bulwark\nG bulwark\n")
            try git("--git-dir", dir + "/r.git", "fsck", "--strict")
            // The signature libgit2 reads back is the one git verified.
            #expect(try repo.signature(of: second)?.signature.starts(with: Array("-----BEGIN SSH SIGNATURE-----".utf8)) == true)

            // The same commit unsigned: git refuses it.
            let unsigned = try repo.writeCommit(adding: ["audit/c.json": Array("1\n".utf8)], parent: second,
                                                message: "third\n\nBulwark-Id: 01C\n", author: author)
            #expect(try verify(dir + "/r.git", unsigned.hex, allowed: allowed).status != 0)
            #expect(try repo.signature(of: unsigned) == nil)

            // Signed by another key: git refuses it against the first key's allowed signers.
            let (otherPath, _) = try makeKey(dir, name: "other")
            let other = try repo.writeCommit(adding: ["audit/d.json": Array("2\n".utf8)], parent: second,
                                             message: "fourth\n\nBulwark-Id: 01D\n", author: author,
                                             signer: try SSHSigningKey(openSSH: read(otherPath)))
            #expect(try verify(dir + "/r.git", other.hex, allowed: allowed).status != 0)
        }
    }

    /// A commit is read as signed only as git reads it: a signature moved into the message (git:
    /// unsigned), a second signature header, or a NUL after which libgit2 stops the signed bytes
    /// (the id then covers more than was signed) are refused; the commit as signed is read.
    @Test func aSignatureOutsideTheHeadersTwoSignaturesOrANulAreNotReadAsSigned() async throws {
        try await withTemporaryDirectory { dir in
            let (keyPath, _) = try makeKey(dir)
            let signer = try SSHSigningKey(openSSH: read(keyPath))
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            let signed = try repo.writeCommit(adding: ["a.txt": Array("a\n".utf8)], parent: nil, message: "signed\n",
                                              author: author, signer: signer)
            #expect(try repo.signature(of: signed) != nil)
            let raw = try run("/usr/bin/git", ["--git-dir", dir + "/r.git", "cat-file", "commit", signed.hex]).stdout
            let parts = raw.components(separatedBy: "\n\n")
            let headers = parts[0]
            let message = parts.dropFirst().joined(separator: "\n\n")
            let lines = headers.components(separatedBy: "\n")
            let start = try #require(lines.firstIndex { $0.hasPrefix("gpgsig ") })
            var end = start + 1
            while end < lines.count, lines[end].hasPrefix(" ") { end += 1 }
            let signatureBlock = lines[start..<end].joined(separator: "\n")
            let plain = (lines[..<start] + lines[end...]).joined(separator: "\n")
            func store(_ text: String) throws -> ObjectID {
                try write(dir + "/object", text)
                let id = try run("/usr/bin/git", ["--git-dir", dir + "/r.git", "hash-object", "-t", "commit", "--literally", "-w", dir + "/object"])
                return try #require(ObjectID(hex: id.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
            }
            let inMessage = try store(plain + "\n" + "\n" + message + signatureBlock + "\n")
            let twice = try store(headers + "\n" + signatureBlock.replacingOccurrences(of: "gpgsig ", with: "gpgsig-sha256 ") + "\n\n" + message)
            let nul = try store(headers + "\n\n" + message + "\u{0}appended\n")
            #expect(try run("/usr/bin/git", ["--git-dir", dir + "/r.git", "log", "-1", "--format=%G?", inMessage.hex]).stdout == "N\n")
            for (commit, why) in [(inMessage, "not among its headers"), (twice, "2 signature headers"), (nul, "NUL byte")] {
                #expect(throws: GitError.self) { _ = try repo.signature(of: commit) }
                do { _ = try repo.signature(of: commit) } catch { #expect("\(error)".contains(why), "\(error)") }
            }
        }
    }

    @Test func replayedCommitsAreSignedAgain() async throws {
        try await withTemporaryDirectory { dir in
            let (keyPath, allowed) = try makeKey(dir)
            let signer = try SSHSigningKey(openSSH: read(keyPath))
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            let base = try repo.writeCommit(adding: ["audit/a.json": Array("{}\n".utf8)], parent: nil,
                                            message: "base\n", author: author, signer: signer)
            let theirs = try repo.writeCommit(adding: ["audit/b.json": Array("{}\n".utf8)], parent: base,
                                              message: "theirs\n", author: author, signer: signer)
            let mine = try repo.writeCommit(adding: ["audit/c.json": Array("{}\n".utf8)], parent: base,
                                            message: "mine\n", author: author, signer: signer)
            let replayed = try repo.replay(mine, onto: theirs, signer: signer)
            try repo.updateReference("refs/heads/x", to: replayed, expected: nil, message: "test")
            #expect(try verify(dir + "/r.git", replayed.hex, allowed: allowed).status == 0)
            #expect(try git("--git-dir", dir + "/r.git", "show", "--format=%s", "--no-patch", "x") == "mine\n")
        }
    }

    @Test func refusesKeysItCannotUse() async throws {
        try await withTemporaryDirectory { dir in
            let (protected, _) = try makeKey(dir, name: "protected", passphrase: "secret words")
            #expect(throws: GitError.self) { try SSHSigningKey(openSSH: read(protected)) }
            do {
                _ = try SSHSigningKey(openSSH: read(protected))
            } catch {
                #expect((error as? GitError)?.message.contains("passphrase") == true)
            }
            let ecdsa = dir + "/ecdsa"
            _ = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", ecdsa])
            #expect(throws: GitError.self) { try SSHSigningKey(openSSH: read(ecdsa)) }
            #expect(throws: GitError.self) { try SSHSigningKey(openSSH: read(ecdsa + ".pub")) }
            #expect(throws: GitError.self) { try SSHSigningKey(openSSH: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n") }
        }
    }

    @Test func anSSHSignatureIsCheckedInProcessAgainstTheBytesItSigned() async throws {
        try await withTemporaryDirectory { dir in
            let (keyPath, _) = try makeKey(dir)
            let signer = try SSHSigningKey(openSSH: read(keyPath))
            let repo = try Repository.create(at: dir + "/r.git", bare: true)
            let commit = try repo.writeCommit(adding: ["a.json": Array("{}\n".utf8)], parent: nil, message: "m\n", author: author,
                                              signer: signer)
            let signed = try #require(try repo.signature(of: commit))
            let parsed = try #require(SSHSignature(armored: signed.signature))
            #expect(parsed.namespace == "git")
            #expect(parsed.publicKeyLine == signer.publicKeyLine)
            #expect(parsed.isValidEd25519(of: signed.signedData))
            var altered = signed.signedData
            altered[altered.count - 2] ^= 1
            #expect(!parsed.isValidEd25519(of: altered))
            #expect(!parsed.isValidEd25519(of: signed.signedData, namespace: "file"))
            // A signature made by ssh-keygen itself is read and checked the same way.
            try Data(signed.signedData).write(to: URL(fileURLWithPath: dir + "/data"))
            let made = try run("/usr/bin/ssh-keygen", ["-Y", "sign", "-n", "git", "-f", keyPath, dir + "/data"])
            #expect(made.status == 0, "\(made.stderr)")
            let theirs = try #require(SSHSignature(armored: Array(try read(dir + "/data.sig").utf8)))
            #expect(theirs.isValidEd25519(of: signed.signedData))
            #expect(SSHSignature(armored: Array("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".utf8)) == nil)
        }
    }
}
