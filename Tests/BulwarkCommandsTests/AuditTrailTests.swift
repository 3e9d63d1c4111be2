@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Signed audit commits and the append-only trail, through the binary: records signed with
/// `--signing-key` verify with the real `git verify-commit`; a rewritten or deleted audit branch
/// on the origin is detected, recorded, and its records go to a recovery branch; `verify-audit`
/// finds removed, forged and unsigned records.
@Suite struct AuditTrailTests {
    /// Bulwark's signing key made by ssh-keygen in a secrets folder, and an allowed_signers file for it.
    struct Key {
        let secrets: String
        let path: String
        let allowed: String
    }

    func makeKey(_ dir: String, name: String = "bulwark") throws -> Key {
        let secrets = dir + "/secrets-\(name)"
        try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true)
        let path = secrets + "/signing-key"
        let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path])
        guard made.status == 0 else { throw SupportError("ssh-keygen failed: \(made.stderr)") }
        let publicKey = try read(path + ".pub").split(separator: " ").prefix(2).joined(separator: " ")
        let allowed = dir + "/allowed-\(name)"
        try write(allowed, "\(name)@bulwark namespaces=\"git\" \(publicKey)\n")
        return Key(secrets: secrets, path: path, allowed: allowed)
    }

    /// Puts root login back on the host, a drift the policy fixes.
    func drift(_ s: Scenario) throws {
        let path = s.host + "/etc/ssh/sshd_config"
        let text = try read(path)
        try Data(text.replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n").utf8)
            .write(to: URL(fileURLWithPath: path))
    }

    func apply(_ s: Scenario, _ key: Key, stateDir: String? = nil) throws -> ProcessOutput {
        try bulwark(["apply", "--repo", s.origin, "--state-dir", stateDir ?? s.state, "--secrets-dir", key.secrets,
                     "--signing-key", key.path])
    }

    func verifyAudit(_ gitDir: String, _ extra: String...) throws -> ProcessOutput {
        try bulwark(["verify-audit", "--repo", gitDir] + extra)
    }

    func branches(_ s: Scenario) throws -> [String] {
        try git("--git-dir", s.origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
            .split(separator: "\n").map(String.init)
    }

    @Test func everyAuditCommitIsSignedAndGitVerifiesIt() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            let applied = try apply(s, key)
            #expect(applied.status == 0, "\(applied.stderr)")
            let commits = try s.auditCommits()
            #expect(commits.count > 3)
            for commit in commits {
                let verified = try run("/usr/bin/git", ["--git-dir", s.origin, "-c", "gpg.ssh.allowedSignersFile=\(key.allowed)",
                                                        "verify-commit", commit])
                #expect(verified.status == 0, "\(commit): \(verified.stderr)")
                #expect(verified.stderr.contains("Good \"git\" signature for bulwark@bulwark"))
            }
            let shown = try git("--git-dir", s.origin, "-c", "gpg.ssh.allowedSignersFile=\(key.allowed)", "log", "--show-signature",
                                "bulwark/audit")
            #expect(shown.components(separatedBy: "Good \"git\" signature for bulwark@bulwark").count == commits.count + 1)
            // One instance, numbered 1, 2, 3 … from the oldest record.
            let instances = Set(try s.trailers("Bulwark-Instance"))
            #expect(instances.count == 1)
            #expect(try s.trailers("Bulwark-Sequence").reversed() == (1...commits.count).map(String.init))
            // A second pass goes on from the last number.
            try drift(s)
            #expect(try apply(s, key).status == 0)
            let more = try s.auditCommits()
            #expect(more.count > commits.count)
            #expect(try s.trailers("Bulwark-Sequence").first == String(more.count))

            let verified = try verifyAudit(s.origin, "--trusted-signers", key.allowed)
            #expect(verified.status == 0, "\(verified.stderr)")
            #expect(verified.stdout.contains("\(more.count) audit record(s) on bulwark/audit"))
            #expect(verified.stdout.contains("no problems found"))
            #expect(verified.stdout.contains("signed by bulwark@bulwark: \(more.count) commit(s)"))
        }
    }

    @Test func aSigningKeyOutsideTheSecretsFolderOrUnusableIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            let before = try s.snapshot()
            // The key is outside the secrets folder given.
            let outside = try bulwark(["apply", "--repo", s.origin, "--state-dir", s.state, "--secrets-dir", dir + "/empty",
                                       "--signing-key", key.path])
            #expect(outside.status != 0)
            #expect(outside.stderr.contains("cannot use the signing key"))
            #expect(outside.stderr.contains("not under the secrets folder"))
            // A passphrase-protected key cannot sign unattended.
            let protected = key.secrets + "/protected"
            _ = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "words", "-f", protected])
            let locked = try bulwark(["apply", "--repo", s.origin, "--state-dir", s.state, "--secrets-dir", key.secrets,
                                      "--signing-key", protected])
            #expect(locked.status != 0)
            #expect(locked.stderr.contains("passphrase"))
            #expect(!locked.stderr.contains("BEGIN OPENSSH"), "no key material in messages")
            #expect(try s.snapshot() == before, "nothing was applied")
            #expect(!(try branches(s)).contains("bulwark/audit"), "nothing was recorded")
            // The same key under the secrets folder signs.
            #expect(try apply(s, key).status == 0)
        }
    }

    /// A signing key other users can read lets them sign records as this Bulwark: refused, naming
    /// the file, its mode and the fix, before anything is changed; private, it signs.
    @Test func aSigningKeyOtherUsersCanReadIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            // Every folder on the way open to others (mkdtemp made the test's own 0700: that
            // alone would keep the key private).
            for folder in [dir, key.secrets] { #expect(chmod(folder, 0o755) == 0) }
            #expect(chmod(key.path, 0o644) == 0)
            try drift(s)
            let before = try s.snapshot()
            let refused = try apply(s, key)
            #expect(refused.status == 1, "\(refused.stderr)")
            #expect(refused.stderr.contains("cannot use the signing key"))
            #expect(refused.stderr.contains("the key \(key.path) is open to group or others (mode 0644)"))
            #expect(refused.stderr.contains("chmod 600 \(key.path)"))
            #expect(refused.stderr.contains("defaultMode: 0400"))
            #expect(!refused.stderr.contains("BEGIN OPENSSH"), "no key material in messages")
            #expect(try s.snapshot() == before, "nothing was applied")
            #expect(!(try branches(s)).contains("bulwark/audit"), "nothing was recorded")
            // Group-readable only is refused too; so is a key another user owns (who can read it).
            #expect(chmod(key.path, 0o640) == 0)
            #expect(try apply(s, key).stderr.contains("(mode 0640)"))
            #expect(chmod(key.path, 0o600) == 0)
            #expect(chown(key.path, 4321, 4321) == 0)
            let foreign = try apply(s, key)
            #expect(foreign.status == 1)
            #expect(foreign.stderr.contains("belongs to uid 4321"), "\(foreign.stderr)")
            #expect(try s.snapshot() == before, "nothing was applied")
            #expect(!(try branches(s)).contains("bulwark/audit"), "nothing was recorded")

            // The same key made private (chmod 600, our own) signs.
            #expect(chown(key.path, geteuid(), getegid()) == 0)
            let applied = try apply(s, key)
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try s.snapshot() != before, "the drift was fixed")
            let head = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
            let verified = try run("/usr/bin/git", ["--git-dir", s.origin, "-c", "gpg.ssh.allowedSignersFile=\(key.allowed)",
                                                    "verify-commit", head])
            #expect(verified.status == 0, "\(verified.stderr)")

            // Readable by others, but inside a folder only this user may enter (and with no
            // other name): nobody else can reach it, so it signs as well.
            #expect(chmod(key.path, 0o644) == 0)
            #expect(chmod(key.secrets, 0o700) == 0)
            try drift(s)
            let inPrivateFolder = try apply(s, key)
            #expect(inPrivateFolder.status == 0, "\(inPrivateFolder.stderr)")
            // … unless it has a second name outside that folder.
            #expect(link(key.path, dir + "/second-name") == 0)
            try drift(s)
            let linked = try apply(s, key)
            #expect(linked.status == 1)
            #expect(linked.stderr.contains("(mode 0644)"))
        }
    }

    /// Two writers recovering in the same second (two agents whose refs were deleted at once)
    /// took one branch name: each then read the other's records as its own branch rewritten,
    /// and recorded a false tampering (outside review). The name carries the writer.
    @Test func twoWritersRecoveringInTheSameSecondGetBranchesOfTheirOwn() {
        let now = Date(timeIntervalSince1970: 1_796_000_000)
        let a = AuditTrail.recoveryBranch(at: now, instance: "host-a-01JD3M0000000000000000000A")
        let b = AuditTrail.recoveryBranch(at: now, instance: "host-b-01JD3M0000000000000000000B")
        #expect(a != b)
        #expect(a == AuditTrail.recoveryBranch(at: now, instance: "host-a-01JD3M0000000000000000000A"))
        for name in [a, b] {
            #expect(name.hasPrefix(AuditTrail.recoveryPrefix) && name.contains("Z-") && GitLibrary.isValidBranchName(name), "\(name)")
        }
    }

    @Test func aRewrittenAuditBranchIsDetectedRecordedAndNothingIsLost() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            let pushed = try s.auditCommits()
            let last = try #require(pushed.first)

            // Someone rewinds the origin's audit branch, dropping the newest record.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", pushed[1])
            try drift(s)
            let second = try apply(s, key)
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stderr.contains("the audit branch bulwark/audit on the origin was rewritten"))
            #expect(second.stderr.contains(String(last.prefix(12))))
            // The origin's audit branch is left as the attacker left it; the records went elsewhere.
            #expect(try git("--git-dir", s.origin, "rev-parse", "bulwark/audit") == pushed[1] + "\n")
            let recovery = try #require(try branches(s).first { $0.hasPrefix("bulwark/audit-recovered-") })
            let recovered = try git("--git-dir", s.origin, "log", "--format=%H", recovery).split(separator: "\n").map(String.init)
            #expect(Set(pushed).isSubset(of: Set(recovered)), "every record pushed before is on the recovery branch")
            #expect(recovered.count > pushed.count + 1, "with the tampering record and the new pass's records")
            let tampered = try git("--git-dir", s.origin, "log", "--format=%B", "--grep=AuditBranch/bulwark/audit", recovery)
            #expect(tampered.contains("Bulwark-Decision: refused"))
            #expect(tampered.contains("was rewritten"))
            #expect(try verifyAudit(s.origin, "--audit-branch", recovery, "--trusted-signers", key.allowed).status == 0)

            // A third pass: recorded once, and the recovery branch is where records go.
            try drift(s)
            let third = try apply(s, key)
            #expect(third.status == 0)
            #expect(try git("--git-dir", s.origin, "log", "--format=%H", "--grep=AuditBranch/bulwark/audit", recovery)
                .split(separator: "\n").count == 1)
            #expect(try branches(s).filter { $0.hasPrefix("bulwark/audit-recovered-") }.count == 1)
            // Another reader (a state directory of its own) sees the recovery branch's records:
            // the tampering record, and the passes recorded there (outside review: `log` and
            // `report` elsewhere showed only the rewritten branch).
            let reader = try s.run("log", "--output", "json", stateDir: dir + "/reader")
            #expect(reader.status == 0, "\(reader.stderr)")
            #expect(reader.stdout.contains("\"resource\" : \"AuditBranch/bulwark/audit\""), "\(reader.stdout.prefix(3000))")
            let logged = reader.stdout.components(separatedBy: "\"commit\" : \"").count - 1
            #expect(logged >= recovered.count, "\(logged) of \(recovered.count)")

            // A person puts the records back: Bulwark returns to the audit branch.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit",
                    try git("--git-dir", s.origin, "rev-parse", recovery).trimmingCharacters(in: .whitespacesAndNewlines))
            try drift(s)
            let fourth = try apply(s, key)
            #expect(fourth.status == 0)
            #expect(fourth.stderr.contains("contains") && fourth.stderr.contains("again"))
            let restored = try s.auditCommits()
            #expect(restored.count > recovered.count)
            #expect(try verifyAudit(s.origin, "--trusted-signers", key.allowed).status == 0)
            // The report says so: not an open item (no fix closes it), a line of its own.
            let report = try s.run("report")
            #expect(report.stdout.contains("Tampering: 1 record of an audit branch changed behind Bulwark's back"), "\(report.stdout)")
            #expect(!report.stdout.contains("AuditBranch/bulwark/audit  refused"), "\(report.stdout)")
            let json = try JSONSerialization.jsonObject(with: Data(try s.run("report", "--output", "json").stdout.utf8)) as? [String: Any]
            #expect(json?["tamperingRecords"] as? Int == 1, "\(String(describing: json))")
        }
    }

    @Test func aRecoveryBranchRewrittenInTurnIsDetectedToo() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            let pushed = try s.auditCommits()
            try git("--git-dir", s.origin, "update-ref", "-d", "refs/heads/bulwark/audit")
            #expect(try apply(s, key).status == 0)
            let first = try #require(try branches(s).first { $0.hasPrefix("bulwark/audit-recovered-") })
            let recovered = try git("--git-dir", s.origin, "log", "--format=%H", first).split(separator: "\n").map(String.init)

            // The recovery branch is rewound as well: the next pass starts another one, holding everything.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/\(first)", pushed[1])
            try drift(s)
            let again = try apply(s, key)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stderr.contains("the audit branch \(first) on the origin was rewritten"))
            let recoveries = try branches(s).filter { $0.hasPrefix("bulwark/audit-recovered-") }
            let second = try #require(recoveries.first { $0 != first }, "\(recoveries)")
            let kept = try git("--git-dir", s.origin, "log", "--format=%H", second).split(separator: "\n").map(String.init)
            #expect(Set(recovered).isSubset(of: Set(kept)))
            #expect(try verifyAudit(s.origin, "--audit-branch", second, "--trusted-signers", key.allowed).status == 0)
        }
    }

    /// Review (L2, L3, session 38): a recovery branch deleted on the origin was made again from
    /// the clone, silently, and `apply` said it pushed to `bulwark/audit`. Deleted after Bulwark
    /// pushed to it, it is tampering: recorded, and the records go to a new recovery branch
    /// holding everything; the summary names the branch pushed to. Twin: a recovery branch made
    /// but not pushed yet (the origin unreachable) is not taken for a deleted one.
    @Test func aDeletedRecoveryBranchIsDetectedAndThePushNamesIt() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            try git("--git-dir", s.origin, "update-ref", "-d", "refs/heads/bulwark/audit")
            let made = try apply(s, key)
            #expect(made.status == 0, "\(made.stderr)")
            let first = try #require(try branches(s).first { $0.hasPrefix("bulwark/audit-recovered-") })
            #expect(made.stdout.contains(" audit commits to ") && made.stdout.contains(" \(first).\n"), "\(made.stdout)")
            let recovered = try git("--git-dir", s.origin, "log", "--format=%H", first).split(separator: "\n").map(String.init)

            try git("--git-dir", s.origin, "update-ref", "-d", "refs/heads/\(first)")
            try drift(s)
            let again = try apply(s, key)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stderr.contains("the audit branch \(first) on the origin was deleted"), "\(again.stderr)")
            let recoveries = try branches(s).filter { $0.hasPrefix("bulwark/audit-recovered-") }
            let second = try #require(recoveries.first { $0 != first }, "\(recoveries)")
            #expect(!recoveries.contains(first), "the deleted branch is not silently made again")
            let kept = try git("--git-dir", s.origin, "log", "--format=%H", second).split(separator: "\n").map(String.init)
            #expect(Set(recovered).isSubset(of: Set(kept)))
            #expect(try git("--git-dir", s.origin, "log", "--format=%B", "--grep=AuditBranch/\(first)", second).contains("was deleted"))
            #expect(try verifyAudit(s.origin, "--audit-branch", second, "--trusted-signers", key.allowed).status == 0)
        }
    }

    /// The twin: a trail that does not say the recovery branch was pushed (one never pushed, or
    /// a file written before this was kept) takes the branch missing for one not made yet: it is
    /// pushed, once, without a tampering record.
    @Test func aRecoveryBranchNotPushedYetIsNotTakenForADeletedOne() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            try git("--git-dir", s.origin, "update-ref", "-d", "refs/heads/bulwark/audit")
            #expect(try apply(s, key).status == 0)
            let first = try #require(try branches(s).first { $0.hasPrefix("bulwark/audit-recovered-") })
            var trail = try JSONDecoder().decode(AuditTrail.self, from: Data(contentsOf: URL(fileURLWithPath: s.state + "/" + AuditTrail.fileName)))
            #expect(trail.recoveryPushed == true && trail.recoveryBranch == first)
            trail.recoveryPushed = nil
            try trail.save(stateDirectory: s.state)
            try git("--git-dir", s.origin, "update-ref", "-d", "refs/heads/\(first)")
            let tampering = try git("--git-dir", s.state + "/repository.git", "log", "--format=%H", "--grep=Bulwark-Resource: AuditBranch/",
                                    "bulwark/audit")
            try drift(s)
            let again = try apply(s, key)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(!again.stderr.contains("was deleted"), "\(again.stderr)")
            #expect(try branches(s).filter { $0.hasPrefix("bulwark/audit-recovered-") } == [first])
            #expect(try git("--git-dir", s.origin, "log", "--format=%H", "--grep=Bulwark-Resource: AuditBranch/", first) == tampering)
        }
    }

    @Test func aDeletedAuditBranchIsDetected() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            let pushed = try s.auditCommits()
            try git("--git-dir", s.origin, "update-ref", "-d", "refs/heads/bulwark/audit")
            let again = try apply(s, key)
            #expect(again.status == 0)
            #expect(again.stderr.contains("on the origin was deleted"))
            #expect(!(try branches(s)).contains("bulwark/audit"), "the deleted branch is not silently re-created")
            let recovery = try #require(try branches(s).first { $0.hasPrefix("bulwark/audit-recovered-") })
            let recovered = try git("--git-dir", s.origin, "log", "--format=%H", recovery).split(separator: "\n").map(String.init)
            #expect(Set(pushed).isSubset(of: Set(recovered)))
        }
    }

    /// A mistyped `--audit-branch` on a state directory that pushed to `bulwark/audit` is refused
    /// (64), even by `log`: it is not taken for the real branch deleted, which wrote a critical
    /// tampering record, sent the records to the new name and left `verify-audit` a gap for
    /// ever. The next pass on the real branch fixes and records as before, and a new state
    /// directory may record to another branch.
    @Test func aMistypedAuditBranchIsRefusedNotTakenForTheBranchDeleted() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stderr)")
            for command in ["log", "plan", "apply", "report"] {
                let typo = try s.run(command, "--audit-branch", "bulwark/adit")
                #expect(typo.status == 64, "\(command): \(typo.status) \(typo.stderr)")
                #expect(typo.stderr.contains("records to the audit branch bulwark/audit, not bulwark/adit"), "\(typo.stderr)")
                #expect(!typo.stderr.contains("was deleted"), "\(typo.stderr)")
            }
            #expect(!(try branches(s)).contains("bulwark/adit"))
            let local = try git("--git-dir", s.state + "/repository.git", "for-each-ref", "--format=%(refname)", "refs/heads/bulwark/")
            #expect(!local.contains("bulwark/adit"), "\(local)")
            try drift(s)
            let again = try s.run("apply")
            #expect(again.status == 0, "\(again.stderr)")
            #expect(try s.trailers("Bulwark-Resource").allSatisfy { !$0.hasPrefix("AuditBranch/") })
            let checked = try verifyAudit(s.origin)
            #expect(checked.status == 0, "\(checked.stdout) \(checked.stderr)")
            // Another state directory may keep another branch.
            try drift(s)
            let other = try s.run("apply", "--audit-branch", "bulwark/other", stateDir: dir + "/other-state")
            #expect(other.status == 0, "\(other.stderr)")
            #expect(try branches(s).contains("bulwark/other"))
        }
    }

    /// A `--repo` path with nothing there says so (64), not libgit2's "unsupported URL protocol";
    /// the same state directory then takes the corrected `--repo` (it fetched nothing), while a
    /// state directory that did fetch keeps refusing another repository.
    @Test func aMissingLocalOriginIsNamed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir + "/scenario")
            let typo = try bulwark(["plan", "--repo", dir + "/nope.git", "--state-dir", dir + "/typo-state"])
            #expect(typo.status == 64, "\(typo.stderr)")
            let corrected = try bulwark(["plan", "--repo", s.origin, "--state-dir", dir + "/typo-state"])
            #expect(corrected.status == 2, "\(corrected.stderr)")
            let other = try bulwark(["plan", "--repo", dir + "/nope.git", "--state-dir", dir + "/typo-state"])
            #expect(other.status == 64 && other.stderr.contains("belongs to another repository"), "\(other.stderr)")
            for command in ["plan", "log"] {
                let missing = try bulwark([command, "--repo", dir + "/nope.git", "--state-dir", dir + "/state-\(command)"])
                #expect(missing.status == 64, "\(missing.status) \(missing.stderr)")
                #expect(missing.stderr.contains("Error: no git repository at ") && missing.stderr.contains("/nope.git (check --repo)"),
                        "\(missing.stderr)")
                #expect(!missing.stderr.contains("unsupported URL protocol") && !missing.stderr.contains("Usage:"), "\(missing.stderr)")
            }
        }
    }

    /// A local origin moved away after the first run: the push says so as the fetch does, not
    /// libgit2's "unsupported URL protocol"; moved back, the kept records go out.
    @Test func aMissingLocalOriginIsNamedWhenPushingToo() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            let before = try s.auditCommits()
            try FileManager.default.moveItem(atPath: s.origin, toPath: s.origin + ".moved")
            try drift(s)
            let kept = try apply(s, key)
            #expect(kept.status == 3, "\(kept.stderr)")
            // The origin's path as libgit2 gives it back (the temporary folder's `//` made one).
            #expect(kept.stderr.contains("pushed on the next run: there is no git repository at ")
                    && kept.stderr.contains("/origin.git\n"), "\(kept.stderr)")
            #expect(!kept.stderr.contains("unsupported URL protocol"), "\(kept.stderr)")
            try FileManager.default.moveItem(atPath: s.origin + ".moved", toPath: s.origin)
            let again = try apply(s, key)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(try s.auditCommits().count > before.count)
        }
    }

    @Test func aRewrittenBranchWithTheStateCloneMadeAgainIsRecordedOnTheOriginsHistory() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            let pushed = try s.auditCommits()
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", pushed[2])
            try FileManager.default.removeItem(atPath: s.state + "/repository.git")
            let again = try apply(s, key)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stderr.contains("cannot be recovered by this Bulwark"))
            // Recorded on top of what the origin still has, and the trail goes on from there.
            let now = try s.auditCommits()
            #expect(Array(now.suffix(pushed.count - 2)) == Array(pushed.dropFirst(2)))
            #expect(try git("--git-dir", s.origin, "log", "--format=%H", "--grep=AuditBranch/bulwark/audit", "bulwark/audit")
                .split(separator: "\n").count == 1)
            #expect(!(try branches(s)).contains { $0.hasPrefix("bulwark/audit-recovered-") })
            try drift(s)
            let third = try apply(s, key)
            #expect(third.status == 0)
            #expect(!third.stderr.contains("rewritten"), "recorded once")
        }
    }

    @Test func theDaemonSignsItsRecordsAndCountsTampering() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            let daemon = try DaemonTests().start(s, poll: 1, ["--secrets-dir", key.secrets, "--signing-key", key.path])
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            #expect(daemon.wait(seconds: 60) { ((try? s.auditCommits()) ?? []).count > 3 }, "\(daemon.log)")
            #expect(try daemon.get("/metrics").body.contains("bulwark_audit_tampering_total 0"))
            let pushed = try s.auditCommits()
            #expect(try verifyAudit(s.origin, "--trusted-signers", key.allowed).status == 0)

            // The audit branch is rewound on the origin: the daemon notices at its next poll.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", pushed[1])
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/metrics").body.contains("bulwark_audit_tampering_total 1")) == true },
                    "\(daemon.log)")
            #expect(daemon.wait(seconds: 60) { ((try? branches(s)) ?? []).contains { $0.hasPrefix("bulwark/audit-recovered-") } },
                    "\(daemon.log)")
            #expect(daemon.log.contains("the audit branch on the origin was tampered with"))
            #expect(daemon.terminate() == 0)
        }
    }

    /// A trail diverted to a recovery branch stays visible: `/readyz` is 503 naming the branch and
    /// the push that puts the records back, the status JSON and page name it, the gauge is 1, and
    /// all of it again after a restart (the state is the trail's, not the process's). Records
    /// put back: ready again, nothing diverted.
    @Test func aDivertedTrailKeepsTheDaemonNotReadyAcrossARestartUntilTheRecordsAreBack() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            let arguments = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            func gauge(_ daemon: DaemonProcess) throws -> Double? {
                try daemon.get("/metrics").body.split(separator: "\n").first { $0.hasPrefix("bulwark_audit_diverted ") }
                    .flatMap { Double($0.split(separator: " ")[1]) }
            }
            func divertedTo(_ daemon: DaemonProcess) throws -> String? {
                let status = try JSONSerialization.jsonObject(with: Data(try daemon.get("/api/v1/status").body.utf8)) as? [String: Any]
                return status?["auditDivertedTo"] as? String
            }
            var daemon = try DaemonTests().start(s, poll: 1, arguments)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            #expect(daemon.wait(seconds: 60) { ((try? s.auditCommits()) ?? []).count > 3 }, "\(daemon.log)")
            #expect(!(try daemon.get("/api/v1/status").body.contains("auditDivertedTo")))
            #expect(try gauge(daemon) == 0)
            let pushed = try s.auditCommits()

            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", pushed[1])
            func diverted(_ daemon: DaemonProcess) -> Bool {
                guard let ready = try? daemon.get("/readyz"),
                      let body = try? JSONSerialization.jsonObject(with: Data(ready.body.utf8)) as? [String: Any],
                      let reason = body["error"] as? String else { return false }
                // The JSON escapes each `/`: the reason is read decoded.
                return ready.status == 503 && reason.contains("audit records go to bulwark/audit-recovered-")
                    && reason.contains("git push origin origin/bulwark/audit-recovered-")
            }
            #expect(daemon.wait(seconds: 60) { diverted(daemon) }, "\(String(describing: try? daemon.get("/readyz")))")
            // Named as soon as the tampering is found; pushed with the next records.
            #expect(daemon.wait(seconds: 60) { ((try? branches(s)) ?? []).contains { $0.hasPrefix("bulwark/audit-recovered-") } },
                    "\(daemon.log)")
            let recovery = try #require(try branches(s).first { $0.hasPrefix("bulwark/audit-recovered-") })
            #expect(try divertedTo(daemon) == recovery)
            #expect(try daemon.get("/").body.contains("Audit trail diverted"))
            #expect(try gauge(daemon) == 1)
            #expect(daemon.log.components(separatedBy: "audit records go to a recovery branch").count == 2, "logged once")
            #expect(daemon.terminate() == 0)

            // After a restart: the same, though no tampering is found again.
            daemon = try DaemonTests().start(s, poll: 1, arguments)
            #expect(daemon.wait(seconds: 60) { diverted(daemon) }, "\(daemon.log)")
            #expect(try divertedTo(daemon) == recovery)
            #expect(try gauge(daemon) == 1)

            // The records put back on the audit branch: ready again, and records go there.
            #expect(daemon.wait(seconds: 60) {
                guard let head = try? git("--git-dir", s.origin, "rev-parse", recovery).trimmingCharacters(in: .whitespacesAndNewlines) else { return false }
                _ = try? git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", head)
                return (try? daemon.get("/readyz").status) == 200
            }, "\(daemon.log)")
            #expect(!(try daemon.get("/api/v1/status").body.contains("auditDivertedTo")))
            #expect(try gauge(daemon) == 0)
            #expect(daemon.log.contains("audit records go to the audit branch again"))
            #expect(daemon.terminate() == 0)
        }
    }

    /// Commits someone else put on the audit branch (a person's note, no Bulwark-Id): Bulwark's
    /// records still go on top (a fix is not stopped for it), with one warning per run of such
    /// commits, not one per record, from `apply` and in the daemon's log; `verify-audit` lists them.
    @Test func recordsOnTopOfCommitsBulwarkDidNotWriteAreWarnedAbout() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            let first = try apply(s, key)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(!first.stderr.contains("did not write"), "Bulwark's own records are not foreign")
            // A person adds two commits of their own on the origin's audit branch.
            func personCommits(_ summary: String) throws {
                let head = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
                let commit = try git("--git-dir", s.origin, "-c", "user.name=Pat", "-c", "user.email=pat@example.org", "commit-tree",
                                     "-p", head, "-m", summary, head + "^{tree}").trimmingCharacters(in: .whitespacesAndNewlines)
                try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", commit)
            }
            try personCommits("a note")
            try personCommits("another note")
            try drift(s)
            let before = try s.auditCommits().count
            let second = try apply(s, key)
            #expect(second.status == 0, "not refused: \(second.stderr)")
            #expect(second.stderr.components(separatedBy: "that Bulwark did not write").count == 2, "once: \(second.stderr)")
            #expect(second.stderr.contains("holds 2 commits"))
            #expect(second.stderr.contains("newest \"another note\" by "))
            let records = try s.auditCommits()
            #expect(records.count > before, "the fix's records went on top")
            #expect(try s.trailers("Bulwark-Id").count == records.count - 2)
            // Taken in once: the next pass does not warn again.
            try drift(s)
            let third = try apply(s, key)
            #expect(third.status == 0)
            #expect(!third.stderr.contains("did not write"), "\(third.stderr)")
            let verified = try verifyAudit(s.origin, "--trusted-signers", key.allowed)
            #expect(verified.status == 1)
            #expect(verified.stderr.contains("(\"a note\") is not an audit record"))
            #expect(verified.stderr.contains("(\"another note\") is not an audit record"))

            // The daemon logs it.
            try personCommits("a third note")
            let daemon = try DaemonTests().start(s, poll: 1, ["--secrets-dir", key.secrets, "--signing-key", key.path])
            #expect(daemon.wait(seconds: 60) { daemon.log.contains("foreign commits on the audit branch") }, "\(daemon.log)")
            #expect(daemon.terminate() == 0)
            #expect(daemon.log.components(separatedBy: "foreign commits on the audit branch").count == 2, "\(daemon.log)")
        }
    }

    @Test func anotherWriterAppendingIsNotTampering() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            // A second Bulwark (its own state directory) appends to the same branch, then the first again.
            try drift(s)
            #expect(try apply(s, key, stateDir: dir + "/state-2").status == 0)
            try drift(s)
            let again = try apply(s, key)
            #expect(again.status == 0)
            #expect(!again.stderr.contains("rewritten"))
            #expect(!(try branches(s)).contains { $0.hasPrefix("bulwark/audit-recovered-") })
            #expect(Set(try s.trailers("Bulwark-Instance")).count == 2)
            let verified = try verifyAudit(s.origin, "--trusted-signers", key.allowed)
            #expect(verified.status == 0, "\(verified.stderr)")
        }
    }

    @Test func theDemoRunsWithVerificationOn() async throws {
        try await withTemporaryDirectory { dir in
            let demo = try bulwark(["demo", "--dir", dir + "/demo"])
            #expect(demo.status == 0, "\(demo.stderr)")
            #expect(demo.stdout.contains("signed by the platform team"))
            #expect(demo.stdout.contains("no problems found"))
            let origin = dir + "/demo/origin.git"
            let signers = dir + "/demo/allowed_signers"
            // The policy commit and every audit record carry a signature git accepts.
            let policy = try git("--git-dir", origin, "-c", "gpg.ssh.allowedSignersFile=\(signers)", "log", "--format=%G? %GS", "main")
            #expect(policy == "G platform@example.org\n")
            let audit = try git("--git-dir", origin, "-c", "gpg.ssh.allowedSignersFile=\(signers)", "log", "--format=%G? %GS",
                                "bulwark/audit").split(separator: "\n")
            #expect(audit.count > 20)
            #expect(audit.allSatisfy { $0 == "G bulwark@localhost" })
        }
    }

    @Test func verifyAuditFindsRemovedForgedAndUnsignedRecords() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            let commits = try s.auditCommits()
            #expect(commits.count >= 4)
            #expect(try verifyAudit(s.origin, "--trusted-signers", key.allowed).status == 0)
            #expect(try verifyAudit(s.origin, "--audit-signers", key.allowed).status == 0)
            #expect(try verifyAudit(s.origin, "--audit-signers", key.allowed, "--trusted-signers", key.allowed).status == 64)

            // Drop one record from the middle: the rebase re-commits the later ones, unsigned.
            let work = dir + "/work"
            try git("clone", "-q", "--branch", "bulwark/audit", s.origin, work)
            try git("-c", "user.name=Mallory", "-c", "user.email=m@example.org", "rebase", "-q", "--onto", commits[2] + "~1",
                    commits[2], in: work)
            try git("push", "-q", "--force", "origin", "HEAD:refs/heads/bulwark/audit", in: work)
            let gap = try verifyAudit(s.origin, "--trusted-signers", key.allowed)
            #expect(gap.status == 1)
            #expect(gap.stderr.contains("1 record(s) missing before sequence number \(commits.count - 1)"))
            #expect(gap.stderr.contains("the commit is not signed"))
            // Without trusted signers the chain is still checked.
            #expect(try verifyAudit(s.origin).status == 1)

            // A record forged by another key, changing an earlier record.
            let mallory = try makeKey(dir, name: "mallory")
            try git("reset", "-q", "--hard", commits[0], in: work)
            let existing = try git("ls-tree", "-r", "--name-only", commits[1], in: work).split(separator: "\n").map(String.init)
            let victim = try #require(existing.first { $0.hasPrefix("audit/") })
            try write(work + "/" + victim, "{}\n")
            try git("add", "-A", in: work)
            try git("-c", "gpg.format=ssh", "-c", "user.signingkey=\(mallory.path)", "-c", "user.name=Bulwark",
                    "-c", "user.email=bulwark@localhost", "commit", "-S", "-qm", "remediate(x): y\n\nBulwark-Id: FORGED", in: work)
            try git("push", "-q", "--force", "origin", "HEAD:refs/heads/bulwark/audit", in: work)
            let forged = try verifyAudit(s.origin, "--trusted-signers", key.allowed)
            #expect(forged.status == 1)
            #expect(forged.stderr.contains("signed by a key that is not in the trusted signers file"))
            #expect(forged.stderr.contains("changes \(victim), which is not its own record"))
            // A team's file listing a person lets her signature pass; the Bulwarks' own file does not.
            let team = dir + "/team_signers"
            try write(team, try read(key.allowed) + (try read(mallory.allowed)))
            let byPerson = try verifyAudit(s.origin, "--trusted-signers", team)
            #expect(!byPerson.stderr.contains("FORGED): "), "\(byPerson.stderr)")
            #expect(byPerson.stdout.contains("signed by mallory@bulwark: 1 commit(s)"), "\(byPerson.stdout)")
            let byBulwarks = try verifyAudit(s.origin, "--audit-signers", key.allowed)
            #expect(byBulwarks.status == 1)
            #expect(byBulwarks.stderr.contains("(record FORGED): "), "\(byBulwarks.stderr)")

            // A trusted signature copied onto other content (the same key, checked in-process) does not verify.
            let raw = try git("--git-dir", s.origin, "cat-file", "commit", commits[0])
            let copied = raw.replacingOccurrences(of: "\nBulwark-Id: ", with: "\nBulwark-Note: edited\nBulwark-Id: ")
            #expect(copied != raw)
            try write(dir + "/copied", copied)
            let forgedID = try git("--git-dir", s.origin, "hash-object", "-t", "commit", "-w", dir + "/copied")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", forgedID)
            let replayed = try verifyAudit(s.origin, "--trusted-signers", key.allowed)
            #expect(replayed.status == 1)
            #expect(replayed.stderr.contains("commit \(forgedID.prefix(12))"))
            #expect(replayed.stderr.contains("does not verify"))

            // Usage mistakes exit 64.
            #expect(try verifyAudit(s.origin, "--audit-branch", "no/such").status == 64)
            #expect(try verifyAudit(dir + "/nowhere").status == 64)
        }
    }

    /// A record commit that adds its own record and also touches other paths (a file next to
    /// its record, an earlier record deleted, another's mode changed, a file at the top) is
    /// reported for each of them: `verify-audit` compares a commit's tree with its parent's
    /// folder by folder, descending only where ids differ, and must still see every change.
    @Test func verifyAuditReportsEveryOtherPathARecordCommitChanges() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let commits = try s.auditCommits()
            #expect(commits.count >= 3)
            let clean = try verifyAudit(s.origin)
            #expect(clean.status == 0, "\(clean.stderr)")

            let work = dir + "/work"
            try git("clone", "-q", "--branch", "bulwark/audit", s.origin, work)
            let added = { (commit: String) throws -> String in
                try git("diff-tree", "--no-commit-id", "--name-only", "-r", commit, in: work)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let own = try added(commits[0])
            let deleted = try added(commits[1])
            let chmodded = try added(commits[2])
            let sibling = (own as NSString).deletingLastPathComponent + "/sibling.json"
            try write(work + "/" + sibling, "{}\n")
            try write(work + "/notes.txt", "x\n")
            try git("rm", "-q", deleted, in: work)
            try git("add", "-A", in: work)
            try git("update-index", "--chmod=+x", chmodded, in: work)
            try git("-c", "user.name=Mallory", "-c", "user.email=m@example.org", "commit", "-q", "--amend", "--no-edit", in: work)
            try git("push", "-q", "--force", "origin", "HEAD:refs/heads/bulwark/audit", in: work)

            let found = try verifyAudit(s.origin)
            #expect(found.status == 1, "\(found.stdout)")
            #expect(found.stderr.contains("adds \(sibling), which is not its own record"), "\(found.stderr)")
            #expect(found.stderr.contains("adds notes.txt, which is not its own record"), "\(found.stderr)")
            #expect(found.stderr.contains("deletes \(deleted), which is not its own record"), "\(found.stderr)")
            #expect(found.stderr.contains("changes \(chmodded), which is not its own record"), "\(found.stderr)")
            // Its own record is still found and read.
            #expect(!found.stderr.contains("\(own)"), "\(found.stderr)")
            #expect(found.stdout.contains("4 problem(s) found"), "\(found.stdout)")
        }
    }

    /// Without signers to check against, `verify-audit` said "no problems found" of a branch whose
    /// newest record someone re-wrote unsigned (well-formed: its own record file, its sequence
    /// number). Unsigned records among signed ones are now a problem, and the summary says that
    /// signatures were not checked; a branch a Bulwark without a signing key wrote (none signed)
    /// still passes.
    @Test func withoutSignersUnsignedRecordsAmongSignedOnesAreAProblem() async throws {
        try await withTemporaryDirectory { dir in
            let unsignedOnly = try Scenario(in: dir + "/plain")
            #expect(try unsignedOnly.run("apply").status == 0)
            let plain = try verifyAudit(unsignedOnly.origin)
            #expect(plain.status == 0, "\(plain.stderr)")
            #expect(plain.stdout.contains("signatures not checked (no --audit-signers): 0 commit(s) carry a signature"), "\(plain.stdout)")

            let s = try Scenario(in: dir + "/signed")
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            let clean = try verifyAudit(s.origin)
            #expect(clean.status == 0, "\(clean.stderr)")
            let last = try #require(try s.auditCommits().first)
            let work = dir + "/work"
            try git("clone", "-q", "--branch", "bulwark/audit", s.origin, work)
            try git("reset", "-q", "--hard", "HEAD~1", in: work)
            try git("-c", "commit.gpgsign=false", "-c", "user.name=Mallory", "-c", "user.email=m@example.org", "cherry-pick", last, in: work)
            try git("push", "-q", "--force", "origin", "HEAD:refs/heads/bulwark/audit", in: work)
            let rewritten = try git("rev-parse", "--short=12", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            let found = try verifyAudit(s.origin)
            #expect(found.status == 1, "\(found.stdout)")
            #expect(found.stderr.contains("1 record commit(s) are unsigned among"), "\(found.stderr)")
            #expect(found.stderr.contains(rewritten), "\(found.stderr)")
        }
    }

    /// Review (M3, session 38): a well-formed record with this Bulwark's instance name and next
    /// sequence number, signed by a stranger's key, passed `verify-audit` without signers ("no
    /// problems found"): "unsigned among signed" is beaten by signing with any key. Records of
    /// one instance signed by two keys are now a problem, naming the forged commit; the branch
    /// Bulwark alone signed still passes (checked before the forgery).
    @Test func withoutSignersOneInstanceSignedByTwoKeysIsAProblem() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try makeKey(dir)
            #expect(try apply(s, key).status == 0)
            let clean = try verifyAudit(s.origin)
            #expect(clean.status == 0, "\(clean.stderr)")
            let instance = try ForgedRecordTests.instance(s)
            let next = (try s.trailers("Bulwark-Sequence").compactMap { UInt64($0) }.max() ?? 0) + 1
            let mallory = try makeKey(dir, name: "mallory")
            let forged = try ForgedRecordTests.forge(s, subject: "remediate(SSHDConfig/x): local A 1 -> 2", trailers: [
                ("Bulwark-Id", "01FQRGEDRECQRD000000000009"), ("Bulwark-Instance", instance), ("Bulwark-Sequence", "\(next)"),
            ], signingKey: mallory.path)
            let found = try verifyAudit(s.origin)
            #expect(found.status == 1, "\(found.stdout)")
            #expect(found.stderr.contains("instance \(instance)'s records are signed by 2 different keys"), "\(found.stderr)")
            #expect(found.stderr.contains("1 commit(s) such as \(forged.prefix(12))"), "\(found.stderr)")
        }
    }

    /// A Bulwark that has committed nothing yet numbers its first record 1 without reading the
    /// audit branch, however much another Bulwark wrote there (a new state directory made by
    /// `plan`, then `apply`, read every commit back to the root: 100,000 on a long branch); one
    /// that has committed goes on from its last number, and so does one whose trail file is from
    /// before `committed` was kept.
    @Test func aBulwarkThatHasCommittedNothingReadsNoHistoryForItsFirstNumber() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            for id in ["01AAAAAAAAAAAAAAAAAAAAAAAA", "01BBBBBBBBBBBBBBBBBBBBBBBB", "01CCCCCCCCCCCCCCCCCCCCCCCC"] {
                #expect(try await PolicyRepositoryTests.otherWriter(s, dir: dir, id: id) == .pushed(commits: 1))
            }
            func process(_ id: String?) async throws -> Int {
                let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
                _ = try await repo.sync()
                guard let id else { return 0 }
                _ = try await repo.write(PolicyRepositoryTests().record(id))
                #expect(try await repo.publish() == .pushed(commits: 1))
                return await repo.sequenceCommitsRead
            }
            // A process that commits nothing makes the state directory (as `plan` does).
            #expect(try await process(nil) == 0)
            let trail = s.state + "/" + AuditTrail.fileName
            #expect(try read(trail).contains("\"committed\":false"))
            // The next one commits: number 1, no audit commit read.
            #expect(try await process("01DDDDDDDDDDDDDDDDDDDDDDDD") == 0)
            #expect(try read(trail).contains("\"committed\":true"))
            // Then 2, from its own last commit at the branch's head.
            #expect(try await process("01EEEEEEEEEEEEEEEEEEEEEEEE") == 1)
            // A trail file written before `committed` was kept: the branch is read as before.
            try write(trail, try read(trail).replacingOccurrences(of: "\"committed\":true,", with: ""))
            #expect(try !read(trail).contains("committed"))
            #expect(try await process("01FFFFFFFFFFFFFFFFFFFFFFFF") == 1)
            let instances = try s.trailers("Bulwark-Instance")
            let numbers = try s.trailers("Bulwark-Sequence")
            #expect(instances.count == 6 && Set(instances.prefix(3)).count == 1 && Set(instances).count == 2)
            #expect(numbers.prefix(3) == ["3", "2", "1"] && numbers.suffix(3) == ["3", "2", "1"])
        }
    }
}
