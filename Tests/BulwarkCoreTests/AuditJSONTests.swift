@testable import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// An audit record's file is written without `JSONEncoder`, and must stay the very bytes the
/// encoder wrote (files already on audit branches, `verify-audit`, readers elsewhere): every
/// field present or absent, empty and full lists, and text with every kind of character.
@Suite struct AuditJSONTests {
    static let alphabet = RandomRecords.alphabet
    static func record<G: RandomNumberGenerator>(_ rng: inout G) -> AuditRecord { RandomRecords.record(&rng) }

    @Test func theFileIsTheBytesJSONEncoderWrote() {
        var rng = SystemRandomNumberGenerator()
        var differing: [String] = []
        for _ in 0..<3_000 {
            let record = Self.record(&rng)
            let written = record.json()
            let encoded = record.encoderJSON()
            if written != encoded {
                differing.append(String(decoding: written, as: UTF8.self) + "\n--- against ---\n" + String(decoding: encoded, as: UTF8.self))
            }
        }
        #expect(differing.isEmpty, "\(differing.count) differ; first:\n\(differing.first ?? "")")
    }

    /// Every single character of the alphabet in every field that holds text, alone.
    @Test func eachCharacterIsWrittenAsTheEncoderWritesIt() throws {
        for character in Self.alphabet {
            var record = AuditRecord.refusal(revision: .commit(String(repeating: "cd", count: 20)), errors: [character],
                                             at: Date(timeIntervalSince1970: 1_795_860_000))
            record.notes = [character, ""]
            record.finding = FindingCitation(id: character, source: nil, firstSeen: character, priority: nil)
            #expect(record.json() == record.encoderJSON(), "\(character.unicodeScalars.map { String($0.value, radix: 16) })")
            #expect(try AuditRecord(json: record.json()) == record)
        }
    }
}
