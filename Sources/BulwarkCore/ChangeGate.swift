import Dispatch
import Synchronization

/// The moment a fix's first change to a system is made. A driver that announces its changes
/// (`ResourceDriver.announcesChanges`) passes the gate right before its first irreversible step
/// (the rename of a file into place), after everything that may still refuse the fix (reading
/// again under the lock, the guard, `sshd -t`); the reconciler's gate then writes the step's
/// `tried` line in the intent journal (`IntentJournal.trying`), once for every intent of the step.
///
/// So a process killed while a fix is still being checked leaves intents never tried, which
/// recovery closes without a record when it finds nothing changed; marked tried before the
/// check, they were recorded `interrupted` though the system was never touched.
///
/// When the line cannot be written, the gate throws (and goes on throwing): the driver makes no
/// change, and the reconciler halts the pass as when it cannot mark the step tried itself.
public final class ChangeGate: Sendable {
    /// The gate of the step being carried out; nil outside a step whose drivers announce changes
    /// (they then change nothing unannounced: the reconciler marked the step tried before).
    @TaskLocal public static var current: ChangeGate?

    private enum State: Sendable {
        case closed
        case passed
        case failed(String)
    }

    private let state = Mutex(State.closed)
    private let announce: @Sendable () async throws -> Void

    /// `announce` is run by the first `pass`.
    public init(announce: @escaping @Sendable () async throws -> Void) {
        self.announce = announce
    }

    /// The gate could not be passed: the intent journal cannot be written.
    public struct Closed: Error, Sendable, CustomStringConvertible {
        public var reason: String
        public var description: String {
            "the intent journal cannot be written (\(reason)); no change is made without its intent marked tried"
        }
    }

    /// Whether a driver passed the gate (its change may have been made).
    public var passed: Bool {
        state.withLock { if case .passed = $0 { true } else { false } }
    }

    /// Why the gate could not be passed, nil when it was or was never tried.
    public var failure: String? {
        state.withLock { if case .failed(let reason) = $0 { reason } else { nil } }
    }

    private func settled() throws(Closed) -> Bool {
        switch state.withLock({ $0 }) {
        case .passed: return true
        case .failed(let reason): throw Closed(reason: reason)
        case .closed: return false
        }
    }

    /// Announces the change (the first time), or throws `Closed` when that failed.
    public func pass() async throws(Closed) {
        guard try !settled() else { return }
        do {
            try await announce()
            state.withLock { if case .closed = $0 { $0 = .passed } }
        } catch {
            let reason = "\(error)"
            state.withLock { if case .closed = $0 { $0 = .failed(reason) } }
        }
        _ = try settled()
    }

    /// `pass`, from a thread that may wait: the host adapter's writes run on threads of their own
    /// (`Blocking`), never on Swift's cooperative ones, and a write waits there for its `tried`
    /// line anyway. A task is started for the journal (an actor) and waited for: the one way from
    /// synchronous code to it.
    public func passWaiting() throws(Closed) {
        guard try !settled() else { return }
        let done = DispatchSemaphore(value: 0)
        Task {
            try? await self.pass()
            done.signal()
        }
        done.wait()
        _ = try settled()
    }

    /// For the reconciler, once a driver that announces its changes came back from a fix that
    /// may have changed the system (it returned, or threw an `IncompleteFix`) without passing
    /// the gate: it should not (`ResourceDriver.announcesChanges`), though a fix that found
    /// nothing left to write may. The `tried` line is written now, before the fix is verified
    /// and recorded, so that a kill from here on leaves a tried intent (recorded by recovery with
    /// what it finds), never an untried one closed without a record. A line that cannot be
    /// written here stops nothing: whatever was changed is recorded all the same. Returns whether
    /// the driver had passed the gate itself (or had found it closed); false when passed here.
    @discardableResult
    public func passLate() async -> Bool {
        guard case .closed = state.withLock({ $0 }) else { return true }
        lateCount.add(1, ordering: .relaxed)
        if (try? await announce()) != nil {
            state.withLock { if case .closed = $0 { $0 = .passed } }
        }
        return false
    }

    /// How many times `passLate` found the gate not passed by the driver.
    public var late: Int { lateCount.load(ordering: .relaxed) }
    private let lateCount = Atomic(0)

    /// `passWaiting` on the current gate; nothing when there is none.
    public static func passCurrent() throws(Closed) {
        try current?.passWaiting()
    }
}
