@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A finding rule's change keeps the type the rule wrote (`false` stays a boolean: the string
/// "false" is true to Python), while a value from the finding's text is always a quoted string;
/// and a change to a value the policy already sets, of a kind that cannot judge which way a
/// change goes (ConfigFile), is proposed for a person, never merged by itself.
@Suite(.serialized) struct FindingValueTypeTests {
    static let gatewayConfig = """
        general_settings:
          master_key: os.environ/LITELLM_MASTER_KEY
          dangerously_permit_weak_or_unset_master_key: false
          store_prompts_in_spend_logs: true
        litellm_settings:
          json_logs: false
          turn_off_message_logging: false

        """

    static let inventory = """
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: gw, labels: {role: gw-test}}
        spec: {adapter: host, root: ROOT}
        ---
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: gw}
        spec:
          kinds: [ConfigFile]
          targets: {selector: {role: gw-test}}

        """

    static let manifests = """
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata: {name: gw-credentials}
        spec:
          path: etc/litellm/config.yaml
          properties:
            general_settings.dangerously_permit_weak_or_unset_master_key: false
        ---
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata: {name: gw-logging}
        spec:
          path: etc/litellm/config.yaml
          properties:
            litellm_settings.json_logs: true
            litellm_settings.turn_off_message_logging: false

        """

    static let rules = """
        apiVersion: bulwark/v1
        kind: FindingRule
        metadata: {name: a-store-prompts}
        spec:
          match: {source: llmscan, control: LLM10-store}
          action: propose
          autoMerge: true
          change:
            resource: ConfigFile/gw-logging
            set: {properties."general_settings.store_prompts_in_spend_logs": false}
        ---
        apiVersion: bulwark/v1
        kind: FindingRule
        metadata: {name: b-message-logging}
        spec:
          match: {source: llmscan, control: LLM10-log}
          action: propose
          autoMerge: true
          change:
            resource: ConfigFile/gw-logging
            set: {properties."litellm_settings.json_logs": "{{evidence}}"}

        """

    /// A scenario whose policy manages a gateway's config.yaml (`gw`) with the rules above,
    /// instead of the shipped LiteLLM baseline (which restarts a service).
    func scenario(_ dir: String) throws -> Scenario {
        let s = try Scenario(in: dir)
        try write(dir + "/gw/etc/litellm/config.yaml", Self.gatewayConfig, mode: 0o640)
        let work = dir + "/gw-work"
        try git("clone", "-q", s.origin, work)
        try git("rm", "-q", "desired-state/ai-gateway/litellm.yaml", in: work)
        try write(work + "/controllers/gw.yaml", Self.inventory.replacingOccurrences(of: "ROOT", with: dir + "/gw"))
        try write(work + "/desired-state/ai-gateway/gw.yaml", Self.manifests)
        try write(work + "/finding-rules/llm.yaml", Self.rules)
        try git("add", "-A", in: work)
        try git("commit", "-qm", "the gateway's policy and finding rules", in: work)
        try git("push", "-q", "origin", "main", in: work)
        return s
    }

    func ingest(_ s: Scenario, id: String, control: String, evidence: String) throws -> (status: Int32, item: [String: Any]) {
        let path = s.dir + "/finding-\(id).json"
        try write(path, #"[{"id": "\#(id)", "source": "llmscan", "resource": "gw", "target": "gw", "control": "\#(control)", "#
                  + #""evidence": "\#(evidence)", "severity": "high"}]"#)
        let out = try bulwark(["ingest", path, "--output", "json", "--repo", s.origin, "--state-dir", s.state])
        let report = (try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]) ?? [:]
        return (out.status, (report["items"] as? [[String: Any]])?.first ?? ["stderr": out.stderr])
    }

