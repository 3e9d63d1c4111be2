@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

enum SchemaValidator {
    static var available: Bool {
        (try? run("/usr/bin/env", ["python3", "-c", "import jsonschema, yaml; jsonschema.Draft202012Validator"]).status) == 0
    }
}

/// The JSON Schemas under docs/schemas hold for what the real binary prints (plan, apply, log,
/// report, validate, version, the daemon's /api/v1/status) and for the manifests `init` writes
/// and the repository's own examples, checked by python3-jsonschema (Draft 2020-12) so that the
/// schemas cannot drift from the code. Each schema is also checked against the metaschema.
@Suite(.serialized, .enabled(if: SchemaValidator.available, "needs python3-jsonschema and python3-yaml (scripts/setup installs them)"))
struct JSONSchemaTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let schemas = repositoryRoot + "/docs/schemas"

    /// Validates each document (JSON text, or YAML files with `yaml: true`, every document of a
    /// file) against a schema; returns the problems, empty when all hold.
    static let validator = #"""
        import json, sys, yaml, jsonschema
        schema_path, kind = sys.argv[1], sys.argv[2]
        schema = json.load(open(schema_path))
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        problems = []
        for path in sys.argv[3:]:
            text = open(path).read()
            documents = [d for d in yaml.safe_load_all(text) if d is not None] if kind == "yaml" else [json.loads(text)]
            for index, document in enumerate(documents):
                for error in validator.iter_errors(document):
                    where = "/".join(str(p) for p in error.absolute_path)
                    problems.append(f"{path}[{index}] at /{where}: {error.message}"[:400])
        print("\n".join(problems))
        """#

    /// Problems of `documents` (file paths) against `schema` (a file name under docs/schemas).
    func problems(_ schema: String, _ paths: [String], yaml: Bool = false) throws -> [String] {
        let result = try run("/usr/bin/env", ["python3", "-c", Self.validator, Self.schemas + "/" + schema, yaml ? "yaml" : "json"] + paths)
        guard result.status == 0 else { throw SupportError("the validator failed: \(result.stderr)") }
        return result.stdout.split(separator: "\n").map(String.init)
    }

    /// Writes `text` into `dir` and checks it against `schema`.
    func check(_ schema: String, _ text: String, in dir: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let path = dir + "/\(schema)-\(UUID().uuidString.prefix(8)).json"
        try write(path, text)
        if let samples = ProcessInfo.processInfo.environment["BULWARK_SCHEMA_SAMPLES"] {
            try write(samples + "/" + (path as NSString).lastPathComponent, text)
        }
        #expect(try problems(schema, [path]) == [], "\(text.prefix(2000))", sourceLocation: sourceLocation)
        // Durations are to the millisecond: no 2.215999960899353.
        #expect(text.range(of: #"[0-9]\.[0-9]{4,}"#, options: .regularExpression) == nil, "float noise in \(schema)",
                sourceLocation: sourceLocation)
    }

    @Test func theCommandsJSONOutputsHoldToTheirSchemas() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let plan = try s.run("plan", "--output", "json")
            #expect(plan.status == 2, "\(plan.stderr)")
            try check("plan.schema.json", plan.stdout, in: dir)
            let apply = try s.run("apply", "--output", "json")
            #expect(apply.status == 0, "\(apply.stderr)")
            try check("apply.schema.json", apply.stdout, in: dir)
            // A pass in sync: no records, still the same document.
            try check("apply.schema.json", try s.run("apply", "--output", "json").stdout, in: dir)
            try check("plan.schema.json", try s.run("plan", "--output", "json").stdout, in: dir)
            let log = try s.run("log", "--output", "json")
            #expect(log.status == 0, "\(log.stderr)")
            try check("log.schema.json", log.stdout, in: dir)
            let report = try s.run("report", "--output", "json")
            #expect(report.status == 0, "\(report.stderr)")
            try check("report.schema.json", report.stdout, in: dir)
            let valid = try bulwark(["validate", "--output", "json", s.policy])
            #expect(valid.status == 0, "\(valid.stderr)")
            try check("validate.schema.json", valid.stdout, in: dir)
            try write(s.policy + "/desired-state/broken.yaml", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: Bad_Name}\nspec: {}\n")
            let invalid = try bulwark(["validate", "--output", "json", s.policy])
            #expect(invalid.status == 1)
            try check("validate.schema.json", invalid.stdout, in: dir)
            try check("version.schema.json", try bulwark(["version", "--output", "json"]).stdout, in: dir)
            // A refused revision: exit 1, and still a document, with the errors and `refused`.
            try s.commitPolicy("desired-state/broken.yaml", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: Bad_Name}\nspec: {}\n")
            for (command, schema) in [("plan", "plan.schema.json"), ("apply", "apply.schema.json")] {
                let refused = try s.run(command, "--output", "json")
                #expect(refused.status == 1, "\(command): \(refused.stderr)")
                try check(schema, refused.stdout, in: dir)
                let document = try #require(try JSONSerialization.jsonObject(with: Data(refused.stdout.utf8)) as? [String: Any])
                #expect(document["refused"] as? Bool == true)
                #expect((document["errors"] as? [String])?.contains { $0.contains("Bad_Name") } == true, "\(document)")
                // apply records the refusal and pushes it: the document lists it and counts it.
                if command == "apply" {
                    let records = try #require(document["records"] as? [[String: Any]])
                    #expect(records.count == 1 && document["pushed"] as? Int == 1, "\(document)")
                    let commit = try #require(records.first?["commit"] as? String)
                    let onOrigin = try git("-C", s.origin, "log", "--format=%H", "bulwark/audit")
                    #expect(onOrigin.split(separator: "\n").contains(Substring(commit)), "\(onOrigin)")
                }
            }
            // Refused again: recorded before, so nothing new in this run's document.
            let again = try s.run("apply", "--output", "json")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
            #expect((document["records"] as? [Any])?.isEmpty == true && document["pushed"] as? Int == 0, "\(document)")
        }
    }

    /// A refusal record that could not be pushed (the origin away) is pushed by the next run of
    /// the same refused revision, which says so in its document; until then it is counted as
    /// kept (re-attack: it stayed local, and the next document said kept 0).
    @Test func aRefusalKeptLocallyIsPushedByTheNextRunOfTheSameRevision() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("desired-state/broken.yaml", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: Bad_Name}\nspec: {}\n")
            #expect(try s.run("plan").status == 1, "fetched, refused, nothing recorded")
            try FileManager.default.moveItem(atPath: s.origin, toPath: dir + "/away.git")
            func document(_ output: ProcessOutput) throws -> [String: Any] {
                try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any], "\(output.stderr)")
            }
            let kept = try document(try s.run("apply", "--output", "json"))
            #expect((kept["records"] as? [Any])?.count == 1 && kept["pushed"] as? Int == 0 && kept["keptLocally"] as? Int == 1, "\(kept)")
            try FileManager.default.moveItem(atPath: dir + "/away.git", toPath: s.origin)
            let pushed = try document(try s.run("apply", "--output", "json"))
            #expect((pushed["records"] as? [Any])?.isEmpty == true && pushed["pushed"] as? Int == 1 && pushed["keptLocally"] as? Int == 0,
                    "\(pushed)")
            #expect(try s.trailers("Bulwark-Decision") == ["refused"])
        }
    }

    @Test func theDaemonsStatusHoldsToItsSchema() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"], logPath: dir + "/daemon.log")
            let idle = daemon.wait(seconds: 60) {
                let answer = try? httpRequest(port: daemon.port, "GET", "/api/v1/status")
                return answer?.status == 200 && answer?.body.contains("\"lastCycleAt\"") == true && answer?.body.contains("\"busy\" : false") == true
            }
            #expect(idle, "\(daemon.log)")
            let status = try httpRequest(port: daemon.port, "GET", "/api/v1/status")
            #expect(status.status == 200)
            try check("status.schema.json", status.body, in: dir)
        }
    }

    @Test func manifestsHoldToTheManifestSchemaAndWrongOnesDoNot() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            var files: [String] = []
            for root in [s.policy, Self.repositoryRoot] {
                for folder in ["controllers", "desired-state", "waivers", "approvals"] {
                    let walker = FileManager.default.enumerator(atPath: root + "/" + folder)
                    while let relative = walker?.nextObject() as? String {
                        if relative.hasSuffix(".yaml") || relative.hasSuffix(".yml") { files.append(root + "/" + folder + "/" + relative) }
                    }
                }
            }
            #expect(files.count > 5)
            #expect(try problems("manifest.schema.json", files, yaml: true) == [])
            // Every kind the binary knows is in the schema, and no other.
            try write(dir + "/unknown/desired-state/x.yaml", "apiVersion: bulwark/v1\nkind: NoSuchKind\nmetadata: {name: x}\nspec: {}\n")
            let known = try bulwark(["validate", dir + "/unknown"]).stderr + (try bulwark(["validate", dir + "/unknown"]).stdout)
            let listed = try #require(known.range(of: "known kinds: ")).upperBound
            let kinds = Set(known[listed...].prefix { !$0.isNewline && $0 != ")" }.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            let schema = try #require(try JSONSerialization.jsonObject(with: Data(read(Self.schemas + "/manifest.schema.json").utf8)) as? [String: Any])
            let enumerated = (((schema["properties"] as? [String: Any])?["kind"] as? [String: Any])?["enum"] as? [String]) ?? []
            #expect(Set(enumerated) == kinds)
            // Wrong manifests are caught, each for its own reason.
            let wrong = dir + "/wrong.yaml"
            try write(wrong, """
                apiVersion: bulwark/v2
                kind: Sysctl
                metadata: {name: a}
                spec: {}
                ---
                apiVersion: bulwark/v1
                kind: FileMode
                metadata: {name: b}
                spec: {path: /etc/shadow, mode: "0640", colour: red}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: Not_A_Name}
                spec: {kinds: [Sysctl]}
                ---
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: t}
                spec: {adapter: aws}
                """)
            let found = try problems("manifest.schema.json", [wrong], yaml: true)
            #expect(found.contains { $0.contains("[0]") && $0.contains("apiVersion") }, "\(found)")
            #expect(found.contains { $0.contains("[1]") && $0.contains("colour") }, "\(found)")
            #expect(found.contains { $0.contains("[2]") && $0.contains("metadata/name") }, "\(found)")
            #expect(found.contains { $0.contains("[3]") && $0.contains("region") }, "\(found)")
        }
    }
}

/// One field vocabulary across the JSON outputs (issue 12): `observed`, `desired`, `verified`,
/// `decision`, `result`, `revision`, times RFC 3339, durations in `…Seconds`; the audit record's
/// committed field names (`observedBefore`, `observedAfter`, `desiredCommit`, `approver`) and raw
/// trailers never appear in a JSON output, while the audit branch keeps them as written.
@Suite(.serialized) struct JSONVocabularyTests {
    /// Every key of a JSON document, at any depth.
    static func keys(_ text: String) throws -> Set<String> {
        var found: Set<String> = []
        func walk(_ value: Any) {
            if let object = value as? [String: Any] {
                for (key, inner) in object {
                    found.insert(key)
                    walk(inner)
                }
            } else if let array = value as? [Any] {
                array.forEach(walk)
            }
        }
        walk(try JSONSerialization.jsonObject(with: Data(text.utf8)))
        return found
    }

    static let recordFieldNames: Set<String> = ["observedBefore", "observedAfter", "desiredCommit", "approver", "trailers", "properties", "commits"]

    @Test func planApplyLogAndStatusShareOneVocabulary() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let plan = try s.run("plan", "--output", "json")
            let apply = try s.run("apply", "--output", "json")
            #expect(apply.status == 0, "\(apply.stderr)")
            let log = try s.run("log", "--output", "json")
            for (name, text) in [("plan", plan.stdout), ("apply", apply.stdout), ("log", log.stdout)] {
                let keys = try Self.keys(text)
                #expect(keys.isDisjoint(with: Self.recordFieldNames), "\(name): \(keys.intersection(Self.recordFieldNames))")
                #expect(keys.contains("decision"), "\(name)")
            }
            // The change a fix made, in plan's words, with what its verification observed.
            let document = try #require(try JSONSerialization.jsonObject(with: Data(apply.stdout.utf8)) as? [String: Any])
            #expect(document["schemaVersion"] as? Int == 2)
            let records = try #require(document["records"] as? [[String: Any]])
            let fix = try #require(records.first { $0["result"] as? String == "verified" }, "\(apply.stdout)")
            let change = try #require((fix["changes"] as? [[String: Any]])?.first)
            #expect(change["verified"] as? String == change["desired"] as? String)
            #expect(change["observed"] as? String != change["desired"] as? String)
            #expect((fix["commit"] as? String)?.count == 40)
            #expect((fix["revision"] as? String)?.count == 40)
            let planned = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])
            let plannedChanges = ((planned["drift"] as? [[String: Any]]) ?? []).flatMap { ($0["changes"] as? [[String: Any]]) ?? [] }
            #expect(plannedChanges.contains { $0["property"] as? String == change["property"] as? String
                                              && $0["observed"] as? String == change["observed"] as? String })
            // The committed record keeps its own format, read back as before.
            let stored = try git("--git-dir", s.origin, "show", "bulwark/audit:" + (try git("--git-dir", s.origin, "diff-tree", "--no-commit-id",
                                                                                             "--name-only", "-r", "bulwark/audit").split(separator: "\n").first.map(String.init) ?? ""))
            #expect(stored.contains("\"observedBefore\"") || stored.contains("\"desiredCommit\""), "\(stored.prefix(400))")
        }
    }
}
