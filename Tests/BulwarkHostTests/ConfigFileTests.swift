import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// A desired state with one host target (labels as given) and a controller for `ConfigFile`.
func configState(root: String, labels: String = "{}", _ manifests: String) throws -> DesiredState {
    let inventory = """
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: gateway, labels: \(labels)}
        spec: {adapter: host, root: \(root)}
        ---
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: gateway}
        spec: {kinds: [ConfigFile]}
        """
    return try DesiredStateLoader(registry: Registry([HostAdapter.definition()])).load([
        SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
        SourceFile(path: "desired-state/r.yaml", contents: Array(manifests.utf8)),
    ], revision: "test")
}

/// Loads a revision that is expected to be refused; returns the loader's message.
func configStateError(root: String, _ manifests: String) -> String? {
    do {
        _ = try configState(root: root, manifests)
        return nil
    } catch {
        return "\(error)"
    }
}

let gatewayConfig = """
    # LiteLLM proxy: managed in part by Bulwark
    model_list:
      - model_name: gpt-4o   # the main route
        litellm_params:
          model: openai/gpt-4o
          api_key: os.environ/OPENAI_API_KEY
      - model_name: "claude"
        litellm_params: {model: anthropic/claude-3, api_key: os.environ/ANTHROPIC_API_KEY}

    litellm_settings:
      drop_params: True
      callbacks:
        - langfuse   # observability

    general_settings:
      master_key: sk-1234 # literal, to be replaced
    """

