@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

@Suite struct DebianVersionTests {
    func v(_ text: String) throws -> DebianVersion { try DebianVersion(text) }

    @Test func knownOrdersHold() throws {
        // Debian Policy 5.6.12 and dpkg's own test cases.
        let ascending = ["1.0~rc1", "1.0", "1.0-0.1", "1.0-1", "1.0-1+b1", "1.0-1+deb12u1", "1.0a", "1.0+dfsg", "1.0.1",
                         "1.00.2", "1.1~~", "1.1~~a", "1.1~", "1.1", "1.1a", "1.1.0", "2", "10", "0:11", "1:0.1", "1:9.2p1-2",
                         "1:9.2p1-2+deb12u3", "2:0"]
        for (a, b) in zip(ascending, ascending.dropFirst()) {
            #expect(try v(a) < v(b), "\(a) < \(b)")
            #expect(!(try v(b) < v(a)), "not \(b) < \(a)")
        }
        #expect(try v("1.0") == v("0:1.0"))
        #expect(try v("1.0") == v("1.0-0"))
        #expect(try v("1.001") == v("1.1"))
        #expect(try v("1:2:3-4").upstream == "2:3")
        #expect(try v("1.0-1-2").revision == "2")
    }

    @Test func whatDpkgRefusesIsRefused() {
        for bad in ["", "  ", ":1.0", "a:1.0", "1.0-", "a1.0", "1 .0", "1.0_1", "1.0-1_2", "99999999999:1", "-1", "1.0-a=b",
                    String(repeating: "1", count: 300)] {
            #expect(throws: PackagesError.self, "\(bad)") { _ = try DebianVersion(bad) }
        }
    }

    /// Many generated pairs, each compared by this type and by `dpkg --compare-versions`, which
    /// must agree on every one.
    @Test(.timeLimit(.minutes(20))) func everyGeneratedPairComparesAsDpkgDoes() throws {
        var rng = SeededGenerator(seed: 0x5EED_DEB1)
        var pairs: [(String, String)] = []
        for index in 0..<1500 {
            let a = Self.randomVersion(&rng)
            // Half the pairs are near one another (a shared prefix, one part changed): where the
            // rules for `~`, letters and leading zeros decide.
            let b = index % 2 == 0 ? Self.randomVersion(&rng) : Self.mutate(a, &rng)
            pairs.append((a, b))
        }
        let script = """
            while read -r a b; do
              if dpkg --compare-versions "$a" lt "$b"; then echo "<"
              elif dpkg --compare-versions "$a" eq "$b"; then echo "="
              else echo ">"; fi
            done
            """
        let input = pairs.map { "\($0.0) \($0.1)" }.joined(separator: "\n") + "\n"
        let folder = NSTemporaryDirectory() + "/bulwark-versions-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try write(folder + "/pairs", input)
        let result = try run("/bin/sh", ["-c", script + " < " + folder + "/pairs"])
        #expect(result.stderr.isEmpty, "dpkg warned: \(result.stderr.prefix(500))")
        let answers = result.stdout.split(separator: "\n").map(String.init)
        try #require(answers.count == pairs.count, "dpkg answered \(answers.count) of \(pairs.count)")
        var disagreements: [String] = []
        for (pair, answer) in zip(pairs, answers) {
            let order = DebianVersion.compare(try v(pair.0), try v(pair.1))
            let ours = order < 0 ? "<" : order == 0 ? "=" : ">"
            if ours != answer { disagreements.append("\(pair.0) \(answer) \(pair.1), we said \(ours)") }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(10))")
        // The pairs exercised every outcome.
        #expect(Set(answers) == ["<", "=", ">"])
    }

    static func randomVersion(_ rng: inout SeededGenerator) -> String {
        var text = ""
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: text = "\(Int.random(in: 0...3, using: &rng)):"
        case 1: text = "0:"
        default: break
        }
        text += upstream(&rng)
        if Bool.random(using: &rng) {
            // With a revision, the upstream part may contain hyphens.
            if Int.random(in: 0..<5, using: &rng) == 0 { text += "-" + upstream(&rng) }
            text += "-" + part(&rng, alphabet: Array("0123456789abz.+~"), length: 1...5)
        }
        return text
    }

    static func upstream(_ rng: inout SeededGenerator) -> String {
        String(Int.random(in: 0...12, using: &rng)) + part(&rng, alphabet: Array("0123456789.+~abzAZ"), length: 0...6)
    }

    static func part(_ rng: inout SeededGenerator, alphabet: [Character], length: ClosedRange<Int>) -> String {
        var text = ""
        for _ in 0..<Int.random(in: length, using: &rng) {
            // Digits in runs, so that leading zeros and multi-digit numbers appear.
            if Int.random(in: 0..<3, using: &rng) == 0 {
                text += String(repeating: "0", count: Int.random(in: 0...2, using: &rng)) + String(Int.random(in: 0...120, using: &rng))
            } else if let character = alphabet.randomElement(using: &rng) {
                text.append(character)
            }
        }
        // A revision must not be empty; `1` is a valid one.
        return text.isEmpty && length.lowerBound > 0 ? "1" : text
    }

    /// `a` with one character changed, added or removed (kept valid).
    static func mutate(_ a: String, _ rng: inout SeededGenerator) -> String {
        var characters = Array(a)
        let position = Int.random(in: 0..<characters.count, using: &rng)
        let alphabet = Array("0123456789.~+ab")
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: if let c = alphabet.randomElement(using: &rng) { characters.insert(c, at: min(position + 1, characters.count)) }
        case 1: if characters.count > 1, position > 0 { characters.remove(at: position) }
        default: if position > 0, let c = alphabet.randomElement(using: &rng) { characters[position] = c }
        }
        let text = String(characters)
        return (try? DebianVersion(text)) != nil ? text : a
    }
}

