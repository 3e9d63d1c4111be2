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
            try s.commitPolicy("desired-state/ai-gateway/gw.yaml", FindingValueTypeTests.manifests.replacingOccurrences(
                of: "general_settings.dangerously_permit_weak_or_unset_master_key: false",
                with: "general_settings.dangerously_permit_weak_or_unset_master_key: true"), message: "allow a weak key")
            let held = try s.run("apply")
            #expect(held.stdout.contains("needs approval by someone else"), "\(held.stdout)\(held.stderr)")

            try FileManager.default.moveItem(atPath: file, toPath: dir + "/config.away")
            let away = try s.run("apply")
            #expect(away.status == 1, "\(away.stdout)\(away.stderr)")
            #expect(away.stderr.contains("does not exist"), "\(away.stderr)")
            #expect(!FileManager.default.fileExists(atPath: file), "never created")

            try FileManager.default.moveItem(atPath: dir + "/config.away", toPath: file)
            let back = try s.run("apply")
            #expect(back.stdout.contains("needs approval by someone else"), "\(back.stdout)\(back.stderr)")
            #expect(try read(file).contains("dangerously_permit_weak_or_unset_master_key: false"), "still the stronger value")
        }
    }
}
