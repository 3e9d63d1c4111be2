@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// Per-path signer rules (`--trust-policy`): the glob matching and parsing, and through the binary
/// with real ssh-keygen-signed commits, a signer changing a path it may not refuses the revision.
@Suite struct TrustPolicyTests {
    @Test func globsMatchSegmentsAsDocumented() {
        #expect(TrustPolicy.matches("approvals/**", "approvals/a.yaml"))
        #expect(TrustPolicy.matches("approvals/**", "approvals/x/y/z.yaml"))
        #expect(!TrustPolicy.matches("approvals/**", "approvalsX/a.yaml"))
        #expect(!TrustPolicy.matches("approvals/**", "desired-state/approvals/a.yaml"))
        #expect(TrustPolicy.matches("**", "desired-state/hosts/sshd.yaml"))
        #expect(TrustPolicy.matches("**/*.yaml", "a/b/c.yaml"))
        #expect(TrustPolicy.matches("**/*.yaml", "c.yaml"))
        #expect(!TrustPolicy.matches("**/*.yaml", "c.yml"))
        #expect(TrustPolicy.matches("controllers/*.yaml", "controllers/targets.yaml"))
        #expect(!TrustPolicy.matches("controllers/*.yaml", "controllers/x/targets.yaml"))
        #expect(TrustPolicy.matches("notes/?.txt", "notes/a.txt"))
        #expect(!TrustPolicy.matches("notes/?.txt", "notes/ab.txt"))
    }

    @Test func theLastMatchingLineDecidesAndUnmatchedPathsAreRefused() throws {
        let policy = try TrustPolicy.parse("""
            # everyone trusted may change the desired state
            desired-state/**   *
            approvals/**       security@example.org   carol@example.org
            """, file: "/etc/bulwark/trust")
        #expect(policy.refusal(of: "alice@example.org", changing: "desired-state/hosts/a.yaml") == nil)
        #expect(policy.refusal(of: "carol@example.org", changing: "approvals/x.yaml") == nil)
        let refused = try #require(policy.refusal(of: "alice@example.org", changing: "approvals/x.yaml"))
        #expect(refused == "alice@example.org may not change approvals/x.yaml (trust policy /etc/bulwark/trust:3: approvals/** only by security@example.org, carol@example.org)")
        #expect(policy.refusal(of: "security@example.org", changing: "controllers/targets.yaml")?
            .contains("matched by no rule of the trust policy /etc/bulwark/trust, so nobody may change it") == true)

