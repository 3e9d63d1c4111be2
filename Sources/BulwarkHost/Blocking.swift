internal import Foundation

/// Work that blocks its thread (fsync, waiting for a child process) run on a thread of its own
/// rather than on one of Swift's cooperative threads, of which there is one per core: targets
/// worked on in parallel then wait for the disk and for sshd side by side instead of in turn.
/// One short-lived thread per call; the callers bound how many run at once (the reconciler's
/// parallel targets).
enum Blocking {
    static func run<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.start()
        }
    }
}
