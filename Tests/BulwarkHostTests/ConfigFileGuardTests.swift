import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// Plans and applies a ConfigFile revision expected to be refused: the plan shows it blocked for
/// `reason`, apply records it (a blocked record, committed once), and the file is byte-identical.
/// Returns the plan's remediation and everything recorded, as text, to look for secrets in.
@discardableResult
func expectConfigBlocked(_ root: String, _ file: String, labels: String = "{}", _ manifests: String, reason: String,
                         sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws -> (PlannedRemediation?, String) {
    let before = try read(root + "/" + file)
    let state = try configState(root: root, labels: labels, manifests)
    let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
    let plan = try await reconciler.plan(state)
    let blocked = plan.remediations.filter { $0.decision == .blocked }
    #expect(blocked.count == 1, "plan: \(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" }) failures: \(plan.failures)",
            sourceLocation: sourceLocation)
    #expect(blocked.first?.reason?.contains(reason) == true, "reason: \(blocked.first?.reason ?? "")", sourceLocation: sourceLocation)
    let sink = RecordingSink()
    let outcome = await reconciler.apply(plan, state: state, audit: sink)
    let records = outcome.entries.filter { $0.record.decision == .blocked }
    #expect(records.count == 1 && records.first?.alreadyRecorded == false, sourceLocation: sourceLocation)
    #expect(records.first?.record.commitMessage.contains("Bulwark-Decision: blocked") == true, sourceLocation: sourceLocation)
    #expect(outcome.verified.isEmpty, sourceLocation: sourceLocation)
    #expect(try read(root + "/" + file) == before, "the file is unchanged", sourceLocation: sourceLocation)
    let recorded = outcome.entries.map { $0.record.commitMessage + String(decoding: (try? JSONEncoder().encode($0.record)) ?? Data(), as: UTF8.self) }
        .joined()
    let shown = plan.remediations.flatMap(\.changes).map { "\($0.shownObserved) \($0.shownDesired)" }.joined(separator: " ")
        + plan.remediations.compactMap(\.reason).joined(separator: " ")
    return (blocked.first, recorded + shown)
}

@Suite struct ConfigFileGuardTests {
    static let masterKey = "sk-master-0123456789abcdef"
    static let gateway = """
        general_settings:
          master_key: \(masterKey)   # to move to the environment
          alerting: [slack]
        model_list:
          - model_name: a
            litellm_params: {model: openai/a, api_key: sk-route-0123456789abcdef}

        """

    /// A property naming the parent of a credential (`general_settings`) was hidden only when its
    /// own last key or its desired value looked secret: `general_settings: "placeholder"` showed
    /// the file's master key in the plan and committed it in the record's observedBefore, and the
    /// write wiped the key. Now what the file holds there is shown with its credentials redacted,
    /// and a change that replaces, nulls or empties a value holding a credential is refused and
    /// recorded; so is a literal credential inside a desired mapping.
    @Test func aChangeThatWouldRemoveACredentialIsRefusedAndNeverShowsIt() async throws {
        try await withTemporaryDirectory { root in
            let file = "etc/litellm/config.yaml"
            try write(root + "/" + file, Self.gateway, mode: 0o640)
            for (property, value, reason) in [("general_settings", "placeholder", "would remove the credential general_settings.master_key"),
                                              ("general_settings", "null", "would remove the credential general_settings.master_key"),
                                              ("general_settings", "{alerting: [slack]}", "would remove the credential general_settings.master_key"),
                                              ("model_list", "[]", "would remove the credential model_list.[].litellm_params.api_key"),
                                              ("general_settings", "{master_key: sk-other-0123456789abcdef}", "would be written as a literal")] {
                let (remediation, text) = try await expectConfigBlocked(root, file, resource("ConfigFile", "c", """
                    path: \(file)
                    properties:
                      \(property): \(value)
                    """), reason: reason)
                #expect(!text.contains("sk-master") && !text.contains("sk-route") && !text.contains("sk-other"), "\(text)")
                if value == "placeholder" {
                    let shown = remediation?.changes.first?.shownObserved ?? ""
                    #expect(shown.contains("master_key") && shown.contains("[redacted]") && shown.contains("slack"), "\(shown)")
                }
            }
        }
    }

