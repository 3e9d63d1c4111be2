internal import BulwarkCore

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
        /// Another process holds the target's lock.
        case busy
    }

    public init(_ message: String, path: String? = nil) {
        self.message = message
        self.path = path
    }

    init(_ message: String, path: String? = nil, code: Code) {
        self.init(message, path: path)
        self.code = code
    }

    /// A safety guard, asked again at the write under the target's lock, blocks a change the
    /// plan allowed: what it judges (accounts, keys, sshd's configuration) changed since.
    /// Throws it where `verdict` blocks, unless its reason is `approved`: the block a person
    /// approved the change past (the plan's reason may go on to say what it was judged with).
    static func refuseAtTheWrite(_ verdict: GuardVerdict, approved: String?) throws(HostError) {
        guard let reason = verdict.blockReason else { return }
        // No approval reaches past a guard that could not run.
        if let approved, !verdict.isUnjudged, GuardBlock.approves(approved, reason: reason) { return }
        let plan = approved.map { "the approval was of another block: \($0)" } ?? "the plan, which allowed it, read the host before another change"
        throw HostError("refused at the write: \(reason) (judged again under the target's lock; \(plan))")
    }

    /// One bounded line: a path or message can quote a host file's own text (an `Include`
    /// pattern, a key), which must not forge lines in a log or a record.
    public var description: String {
        let text = path.map { "\(TerminalText.escapedLine($0, limit: 512)): \(message)" } ?? message
        return TerminalText.escapedLine(text, limit: 2048)
    }
}
