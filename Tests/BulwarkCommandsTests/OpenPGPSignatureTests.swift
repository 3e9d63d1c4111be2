@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// OpenPGP-signed policy commits (`--trusted-keyring`), with real keys made by `gpg` in a
/// throwaway GNUPGHOME and commits signed by the real `git`, verified by Bulwark with `gpgv`.
@Suite struct OpenPGPSignatureTests {
    struct GnuPG {
        let home: String
        let keyring: String

        func gpg(_ arguments: [String], faked: Bool = false) throws {
            let result = try run("/usr/bin/gpg", (faked ? ["--faked-system-time", "20200101T000000"] : [])
                                 + ["--batch", "--pinentry-mode", "loopback", "--passphrase", ""] + arguments,
                                 environment: ["GNUPGHOME": home])
            guard result.status == 0 else { throw SupportError("gpg \(arguments): \(result.stderr)") }
        }
    }

    /// A GnuPG home with alice (trusted), mallory (not exported to the keyring) and eve (trusted,
    /// but her key expired in 2020, when she signed), and the keyring of alice and eve.
    func makeGnuPG(_ dir: String) throws -> GnuPG {
        let home = dir + "/gnupg"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let g = GnuPG(home: home, keyring: dir + "/trusted.gpg")
        try g.gpg(["--quick-gen-key", "Alice <alice@example.org>", "ed25519", "sign", "never"])
        try g.gpg(["--quick-gen-key", "Mallory <mallory@example.org>", "ed25519", "sign", "never"])
        try g.gpg(["--quick-gen-key", "Eve <eve@example.org>", "ed25519", "sign", "1d"], faked: true)
        try g.gpg(["--output", g.keyring, "--export", "alice@example.org", "eve@example.org"])
        // git signs through this, so that eve's signature is made while her key was valid: twelve
        // hours after the key's making, not at the same faked second (once, on a loaded CI machine,
        // gpg failed to sign here; a key stamped later than the signing clock is one way to that).
        try write(dir + "/gpg-2020", "#!/bin/sh\nexec /usr/bin/gpg --faked-system-time 20200101T120000 \"$@\"\n", mode: 0o755)
        return g
    }

    /// Commits a file through a clone, OpenPGP-signed by `signer`, and pushes it. Returns the commit's 12-character id.
    func commit(_ s: Scenario, _ g: GnuPG, path: String, signer: String, past: Bool = false) throws -> String {
        let work = s.dir + "/work-\(UUID().uuidString.prefix(8))"
        try git("clone", "-q", s.origin, work)
        try write(work + "/" + path, "\(signer)\n")
        try git("add", "-A", in: work)
        let program = past ? s.dir + "/gpg-2020" : "/usr/bin/gpg"
        let committed = try run("/usr/bin/git", ["-c", "gpg.format=openpgp", "-c", "gpg.program=\(program)", "-c", "user.signingkey=\(signer)",
                                                 "commit", "-S", "-qm", "change \(path)"], in: work, environment: ["GNUPGHOME": g.home])
        guard committed.status == 0 else { throw SupportError("git commit -S: \(committed.stderr)") }
        try git("push", "-q", "origin", "main", in: work)
        return try git("rev-parse", "--short=12", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func anOpenPGPSignedChainAppliesAndBadSignersAreRefused() async throws {
        try await withTemporaryDirectory { dir in
            let helpers = SignatureTests()
            let s = try helpers.applied(dir)
            let g = try makeGnuPG(dir)

            // Legitimate: alice's key is in the keyring.
            _ = try commit(s, g, path: "notes/a.txt", signer: "alice@example.org")
            let applied = try s.run("apply", "--trusted-keyring", g.keyring)
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try helpers.isFixed(s))

            // A key not in the keyring.
            try helpers.drift(s)
            let before = try s.snapshot()
            let mallory = try commit(s, g, path: "notes/b.txt", signer: "mallory@example.org")
            let refused = try s.run("apply", "--trusted-keyring", g.keyring)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("commit \(mallory)"))
            #expect(refused.stderr.contains("it is signed by a key that is not in the trusted keyring"))
            #expect(try s.snapshot() == before, "nothing acted on the revision")
            #expect(try helpers.refusals(s).count == 1)
        }
    }

