/// A failure of the host adapter, naming the path it concerns.
public struct HostError: Error, Sendable, CustomStringConvertible {
    public var path: String?
    public var message: String

    public init(_ message: String, path: String? = nil) {
        self.message = message
        self.path = path
    }

    public var description: String { path.map { "\($0): \(message)" } ?? message }
}
