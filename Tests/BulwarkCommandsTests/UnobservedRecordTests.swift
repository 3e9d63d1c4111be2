@testable import BulwarkCommands
@testable import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A resource that cannot be observed leaves a record in git (`Bulwark-Decision: unobserved`,
/// with the error), once per revision and cause: a run that could not check a host is in the
/// history an auditor reads, not only on the standard error of a cron job.
@Suite(.serialized) struct UnobservedRecordTests {
    @Test func aFileThatCannotBeObservedIsRecordedOnceAndNothingIsRecordedOnceItIsBack() async throws {
        try await withTemporaryDirectory { dir in
            let s = try FindingValueTypeTests().scenario(dir)
            let file = dir + "/gw/etc/litellm/config.yaml"
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
            #expect(try s.trailers("Bulwark-Decision").allSatisfy { $0 != "unobserved" }, "nothing unobserved while the file is there")

            try FileManager.default.moveItem(atPath: file, toPath: dir + "/config.away")
            let away = try s.run("apply")
            #expect(away.status == 1, "\(away.stdout)\(away.stderr)")
            #expect(away.stderr.contains("does not exist"), "\(away.stderr)")
            let subject = try git("--git-dir", s.origin, "log", "-1", "--format=%s%n%b", "bulwark/audit")
            #expect(subject.hasPrefix("unobserved(ConfigFile/"), "\(subject)")
            #expect(subject.contains("Error: ") && subject.contains("does not exist"), "\(subject)")
            #expect(subject.contains("Bulwark-Decision: unobserved"), "\(subject)")
            // One record per resource of the file (gw-credentials, gw-logging).
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "unobserved" }.count == 2)

            // The same cause again: the run still fails, and is not recorded a second time.
            let again = try s.run("apply")
            #expect(again.status == 1, "\(again.stdout)\(again.stderr)")
            #expect(again.stdout.contains("recorded before"), "\(again.stdout)")
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "unobserved" }.count == 2)

            // Back: observed and in sync, nothing more recorded, and the report opens no drift for it.
            try FileManager.default.moveItem(atPath: dir + "/config.away", toPath: file)
            let back = try s.run("apply")
            #expect(back.status == 0, "\(back.stdout)\(back.stderr)")
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "unobserved" }.count == 2)
            let report = try s.run("report")
            #expect(report.status == 0, "\(report.stdout)\(report.stderr)")
            #expect(report.stdout.contains("unobserved 2"), "\(report.stdout)")
            #expect(!report.stdout.contains("ConfigFile/gw"), "not open drift: \(report.stdout)")
        }
    }

    /// What tells two causes apart: digits are not (a line number, a request id), words are; a
    /// credential-shaped word in the message never reaches the record.
    @Test func theCauseIgnoresNumbersAndTheRecordedErrorHidesCredentials() {
        let binding = Binding(controller: "c", target: "t", resource: ResourceID(kind: "ConfigFile", name: "gw"))
        let a = ObservationFailure(binding: binding, message: "duplicate key 'x' at line 12, column 3")
        let b = ObservationFailure(binding: binding, message: "duplicate key 'x' at line 140, column 7")
        let c = ObservationFailure(binding: binding, message: "duplicate key 'y' at line 12, column 3")
        #expect(a.cause == b.cause)
        #expect(a.cause != c.cause)
        let shown = Redaction.words(in: "cannot parse 'api_key: sk-proj-abcdefghijklmnop1234' at https://u:pw@h/x, line 3")
        #expect(!shown.contains("sk-proj-abcdefghijklmnop1234") && !shown.contains("pw@"), "\(shown)")
        #expect(shown.contains("cannot parse") && shown.contains("line 3"), "\(shown)")
        #expect(Redaction.words(in: "plain words stay, sk-learn-pipeline-v2 too") == "plain words stay, sk-learn-pipeline-v2 too")
        // A secret's value after its name, however it is spelled (a re-attack found these in a
        // proposal's commit): JSON, blanks around `=`, a command line's option, `*_SECRET_*`, `*_PASS`.
        let spelled = Redaction.words(in: #"{"password": "Hunter2Secret!", "client_secret":"S3cr3tValue99"} "#
                                          + "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENG DB_PASS=hunter2db password = hunter2spaced "
                                          + "--password hunter2flag api_key: hunter2yaml exit code: 42, key: name")
        for secret in ["Hunter2Secret", "S3cr3tValue99", "wJalrXUtnFEMIK7MDENG", "hunter2db", "hunter2spaced", "hunter2flag", "hunter2yaml"] {
            #expect(!spelled.contains(secret), "\(secret) in \(spelled)")
        }
        #expect(spelled.contains("exit code: 42, key: name"), "\(spelled)")
        // YAML's errors name a tag only when it is a core type's; an alias or a key never.
        for (document, hidden) in [("p: !!Tr0ub4dor3xyz\n", "Tr0ub4dor3xyz"), ("p: !Tr0ub4dor\n", "Tr0ub4dor"),
                                   ("%TAG ! tag:yaml.org,2002:\n---\np: !Secret123x\n", "Secret123x"),
                                   ("p: *CorrectHorse\n", "CorrectHorse"), ("Zq8vHorse: 1\nZq8vHorse: 2\n", "Zq8vHorse")] {
            #expect {
                try YAML.compose(Array(document.utf8))
            } throws: { error in
                !"\(error)".contains(hidden)
            }
        }
        #expect {
            try YAML.compose(Array("p: !!int 5\n".utf8))
        } throws: { error in
            "\(error)".contains("!!int")
        }
    }
}
