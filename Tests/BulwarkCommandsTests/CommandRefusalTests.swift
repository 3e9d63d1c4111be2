@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A person's command that is refused leaves a record in git, as a refused revision or finding
/// does (review: `revert` refused by a guard, and `approve` of an unknown id, left none); the
/// same command refused again adds none. Through the binary, read back with git.
@Suite struct CommandRefusalTests {
    /// The bodies of the refused records on the audit branch, newest first.
    static func refusals(_ s: Scenario) throws -> [String] { try SignatureTests().refusals(s) }

    static func approve(_ s: Scenario, _ id: String, extra: [String] = [], environment: [String: String] = [:]) throws -> ProcessOutput {
        try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state, "--reason", "CHG-42"] + extra,
                environment: ["GIT_AUTHOR_NAME": "Rita Reviewer", "GIT_AUTHOR_EMAIL": "rita@example.org"].merging(environment) { $1 })
    }

    /// Harmful: approving an id no record carries (a typo, or a probe for what can be let
    /// through) is refused and recorded once. Legitimate: a held weakening approved by a second
    /// person goes through, signed, and the line before ssh-keygen's says what is signed (not
    /// its "Signing file /tmp/…").
    @Test func anApprovalOfAnUnknownIdIsRecordedAndAHeldOneIsApprovedSigned() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let unknown = "01ABCDEFGHJKMNPQRSTVWXYZ01"
            let refused = try Self.approve(s, unknown)
            #expect(refused.status == 1, "\(refused.stdout)\n\(refused.stderr)")
            #expect(refused.stderr.contains("no held, blocked or escalated remediation with id \(unknown) in bulwark/audit"), "\(refused.stderr)")
            var records = try Self.refusals(s)
            #expect(records.count == 1, "\(records)")
            #expect(records.first?.contains("Bulwark-Resource: Approval/\(unknown)") == true, "\(records)")
            #expect(records.first?.contains("bulwark approve \(unknown) by Rita Reviewer <rita@example.org> refused: no held") == true, "\(records)")
            #expect(try Self.approve(s, unknown.lowercased()).status == 1)
            #expect(try Self.refusals(s).count == 1, "the same refusal is recorded once")

            // Legitimate: a weakening held for a second person, approved by one, signed.
            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"")
            #expect(try s.run("apply").stdout.contains("weakens the policy"))
            let held = try RevertTests.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "held")
            let key = try SignatureTests().makeKey(dir, "rita@example.org")
            let approved = try Self.approve(s, held, environment: try s.signingEnvironment(key.privateKey))
            #expect(approved.status == 0, "\(approved.stdout)\n\(approved.stderr)")
            #expect(approved.stdout.contains("Approved \(held) as Rita Reviewer <rita@example.org>") && approved.stdout.contains(", signed."))
            #expect(approved.stderr.contains("Signing the approval of \(held) (approvals/\(held).yaml) with user.signingkey \(key.privateKey)"),
                    "\(approved.stderr)")
            #expect(!approved.stderr.contains("Signing file"), "\(approved.stderr)")
            records = try Self.refusals(s)
            #expect(records.count == 1, "nothing refused: \(records)")
            #expect(try git("--git-dir", s.origin, "cat-file", "-p", "main").contains("-----BEGIN SSH SIGNATURE-----"))
        }
    }

    /// Review: without a key to check records against, `approve` took the newest record with the
    /// id, an unsigned one someone pushed with a reassuring summary ("no -> yes" shown as
    /// "yes -> no"), and never showed what was approved. Harmful: the unsigned record among the
    /// records a Bulwark signed is refused and recorded. Legitimate: with --audit-signers the
    /// signed record is approved, and what it holds is printed first.
    @Test func anUnsignedRecordAmongSignedOnesIsNotApprovedAndWhatIsApprovedIsShown() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let trail = AuditTrailTests()
            let bulwarkKey = try trail.makeKey(dir)
            #expect(try trail.apply(s, bulwarkKey).status == 0)
            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"")
            #expect(try trail.apply(s, bulwarkKey).stdout.contains("weakens the policy"))
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let held = try RevertTests.recordID(s, resource: resource, decision: "held")
            let forged = try ForgedRecordTests.forge(s, subject: "hold(\(resource)): local PermitRootLogin yes -> no",
                                                     trailers: [("Bulwark-Id", held), ("Bulwark-Decision", "held"),
                                                                ("Bulwark-Resource", resource), ("Bulwark-Target", "local")])
            let refused = try Self.approve(s, held)
            #expect(refused.status == 1, "\(refused.stdout)\n\(refused.stderr)")
            #expect(refused.stderr.contains("commit \(forged.prefix(12))) is unsigned, while other records there are signed"), "\(refused.stderr)")
            #expect(try git("--git-dir", s.origin, "ls-tree", "--name-only", "main", "approvals/").isEmpty, "nothing was approved")
            let records = try Self.refusals(s)
            #expect(records.count == 1 && records.first?.contains("refused: the record \(held)") == true, "\(records)")

            let approved = try run(try bulwarkExecutable(), ["approve", held, "--repo", s.origin, "--state-dir", s.state,
                                                             "--reason", "CHG-42", "--audit-signers", bulwarkKey.allowed],
                                   environment: ["GIT_AUTHOR_NAME": "Rita Reviewer", "GIT_AUTHOR_EMAIL": "rita@example.org"])
            #expect(approved.status == 0, "\(approved.stdout)\n\(approved.stderr)")
            #expect(approved.stdout.contains("Approving \(held): hold(\(resource)): local PermitRootLogin no -> yes"), "\(approved.stdout)")
            #expect(approved.stdout.contains("  - PermitRootLogin: no -> yes"), "\(approved.stdout)")
        }
    }

    /// Review (M1): a staging copy of the policy, where the same weakening has the same id, got
    /// the second person's approval; a merge brought the approval file into production, where
    /// it let the weakening through. `approve` now names the record it approves, and an approval
    /// counts only where that record is on the audit branch: refused and recorded. Approved
    /// here, the weakening goes through.
    @Test func anApprovalGivenInAnotherRepositoryDoesNotCountHere() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"")
            #expect(try s.run("apply").stdout.contains("weakens the policy"))
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let held = try RevertTests.recordID(s, resource: resource, decision: "held")

            // Staging: a copy of the policy with its own audit branch, where the same drift is held under the same id.
            let staging = dir + "/staging.git"
            try git("clone", "-q", "--bare", s.origin, staging)
            try git("--git-dir", staging, "update-ref", "-d", "refs/heads/bulwark/audit")
            let stagingApply = try run(try bulwarkExecutable(), ["apply", "--repo", staging, "--state-dir", dir + "/st-staging"])
            #expect(stagingApply.stdout.contains("weakens the policy"), "\(stagingApply.stdout)\n\(stagingApply.stderr)")
            let given = try run(try bulwarkExecutable(), ["approve", held, "--repo", staging, "--state-dir", dir + "/st-rita",
                                                          "--reason", "staging only"],
                                environment: ["GIT_AUTHOR_NAME": "Rita Reviewer", "GIT_AUTHOR_EMAIL": "rita@example.org"])
            #expect(given.status == 0, "\(given.stdout)\n\(given.stderr)")
            // Staging's branch, approval included, is pushed to production (a merge that fast-forwards).
            try git("--git-dir", staging, "push", "-q", s.origin, "main:main")
            let refused = try s.run("apply")
            #expect(!refused.stdout.contains("fixed    local  \(resource)"), "\(refused.stdout)")
            #expect(try SignatureTests().isFixed(s), "root login stays off: the weakening is still held")
            let records = try Self.refusals(s)
            #expect(records.contains { $0.contains("which is not on this repository's audit branch") }, "\(records)")

            // Approved here, by the same person: it goes through.
            let approved = try Self.approve(s, held)
            #expect(approved.status == 0, "\(approved.stdout)\n\(approved.stderr)")
            let applied = try s.run("apply")
            #expect(applied.stdout.contains("fixed    local  \(resource)"), "\(applied.stdout)\n\(applied.stderr)")
        }
    }

    /// Review (H1, session 38): a record signed by any key, carrying the held weakening's id and
    /// another summary ("LoginGraceTime 120 -> 60"), was what `approve` showed the second person,
    /// and the approval naming it let root login on. Without keys, `approve` now refuses a record
    /// signed by a key none of the records around it was signed by (recorded); with a signing key,
    /// `apply` counts an approval only of a record a Bulwark signed (an approval of the forged one,
    /// as an older `approve` wrote it, is refused and recorded, root login stays off). The twin:
    /// the record Bulwark signed is approved, and the weakening goes through.
    @Test func anApprovalOfARecordNoBulwarkSignedDoesNotCount() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            let signed = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).status == 0)
            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"")
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).stdout.contains("weakens the policy"))
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let held = try RevertTests.recordID(s, resource: resource, decision: "held")
            let mallory = try AuditTrailTests().makeKey(dir, name: "mallory")
            let summary = "hold(\(resource)): local LoginGraceTime 120 -> 60"
            let forged = try ForgedRecordTests.forge(s, subject: summary, trailers: [
                ("Bulwark-Id", held), ("Bulwark-Resource", resource), ("Bulwark-Target", "local"), ("Bulwark-Decision", "held"),
            ], signingKey: mallory.path)

            let shown = try Self.approve(s, held)
            #expect(shown.status == 1, "\(shown.stdout)\n\(shown.stderr)")
            #expect(shown.stderr.contains("(commit \(forged.prefix(12))) is signed by a key that signed none of the records around it"),
                    "\(shown.stderr)")
            #expect(!shown.stdout.contains("LoginGraceTime"), "the forged summary is not shown as what is approved")
            #expect(try Self.refusals(s).contains { $0.contains("is signed by a key that signed none of the records around it") })

            // The approval of the forged record, as `approve` wrote it before, committed by Rita.
            let text = Bulwark.Approve.document(id: held, summary: summary, approver: "Rita Reviewer <rita@example.org>",
                                                reason: "CHG-42", expires: nil, record: forged)
            let work = dir + "/rita"
            try git("clone", "-q", s.origin, work)
            try write(work + "/approvals/\(held).yaml", text)
            try git("add", "-A", in: work)
            let committed = try run("/usr/bin/git", ["commit", "-qm", "approve"], in: work, environment: [
                "GIT_AUTHOR_NAME": "Rita Reviewer", "GIT_AUTHOR_EMAIL": "rita@example.org",
                "GIT_COMMITTER_NAME": "Rita Reviewer", "GIT_COMMITTER_EMAIL": "rita@example.org",
            ])
            #expect(committed.status == 0, "\(committed.stderr)")
            try git("push", "-q", "origin", "main", in: work)
            let refused = try s.run("apply", signed[0], signed[1], signed[2], signed[3])
            #expect(!refused.stdout.contains("fixed    local  \(resource)"), "\(refused.stdout)")
            #expect(try SignatureTests().isFixed(s), "root login stays off: the weakening is still held")
            let recorded = try Self.refusals(s)
            #expect(recorded.contains { $0.contains("approves the record \(forged.prefix(12)), which no Bulwark signed") }, "\(recorded)")

            // Bulwark's own record, approved with the key that finds it: the weakening goes through.
            let approved = try Self.approve(s, held, extra: signed)
            #expect(approved.status == 0, "\(approved.stdout)\n\(approved.stderr)")
            #expect(approved.stdout.contains("Approving \(held): hold(\(resource)): local PermitRootLogin no -> yes"), "\(approved.stdout)")
            let applied = try s.run("apply", signed[0], signed[1], signed[2], signed[3])
            #expect(applied.stdout.contains("fixed    local  \(resource)"), "\(applied.stdout)\n\(applied.stderr)")
        }
    }

    /// The twin of `approve`'s check without keys: Bulwark's own held record, signed with the key
    /// that signed the records around it, is approved as before.
    @Test func withoutKeysARecordSignedAsTheOthersAreIsApproved() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            let signed = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).status == 0)
            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"")
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).stdout.contains("weakens the policy"))
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let held = try RevertTests.recordID(s, resource: resource, decision: "held")
            let approved = try Self.approve(s, held)
            #expect(approved.status == 0, "\(approved.stdout)\n\(approved.stderr)")
            #expect(approved.stdout.contains("Approving \(held): hold(\(resource)): local PermitRootLogin no -> yes"), "\(approved.stdout)")
            let applied = try s.run("apply", signed[0], signed[1], signed[2], signed[3])
            #expect(applied.stdout.contains("fixed    local  \(resource)"), "\(applied.stdout)\n\(applied.stderr)")
        }
    }

    /// An error a command prints and the one it ends with begin alike: `Error:` (review: a
    /// refused revision printed `error:` lines, then argument-parser's `Error:`).
    @Test func everyErrorLineBeginsWithOnePrefix() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("desired-state/hosts/broken.yaml", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: x}\nspec: {nope: 1}\n")
            let plan = try s.run("plan")
            #expect(plan.status == 1, "\(plan.stdout)\n\(plan.stderr)")
            #expect(plan.stderr.contains("Error: revision "), "\(plan.stderr)")
            #expect(!plan.stderr.split(separator: "\n").contains { $0.lowercased().hasPrefix("error:") && !$0.hasPrefix("Error:") }, "\(plan.stderr)")
            // Unchanged: exit codes. A usage mistake is still 64.
            #expect(try s.run("plan", "--output", "yaml").status == 64)
        }
    }
}

