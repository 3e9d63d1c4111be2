internal import Synchronization

/// Answers kept by their question, at most `limit` at a time (when full, it starts again):
/// the guards' answers within one plan (`HostAccounts.PlanFacts`, the sshd guard's verdicts)
/// and pure answers for the process (`SSHClientDefaults`). An answer is worked out outside the
/// lock; two threads asking the same new question may both work it out.
final class Memo<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let answers = Mutex<[Key: Value]>([:])
    private let limit: Int

    init(limit: Int) { self.limit = max(1, limit) }

    /// The answer kept for `key`, or `answer()`'s, kept.
    func value(_ key: Key, _ answer: () throws -> Value) rethrows -> Value {
        if let known = answers.withLock({ $0[key] }) { return known }
        let value = try answer()
        answers.withLock { table in
            if table.count >= limit { table.removeAll(keepingCapacity: true) }
            table[key] = value
        }
        return value
    }
}
