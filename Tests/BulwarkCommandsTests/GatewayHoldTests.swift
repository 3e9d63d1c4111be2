@testable import BulwarkCommands
import BulwarkTestSupport
import Foundation
import Testing

/// A gateway's weakening held for a second person stays held while its file is away: a missing
/// managed file fails its observation instead of reading as in sync, so the last applied
/// revision does not move past the weakening, and the file put back is not rewritten weaker.
@Suite(.serialized) struct GatewayHoldTests {
    @Test func aHeldWeakeningStaysHeldWhileItsFileIsAwayAndAfterItIsBack() async throws {
        try await withTemporaryDirectory { dir in
            let s = try FindingValueTypeTests().scenario(dir)
            let file = dir + "/gw/etc/litellm/config.yaml"
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
            #expect(!first.stdout.contains("the last applied revision stays"), "nothing weakened, nothing held: \(first.stdout)")
            try s.commitPolicy("desired-state/ai-gateway/gw.yaml", FindingValueTypeTests.manifests.replacingOccurrences(
                of: "general_settings.dangerously_permit_weak_or_unset_master_key: false",
                with: "general_settings.dangerously_permit_weak_or_unset_master_key: true"), message: "allow a weak key")
            let held = try s.run("apply")
            #expect(held.stdout.contains("needs approval by someone else"), "\(held.stdout)\(held.stderr)")
            // The operator is told why later weakenings are still judged against the older revision.
            #expect(held.stdout.contains("note: the last applied revision stays")
                    && held.stdout.contains("weakened ConfigFile/gw-credentials on gw is held, not applied"), "\(held.stdout)")

            try FileManager.default.moveItem(atPath: file, toPath: dir + "/config.away")
            let away = try s.run("apply")
            #expect(away.status == 1, "\(away.stdout)\(away.stderr)")
            #expect(away.stderr.contains("does not exist"), "\(away.stderr)")
            #expect(away.stdout.contains("weakened ConfigFile/gw-credentials on gw could not be observed"), "\(away.stdout)")
            #expect(!FileManager.default.fileExists(atPath: file), "never created")

            try FileManager.default.moveItem(atPath: dir + "/config.away", toPath: file)
            let back = try s.run("apply")
            #expect(back.stdout.contains("needs approval by someone else"), "\(back.stdout)\(back.stderr)")
            #expect(try read(file).contains("dangerously_permit_weak_or_unset_master_key: false"), "still the stronger value")
        }
    }

    static let models = """
        apiVersion: bulwark/v1
        kind: ConfigFile
        metadata: {name: gw-models}
        spec:
          path: etc/litellm/config.yaml
          properties:
            model_list[*].litellm_params.guardrails: [pii-mask, prompt-injection]

        """

    /// The same through a wildcard path: with every model removed from the file, the path matches
    /// nothing and the resource is in sync, but the weakening is nowhere in place, so it has not
    /// reached the target: the models put back are not rewritten weaker without an approval.
    /// A weakening that matched and was approved-free in sync elsewhere is the legitimate twin
    /// (`aHeldWeakeningStaysHeld…`'s first apply, and every in-sync pass).
    @Test func aHeldWeakeningThroughAWildcardStaysHeldWhileNothingMatches() async throws {
        try await withTemporaryDirectory { dir in
            let s = try FindingValueTypeTests().scenario(dir)
            let file = dir + "/gw/etc/litellm/config.yaml"
            let withModels = FindingValueTypeTests.gatewayConfig
                + "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, guardrails: [pii-mask, prompt-injection]}\n"
            try write(file, withModels, mode: 0o640)
            try s.commitPolicy("desired-state/ai-gateway/models.yaml", Self.models, message: "the models' guardrails")
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
            try s.commitPolicy("desired-state/ai-gateway/models.yaml",
                               Self.models.replacingOccurrences(of: "[pii-mask, prompt-injection]", with: "[prompt-injection]"),
                               message: "drop PII masking")
            let held = try s.run("apply")
            #expect(held.stdout.contains("needs approval by someone else"), "\(held.stdout)\(held.stderr)")

            try write(file, FindingValueTypeTests.gatewayConfig + "model_list: []\n", mode: 0o640)
            let empty = try s.run("apply")
            #expect(empty.status == 0, "\(empty.stdout)\(empty.stderr)")
            #expect(empty.stdout.contains("weakened ConfigFile/gw-models on gw is in sync only because a weakened property was not found on it"),
                    "\(empty.stdout)")

            try write(file, withModels, mode: 0o640)
            let back = try s.run("apply")
            #expect(back.stdout.contains("needs approval by someone else"), "\(back.stdout)\(back.stderr)")
            #expect(try read(file).contains("guardrails: [pii-mask, prompt-injection]"), "still the stronger value")
        }
    }
}
