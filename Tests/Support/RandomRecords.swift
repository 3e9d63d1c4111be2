public import BulwarkCore
import Foundation

/// Audit records with every field present or absent, empty and full lists, and text made of
/// every kind of character a JSON writer must get right (quotes, backslashes, slashes, control
/// characters, DEL, combining marks, line separators, emoji, the last code point).
public enum RandomRecords {
    public static let alphabet: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}", "\u{1}",
                                     "\u{1b}", "\u{1f}", "\u{7f}", "\u{80}", "é", "e\u{301}", "\u{2028}", "\u{2029}", "\u{feff}",
                                     "🔥", "👩‍👩‍👧", "中", "<", ">", "&", "'", "%", "\u{10ffff}", "\u{fffd}"]

    public static func text<G: RandomNumberGenerator>(_ rng: inout G) -> String {
        let count = Int.random(in: 0...12, using: &rng)
        return (0..<count).map { _ in alphabet.randomElement(using: &rng)! }.joined()
    }

    public static func record<G: RandomNumberGenerator>(_ rng: inout G) -> AuditRecord {
        func maybe<T>(_ make: () -> T) -> T? { Bool.random(using: &rng) ? make() : nil }
        let detected = Date(timeIntervalSince1970: Double.random(in: 1_500_000_000...2_500_000_000, using: &rng))
        var record = AuditRecord(
            id: text(&rng), controller: text(&rng), target: text(&rng), resource: text(&rng), kind: text(&rng), name: text(&rng),
            severity: Severity.allCases.randomElement(using: &rng)!, risk: Int.random(in: -5...1_000_000, using: &rng),
            mode: Mode.allCases.randomElement(using: &rng)!, decision: Decision.allCases.randomElement(using: &rng)!,
            result: [RemediationResult.verified, .failed, nil].randomElement(using: &rng)!, reason: maybe { text(&rng) },
            changes: (0..<Int.random(in: 0...3, using: &rng)).map { _ in
                .init(property: text(&rng), desired: text(&rng), observedBefore: maybe { text(&rng) }, observedAfter: maybe { text(&rng) })
            },
            detectedAt: detected, appliedAt: maybe { detected.addingTimeInterval(0.5) }, verifiedAt: maybe { detected.addingTimeInterval(1.25) },
            desiredCommit: Bool.random(using: &rng) ? .commit(String(repeating: "ab", count: 20)) : Revision(text(&rng)),
            approver: maybe { text(&rng) }, error: maybe { text(&rng) }, nextWindowAt: maybe { detected.addingTimeInterval(3600) })
        record.notes = maybe { (0..<Int.random(in: 0...2, using: &rng)).map { _ in text(&rng) } }
        record.needsRestart = maybe { text(&rng) }
        record.finding = maybe {
            FindingCitation(id: text(&rng), source: maybe { text(&rng) }, firstSeen: maybe { text(&rng) }, priority: maybe { text(&rng) })
        }
        record.proposal = maybe { text(&rng) }
        return record
    }
}
