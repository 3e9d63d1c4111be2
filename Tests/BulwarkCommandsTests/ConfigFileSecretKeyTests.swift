@testable import BulwarkCommands
import BulwarkTestSupport
import Foundation
import Testing

/// Secrets under key names the redaction did not know (`db_pwd`, `auth`, `headers.pass`), or
/// under any key with a credential's shape (`Bearer …`, `--password …`), reached `bulwark plan`,
/// the audit branch (commit message and `observedBefore`) and `intents.log`. Keys are now read
/// by their words, and a value that is a credential by its shape makes its property sensitive,
/// observed or desired, whatever its key.
@Suite(.serialized) struct ConfigFileSecretKeyTests {
    static let secrets = ["PWDSECRET42", "AUTHBEARERSECRET77", "PASSHEADERSECRET", "FORWARDBEARERSECRET31", "ARGSECRET1234", "COOKIESECRET88",
                          "LITERALENCKEY-aa11bb22cc33", "LITERALSIGNKEY-dd44ee55", "PINSECRET9876", "rotate-me"]

    static let secretConfig = FindingValueTypeTests.gatewayConfig + """
        general_settings_extra:
          db_pwd: PWDSECRET42
          auth: Bearer AUTHBEARERSECRET77
          headers:
            pass: PASSHEADERSECRET
          forward_header: Bearer FORWARDBEARERSECRET31
          extra_args: "--password ARGSECRET1234"
          sessionCookie: COOKIESECRET88
          encryptionKey: LITERALENCKEY-aa11bb22cc33
          signingKey: LITERALSIGNKEY-dd44ee55
          userPin: "PINSECRET9876"

        """

    static let secretManifests = FindingValueTypeTests.manifests + """
        ---
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata: {name: gw-keys}
        spec:
          path: etc/litellm/config.yaml
          properties:
            general_settings_extra.db_pwd: x
            general_settings_extra.auth: y
            general_settings_extra.headers.pass: z
            general_settings_extra.sessionCookie: w
            general_settings_extra.encryptionKey: rotate-me
            general_settings_extra.signingKey: null
            general_settings_extra.userPin: "0000"
        ---
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata: {name: gw-shapes}
        spec:
          path: etc/litellm/config.yaml
          properties:
            general_settings_extra.forward_header: none
            general_settings_extra.extra_args: "--verbose"

        """

    /// Everything a person or a log can read after `plan` and `apply`: the plan as text and
    /// JSON, the audit branch with its patches, and the intents.
    func everythingShown(_ s: Scenario, plan: ProcessOutput, json: ProcessOutput, apply: ProcessOutput) throws -> String {
        let audit = try git("--git-dir", s.origin, "log", "-p", "bulwark/audit")
        let intents = (try? read(s.state + "/intents.log")) ?? ""
        return [plan.stdout, plan.stderr, json.stdout, apply.stdout, apply.stderr, audit, intents].joined(separator: "\n")
    }

