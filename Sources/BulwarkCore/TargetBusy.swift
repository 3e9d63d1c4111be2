/// Thrown by a driver's `apply` when another process (another Bulwark, with its own state
/// directory) is changing the target: nothing was changed. The reconciler records nothing for
/// the fix, closes its intent, and lists it in `CycleOutcome.busy` with this message, which says
/// which process holds the target; the drift stays for the next pass.
public struct TargetBusy: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
