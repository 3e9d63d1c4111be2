@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// A second person is another person, not another spelling: with both `--trusted-signers` and
/// `--trusted-keyring`, a weakening signed with one kind of key and approved with the other is
/// judged by who holds the keys (`SignerIdentity`), through the binary, with real `gpg` and
/// `ssh-keygen` keys and commits signed by the real `git`.
@Suite struct CrossSignatureApprovalTests {
    let signatures = SignatureTests()
    let safety = SafetyEndToEndTests()
    let provenance = ProvenanceTests()
    let rootLogin = "SSHDConfig/cis-5.1.20-permit-root-login"

    /// How a commit is signed: an SSH key, or an OpenPGP key of `home` named by its fingerprint.
    enum Signing {
        case ssh(SignatureTests.Key)
        case openpgp(home: String, fingerprint: String)
    }

    /// A GnuPG home with a key for each user id list (the first is the primary user id), the
    /// trusted keyring of all of them, and their fingerprints in that order.
    func makeKeys(_ dir: String, _ people: [[String]]) throws -> (home: String, keyring: String, fingerprints: [String]) {
        let home = dir + "/gnupg"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        func gpg(_ arguments: [String]) throws -> String {
            let result = try run("/usr/bin/gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", ""] + arguments,
                                 environment: ["GNUPGHOME": home])
            guard result.status == 0 else { throw SupportError("gpg \(arguments): \(result.stderr)") }
            return result.stdout
        }
        var fingerprints: [String] = []
        for userIDs in people {
            _ = try gpg(["--quick-gen-key", userIDs[0], "ed25519", "sign", "never"])
            let listed = try gpg(["--with-colons", "--list-keys", "=" + userIDs[0]])
            let fingerprint = try #require(listed.split(separator: "\n").first { $0.hasPrefix("fpr:") }?
                .split(separator: ":", omittingEmptySubsequences: false)[9]).description
            for other in userIDs.dropFirst() { _ = try gpg(["--quick-add-uid", fingerprint, other]) }
            fingerprints.append(fingerprint)
        }
        let keyring = dir + "/trusted.gpg"
        _ = try gpg(["--output", keyring, "--export"] + fingerprints)
        return (home, keyring, fingerprints)
    }

    /// Writes `files` in `work`, commits them signed as `signing` says, and pushes.
    func commit(_ files: [String: String], signed signing: Signing, in work: String) throws {
        for (path, text) in files {
            try write(work + "/" + path, text)
            try git("add", path, in: work)
        }
        let (options, environment): ([String], [String: String]) = switch signing {
        case .ssh(let key): (["-c", "gpg.format=ssh", "-c", "user.signingkey=\(key.privateKey)"], [:])
        case .openpgp(let home, let fingerprint):
            (["-c", "gpg.format=openpgp", "-c", "gpg.program=/usr/bin/gpg", "-c", "user.signingkey=\(fingerprint)"], ["GNUPGHOME": home])
        }
        let committed = try run("/usr/bin/git", options + ["commit", "-S", "-qm", "change \(files.keys.sorted().joined(separator: " "))"],
                                in: work, environment: environment)
        guard committed.status == 0 else { throw SupportError("git commit -S: \(committed.stderr)") }
        try git("push", "-q", "origin", "main", in: work)
    }

    /// The scenario applied once, then root login allowed in a commit signed as `weakener`, and
    /// applied with both trust files: held. Returns the clone, the trust options and the held id.
    func heldWeakening(_ dir: String, _ s: Scenario, signers: String, keyring: String, weakener: Signing) throws
        -> (work: String, trust: [String], id: String) {
        let work = try provenance.clone(s)
        try commit(["desired-state/hosts/sshd.yaml": try provenance.rootLoginAllowed(work)], signed: weakener, in: work)
        let trust = ["--trusted-signers", signers, "--trusted-keyring", keyring]
        let applied = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state] + trust)
        #expect(applied.status == 0, "\(applied.stderr)")
        let held = try #require(try safety.decisions(s, resource: rootLogin).first)
        #expect(held.decision == "held")
        #expect(try provenance.sshd(s).contains("\nPermitRootLogin no\n"))
        return (work, trust, held.id)
    }

    func apply(_ s: Scenario, _ trust: [String]) throws -> ProcessOutput {
        try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state] + trust)
    }

    /// Alice signs the weakening with her OpenPGP key (named by its fingerprint: her address is
    /// also an SSH principal) and approves it with her SSH key, named `alice@example.org`: two
    /// names, one person. Refused, recorded, and held; Bob, another person with other keys, then
    /// approves with his SSH key, and the weakening is applied, approved by him.
    @Test func anOpenPGPSignedWeakeningIsNotApprovedByTheSamePersonsSSHKey() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let gpg = try makeKeys(dir, [["Alice <alice@example.org>"]])
            let (aliceSSH, bobSSH) = (try signatures.makeKey(dir, "alice@example.org"), try signatures.makeKey(dir, "bob@example.org"))
            let signers = try signatures.allowedSigners(dir, aliceSSH, bobSSH)
            let (work, trust, id) = try heldWeakening(dir, s, signers: signers, keyring: gpg.keyring,
                                                      weakener: .openpgp(home: gpg.home, fingerprint: gpg.fingerprints[0]))
            let before = try s.snapshot()

            try commit(["approvals/\(id).yaml": provenance.approval(id, by: "alice@example.org")], signed: .ssh(aliceSSH), in: work)
            let own = try apply(s, trust)
            #expect(own.status == 0, "\(own.stderr)")
            #expect(own.stderr.contains("approval \(id) in approvals/\(id).yaml of the weakening of \(rootLogin) on local is refused"),
                    "\(own.stderr)")
            #expect(own.stderr.contains("are one person: both are 'alice@example.org'"), "\(own.stderr)")
            #expect(try s.snapshot() == before, "nothing weakened on the word of its own signer")
            #expect(try safety.decisions(s, resource: rootLogin).first?.decision == "held")
            let refused = try signatures.refusals(s)
            #expect(refused.count == 1)
            #expect(refused.first?.contains("approval \(id)") == true && refused.first?.contains("a weakening needs a second person") == true,
                    "\(refused)")
            // Applied again: recorded once.
            #expect(try apply(s, trust).status == 0)
            #expect(try signatures.refusals(s).count == 1)

            // Bob, with his own SSH key, approves across the kinds of signature: applied, by him.
            try commit(["approvals/\(id).yaml": provenance.approval(id, by: "bob@example.org")], signed: .ssh(bobSSH), in: work)
            let approved = try apply(s, trust)
            #expect(approved.status == 0, "\(approved.stderr)")
            #expect(try provenance.sshd(s).contains("\nPermitRootLogin yes\n"))
            let applied = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(applied.decision == "applied")
            #expect(applied.approver == "bob@example.org")
            #expect(try signatures.refusals(s).count == 1)
        }
    }

    /// Alice's OpenPGP key has two user ids: as it names two addresses, her signature is named
    /// by its fingerprint; her laptop's SSH key is the principal of the second address. The
    /// weakening signed with the OpenPGP key and approved with the laptop's key is one person's:
    /// refused and recorded. Carol, whose OpenPGP key names two addresses of her own, approves
    /// Bob's SSH-signed weakening: applied, approved by her key.
    @Test func anOpenPGPKeyWithTwoUserIDsIsOnePersonUnderEither() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let gpg = try makeKeys(dir, [["Alice <alice@example.org>", "Alice (laptop) <alice@corp.example>"],
                                         ["Carol <carol@example.org>", "Carol <carol@corp.example>"]])
            let (laptop, bobSSH) = (try signatures.makeKey(dir, "alice@corp.example"), try signatures.makeKey(dir, "bob@example.org"))
            let signers = try signatures.allowedSigners(dir, laptop, bobSSH)
            let (work, trust, id) = try heldWeakening(dir, s, signers: signers, keyring: gpg.keyring,
                                                      weakener: .openpgp(home: gpg.home, fingerprint: gpg.fingerprints[0]))
            let before = try s.snapshot()
            try commit(["approvals/\(id).yaml": provenance.approval(id, by: "alice@corp.example")], signed: .ssh(laptop), in: work)
            let own = try apply(s, trust)
            #expect(own.status == 0, "\(own.stderr)")
            #expect(own.stderr.contains("are one person: both are 'alice@corp.example'"), "\(own.stderr)")
            #expect(try s.snapshot() == before)
            #expect(try safety.decisions(s, resource: rootLogin).first?.decision == "held")
            #expect(try signatures.refusals(s).count == 1)

            // The legitimate twin, in a repository of its own: Bob weakens with his SSH key, Carol
            // approves with her OpenPGP key, named by its fingerprint (it names two addresses).
            let twinDir = dir + "/twin"
            try FileManager.default.createDirectory(atPath: twinDir, withIntermediateDirectories: true)
            let twin = try Scenario(in: twinDir)
            #expect(try twin.run("apply").status == 0)
            let bobs = try heldWeakening(twinDir, twin, signers: signers, keyring: gpg.keyring, weakener: .ssh(bobSSH))
            let carol = gpg.fingerprints[1].uppercased()
            try commit(["approvals/\(bobs.id).yaml": provenance.approval(bobs.id, by: carol)],
                       signed: .openpgp(home: gpg.home, fingerprint: gpg.fingerprints[1]), in: bobs.work)
            let approved = try apply(twin, bobs.trust)
            #expect(approved.status == 0, "\(approved.stderr)")
            #expect(try provenance.sshd(twin).contains("\nPermitRootLogin yes\n"))
            let applied = try #require(try safety.decisions(twin, resource: rootLogin).first)
            #expect(applied.decision == "applied")
            #expect(applied.approver == carol)
            #expect(try signatures.refusals(twin).isEmpty)
        }
    }
    /// A host with `gpgv` and no `gpg` (what verifying needs, and all a minimal image may have):
    /// an approval signed with Alice's OpenPGP key names her by her key's address as with `gpg`,
    /// so Bob's SSH-signed weakening she approves is applied; the keyring is read in-process.
    @Test func anOpenPGPSignedApprovalCountsWhereOnlyGpgvIsInstalled() async throws {
        try await withTemporaryDirectory { dir in
            // Every tool of the system's folders but gpg.
            let tools = dir + "/tools"
            try FileManager.default.createDirectory(atPath: tools, withIntermediateDirectories: true)
            for folder in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where !name.hasPrefix("gpg") {
                    _ = symlink(folder + "/" + name, tools + "/" + name)
                }
            }
            _ = symlink("/usr/bin/gpgv", tools + "/gpgv")
            #expect(!FileManager.default.fileExists(atPath: tools + "/gpg"))
            let path = ["PATH": tools]

            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let gpg = try makeKeys(dir, [["Alice <alice@example.org>"]])
            let bobSSH = try signatures.makeKey(dir, "bob@example.org")
            let signers = try signatures.allowedSigners(dir, bobSSH)
            let (work, trust, id) = try heldWeakening(dir, s, signers: signers, keyring: gpg.keyring, weakener: .ssh(bobSSH))
            let before = try s.snapshot()

            try commit(["approvals/\(id).yaml": provenance.approval(id, by: "alice@example.org")],
                       signed: .openpgp(home: gpg.home, fingerprint: gpg.fingerprints[0]), in: work)
            let approved = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state] + trust, environment: path)
            #expect(approved.status == 0, "\(approved.stderr)")
            #expect(try provenance.sshd(s).contains("\nPermitRootLogin yes\n"), "\(approved.stderr)")
            let applied = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(applied.decision == "applied")
            #expect(applied.approver == "alice@example.org")
            #expect(try s.snapshot() != before)
        }
    }

    /// One ed25519 key used both as an SSH key (principal `dana-ssh`) and inside an OpenPGP key
    /// (`dana@example.org`) is one person, though no name ties the two: the same 32 bytes are in
    /// both. Erin's own SSH key stays another person.
    @Test func oneEd25519KeyAsSSHAndOpenPGPKeyIsOnePerson() async throws {
        try await withTemporaryDirectory { dir in
            let gpg = try makeKeys(dir, [["Dana <dana@example.org>"]])
            // The OpenPGP key's own ed25519 key, as an SSH public key (`!`: the signing key itself).
            let exported = try run("/usr/bin/gpg", ["--batch", "--export-ssh-key", gpg.fingerprints[0] + "!"],
                                   environment: ["GNUPGHOME": gpg.home])
            #expect(exported.status == 0, "\(exported.stderr)")
            let danaSSH = exported.stdout.split(separator: " ").prefix(2).joined(separator: " ")
            #expect(danaSSH.hasPrefix("ssh-ed25519 "))
            let erin = try signatures.makeKey(dir, "erin@example.org")
            let signers = dir + "/allowed_signers"
            try write(signers, "dana-ssh namespaces=\"git\" \(danaSSH)\n" + erin.allowedLine)
            let people = SignerIdentities.read(allowedSigners: signers, keyring: gpg.keyring, folder: dir)
            let viaSSH = people.identity(shown: "dana-ssh", from: ["ssh:" + danaSSH.split(separator: " ")[1], "name:dana-ssh"])
            let viaOpenPGP = people.identity(shown: "dana@example.org", from: ["openpgp:" + gpg.fingerprints[0].uppercased()])
            #expect(viaSSH.keys == viaOpenPGP.keys)
            #expect(viaSSH.keys.contains { $0.hasPrefix("ed25519:") })
            let same = viaSSH.samePerson(as: viaOpenPGP)
            #expect(same?.contains("are one person") == true, "\(String(describing: same))")
            let erinPerson = people.identity(shown: "erin@example.org",
                                             from: ["ssh:" + (try read(erin.privateKey + ".pub")).split(separator: " ")[1], "name:erin@example.org"])
            #expect(erinPerson.samePerson(as: viaOpenPGP) == nil)
            #expect(erinPerson.samePerson(as: viaSSH) == nil)
        }
    }

    /// The trusted files tie names and keys together: a key listed for two principals (on one
    /// line or two) is one person under both, a principal pattern is everyone it matches, an
    /// OpenPGP key is each address of its user ids, and a key whose user ids name no address is
    /// no one's (told apart from nobody). Other people stay apart.
    @Test func theTrustedFilesTieNamesAndKeysIntoPeople() async throws {
        try await withTemporaryDirectory { dir in
            let gpg = try makeKeys(dir, [["Alice <alice@example.org>", "Alice (laptop) <alice@corp.example>"], ["Build robot"]])
            let ops = try signatures.makeKey(dir, "ops")
            let bob = try signatures.makeKey(dir, "bob@example.org")
            let robot = try signatures.makeKey(dir, "*@robots.example")
            let signers = dir + "/allowed_signers"
            try write(signers, "# the team\n" + ops.allowedLine + ops.allowedLine.replacingOccurrences(of: "ops ", with: "\"root@example.org\" ")
                      + bob.allowedLine + robot.allowedLine + "alice@corp.example,ci@robots.example namespaces=\"git\",valid-after=\"20200101\" "
                      + bob.allowedLine.split(separator: " ").suffix(2).joined(separator: " "))
            let people = SignerIdentities.read(allowedSigners: signers, keyring: gpg.keyring, folder: dir)
            func key(_ k: SignatureTests.Key) throws -> String {
                "ssh:" + (try read(k.privateKey + ".pub")).split(separator: " ")[1]
            }
            let opsPerson = people.identity(shown: "ops", from: [try key(ops), "name:ops"])
            #expect(opsPerson.names == ["ops", "root@example.org"])
            let alice = people.identity(shown: gpg.fingerprints[0], from: ["openpgp:" + gpg.fingerprints[0]])
            // Bob's key is also listed for alice@corp.example: Bob and Alice cannot be told apart.
            let bobPerson = people.identity(shown: "bob@example.org", from: [try key(bob), "name:bob@example.org"])
            #expect(bobPerson.samePerson(as: alice)?.contains("are one person") == true)
            #expect(alice.names.isSuperset(of: ["alice@example.org", "alice@corp.example", "bob@example.org", "ci@robots.example"]))
            // The pattern is everyone it matches: ci@robots.example, so Alice too.
            let robotPerson = people.identity(shown: "*@robots.example", from: [try key(robot), "name:*@robots.example"])
            #expect(robotPerson.samePerson(as: alice) != nil)
            #expect(opsPerson.samePerson(as: alice) == nil)
            // The build robot's OpenPGP key names no address: known only by its key.
            let nameless = people.identity(shown: gpg.fingerprints[1], from: ["openpgp:" + gpg.fingerprints[1]])
            #expect(!nameless.isTiedDown)
            #expect(nameless.samePerson(as: opsPerson)?.contains("is known only by its key") == true)
        }
    }
}