        #expect(throws: CommandError.self) { try TrustPolicy.parse("approvals/**\n", file: "f") }
        #expect(throws: CommandError.self) { try TrustPolicy.parse("../x *\n", file: "f") }
        #expect(throws: CommandError.self) { try TrustPolicy.parse("# only a comment\n", file: "f") }
    }

    /// `pause` commits as the person running it: where the trust policy does not let her change
    /// `controllers/`, nothing is pushed (pushed, the revision and all after it would be
    /// refused); where it does, the pause is committed, signed.
    @Test func aPolicyCommitTheTrustPolicyWouldRefuseIsNotPushed() async throws {
        try await withTemporaryDirectory { dir in
            let helpers = SignatureTests()
            let s = try Scenario(in: dir)
            let alice = try helpers.makeKey(dir, "alice@example.org")
            let signers = try helpers.allowedSigners(dir, alice)
            let policy = dir + "/trust-policy"
            try write(policy, "**  admin@example.org\nnotes/**  alice@example.org\n")
            let environment = try s.signingEnvironment(alice.privateKey)
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let refused = try s.run("pause", "--reason", "incident 7", "--trusted-signers", signers, "--trust-policy", policy,
                                    environment: environment)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("alice@example.org may not change what this commit changes under the trust policy"),
                    "\(refused.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)

            try write(policy, "**  admin@example.org\ncontrollers/**  alice@example.org\n")
            let paused = try s.run("pause", "--reason", "incident 7", "--trusted-signers", signers, "--trust-policy", policy,
                                   environment: environment)
            #expect(paused.status == 0, "\(paused.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") != main)
        }
    }

    @Test func aSignerChangingAPathItMayNotIsRefusedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let helpers = SignatureTests()
            let s = try helpers.applied(dir)
            let alice = try helpers.makeKey(dir, "alice@example.org")
            let security = try helpers.makeKey(dir, "security@example.org")
            let signers = try helpers.allowedSigners(dir, alice, security)
            let policy = dir + "/trust-policy"
            try write(policy, "**  *\nnotes/security/**  security@example.org\n")

            // Legitimate: alice changes what anyone may, security changes its own folder.
            try helpers.commit(s, [("notes/a.txt", "one\n", alice), ("notes/security/b.txt", "two\n", security)])
            let applied = try s.run("apply", "--trusted-signers", signers, "--trust-policy", policy)
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try helpers.isFixed(s))

            // Harmful: alice changes the security team's folder.
            try helpers.drift(s)
            let before = try s.snapshot()
            let ids = try helpers.commit(s, [("notes/security/b.txt", "changed by alice\n", alice)])
            let refused = try s.run("apply", "--trusted-signers", signers, "--trust-policy", policy)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("commit \(ids[0])"))
            #expect(refused.stderr.contains("alice@example.org may not change notes/security/b.txt"))
            #expect(try s.snapshot() == before, "nothing acted on the revision")
            let records = try helpers.refusals(s)
            #expect(records.count == 1)
            #expect(records.first?.contains("may not change notes/security/b.txt") == true)

            // A trust policy without trusted signers is a usage mistake.
            #expect(try s.run("plan", "--trust-policy", policy).status == 64)
            // An unreadable trust policy refuses the revision rather than trusting everyone.
            let missing = try s.run("plan", "--trusted-signers", signers, "--trust-policy", dir + "/nowhere")
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("cannot read the trust policy"))
        }
    }

    @Test func anApprovalIsApprovedByItsVerifiedSigner() async throws {
        try await withTemporaryDirectory { dir in
            let helpers = SignatureTests()
            let safety = SafetyEndToEndTests()
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let id = try #require(try safety.decisions(s, resource: resource).first { $0.decision == "held" }?.id)
            let alice = try helpers.makeKey(dir, "alice@example.org")
            let bob = try helpers.makeKey(dir, "bob@example.org")
            let signers = try helpers.allowedSigners(dir, alice, bob)
            func approval(_ approver: String) -> String {
                """
                apiVersion: bulwark/v1
                kind: Approval
                metadata: {name: a-\(id.lowercased())}
                spec: {id: \(id), approver: "\(approver)", reason: "CHG-7"}
                """
            }

            // Bob signs an approval that names Alice: the signer, not the file, is the approver.
            let before = try s.snapshot()
            try helpers.commit(s, [("approvals/\(id).yaml", approval("Alice <alice@example.org>"), bob)])
            let forged = try s.run("apply", "--trusted-signers", signers, "--output", "json")
            #expect(forged.stderr.contains("names Alice <alice@example.org> as approver but was committed by bob@example.org"), "\(forged.stderr)")
            #expect(try s.snapshot() == before, "nothing was applied")
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "refused" }.count == 1)
            // The refusal is one of this run's records, pushed, in apply's document too.
            let document = try #require(try JSONSerialization.jsonObject(with: Data(forged.stdout.utf8)) as? [String: Any])
            let records = try #require(document["records"] as? [[String: Any]])
            #expect(records.filter { $0["decision"] as? String == "refused" }.count == 1, "\(records)")
            #expect(document["pushed"] as? Int ?? 0 >= 1, "\(document)")

            // Alice signs her own approval: the fix goes through, approved by her verified principal.
            try helpers.commit(s, [("approvals/\(id).yaml", approval("Alice <alice@example.org>") + "\n", alice)])
            let approved = try s.run("apply", "--trusted-signers", signers)
            #expect(approved.status == 0, "\(approved.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
            let applied = try #require(try safety.decisions(s, resource: resource).first)
            #expect(applied.decision == "applied")
            #expect(applied.approver == "alice@example.org")
        }
    }

    @Test func bulwarkApproveSignsWithTheCallersGitSigningKey() async throws {
        try await withTemporaryDirectory { dir in
            let helpers = SignatureTests()
            let safety = SafetyEndToEndTests()
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let id = try #require(try safety.decisions(s, resource: resource).first { $0.decision == "held" }?.id)
            let alice = try helpers.makeKey(dir, "alice@example.org")
            let signers = try helpers.allowedSigners(dir, alice)
            let home = dir + "/home"
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            let environment = ["HOME": home, "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@example.org"]
            func approve(_ extra: [String] = []) throws -> ProcessOutput {
                try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state, "--reason", "CHG-8"] + extra,
                        environment: environment)
            }
            let policyHead = try git("--git-dir", s.origin, "rev-parse", "main")

            // With the signatures verified, an unsigned approval is not pushed: every verifying
            // Bulwark would refuse the revision and all after it, halting enforcement.
            let refused = try approve(["--trusted-signers", signers])
            #expect(refused.status == 1, "\(refused.stdout)\n\(refused.stderr)")
            #expect(refused.stderr.contains("the commit would be unsigned, and the policy's signatures are verified"), "\(refused.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == policyHead)
            // Signed by a key the trusted signers file does not list: not pushed either.
            let bob = try helpers.makeKey(dir, "bob@example.org")
            try write(home + "/.gitconfig", "[gpg]\n\tformat = ssh\n[user]\n\tsigningkey = \(bob.privateKey)\n")
            let untrusted = try approve(["--trusted-signers", signers])
            #expect(untrusted.status == 1, "\(untrusted.stdout)\n\(untrusted.stderr)")
            #expect(untrusted.stderr.contains("the commit's signature is not trusted"), "\(untrusted.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == policyHead)
            try FileManager.default.removeItem(atPath: home + "/.gitconfig")

            // Without a signing key configured, the approval is unsigned, and a verifying Bulwark refuses it.
            let unsigned = try approve()
            #expect(unsigned.status == 0, "\(unsigned.stderr)")
            #expect(unsigned.stdout.contains("unsigned (set gpg.format ssh and user.signingkey to sign it)"))
            let before = try s.snapshot()
            #expect(try s.run("apply", "--trusted-signers", signers).status == 1)
            #expect(try s.snapshot() == before)
            try git("--git-dir", s.origin, "update-ref", "refs/heads/main", "main~1")

            // With git set up to sign (the README's lines), `bulwark approve` signs and the fix goes through.
            try write(home + "/.gitconfig", "[gpg]\n\tformat = ssh\n[user]\n\tsigningkey = \(alice.privateKey)\n")
            let signed = try approve(["--trusted-signers", signers])
            #expect(signed.status == 0, "\(signed.stderr)")
            #expect(signed.stdout.contains(", signed."))
            let verified = try run("/usr/bin/git", ["--git-dir", s.origin, "-c", "gpg.ssh.allowedSignersFile=\(signers)", "verify-commit", "main"])
            #expect(verified.status == 0, "\(verified.stderr)")
            // The revision applied last is the parent of the signed approval: only that commit is in the range.
            let approved = try s.run("apply", "--trusted-signers", signers)
            #expect(approved.status == 0, "\(approved.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
            #expect(try safety.decisions(s, resource: resource).first?.approver == "alice@example.org")
        }
    }

    @Test func aSignerWhoseKeyExpiredIsRefusedAndTheSameKeyStillValidApplies() async throws {
        try await withTemporaryDirectory { dir in
            let helpers = SignatureTests()
            let s = try helpers.applied(dir)
            let alice = try helpers.makeKey(dir, "alice@example.org")
            // The team's file says alice's key stopped being valid at the start of 2020.
            let expired = dir + "/expired_signers"
            try write(expired, alice.allowedLine.replacingOccurrences(of: "namespaces=\"git\"",
                                                                       with: "namespaces=\"git\",valid-before=\"20200101\""))
            let ids = try helpers.commit(s, [("notes/a.txt", "one\n", alice)])
            let before = try s.snapshot()
            let refused = try s.run("apply", "--trusted-signers", expired)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("commit \(ids[0])"))
            #expect(refused.stderr.contains("or whose valid-after/valid-before there does not include now"))
            #expect(try s.snapshot() == before)
            #expect(try helpers.refusals(s).count == 1)
            // While the key is valid, the same commit applies.
            let valid = try helpers.allowedSigners(dir, alice)
            #expect(try s.run("apply", "--trusted-signers", valid).status == 0)
            #expect(try helpers.isFixed(s))
        }
    }
}
