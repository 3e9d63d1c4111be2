import BulwarkTestSupport
import Foundation
import Testing

/// Drift that comes back after its approved fix (outside review, High): the ids of held, blocked
/// and escalated drift come from the drift alone, and a record is never written twice, while an
/// approval counts for one fix. The same drift again was then held for ever under the old id:
/// no new record, `report` showed nothing open, and `approve` of the old id said "the next
/// apply fixes it" and changed nothing.
@Suite struct ApprovalEpisodeTests {
    static let author = ["GIT_AUTHOR_NAME": "Alice Admin", "GIT_AUTHOR_EMAIL": "alice@example.org",
                         "GIT_COMMITTER_NAME": "Alice Admin", "GIT_COMMITTER_EMAIL": "alice@example.org"]

    /// The newest record of sshd's PermitRootLogin resource: (id, decision).
    static func newest(_ s: Scenario) throws -> (id: String, decision: String) {
        let log = try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|"
                          + "%(trailers:key=Bulwark-Id,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)",
                          "bulwark/audit")
        let line = try #require(log.split(separator: "\n").first { $0.hasPrefix("SSHDConfig/cis-5.1.20-permit-root-login|") })
        let fields = line.split(separator: "|").map(String.init)
        return (fields[1], fields[2])
    }

    static func drift(_ s: Scenario) throws {
        let config = s.host + "/etc/ssh/sshd_config"
        try write(config, try read(config).replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n"))
    }

    func approve(_ id: String, _ s: Scenario) throws -> ProcessOutput {
        try s.run("approve", id, "--reason", "CHG-1", environment: Self.author)
    }

    @Test func driftBackAfterItsApprovedFixIsHeldAnewUnderANewIdAndApprovedAnew() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let config = s.host + "/etc/ssh/sshd_config"
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let first = try Self.newest(s)
            #expect(first.decision == "held")
            #expect(try approve(first.id, s).status == 0)
            #expect(try s.run("apply").status == 0)
            #expect(try read(config).contains("\nPermitRootLogin no\n"), "the approved fix")

            // Back again: held and recorded under a new id, with the old approval's file still there.
            try Self.drift(s)
            let back = try s.run("apply", "--detailed-exitcode")
            #expect(back.status == 2, "\(back.stdout)\(back.stderr)")
            let second = try Self.newest(s)
            #expect(second.decision == "held" && second.id != first.id, "\(second)")
            let line = back.stdout.split(separator: "\n").first { $0.contains("SSHDConfig/cis-5.1.20-permit-root-login") } ?? ""
            #expect(line.contains("bulwark approve \(second.id)") && !line.contains("recorded before"), "\(back.stdout)")
            #expect(try read(config).contains("\nPermitRootLogin yes\n"), "nothing fixed without a new approval")
            let report = try s.run("report")
            #expect(report.stdout.contains("SSHDConfig/cis-5.1.20-permit-root-login  held, open"), "\(report.stdout)")

            // The used approval is refused, and says why; the new id's approval fixes it.
            let again = try approve(first.id, s)
            #expect(again.status == 1 && again.stderr.contains("a fix already used the approval of \(first.id)"), "\(again.stderr)")
            #expect(try approve(second.id, s).status == 0)
            #expect(try s.run("apply").status == 0)
            #expect(try read(config).contains("\nPermitRootLogin no\n"))

            // With the approvals' files removed since, the audit branch still tells the episodes apart.
            let work = dir + "/cleanup"
            try git("clone", "-q", s.origin, work)
            try git("rm", "-q", "approvals/\(first.id).yaml", "approvals/\(second.id).yaml", in: work)
            try git("-c", "user.name=op", "-c", "user.email=op@example.org", "commit", "-qm", "tidy approvals", in: work)
            try git("push", "-q", "origin", "main", in: work)
            try Self.drift(s)
            #expect(try s.run("apply", "--detailed-exitcode").status == 2)
            let third = try Self.newest(s)
            #expect(third.decision == "held" && ![first.id, second.id].contains(third.id), "\(third)")
            #expect(try approve(third.id, s).status == 0)
            #expect(try s.run("apply").status == 0)
            #expect(try read(config).contains("\nPermitRootLogin no\n"))
        }
    }
}
