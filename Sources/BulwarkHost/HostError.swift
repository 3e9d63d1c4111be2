/// A failure of the host adapter, naming the path it concerns.
public struct HostError: Error, Sendable, CustomStringConvertible {
    public var path: String?
    public var message: String
    var code: Code = .general

    enum Code: Sendable {
        case general
        /// The file or folder does not exist.
        case missing
        /// The file changed between Bulwark's read and its write: re-read and plan again.
        case conflict
    }

    public init(_ message: String, path: String? = nil) {
        self.message = message
        self.path = path
    }

    init(_ message: String, path: String? = nil, code: Code) {
        self.init(message, path: path)
        self.code = code
    }

    public var description: String { path.map { "\($0): \(message)" } ?? message }
}
