/// Thrown by a driver whose fix changed the system but whose last step failed: a configuration
/// file written whose reload command failed. The fix is recorded `failed` with `message`, and
/// each change's observed-after value is what the driver found the system holding once it had
/// written it (`observed`, by property; a property left out stays unknown), not "(unset)".
public struct IncompleteFix: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// Property name to the value the system holds now (nil: unset).
    public var observed: [String: String?]

    public init(_ message: String, observed: [String: String?]) {
        self.message = message
        self.observed = observed
    }

    public var description: String { message }
}