    /// The legitimate twin: a mapping that keeps the credential (as a reference now), and a
    /// parent that holds none, are written; the file reads back with PyYAML as meant.
    @Test func aChangeThatKeepsTheCredentialGoesThrough() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, Self.gateway + "router_settings:\n  routing_strategy: simple-shuffle\n", mode: 0o640)
            let state = try configState(root: root, resource("ConfigFile", "c", """
                path: etc/litellm/config.yaml
                properties:
                  general_settings: {master_key: os.environ/LITELLM_MASTER_KEY, alerting: [slack]}
                  router_settings: {routing_strategy: least-busy}
                """))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); "
                                                      + "print(d['general_settings']['master_key'], d['router_settings']['routing_strategy'])", path])
            #expect(python.stdout == "os.environ/LITELLM_MASTER_KEY least-busy\n", "\(python.stderr)")
        }
    }

    // MARK: - Commands run as root

    /// `reload: [/bin/sh, -c, "id > …"]` ran as root with any property change. Now a shell,
    /// interpreter or launcher is refused whatever its arguments, and so is an executable that
    /// someone other than root could change: its owner, a folder on the way writable by others, a
    /// link into such a folder. Each refusal is recorded and nothing runs or is written.
    @Test func aCommandSomeoneElseCouldChangeOrThatRunsInlineCodeIsRefused() async throws {
        try await withTemporaryDirectory { root in
            let file = "etc/x.yaml"
            try write(root + "/" + file, "a: 1\n")
            let script = "#!/bin/sh\nid > \(root)/PWNED\n"
            try write(root + "/theirs/reload.sh", script, mode: 0o755)
            #expect(chown(root + "/theirs/reload.sh", 65534, 65534) == 0)
            try write(root + "/writable/reload.sh", script, mode: 0o775)
            try write(root + "/open/reload.sh", script, mode: 0o755)
            #expect(chmod(root + "/open", 0o777) == 0)
            try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: root + "/bin/reload", withDestinationPath: root + "/open/reload.sh")
            for (command, reason) in [("[/bin/sh, -c, \"id > \(root)/PWNED\"]", "is sh, which runs code"),
                                      ("[/usr/bin/env, sh, \(root)/open/reload.sh]", "is env, which runs code"),
                                      ("[/usr/bin/python3, -c, \"import os; os.system('id > \(root)/PWNED')\"]", "python"),
                                      ("[\(root)/theirs/reload.sh]", "belongs to uid 65534"),
                                      ("[\(root)/writable/reload.sh]", "is writable by group or others"),
                                      ("[\(root)/bin/reload]", "/open is writable by group or others"),
                                      ("[/usr/bin/setarch, x86_64, /bin/sh, -c, \"id > \(root)/PWNED\"]", "its argument /bin/sh is a program"),
                                      ("[/usr/bin/prlimit, --nofile=64, sh, -c, \"id > \(root)/PWNED\"]", "its argument sh is a program")] {
                let (_, text) = try await expectConfigBlocked(root, file, resource("ConfigFile", "x", """
                    path: \(file)
                    properties: {a: 2}
                    reload: \(command)
                    """), reason: reason)
                #expect(text.contains("reload command"), "\(text)")
                #expect(!FileManager.default.fileExists(atPath: root + "/PWNED"), "\(command)")
            }
        }
    }

    /// The legitimate twin: a script owned by root, reached through a link owned by root, runs;
    /// so does Bulwark's own PyYAML check, with the code the shipped baseline names.
    @Test func aRootOwnedScriptThroughARootOwnedLinkRuns() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/x.yaml", "a: 1\n")
            try write(root + "/sbin/reload.sh", "#!/bin/sh\necho reloaded > \(root)/reloaded\n", mode: 0o755)
            try FileManager.default.createSymbolicLink(atPath: root + "/reload", withDestinationPath: "sbin/reload.sh")
            let state = try configState(root: root, resource("ConfigFile", "x", """
                path: etc/x.yaml
                properties: {a: 2}
                validate: [/usr/bin/python3, -c, "import sys, yaml; yaml.safe_load(open(sys.argv[1]))", "{file}"]
                reload: [\(root)/reload]
                """))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(root + "/reloaded") == "reloaded\n")
            #expect(try read(root + "/etc/x.yaml") == "a: 2\n")
        }
    }

    // MARK: - Weakening needs a second person

    /// Plans `current` against the last applied `previous` and applies it: the remediation and
    /// its record.
    func planAgainst(previous: DesiredState, current: DesiredState) async throws -> (PlannedRemediation?, [AuditRecord]) {
        let registry = Registry([HostAdapter.definition()])
        let reconciler = Reconciler(registry: registry)
        let weakened = Weakening.compare(previous: previous, current: current, registry: registry)
        let plan = try await reconciler.plan(current, weakened: weakened)
        let outcome = await reconciler.apply(plan, state: current, audit: RecordingSink())
        return (plan.remediations.first, outcome.entries.map(\.record))
    }

    static let baseline = """
        path: etc/litellm/config.yaml
        properties:
          general_settings.master_key: os.environ/LITELLM_MASTER_KEY
          general_settings.dangerously_permit_weak_or_unset_master_key: false
          litellm_settings.callbacks: [detect_prompt_injection]
          guardrails[guardrail_name=pii].litellm_params.default_on: true
        reload: [/usr/bin/true]
        """

    /// After a baseline apply, one commit unset the master key, turned the dangerous switch on and
    /// emptied the callbacks, and it was fixed at once; a changed reload command (and a resource
    /// renamed to carry one) ran as root without anyone else seeing it. Each is now held as a
    /// weakening, recorded held, the file untouched, and the hold names the command.
    @Test func turningTheGatewaysGuardsOffOrChangingACommandIsHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            let text = "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n  dangerously_permit_weak_or_unset_master_key: false\n"
                + "litellm_settings:\n  callbacks: [detect_prompt_injection]\nguardrails:\n  - guardrail_name: pii\n    litellm_params: {default_on: true}\n"
            try write(path, text)
            try write(root + "/reload.sh", "#!/bin/sh\necho ran > \(root)/ran\n", mode: 0o755)
            let previous = try configState(root: root, resource("ConfigFile", "gw", Self.baseline))
            // (The master key emptied where the file holds one is blocked by the guard instead:
            // `aCredentialEmptiedByItsOwnPathIsRefused`.)
            let weak = Self.baseline
                .replacingOccurrences(of: "master_key: false", with: "master_key: true")
                .replacingOccurrences(of: "[detect_prompt_injection]", with: "[]")
                .replacingOccurrences(of: "default_on: true", with: "default_on: false")
            let (held, records) = try await planAgainst(previous: previous, current: try configState(root: root, resource("ConfigFile", "gw", weak)))
            #expect(held?.decision == .held, "\(held?.reason ?? "")")
            for words in ["turns general_settings.dangerously_permit_weak_or_unset_master_key on",
                          "removes detect_prompt_injection from litellm_settings.callbacks", "default_on off"] {
                #expect(held?.reason?.contains(words) == true, "\(words): \(held?.reason ?? "")")
            }
            #expect(records.map(\.decision) == [.held])
            #expect(try read(path) == text)

            let command = Self.baseline.replacingOccurrences(of: "[/usr/bin/true]", with: "[\(root)/reload.sh]")
                .replacingOccurrences(of: "callbacks: [detect_prompt_injection]", with: "callbacks: [detect_prompt_injection, langfuse]")
            for (name, changed) in [("gw", command), ("renamed", command)] {
                let (remediation, records) = try await planAgainst(previous: previous,
                                                                  current: try configState(root: root, resource("ConfigFile", name, changed)))
                #expect(remediation?.decision == .held, "\(name): \(remediation?.reason ?? "")")
                #expect(remediation?.reason?.contains("reload command as root: [\(root)/reload.sh]") == true, "\(remediation?.reason ?? "")")
                #expect(records.map(\.decision) == [.held])
                #expect(!FileManager.default.fileExists(atPath: root + "/ran"))
                #expect(try read(path) == text)
            }
        }
    }

    /// The legitimate twin: a stricter change under the same command (a callback added, a switch
    /// turned off, a guardrail turned on) is not held and is written.
    @Test func aStricterChangeUnderTheSameCommandIsNotHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n  dangerously_permit_weak_or_unset_master_key: true\n"
                      + "litellm_settings:\n  callbacks: []\nguardrails:\n  - guardrail_name: pii\n    litellm_params: {default_on: false}\n")
            let weak = Self.baseline
                .replacingOccurrences(of: "master_key: false", with: "master_key: true")
                .replacingOccurrences(of: "[detect_prompt_injection]", with: "[]")
                .replacingOccurrences(of: "default_on: true", with: "default_on: false")
            let previous = try configState(root: root, resource("ConfigFile", "gw", weak))
            let (remediation, records) = try await planAgainst(previous: previous, current: try configState(root: root, resource("ConfigFile", "gw", Self.baseline)))
            #expect(remediation?.decision == .applied, "\(remediation?.reason ?? "")")
            #expect(records.map(\.result) == [.verified], "\(records.map { $0.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); print(d['litellm_settings']['callbacks'], "
                                                      + "d['general_settings']['dangerously_permit_weak_or_unset_master_key'], d['guardrails'][0]['litellm_params']['default_on'])", path])
            #expect(python.stdout == "['detect_prompt_injection'] False True\n", "\(python.stderr)")
        }
    }

    static let strict = """
        path: etc/litellm/config.yaml
        properties:
          guardrails[guardrail_name=pii].litellm_params.mode: pre_call
          guardrails[guardrail_name=pii].litellm_params.patterns: [{pattern_name: us_ssn, action: BLOCK}]
          litellm_settings.turn_off_message_logging: false
          litellm_settings.upperbound_key_generate_params.max_budget: 100
        reload: [/usr/bin/true]
        """

    static let lax = strict
        .replacingOccurrences(of: "mode: pre_call", with: "mode: logging_only")
        .replacingOccurrences(of: "action: BLOCK", with: "action: BLOCK_NEVER")
        .replacingOccurrences(of: "turn_off_message_logging: false", with: "turn_off_message_logging: true")
        .replacingOccurrences(of: "max_budget: 100", with: "max_budget: 100000000")

    static let guardedFile = "guardrails:\n  - guardrail_name: pii\n    litellm_params:\n      mode: pre_call\n"
        + "      patterns: [{pattern_name: us_ssn, action: BLOCK}]\n"
        + "litellm_settings:\n  turn_off_message_logging: false\n  upperbound_key_generate_params: {max_budget: 100}\n"

    /// One ordinary commit made the PII guardrail only log, stopped it blocking, turned message
    /// logging off and raised the key budget a millionfold, and it was fixed at once: the kind
    /// knew none of these directions. Each is now held for a second person, its reason named,
    /// the file untouched.
    @Test func aGuardrailThatOnlyLogsStopsLessOrALiftedBudgetIsHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, Self.guardedFile)
            let previous = try configState(root: root, resource("ConfigFile", "gw", Self.strict))
            let (held, records) = try await planAgainst(previous: previous, current: try configState(root: root, resource("ConfigFile", "gw", Self.lax)))
            #expect(held?.decision == .held, "\(held?.reason ?? "")")
            for words in ["makes the guardrail at guardrails[guardrail_name=pii].litellm_params.mode logging_only instead of pre_call",
                          "patterns[0].action from BLOCK to BLOCK_NEVER", "turns litellm_settings.turn_off_message_logging on",
                          "raises the limit litellm_settings.upperbound_key_generate_params.max_budget from 100 to 100000000"] {
                #expect(held?.reason?.contains(words) == true, "\(words): \(held?.reason ?? "")")
            }
            #expect(records.map(\.decision) == [.held])
            #expect(try read(path) == Self.guardedFile)
        }
    }

    /// The legitimate twin: the same four moved the other way (blocking again, logging on, the
    /// budget lowered) are not held, and are written.
    @Test func aGuardrailMadeToBlockAgainOrALoweredBudgetIsNotHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, Self.guardedFile.replacingOccurrences(of: "pre_call", with: "logging_only")
                .replacingOccurrences(of: "action: BLOCK", with: "action: MASK")
                .replacingOccurrences(of: "turn_off_message_logging: false", with: "turn_off_message_logging: true")
                .replacingOccurrences(of: "max_budget: 100", with: "max_budget: 500"))
            let previous = try configState(root: root, resource("ConfigFile", "gw", Self.lax.replacingOccurrences(of: "BLOCK_NEVER", with: "MASK")
                .replacingOccurrences(of: "100000000", with: "500")))
            let (remediation, records) = try await planAgainst(previous: previous, current: try configState(root: root, resource("ConfigFile", "gw", Self.strict)))
            #expect(remediation?.decision == .applied, "\(remediation?.reason ?? "")")
            #expect(records.map(\.result) == [.verified], "\(records.map { $0.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); g = d['guardrails'][0]['litellm_params']; "
                                                      + "print(g['mode'], g['patterns'][0]['action'], d['litellm_settings']['turn_off_message_logging'], "
                                                      + "d['litellm_settings']['upperbound_key_generate_params']['max_budget'])", path])
            #expect(python.stdout == "pre_call BLOCK False 100\n", "\(python.stderr)")
        }
    }

    /// Changing `turn_off_message_logging: false` to `"false"` was `will fix`, where `true` was
    /// held for a second person: LiteLLM sets the key with setattr and tests it for truth, so the
    /// quoted "false" (or `'no'`, `1`, `[false]`) turned message logging off with no one else
    /// seeing it. Each is held, recorded held, the value not shown, the file untouched.
    @Test func aSwitchTurnedOnByAValueOtherThanTrueIsHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, Self.guardedFile)
            let previous = try configState(root: root, resource("ConfigFile", "gw", Self.strict))
            for value in ["\"false\"", "'no'", "1", "[false]"] {
                let changed = Self.strict.replacingOccurrences(of: "turn_off_message_logging: false", with: "turn_off_message_logging: \(value)")
                let (held, records) = try await planAgainst(previous: previous, current: try configState(root: root, resource("ConfigFile", "gw", changed)))
                #expect(held?.decision == .held, "\(value): \(held?.reason ?? "")")
                #expect(held?.reason?.contains("turns litellm_settings.turn_off_message_logging on (a value other than false or null") == true,
                        "\(value): \(held?.reason ?? "")")
                #expect(records.map(\.decision) == [.held], "\(value)")
                #expect(try read(path) == Self.guardedFile)
            }
        }
    }

    /// The legitimate twins: a switch written `true`, `false`, `null` or YAML 1.1's plain `no`
    /// loads, and a switch that was off made null (unset) is not held and is written.
    @Test func aSwitchWrittenTrueFalseOrNullLoadsAndUnsettingOneIsNotHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, Self.guardedFile)
            for value in ["true", "false", "null", "no", "~"] {
                #expect(configStateError(root: root, resource("ConfigFile", "gw", Self.strict.replacingOccurrences(
                    of: "turn_off_message_logging: false", with: "turn_off_message_logging: \(value)"))) == nil, "\(value)")
            }
            let previous = try configState(root: root, resource("ConfigFile", "gw", Self.strict))
            let unset = Self.strict.replacingOccurrences(of: "turn_off_message_logging: false", with: "turn_off_message_logging: null")
            let (remediation, records) = try await planAgainst(previous: previous, current: try configState(root: root, resource("ConfigFile", "gw", unset)))
            #expect(remediation?.decision == .applied, "\(remediation?.reason ?? "")")
            #expect(records.map(\.result) == [.verified], "\(records.map { $0.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); "
                                                      + "print(repr(d['litellm_settings']['turn_off_message_logging']))", path])
            #expect(python.stdout == "None\n", "\(python.stderr)")
        }
    }

    /// A switch already on, moved to another on value (`disable_checks: [a]` → `[a, b]`, or
    /// `"some"` → `"all"`), was not judged: only off → on was. It may turn off more, so it is
    /// held, recorded held, the file untouched.
    @Test func aSwitchThatStaysOnMovedToAnotherValueIsHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            for (was, now) in [("[pii_check]", "[pii_check, injection_check]"), ("\"some\"", "\"all\"")] {
                let file = "litellm_settings:\n  disable_checks: \(was)\n"
                try write(path, file)
                let spec = "path: etc/litellm/config.yaml\nproperties:\n  litellm_settings.disable_checks: \(was)\nreload: [/usr/bin/true]"
                let previous = try configState(root: root, resource("ConfigFile", "gw", spec))
                let changed = spec.replacingOccurrences(of: "disable_checks: \(was)", with: "disable_checks: \(now)")
                let (held, records) = try await planAgainst(previous: previous, current: try configState(root: root, resource("ConfigFile", "gw", changed)))
                #expect(held?.decision == .held, "\(now): \(held?.reason ?? "")")
                #expect(held?.reason?.contains("changes the switch litellm_settings.disable_checks, which stays on, to another value") == true,
                        "\(now): \(held?.reason ?? "")")
                #expect(records.map(\.decision) == [.held], "\(now)")
                #expect(try read(path) == file)
            }
        }
    }

    /// The legitimate twin: a list switch that only loses entries (`[a, b]` → `[a]`) turns off
    /// less, and is written and verified at once.
    @Test func aListSwitchThatOnlyLosesEntriesIsNotHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, "litellm_settings:\n  disable_checks: [pii_check, injection_check]\n")
            let spec = "path: etc/litellm/config.yaml\nproperties:\n  litellm_settings.disable_checks: [pii_check, injection_check]\n"
                + "reload: [/usr/bin/true]"
            let previous = try configState(root: root, resource("ConfigFile", "gw", spec))
            let narrower = spec.replacingOccurrences(of: "[pii_check, injection_check]", with: "[pii_check]")
            let (remediation, records) = try await planAgainst(previous: previous, current: try configState(root: root, resource("ConfigFile", "gw", narrower)))
            #expect(remediation?.decision == .applied, "\(remediation?.reason ?? "")")
            #expect(records.map(\.result) == [.verified], "\(records.map { $0.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); "
                                                      + "print(repr(d['litellm_settings']['disable_checks']))", path])
            #expect(python.stdout == "['pii_check']\n", "\(python.stderr)")
        }
    }

    // MARK: - Numbers as PyYAML reads them

    /// PlainScalar called a number what JSON calls one: `1e2` and `6.0e2` were written plain and
    /// PyYAML read strings, and `1_000_000` was written quoted. Every spelling here is typed by the
    /// real PyYAML (`yaml.safe_load`) and by PlainScalar, and they must agree.
    @Test func plainScalarTypesNumbersAsPyYAMLDoes() throws {
        let tokens = ["1e2", "6.0e2", "1_000_000", "0x1F", "0x", "0o17", "017", "08", "0b101", "0b", "+1", "-1", ".5", "-.5", "+.5", "1.",
                      "0.", "1:30", "1:60", "190:20:30.15", "1:5:7", ".inf", "-.inf", "+.inf", ".NaN", ".nan", "1.5e+3", "1.5e3", "1E+5",
                      "1.0e-2", "0", "00", "-0", "1__0", "_1", "1.0.0", "127.0.0.1", "1_0.5_0", "+", ".", "1e+2", "0_7", "0x_1",
                      "12e", "3.14", "-3.14", "100", "007", "1,000"]
        let script = "import sys, yaml\nfor t in sys.argv[1:]:\n    v = yaml.safe_load('v: ' + t)['v']\n"
            + "    print(type(v).__name__ in ('int', 'float'))"
        let python = try run("/usr/bin/python3", ["-c", script] + tokens)
        let answers = python.stdout.split(separator: "\n").map { $0 == "True" }
        try #require(answers.count == tokens.count, "\(python.stderr)")
        for (token, number) in zip(tokens, answers) {
            #expect(PlainScalar.isNumber(token) == number, "\(token): PyYAML reads a \(number ? "number" : "string")")
        }
    }

    /// A value the policy's readers type differently is refused where it is written (file, line,
    /// field): `1e2` is a number to JSON and YAML 1.2 but a string to PyYAML; `017` and `1:30` are
    /// numbers only to YAML 1.1; `1_000` is no JSON number. Nothing is written.
    @Test func aNumberThePoliciesReadersTypeDifferentlyIsRefusedWhereItIsWritten() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/litellm/config.yaml", "litellm_settings:\n  max_budget: 10\n")
            try write(root + "/etc/app.json", "{\"limit\": 1}\n")
            for (value, why) in [("1e2", "a string to PyYAML"), ("6.0e2", "a string to PyYAML"), ("017", "octal"), ("1:30", "base-60")] {
                let error = configStateError(root: root, resource("ConfigFile", "c", """
                    path: etc/litellm/config.yaml
                    properties:
                      litellm_settings.max_budget: \(value)
                    """))
                #expect(error?.contains("desired-state/r.yaml") == true && error?.contains("max_budget") == true
                        && error?.contains("'\(value)' (line 8)") == true && error?.contains(why) == true, "\(error ?? "loaded")")
            }
            let json = configStateError(root: root, resource("ConfigFile", "j", "path: etc/app.json\nproperties:\n  limit: 1_000"))
            #expect(json?.contains("not one JSON can hold") == true, "\(json ?? "loaded")")
            #expect(try read(root + "/etc/litellm/config.yaml") == "litellm_settings:\n  max_budget: 10\n")
        }
    }

    /// The legitimate twin: what PyYAML reads as numbers is written so that it reads the type the
    /// policy meant; a file that held `1e2` or `"1_000_000"` (strings to PyYAML) is drift, fixed,
    /// then in sync.
    @Test func numbersAreWrittenAsPyYAMLReadsThem() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, "litellm_settings:\n  max_budget: 1e2\n  tpm_limit: \"1_000_000\"\n  rpm_limit: 6.0e2\n")
            let manifests = resource("ConfigFile", "c", """
                path: etc/litellm/config.yaml
                properties:
                  litellm_settings.max_budget: 100.0
                  litellm_settings.tpm_limit: 1_000_000
                  litellm_settings.rpm_limit: 600
                  litellm_settings.temperature: .5
                  litellm_settings.timeout: 1.0e+2
                """)
            let (plan, outcome) = try await reconcile(try configState(root: root, manifests))
            #expect(plan.remediations.first?.changes.count == 5, "\(plan.remediations.map(\.changes))")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1]))['litellm_settings']; "
                                                      + "print(*[repr(d[k]) for k in ('max_budget', 'tpm_limit', 'rpm_limit', 'temperature', 'timeout')])", path])
            let written = try read(path)
            #expect(python.stdout == "100.0 1000000 600 0.5 100.0\n", "\(python.stderr) \(written)")
            #expect(try await reconcile(try configState(root: root, manifests)).0.remediations.isEmpty)
        }
    }

    // MARK: - Binding every interface

    /// `0.0.0.0:4000` was refused but `::0` and `listen: 0` were written. Every spelling of the
    /// unspecified address is refused and recorded on a target not labelled public.
    @Test func everySpellingOfTheUnspecifiedAddressIsRefused() async throws {
        try await withTemporaryDirectory { root in
            let file = "etc/gw/gateway.yaml"
            try write(root + "/" + file, "server:\n  host: 127.0.0.1\n  listen: 127.0.0.1:4000\n")
            for (key, value) in [("host", "\"::0\""), ("listen", "0"), ("host", "\"::\""), ("listen", "\"[::]:4000\""), ("host", "\"[::]\""),
                                 ("host", "\"0\""), ("host", "0.0"), ("host", "\"0:0:0:0:0:0:0:0\""), ("host", "\"::ffff:0.0.0.0\""),
                                 ("listen", "\"*:4000\""), ("listen", "\":4000\""), ("host", "\"::%eth0\"")] {
                try await expectConfigBlocked(root, file, resource("ConfigFile", "gw", "path: \(file)\nproperties:\n  server.\(key): \(value)"),
                                              reason: "every network interface")
            }
        }
    }

    /// A key a guard or the second-person rule judges by its path, set inside a parent's mapping,
    /// would be compared with nothing: `general_settings: {host: 0.0.0.0}` went past the bind
    /// guard, `litellm_settings: {callbacks: []}` and a `dangerously_*` switch past the second
    /// person. Such a spec is refused where it is read, naming the key and the path to use; a
    /// mapping without such keys loads.
    @Test func aGuardedKeyInsideAMappingIsRefusedWhereItIsRead() throws {
        for (value, inner) in [("{master_key: os.environ/K, host: 0.0.0.0}", "host"),
                               ("{alerting: [slack], dangerously_permit_weak_or_unset_master_key: true}", "dangerously_permit_weak_or_unset_master_key"),
                               ("{ui: {callbacks: []}}", "ui.callbacks"),
                               ("{pii: {default_on: false}}", "pii.default_on")] {
            let error = configStateError(root: "/nonexistent", resource("ConfigFile", "c",
                "path: etc/litellm/config.yaml\nproperties:\n  general_settings: \(value)")) ?? ""
            #expect(error.contains("'general_settings' sets \(inner) inside a mapping; set it by its own path ('general_settings.\(inner)')"),
                    "\(error)")
        }
        #expect(configStateError(root: "/nonexistent", resource("ConfigFile", "c",
            "path: etc/litellm/config.yaml\nproperties:\n  general_settings.master_key: os.environ/K\n  general_settings.alerting: [slack]\n"
            + "  general_settings.host: 127.0.0.1\n  litellm_settings.callbacks: [detect_prompt_injection]")) == nil)
        // Not beside the whole mapping, which does not hold it: each write would leave one of the
        // two not as desired (`ConfigFileOverlapTests`).
        #expect(configStateError(root: "/nonexistent", resource("ConfigFile", "c",
            "path: etc/litellm/config.yaml\nproperties:\n  general_settings: {master_key: os.environ/K, alerting: [slack]}\n"
            + "  general_settings.host: 127.0.0.1"))?.contains("name the same value and want it different") == true)
    }

    /// A credential the file holds, emptied by its own path (where an earlier revision set it
    /// inside its parent, so no value of that path was there to compare with), is refused and
    /// recorded; replaced by another reference, it is written.
    @Test func aCredentialEmptiedByItsOwnPathIsRefused() async throws {
        try await withTemporaryDirectory { root in
            let file = "etc/litellm/config.yaml"
            try write(root + "/" + file, "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n", mode: 0o640)
            for value in ["\"\"", "null"] {
                try await expectConfigBlocked(root, file, resource("ConfigFile", "c",
                    "path: \(file)\nproperties:\n  general_settings.master_key: \(value)"),
                    reason: "would empty the credential the file holds there")
            }
            let (plan, outcome) = try await reconcile(try configState(root: root, resource("ConfigFile", "c",
                "path: \(file)\nproperties:\n  general_settings.master_key: os.environ/NEW_MASTER_KEY")))
            #expect(plan.remediations.map(\.decision) == [.applied])
            #expect(outcome.verified.count == 1)
        }
    }

    /// The legitimate twin: loopback and named addresses are written.
    @Test func aLoopbackBindIsWritten() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/gw/gateway.yaml"
            try write(path, "server:\n  host: 127.0.0.1\n  listen: 127.0.0.1:4000\n  port: 4000\n")
            let state = try configState(root: root, resource("ConfigFile", "gw", """
                path: etc/gw/gateway.yaml
                properties:
                  server.host: "::1"
                  server.listen: "[::1]:4000"
                  server.port: 0
                """))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })")
            #expect(outcome.verified.count == 1)
        }
    }

    // MARK: - The same value by another path

    /// Plans `current` against the last applied `previous` and applies it: every remediation and
    /// every record.
    func planAllAgainst(previous: DesiredState, current: DesiredState) async throws -> ([PlannedRemediation], [AuditRecord]) {
        let registry = Registry([HostAdapter.definition()])
        let reconciler = Reconciler(registry: registry)
        let plan = try await reconciler.plan(current, weakened: Weakening.compare(previous: previous, current: current, registry: registry))
        let outcome = await reconciler.apply(plan, state: current, audit: RecordingSink())
        return (plan.remediations, outcome.entries.map(\.record))
    }

    static let aliasFile = """
        general_settings:
          master_key: os.environ/LITELLM_MASTER_KEY
        litellm_settings:
          callbacks: [detect_prompt_injection]
        guardrails:
          - guardrail_name: pii
            litellm_params:
              guardrail: litellm_content_filter
              mode: pre_call
              default_on: true

        """

    static let aliasBaseline = resource("ConfigFile", "guardrails", """
        path: etc/litellm/config.yaml
        properties:
          guardrails[guardrail_name=pii].litellm_params.mode: pre_call
          guardrails[guardrail_name=pii].litellm_params.default_on: true
          litellm_settings.callbacks: [detect_prompt_injection]
        reload: [/usr/bin/true]
        """)

    /// Review H1: one committer added a resource that named the baseline's guardrail values by
    /// other paths (`guardrails[0]`, `guardrails[*]`, `litellm_settings.callbacks[0]`) and turned
    /// them off; no earlier revision set those paths, so only unsafe switches were judged, and it
    /// was applied: the guardrail only logged, was off by default, the injection check gone. Each
    /// is now judged as the governed path's change: held, recorded held, the file untouched;
    /// with the baseline's resource removed in the same commit, or kept where the two only may
    /// meet (kept where they surely do, the revision conflicts: `twoResourcesThatSurelyName…`).
    @Test func aGuardrailWeakenedThroughAnotherPathIsHeld() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, Self.aliasFile)
            let previous = try configState(root: root, Self.aliasBaseline)
            let cases = [
                ("guardrails[0].litellm_params.mode: logging_only",
                 "(reaches guardrails[guardrail_name=pii].litellm_params.mode) (makes the guardrail at guardrails[guardrail_name=pii].litellm_params.mode logging_only instead of pre_call"),
                ("guardrails[*].litellm_params.default_on: false", "(reaches guardrails[guardrail_name=pii].litellm_params.default_on) (turns the guardrail's default_on off"),
                ("litellm_settings.callbacks[0]: none", "(reaches litellm_settings.callbacks) (removes detect_prompt_injection from litellm_settings.callbacks"),
                ("guardrails[00].litellm_params: {mode: post_call}", "makes the guardrail at guardrails[00].litellm_params.mode post_call instead of pre_call"),
                ("guardrails: [{guardrail_name: pii, litellm_params: {mode: during_call}}]", "during_call instead of pre_call"),
                ("guardrails: []", "makes the guardrail at guardrails[0].litellm_params.mode unset instead of pre_call"),
            ]
            for (property, words) in cases {
                let sneaky = resource("ConfigFile", "sneaky", "path: etc/litellm/config.yaml\nproperties:\n  \(property)")
                let kept = property.hasPrefix("guardrails[0") ? Self.aliasBaseline : ""
                let (remediations, records) = try await planAllAgainst(previous: previous,
                                                                       current: try configState(root: root, kept + sneaky))
                let held = remediations.first { $0.binding.resource.name == "sneaky" }
                #expect(held?.decision == .held, "\(property): \(remediations.map { "\($0.binding.resource) \($0.decision) \($0.reason ?? "")" })")
                #expect(held?.reason?.contains(words) == true, "\(property): \(held?.reason ?? "")")
                #expect(records.map(\.decision) == [.held], "\(property): \(records.map(\.decision))")
                #expect(records.first?.commitMessage.contains("Bulwark-Decision: held") == true)
                #expect(try read(path) == Self.aliasFile, "\(property)")
            }
        }
    }

    /// The legitimate twin: new paths that reach the same guardrail with a stricter value
    /// (`during_call` → `pre_call`, default_on turned on, the callback kept) are not held, and
    /// are written.
    @Test func aGuardrailStrengthenedThroughAnotherPathIsWritten() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            let weak = Self.aliasFile.replacingOccurrences(of: "mode: pre_call", with: "mode: during_call")
                .replacingOccurrences(of: "default_on: true", with: "default_on: false")
            try write(path, weak)
            let previous = try configState(root: root, Self.aliasBaseline.replacingOccurrences(of: "mode: pre_call", with: "mode: during_call")
                .replacingOccurrences(of: "default_on: true", with: "default_on: false"))
            let stricter = resource("ConfigFile", "stricter", """
                path: etc/litellm/config.yaml
                properties:
                  guardrails[0].litellm_params.mode: pre_call
                  guardrails[*].litellm_params.default_on: true
                  litellm_settings.callbacks[0]: detect_prompt_injection
                """)
            let (remediations, records) = try await planAllAgainst(previous: previous, current: try configState(root: root, Self.aliasBaseline + stricter))
            #expect(!remediations.isEmpty && remediations.allSatisfy { $0.decision == .applied },
                    "\(remediations.map { "\($0.binding.resource) \($0.decision) \($0.reason ?? "")" })")
            #expect(!records.isEmpty && records.allSatisfy { $0.result == .verified }, "\(records.map { $0.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); g = d['guardrails'][0]['litellm_params']; "
                                                      + "print(g['mode'], g['default_on'], d['litellm_settings']['callbacks'])", path])
            #expect(python.stdout == "pre_call True ['detect_prompt_injection']\n", "\(python.stderr)")
        }
    }

    /// Review H1's validation: two resources that surely name one value of the file
    /// (`guardrails[*]` and `guardrails[guardrail_name=pii]`, `callbacks[0]` and `callbacks`) and
    /// want it different were not reported: each pass would write one and then the other. They
    /// conflict now, naming both paths. The twins load: the same value through another path, and
    /// paths that only may meet (`guardrails[0]`: which element depends on the file; such a
    /// change is judged by the second-person rule instead).
    @Test func twoResourcesThatSurelyNameOneValueDifferentlyConflict() async throws {
        try await withTemporaryDirectory { root in
            for (property, words) in [
                ("guardrails[*].litellm_params.default_on: false",
                 "conflicts with ConfigFile/guardrails"),
                ("litellm_settings.callbacks[0]: none", "its litellm_settings.callbacks and this litellm_settings.callbacks[0] name the same value"),
                ("guardrails[guardrail_name=pii].litellm_params: {mode: logging_only}", "guardrails[guardrail_name=pii].litellm_params.mode and this"),
            ] {
                let other = resource("ConfigFile", "other", "path: etc/litellm/config.yaml\nproperties:\n  \(property)")
                let error = configStateError(root: root, Self.aliasBaseline + other)
                #expect(error?.contains(words) == true, "\(property): \(error ?? "loaded")")
            }
            for property in ["guardrails[*].litellm_params.default_on: true", "litellm_settings.callbacks[0]: detect_prompt_injection",
                             "guardrails[0].litellm_params.mode: logging_only", "guardrails[guardrail_name=other].litellm_params.mode: logging_only",
                             "litellm_settings.callbacks[3]: none"] {
                let other = resource("ConfigFile", "other", "path: etc/litellm/config.yaml\nproperties:\n  \(property)")
                #expect(configStateError(root: root, Self.aliasBaseline + other) == nil, "\(property)")
            }
        }
    }

    /// Review H2: the master key moved from `os.environ/LITELLM_MASTER_KEY` to `os.environ/PATH`
    /// was applied (only an unset key counted), and the record showed `[redacted] -> [redacted]`:
    /// LiteLLM then took $PATH's value as the admin key. Where a credential read from the
    /// environment comes from is now a weakening, held and recorded with the variables' names;
    /// so is one moved to a literal or set through its parent's mapping. A literal is never shown.
    @Test func aCredentialReadFromAnotherVariableIsHeldAndNamed() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            try write(path, Self.aliasFile)
            let creds = "path: etc/litellm/config.yaml\nproperties:\n  general_settings.master_key: "
            let previous = try configState(root: root, resource("ConfigFile", "creds", creds + "os.environ/LITELLM_MASTER_KEY"))
            for (manifest, words) in [
                (resource("ConfigFile", "creds", creds + "os.environ/PATH"),
                 "changes where the credential general_settings.master_key comes from: os.environ/LITELLM_MASTER_KEY → os.environ/PATH"),
                (resource("ConfigFile", "renamed", creds + "os.environ/HOME"), "os.environ/LITELLM_MASTER_KEY → os.environ/HOME"),
                (resource("ConfigFile", "parent", "path: etc/litellm/config.yaml\nproperties:\n  general_settings: {master_key: os.environ/PATH}"),
                 "(reaches general_settings.master_key) (changes where the credential general_settings.master_key comes from: "
                    + "os.environ/LITELLM_MASTER_KEY → os.environ/PATH"),
            ] {
                let (remediations, records) = try await planAllAgainst(previous: previous, current: try configState(root: root, manifest))
                #expect(remediations.map(\.decision) == [.held], "\(remediations.map { $0.reason ?? "" })")
                #expect(remediations.first?.reason?.contains(words) == true, "\(remediations.first?.reason ?? "")")
                #expect(records.map(\.decision) == [.held])
                #expect(records.first?.commitMessage.contains(words) == true, "\(records.first?.commitMessage ?? "")")
                #expect(try read(path) == Self.aliasFile)
            }
            let why = ConfigFileWeakening.weakens("general_settings.master_key", #""os.environ/LITELLM_MASTER_KEY""#, #""sk-literal-0123456789abcdef""#)
            #expect(why == "changes where the credential general_settings.master_key comes from: os.environ/LITELLM_MASTER_KEY → a value that is not a "
                    + "reference to the environment", "\(why ?? "")")
            #expect(ConfigFileWeakening.weakens("general_settings.master_key", #""os.environ/A""#, "12345")?.contains("not a reference") == true)
        }
    }

    /// The legitimate twins: a master key moved from a literal in the file to a reference, or
    /// set for the first time, is not held, and is written.
    @Test func aCredentialMovedToTheEnvironmentOrSetFirstIsWritten() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/litellm/config.yaml"
            let literal = Self.aliasFile.replacingOccurrences(of: "os.environ/LITELLM_MASTER_KEY", with: Self.masterKey)
            let creds = "path: etc/litellm/config.yaml\nproperties:\n  general_settings.master_key: "
            let first = try configState(root: root, resource("ConfigFile", "other", "path: etc/litellm/config.yaml\nproperties:\n  litellm_settings.num_retries: 3"))
            let literalBefore = try configState(root: root, resource("ConfigFile", "creds", creds + Self.masterKey))
            for previous in [first, literalBefore] {
                try write(path, literal)
                let (remediations, records) = try await planAllAgainst(previous: previous,
                    current: try configState(root: root, resource("ConfigFile", "creds", creds + "os.environ/LITELLM_MASTER_KEY")))
                #expect(remediations.map(\.decision) == [.applied], "\(remediations.map { $0.reason ?? "" })")
                #expect(records.map(\.result) == [.verified], "\(records.map { $0.error ?? "" })")
                #expect(try read(path) == Self.aliasFile)
            }
        }
    }
}
