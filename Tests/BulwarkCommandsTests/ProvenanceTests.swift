@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Who wrote what, as git proves it, through the binary against a real origin, with commits made
/// and signed by the real `git` with `ssh-keygen` keys: a weakening's authors are named as its
/// approvers are (verified signers), a merge is judged by what it undoes as well as what it adds,
/// an approval brought back from an old commit is not credited to whoever first wrote it, and a
/// weakening that never reached its target still needs a second person.
@Suite struct ProvenanceTests {
    let signatures = SignatureTests()
    let safety = SafetyEndToEndTests()
    let rootLogin = "SSHDConfig/cis-5.1.20-permit-root-login"
    let maxAuthTries = "SSHDConfig/cis-5.1.16-max-auth-tries"

    /// Someone who commits: git's author fields, and the key they sign with (nil: unsigned).
    struct Person {
        var name: String
        var email: String
        var key: SignatureTests.Key?
    }

    /// A clone of the scenario's origin to work in.
    func clone(_ s: Scenario) throws -> String {
        let work = s.dir + "/work-\(UUID().uuidString.prefix(8))"
        try git("clone", "-q", s.origin, work)
        return work
    }

    /// Runs git in `work` as `person` (author and committer), with their key as the signing key;
    /// returns the output, trimmed.
    @discardableResult
    func gitAs(_ person: Person, _ arguments: String..., in work: String) throws -> String {
        let signing = person.key.map { ["-c", "gpg.format=ssh", "-c", "user.signingkey=\($0.privateKey)"] } ?? []
        let result = try run("/usr/bin/git", signing + arguments, in: work, environment: [
            "GIT_AUTHOR_NAME": person.name, "GIT_AUTHOR_EMAIL": person.email,
            "GIT_COMMITTER_NAME": person.name, "GIT_COMMITTER_EMAIL": person.email,
        ])
        guard result.status == 0 else { throw SupportError("git \(arguments.joined(separator: " ")) failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes (or, for nil, removes) `files` in `work` and commits them as `person`, signed when
    /// they have a key; returns the commit's id.
    @discardableResult
    func commit(_ person: Person, _ files: [String: String?], _ message: String, in work: String) throws -> String {
        for (path, text) in files.sorted(by: { $0.key < $1.key }) {
            if let text {
                try write(work + "/" + path, text)
                try gitAs(person, "add", path, in: work)
            } else {
                try gitAs(person, "rm", "-q", path, in: work)
            }
        }
        try gitAs(person, "commit", person.key == nil ? "--no-gpg-sign" : "-S", "-qm", message, in: work)
        return try gitAs(person, "rev-parse", "HEAD", in: work)
    }

    func approval(_ id: String, by approver: String) -> String {
        """
        apiVersion: bulwark/v1
        kind: Approval
        metadata: {name: a-\(id.lowercased())}
        spec: {id: \(id), approver: "\(approver)", reason: "CHG-11"}
        """
    }

    /// The policy's sshd file with root login allowed: a weakening.
    func rootLoginAllowed(_ work: String) throws -> String {
        try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"")
    }

    func sshd(_ s: Scenario) throws -> String { try read(s.host + "/etc/ssh/sshd_config") }

    /// The revision the state directory compares weakenings with.
    func baseline(_ s: Scenario) throws -> String { try read(Provenance.baselineFile(s.state)).trimmingCharacters(in: .whitespacesAndNewlines) }

    func head(_ s: Scenario) throws -> String { try git("--git-dir", s.origin, "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines) }

    // MARK: - A weakening's authors are its verified signers

    @Test func aSignerCannotApproveTheirOwnWeakeningUnderAnotherAuthorsName() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let malloryKey = try signatures.makeKey(dir, "mallory")
            let signers = try signatures.allowedSigners(dir, malloryKey, try signatures.makeKey(dir, "sam"))
            // Mallory signs the weakening, and writes Sam into git's author field.
            let mallory = Person(name: "Sam Security", email: "sam@example.org", key: malloryKey)
            let work = try clone(s)
            try commit(mallory, ["desired-state/hosts/sshd.yaml": try rootLoginAllowed(work)], "allow root login", in: work)
            try gitAs(mallory, "push", "-q", "origin", "main", in: work)
            let before = try s.snapshot()
            let plan = try s.run("plan", "--trusted-signers", signers)
            #expect(plan.stdout.contains("weakens the policy by mallory: PermitRootLogin: no → yes"), "\(plan.stdout)")
            #expect(try s.run("apply", "--trusted-signers", signers).status == 0)
            let held = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(held.decision == "held")

            // Then she signs her own approval: the same signer, whatever the author field said.
            try commit(mallory, ["approvals/\(held.id).yaml": approval(held.id, by: "mallory")], "approve", in: work)
            try gitAs(mallory, "push", "-q", "origin", "main", in: work)
            let own = try s.run("apply", "--trusted-signers", signers)
            #expect(own.status == 0, "\(own.stderr)")
            #expect(try s.snapshot() == before, "nothing weakened on the word of its own signer")
            #expect(try sshd(s).contains("\nPermitRootLogin no\n"))
            #expect(try s.run("plan", "--trusted-signers", signers).stdout.contains("weakens the policy by mallory"))
        }
    }

    @Test func aWeakeningSignedByOnePrincipalIsApprovedByAnother() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            // Principals that are not e-mail addresses, and an honest author field.
            let (malloryKey, samKey) = (try signatures.makeKey(dir, "mallory"), try signatures.makeKey(dir, "sam"))
            let mallory = Person(name: "Mallory", email: "mallory@example.org", key: malloryKey)
            let sam = Person(name: "Sam Security", email: "sam@example.org", key: samKey)
            let signers = try signatures.allowedSigners(dir, malloryKey, samKey)
            let work = try clone(s)
            try commit(mallory, ["desired-state/hosts/sshd.yaml": try rootLoginAllowed(work)], "allow root login", in: work)
            try gitAs(mallory, "push", "-q", "origin", "main", in: work)
            #expect(try s.run("apply", "--trusted-signers", signers).status == 0)
            let held = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(held.decision == "held")
            // `mallory` is the signer of the weakening as of her approval, though git says `Mallory <mallory@example.org>`.
            try commit(mallory, ["approvals/\(held.id).yaml": approval(held.id, by: "mallory")], "approve", in: work)
            try gitAs(mallory, "push", "-q", "origin", "main", in: work)
            #expect(try s.run("apply", "--trusted-signers", signers).status == 0)
            #expect(try sshd(s).contains("\nPermitRootLogin no\n"), "her own approval does not count")

            // Sam, another signer, approves: the weakening goes through, approved by his principal.
            try commit(sam, ["approvals/\(held.id).yaml": approval(held.id, by: "sam")], "approve", in: work)
            try gitAs(sam, "push", "-q", "origin", "main", in: work)
            let approved = try s.run("apply", "--trusted-signers", signers)
            #expect(approved.status == 0, "\(approved.stderr)")
            #expect(try sshd(s).contains("\nPermitRootLogin yes\n"))
            let applied = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(applied.decision == "applied")
            #expect(applied.approver == "sam")
            #expect(try baseline(s) == head(s), "applied: the weakening is the new baseline")
        }
    }

