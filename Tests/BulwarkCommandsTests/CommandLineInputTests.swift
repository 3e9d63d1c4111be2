@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// What a person types that names no usable file, folder or day: refused with the documented
/// exit code and a message that names the file or option and the cause in plain words (never
/// Foundation's error domain), before anything is written; the legitimate form still works.
@Suite struct CommandLineInputTests {
    /// The binary, killed after `seconds`: a command that hangs fails the test (137) instead.
    func bounded(_ seconds: Int, _ arguments: [String]) throws -> ProcessOutput {
        try run("/usr/bin/timeout", ["-s", "KILL", String(seconds), try bulwarkExecutable()] + arguments)
    }

    // MARK: - ingest

    /// A findings file is opened as `apply --plan` opens its plan: a FIFO with no writer is
    /// refused at once (it held `ingest` up for ever), a folder or a missing file is named with
    /// its cause (exit 64, a usage mistake); a document that is not findings is an error (1) that
    /// says where the JSON breaks, or that valid JSON is no findings document.
    @Test func ingestNamesAFileItCannotUseAndWhy() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fifo = dir + "/findings.fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            try FileManager.default.createDirectory(atPath: dir + "/a-folder", withIntermediateDirectories: true)
            for (path, code, message) in [(fifo, 64, "\(fifo) is a FIFO, not a findings file"),
                                          (dir + "/a-folder", 64, "\(dir)/a-folder is a folder, not a findings file"),
                                          (dir + "/missing.json", 64, "\(dir)/missing.json does not exist")] as [(String, Int32, String)] {
                let started = Date()
                let refused = try bounded(60, ["ingest", path, "--repo", s.origin, "--state-dir", s.state])
                #expect(refused.status == code, "\(path): \(refused.status) \(refused.stderr)")
                #expect(refused.stderr.contains(message), "\(refused.stderr)")
                #expect(!refused.stderr.contains("NSCocoaErrorDomain"), "\(refused.stderr)")
                #expect(Date().timeIntervalSince(started) < 30, "\(path) held ingest up")
            }
            for (text, message) in [("{\"resource\": \"x\",,\n \"control\": 1}", "not valid JSON: invalid value at line 1, column 18"),
                                    ("[{\"resource\": \"x\",\n  \"control\": \"c\"},\n  nope]", "not valid JSON: invalid value at line 3, column 4"),
                                    ("null", "not a findings document: the document is null, not an object or a list of findings"),
                                    ("\"hello\"", "not a findings document: the document is a string"),
                                    ("  42", "not a findings document: the document is a number")] {
                let path = dir + "/document-\(UUID().uuidString.prefix(6)).json"
                try write(path, text)
                let refused = try s.run("ingest", path)
                #expect(refused.status == 1, "\(text): \(refused.status) \(refused.stderr)")
                #expect(refused.stderr.contains("\(path): \(message)"), "\(refused.stderr)")
                #expect(!refused.stderr.contains("could not be completed") && !refused.stderr.contains("NSCocoaErrorDomain"), "\(refused.stderr)")
            }
            #expect(try git("--git-dir", s.origin, "for-each-ref", "refs/heads/bulwark/").isEmpty, "nothing was recorded")