    /// What PyYAML (LiteLLM's reader) makes of a key of the gateway's file: `False`, `'false'`.
    func python(_ file: String, _ section: String, _ key: String) throws -> String {
        let out = try run("/usr/bin/python3", ["-c", "import sys, yaml; print(repr(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]]))",
                                               file, section, key])
        return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The rule's own plain scalars keep their YAML type in the edit; a quoted one, or one with a
    /// placeholder, is a string (and a plain string is still quoted, so it cannot break out).
    @Test func onlyTheRulesOwnPlainBooleansNullsAndNumbersAreWrittenPlain() throws {
        var files = FindingRuleTests.baseline()
        files["finding-rules/r.yaml"] = """
            apiVersion: bulwark/v1
            kind: FindingRule
            metadata: {name: r}
            spec:
              match: {source: llmscan}
              action: propose
              change:
                resource: ConfigFile/litellm-logging
                set:
                  properties."general_settings.store_prompts_in_spend_logs": false
                  properties."litellm_settings.json_logs": "false"
                  properties."litellm_settings.turn_off_message_logging": "{{evidence}}"
                  properties."litellm_settings.num_retries": 3.5
                  properties."litellm_settings.cache": plain text, with a comma
            """
        let state = try FindingRuleTests.load(files)
        let template = try #require(state.findingRules.first?.change)
        #expect(template.set.map(\.typed) == [true, false, false, true, false])
        let finding = Finding(resource: "gw", control: "c", firstObservedAt: Date(), source: "llmscan", severity: .high, evidence: "true")
        let change = try template.render(for: finding)
        #expect(change.set.map(\.typed) == [true, false, false, true, false])
        let path = "desired-state/ai-gateway/litellm.yaml"
        let edited = try ManifestEdit.apply(change, annotations: [:], to: ResourceID(kind: "ConfigFile", name: "litellm-logging"),
                                            in: try #require(files[path]))
        for line in ["    general_settings.store_prompts_in_spend_logs: false\n", #"    litellm_settings.json_logs: "false""#,
                     #"    litellm_settings.turn_off_message_logging: "true""#, "    litellm_settings.num_retries: 3.5\n",
                     #"    litellm_settings.cache: "plain text, with a comma""#] {
            #expect(edited.contains(line), "\(line) in \(edited)")
        }
        files[path] = edited
        #expect(throws: Never.self) { try FindingRuleTests.load(files) }
    }

    @Test func aRulesFalseStaysABooleanInTheManifestAndTheFileAndAFindingsTrueStaysAString() async throws {
        try await withTemporaryDirectory { dir in
            let s = try scenario(dir)
            // The rule's own `false`, for a property the policy did not set yet: proposed (a
            // ConfigFile change has no known direction, added keys included), plain; accepted by
            // a person, it reaches main as written.
            let proposed = try ingest(s, id: "store-1", control: "LLM10-store", evidence: "spend logs keep prompts")
            #expect(proposed.status == 2 && proposed.item["outcome"] as? String == "proposed", "\(proposed.item)")
            let accepted = try run(try bulwarkExecutable(), ["accept", "store-1", "--repo", s.origin, "--state-dir", s.state],
                                   environment: RevertTests.person)
            #expect(accepted.status == 0, "\(accepted.stdout) \(accepted.stderr)")
            let manifest = try git("--git-dir", s.origin, "show", "main:desired-state/ai-gateway/gw.yaml")
            #expect(manifest.contains("    general_settings.store_prompts_in_spend_logs: false\n"), "\(manifest)")
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stdout) \(apply.stderr)")
            let file = dir + "/gw/etc/litellm/config.yaml"
            let written = try read(file)
            #expect(written.contains("  store_prompts_in_spend_logs: false\n"), "\(written)")
            #expect(try python(file, "general_settings", "store_prompts_in_spend_logs") == "False")

            // A value from the finding's text ("true") is a string, whatever it spells.
            let fromFinding = try ingest(s, id: "log-1", control: "LLM10-log", evidence: "true")
            let branch = try git("--git-dir", s.origin, "show", "bulwark/proposals/log-1:desired-state/ai-gateway/gw.yaml")
            #expect(branch.contains(#"    litellm_settings.json_logs: "true""#), "\(branch) \(fromFinding.item)")
        }
    }

    @Test func aChangeOfAValueWhoseDirectionIsUnknownIsProposedNotMerged() async throws {
        try await withTemporaryDirectory { dir in
            let s = try scenario(dir)
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let proposed = try ingest(s, id: "log-2", control: "LLM10-log", evidence: "true")
            #expect(proposed.status == 2 && proposed.item["outcome"] as? String == "proposed", "\(proposed.item)")
            let detail = proposed.item["detail"] as? String ?? ""
            #expect(detail.contains("not merged automatically: ConfigFile has no rule for which way a change goes"), "\(detail)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main, "nothing reached main")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/ai-gateway/gw.yaml")
                .contains("litellm_settings.json_logs: true\n"))
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/log-2")
            #expect(message.contains("Not merged automatically: ConfigFile has no rule for which way a change goes, and this one changes "
                                     + "what the policy sets (litellm_settings.json_logs: true → \"true\")"), "\(message)")
            #expect(message.contains("Plan: passed"))
            #expect(message.contains("Bulwark-Proposal: proposed"))
            // The gateway's file is untouched by the proposal.
            #expect(try read(dir + "/gw/etc/litellm/config.yaml") == Self.gatewayConfig)
        }
    }
}