    // MARK: - A merge is judged by what it undoes

    /// The scenario applied once, then three signed commits: security adds an approval (the old
    /// commit), admin tightens MaxAuthTries, security withdraws the approval. Applied with the trust
    /// policy, then drifted. Returns the old commit, the head, the signers and the policy.
    func trustedHistory(_ dir: String, _ s: Scenario, _ work: String) throws
        -> (old: String, head: String, signers: String, policy: String, admin: Person, wendy: Person) {
        let keys = try ["admin", "security", "wendy"].map { try signatures.makeKey(dir, "\($0)@example.org") }
        let admin = Person(name: "Admin", email: "admin@example.org", key: keys[0])
        let security = Person(name: "Security", email: "security@example.org", key: keys[1])
        let wendy = Person(name: "Wendy", email: "wendy@example.org", key: keys[2])
        let signers = try signatures.allowedSigners(dir, keys[0], keys[1], keys[2])
        let policy = dir + "/trust-policy"
        try write(policy, "**  admin@example.org\nwaivers/**  admin@example.org wendy@example.org\napprovals/**  security@example.org\n")
        let id = "01ABCDEFGHJKMNPQRSTVWXYZ01"
        let old = try commit(security, ["approvals/\(id).yaml": approval(id, by: "security@example.org")], "approve", in: work)
        let tighter = try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3")
        try commit(admin, ["desired-state/hosts/sshd.yaml": tighter], "three tries", in: work)
        let head = try commit(security, ["approvals/\(id).yaml": nil], "withdraw the approval", in: work)
        try gitAs(admin, "push", "-q", "origin", "main", in: work)
        let applied = try s.run("apply", "--trusted-signers", signers, "--trust-policy", policy)
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(try sshd(s).contains("\nMaxAuthTries 3\n"))
        try signatures.drift(s)
        return (old, head, signers, policy, admin, wendy)
    }

