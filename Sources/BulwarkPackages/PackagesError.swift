internal import BulwarkCore

/// A failure of the package kind, naming the file or command it concerns. One bounded line:
/// a message can quote a dpkg database's or apt's own text, which must not forge lines in a log
/// or a record. A URL in it (apt names its sources) has its credentials redacted.
public struct PackagesError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The file (`/var/lib/dpkg/status`) or program (`apt-get`) it concerns.
    public var subject: String?

    public init(_ message: String, subject: String? = nil) {
        self.message = message
        self.subject = subject
    }

    public var description: String {
        Self.oneLine(Redaction.urls(in: subject.map { "\($0): \(message)" } ?? message), limit: 2048)
    }

    static func oneLine(_ text: String, limit: Int) -> String {
        var result = ""
        for (index, scalar) in text.unicodeScalars.enumerated() {
            guard index < limit else { return result + "…" }
            if TerminalText.isUnsafe(scalar) {
                result += scalar == "\n" ? " / " : " "
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
