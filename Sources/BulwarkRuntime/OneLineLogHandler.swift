internal import BulwarkCore
package import Logging

/// Log lines written to a stream (a terminal, `docker logs`, a file) stay one line each, without
/// a control character, separator or bidirectional control: a value from outside in a message or
/// in metadata (a scanner's text, a managed file's text quoted by an error, a request's field)
/// can neither forge a second line nor drive the terminal that shows it. Each is escaped as Swift
/// writes it (`\n`, `\u{1B}`, `\u{202E}`) and cut at `limit` characters (`TerminalText.escapedLine`).
package struct OneLineLogHandler<Wrapped: LogHandler>: LogHandler {
    package var wrapped: Wrapped
    /// Characters of one message or one metadata value.
    package static var limit: Int { 16 * 1024 }

    package init(_ wrapped: Wrapped) { self.wrapped = wrapped }

    package var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    package var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = Self.safe(newValue) }
    }

    package var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue }
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: Self.safe(key)] = newValue.map(Self.safe) }
    }

    package func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: Self.safe(event.message.description))
        event.metadata = event.metadata.map(Self.safe)
        wrapped.log(event: event)
    }

    static func safe(_ text: String) -> String { TerminalText.escapedLine(text, limit: limit) }

    static func safe(_ metadata: Logger.Metadata) -> Logger.Metadata {
        Dictionary(metadata.map { (safe($0.key), safe($0.value)) }, uniquingKeysWith: { first, _ in first })
    }

    static func safe(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): .string(safe(text))
        case .stringConvertible(let item): .string(safe(item.description))
        case .array(let items): .array(items.map(safe))
        case .dictionary(let metadata): .dictionary(safe(metadata))
        }
    }
}