    @Test func aMergeThatKeepsAnOldCommitsFilesIsJudgedByWhatItRollsBack() async throws {
        try await withTemporaryDirectory { dir in
            let s = try signatures.applied(dir)
            let work = try clone(s)
            let t = try trustedHistory(dir, s, work)
            // Wendy may change only waivers/. Her merge's first parent is the old commit, its second
            // the head; its tree is the head's but for the sshd file and the withdrawn approval,
            // taken from the old commit. It differs from the old commit nowhere those are concerned,
            // and from the head only there.
            let approvalFile = "approvals/01ABCDEFGHJKMNPQRSTVWXYZ01.yaml"
            try gitAs(t.wendy, "checkout", "-q", t.old, "--", "desired-state/hosts/sshd.yaml", approvalFile, in: work)
            let tree = try gitAs(t.wendy, "write-tree", in: work)
            let merge = try gitAs(t.wendy, "commit-tree", tree, "-p", t.old, "-p", t.head, "-S", "-m", "merge waivers", in: work)
            try gitAs(t.wendy, "push", "-q", "origin", "\(merge):refs/heads/main", in: work)
            let before = try s.snapshot()

            let refused = try s.run("apply", "--trusted-signers", t.signers, "--trust-policy", t.policy)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("commit \(merge.prefix(12))"), "\(refused.stderr)")
            #expect(refused.stderr.contains("wendy@example.org may not change desired-state/hosts/sshd.yaml"))
            #expect(refused.stderr.contains("wendy@example.org may not change \(approvalFile)"))
            #expect(try s.snapshot() == before, "nothing acted on the revision")
            let records = try signatures.refusals(s)
            #expect(records.count == 1)
            #expect(records.first?.contains("may not change desired-state/hosts/sshd.yaml") == true)
        }
    }

    @Test func aMergeOfAWaiversOnlyBranchGoesThrough() async throws {
        try await withTemporaryDirectory { dir in
            let s = try signatures.applied(dir)
            let work = try clone(s)
            let t = try trustedHistory(dir, s, work)
            // Wendy adds a waiver on a branch while admin changes main; she merges her branch.
            try gitAs(t.wendy, "checkout", "-qb", "waivers", in: work)
            let expires = Date().addingTimeInterval(60 * 86_400).formatted(Date.ISO8601FormatStyle().year().month().day())
            try commit(t.wendy, ["waivers/router.yaml": """
                apiVersion: bulwark/v1
                kind: Waiver
                metadata: {name: router-needs-forwarding}
                spec:
                  match: {kind: Sysctl, property: net.ipv4.ip_forward}
                  reason: this host routes lab traffic
                  owner: netops@example.org
                  expires: \(expires)
                """], "waive forwarding on the router", in: work)
            try gitAs(t.admin, "checkout", "-q", "main", in: work)
            try commit(t.admin, ["notes/admin.txt": "meanwhile\n"], "a note", in: work)
            try gitAs(t.wendy, "merge", "--no-ff", "-S", "-qm", "merge waivers", "waivers", in: work)
            #expect(try gitAs(t.wendy, "rev-list", "--parents", "-1", "HEAD", in: work).split(separator: " ").count == 3)
            try gitAs(t.wendy, "push", "-q", "origin", "main", in: work)

            let applied = try s.run("apply", "--trusted-signers", t.signers, "--trust-policy", t.policy)
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try signatures.isFixed(s))
            #expect(try sshd(s).contains("\nMaxAuthTries 3\n"))
            #expect(try signatures.refusals(s).isEmpty)
        }
    }

    // MARK: - An approval's writer, followed back through merges

    @Test func anApprovalBroughtBackFromAnOldCommitIsNotCreditedToItsFirstWriter() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let id = try #require(try safety.decisions(s, resource: rootLogin).first { $0.decision == "held" }?.id)
            let (samKey, malloryKey) = (try signatures.makeKey(dir, "sam@example.org"), try signatures.makeKey(dir, "mallory@example.org"))
            let sam = Person(name: "Sam Security", email: "sam@example.org", key: samKey)
            let mallory = Person(name: "Mallory", email: "mallory@example.org", key: malloryKey)
            let signers = try signatures.allowedSigners(dir, samKey, malloryKey)
            let work = try clone(s)
            let file = "approvals/\(id).yaml"
            // Sam approves, then withdraws his approval before any pass used it.
            let old = try commit(sam, [file: approval(id, by: "Sam Security <sam@example.org>")], "approve", in: work)
            let withdrawn = try commit(sam, [file: nil], "withdraw the approval", in: work)
            try gitAs(sam, "push", "-q", "origin", "main", in: work)
            let before = try s.snapshot()
            #expect(try s.run("apply", "--trusted-signers", signers).status == 0)
            #expect(try s.snapshot() == before)

            // Mallory's signed merge of the old commit into the head takes the approval back.
            try gitAs(mallory, "checkout", "-q", old, "--", file, in: work)
            let tree = try gitAs(mallory, "write-tree", in: work)
            let merge = try gitAs(mallory, "commit-tree", tree, "-p", old, "-p", withdrawn, "-S", "-m", "merge", in: work)
            try gitAs(mallory, "push", "-q", "origin", "\(merge):refs/heads/main", in: work)
            let merged = try s.run("apply", "--trusted-signers", signers)
            #expect(merged.status == 0, "\(merged.stderr)")
            #expect(merged.stderr.contains("names Sam Security <sam@example.org> as approver but was committed by mallory@example.org (\(merge.prefix(12)))"),
                    "\(merged.stderr)")
            #expect(try s.snapshot() == before, "the withdrawn approval approves nothing")
            #expect(try signatures.refusals(s).count == 1)

            // Without signatures, a rollback to the old commit brings it back too: refused, since
            // the last applied revision did not have it as that commit wrote it.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/main", old)
            let rolledBack = try s.run("apply")
            #expect(rolledBack.stderr.contains("is as \(old.prefix(12)) wrote it, before the last applied revision"), "\(rolledBack.stderr)")
            #expect(try s.snapshot() == before)
            #expect(try signatures.refusals(s).count == 2)
        }
    }

    @Test func anApprovalThatCameThroughACleanMergeOrWasInForceAlreadyIsCreditedToItsSigner() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let first = try #require(try safety.decisions(s, resource: rootLogin).first { $0.decision == "held" }?.id)
            let second = try #require(try safety.decisions(s, resource: maxAuthTries).first { $0.decision == "held" }?.id)
            let (samKey, malloryKey) = (try signatures.makeKey(dir, "sam@example.org"), try signatures.makeKey(dir, "mallory@example.org"))
            let sam = Person(name: "Sam Security", email: "sam@example.org", key: samKey)
            let mallory = Person(name: "Mallory", email: "mallory@example.org", key: malloryKey)
            let signers = try signatures.allowedSigners(dir, samKey, malloryKey)
            let work = try clone(s)

            // Sam's approval lands while the target cannot be observed: no pass uses it, and the
            // baseline moves past it. Once the target is back, a later revision still carries it.
            try commit(sam, ["approvals/\(first).yaml": approval(first, by: "Sam Security <sam@example.org>")], "approve", in: work)
            try gitAs(sam, "push", "-q", "origin", "main", in: work)
            try FileManager.default.moveItem(atPath: s.host, toPath: dir + "/host-away")
            _ = try s.run("apply", "--trusted-signers", signers)
            #expect(try baseline(s) == head(s))
            try FileManager.default.moveItem(atPath: dir + "/host-away", toPath: s.host)
            try commit(mallory, ["notes/a.txt": "later\n"], "a note", in: work)
            try gitAs(mallory, "push", "-q", "origin", "main", in: work)
            let inForce = try s.run("apply", "--trusted-signers", signers)
            #expect(inForce.status == 0, "\(inForce.stderr)")
            #expect(try sshd(s).contains("\nPermitRootLogin no\n"))
            #expect(try safety.decisions(s, resource: rootLogin).first?.approver == "sam@example.org")

            // Sam approves on a branch while main moves on; Mallory merges the branch.
            try gitAs(sam, "checkout", "-qb", "approve", in: work)
            try commit(sam, ["approvals/\(second).yaml": approval(second, by: "Sam Security <sam@example.org>")], "approve", in: work)
            try gitAs(mallory, "checkout", "-q", "main", in: work)
            try commit(mallory, ["notes/b.txt": "meanwhile\n"], "another note", in: work)
            try gitAs(mallory, "merge", "--no-ff", "-S", "-qm", "merge the approval", "approve", in: work)
            try gitAs(mallory, "push", "-q", "origin", "main", in: work)
            let merged = try s.run("apply", "--trusted-signers", signers)
            #expect(merged.status == 0, "\(merged.stderr)")
            #expect(try sshd(s).contains("\nMaxAuthTries 4\n"))
            let applied = try #require(try safety.decisions(s, resource: maxAuthTries).first)
            #expect(applied.decision == "applied")
            #expect(applied.approver == "sam@example.org")
            #expect(try signatures.refusals(s).isEmpty)
        }
    }

    // MARK: - The baseline waits for a weakening to reach its target

    @Test func aWeakeningThatLandsWhileItsTargetCannotBeObservedStillNeedsASecondPerson() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let applied = try head(s)
            #expect(try baseline(s) == applied)
            try FileManager.default.moveItem(atPath: s.host, toPath: dir + "/host-away")
            try s.commitPolicy("desired-state/hosts/sshd.yaml", try rootLoginAllowed(s.policy), message: "allow root login")
            let blind = try s.run("apply")
            #expect(blind.stderr.contains("target root does not exist"), "\(blind.stderr)")
            #expect(try baseline(s) == applied, "the weakening reached no target: the baseline stays")

            try FileManager.default.moveItem(atPath: dir + "/host-away", toPath: s.host)
            let before = try s.snapshot()
            #expect(try s.run("apply").status == 0)
            #expect(try s.snapshot() == before, "nothing weakened without a second person")
            let held = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(held.decision == "held")
            #expect(try s.run("plan").stdout.contains("weakens the policy by Test Person <person@example.org>: PermitRootLogin: no → yes"))
        }
    }

    @Test func theBaselineMovesOnceTheWeakeningReachesItsTarget() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            // A target that cannot be observed holds back no revision without a weakening.
            try FileManager.default.moveItem(atPath: s.host, toPath: dir + "/host-away")
            try s.commitPolicy("notes/a.txt", "unrelated\n")
            _ = try s.run("apply")
            #expect(try baseline(s) == head(s))
            // A weakening while it is away holds the baseline until a second person's approval is used.
            let applied = try head(s)
            try s.commitPolicy("desired-state/hosts/sshd.yaml", try rootLoginAllowed(s.policy), message: "allow root login")
            _ = try s.run("apply")
            #expect(try baseline(s) == applied)
            try FileManager.default.moveItem(atPath: dir + "/host-away", toPath: s.host)
            #expect(try s.run("apply").status == 0)
            let held = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(held.decision == "held")
            #expect(try baseline(s) == applied)
            #expect(try safety.approve(s, held.id, as: "Sam Security", "sam@example.org").status == 0)
            #expect(try s.run("apply").status == 0)
            #expect(try sshd(s).contains("\nPermitRootLogin yes\n"))
            #expect(try baseline(s) == head(s))
            #expect(try s.run("plan").status == 0, "in sync")
        }
    }

    // MARK: - A resource removed, then added back weaker

    /// The policy's sshd file without the root-login resource, and that resource's document.
    func withoutRootLogin(_ work: String) throws -> (file: String, removed: String) {
        let documents = try read(work + "/desired-state/hosts/sshd.yaml").components(separatedBy: "\n---\n")
        let removed = try #require(documents.first { $0.contains("cis-5.1.20-permit-root-login") })
        return (documents.filter { $0 != removed }.joined(separator: "\n---\n"), removed)
    }

    /// Applies the scenario, then a revision without the root-login resource; returns the sshd
    /// file as that revision has it and the document removed.
    func rootLoginRemovedAndApplied(_ s: Scenario) throws -> (file: String, removed: String) {
        #expect(try s.run("apply").status == 0)
        let (without, removed) = try withoutRootLogin(s.policy)
        try s.commitPolicy("desired-state/hosts/sshd.yaml", without, message: "root login: managed elsewhere")
        #expect(try s.run("apply").status == 0)
        return (without, removed)
    }

    /// Root login's resource is removed (applied: sshd keeps `PermitRootLogin no`, and the
    /// revision becomes the baseline), then added back with `yes`. The baseline sets no root
    /// login at all, so only what earlier applied revisions gave it shows the weakening: held
    /// for a second person, and nothing written. Added back as it was, it is in sync.
    @Test(arguments: [false, true])
    func aResourceRemovedAndAddedBackWeakerStillNeedsASecondPerson(weaker: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (without, removed) = try rootLoginRemovedAndApplied(s)
            #expect(try baseline(s) == head(s), "the removal is applied: the baseline sets no root login")
            #expect(try sshd(s).contains("\nPermitRootLogin no\n"), "a removed resource leaves the host as it is")

            let back = weaker ? removed.replacingOccurrences(of: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"") : removed
            #expect(back != removed || !weaker)
            try s.commitPolicy("desired-state/hosts/sshd.yaml", without + "\n---\n" + back, message: "root login back")
            let before = try s.snapshot()
            let plan = try s.run("plan")
            #expect(try s.run("apply").status == 0)
            #expect(try s.snapshot() == before, "nothing weakened, nor anything to change when it comes back as it was")
            let held = try safety.decisions(s, resource: rootLogin).filter { $0.decision == "held" }
            if weaker {
                #expect(plan.stdout.contains("weakens the policy by Test Person <person@example.org>: PermitRootLogin: no → yes"),
                        "\(plan.stdout)")
                #expect(held.count == 1)
                #expect(try baseline(s) != head(s))
            } else {
                #expect(!plan.stdout.contains("weakens"), "\(plan.stdout)")
                #expect(held.isEmpty)
                #expect(try baseline(s) == head(s))
            }
        }
    }

    /// Root login is weakened while the resource is bound to no target (a selector no target
    /// matches): nothing is held, since nothing is planned, and the baseline stays, since the
    /// weakening reached no target. Bound again, it is held for a second person. A resource
    /// bound to no target that weakens nothing holds back no revision.
    @Test(arguments: [false, true])
    func aWeakeningBoundToNoTargetIsHeldOnceItIsBound(weaker: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let applied = try head(s)
            let (without, removed) = try withoutRootLogin(s.policy)
            let value = weaker ? "PermitRootLogin: \"yes\"" : "PermitRootLogin: \"no\""
            let unbound = removed.replacingOccurrences(of: "PermitRootLogin: \"no\"", with: value)
                .replacingOccurrences(of: "\nspec:", with: "\ntargets: {selector: {role: staging-later}}\nspec:")
            #expect(unbound.contains("staging-later"))
            try s.commitPolicy("desired-state/hosts/sshd.yaml", without + "\n---\n" + unbound, message: "root login: staging for now")
            #expect(try s.run("apply").status == 0)
            #expect(try baseline(s) == (weaker ? applied : try head(s)))

            try s.commitPolicy("desired-state/hosts/sshd.yaml", without + "\n---\n"
                               + unbound.replacingOccurrences(of: "targets: {selector: {role: staging-later}}\n", with: ""),
                               message: "root login: every host again")
            let before = try s.snapshot()
            #expect(try s.run("apply").status == 0)
            #expect(try s.snapshot() == before)
            #expect(try safety.decisions(s, resource: rootLogin).filter { $0.decision == "held" }.count == (weaker ? 1 : 0))
            #expect(try sshd(s).contains("\nPermitRootLogin no\n"))
        }
    }

    /// `weakening: {SSHDConfig: allow}` added in the commit that allows root login lets nothing
    /// through: the opt-out counts once the revision that added it was applied. Added first, and
    /// applied, the later weakening goes through as the controller says.
    @Test(arguments: [false, true])
    func anOptOutCountsOnlyOnceItWasApplied(sameCommit: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let controller = try read(s.policy + "/controllers/host-hardening.yaml")
                .replacingOccurrences(of: "  maxChangesPerCycle: 50", with: "  maxChangesPerCycle: 50\n  weakening: {SSHDConfig: allow}")
            if !sameCommit {
                try s.commitPolicy("controllers/host-hardening.yaml", controller, message: "sshd: no second person")
                #expect(try s.run("apply").status == 0)
                #expect(try baseline(s) == head(s))
            }
            // One commit with both files (the controller's as it already is, when applied before).
            let work = try clone(s)
            let person = Person(name: "Test Person", email: "person@example.org", key: nil)
            try commit(person, ["controllers/host-hardening.yaml": controller,
                                "desired-state/hosts/sshd.yaml": try rootLoginAllowed(work)], "allow root login", in: work)
            try gitAs(person, "push", "-q", "origin", "main", in: work)
            #expect(try s.run("apply").status == 0)
            let held = try safety.decisions(s, resource: rootLogin).filter { $0.decision == "held" }
            #expect(held.count == (sameCommit ? 1 : 0))
            #expect(try sshd(s).contains(sameCommit ? "\nPermitRootLogin no\n" : "\nPermitRootLogin yes\n"))
        }
    }

    /// The memory of removed resources cannot be read: every property the baseline does not set
    /// is held as a possible weakening, the file is left as it is, and the plan says why. Moved
    /// away, the memory starts again and the property is compared with nothing.
    @Test func anUnreadableMemoryOfRemovedResourcesHoldsWhatItCannotCompare() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (without, removed) = try rootLoginRemovedAndApplied(s)
            let memory = Provenance.retiredClaimsFile(s.state)
            #expect(try read(memory).contains("PermitRootLogin"))
            try write(memory, "[{\"claim\": ")
            try s.commitPolicy("desired-state/hosts/sshd.yaml", without + "\n---\n"
                               + removed.replacingOccurrences(of: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\""),
                               message: "root login back")
            let before = try s.snapshot()
            let apply = try s.run("apply")
            #expect(apply.status == 0)
            #expect(apply.stderr.contains("retired-claims.json is not a list of retired claims"), "\(apply.stderr)")
            #expect(try s.snapshot() == before, "nothing weakened")
            #expect(try safety.decisions(s, resource: rootLogin).filter { $0.decision == "held" }.count == 1)
            #expect(try s.run("plan").stdout.contains("PermitRootLogin: (what it had before is unknown"))
            #expect(try read(memory) == "[{\"claim\": ", "left for a person to look at")

            // Moved away, the property is compared with nothing: a value no earlier revision set is
            // judged as if it had been off, so root login turned on is still held.
            try FileManager.default.removeItem(atPath: memory)
            let again = try s.run("apply")
            #expect(again.status == 0)
            #expect(again.stdout.contains("PermitRootLogin: (new) (allows more root logins"), "\(again.stdout)")
            #expect(try !sshd(s).contains("\nPermitRootLogin yes\n"), "judged as new once the memory is moved away")
        }
    }

    // MARK: - A new state directory's baseline comes from a record a trusted key signed

    /// Bulwark (signing its records) applies; Mallory, a trusted signer, weakens the policy and
    /// pushes a made-up applied record naming her weakening to the audit branch, then waits for
    /// a Bulwark with a new state directory (a replaced container, a rebuilt host). With her
    /// record as the baseline there would be no weakening to judge. `mallorySigns`: whether she
    /// signs that record with her own key (listed for policy commits, not as a Bulwark).
    @Test(arguments: [false, true])
    func aRecordPushedByAnotherWriterIsNotTheBaselineOfANewStateDirectory(mallorySigns: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let bulwarkKey = try AuditTrailTests().makeKey(dir)
            let (malloryKey, samKey) = (try signatures.makeKey(dir, "mallory"), try signatures.makeKey(dir, "sam"))
            let signers = try signatures.allowedSigners(dir, malloryKey, samKey)
            func apply(stateDir: String? = nil) throws -> ProcessOutput {
                try s.run("apply", "--trusted-signers", signers, "--secrets-dir", bulwarkKey.secrets, "--signing-key", bulwarkKey.path,
                          stateDir: stateDir)
            }
            // A signed revision first: with trusted signers, a new state directory verifies its baseline's commit too.
            let work = try clone(s)
            let sam = Person(name: "Sam", email: "sam@example.org", key: samKey)
            let tighter = try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3")
            try commit(sam, ["desired-state/hosts/sshd.yaml": tighter], "three tries", in: work)
            try gitAs(sam, "push", "-q", "origin", "main", in: work)
            let first = try apply()
            #expect(first.status == 0, "\(first.stderr)")

            let mallory = Person(name: "Mallory", email: "mallory@example.org", key: malloryKey)
            try commit(mallory, ["desired-state/hosts/sshd.yaml": try rootLoginAllowed(work)], "allow root login", in: work)
            try gitAs(mallory, "push", "-q", "origin", "main", in: work)
            let weakening = try head(s)
            let forger = try PolicyRepository(.init(url: s.origin, stateDirectory: dir + "/mallory-state",
                                                    signer: mallorySigns ? try SSHSigningKey(openSSH: read(malloryKey.privateKey)) : nil))
            _ = try await forger.sync()
            var forged = PolicyRepositoryTests().record("01FQRGEDRECQRD0000000000AA")
            forged.decision = .applied
            forged.result = .verified
            forged.desiredCommit = Revision(weakening)
            _ = try await forger.write(forged)
            #expect(try await forger.publish() == .pushed(commits: 1))

            let fresh = dir + "/fresh-state"
            let before = try s.snapshot()
            let plan = try s.run("plan", "--trusted-signers", signers, "--secrets-dir", bulwarkKey.secrets,
                                 "--signing-key", bulwarkKey.path, stateDir: fresh)
            #expect(plan.stdout.contains("weakens the policy by mallory: PermitRootLogin: no → yes"), "\(plan.stdout)")
            #expect(plan.stderr.contains("record 01FQRGEDRECQRD0000000000AA: its commit"), "\(plan.stderr)")
            let applied = try apply(stateDir: fresh)
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try s.snapshot() == before, "nothing weakened without a second person")
            let held = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(held.decision == "held")
        }
    }

    /// The legitimate case: a new state directory takes its baseline from this Bulwark's own
    /// signed record, and a revision that weakens nothing since goes through untouched.
    @Test func aNewStateDirectoryTakesItsBaselineFromItsOwnSignedRecord() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let bulwarkKey = try AuditTrailTests().makeKey(dir)
            let samKey = try signatures.makeKey(dir, "sam")
            let signers = try signatures.allowedSigners(dir, samKey)
            func run(_ command: String, stateDir: String? = nil) throws -> ProcessOutput {
                try s.run(command, "--trusted-signers", signers, "--secrets-dir", bulwarkKey.secrets, "--signing-key", bulwarkKey.path,
                          stateDir: stateDir)
            }
            let sam = Person(name: "Sam", email: "sam@example.org", key: samKey)
            let work = try clone(s)
            let tighter = try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3")
            try commit(sam, ["desired-state/hosts/sshd.yaml": tighter], "three tries", in: work)
            try gitAs(sam, "push", "-q", "origin", "main", in: work)
            let first = try run("apply")
            #expect(first.status == 0, "\(first.stderr)")
            #expect(try sshd(s).contains("\nMaxAuthTries 3\n"))
            try signatures.drift(s)
            let fresh = dir + "/fresh-state"
            let again = try run("apply", stateDir: fresh)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(!again.stderr.contains("were not used as the last applied revision"), "\(again.stderr)")
            #expect(try read(Provenance.baselineFile(fresh)).trimmingCharacters(in: .whitespacesAndNewlines) == head(s))
            #expect(try sshd(s).contains("\nPermitRootLogin no\n"), "the drift is fixed")
        }
    }

    // MARK: - A new state directory compares with what was accepted, not with what was last fixed

    /// The `Bulwark-Baseline` trailer of the newest applied record of `resource`.
    func recordedBaseline(_ s: Scenario, resource: String) throws -> String? {
        let log = try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|"
                          + "%(trailers:key=Bulwark-Decision,valueonly,separator=)|%(trailers:key=Bulwark-Baseline,valueonly,separator=)",
                          "bulwark/audit")
        return log.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
            .first { $0.count == 3 && $0[0] == resource && $0[1] == "applied" }?[2]
    }

    /// A weakening held for a second person, then another fix made at a revision that includes
    /// it: that fix's record is not the baseline of a new state directory (a new agent, replica
    /// or container), whose comparison would otherwise be the weakening with itself.
    @Test func aHeldWeakeningIsStillHeldOnANewStateDirectoryAfterAnotherFix() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let accepted = try head(s)
            let alice = Person(name: "Alice", email: "alice@example.org", key: nil)
            let work = try clone(s)
            try commit(alice, ["desired-state/hosts/sshd.yaml": try rootLoginAllowed(work)], "allow root login", in: work)
            let tighter = try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3")
            try commit(alice, ["desired-state/hosts/sshd.yaml": tighter], "three tries", in: work)
            try gitAs(alice, "push", "-q", "origin", "main", in: work)
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stderr)")
            #expect(try sshd(s).contains("\nMaxAuthTries 3\n") && sshd(s).contains("\nPermitRootLogin no\n"))
            #expect(try recordedBaseline(s, resource: maxAuthTries) == accepted, "the fix names what was accepted, not its own revision")

            let before = try s.snapshot()
            let fixes = try safety.decisions(s, resource: rootLogin).filter { $0.decision == "applied" }.count
            let fresh = try s.run("apply", stateDir: dir + "/fresh-state")
            #expect(fresh.status == 0, "\(fresh.stderr)")
            #expect(fresh.stdout.contains("weakens the policy"), "\(fresh.stdout)")
            #expect(try s.snapshot() == before, "nothing weakened without a second person")
            let decisions = try safety.decisions(s, resource: rootLogin)
            #expect(decisions.first?.decision == "held", "\(decisions)")
            #expect(decisions.filter { $0.decision == "applied" }.count == fixes, "no fix of the weakening recorded: \(decisions)")
            #expect(!FileManager.default.fileExists(atPath: Provenance.baselineFile(dir + "/fresh-state")))
        }
    }

    /// The twin: a revision that weakens nothing is accepted as it is applied, and a new state
    /// directory fixes drift at once, comparing with it.
    @Test func aNewStateDirectoryAppliesARevisionThatWeakensNothing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let work = try clone(s)
            let alice = Person(name: "Alice", email: "alice@example.org", key: nil)
            let tighter = try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3")
            try commit(alice, ["desired-state/hosts/sshd.yaml": tighter], "three tries", in: work)
            try gitAs(alice, "push", "-q", "origin", "main", in: work)
            #expect(try s.run("apply").status == 0)
            #expect(try recordedBaseline(s, resource: maxAuthTries) == head(s))
            try signatures.drift(s)
            let fresh = try s.run("apply", stateDir: dir + "/fresh-state")
            #expect(fresh.status == 0, "\(fresh.stderr)")
            #expect(!fresh.stdout.contains("weakens the policy"), "\(fresh.stdout)")
            #expect(try sshd(s).contains("\nPermitRootLogin no\n") && sshd(s).contains("\nMaxAuthTries 3\n"), "the drift is fixed")
            #expect(try read(Provenance.baselineFile(dir + "/fresh-state")).trimmingCharacters(in: .whitespacesAndNewlines) == head(s))
        }
    }

    /// How the audit branch is taken from a new state directory: 500 commits pushed over its
    /// records, or deleted.
    enum AuditBranchLoss: CaseIterable { case flooded, deleted }

    func lose(_ s: Scenario, _ loss: AuditBranchLoss) throws {
        switch loss {
        case .deleted:
            try git("--git-dir", s.origin, "update-ref", "-d", "refs/heads/bulwark/audit")
        case .flooded:
            let work = s.dir + "/flood"
            try git("clone", "-q", "--branch", "bulwark/audit", s.origin, work)
            for n in 1...500 {
                try git("-c", "user.name=x", "-c", "user.email=x@x", "-c", "commit.gpgsign=false",
                        "commit", "-q", "--allow-empty", "-m", "noise \(n)", in: work)
            }
            try git("push", "-q", "origin", "bulwark/audit", in: work)
        }
    }

    /// A weakening pushed, then the audit branch flooded or deleted: a new state directory
    /// finds no applied revision among the newest 500 commits, or none at all. It does not skip
    /// the check: it looks further back, or compares with the policy branch's first revision.
    @Test(arguments: AuditBranchLoss.allCases)
    func aWeakeningIsHeldOnANewStateDirectoryWhenTheAuditBranchIsLost(_ loss: AuditBranchLoss) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let work = try clone(s)
            let alice = Person(name: "Alice", email: "alice@example.org", key: nil)
            try commit(alice, ["desired-state/hosts/sshd.yaml": try rootLoginAllowed(work)], "allow root login", in: work)
            try gitAs(alice, "push", "-q", "origin", "main", in: work)
            try lose(s, loss)
            let before = try s.snapshot()
            let fresh = try s.run("apply", stateDir: dir + "/fresh-state")
            #expect(fresh.status == 0, "\(fresh.stderr)")
            #expect(fresh.stdout.contains("weakens the policy by Alice"), "\(fresh.stdout)")
            if loss == .deleted {
                #expect(fresh.stderr.contains("no applied revision found"), "\(fresh.stderr)")
            }
            #expect(try s.snapshot() == before, "nothing weakened without a second person")
            let held = try #require(try safety.decisions(s, resource: rootLogin).first)
            #expect(held.decision == "held")
        }
    }

    /// The twin: after the same loss, a revision that weakens nothing is applied on a new state directory.
    @Test(arguments: AuditBranchLoss.allCases)
    func aRevisionThatWeakensNothingIsAppliedWhenTheAuditBranchIsLost(_ loss: AuditBranchLoss) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let work = try clone(s)
            let alice = Person(name: "Alice", email: "alice@example.org", key: nil)
            let tighter = try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3")
            try commit(alice, ["desired-state/hosts/sshd.yaml": tighter], "three tries", in: work)
            try gitAs(alice, "push", "-q", "origin", "main", in: work)
            try lose(s, loss)
            try signatures.drift(s)
            let fresh = try s.run("apply", stateDir: dir + "/fresh-state")
            #expect(fresh.status == 0, "\(fresh.stderr)")
            #expect(!fresh.stdout.contains("weakens the policy"), "\(fresh.stdout)")
            #expect(try sshd(s).contains("\nPermitRootLogin no\n") && sshd(s).contains("\nMaxAuthTries 3\n"))
            #expect(try read(Provenance.baselineFile(dir + "/fresh-state")).trimmingCharacters(in: .whitespacesAndNewlines) == head(s))
        }
    }
}