@Suite struct ConfigFileTests {
    @Test func editsOnlyTheManagedValuesAndKeepsCommentsAndLayout() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/litellm/config.yaml", gatewayConfig, mode: 0o640)
            let state = try configState(root: root, resource("ConfigFile", "litellm", """
                path: etc/litellm/config.yaml
                properties:
                  general_settings.master_key: os.environ/LITELLM_MASTER_KEY
                  litellm_settings.callbacks: [langfuse, detect_prompt_injection]
                  model_list[*].litellm_params.guardrails: [bulwark-pii-mask]
                  litellm_settings.upperbound_key_generate_params.max_budget: 100
                  model_list[model_name=gpt-4o].litellm_params.rpm: 600
                """))
            let (plan, outcome) = try await reconcile(state)
            let changes = try #require(plan.remediations.first?.changes)
            #expect(changes.map(\.property).sorted() == ["general_settings.master_key", "litellm_settings.callbacks",
                                                        "litellm_settings.upperbound_key_generate_params.max_budget",
                                                        "model_list[*].litellm_params.guardrails",
                                                        "model_list[model_name=gpt-4o].litellm_params.rpm"])
            // The literal key is never shown: the property is a credential.
            #expect(changes.first { $0.property == "general_settings.master_key" }?.shownObserved == "[redacted]")
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/etc/litellm/config.yaml") == """
                # LiteLLM proxy: managed in part by Bulwark
                model_list:
                  - model_name: gpt-4o   # the main route
                    litellm_params:
                      model: openai/gpt-4o
                      api_key: os.environ/OPENAI_API_KEY
                      guardrails: [bulwark-pii-mask]
                      rpm: 600
                  - model_name: "claude"
                    litellm_params: {model: anthropic/claude-3, api_key: os.environ/ANTHROPIC_API_KEY, guardrails: [bulwark-pii-mask]}

                litellm_settings:
                  drop_params: True
                  callbacks:
                    - langfuse
                    - detect_prompt_injection   # observability
                  upperbound_key_generate_params:
                    max_budget: 100

                general_settings:
                  master_key: os.environ/LITELLM_MASTER_KEY # literal, to be replaced
                """)
            #expect(modeAndOwner(root + "/etc/litellm/config.yaml").mode == 0o640)
            // A second pass finds nothing to do.
            let (again, _) = try await reconcile(state)
            #expect(again.remediations.isEmpty)
        }
    }

    /// `!!str false` is the string "false" to PyYAML, which LiteLLM reads it with: true to
    /// Python. It was read as the plain `false` and said in sync. Now it is drift, and the fix
    /// writes a `false` PyYAML reads as False. A value with a tag Bulwark does not read fails
    /// the resource, naming the tag; an untagged `false` is in sync.
    @Test func aTaggedValueIsReadAsPyYAMLReadsIt() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, "general_settings:\n  disable_spend_logs: !!str false   # as set by hand\n", mode: 0o640)
            let manifests = resource("ConfigFile", "c", "path: etc/litellm/config.yaml\nproperties:\n  general_settings.disable_spend_logs: false")
            let (plan, outcome) = try await reconcile(try configState(root: root, manifests))
            #expect(plan.remediations.first?.changes.map(\.property) == ["general_settings.disable_spend_logs"])
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; print(repr(yaml.safe_load(open(sys.argv[1]))"
                                                      + "['general_settings']['disable_spend_logs']))", path])
            let written = try read(path)
            #expect(python.stdout == "False\n", "\(python.stderr) \(written)")
            #expect(try await reconcile(try configState(root: root, manifests)).0.remediations.isEmpty)

            try write(path, "general_settings:\n  disable_spend_logs: !!bool \"false\"\n", mode: 0o640)
            let (refused, _) = try await reconcile(try configState(root: root, manifests))
            #expect(refused.failures.first?.message.contains("explicit tag") == true && refused.failures.first?.message.contains("!!bool") == true, "\(refused.failures.map(\.message))")
        }
    }

    /// A value reached through an alias keeps the anchor's positions: setting a block list
    /// reached through `*defaults` replaced a range from the alias back to the anchor, which
    /// ends before it starts, and the process stopped on Swift's range check (whoever can
    /// write the file stopped the daemon on every pass). Through an alias, or at an anchor
    /// (every alias's value, a tag before it too), nothing is edited: the fix fails naming the
    /// line; a value beside it, and one under an anchored key, is fixed.
    @Test func aValueReachedThroughAnAliasIsNotEditedAndTheRestIs() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            let text = """
                defaults: &defaults
                  - langfuse
                  - otel
                base: !!map &base
                  timeout: 30
                router_settings:
                  &first_key retries: 2
                litellm_settings:
                  drop_params: True
                  callbacks: *defaults
                  success_callback: *defaults
                  params: *base

                """
            try write(path, text, mode: 0o640)
            let manifests = resource("ConfigFile", "alias", "path: etc/litellm/config.yaml\nproperties:\n  litellm_settings.callbacks: [langfuse]")
                + resource("ConfigFile", "anchor", "path: etc/litellm/config.yaml\nproperties:\n  defaults: [otel]")
                + resource("ConfigFile", "tagged", "path: etc/litellm/config.yaml\nproperties:\n  base.timeout: 60")
                + resource("ConfigFile", "plain", "path: etc/litellm/config.yaml\nproperties:\n  litellm_settings.drop_params: false")
                + resource("ConfigFile", "key", "path: etc/litellm/config.yaml\nproperties:\n  router_settings.retries: 3")
            let (_, outcome) = try await reconcile(try configState(root: root, manifests))
            let records = Dictionary(uniqueKeysWithValues: outcome.entries.map { ($0.record.name, $0.record) })
            #expect(records["alias"]?.result == .failed && records["alias"]?.error?.contains("line 10 is an alias of a value written elsewhere") == true,
                    "\(records["alias"]?.error ?? "")")
            #expect(records["anchor"]?.result == .failed && records["anchor"]?.error?.contains("line 1 is an anchored value") == true,
                    "\(records["anchor"]?.error ?? "")")
            #expect(records["tagged"]?.result == .failed && records["tagged"]?.error?.contains("line 4 is an anchored value") == true,
                    "a tag before the anchor: \(records["tagged"]?.error ?? "")")
            #expect(records["plain"]?.result == .verified, "\(records["plain"]?.error ?? "")")
            #expect(records["key"]?.result == .verified, "an anchored key is no anchored value: \(records["key"]?.error ?? "")")
            #expect(try read(path) == text.replacingOccurrences(of: "drop_params: True", with: "drop_params: false")
                .replacingOccurrences(of: "retries: 2", with: "retries: 3"))
        }
    }

    @Test func createsAListElementMatchedByKeyAndEditsJSONInPlace() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/litellm/config.yaml", "model_list: []\nguardrails:\n  - guardrail_name: other\n    litellm_params: {guardrail: aporia}\n")
            try write(root + "/etc/app/settings.json", "{\n  \"server\": {\"port\": 8080},\n  \"debug\": true\n}\n")
            let state = try configState(root: root, resource("ConfigFile", "guard", """
                path: etc/litellm/config.yaml
                properties:
                  guardrails[guardrail_name=bulwark-pii-mask].litellm_params.guardrail: litellm_content_filter
                  guardrails[guardrail_name=bulwark-pii-mask].litellm_params.mode: pre_call
                """) + resource("ConfigFile", "app", """
                path: /etc/app/settings.json
                properties:
                  debug: false
                  server.host: 127.0.0.1
                  logging.level: info
                """))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 2)
            #expect(try read(root + "/etc/litellm/config.yaml") == """
                model_list: []
                guardrails:
                  - guardrail_name: other
                    litellm_params: {guardrail: aporia}
                  - guardrail_name: bulwark-pii-mask
                    litellm_params:
                      guardrail: litellm_content_filter
                      mode: pre_call

                """)
            #expect(try read(root + "/etc/app/settings.json")
                    == "{\n  \"server\": {\"port\": 8080, \"host\": \"127.0.0.1\"},\n  \"debug\": false,\n  \"logging\": {\"level\": \"info\"}\n}\n")
            let parsed = try JSONSerialization.jsonObject(with: Data(try read(root + "/etc/app/settings.json").utf8)) as? [String: Any]
            #expect(parsed?["debug"] as? Bool == false)
        }
    }

    // Guard: a credential is only ever written as a reference to the environment.
    @Test func refusesToWriteALiteralSecret() async throws {
        try await withTemporaryDirectory { root in
            let text = "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\nmodel_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n"
            try write(root + "/etc/litellm/config.yaml", text)
            let state = try configState(root: root, resource("ConfigFile", "litellm", """
                path: etc/litellm/config.yaml
                properties:
                  general_settings.master_key: sk-live-0123456789abcdef
                  model_list[*].litellm_params.api_key: sk-proj-abcdef0123456789
                """))
            let (plan, outcome) = try await reconcile(state)
            let remediation = try #require(plan.remediations.first)
            #expect(remediation.decision == .blocked)
            #expect(remediation.reason?.contains("literal") == true)
            #expect(remediation.reason?.contains("sk-live") == false)
            #expect(outcome.verified.isEmpty)
            #expect(try read(root + "/etc/litellm/config.yaml") == text)
        }
    }

    /// A credential's key is read as words however it is spelt: `encryptionKey`, `signingKey`,
    /// `clientSecret`, `APIKey`, `userPin`, `sshPassphrase`, `PGPASS` name credentials as
    /// `encryption_key`, `signing-key`, `api.key` do (camelCase keys were neither redacted nor
    /// required to come from the environment). Keys that only hold those letters stay plain.
    @Test func aCredentialsKeyIsReadAsWordsWhateverItsSpelling() {
        for key in ["encryptionKey", "encryption_key", "ENCRYPTION-KEY", "encryption.key", "encryptionkey", "signingKey", "signing_key",
                    "clientSecret", "client_secret", "APIKey", "apiKey", "api_key", "sshKey2", "ssh_key_2", "userPin", "pin", "PIN",
                    "sshPassphrase", "passphrase", "PGPASS", "dbPwd", "db_pwd", "headers.pass", "sessionCookie", "accessToken",
                    "key", "keys", "auth", "privateKeys"] {
            #expect(ConfigFileDriver.isSecretKey(key), "\(key)")
        }
        for key in ["keyId", "key_id", "keyFile", "keyboard", "monkey", "hotkey", "spin", "pinned", "pin_version", "bypass", "passthrough",
                    "pass_through_endpoints", "author", "auth_type", "custom_auth", "keyPrefix", "PASS_MAX_DAYS", "pgpassfile"] {
            #expect(!ConfigFileDriver.isSecretKey(key), "\(key)")
        }
    }

    /// The guard on both sides under camelCase keys: literal values written over
    /// `auth.encryptionKey` and `auth.signingKey` are blocked, and the reason quotes neither;
    /// a reference to the environment under the same keys goes through.
    @Test func camelCaseCredentialKeysAreWrittenOnlyAsReferences() async throws {
        try await withTemporaryDirectory { root in
            let text = "auth:\n  encryptionKey: LITERALENCKEY-aa11bb22cc33\n  signingKey: LITERALSIGNKEY-dd44ee55\n"
            try write(root + "/etc/app/config.yaml", text)
            let literal = try configState(root: root, resource("ConfigFile", "app", """
                path: etc/app/config.yaml
                properties:
                  auth.encryptionKey: rotate-me
                """))
            let (plan, outcome) = try await reconcile(literal)
            let remediation = try #require(plan.remediations.first)
            #expect(remediation.decision == .blocked, "\(remediation)")
            #expect(remediation.reason?.contains("literal") == true, "\(remediation.reason ?? "")")
            let sensitive = remediation.changes.allSatisfy { $0.sensitive }
            #expect(sensitive, "\(remediation.changes)")
            #expect(outcome.verified.isEmpty)
            #expect(try read(root + "/etc/app/config.yaml") == text)

            let reference = try configState(root: root, resource("ConfigFile", "app", """
                path: etc/app/config.yaml
                properties:
                  auth.encryptionKey: os.environ/APP_ENCRYPTION_KEY
                """))
            let (_, applied) = try await reconcile(reference)
            #expect(!applied.verified.isEmpty, "\(applied)")
            #expect(try read(root + "/etc/app/config.yaml").contains("encryptionKey: os.environ/APP_ENCRYPTION_KEY"))
        }
    }

    /// Credentials the last key alone did not name: a list element's value picked by a name
    /// (`environment_variables[name=OPENAI_API_KEY].value`), a plural key (`api_keys`), and a
    /// connection URL with a password (`database_url`). Their observed values were shown in the
    /// plan and committed in the record; now redacted. A desired URL with a password is
    /// blocked; one without goes through.
    @Test func credentialsInListValuesPluralKeysAndURLsAreNeverShown() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, """
                environment_variables:
                  - name: OPENAI_API_KEY
                    value: sk-live-in-the-file
                general_settings:
                  api_keys: [sk-plural-in-the-file]
                  database_url: postgresql://app:hunter2-in-the-file@db/litellm
                  api_base: https://proxy:pw-in-the-file@gateway.example/v1
                  store_endpoint: "postgresql://app@db/store?sslmode=require&password=query-in-the-file"

                """)
            let manifests = resource("ConfigFile", "c", """
                path: etc/litellm/config.yaml
                properties:
                  environment_variables[name=OPENAI_API_KEY].value: os.environ/OPENAI_API_KEY
                  general_settings.api_keys: [os.environ/LITELLM_KEY]
                  general_settings.database_url: postgresql://app@db/litellm
                  general_settings.api_base: https://gateway.example/v1
                  general_settings.store_endpoint: postgresql://app@db/store?sslmode=require
                """)
            let sink = RecordingSink()
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let state = try configState(root: root, manifests)
            let plan = try await reconciler.plan(state)
            let changes = try #require(plan.remediations.first?.changes)
            #expect(changes.count == 5, "\(changes.map(\.shownObserved))")
            #expect(changes.filter { !["general_settings.api_base", "general_settings.store_endpoint"].contains($0.property) }
                .allSatisfy { $0.shownObserved == "[redacted]" }, "\(changes.map(\.shownObserved))")
            #expect(changes.first { $0.property == "general_settings.api_base" }?.shownObserved
                    == "\"https://[redacted]@gateway.example/v1\"")
            #expect(changes.first { $0.property == "general_settings.store_endpoint" }?.shownObserved
                    == "\"postgresql://[redacted]@db/store?sslmode=require&password=[redacted]\"")
            // What a URL may carry of a credential, however it is written (second review).
            for (url, secret, password) in [("postgresql://u:pa,ss@h/db", "pa,ss", true), ("https://u:pa/ss@h", "pa/ss", true),
                                            ("https://h/?%70assword=s3cr3t", "s3cr3t", true),
                                            ("jdbc:sqlserver://h;user=sa;password=s3cr3t", "s3cr3t", true),
                                            ("https://ghp_T0KEN@github.com/x", "ghp_T0KEN", false), ("https://h/?key=AIzaS3CR3T", "AIzaS3CR3T", true),
                                            ("https://p/?next=https://u:s3cr3t@h", "s3cr3t", true), ("https://h/#password=s3cr3t", "s3cr3t", true),
                                            ("\"https://u:p\\\"s3cr3t@h\"", "s3cr3t", true), ("see HTTPS://U:s3cr3t@H now", "s3cr3t", true)] {
                let (shown, found) = ConfigFileDriver.scanURLs(url)
                #expect(!shown.contains(secret) && found == password, "\(url) -> \(shown) \(found)")
            }
            #expect(ConfigFileDriver.scanURLs("https://registry.example/pkg?version=1.2").text == "https://registry.example/pkg?version=1.2")
            let outcome = await reconciler.apply(plan, state: state, audit: sink)
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            let recorded = outcome.entries.map { $0.record.commitMessage + String(decoding: (try? JSONEncoder().encode($0.record)) ?? Data(), as: UTF8.self) }
                .joined()
            #expect(!recorded.contains("in-the-file"), "\(recorded)")
            let written = try read(path)
            #expect(written.contains("database_url: \"postgresql://app@db/litellm\""), "\(written)")

            let withPassword = resource("ConfigFile", "c", "path: etc/litellm/config.yaml\nproperties:\n"
                                        + "  general_settings.database_url: postgresql://app:pw@db/litellm")
            let blocked = try await reconciler.plan(try configState(root: root, withPassword))
            #expect(blocked.remediations.first?.decision == .blocked)
            #expect(blocked.remediations.first?.reason?.contains("with a password in its URL") == true)
            #expect(blocked.remediations.first?.reason?.contains("pw@") == false)
            let inQuery = resource("ConfigFile", "c", "path: etc/litellm/config.yaml\nproperties:\n"
                                   + "  general_settings.api_base: \"https://gateway.example/v1?PassWord=pw\"")
            let queryPlan = try await reconciler.plan(try configState(root: root, inQuery))
            #expect(queryPlan.remediations.first?.decision == .blocked)
            #expect(queryPlan.remediations.first?.changes.first?.shownDesired.contains("pw") == false)
        }
    }

    @Test func writesAnEnvironmentReferenceForACredential() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/litellm/config.yaml", "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_key: sk-abc}\n")
            let state = try configState(root: root, resource("ConfigFile", "litellm", """
                path: etc/litellm/config.yaml
                properties:
                  model_list[model_name=a].litellm_params.api_key: os.environ/OPENAI_API_KEY
                  general_settings.dangerously_permit_weak_or_unset_master_key: false
                """))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.decision != .blocked)
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/etc/litellm/config.yaml")
                    == "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_key: os.environ/OPENAI_API_KEY}\n"
                    + "general_settings:\n  dangerously_permit_weak_or_unset_master_key: false\n")
        }
    }

    /// Moving literal secrets to the environment under keys that name no credential
    /// (`GITHUB_PAT`, `LITELLM_LICENSE`) showed them in the plan and committed them in the
    /// record. A property whose desired value is an `os.environ/` reference is a credential, and
    /// a value shaped like a well-known token is never shown under any key. Ordinary values are
    /// still shown.
    @Test func aSecretMovedToTheEnvironmentIsNeverShownWhateverItsKey() async throws {
        try await withTemporaryDirectory { root in
            let secrets = ["ghp_REALSECRET0123456789abcdefABCDEF", "lic-real-0123456789abcdef", "AKIAIOSFODNN7EXAMPLE"]
            try write(root + "/etc/litellm/config.yaml", "environment_variables:\n  GITHUB_PAT: \(secrets[0])\n  LITELLM_LICENSE: \(secrets[1])\n"
                      + "litellm_settings:\n  num_retries: 2\n  fallback_note: \(secrets[2])\n  model_alias: gpt-4o-mini\n"
                      + "  licenses: [\(secrets[1])]\n  header: \"Bearer \(secrets[0])\"\n  pipeline: sk-learn-pipeline-v2-prod\n")
            let state = try configState(root: root, resource("ConfigFile", "env", """
                path: etc/litellm/config.yaml
                properties:
                  environment_variables.GITHUB_PAT: os.environ/GITHUB_PAT
                  environment_variables.LITELLM_LICENSE: os.environ/LITELLM_LICENSE
                  litellm_settings.num_retries: 3
                  litellm_settings.fallback_note: none
                  litellm_settings.model_alias: gpt-4o
                  litellm_settings.licenses: [os.environ/LITELLM_LICENSE]
                  litellm_settings.header: none
                  litellm_settings.pipeline: sk-learn-pipeline-v3
                """))
            let (plan, outcome) = try await reconcile(state)
            let changes = try #require(plan.remediations.first?.changes)
            let shown = changes.map { "\($0.property) \($0.shownObserved) -> \($0.shownDesired)" }.joined(separator: "\n")
            let record = try #require(outcome.entries.first?.record)
            let json = String(decoding: record.json(), as: UTF8.self)
            for secret in secrets {
                #expect(!shown.contains(secret) && !record.commitMessage.contains(secret) && !json.contains(secret), "\(secret): \(shown)")
            }
            #expect(shown.contains("litellm_settings.num_retries 2 -> 3"), "\(shown)")
            #expect(shown.contains(#"litellm_settings.pipeline "sk-learn-pipeline-v2-prod" -> "sk-learn-pipeline-v3""#), "a name, not a key: \(shown)")
            #expect(shown.contains(#"litellm_settings.model_alias "gpt-4o-mini" -> "gpt-4o""#), "\(shown)")
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/etc/litellm/config.yaml").contains("GITHUB_PAT: os.environ/GITHUB_PAT"))
        }
    }

    // Guard: a wildcard bind needs the target (or resource) labelled public.
    @Test func refusesAWildcardBindOnATargetNotLabelledPublic() async throws {
        try await withTemporaryDirectory { root in
            let text = "server:\n  host: 127.0.0.1\n  port: 4000\n"
            try write(root + "/etc/gw/gateway.yaml", text)
            let state = try configState(root: root, resource("ConfigFile", "gw", "path: etc/gw/gateway.yaml\nproperties:\n  server.host: 0.0.0.0"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.decision == .blocked)
            #expect(plan.remediations.first?.reason?.contains("every network interface") == true)
            #expect(outcome.verified.isEmpty)
            #expect(try read(root + "/etc/gw/gateway.yaml") == text)
        }
    }

    @Test func bindsEverywhereOnATargetLabelledPublic() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/gw/gateway.yaml", "server:\n  host: 127.0.0.1\n  port: 4000\n")
            let state = try configState(root: root, labels: "{public: \"true\"}",
                                        resource("ConfigFile", "gw", "path: etc/gw/gateway.yaml\nproperties:\n  server.host: 0.0.0.0"))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/etc/gw/gateway.yaml") == "server:\n  host: 0.0.0.0\n  port: 4000\n")
        }
    }

    // Validation before the rename: a rejected candidate leaves the file as it was.
    @Test func aCandidateTheValidatorRejectsIsNeverRenamedIntoPlace() async throws {
        try await withTemporaryDirectory { root in
            let text = "general_settings:\n  master_key: os.environ/A\n"
            try write(root + "/etc/litellm/config.yaml", text)
            // A script owned by root: Bulwark runs no shell with code from the policy (`CommandTrust`).
            try write(root + "/check.sh", "#!/bin/sh\ngrep -q 'master_key: os.environ/A$' \"$1\" || { echo rejected by policy sk-abcdef0123456789xyz >&2; exit 3; }\n",
                      mode: 0o755)
            let state = try configState(root: root, resource("ConfigFile", "litellm", """
                path: etc/litellm/config.yaml
                properties:
                  general_settings.master_key: os.environ/LITELLM_MASTER_KEY
                validate: [\(root)/check.sh, "{file}"]
                """))
            let (_, outcome) = try await reconcile(state)
            let failure = try #require(outcome.failed.first)
            let message = failure.record.error ?? ""
            #expect(message.contains("exit status 3"))
            #expect(message.contains("rejected by policy"))
            #expect(!message.contains("sk-abcdef"))
            #expect(try read(root + "/etc/litellm/config.yaml") == text)
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/etc/litellm") == ["config.yaml"])
        }
    }

    /// An operator's command sees none of Bulwark's environment beyond the plain one (its git
    /// password, cloud keys and the like stay in Bulwark), and what it prints reaches the record
    /// with credentials redacted: a URL's password, `password: …`, `KEY=…`, long keys with `/`,
    /// a YAML block's or list's value on the line after its key (`api_key: |`, printed by a check
    /// that shows the file). A plain message still comes through whole.
    @Test func aCommandSeesNoneOfBulwarksSecretsAndItsOutputIsRedacted() async throws {
        try await withTemporaryDirectory { root in
            setenv("BULWARK_CONFIGFILE_TEST_SECRET", "s3cr3t-from-bulwarks-env", 1)
            defer { unsetenv("BULWARK_CONFIGFILE_TEST_SECRET") }
            let text = "a: 1\n"
            try write(root + "/etc/x.yaml", text)
            let script = "echo seen:${BULWARK_CONFIGFILE_TEST_SECRET:-nothing}; echo 'password: correcthorsebatterystaple';"
                + " echo https://bulwark:ghp_16C7e42F292c6912E7710c838347Ae178B4a@git.example.org/policy.git;"
                + " echo AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY;"
                + #" echo '{\"db_password\": \"hunter2json\"}'; echo \"{'api_token': 'hunter2dict'}\"; echo 'password = hunter2ini';"#
                + " echo 'Authorization: Bearer hunter2bearer'; echo DB_PASS=hunter2pass; echo 'pwd=hunter2pwd auth: hunter2auth';"
                + #" echo '\"password\" => \"hunter2arrow\"'; printf 'api_key: |\n  hunter2block\nmaster_key: >-\n  hunter2folded\n';"#
                + #" printf 'db_password:\n  - hunter2item\n'; echo the schema rejects a at line 1; exit 3"#
            // The script as the policy's double-quoted YAML used to carry it (`\"` read as `"`).
            try write(root + "/check.sh", "#!/bin/sh\n" + script.replacingOccurrences(of: "\\\"", with: "\"") + "\n", mode: 0o755)
            let state = try configState(root: root, resource("ConfigFile", "x", """
                path: etc/x.yaml
                properties:
                  a: "2"
                validate: [\(root)/check.sh, "{file}"]
                """))
            let (_, outcome) = try await reconcile(state)
            let message = try #require(outcome.failed.first?.record.error)
            #expect(message.contains("seen:nothing"), "\(message)")
            for secret in ["s3cr3t", "correcthorse", "ghp_16C7", "EXAMPLEKEY", "hunter2"] {
                #expect(!message.contains(secret), "\(secret) in \(message)")
            }
            #expect(message.contains("https://bulwark:<redacted>@git.example.org/policy.git") && message.contains("password: <redacted>"), "\(message)")
            #expect(message.contains("the schema rejects a at line 1") && message.contains("exit status 3"), "\(message)")
            #expect(try read(root + "/etc/x.yaml") == text)
        }
    }

    /// A property that names a whole mapping is never shown: the file may hold a literal key
    /// inside it that the policy does not name. A list of scalars is shown as it is.
    @Test func aWholeMappingIsNeverShownAndAListOfNamesIs() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/litellm/config.yaml", gatewayConfig)
            let state = try configState(root: root, resource("ConfigFile", "litellm", """
                path: etc/litellm/config.yaml
                properties:
                  general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}
                  litellm_settings.callbacks: [langfuse, detect_prompt_injection]
                """))
            let (plan, outcome) = try await reconcile(state)
            let changes = try #require(plan.remediations.first?.changes)
            let whole = try #require(changes.first { $0.property == "general_settings" })
            #expect(whole.shownObserved == "[redacted]" && whole.shownDesired == "[redacted]")
            #expect(changes.first { $0.property == "litellm_settings.callbacks" }?.shownObserved.contains("langfuse") == true)
            let record = try #require(outcome.entries.first?.record)
            #expect(!record.commitMessage.contains("sk-1234"), "\(record.commitMessage)")
            #expect(outcome.verified.count == 1)
        }
    }

    @Test func aCandidateTheValidatorAcceptsIsWrittenThenReloaded() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/litellm/config.yaml", "general_settings:\n  master_key: os.environ/A\n")
            try write(root + "/reload.sh", "#!/bin/sh\ncp \(root)/etc/litellm/config.yaml \(root)/reloaded\n", mode: 0o755)
            let state = try configState(root: root, resource("ConfigFile", "litellm", """
                path: etc/litellm/config.yaml
                properties:
                  general_settings.master_key: os.environ/LITELLM_MASTER_KEY
                validate: [/usr/bin/grep, -q, LITELLM_MASTER_KEY, "{file}"]
                reload: [\(root)/reload.sh]
                """))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1)
            #expect(try read(root + "/reloaded") == "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n")
        }
    }

    @Test func aValidatorThatHangsIsKilledAndTheFileKept() async throws {
        try await withTemporaryDirectory { root in
            let text = "a: 1\n"
            try write(root + "/etc/x.yaml", text)
            let state = try configState(root: root, resource("ConfigFile", "x", """
                path: etc/x.yaml
                properties: {a: 2}
                validate: [/bin/sleep, "600"]
                timeoutSeconds: 1
                """))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.failed.first?.record.error?.contains("killed after") == true)
            #expect(try read(root + "/etc/x.yaml") == text)
        }
    }

    // Hostile input: a path out of the root, a link, an alias bomb, a file that is not a mapping.
    @Test func refusesPathsThatLeaveTheRootAndBadPropertyPaths() async throws {
        try await withTemporaryDirectory { root in
            let outside = configStateError(root: root, resource("ConfigFile", "x", "path: etc/../../x.yaml\nproperties: {a: 1}"))
            #expect(outside?.contains("without '.', '..'") == true)
            let badPath = configStateError(root: root, resource("ConfigFile", "x", "path: etc/x.yaml\nproperties: {\"a..b\": 1}"))
            #expect(badPath?.contains("is not a property path") == true)
            let badIndex = configStateError(root: root, resource("ConfigFile", "x", "path: etc/x.yaml\nproperties: {\"a[x\": 1}"))
            #expect(badIndex?.contains("is not a property path") == true)
        }
    }

    @Test func neverWritesThroughALinkNorEditsAHostileDocument() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/outside.yaml", "a: 1\n")
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/link.yaml", withDestinationPath: root + "/outside.yaml")
            let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                + "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
            try write(root + "/etc/bomb.yaml", bomb)
            try write(root + "/etc/list.yaml", "- a\n- b\n")
            let state = try configState(root: root,
                resource("ConfigFile", "link", "path: etc/link.yaml\nproperties: {a: 2}")
                + resource("ConfigFile", "bomb", "path: etc/bomb.yaml\nproperties: {g: 2}")
                + resource("ConfigFile", "list", "path: etc/list.yaml\nproperties: {g: 2}"))
            let (plan, outcome) = try await reconcile(state)
            #expect(outcome.verified.isEmpty)
            let failures = plan.failures.map(\.message) + outcome.failed.compactMap(\.record.error)
            #expect(failures.contains { $0.contains("alias") || $0.contains("nodes") })
            #expect(failures.contains { $0.contains("not a mapping") })
            #expect(try read(root + "/outside.yaml") == "a: 1\n")
            #expect(try read(root + "/etc/bomb.yaml") == bomb)
            #expect(try read(root + "/etc/list.yaml") == "- a\n- b\n")
        }
    }

    /// A managed file that is missing is neither created nor "in sync": its observation fails,
    /// naming it (in sync, it let a held weakening's baseline move on while the file was away).
    /// Put back, it is observed and fixed as any file.
    @Test func aMissingFileIsNotCreatedAndItsObservationFails() async throws {
        try await withTemporaryDirectory { root in
            let state = try configState(root: root, resource("ConfigFile", "x", "path: etc/none.yaml\nproperties: {a: 1}"))
            let (plan, _) = try await reconcile(state)
            #expect(plan.remediations.isEmpty && plan.inSync.isEmpty)
            let failure = try #require(plan.failures.first)
            #expect(failure.message.contains("etc/none.yaml") && failure.message.contains("does not exist"), "\(failure.message)")
            #expect(!FileManager.default.fileExists(atPath: root + "/etc/none.yaml"))
            // A link there (as a ConfigMap mount makes) is said to be one, and is not followed.
            try write(root + "/elsewhere.yaml", "a: 2\n")
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: root + "/etc/none.yaml", withDestinationPath: root + "/elsewhere.yaml")
            let (linked, _) = try await reconcile(state)
            #expect(linked.failures.first?.message.contains("is a symbolic link") == true, "\(linked.failures)")
            #expect(try read(root + "/elsewhere.yaml") == "a: 2\n")
            try FileManager.default.removeItem(atPath: root + "/etc/none.yaml")

            try write(root + "/etc/none.yaml", "a: 2\n")
            let (again, outcome) = try await reconcile(state)
            #expect(again.failures.isEmpty && outcome.verified.count == 1)
            #expect(try read(root + "/etc/none.yaml") == "a: 1\n")
        }
    }
}