extension FirewallEndToEndTests {
    /// Harmful: a revert that a safety guard refuses (it would block a management network again)
    /// is recorded on the audit branch, once however often it is tried. Legitimate: once the
    /// address is no management network, the same revert goes through.
    @Test func aRevertAGuardRefusesIsRecordedAndOneItAllowsGoesThrough() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
            func target(_ management: String) -> String {
                """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: edge-1, labels: {role: edge}}
                spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(lab.host), management: [\(management)]}
                """
            }
            func blocklist(_ addresses: String) -> String {
                "apiVersion: bulwark/v1\nkind: FirewallBlocklist\nmetadata: {name: known-bad}\nspec: {addresses: [\(addresses)]}\n"
            }
            try s.commitPolicy("controllers/edge.yaml", target("192.0.2.200/32"))
            try s.commitPolicy("desired-state/firewall/blocklist.yaml", blocklist("192.0.2.9"))
            try s.acceptHead()
            #expect(try s.run("apply").status == 0)
            try s.commitPolicy("desired-state/firewall/blocklist.yaml", blocklist("192.0.2.9, 198.51.100.7"))
            #expect(try s.run("apply").status == 0)
            let fix = try RevertTests.recordID(s, resource: "FirewallBlocklist/known-bad", decision: "applied")
            // 192.0.2.9 becomes a management network: putting the blocklist back as it was would cut it off.
            // (The blocklist as it is now would too; that is not what is judged here.)
            try s.commitPolicy("controllers/edge.yaml", target("192.0.2.200/32, 192.0.2.9/32"))
            let main = try git("--git-dir", s.origin, "rev-parse", "main")