    /// `accept --proposer` with a keyring: only the key's full fingerprint names the proposer.
    /// User ids are what their holders wrote: one that carries the proposer's fingerprint, or
    /// lists its e-mail after a comma, is another key and is refused.
    @Test func aProposerIsItsKeysFingerprintNeverAUserIDItsHolderWrote() async throws {
        try await withTemporaryDirectory { dir in
            let s = try SignatureTests().applied(dir)
            let home = dir + "/gnupg"
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let g = GnuPG(home: home, keyring: dir + "/trusted.gpg")
            try g.gpg(["--quick-gen-key", "Bulwark proposer (fleet)", "ed25519", "sign", "never"])
            let listed = try run("/usr/bin/gpg", ["--batch", "--with-colons", "--list-keys", "Bulwark proposer"], environment: ["GNUPGHOME": home])
            let fingerprint = try #require(listed.stdout.split(separator: "\n").first { $0.hasPrefix("fpr:") }?
                .split(separator: ":", omittingEmptySubsequences: false)[9]).description
            try g.gpg(["--quick-gen-key", "Mallory Two <\(fingerprint)>", "ed25519", "sign", "never"])
            try g.gpg(["--quick-gen-key", "Mallory <mallory@corp,bulwark@fleet>", "ed25519", "sign", "never"])
            try g.gpg(["--output", g.keyring, "--export"])
            let verification = SourceVerification(allowedSigners: nil, trustedKeyring: g.keyring)
            func check(signer: String, proposer: String) throws -> Result<String, SourceVerification.Untrusted> {
                let id = try commit(s, g, path: "notes/\(UUID().uuidString.prefix(8)).txt", signer: signer)
                let repository = try Repository.open(at: s.origin)
                let full = try #require(ObjectID(hex: try git("--git-dir", s.origin, "rev-parse", id).trimmingCharacters(in: .whitespacesAndNewlines)))
                let signed = try #require(try repository.signature(of: full))
                let folder = try SourceVerification.privateFolder()
                defer { try? FileManager.default.removeItem(atPath: folder) }
                return try verification.verifyAny(signed, commit: full, folder: folder, proposer: proposer)
            }
            // The forgeries: a user id with the fingerprint in it, one with the e-mail after a comma.
            for (forger, proposer) in [("Mallory Two", fingerprint), ("mallory@corp", "bulwark@fleet"), ("mallory@corp", fingerprint)] {
                guard case .failure(let why) = try check(signer: forger, proposer: proposer) else {
                    Issue.record("\(forger)'s signature was taken for the proposer \(proposer)")
                    continue
                }
                #expect(why.description.contains("not by the proposer's key"), "\(why)")
            }
            // The proposer's own key, by its fingerprint (any case, with spaces).
            let spaced = stride(from: 0, to: fingerprint.count, by: 4).map { offset in
                String(fingerprint.dropFirst(offset).prefix(4)) }.joined(separator: " ").lowercased()
            for proposer in [fingerprint, spaced] {
                guard case .success = try check(signer: fingerprint, proposer: proposer) else {
                    Issue.record("the proposer's own signature was refused for \(proposer)")
                    continue
                }
            }
        }
    }

    /// A user id names the signer only when no one else can claim it: Mallory adds
    /// `<alice@example.org>` to her own key as its primary user id. With alice's key in the
    /// keyring, Mallory's signature is refused (two keys name the address); without it, Mallory
    /// is named by her key's fingerprint (her key names two addresses), never as alice. Alice's
    /// own signature is alice where no other key of the keyring names her address.
    @Test func aUserIDAnotherKeyClaimsNeverNamesTheSigner() async throws {
        try await withTemporaryDirectory { dir in
            let s = try SignatureTests().applied(dir)
            let g = try makeGnuPG(dir)
            let listed = try run("/usr/bin/gpg", ["--batch", "--with-colons", "--list-keys", "mallory@example.org"], environment: ["GNUPGHOME": g.home])
            let mallory = try #require(listed.stdout.split(separator: "\n").first { $0.hasPrefix("fpr:") }?
                .split(separator: ":", omittingEmptySubsequences: false)[9]).description
            try g.gpg(["--quick-add-uid", mallory, "Mallory's laptop <alice@example.org>"])
            try g.gpg(["--quick-set-primary-uid", mallory, "Mallory's laptop <alice@example.org>"])
            let both = dir + "/both.gpg"
            try g.gpg(["--output", both, "--export", mallory, "Alice <alice@example.org>"])
            let onlyMallory = dir + "/mallory.gpg"
            try g.gpg(["--output", onlyMallory, "--export", mallory])
            func signer(_ key: String, keyring: String) throws -> Result<String, SourceVerification.Untrusted> {
                let id = try commit(s, g, path: "notes/\(UUID().uuidString.prefix(8)).txt", signer: key)
                let repository = try Repository.open(at: s.origin)
                let full = try #require(ObjectID(hex: try git("--git-dir", s.origin, "rev-parse", id).trimmingCharacters(in: .whitespacesAndNewlines)))
                let signed = try #require(try repository.signature(of: full))
                let folder = try SourceVerification.privateFolder()
                defer { try? FileManager.default.removeItem(atPath: folder) }
                return try SourceVerification(allowedSigners: nil, trustedKeyring: keyring).verifyAny(signed, commit: full, folder: folder)
            }
            switch try signer(mallory, keyring: both) {
            case .success(let name): Issue.record("Mallory's signature was named \(name)")
            case .failure(let why): #expect(why.description.contains("other key(s) of the trusted keyring"), "\(why)")
            }
            #expect((try? signer(mallory, keyring: onlyMallory).get()) == mallory.uppercased())
            let aliceFingerprint = try run("/usr/bin/gpg", ["--batch", "--with-colons", "--list-keys", "Alice <alice@example.org>"],
                                           environment: ["GNUPGHOME": g.home]).stdout
                .split(separator: "\n").first { $0.hasPrefix("fpr:") }?.split(separator: ":", omittingEmptySubsequences: false)[9]
            let alice = String(try #require(aliceFingerprint))
            // While both keys name the address, alice cannot be told from Mallory either; with
            // the keyring of alice and eve, she is alice.
            #expect((try? signer(alice, keyring: both).get()) == nil)
            #expect((try? signer(alice, keyring: g.keyring).get()) == "alice@example.org")

            // An address the trusted signers file names (an SSH principal, by pattern too) is that
            // person's: an OpenPGP key is then named by its fingerprint, never by it.
            let sshKey = try SignatureTests().makeKey(dir, "ssh-alice")
            for pattern in ["alice@example.org", "*@example.org", "bob@x,Alice@Example.org"] {
                let allowed = dir + "/allowed-\(UUID().uuidString.prefix(6))"
                try write(allowed, sshKey.allowedLine.replacingOccurrences(of: "ssh-alice", with: pattern))
                let id = try commit(s, g, path: "notes/\(UUID().uuidString.prefix(8)).txt", signer: alice)
                let full = try #require(ObjectID(hex: try git("--git-dir", s.origin, "rev-parse", id).trimmingCharacters(in: .whitespacesAndNewlines)))
                let signed = try #require(try Repository.open(at: s.origin).signature(of: full))
                let folder = try SourceVerification.privateFolder()
                defer { try? FileManager.default.removeItem(atPath: folder) }
                let named = try SourceVerification(allowedSigners: allowed, trustedKeyring: g.keyring).verifyAny(signed, commit: full, folder: folder)
                #expect((try? named.get()) == alice.uppercased(), "\(pattern): \(named)")
            }
        }
    }

    @Test func aSignatureByAnExpiredKeyIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let helpers = SignatureTests()
            let s = try helpers.applied(dir)
            let g = try makeGnuPG(dir)
            let before = try s.snapshot()
            let eve = try commit(s, g, path: "notes/e.txt", signer: "eve@example.org", past: true)
            let refused = try s.run("apply", "--trusted-keyring", g.keyring)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("commit \(eve)"))
            #expect(refused.stderr.contains("the key that made it has expired"))
            #expect(try s.snapshot() == before)
            #expect(try helpers.refusals(s).count == 1)
            // An SSH-only Bulwark does not take an OpenPGP signature as trusted either.
            let alice = try helpers.makeKey(dir, "alice@example.org")
            let ssh = try s.run("plan", "--trusted-signers", try helpers.allowedSigners(dir, alice))
            #expect(ssh.status == 1)
            #expect(ssh.stderr.contains("signed with OpenPGP, and no --trusted-keyring is given"))
        }
    }
}
