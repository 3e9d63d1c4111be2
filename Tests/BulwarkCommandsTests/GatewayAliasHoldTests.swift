@testable import BulwarkCommands
import BulwarkTestSupport
import Foundation
import Testing

/// Review H1 and H2 through the command line, the policy in git and the audit branch read back
/// with the git CLI: a gateway's guardrail turned off by naming it through another path, and its
/// master key read from another environment variable, each by one committer alone, are held for
/// a second person and recorded held with what they change; the file is left as it was.
@Suite(.serialized) struct GatewayAliasHoldTests {
    static let config = """
        general_settings:
          master_key: os.environ/LITELLM_MASTER_KEY
          dangerously_permit_weak_or_unset_master_key: false
        litellm_settings:
          json_logs: true
          turn_off_message_logging: false
          callbacks: [detect_prompt_injection]
        guardrails:
          - guardrail_name: pii
            litellm_params:
              guardrail: litellm_content_filter
              mode: pre_call
              default_on: true

        """

    static let baseline = """
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata: {name: guardrails}
        spec:
          path: etc/litellm/config.yaml
          properties:
            guardrails[guardrail_name=pii].litellm_params.mode: pre_call
            guardrails[guardrail_name=pii].litellm_params.default_on: true
            litellm_settings.callbacks: [detect_prompt_injection]
            general_settings.master_key: os.environ/LITELLM_MASTER_KEY

        """

    static let sneaky = """
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata: {name: sneaky}
        spec:
          path: etc/litellm/config.yaml
          properties:
            guardrails[0].litellm_params.mode: logging_only
            guardrails[*].litellm_params.default_on: false
            litellm_settings.callbacks[0]: none

        """

    /// A scenario whose gateway file holds the baseline's values, with the baseline applied.
    func applied(_ dir: String) throws -> (Scenario, String) {
        let s = try FindingValueTypeTests().scenario(dir)
        let file = dir + "/gw/etc/litellm/config.yaml"
        try write(file, Self.config, mode: 0o640)
        try s.commitPolicy("desired-state/ai-gateway/guardrails.yaml", Self.baseline, message: "the gateway's guardrails")
        let first = try s.run("apply")
        #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
        #expect(try read(file) == Self.config, "the baseline is what the file holds")
        return (s, file)
    }

    func lastAudit(_ s: Scenario) throws -> String {
        try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
    }

    /// The reviewer's revision (the baseline kept, the sneaky resource added) names values the
    /// baseline names and wants them different: it is refused at validation, recorded refused,
    /// the file untouched. The same resource with the baseline's removed in the same commit is
    /// held for a second person and recorded held with what each path reaches.
    @Test func aGuardrailTurnedOffThroughAnotherPathIsHeldAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let (s, file) = try applied(dir)
            try s.commitPolicy("desired-state/ai-gateway/sneaky.yaml", Self.sneaky, message: "sneaky")
            let refused = try s.run("apply")
            #expect(refused.status != 0 || refused.stdout.contains("refused"), "\(refused.stdout)\(refused.stderr)")
            #expect(try read(file) == Self.config)
            let refusal = try lastAudit(s)
            #expect(refusal.contains("Bulwark-Decision: refused") && refusal.contains("conflicts with ConfigFile/guardrails"), "\(refusal)")

            try s.commitPolicy("desired-state/ai-gateway/guardrails.yaml",
                               Self.baseline.replacingOccurrences(of: "    guardrails[guardrail_name=pii].litellm_params.mode: pre_call\n", with: "")
                                .replacingOccurrences(of: "    guardrails[guardrail_name=pii].litellm_params.default_on: true\n", with: "")
                                .replacingOccurrences(of: "    litellm_settings.callbacks: [detect_prompt_injection]\n", with: ""),
                               message: "sneaky, the baseline's paths gone")
            let held = try s.run("apply")
            #expect(held.stdout.contains("needs approval by someone else"), "\(held.stdout)\(held.stderr)")
            #expect(try read(file) == Self.config, "the guardrail still blocks")
            let record = try lastAudit(s)
            #expect(record.contains("Bulwark-Decision: held"), "\(record)")
            for words in ["guardrails[0].litellm_params.mode: (reaches ", "guardrails[*].litellm_params.default_on: (reaches ",
                          "(reaches guardrails[guardrail_name=pii].litellm_params.mode) (makes the guardrail at "
                            + "guardrails[guardrail_name=pii].litellm_params.mode logging_only instead of pre_call",
                          "(reaches guardrails[guardrail_name=pii].litellm_params.default_on) (turns the guardrail's default_on off",
                          "litellm_settings.callbacks[0]: (reaches litellm_settings.callbacks) (removes detect_prompt_injection"] {
                #expect(record.contains(words), "\(words): \(record)")
            }
        }
    }

    /// The legitimate twin: a resource that names the same guardrail through other paths with
    /// values as strict is applied with no one else, and recorded applied.
    @Test func theSameGuardrailNamedThroughAnotherPathAsStrictIsApplied() async throws {
        try await withTemporaryDirectory { dir in
            let (s, file) = try applied(dir)
            let weaker = Self.config.replacingOccurrences(of: "mode: pre_call", with: "mode: during_call")
            try write(file, weaker, mode: 0o640)  // edited by hand: both resources put it back
            try s.commitPolicy("desired-state/ai-gateway/sneaky.yaml", Self.sneaky.replacingOccurrences(of: "name: sneaky", with: "name: also")
                .replacingOccurrences(of: "logging_only", with: "pre_call").replacingOccurrences(of: "default_on: false", with: "default_on: true")
                .replacingOccurrences(of: "callbacks[0]: none", with: "callbacks[0]: detect_prompt_injection"), message: "the same, by index")
            let out = try s.run("apply")
            #expect(out.status == 0 && !out.stdout.contains("needs approval"), "\(out.stdout)\(out.stderr)")
            #expect(try read(file) == Self.config)
            let record = try lastAudit(s)
            #expect(record.contains("Bulwark-Decision: applied"), "\(record)")
        }
    }

    /// Review H2: the master key read from `$PATH` instead, by one committer alone, is held and
    /// recorded held with both variables' names (the unit tests in ConfigFileGuardTests hold the
    /// legitimate twins: a literal moved to the environment, a key set for the first time).
    @Test func aMasterKeyReadFromAnotherVariableIsHeldAndRecordedByName() async throws {
        try await withTemporaryDirectory { dir in
            let (s, file) = try applied(dir)
            try s.commitPolicy("desired-state/ai-gateway/guardrails.yaml",
                               Self.baseline.replacingOccurrences(of: "os.environ/LITELLM_MASTER_KEY", with: "os.environ/PATH"), message: "master key")
            let held = try s.run("apply")
            #expect(held.stdout.contains("needs approval by someone else"), "\(held.stdout)\(held.stderr)")
            #expect(try read(file) == Self.config)
            let record = try lastAudit(s)
            #expect(record.contains("Bulwark-Decision: held"), "\(record)")
            #expect(record.contains("changes where the credential general_settings.master_key comes from: os.environ/LITELLM_MASTER_KEY → os.environ/PATH"),
                    "\(record)")
        }
    }
}
