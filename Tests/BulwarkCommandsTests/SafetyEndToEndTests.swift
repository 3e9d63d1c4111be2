@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// Weakening and approvals through the binary, against a real origin: git, not the YAML, says
/// who approved, an approval is used once, and a weakening needs a second person.
@Suite struct SafetyEndToEndTests {
    func decisions(_ s: Scenario, resource: String) throws -> [(decision: String, id: String, approver: String)] {
        let log = try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)|%(trailers:key=Bulwark-Id,valueonly,separator=)|%(trailers:key=Bulwark-Approved-By,valueonly,separator=)", "bulwark/audit")
        return log.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
            .filter { $0.count == 4 && $0[0] == resource }.map { ($0[1], $0[2], $0[3]) }
    }

    func approve(_ s: Scenario, _ id: String, as name: String, _ email: String) throws -> ProcessOutput {
        try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state, "--reason", "CHG-42"],
                environment: ["GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email])
    }

    @Test func aWeakeningWaitsForASecondPerson() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"

            // Test Person switches root login back on (a forced push would do the same).
            let sshd = try read(s.policy + "/desired-state/hosts/sshd.yaml")
                .replacingOccurrences(of: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"")
            try s.commitPolicy("desired-state/hosts/sshd.yaml", sshd, message: "allow root login for the migration")
            let before = try s.snapshot()
            let plan = try s.run("plan")
            #expect(plan.stdout.contains("weakens the policy by Test Person <person@example.org>: PermitRootLogin: no → yes (allows more root logins)"))
            #expect(try s.run("apply").status == 0)
            #expect(try s.snapshot() == before, "nothing weakened without a second person")
            let held = try #require(try decisions(s, resource: resource).first)
            #expect(held.decision == "held")

            // The author approving their own weakening does not count.
            #expect(try approve(s, held.id, as: "Test Person", "person@example.org").status == 0)
            #expect(try s.run("apply").status == 0)
            #expect(try s.snapshot() == before)
            // Someone else does.
            #expect(try approve(s, held.id, as: "Sam Security", "sam@example.org").status == 0)
            #expect(try s.run("apply").status == 0)
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin yes\n"))
            let applied = try #require(try decisions(s, resource: resource).first)
            #expect(applied.decision == "applied")
            #expect(applied.approver == "Sam Security <sam@example.org>")
        }
    }

    @Test func anApprovalNamingSomeoneElseIsRefusedAndAnApprovalIsUsedOnce() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let id = try #require(try decisions(s, resource: resource).first { $0.decision == "held" }?.id)

            // A hand-written approval that names the security lead, committed by Test Person.
            try s.commitPolicy("approvals/\(id).yaml", """
                apiVersion: bulwark/v1
                kind: Approval
                metadata: {name: forged}
                spec: {id: \(id), approver: "Security Lead <lead@example.org>", reason: "looks fine"}
                """)
            let before = try s.snapshot()
            let forged = try s.run("apply")
            #expect(forged.stderr.contains("names Security Lead <lead@example.org> as approver but was committed by Test Person <person@example.org>"))
            #expect(try s.snapshot() == before)
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "refused" }.count == 1)
            #expect(try s.run("apply").status == 0)
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "refused" }.count == 1, "refused once")

            // A real approval lets the fix through once.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/main", "main~1")
            #expect(try approve(s, id, as: "Sam Security", "sam@example.org").status == 0)
            #expect(try s.run("apply").status == 0)
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
            // The same drift again: the used approval does not carry it a second time.
            let config = try read(s.host + "/etc/ssh/sshd_config")
            try write(s.host + "/etc/ssh/sshd_config", config.replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n"), mode: 0o600)
            #expect(try s.run("apply").status == 0)
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin yes\n"))
            // Held again under a new id (the episode's next, `Planner.episode`): the used one never comes back.
            let again = try s.run("plan").stdout
            #expect(again.contains("waiting for approval: bulwark approve ") && !again.contains("bulwark approve \(id)"), "\(again)")
        }
    }

    /// The policy branch's lock file in the origin, left by a git process killed while it moved
    /// main: `pause` fails at once naming the file and what to do (it said "the branch main kept
    /// moving during 5 attempts"), and goes through once it is removed.
    @Test func aPauseBlockedByAStaleLockInTheOriginNamesIt() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lock = s.origin + "/refs/heads/main.lock"
            try write(lock, "")
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -600)], ofItemAtPath: lock)
            let arguments = ["pause", "--repo", s.origin, "--state-dir", s.state, "--reason", "incident INC-9"]
            let environment = ["GIT_AUTHOR_NAME": "Olivia Oncall", "GIT_AUTHOR_EMAIL": "olivia@example.org"]
            let blocked = try run(try bulwarkExecutable(), arguments, environment: environment)
            #expect(blocked.status == 1)
            #expect(blocked.stderr.contains("origin.git/refs/heads/main.lock has been there for"), "\(blocked.stderr)")
            #expect(!blocked.stderr.contains("kept moving"))
            try FileManager.default.removeItem(atPath: lock)
            let paused = try run(try bulwarkExecutable(), arguments, environment: environment)
            #expect(paused.status == 0, "\(paused.stderr)")
            #expect(try s.run("apply").stdout.contains("paused by Olivia Oncall <olivia@example.org>: incident INC-9"))
        }
    }

    @Test func aPauseStopsEveryChangeUntilResumed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let pause = try run(try bulwarkExecutable(), ["pause", "--repo", s.origin, "--state-dir", s.state, "--reason", "incident INC-9"],
                                environment: ["GIT_AUTHOR_NAME": "Olivia Oncall", "GIT_AUTHOR_EMAIL": "olivia@example.org"])
            #expect(pause.status == 0, "\(pause.stderr)")
            let before = try s.snapshot()
            let paused = try s.run("apply")
            #expect(paused.status == 0, "\(paused.stderr)")
            #expect(try s.snapshot() == before, "nothing changes while paused")
            #expect(paused.stdout.contains("paused by Olivia Oncall <olivia@example.org>: incident INC-9"))
            #expect(Set(try s.trailers("Bulwark-Decision")) == ["deferred"])
            let count = try s.auditCommits().count
            #expect(try s.run("apply").status == 0)
            #expect(try s.auditCommits().count == count, "deferred once, not on every pass")

            let resume = try run(try bulwarkExecutable(), ["resume", "--repo", s.origin, "--state-dir", s.state, "--reason", "INC-9 closed"])
            #expect(resume.status == 0, "\(resume.stderr)")
            #expect(try s.run("apply").status == 0)
            #expect(try s.snapshot() != before)
            #expect(try s.run("plan").status == 0, "in sync once resumed")
        }
    }
}
