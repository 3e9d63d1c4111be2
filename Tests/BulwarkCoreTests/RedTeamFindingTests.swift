@testable import BulwarkCore
import Foundation
import Testing

/// What the red-team loop needs of the findings code: a garak run that judged nothing never
/// passes a probe, and a finding rule can name one property of a `ConfigFile` (whose property
/// names are themselves dotted paths).
@Suite struct RedTeamFindingTests {
    static let now = Timestamp.parse("2026-12-01T00:00:00Z")!

    /// A garak report as 0.17 writes it, with one eval line.
    static func report(passed: Int, fails: Int, nones: Int) -> [UInt8] {
        let lines = [
            #"{"entry_type": "start_run setup", "plugins.target_type": "openai.OpenAICompatible", "plugins.target_name": "support-bot"}"#,
            #"{"entry_type": "init", "garak_version": "0.17.1", "start_time": "2026-11-30T22:00:00.250000", "run": "8d0b4c1e-2f3a-4b5c-9d6e-7f8091a2b3c4"}"#,
            #"{"entry_type": "eval", "probe": "promptinject.HijackHateHumans", "detector": "promptinject.AttackRogueString", "passed": \#(passed), "fails": \#(fails), "nones": \#(nones), "total_evaluated": \#(passed + fails), "total_processed": \#(passed + fails + nones)}"#,
        ]
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }

    @Test func aRunWhoseEveryOutputErroredResolvesNothing() throws {
        // The gateway refused every attempt with an HTTP error (garak's `nones`), or the model was down:
        // nothing was judged, so the probe did not pass and no proposal may be closed by it.
        #expect {
            _ = try FindingParser.document(Self.report(passed: 0, fails: 0, nones: 6), contentType: nil, now: Self.now)
        } throws: { error in
            String(describing: error).contains("garak evaluated no output")
        }
        // Beside a judged line, the unjudged one is left out rather than counted as a pass.
        var mixed = Self.report(passed: 0, fails: 0, nones: 6)
        mixed += Array(#"{"entry_type": "eval", "probe": "dan.Dan_11_0", "detector": "dan.DAN", "passed": 5, "fails": 0, "nones": 0, "total_evaluated": 5}"#.utf8)
        let findings = try FindingParser.document(mixed, contentType: nil, now: Self.now).findings
        #expect(findings.map(\.control) == ["dan.Dan_11_0"])
    }

    @Test func aRunThatJudgedEveryAttemptPassedResolvesTheProbe() throws {
        let failing = try #require(try FindingParser.document(Self.report(passed: 0, fails: 6, nones: 0), contentType: nil, now: Self.now).findings.first)
        #expect(!failing.resolved && failing.severity == .high && failing.resource == "openai.OpenAICompatible:support-bot")
        #expect(failing.firstObservedAt == Timestamp.parse("2026-11-30T22:00:00.250Z"))
        let passing = try #require(try FindingParser.document(Self.report(passed: 6, fails: 0, nones: 0), contentType: nil, now: Self.now).findings.first)
        #expect(passing.resolved)
        // The same probe on the same model under the same detector is the same finding in every run.
        #expect(passing.id == failing.id)
    }

    @Test func aQuotedNameInARulePathIsOneConfigFileProperty() throws {
        #expect(ChangeTemplate.path(#"properties."model_list[model_name=support-bot].litellm_params.guardrails""#)
                == ["properties", "model_list[model_name=support-bot].litellm_params.guardrails"])
        #expect(ChangeTemplate.path("settings.PermitRootLogin") == ["settings", "PermitRootLogin"])
        #expect(ChangeTemplate.pathText(["properties", "litellm_settings.callbacks"]) == #"properties."litellm_settings.callbacks""#)
        for malformed in ["", "a..b", ".a", "a.", #"properties."unclosed"#, #"properties."a"b"#, #"properties.x"a""#, #"properties."""#] {
            #expect(ChangeTemplate.path(malformed) == nil, "\(malformed)")
        }
    }
}
