internal import Synchronization

/// A system that gave no answer within its time: a query sent to a server that stopped
/// answering, or into a network that drops it. Whether the system acted on what was sent is
/// unknown; a fix that ends this way is recorded as failed with what the system was observed to
/// hold afterwards (`Reconciler`), and the next pass observes it again.
public struct NoAnswer: Error, Sendable, CustomStringConvertible {
    /// What was waited for, for the message: "an answer from 127.0.0.1:5432".
    public var awaited: String
    public var limit: Duration

    public init(_ awaited: String, limit: Duration) {
        self.awaited = awaited
        self.limit = limit
    }

    public var description: String {
        "no \(awaited) within \(DurationParser.text(Int(limit.components.seconds))); the wait was abandoned"
    }
}

public enum Deadline {
    /// Runs `body` and returns its result, or throws `NoAnswer` once `limit` has passed.
    ///
    /// `body` runs in a task of its own, so that the caller is free at the deadline even when
    /// `body` waits on something that never resumes (postgres-nio's query written to a channel
    /// that has already closed is never completed, and cancelling it does nothing): that task is
    /// cancelled and left behind. Whatever it holds is the caller's to release (close the
    /// connection): closing a postgres-nio connection fails the query still waiting on it, and
    /// the task ends then (`running` counts it until it does; a query abandoned on a connection
    /// left open stayed, one task and one connection per hang). A cancelled caller cancels
    /// `body` as well.
    public static func run<T: Sendable>(
        _ limit: Duration, awaiting awaited: @autoclosure () -> String, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let awaited = awaited()
        let race = Race<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                race.waiting.withLock { $0 = continuation }
                let timer = Task {
                    try? await Task.sleep(for: limit)
                    guard !Task.isCancelled, let continuation = race.waiting.withLock({ $0.take() }) else { return }
                    race.work.withLock { $0?.cancel() }
                    continuation.resume(throwing: NoAnswer(awaited, limit: limit))
                }
                Self.live.withLock { $0[awaited, default: 0] += 1 }
                let task = Task {
                    defer {
                        Self.live.withLock { live in
                            if let count = live[awaited], count > 1 { live[awaited] = count - 1 } else { live[awaited] = nil }
                        }
                    }
                    let result: Result<T, any Error>
                    do { result = .success(try await body()) } catch { result = .failure(error) }
                    timer.cancel()
                    race.waiting.withLock { $0.take() }?.resume(with: result)
                }
                race.work.withLock { $0 = task }
                if Task.isCancelled { task.cancel() }
            }
        } onCancel: {
            race.work.withLock { $0?.cancel() }
        }
    }

    /// How many bodies run now, by what they await (`awaited`): started and not yet ended,
    /// abandoned at their deadline or not. One left behind that never ended would hold its task,
    /// and what it captured (a connection), for the life of the process.
    public static func running(awaiting awaited: String) -> Int {
        live.withLock { $0[awaited] ?? 0 }
    }

    private static let live = Mutex<[String: Int]>([:])

    /// Who resumes the caller first: the body's end or the deadline.
    private final class Race<T: Sendable>: Sendable {
        let waiting = Mutex<CheckedContinuation<T, any Error>?>(nil)
        let work = Mutex<Task<Void, Never>?>(nil)
    }
}
