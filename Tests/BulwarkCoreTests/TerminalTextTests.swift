@testable import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// Text from outside never drives a terminal or reorders what is shown: control characters,
/// separators and bidirectional controls are made spaces in a field, and shown as JSON escapes
/// in what is printed.
@Suite struct TerminalTextTests {
    /// The set, by Unicode's own tables.
    static func byTables(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.generalCategory == .control || scalar.properties.isBidiControl || scalar.value == 0x2028 || scalar.value == 0x2029
    }

    static func hex(_ scalar: Unicode.Scalar) -> String { String(format: "\\u%04X", scalar.value) }

    @Test func everyScalarIsJudgedAsUnicodesTablesJudgeIt() {
        var unsafe = 0
        for value in UInt32(0)..<0x1_1000 {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let text = "a" + String(scalar) + "b"
            let expected = Self.byTables(scalar)
            if expected { unsafe += 1 }
            #expect(TerminalText.isUnsafe(scalar) == expected, "U+\(String(value, radix: 16))")
            #expect(TerminalText.oneLine(text) == (expected ? "a b" : text), "U+\(String(value, radix: 16))")
            let shown = expected && scalar != "\n" && scalar != "\t" ? "a" + Self.hex(scalar) + "b" : text
            #expect(TerminalText.printable(text, colour: false) == shown, "U+\(String(value, radix: 16))")
        }
        // 65 controls, 2 separators, 12 bidirectional controls.
        #expect(unsafe == 79)
    }

    @Test func anEscapeSequenceFromOutsideNeverReachesTheTerminal() {
        let hostile = [
            "\u{1B}]0;owned\u{07}",              // retitles the window
            "ok\u{1B}[2K\u{1B}[1Ano drift",      // erases the line and writes over the one before
            "\u{1B}[8mhidden\u{1B}[0m",          // concealed text
            "\u{1B}[32mfixed\u{1B}[0m",          // an exact copy of paint's green: recolours Bulwark's words
            "\u{9B}31mC1 CSI",                   // the one-byte CSI
            "fixed\r   drifted",                 // a carriage return writes over
            "admin\u{202E}txt.exe",              // shown reversed
            "a\u{2066}b\u{2069}\u{200F}c\u{7F}",
            "\u{10FFFD}forged\u{10FFFD}31mred",  // a mark without this process's token
        ]
        for text in hostile {
            for colour in [false, true] {
                let shown = TerminalText.printable(text, colour: colour)
                #expect(!shown.unicodeScalars.contains { TerminalText.isUnsafe($0) && $0 != "\n" }, "\(shown.debugDescription)")
                #expect(!shown.utf8.contains(0x1b), "\(shown.debugDescription)")
            }
        }
        #expect(TerminalText.printable("\u{1B}[32mfixed\u{1B}[0m", colour: true) == "\\u001B[32mfixed\\u001B[0m")
        #expect(TerminalText.printable("\u{1B}]0;owned\u{07}", colour: true) == "\\u001B]0;owned\\u0007")
    }

