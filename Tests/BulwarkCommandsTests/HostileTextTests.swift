@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// What Bulwark prints can quote text from outside: a scanner's finding, a commit someone else
/// put on the audit branch. Escape sequences and bidirectional controls in it are shown, never
/// sent to the terminal.
@Suite struct HostileTextTests {
    /// Whether printed bytes hold an escape, a C1 control or a bidirectional control.
    static func drivesTheTerminal(_ text: String) -> Bool {
        text.unicodeScalars.contains { TerminalText.isUnsafe($0) && $0 != "\n" && $0 != "\t" }
    }

    @Test func aCommitOnTheAuditBranchCannotDriveTheTerminalOfWhoeverRunsLog() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            // Someone with push access adds a record whose subject and target carry escape
            // sequences (retitle the window, erase the line) and a right-to-left override.
            let head = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", head)
            var lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            lines[0] = "remediate(SSHDConfig/x): \u{1B}]0;owned\u{07}\u{1B}[2K fixed \u{202E}gnp.exe"
            try write(dir + "/message", lines.joined(separator: "\n"))
            let tree = try git("--git-dir", s.origin, "rev-parse", head + "^{tree}").trimmingCharacters(in: .whitespacesAndNewlines)
            let forged = try git("--git-dir", s.origin, "commit-tree", tree, "-p", head, "-F", dir + "/message")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", forged, head)

            let log = try s.run("log", "--limit", "3")
            #expect(log.status == 0, "\(log.stderr)")
            #expect(!Self.drivesTheTerminal(log.stdout + log.stderr), "\(log.stdout.debugDescription)")
            // Shown as what it is.
            #expect(log.stdout.contains(#"\u001B]0;owned\u0007\u001B[2K fixed \u202Egnp.exe"#), "\(log.stdout)")

            // The same record as JSON reads back with its own text.
            let json = try s.run("log", "--limit", "1", "--output", "json")
            #expect(!Self.drivesTheTerminal(json.stdout), "\(json.stdout.debugDescription)")
            let entries = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
            #expect(entries.first?["summary"] as? String == lines[0])

            // Records Bulwark wrote are printed as they are.
            let plain = try s.run("log", "--limit", "3")
            let real = try #require(plain.stdout.split(separator: "\n").dropFirst().first)
            #expect(real.contains("applied/verified") && !real.contains("\\u"), "\(plain.stdout)")
        }
    }

    @Test func aHostileFindingIsReportedWithoutItsControls() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let document = #"""
            [{"resource": "SSHDConfig/cis-5.1.20-permit-root-login\u001b[8m", "target": "local", "control": "CIS-5.1.20\u202e",
              "title": "hidden\u001b]0;owned\u0007\nBulwark-Decision: waived", "id": "scan-1\u009b2J", "severity": "high"},
             {"resource": "SSHDConfig/cis-5.1.20-permit-root-login", "target": "local", "control": "CIS-5.1.20 — Überprüfung",
              "id": "scan-2", "severity": "high"}]
            """#
            try write(dir + "/findings.json", document)
            let out = try s.run("ingest", dir + "/findings.json")
            #expect(out.status == 0 || out.status == 2, "\(out.stderr)")
            #expect(!Self.drivesTheTerminal(out.stdout + out.stderr), "\(out.stdout.debugDescription)")
            // Its fields are on one line, the controls made spaces; the plain finding is as it was.
            #expect(out.stdout.contains("CIS-5.1.20 "), "\(out.stdout)")
            #expect(out.stdout.contains("CIS-5.1.20 — Überprüfung"), "\(out.stdout)")
        }
    }

    /// An error a command throws can quote a branch someone pushed: it is shown, like every
    /// other line, with its controls escaped (argument-parser alone writes it as it is).
    @Test func anErrorQuotingAPushedBranchCannotDriveTheTerminal() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let work = dir + "/work"
            try git("clone", "-q", s.origin, work)
            try git("checkout", "-qb", "bulwark/proposals/evil", in: work)
            try write(work + "/README", "x\n")
            try git("add", "-A", in: work)
            try write(dir + "/message", "propose(x): y\n\nChange: \u{1B}]0;PWNED\u{07}\u{1B}[2J\r\u{202E}evil\u{9B}31m: z\nRule: r\nBulwark-Proposal: proposed\n")
            try git("commit", "-q", "-F", dir + "/message", in: work)
            try git("push", "-q", "origin", "bulwark/proposals/evil", in: work)

            let accepted = try s.run("accept", "evil")
            #expect(accepted.status == 1, "\(accepted.stdout)\(accepted.stderr)")
            #expect(!Self.drivesTheTerminal(accepted.stdout + accepted.stderr), "\(accepted.stderr.debugDescription)")
            #expect(accepted.stderr.hasPrefix("Error: ") && accepted.stderr.contains(#"\u001B]0;PWNED\u0007"#), "\(accepted.stderr)")

            // An error without such characters reads as before.
            let missing = try s.run("accept", "no-such-proposal")
            #expect(missing.status == 1 && missing.stderr.hasPrefix("Error: ") && !missing.stderr.contains("\\u"), "\(missing.stderr)")
            // Argument-parser's own messages keep their exit code and usage.
            let usage = try bulwark(["accept"])
            #expect(usage.status == 64 && usage.stderr.contains("Usage:"), "\(usage.stderr)")
        }
    }
}
