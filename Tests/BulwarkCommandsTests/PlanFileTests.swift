@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// `bulwark plan --out FILE`, `bulwark apply --plan FILE` and `apply --revision SHA`, through the
/// real binary against a real host tree and a real origin.
@Suite struct PlanFileTests {
    /// The fields of a saved plan the tests read.
    struct SavedPlan: Decodable {
        struct Item: Decodable {
            var controller: String
            var target: String
            var resource: String
            var decision: String
            var changes: [Change]
        }

        struct Change: Decodable, Equatable {
            var property: String
            var observed: String?
            var desired: String
        }

        var schemaVersion: Int
        var revision: String
        var drift: [Item]

        init(_ path: String) throws {
            self = try JSONDecoder().decode(SavedPlan.self, from: Data(try read(path).utf8))
        }

        func item(_ resource: String) -> Item? { drift.first { $0.resource == resource } }
    }

    static let permitRoot = "SSHDConfig/cis-5.1.20-permit-root-login"
    static let x11 = "SSHDConfig/cis-5.1.8-x11-forwarding"

    func head(_ s: Scenario) throws -> String {
        try git("--git-dir", s.origin, "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// resource → decisions, and resource → full messages, from origin's audit branch.
    func records(_ s: Scenario) throws -> [(resource: String, decision: String, message: String)] {
        let log = try git("--git-dir", s.origin, "log", "--format=%B%x00", "bulwark/audit")
        return log.split(separator: "\u{0}").compactMap { body in
            let message = String(body)
            func trailer(_ key: String) -> String? {
                message.split(separator: "\n").first { $0.hasPrefix(key + ": ") }.map { String($0.dropFirst(key.count + 2)) }
            }
            guard let resource = trailer("Bulwark-Resource"), let decision = trailer("Bulwark-Decision") else { return nil }
            return (resource, decision, message)
        }
    }

    func hasAuditBranch(_ s: Scenario) throws -> Bool {
        !(try git("--git-dir", s.origin, "for-each-ref", "refs/heads/bulwark/audit")).isEmpty
    }

    func sshdPolicy(_ s: Scenario, maxAuthTries: Int) throws -> String {
        try read(s.policy + "/desired-state/hosts/sshd.yaml")
            .replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: \(maxAuthTries)")
    }

    @Test func planOutThenApplyPlanFixesExactlyThePlannedDrift() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let file = dir + "/reviewed.json"
            let plan = try s.run("plan", "--out", file)
            #expect(plan.status == 2, "\(plan.stderr)")
            #expect(plan.stdout.contains("Saved the plan to \(file)"))

            // The file: owner-only, the full commit id, each fix with its values; no secret in it.
            #expect(FileManager.default.fileExists(atPath: file) && modeAndOwnerMode(file) & 0o777 == 0o600)
            let saved = try SavedPlan(file)
            #expect(saved.schemaVersion == 2)
            #expect(saved.revision == (try head(s)))
            let root = try #require(saved.item(Self.permitRoot))
            #expect(root.controller == "host-hardening" && root.target == "local" && root.decision == "applied")
            #expect(root.changes == [.init(property: "PermitRootLogin", observed: "yes", desired: "no")])
            #expect(!(try read(file)).contains("guesthash"))
            let planned = saved.drift.filter { $0.decision == "applied" }.count
            #expect(planned > 20)
            // No temporary file is left beside it.
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".reviewed.json") }.isEmpty)

            let apply = try s.run("apply", "--plan", file)
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            let decisions = try records(s).map(\.decision)
            #expect(decisions.count == planned && decisions.allSatisfy { $0 == "applied" })
            #expect(try s.trailers("Bulwark-Result") == Array(repeating: "verified", count: planned))
            #expect(Set(try s.trailers("Bulwark-Desired-Commit")) == [saved.revision])
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
            #expect(try s.run("plan").status == 0, "every planned fix was made")
        }
    }

    @Test func driftThatAppearsOrChangesAfterThePlanIsDeferredThenFixedByTheNextPlan() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let sshd = s.host + "/etc/ssh/sshd_config"
            let original = try read(sshd)
            // X11Forwarding is in sync when the plan is made.
            try write(sshd, original.replacingOccurrences(of: "X11Forwarding yes", with: "X11Forwarding no"))
            let file = dir + "/reviewed.json"
            #expect(try s.run("plan", "--out", file).status == 2)
            let saved = try SavedPlan(file)
            #expect(saved.item(Self.x11) == nil)
            #expect(saved.item(Self.permitRoot) != nil)

            // After the review: a new insecure value, and a planned one that changed.
            try write(sshd, original.replacingOccurrences(of: "PermitRootLogin yes", with: "PermitRootLogin prohibit-password"))
            let apply = try s.run("apply", "--plan", file)
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            let config = try read(sshd)
            #expect(config.contains("\nX11Forwarding yes\n"), "drift nobody reviewed is not fixed")
            #expect(config.contains("\nPermitRootLogin prohibit-password\n"), "a value that changed since the review is not fixed")
            #expect(config.contains("\nMaxAuthTries 4\n"), "the reviewed fixes are made")
            let recorded = try records(s)
            for resource in [Self.x11, Self.permitRoot] {
                let mine = recorded.filter { $0.resource == resource }
                #expect(mine.map(\.decision) == ["deferred"], "\(resource)")
                #expect(mine.first?.message.contains("Reason: not in the reviewed plan \(file)") == true)
            }
            #expect(recorded.filter { $0.decision == "applied" }.count == saved.drift.filter { $0.decision == "applied" }.count - 1)

            // The next reviewed plan lists them, and applying it fixes them.
            let next = dir + "/next.json"
            #expect(try s.run("plan", "--out", next).status == 2)
            #expect(try SavedPlan(next).drift.map(\.resource).sorted() == [Self.permitRoot, Self.x11].sorted())
            let again = try s.run("apply", "--plan", next)
            #expect(again.status == 0, "\(again.stdout)\n\(again.stderr)")
            #expect(try read(sshd).contains("\nX11Forwarding no\n"))
            #expect(try read(sshd).contains("\nPermitRootLogin no\n"))
            #expect(try s.run("plan").status == 0)
        }
    }

    @Test func aPolicyCommitPushedAfterThePlanIsNotApplied() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let file = dir + "/reviewed.json"
            #expect(try s.run("plan", "--out", file).status == 2)
            let reviewed = try SavedPlan(file).revision
            try s.commitPolicy("desired-state/hosts/sshd.yaml", try sshdPolicy(s, maxAuthTries: 3))
            let newer = try head(s)
            #expect(newer != reviewed)

            let apply = try s.run("apply", "--plan", file)
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 4\n"), "the reviewed revision's value")
            #expect(Set(try s.trailers("Bulwark-Desired-Commit")) == [reviewed])
            #expect(!(try records(s)).contains { $0.decision == "deferred" })

            // A plain apply then takes the branch head.
            let count = try s.auditCommits().count
            #expect(try s.run("apply").status == 0)
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 3\n"))
            #expect(try s.auditCommits().count == count + 1)
            #expect(try s.trailers("Bulwark-Desired-Commit").first == newer)
        }
    }

    /// A reviewed plan is loaded at its own commit, so what came after it must not be undone:
    /// a pause committed since refuses it (and a waiver, a controller, a target: anything under
    /// `controllers/` or `waivers/`); so does a later revision applied since, which it would
    /// take the baseline back from. A plan newer than both still applies.
    @Test func aPlanOlderThanAPauseOrALaterApplyIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let file = dir + "/reviewed.json"
            #expect(try s.run("plan", "--out", file).status == 2)
            let reviewed = try SavedPlan(file).revision
            let paused = try s.run("pause", "--reason", "incident 42")
            #expect(paused.status == 0, "\(paused.stderr)")
            let before = try s.snapshot()
            let refused = try s.run("apply", "--plan", file)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("the plan \(file) was made at \(reviewed), and since then controllers/pause.yaml changed"),
                    "\(refused.stderr)")
            #expect(try s.snapshot() == before)
            #expect(try !hasAuditBranch(s))

            // Resumed and applied at the head: the old plan would take the baseline back.
            #expect(try s.run("resume", "--reason", "over").status == 0)
            let old = dir + "/old.json"
            #expect(try s.run("plan", "--out", old).status == 2)
            try s.commitPolicy("desired-state/hosts/sshd.yaml", try sshdPolicy(s, maxAuthTries: 3))
            #expect(try s.run("apply").status == 0)
            let applied = try head(s)
            try write(s.host + "/etc/ssh/sshd_config", try read(s.host + "/etc/ssh/sshd_config")
                .replacingOccurrences(of: "\nMaxAuthTries 3\n", with: "\nMaxAuthTries 4\n"))
            let backwards = try s.run("apply", "--plan", old)
            #expect(backwards.status == 1)
            #expect(backwards.stderr.contains("before \(applied), which was applied since"), "\(backwards.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 4\n"))

            // A plan of the head applies.
            let fresh = dir + "/fresh.json"
            #expect(try s.run("plan", "--out", fresh).status == 2)
            let apply = try s.run("apply", "--plan", fresh)
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 3\n"))
        }
    }

    /// Guard: a brake committed in `desired-state/` after the review (the resource labelled
    /// `protected`, or annotated `mode: audit`) refuses the older plan, as one in `controllers/`
    /// does: the fix it lists is held at the head. Legitimate: another change of the same file
    /// (`aPolicyCommitPushedAfterThePlanIsNotApplied`) still lets it through, and so does a brake
    /// taken off again.
    @Test(arguments: [("  labels: {benchmark: cis-debian12}\n", "  labels: {benchmark: cis-debian12, protected: \"true\"}\n"),
                      ("severity: critical}\n", "severity: critical, mode: audit}\n"),
                      // Renamed as it is protected (review: the brake came under a name the plan does not list).
                      ("permit-root-login\n  labels: {benchmark: cis-debian12}\n", "root-login-frozen\n  labels: {protected: \"true\"}\n"),
                      // Taken off the target.
                      ("severity: critical}\n", "severity: critical}\ntargets: {selector: {role: none}}\n")])
    func aBrakeOnAResourceCommittedAfterThePlanRefusesIt(brake: (line: String, braked: String)) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let file = dir + "/reviewed.json"
            #expect(try s.run("plan", "--out", file).status == 2)
            let reviewed = try SavedPlan(file).revision
            let policy = try read(s.policy + "/desired-state/hosts/sshd.yaml")
            let resource = "  name: cis-5.1.20-permit-root-login\n  labels: {benchmark: cis-debian12}\n"
                + "  annotations: {cis: \"5.1.20\", ssg: sshd_disable_root_login, severity: critical}\n"
            let braked = policy.replacingOccurrences(of: resource, with: resource.replacingOccurrences(of: brake.line, with: brake.braked))
            #expect(braked != policy && policy.contains(resource))
            try s.commitPolicy("desired-state/hosts/sshd.yaml", braked)
            // At the head the root-login drift is held or reported, under whichever name.
            let plan = try s.run("plan", "--output", "json")
            let drift = (try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])?["drift"] as? [[String: Any]] ?? []
            let rootLogin = drift.filter { ($0["resource"] as? String ?? "").contains("root-login") }
            #expect(rootLogin.allSatisfy { $0["decision"] as? String != "applied" }, "\(rootLogin)")
            let before = try s.snapshot()
            let refused = try s.run("apply", "--plan", file)
            #expect(refused.status == 1, "\(refused.stdout)\n\(refused.stderr)")
            #expect(refused.stderr.contains("the plan \(file) was made at \(reviewed), and since then") &&
                    refused.stderr.contains("local SSHDConfig/cis-5.1.20-permit-root-login: "), "\(refused.stderr)")
            #expect(try s.snapshot() == before, "nothing changed")
            #expect(try !hasAuditBranch(s), "nothing recorded: the revision is not refused, the plan is")

            // The brake taken off again: the reviewed plan applies.
            try s.commitPolicy("desired-state/hosts/sshd.yaml", policy)
            let applied = try s.run("apply", "--plan", file)
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
        }
    }

    @Test func aPlanFromARewrittenHistoryIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let file = dir + "/reviewed.json"
            #expect(try s.run("plan", "--out", file).status == 2)
            let reviewed = try SavedPlan(file).revision
            // Someone force-pushes main: the reviewed commit is no longer on the branch.
            let work = dir + "/rewrite"
            try git("clone", "-q", s.origin, work)
            try git("commit", "-q", "--amend", "-m", "rewritten", in: work)
            try git("push", "-q", "-f", "origin", "main", in: work)
            let before = try s.snapshot()
            let apply = try s.run("apply", "--plan", file)
            #expect(apply.status == 1)
            #expect(apply.stderr.contains("the plan \(file) was made at \(reviewed), which is not on the branch main"))
            #expect(try s.snapshot() == before)
            #expect(try !hasAuditBranch(s))
        }
    }

    @Test func applyRevisionRefusesAStaleCommitAndAcceptsTheHead() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let stale = try head(s)
            try s.commitPolicy("desired-state/hosts/sshd.yaml", try sshdPolicy(s, maxAuthTries: 3))
            let current = try head(s)
            let before = try s.snapshot()
            let refused = try s.run("apply", "--revision", stale)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("the branch main is at \(current), not \(stale)"))
            #expect(try s.snapshot() == before, "nothing changed")
            #expect(try !hasAuditBranch(s), "nothing recorded")

            let apply = try s.run("apply", "--revision", current.uppercased())
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 3\n"))
            #expect(Set(try s.trailers("Bulwark-Desired-Commit")) == [current])
        }
    }

    @Test func aPlanFileThatIsNotOneExits64AndChangesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let file = dir + "/reviewed.json"
            #expect(try s.run("plan", "--out", file).status == 2)
            let before = try s.snapshot()

            try write(dir + "/garbage.json", "this is not a plan {")
            let garbage = try s.run("apply", "--plan", dir + "/garbage.json")
            #expect(garbage.status == 64)
            #expect(garbage.stderr.contains("is not a plan file written by `bulwark plan --out`"))

            // A field missing is named in plain words, not as Swift's `No value associated with key CodingKeys(…)`.
            let plan = try #require(try JSONSerialization.jsonObject(with: Data(read(file).utf8)) as? [String: Any])
            var withoutRevision = plan
            withoutRevision["revision"] = nil
            try write(dir + "/no-revision.json", String(decoding: try JSONSerialization.data(withJSONObject: withoutRevision), as: UTF8.self))
            let missing = try s.run("apply", "--plan", dir + "/no-revision.json")
            #expect(missing.status == 64, "\(missing.stderr)")
            #expect(missing.stderr.contains("no-revision.json is not a plan file written by `bulwark plan --out`: the field 'revision' is missing"),
                    "\(missing.stderr)")
            #expect(!missing.stderr.contains("CodingKeys") && !missing.stderr.contains("No value associated"), "\(missing.stderr)")

            let other = try read(file).replacingOccurrences(of: "\"schemaVersion\" : 2", with: "\"schemaVersion\" : 1")
            #expect(other != (try read(file)))
            try write(dir + "/other.json", other)
            let version = try s.run("apply", "--plan", dir + "/other.json")
            #expect(version.status == 64)
            #expect(version.stderr.contains("has schemaVersion 1"), "a plan saved by an older bulwark is planned again")

            #expect(try s.run("apply", "--plan", dir + "/missing.json").status == 64)
            #expect(try s.run("apply", "--plan", dir).status == 64, "a folder is not a plan")
            #expect(try s.run("apply", "--revision", "abc123").status == 64)
            #expect(try s.run("apply", "--plan", file, "--revision", SavedPlan(file).revision).status == 64)
            #expect(try s.snapshot() == before)
            #expect(try !hasAuditBranch(s))

            // The file itself still applies.
            #expect(try s.run("apply", "--plan", file).status == 0)
            #expect(try s.run("plan").status == 0)
        }
    }
}