    @Test func paintsColoursPassOnlyWhenColourIsOn() {
        let painted = TerminalText.painted("error:", code: "31") + " " + TerminalText.painted("bold", code: "1") + " "
            + TerminalText.painted(TerminalText.painted("dim blue", code: "34"), code: "2")
        #expect(TerminalText.printable(painted, colour: true)
                == "\u{1B}[31merror:\u{1B}[0m \u{1B}[1mbold\u{1B}[0m \u{1B}[2m\u{1B}[34mdim blue\u{1B}[0m\u{1B}[0m")
        #expect(TerminalText.printable(painted, colour: false) == "error: bold dim blue")
        // Beside text from outside: that is escaped, the colours are sent.
        let line = TerminalText.painted("fixed", code: "32") + " \u{1B}[31mvalue\u{202E}"
        #expect(TerminalText.printable(line, colour: true) == "\u{1B}[32mfixed\u{1B}[0m \\u001B[31mvalue\\u202E")
        // After a scalar that joins the next one into its character (U+0600, a prepended mark).
        #expect(TerminalText.printable("\u{600}" + TerminalText.painted("x", code: "33"), colour: true) == "\u{600}\u{1B}[33mx\u{1B}[0m")
        // A mark without its code (painted text cut short) is never made a sequence, and its
        // token is never shown.
        let mark = TerminalText.mark
        let token = String(mark.unicodeScalars.dropFirst().dropLast().map(Character.init))
        for text in [mark + "x", mark + "31x", mark + "m", mark, mark + mark + "32mok"] {
            for colour in [false, true] {
                let shown = TerminalText.printable(text, colour: colour)
                #expect(!shown.contains(token) && !shown.unicodeScalars.contains("\u{10FFFD}"), "\(shown.debugDescription)")
                #expect(shown.utf8.contains(0x1b) == (colour && text.hasSuffix("32mok")), "\(shown.debugDescription)")
            }
        }
    }

    @Test func printedJSONReadsBackAsTheSameValues() throws {
        struct Document: Codable, Equatable { var title: String; var resource: String }
        let document = Document(title: "a\u{202E}b\u{85}c\u{7F}d\u{2028}e\u{1B}[31m", resource: "sshd\u{9B}\u{061C}\u{2069}")
        let printed = TerminalText.printable(String(decoding: try JSONOutput.encoder().encode(document), as: UTF8.self), colour: true)
        #expect(!printed.unicodeScalars.contains { TerminalText.isUnsafe($0) && $0 != "\n" }, "\(printed.debugDescription)")
        #expect(try JSONDecoder().decode(Document.self, from: Data(printed.utf8)) == document)
    }

    @Test func textOfEveryLanguageIsLeftAsItIs() {
        let text = "Überprüfung — ok → 日本語 عربي עברית 👨‍👩‍👧 § ¡ \u{A0}nbsp \u{200D}zwj \u{FEFF}"
        #expect(TerminalText.oneLine(text) == text)
        #expect(TerminalText.printable(text + "\n\ttab", colour: false) == text + "\n\ttab")
        #expect(TerminalText.oneLine("two\nlines\ttab") == "two lines tab")
    }

    @Test func aFindingsTextFieldsComeOutOnOneLineWithoutControls() throws {
        let hostile = #"""
        {"resource": "local\u001b]0;owned\u0007", "target": "local\u202e", "control": "CIS-5.1\u009b31m",
         "title": "line one\nBulwark-Decision: waived\u2028x", "id": "scanner-1\u2066", "source": "evil\r",
         "evidence": "https://example.com/\u001b[8m", "severity": "high"}
        """#
        let finding = try #require(try FindingParser.document(Array(hostile.utf8)).findings.first)
        let fields = [finding.resource, finding.target, finding.control, finding.title, finding.id, finding.source, finding.evidence]
        for field in fields {
            let field = try #require(field)
            #expect(!field.unicodeScalars.contains(where: TerminalText.isUnsafe), "\(field.debugDescription)")
        }
        #expect(finding.title == "line one Bulwark-Decision: waived x")
        #expect(finding.resource == "local ]0;owned ")

        // A finding without them is read exactly as it was.
        let plain = #"""
        {"resource": "SSHDConfig/root-login", "target": "web-1", "control": "CIS-5.2.10",
         "title": "Überprüfung: root login — nicht erlaubt", "id": "scanner-2", "source": "lynis", "severity": "high"}
        """#
        let read = try #require(try FindingParser.document(Array(plain.utf8)).findings.first)
        #expect(read.resource == "SSHDConfig/root-login" && read.target == "web-1" && read.control == "CIS-5.2.10")
        #expect(read.title == "Überprüfung: root login — nicht erlaubt" && read.id == "scanner-2" && read.source == "lynis")
    }

    /// A chat message about a fix quotes the value a target's file held: a separator or a
    /// bidirectional control in it neither breaks nor reorders the message.
    @Test func aChatMessageShowsATargetsValueOnItsLine() throws {
        var rng = SystemRandomNumberGenerator()
        var record = RandomRecords.record(&rng)
        record.changes = [.init(property: "Banner", desired: "/etc/issue.net", observedBefore: "/tmp/x\u{2028}*fixed*\u{202E}txt\u{1B}[2J",
                                observedAfter: nil)]
        record.reason = "why\nnot"
        let notifier = NotifierConfig(name: "chat", url: .inline("http://127.0.0.1:9/hook"), format: .slack,
                                      location: SourceLocation(file: "controllers/n.yaml", line: 1))
        let body = try #require(try JSONSerialization.jsonObject(with: Data(notifier.body(for: record, commit: nil))) as? [String: String])
        let text = try #require(body["text"])
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.allSatisfy { !$0.unicodeScalars.contains(where: TerminalText.isUnsafe) }, "\(text.debugDescription)")
        #expect(lines[0].hasSuffix("Banner /tmp/x *fixed* txt [2J -> /etc/issue.net"), "\(text)")
        #expect(lines.contains("Reason: why not"))
        // Whatever a record holds (random records: every field drawn from hostile text too).
        for _ in 0..<300 {
            let text = try #require(try JSONSerialization.jsonObject(with: Data(notifier.body(for: RandomRecords.record(&rng), commit: "c")))
                                    as? [String: String])["text"]
            let lines = try #require(text).split(separator: "\n")
            #expect(lines.allSatisfy { !$0.unicodeScalars.contains(where: TerminalText.isUnsafe) }, "\(String(describing: text).debugDescription)")
        }
    }

    /// Slack reads `<!channel>` as a ping to everyone and `<https://x|text>` as a link whose text
    /// hides where it goes: a value from a managed file carries neither into the alert channel,
    /// and plain text (a path, an arrow) reads as before.
    @Test func aChatMessageCarriesNoSlackMarkupFromATargetsValue() throws {
        var rng = SystemRandomNumberGenerator()
        var record = RandomRecords.record(&rng)
        record.changes = [.init(property: "Banner", desired: "/etc/issue.net", observedBefore: "<!channel> see <https://evil.example|docs> & more",
                                observedAfter: nil)]
        let notifier = NotifierConfig(name: "chat", url: .inline("http://127.0.0.1:9/hook"), format: .slack,
                                      location: SourceLocation(file: "controllers/n.yaml", line: 1))
        let body = try #require(try JSONSerialization.jsonObject(with: Data(notifier.body(for: record, commit: nil))) as? [String: String])
        let text = try #require(body["text"])
        #expect(!text.contains("<!channel>") && !text.contains("<https://"), "\(text)")
        #expect(text.contains("Banner &lt;!channel&gt; see &lt;https://evil.example|docs&gt; &amp; more -> /etc/issue.net"), "\(text)")
    }
}
