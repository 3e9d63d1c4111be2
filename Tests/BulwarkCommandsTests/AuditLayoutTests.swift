@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// The audit record layout: new records at `audit/YYYY/MM/DD/HH/<c>/<d>/<id>.json`, read back
/// with the git CLI; records already on audit branches in the layout before it
/// (`audit/YYYY/MM/DD/HH/<c>/<id>.json`, rewritten here with `git fast-import`) are still read
/// by `revert`, `verify-audit` and the flap history; any other path is refused by `verify-audit`.
@Suite struct AuditLayoutTests {
    /// Each audit commit's added paths (`git diff-tree`), with its id and detection time.
    func records(_ s: Scenario) throws -> [(commit: String, id: String, detected: String, paths: [String])] {
        try s.auditCommits().map { commit in
            let trailers = try git("--git-dir", s.origin, "log", "-1",
                                   "--format=%(trailers:key=Bulwark-Id,valueonly,separator=)|%(trailers:key=Bulwark-Detected-At,valueonly,separator=)", commit)
                .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map(String.init)
            let paths = try git("--git-dir", s.origin, "diff-tree", "--no-commit-id", "-r", "--name-only", "--root", commit)
                .split(separator: "\n").map(String.init)
            return (commit, trailers.first ?? "", trailers.count > 1 ? trailers[1] : "", paths)
        }
    }

    /// Rewrites every record path of the origin's audit branch with `move`, through
    /// `git fast-export | git fast-import` as an older version's branch (or a hand-made one) would be.
    func rewriteAuditBranch(_ s: Scenario, _ move: (String) -> String) throws {
        let exported = try git("--git-dir", s.origin, "fast-export", "--no-data", "--signed-tags=strip", "refs/heads/bulwark/audit")
        let rewritten = exported.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.hasPrefix("M 100644 ") else { return String(line) }
            let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
            guard parts.count == 4 else { return String(line) }
            return "M 100644 \(parts[2]) \(move(parts[3]))"
        }.joined(separator: "\n")
        let stream = s.dir + "/audit.fast-import"
        try write(stream, rewritten)
        let imported = try run("/bin/sh", ["-c", "git --git-dir \"$1\" fast-import --quiet --force < \"$2\"", "sh", s.origin, stream])
        guard imported.status == 0 else { throw SupportError("git fast-import failed: \(imported.stderr)") }
    }

    /// `audit/Y/M/D/H/c/d/ID.json` as the layout before it put it: `audit/Y/M/D/H/c/ID.json`.
    static func legacy(_ path: String) -> String {
        var parts = path.split(separator: "/").map(String.init)
        guard parts.count == 8 else { return path }
        parts.remove(at: 6)
        return parts.joined(separator: "/")
    }

    @Test func aNewRecordLandsAtTheNewPathFannedOutOnTwoCharacters() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            let records = try records(s)
            #expect(records.count >= 4)
            for record in records {
                let id = record.id
                #expect(id.count == 26)
                let hour = String(record.detected.prefix(13)).replacingOccurrences(of: "-", with: "/").replacingOccurrences(of: "T", with: "/")
                #expect(record.paths == ["audit/\(hour)/\(id.suffix(1))/\(id.dropLast().suffix(1))/\(id).json"],
                        "commit \(record.commit)")
                #expect(record.paths == [AuditRecord.path(id: id, detectedAt: record.detected)])
                let json = try git("--git-dir", s.origin, "show", "\(record.commit):\(record.paths.first ?? "")")
                #expect(try AuditRecord(json: Array(json.utf8)).id == id)
            }
            let verified = try bulwark(["verify-audit", "--repo", s.origin])
            #expect(verified.status == 0, "\(verified.stdout)\n\(verified.stderr)")
        }
    }

    @Test func recordsInTheLayoutBeforeAreReadByRevertVerifyAuditAndTheFlapHistory() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply", stateDir: dir + "/state-first").status == 0)
            try rewriteAuditBranch(s, Self.legacy)
            let records = try records(s)
            #expect(records.count >= 4)
            for record in records {
                #expect(record.paths == [AuditRecord.legacyPath(id: record.id, detectedAt: record.detected)], "commit \(record.commit)")
            }
            #expect(try git("--git-dir", s.origin, "fsck", "--strict", "--no-progress", "--no-dangling").isEmpty)

            // verify-audit accepts the records as they are.
            let verified = try bulwark(["verify-audit", "--repo", s.origin])
            #expect(verified.status == 0, "\(verified.stdout)\n\(verified.stderr)")

            // The flap history reads each verified fix's record file (a state clone made afresh).
            let fixes = try await {
                let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: dir + "/state-flap"))
                _ = try await repo.sync()
                return try await repo.recentFixes(since: Date().addingTimeInterval(-3_600))
            }()
            let applied = try s.trailers("Bulwark-Decision").filter { $0 == "applied" }.count
            #expect(applied >= 1)
            #expect(fixes.fixes.values.map(\.count).reduce(0, +) >= applied)
            #expect(fixes.fixes.keys.contains { $0.resource.description.contains("cis-5.1.20-permit-root-login")
                && $0.property == "PermitRootLogin" })

            // revert finds the old record and records its own in the new layout.
            let id = try RevertTests.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            let revert = try RevertTests.revert(s, id)
            #expect(revert.status == 0, "\(revert.stdout)\n\(revert.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin yes\n"))
            let newest = try #require(try self.records(s).first)
            #expect(newest.paths == [AuditRecord.path(id: newest.id, detectedAt: newest.detected)])

            // A branch with both layouts verifies, and stays fsck-clean.
            let mixed = try bulwark(["verify-audit", "--repo", s.origin])
            #expect(mixed.status == 0, "\(mixed.stdout)\n\(mixed.stderr)")
            #expect(try git("--git-dir", s.origin, "fsck", "--strict", "--no-progress", "--no-dangling").isEmpty)
        }
    }

    @Test func verifyAuditRefusesARecordAtAnyOtherPath() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let before = try records(s)
            // One folder for all of them: neither layout.
            let moved = { (path: String) -> String in
                var parts = path.split(separator: "/").map(String.init)
                guard parts.count == 8 else { return path }
                parts[5] = "misplaced"
                parts.remove(at: 6)
                return parts.joined(separator: "/")
            }
            try rewriteAuditBranch(s, moved)
            let refused = try bulwark(["verify-audit", "--repo", s.origin])
            #expect(refused.status == 1)
            for record in before {
                let wrong = moved(record.paths.first ?? "")
                #expect(refused.stderr.contains("does not add its record \(AuditRecord.path(id: record.id, detectedAt: record.detected))"))
                #expect(refused.stderr.contains("adds \(wrong), which is not its own record"))
            }
        }
    }
}
