internal import Foundation

/// Terminal output: colour only on a terminal and without NO_COLOR.
struct Console: Sendable {
    enum Stream: Sendable { case standardOutput, standardError }

    let colour: Bool

    init() {
        colour = isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
            && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    func print(_ text: String, to stream: Stream = .standardOutput) {
        let data = Data((text + "\n").utf8)
        switch stream {
        case .standardOutput: FileHandle.standardOutput.write(data)
        case .standardError: FileHandle.standardError.write(data)
        }
    }

    func warn(_ text: String) { print(paint("warning:", .yellow) + " " + text, to: .standardError) }
    func error(_ text: String) { print(paint("error:", .red) + " " + text, to: .standardError) }

    enum Colour: String { case red = "31", green = "32", yellow = "33", blue = "34", dim = "2", bold = "1" }

    func paint(_ text: String, _ colour: Colour) -> String {
        self.colour ? "\u{1B}[\(colour.rawValue)m\(text)\u{1B}[0m" : text
    }

    func json(_ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(value) { print(String(decoding: data, as: UTF8.self)) }
    }
}