            // A findings file, and one from standard input, are still read.
            try write(dir + "/findings.json", "{\"resource\": \"nothing-bulwark-manages\", \"control\": \"X-1\"}")
            let read = try s.run("ingest", dir + "/findings.json")
            #expect(read.status == 0, "\(read.stderr)")
            let piped = try run("/bin/sh", ["-c", "\"$0\" ingest - --repo \"$1\" --state-dir \"$2\" < \"$3\"",
                                            try bulwarkExecutable(), s.origin, s.state, dir + "/findings.json"])
            #expect(piped.status == 0, "\(piped.stderr)")
        }
    }

    // MARK: - init, demo

    /// `init` over an existing file is refused as a usage mistake (64), as over a folder that is
    /// not empty, and the file is left as it was; an empty folder is still taken.
    @Test func initRefusesAPathThatIsAFile() async throws {
        try await withTemporaryDirectory { dir in
            try write(dir + "/afile", "keep me\n")
            let refused = try bulwark(["init", dir + "/afile"])
            #expect(refused.status == 64, "\(refused.stderr)")
            #expect(refused.stderr.contains("\(dir)/afile exists and is not a folder"), "\(refused.stderr)")
            #expect(!refused.stderr.contains("git_repository_init"), "\(refused.stderr)")
            #expect(try read(dir + "/afile") == "keep me\n")
            let demo = try bulwark(["demo", "--dir", dir + "/afile"])
            #expect(demo.status == 64 && demo.stderr.contains("exists and is not a folder"), "\(demo.stderr)")

            try write(dir + "/full/x", "x")
            #expect(try bulwark(["init", dir + "/full"]).status == 64)
            try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
            let made = try bulwark(["init", dir + "/empty"])
            #expect(made.status == 0, "\(made.stderr)")
        }
    }

    // MARK: - Empty arguments

    /// `plan --out ""` is refused before the plan runs (it planned, then failed to rename its
    /// temporary file, left in the parent folder); so is any path option given empty, where an
    /// empty signers file would otherwise turn verification off. The options given properly work.
    /// `accept ""` and a full branch name git does not take are usage mistakes (64), refused
    /// before the repository is read; a proposal that does not exist is still an error (1).
    @Test func acceptRefusesAnEmptyIdOrABranchNameGitDoesNotTake() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let empty = try s.run("accept", "")
            #expect(empty.status == 64 && empty.stderr.contains("the proposal id must not be empty"), "\(empty.stderr)")
            let dotted = try s.run("accept", "bulwark/proposals/../../heads/main")
            #expect(dotted.status == 64 && dotted.stderr.contains("is not a branch name git takes"), "\(dotted.stderr)")
            #expect(!FileManager.default.fileExists(atPath: s.state), "refused before anything ran")
            let missing = try s.run("accept", "no-such-finding")
            #expect(missing.status == 1 && missing.stderr.contains("no proposal bulwark/proposals/no-such-finding"), "\(missing.stderr)")
        }
    }

    @Test func emptyPathOptionsAreRefusedBeforeAnythingRuns() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let work = dir + "/cwd"
            try FileManager.default.createDirectory(atPath: work + "/inner", withIntermediateDirectories: true)
            let out = try run(try bulwarkExecutable(), ["plan", "--repo", s.origin, "--state-dir", s.state, "--out", ""], in: work + "/inner")
            #expect(out.status == 64, "\(out.stderr)")
            #expect(out.stderr.contains("--out must not be empty"), "\(out.stderr)")
            #expect(!out.stdout.contains("Desired state"), "refused before planning: \(out.stdout)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: work) == ["inner"], "no temporary file left")
            #expect(!FileManager.default.fileExists(atPath: s.state), "nothing ran")

            for option in ["--trusted-signers", "--signing-key", "--audit-signers", "--trusted-keyring", "--ssh-key",
                           "--git-password-file", "--secrets-dir"] {
                let refused = try s.run("plan", option, "")
                #expect(refused.status == 64 && refused.stderr.contains("\(option) must not be empty"), "\(option): \(refused.stderr)")
            }
            // An empty --state-dir (an unset variable) is the same mistake: 64, as the README says, not 1.
            for command in ["plan", "apply", "log"] {
                let refused = try s.run(command, stateDir: "")
                #expect(refused.status == 64 && refused.stderr.contains("--state-dir must not be empty"), "\(command): \(refused.stderr)")
            }
            let ingest = try s.run("ingest", "")
            #expect(ingest.status == 64 && ingest.stderr.contains("<file> must not be empty"), "\(ingest.stderr)")
            let initialized = try bulwark(["init", ""])
            #expect(initialized.status == 64 && initialized.stderr.contains("<directory> must not be empty"), "\(initialized.stderr)")
            let daemon = try bounded(60, ["run", "--repo", s.origin, "--state-dir", s.state, "--webhook-secret-file", ""])
            #expect(daemon.status == 64 && daemon.stderr.contains("--webhook-secret-file must not be empty"), "\(daemon.stderr)")

            let saved = try s.run("plan", "--out", dir + "/plan.json")
            #expect(saved.status == 2, "\(saved.stderr)")
            #expect(FileManager.default.fileExists(atPath: dir + "/plan.json"))
        }
    }

    // MARK: - validate

    /// A path that is not a policy folder is a usage mistake (64), as `--help` says; with
    /// `--output json` the answer is the JSON document (valid: false, the path and why).
    @Test func validateSaysAPathIsNotAFolderInItsOutputFormat() async throws {
        try await withTemporaryDirectory { dir in
            #expect(try bulwark(["validate", "--help"]).stdout.contains("64 a usage mistake"))
            let text = try bulwark(["validate", dir + "/missing"])
            #expect(text.status == 64 && text.stderr.contains("\(dir)/missing does not exist"), "\(text.stderr)")
            try write(dir + "/afile", "")
            for path in [dir + "/missing", dir + "/afile"] {
                let json = try bulwark(["validate", path, "--output", "json"])
                #expect(json.status == 64, "\(json.stderr)")
                let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
                #expect(document["valid"] as? Bool == false && document["schemaVersion"] as? Int == JSONSchema.version)
                let errors = try #require(document["errors"] as? [[String: Any]])
                #expect(errors.first?["file"] as? String == path)
                #expect((errors.first?["message"] as? String)?.contains(path.hasSuffix("afile") ? "is not a folder" : "does not exist") == true,
                        "\(errors)")
                if SchemaValidator.available { try JSONSchemaTests().check("validate.schema.json", json.stdout, in: dir) }
            }
        }
    }

    // MARK: - pause

    /// A second `pause` with the same reason changes nothing (no empty commit) and says so,
    /// exit 0; another reason is committed, and `resume` twice is alike.
    @Test func pausingTwiceForTheSameReasonCommitsNothing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            func head() throws -> String { try git("--git-dir", s.origin, "rev-parse", "main") }
            let first = try s.run("pause", "--reason", "CHG-9 freeze")
            #expect(first.status == 0, "\(first.stderr)")
            let paused = try head()
            let again = try s.run("pause", "--reason", "CHG-9 freeze")
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stdout.contains("Already paused with this reason") && again.stdout.contains("nothing was committed"), "\(again.stdout)")
            #expect(try head() == paused, "no empty commit")

            #expect(try s.run("pause", "--reason", "CHG-10 longer freeze").status == 0)
            #expect(try head() != paused, "another reason is recorded")
            #expect(try s.run("resume").status == 0)
            let resumed = try head()
            let twice = try s.run("resume")
            #expect(twice.status == 0 && twice.stdout.contains("Already resumed"), "\(twice.stdout)")
            #expect(try head() == resumed)
        }
    }

    // MARK: - Days

    /// `--expires` and a manifest's `expires:` take exactly a day of the calendar: text after
    /// the day, February 30th or the 29th of a common year are refused (approve: 64; a waiver or
    /// an approval file: a validation error naming its file, line and field), never stored as
    /// typed or moved into March. A leap day is a day.
    @Test func expiryDaysAreDaysOfTheCalendar() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = try git("--git-dir", s.origin, "rev-parse", "main")
            for day in ["2027-01-05xyz; rm -rf /", "2027-02-30", "2027-02-29", "2027-1-5x"] {
                let refused = try s.run("approve", "01ABCDEFGHJKMNPQRSTVWXYZ01", "--reason", "ok", "--expires", day)
                #expect(refused.status == 64, "\(day): \(refused.stderr)")
                #expect(refused.stderr.contains("--expires: expected a day of the calendar written YYYY-MM-DD"), "\(refused.stderr)")
            }
            // revert reads the day as approve does: 64, nothing done.
            let revert = try run(try bulwarkExecutable(), ["revert", "01ABCDEFGHJKMNPQRSTVWXYZ01", "--repo", s.origin, "--state-dir", s.state,
                                                           "--reason", "CHG-1", "--expires", "2027-02-30x"], environment: RevertTests.person)
            #expect(revert.status == 64 && revert.stderr.contains("--expires: expected a day of the calendar written YYYY-MM-DD"),
                    "\(revert.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == before, "nothing was committed")

            let waiver = "apiVersion: bulwark/v1\nkind: Waiver\nmetadata: {name: w}\n"
                + "spec:\n  match: {kind: Sysctl}\n  reason: r\n  owner: a@example.org\n  expires: 2027-02-30\n"
            try write(s.policy + "/waivers/w.yaml", waiver)
            let id = "01ABCDEFGHJKMNPQRSTVWXYZ01"
            try write(s.policy + "/approvals/\(id).yaml", Bulwark.Approve.document(id: id, summary: "s", approver: "a <a@x>",
                                                                                  reason: "r", expires: "2027-01-05xyz"))
            let invalid = try bulwark(["validate", s.policy])
            #expect(invalid.status == 1, "\(invalid.stderr)")
            #expect(invalid.stderr.contains("waivers/w.yaml:8:"), "\(invalid.stderr)")
            #expect(invalid.stderr.contains("spec.expires: expected a day of the calendar written YYYY-MM-DD, such as 2027-01-31, got '2027-02-30'"),
                    "\(invalid.stderr)")
            #expect(invalid.stderr.contains("approvals/\(id).yaml:"), "\(invalid.stderr)")
            #expect(invalid.stderr.contains("spec.expires: expected a day of the calendar written YYYY-MM-DD, such as 2027-01-31, got '2027-01-05xyz'"),
                    "\(invalid.stderr)")

            // Days of the calendar load, a leap day included.
            try write(s.policy + "/waivers/w.yaml", waiver.replacingOccurrences(of: "2027-02-30", with: RevertTests.day(in: 30)))
            try write(s.policy + "/approvals/\(id).yaml", Bulwark.Approve.document(id: id, summary: "s", approver: "a <a@x>",
                                                                                  reason: "r", expires: "2028-02-29"))
            let valid = try bulwark(["validate", s.policy])
            #expect(valid.status == 0, "\(valid.stderr)")
        }
    }
}
