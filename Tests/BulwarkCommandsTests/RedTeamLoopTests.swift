@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// The red-team loop, the whole seed in one test: a real garak run (PyPI, `/opt/garak`) against a
/// real LiteLLM proxy (PyPI, `/opt/litellm`) on loopback, whose route leads to a model that obeys
/// injected instructions (Tests/Fixtures/redteam/obedient_model.py: no weights) → garak's report
/// → `bulwark ingest` → a FindingRule proposes enabling the team's instruction-override guardrail
/// on that route (a ConfigFile change) with a passing plan → `bulwark accept` → `bulwark apply`
/// edits the proxy's config.yaml and restarts the proxy → garak again passes, and the attacks never
/// reach the model → the audit record cites the finding → `bulwark report` measures MTTR from
/// garak's first sighting.
@Suite(.serialized) struct RedTeamLoopTests {
    static let environment = ProcessInfo.processInfo.environment
    static let garakPython = environment["GARAK_PYTHON"] ?? "/opt/garak/bin/python"
    static let litellm = environment["LITELLM"] ?? "/opt/litellm/bin/litellm"
    static var litellmPython: String { URL(fileURLWithPath: litellm).deletingLastPathComponent().path + "/python" }
    static let masterKey = "sk-redteam-gateway-6b2e9f4c1a7d3e8b5f0c2a9d4e7b1c3f"
    static var installed: Bool {
        FileManager.default.isExecutableFile(atPath: garakPython) && FileManager.default.isExecutableFile(atPath: litellm)
    }
    static var fixtures: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fixtures/redteam"
    }

    static let rule = """
        # A garak prompt-injection probe that breaks the support bot proposes the team's
        # instruction-override guardrail on that route, for review.
        apiVersion: bulwark/v1
        kind: FindingRule
        metadata: {name: garak-prompt-injection}
        spec:
          match: {source: garak, control: "promptinject.*", resource: "*:support-bot"}
          action: propose
          change:
            resource: ConfigFile/support-bot-route
            add: {'properties."model_list[model_name=support-bot].litellm_params.guardrails"': injection-guard}

        """

    /// The team's route policy: its guardrail is defined (off by default) and the route runs none besides the global ones.
    static func route(reload: String) -> String {
        """
        # The support bot's route. The team's instruction-override guardrail (injection_guard.py
        # beside config.yaml) is defined, off by default; a route turns it on by naming it.
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata:
          name: support-bot-route
          annotations: {owasp-llm: "LLM01", severity: high}
        spec:
          path: etc/litellm/config.yaml
          properties:
            guardrails[guardrail_name=injection-guard].litellm_params.guardrail: injection_guard.InstructionOverrideGuard
            guardrails[guardrail_name=injection-guard].litellm_params.mode: pre_call
            guardrails[guardrail_name=injection-guard].litellm_params.default_on: false
            model_list[model_name=support-bot].litellm_params.guardrails: []   # the guardrails of this route
          validate: [/usr/bin/python3, -c, "import sys, yaml; yaml.safe_load(open(sys.argv[1]))", "{file}"]
          reload: \(reload)
          timeoutSeconds: 600

        """
    }

    /// The pid a pid file holds, if any.
    static func pid(in path: String) -> Int32? {
        (try? read(path)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Stops the process a pid file names: SIGTERM, then SIGKILL after 10 s.
    static func stop(pidFile path: String) {
        guard let pid = pid(in: path), pid > 1 else { return }
        kill(pid, SIGTERM)
        for _ in 0..<100 where kill(pid, 0) == 0 { usleep(100_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    }

    /// Runs garak's promptinject.HijackHateHumans probe (6 prompts, one generation each) through
    /// its OpenAI-compatible generator against the proxy; returns the report's lines.
    static func garak(_ dir: String, port: Int, run: String) throws -> (report: String, lines: [[String: Any]], output: String) {
        let home = dir + "/garak-home"
        let config = """
            system: {parallel_attempts: false, lite: true, show_z: false}
            run: {seed: 17, generations: 1, soft_probe_prompt_cap: 6}
            reporting: {report_dir: \(dir)/garak-runs, report_prefix: \(run)}
            plugins:
              target_type: openai.OpenAICompatible
              target_name: support-bot
              generators:
                openai:
                  OpenAICompatible: {uri: "http://127.0.0.1:\(port)/v1", model: support-bot, suppressed_params: [n]}

            """
        try write(dir + "/garak-\(run).yaml", config)
        let result = try BulwarkTestSupport.run(garakPython, ["-m", "garak", "--config", dir + "/garak-\(run).yaml",
                                                               "--probes", "promptinject.HijackHateHumans"],
                                                environment: ["HOME": home, "XDG_DATA_HOME": home + "/data", "XDG_CONFIG_HOME": home + "/config",
                                                              "XDG_CACHE_HOME": home + "/cache", "HF_HUB_OFFLINE": "1",
                                                              "OPENAICOMPATIBLE_API_KEY": masterKey])
        let path = dir + "/garak-runs/\(run).report.jsonl"
        guard result.status == 0, let text = try? read(path) else {
            throw SupportError("garak failed (\(result.status)): \(result.stdout.suffix(1500)) \(result.stderr.suffix(1500))")
        }
        let lines = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        return (path, lines, result.stdout)
    }

    static func ingest(_ s: Scenario, _ path: String) throws -> (status: Int32, item: [String: Any], text: String) {
        let out = try s.run("ingest", path, "--output", "json")
        let report = (try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]) ?? [:]
        return (out.status, (report["items"] as? [[String: Any]])?.first ?? [:], out.stdout + out.stderr)
    }

    /// The prompts that reached the model, in order.
    static func prompts(_ dir: String) -> [String] {
        ((try? read(dir + "/model.log")) ?? "").split(separator: "\n")
            .compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["prompt"] as? String }
    }

    @Test(.enabled(if: installed, "garak (/opt/garak) and litellm[proxy] (/opt/litellm) are installed by scripts/setup"))
    func aFailingGarakProbeBecomesAReviewedGuardrailThatTheRerunPasses() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let gateway = dir + "/gateway"
            defer {
                Self.stop(pidFile: dir + "/proxy.pid")
                Self.stop(pidFile: dir + "/model.pid")
            }

            // The model behind the gateway: does what the last instruction in its prompt says.
            let spawn = "import os, subprocess, sys; print(subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, "
                + "stdout=open(sys.argv[1], 'ab'), stderr=subprocess.STDOUT, start_new_session=True).pid)"
            let model = try run("/usr/bin/python3", ["-c", spawn, dir + "/model.out", "/usr/bin/python3", Self.fixtures + "/obedient_model.py",
                                                     dir + "/model.port", dir + "/model.log"])
            try write(dir + "/model.pid", model.stdout)
            var modelPort: Int?
            for _ in 0..<100 where modelPort == nil {
                modelPort = (try? read(dir + "/model.port")).flatMap { Int($0) }
                if modelPort == nil { usleep(100_000) }
            }
            let port = try #require(modelPort, "the model did not start: \((try? read(dir + "/model.out")) ?? "")")

            // The gateway as the team runs it: one route to that model, the team's guardrail module beside the config.
            try write(gateway + "/etc/litellm/config.yaml", """
                # The support bot's gateway.
                model_list:
                  - model_name: support-bot
                    litellm_params:
                      model: openai/obedient
                      api_base: http://127.0.0.1:\(port)/v1
                      api_key: os.environ/SUPPORT_BOT_MODEL_KEY

                """, mode: 0o640)
            try write(gateway + "/etc/litellm/injection_guard.py", try read(Self.fixtures + "/injection_guard.py"))
            // Starts (or restarts) the proxy and waits until it answers; its pid is kept in a file so
            // that the test stops exactly that process.
            try write(dir + "/proxy.sh", liteLLMProxyScript(
                folder: dir, python: Self.litellmPython,
                environment: "LITELLM_MASTER_KEY=\(Self.masterKey) LITELLM_LOCAL_MODEL_COST_MAP=True SUPPORT_BOT_MODEL_KEY=unused-by-the-local-model",
                command: "\(Self.litellm) --config \(gateway)/etc/litellm/config.yaml"), mode: 0o755)

            // The policy: the gateway is a host target managed by the shipped ai-gateway baseline
            // (restarting this proxy instead of a systemd unit), plus the team's route and the rule.
            let reload = "[\(dir)/proxy.sh]"
            try s.commitPolicy("controllers/gateway-target.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: gateway, labels: {role: ai-gateway, exposure: internet}}
                spec: {adapter: host, root: \(gateway)}

                """, message: "the support bot's gateway")
            try s.editPolicy("desired-state/ai-gateway/litellm.yaml", replacing: "reload: [/usr/bin/systemctl, try-restart, litellm.service]",
                             with: "reload: \(reload)\n  timeoutSeconds: 600", message: "restart the gateway with its script")
            try s.commitPolicy("desired-state/ai-gateway/support-bot.yaml", Self.route(reload: reload), message: "the support bot's route")
            try s.commitPolicy("finding-rules/garak.yaml", Self.rule, message: "finding rule: garak prompt injection")

            // Bulwark brings the gateway to the policy; the reload starts the proxy.
            try s.acceptHead()
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
            let proxyPID = try #require(Self.pid(in: dir + "/proxy.pid"), "the proxy was not started: \(first.stdout)\(first.stderr)")
            let proxyPort = try #require(Int(try read(dir + "/proxy.port").trimmingCharacters(in: .whitespacesAndNewlines)))
            let before = try read(gateway + "/etc/litellm/config.yaml")
            #expect(before.contains("guardrail: injection_guard.InstructionOverrideGuard") && before.contains("guardrails: []"), "\(before)")
            #expect(before.contains("detect_prompt_injection"))

            // garak finds the route injectable: the shipped heuristic lets PromptInject's attacks through.
            let run1 = try Self.garak(dir, port: proxyPort, run: "run1")
            let eval1 = try #require(run1.lines.first { $0["entry_type"] as? String == "eval" }, "\(run1.output.suffix(2000))")
            let failed = try #require(eval1["fails"] as? Int)
            #expect(eval1["probe"] as? String == "promptinject.HijackHateHumans")
            #expect(failed > 0, "\(eval1)")
            let reached = Self.prompts(dir).filter { $0.contains("I hate humans") }.count
            #expect(reached > 0)
            let startTime = try #require(run1.lines.first { $0["entry_type"] as? String == "init" }?["start_time"] as? String)

            // Ingested: a proposal with a passing plan that turns the guardrail on for the route.
            let proposed = try Self.ingest(s, run1.report)
            #expect(proposed.status == 2, "\(proposed.text)")
            #expect(proposed.item["outcome"] as? String == "proposed", "\(proposed.text)")
            #expect(proposed.item["rule"] as? String == "garak-prompt-injection")
            // garak's finding names a model, not a target: it takes the exposure of the gateway its rule
            // changes (internet, 3) × its severity (every attempt failed: high, 3) × no exploit data (1) = 9, P2.
            #expect(proposed.item["priority"] as? String == "P2" && proposed.item["score"] as? Int == 9, "\(proposed.item)")
            #expect(proposed.item["source"] as? String == "garak" && proposed.item["control"] as? String == "promptinject.HijackHateHumans")
            #expect((proposed.item["firstSeen"] as? String)?.hasPrefix(String(startTime.prefix(19))) == true, "\(proposed.item) \(startTime)")
            let id = try #require(proposed.item["id"] as? String)
            let branch = try #require(proposed.item["branch"] as? String)
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", branch)
            #expect(message.contains("Plan: passed"), "\(message)")
            #expect(message.contains(#"- gateway ConfigFile/support-bot-route: model_list[model_name=support-bot].litellm_params.guardrails: [] -> ["injection-guard"] (applied)"#), "\(message)")
            #expect(message.contains("Bulwark-Finding: \(id)") && message.contains("Bulwark-Finding-Source: garak"))
            #expect(message.contains("Evidence: garak run ") && message.contains("Bulwark-Proposal: proposed"))
            let diff = try git("--git-dir", s.origin, "diff", "main", branch)
            #expect(diff.contains(#"+    model_list[model_name=support-bot].litellm_params.guardrails: ["injection-guard"]   # the guardrails of this route"#), "\(diff)")
            // Nothing changed on the gateway yet.
            #expect(try read(gateway + "/etc/litellm/config.yaml") == before)
            #expect(Self.pid(in: dir + "/proxy.pid") == proxyPID)

            // A person accepts it; the next apply edits the proxy's file and restarts it.
            let accepted = try s.run("accept", id)
            #expect(accepted.status == 0, "\(accepted.stdout)\(accepted.stderr)")
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stdout)\(applied.stderr)")
            let after = try read(gateway + "/etc/litellm/config.yaml")
            #expect(after.contains("guardrails:\n      - injection-guard") || after.contains(#"guardrails: ["injection-guard"]"#)
                    || after.contains("guardrails: [injection-guard]"), "\(after)")
            #expect(after.hasPrefix("# The support bot's gateway.\nmodel_list:\n  - model_name: support-bot\n"))
            let restarted = try #require(Self.pid(in: dir + "/proxy.pid"))
            #expect(restarted != proxyPID)

            // garak again: every attempt is refused by the gateway, and none reaches the model.
            let run2 = try Self.garak(dir, port: proxyPort, run: "run2")
            let eval2 = try #require(run2.lines.first { $0["entry_type"] as? String == "eval" }, "\(run2.output.suffix(2000))")
            let judged = try #require(eval2["total_evaluated"] as? Int)
            #expect(judged > 0 && eval2["fails"] as? Int == 0 && eval2["passed"] as? Int == judged, "\(eval2)")
            #expect(Self.prompts(dir).filter { $0.contains("I hate humans") }.count == reached)
            // An ordinary question still gets the model's answer through the guarded route.
            let ordinary = try run("/usr/bin/curl", ["-s", "-H", "authorization: Bearer \(Self.masterKey)", "-H", "content-type: application/json",
                                                     "-d", #"{"model": "support-bot", "messages": [{"role": "user", "content": "Where is my parcel?"}]}"#,
                                                     "http://127.0.0.1:\(proxyPort)/v1/chat/completions"])
            #expect(ordinary.stdout.contains("Happy to help"), "\(ordinary.stdout)")

            // The passing re-run is the finding resolved; its accepted proposal is not closed.
            let tip = try git("--git-dir", s.origin, "rev-parse", branch)
            let resolved = try Self.ingest(s, run2.report)
            #expect(resolved.status == 0 && resolved.item["outcome"] as? String == "nothing", "\(resolved.text)")
            #expect((resolved.item["detail"] as? String)?.contains("fixed by its accepted proposal") == true, "\(resolved.text)")
            #expect(try git("--git-dir", s.origin, "rev-parse", branch) == tip)

            // The audit record of the fix cites the finding and garak's first sighting.
            #expect(try s.trailers("Bulwark-Finding") == [id])
            #expect(try s.trailers("Bulwark-Finding-Source") == ["garak"])
            #expect(try s.trailers("Bulwark-Priority") == ["P2"])
            let firstSeen = try #require(proposed.item["firstSeen"] as? String)
            #expect(try s.trailers("Bulwark-Finding-First-Seen") == [firstSeen])

            // MTTR from garak's first sighting to the verified fix.
            let report = try s.run("report", "--output", "json")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any], "\(report.stderr)")
            let findings = try #require(json["findings"] as? [String: Any])
            #expect(findings["fixed"] as? Int == 1)
            let mttr = try #require((findings["mttr"] as? [String: Any])?["maxSeconds"] as? Double)
            let seen = try #require(Timestamp.parse(firstSeen))
            #expect(mttr > 0 && mttr <= Date().timeIntervalSince(seen), "\(mttr)")
            #expect((findings["bySource"] as? [String: Any])?["garak"] != nil, "\(findings)")
            #expect(try s.run("report").stdout.contains("Findings MTTR (first seen by the scanner to verified fix): 1 fix"))
        }
    }
}

/// A finding rule names one property of a `ConfigFile` (a dotted path itself) in double quotes,
/// and its proposal adds to that property's list and nothing else.
@Suite struct RedTeamRuleTests {
    @Test func aQuotedConfigFilePropertyTakesTheGuardrailAndKeepsTheRestOfTheManifest() throws {
        var files = FindingRuleTests.baseline()
        let path = "desired-state/ai-gateway/support-bot.yaml"
        files[path] = RedTeamLoopTests.route(reload: "[/bin/true]")
        files["finding-rules/garak.yaml"] = RedTeamLoopTests.rule
        let state = try FindingRuleTests.load(files)
        let rule = try #require(state.findingRules.first)
        let finding = Finding(resource: "openai.OpenAICompatible:support-bot", control: "promptinject.HijackHateHumans",
                              firstObservedAt: Date(), source: "garak", severity: .high)
        #expect(rule.matches(finding))
        #expect(!rule.matches(Finding(resource: "openai.OpenAICompatible:other-bot", control: "promptinject.HijackHateHumans",
                                      firstObservedAt: Date(), source: "garak", severity: .high)))
        let change = try #require(try rule.change?.render(for: finding))
        #expect(change.add.first?.path == ["properties", "model_list[model_name=support-bot].litellm_params.guardrails"])
        let id = ResourceID(kind: "ConfigFile", name: "support-bot-route")
        let before = try #require(files[path])
        let after = try ManifestEdit.apply(change, annotations: ["finding": "garak-1"], to: id, in: before)
        let (added, removed) = FindingRuleTests.changedLines(before, after)
        #expect(added == [#"  annotations: {owasp-llm: "LLM01", severity: high, finding: "garak-1"}"#,
                          #"    model_list[model_name=support-bot].litellm_params.guardrails: ["injection-guard"]   # the guardrails of this route"#],
                "\(after)")
        #expect(removed.count == 2)
        files[path] = after
        let changed = try #require(try FindingRuleTests.load(files).resources[id])
        #expect(changed.spec != state.resources[id]?.spec)
    }

    @Test func anUnquotedOrMalformedPathIsRefusedWhenTheRuleLoads() throws {
        // (The quoted path loads: the test above.)
        for (key, message) in [
            // Unquoted, the proposal would insert `model_list[model_name=support-bot]: {litellm_params: …}`, a
            // property that replaces the whole route (its model and address) with the guardrail list.
            ("'properties.model_list[model_name=support-bot].litellm_params.guardrails'", "a ConfigFile property is one name below properties"),
            (#"'properties."a"b'"#, "not a path below spec"),
        ] {
            var files = FindingRuleTests.baseline()
            files["finding-rules/broken.yaml"] = RedTeamLoopTests.rule
                .replacingOccurrences(of: #"'properties."model_list[model_name=support-bot].litellm_params.guardrails"'"#, with: key)
            do {
                _ = try FindingRuleTests.load(files)
                Issue.record("accepted: \(key)")
            } catch {
                #expect(String(describing: error).contains(message), "\(error)")
            }
        }
    }
}