    /// Refused and recorded: literal values written over credentials under `db_pwd`, `auth`,
    /// `headers.pass` and `sessionCookie` are blocked; credentials by shape under keys that name
    /// none are replaced; no secret is in the plan, the audit branch or the intents.
    @Test func secretsUnderUnknownKeysOrByTheirShapeNeverReachAPlanARecordOrTheIntents() async throws {
        try await withTemporaryDirectory { dir in
            let s = try FindingValueTypeTests().scenario(dir)
            let file = dir + "/gw/etc/litellm/config.yaml"
            try write(file, Self.secretConfig, mode: 0o640)
            try s.commitPolicy("desired-state/ai-gateway/gw.yaml", Self.secretManifests, message: "credentials under other names")
            let plan = try s.run("plan")
            let json = try s.run("plan", "--output", "json")
            #expect(plan.stdout.contains("general_settings_extra.auth") && plan.stdout.contains("[redacted]"), "\(plan.stdout)\(plan.stderr)")
            let apply = try s.run("apply")
            #expect(apply.stdout.contains("BLOCKED  gw  ConfigFile/gw-keys"), "\(apply.stdout)\(apply.stderr)")
            let shown = try everythingShown(s, plan: plan, json: json, apply: apply)
            for secret in Self.secrets { #expect(!shown.contains(secret), "\(secret) in: \(shown)") }
            // The desired side too: a property whose observed value is a credential is sensitive.
            #expect(!plan.stdout.contains("\"none\"") && !plan.stdout.contains("--verbose"), "\(plan.stdout)")
            let text = try read(file)
            #expect(text.contains("db_pwd: PWDSECRET42") && text.contains("pass: PASSHEADERSECRET") && text.contains("COOKIESECRET88")
                    && text.contains("encryptionKey: LITERALENCKEY-aa11bb22cc33") && text.contains("signingKey: LITERALSIGNKEY-dd44ee55")
                    && text.contains("PINSECRET9876"),
                    "the blocked credentials stay: \(text)")
            #expect(!text.contains("FORWARDBEARERSECRET31") && text.contains("forward_header: none"), "\(text)")
            let blocked = try git("--git-dir", s.origin, "log", "--format=%B", "bulwark/audit")
            #expect(blocked.contains("Bulwark-Decision: blocked") && blocked.contains("would be written as a literal"), "\(blocked)")
        }
    }

    /// The legitimate twin: keys that only hold such letters (`passthrough`, `author`,
    /// `pass_through_endpoints`, `auth_type`, `custom_auth`) are no credentials: their values
    /// are shown and written.
    @Test func keysThatOnlyContainThoseLettersStayReadableAndAreWritten() async throws {
        try await withTemporaryDirectory { dir in
            let s = try FindingValueTypeTests().scenario(dir)
            let file = dir + "/gw/etc/litellm/config.yaml"
            try write(file, FindingValueTypeTests.gatewayConfig + """
                general_settings_extra:
                  passthrough: old-route
                  author: bob
                  pass_through_endpoints: old-endpoint
                  auth_type: basic-old
                  custom_auth: old_module.check
                  keyId: old-key-id
                  spinMode: slow
                  bypassCache: old-bypass

                """, mode: 0o640)
            try s.commitPolicy("desired-state/ai-gateway/gw.yaml", FindingValueTypeTests.manifests + """
                ---
                apiVersion: bulwark/v1
                kind: ConfigFile
                metadata: {name: gw-plain}
                spec:
                  path: etc/litellm/config.yaml
                  properties:
                    general_settings_extra.passthrough: new-route
                    general_settings_extra.author: alice
                    general_settings_extra.pass_through_endpoints: new-endpoint
                    general_settings_extra.auth_type: jwt
                    general_settings_extra.custom_auth: new_module.check
                    general_settings_extra.keyId: new-key-id
                    general_settings_extra.spinMode: fast
                    general_settings_extra.bypassCache: new-bypass

                """, message: "plain settings")
            let plan = try s.run("plan")
            for shown in ["\"old-route\" -> \"new-route\"", "\"bob\" -> \"alice\"", "\"old-endpoint\" -> \"new-endpoint\"",
                          "\"basic-old\" -> \"jwt\"", "\"old_module.check\" -> \"new_module.check\"",
                          "\"old-key-id\" -> \"new-key-id\"", "\"slow\" -> \"fast\"", "\"old-bypass\" -> \"new-bypass\""] {
                #expect(plan.stdout.contains(shown), "\(shown) in: \(plan.stdout)\(plan.stderr)")
            }
            let apply = try s.run("apply")
            #expect(apply.status == 0 && !apply.stdout.contains("BLOCKED"), "\(apply.stdout)\(apply.stderr)")
            let text = try read(file)
            for value in ["passthrough: new-route", "author: alice", "auth_type: jwt", "custom_auth: new_module.check", "keyId: new-key-id",
                          "spinMode: fast", "bypassCache: new-bypass"] {
                #expect(text.contains(value), "\(value) in: \(text)")
            }
        }
    }
}
