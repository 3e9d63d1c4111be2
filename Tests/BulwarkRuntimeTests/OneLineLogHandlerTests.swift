@testable import BulwarkRuntime
import BulwarkCore
import Logging
import Synchronization
import Testing

/// Log lines on a stream stay one line each, with no control character, separator or
/// bidirectional control from a value they quote.
@Suite struct OneLineLogHandlerTests {
    /// What reached the stream's handler (a hand-written one at the `LogHandler` seam).
    final class Lines: Sendable {
        let events = Mutex<[(message: String, metadata: Logger.Metadata)]>([])
    }

    struct Recording: LogHandler {
        let lines: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            lines.events.withLock { $0.append((event.message.description, merged)) }
        }
    }

    static func text(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let item): item.description
        case .array(let items): items.map(text).joined(separator: ",")
        case .dictionary(let metadata): metadata.map { $0.key + "=" + text($0.value) }.joined(separator: ",")
        }
    }

    static func isOneSafeLine(_ text: String) -> Bool { !text.unicodeScalars.contains(where: TerminalText.isUnsafe) }

    @Test func aHostileValueNeitherForgesALineNorReachesTheTerminal() throws {
        let lines = Lines()
        var logger = Logger(label: "test") { _ in OneLineLogHandler(Recording(lines: lines)) }
        logger[metadataKey: "target"] = .string("web-1\u{1B}]0;owned\u{07}")
        logger.warning("findings refused: \("bad\ninfo bulwark: forged line \u{202E}txt")",
                       metadata: ["reason": .string("x\u{9B}2J"), "list": .array([.string("a\rb")]),
                                  "nested": .dictionary(["k\u{2028}": .stringConvertible(42)])])
        let event = try #require(lines.events.withLock { $0.first })
        #expect(Self.isOneSafeLine(event.message), "\(event.message.debugDescription)")
        #expect(event.message == #"findings refused: bad\ninfo bulwark: forged line \u{202E}txt"#)
        for (key, value) in event.metadata {
            #expect(Self.isOneSafeLine(key) && Self.isOneSafeLine(Self.text(value)), "\(key): \(Self.text(value).debugDescription)")
        }
        #expect(event.metadata["target"].map(Self.text) == #"web-1\u{1B}]0;owned\u{07}"#)
    }

    @Test func plainLinesAreLoggedAsTheyAre() throws {
        let lines = Lines()
        let logger = Logger(label: "test") { _ in OneLineLogHandler(Recording(lines: lines)) }
        logger.info("fixed web-1 SSHDConfig/root-login — verified in 12 ms", metadata: ["target": "web-1", "count": .stringConvertible(3)])
        let event = try #require(lines.events.withLock { $0.first })
        #expect(event.message == "fixed web-1 SSHDConfig/root-login — verified in 12 ms")
        #expect(event.metadata["target"].map(Self.text) == "web-1" && event.metadata["count"].map(Self.text) == "3")
    }
}
