@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// An intent line is written without `JSONEncoder`, and must stay the bytes the encoder wrote:
/// a journal written before, or by another version, is read after a crash, and a line read back
/// must be the record that was begun.
@Suite struct FileJournalLineTests {
    /// The line's shape as the journal declared it for the encoder.
    struct Line: Codable {
        var begin: AuditRecord?
        var end: String?
        var tried: [String]?
    }

    func encoded(_ line: Line) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(line)) + [10]
    }

    @Test func aLineIsTheBytesJSONEncoderWrote() throws {
        var rng = SystemRandomNumberGenerator()
        var differing: [String] = []
        for _ in 0..<2_000 {
            let record = RandomRecords.record(&rng)
            let id = RandomRecords.text(&rng)
            let tried = [id, RandomRecords.text(&rng)]
            for (begin, end, tried) in [(record, nil, nil), (record, nil, []), (nil, id, nil), (nil, nil, tried)]
                as [(AuditRecord?, String?, [String]?)] {
                let written = FileJournal.lineBytes(begin: begin, end: end, tried: tried)
                if written != (try encoded(Line(begin: begin, end: end, tried: tried))) {
                    differing.append(String(decoding: written, as: UTF8.self))
                }
            }
            let decoded = try JSONDecoder().decode(Line.self, from: Data(FileJournal.lineBytes(begin: record, end: nil)))
            var begun = record
            begun.proposal = nil  // not part of the record's JSON (a trailer only)
            #expect(decoded.begin == begun)
        }
        #expect(differing.isEmpty, "\(differing.count) differ; first: \(differing.first ?? "")")
    }
}

/// Which unreadable lines of a journal are writes cut short (no damage) and which are damaged.
@Suite struct FileJournalCutShortTests {
    @Test func aLineEndingInsideItsObjectIsCutShort() {
        for line in [#"{"begin":{"id":"01J"#, #"{"begin":{"changes":[{"desired":"0640","property":"mode"}"#,
                     #"{"end":"01J}{"#, #"{"tried":["01J\"}"#, "{"] {
            #expect(FileJournal.isCutShort(Array(line.utf8)), "\(line)")
        }
    }

    @Test func aLineWhoseObjectClosesOrIsNoObjectIsDamaged() {
        for line in [#"{"begin":{"id":"01J"}garbage}"#, #"{"end":"01J"}x"#, #"{"begin":{}}}"#, "garbage", #"["end"]"#, ""] {
            #expect(!FileJournal.isCutShort(Array(line.utf8)), "\(line)")
        }
    }
}

/// What `openIntents` counts as damage in a journal on disk.
@Suite struct FileJournalDamageTests {
    @Test(arguments: [#"{"bxgin":{"id":"01J"}}"#, #"{"bxgin":{"id":"01J"},"tried":[]}"#, #"{"begin":{"id":"01J"}}garbage"#, "{}"])
    func aLineThatSaysNothingTheJournalWritesIsDamage(line: String) async throws {
        try await withTemporaryDirectory { dir in
            try write(dir + "/intents.log", line + "\n{\"end\":\"01J\"}\n", mode: 0o600)
            let journal = FileJournal(stateDirectory: dir)
            #expect(try await journal.openIntents().isEmpty)
            #expect(await journal.damage?.hasPrefix("1 line of ") == true, "\(line)")
        }
    }

    @Test func aLineCutShortByAnEarlierVersionIsNoDamage() async throws {
        try await withTemporaryDirectory { dir in
            try write(dir + "/intents.log", #"{"begin":{"changes":[{"desired":"0640","property":"mode"}"# + "\n{\"end\":\"01J\"}\n", mode: 0o600)
            let journal = FileJournal(stateDirectory: dir)
            #expect(try await journal.openIntents().isEmpty)
            #expect(await journal.damage == nil)
        }
    }
}