            for _ in 0..<2 {
                let refused = try RevertTests.revert(s, fix)
                #expect(refused.status == 1, "\(refused.stdout)\n\(refused.stderr)")
                #expect(refused.stderr.contains("the safety guard of FirewallBlocklist refuses the revert of \(fix)"), "\(refused.stderr)")
                #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main, "no waiver committed")
            }
            let records = try CommandRefusalTests.refusals(s)
            #expect(records.count == 1, "recorded once: \(records)")
            #expect(records.first?.contains("Bulwark-Resource: FirewallBlocklist/known-bad") == true, "\(records)")
            #expect(records.first?.contains("Bulwark-Target: edge-1") == true, "\(records)")
            #expect(records.first?.contains("bulwark revert \(fix) by Olga Operator <olga@example.org>: the safety guard") == true, "\(records)")

            // Legitimate: 192.0.2.9 is no management network any more; the same revert goes through.
            try s.commitPolicy("controllers/edge.yaml", target("192.0.2.200/32"))
            let reverted = try RevertTests.revert(s, fix)
            #expect(reverted.status == 0, "\(reverted.stdout)\n\(reverted.stderr)")
            #expect(!reverted.stderr.contains("refuses the revert"), "\(reverted.stdout)\n\(reverted.stderr)")
            #expect(try !lab.nft(["list", "ruleset"]).stdout.contains("198.51.100.7"))
            #expect(reverted.stdout.contains("Committed waivers/revert-\(fix.lowercased()).yaml"), "\(reverted.stdout)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") != main)
            #expect(try CommandRefusalTests.refusals(s).count == 1)
        }
    }
}
