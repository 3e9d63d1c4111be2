@testable import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A record's values go into its commit message one line each: every control character, line or
/// paragraph separator and bidirectional control becomes a space, checked on the bytes rather
/// than through the Unicode tables.
@Suite struct AuditMessageTextTests {
    /// The definition through the Unicode tables.
    static func byCategory(_ text: String) -> String {
        String(text.unicodeScalars.map { TerminalTextTests.byTables($0) ? " " : Character($0) })
    }

    @Test func everyScalarIsJudgedAsItsUnicodeCategoryJudgesIt() {
        // Every plane-0 scalar and the first of plane 1, singly and between letters.
        for value in UInt32(0)..<0x1_1000 {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let text = "a" + String(scalar) + "b"
            #expect(AuditRecord.oneLine(text) == Self.byCategory(text), "U+\(String(value, radix: 16))")
        }
    }

    @Test func randomValuesComeOutAsTheTablesMadeThem() {
        var generator = SystemRandomNumberGenerator()
        let pool: [Unicode.Scalar] = ["a", "-", " ", "\n", "\r", "\t", "\u{0}", "\u{7f}", "\u{80}", "\u{85}", "\u{9f}",
                                      "\u{a0}", "\u{2028}", "\u{2029}", "\u{301}", "é", "日", "\u{1F600}", "\u{FEFF}", "\u{1b}"]
        for _ in 0..<5_000 {
            var scalars = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...12, using: &generator) { scalars.append(pool.randomElement(using: &generator)!) }
            let text = String(scalars)
            #expect(AuditRecord.oneLine(text) == Self.byCategory(text), "\(text.unicodeScalars.map { $0.value })")
        }
    }

    @Test func aNewlineInAValueCannotForgeATrailer() {
        var rng = SystemRandomNumberGenerator()
        var record = RandomRecords.record(&rng)
        // Its own decision is not the one the reason tries to forge (a random record can be waived).
        record.decision = .applied
        record.reason = "fine\nBulwark-Decision: waived\u{85}Bulwark-Result: verified"
        let message = record.commitMessage
        #expect(message.contains("Reason: fine Bulwark-Decision: waived Bulwark-Result: verified\n"))
        #expect(!message.split(separator: "\n").contains { $0.hasPrefix("Bulwark-Decision: waived") })
    }

    /// Review (session 38): a property's name went into the message as written, and a ConfigFile
    /// key path with a right-to-left override (`general_settings.\u{202E}eulav`) passed
    /// validation and showed reversed in a plain `git log`. Names are made one line as values are.
    @Test func aPropertysNameIsOneLineToo() {
        var rng = SystemRandomNumberGenerator()
        var record = RandomRecords.record(&rng)
        record.changes = [.init(property: "general_settings.\u{202E}eulav", desired: "1", observedBefore: "0", observedAfter: nil),
                          .init(property: "x\nBulwark-Result: verified", desired: "1", observedBefore: "0", observedAfter: nil)]
        let message = record.commitMessage
        #expect(!message.unicodeScalars.contains("\u{202E}"), "\(message.debugDescription)")
        #expect(message.contains("- general_settings. eulav: 0 -> 1"), "\(message)")
        #expect(message.contains("- x Bulwark-Result: verified: 0 -> 1"), "\(message)")
    }
}
