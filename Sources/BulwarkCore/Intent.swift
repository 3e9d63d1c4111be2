import Foundation

/// Intent before action: every change to a system is preceded by a durable intent, and the
/// intent is closed only once the change's audit record is committed. A process killed between
/// the two leaves the intent open; the next start resolves it (`Reconciler.recover`), so that no
/// change to a system is ever without its record.
public protocol IntentJournal: Sendable {
    /// Durably records (fsynced) that `record`'s change is about to be made. Throws when it
    /// cannot; then the change must not be made.
    func begin(_ record: AuditRecord) async throws
    /// The record of the intent `id` is committed: the intent is closed. Need not be durable: an
    /// intent found open whose record is already on the audit branch is simply closed.
    func end(_ id: String) async throws
    /// Intents begun and never ended, oldest first.
    func openIntents() async throws -> [AuditRecord]
    /// `begin` for several changes made together (one write of one file): durable together,
    /// with one sync. Throws when it cannot; then none of the changes may be made.
    func begin(_ records: [AuditRecord]) async throws
    /// How many records' intents a pass may make durable together, ahead of their changes: the
    /// next steps of one target share one sync. An intent begun ahead and never carried out (the
    /// pass halted) is closed; one left open by a kill is resolved like any other (`recover`).
    /// 1: each step's intents right before its change (a journal that fences each change).
    var intentsAhead: Int { get }
    /// The changes of these open intents are being made now. Written, not synced: after a kill
    /// the line is there (the kernel holds it); after a power loss it may not be, and recovery
    /// then goes by what it observes.
    func trying(_ ids: [String]) async throws
    /// Open intents with no `trying` line: begun (ahead, or just before a kill) and never
    /// carried out, as far as the journal knows.
    func untriedIntents() async throws -> Set<String>
}

extension IntentJournal {
    public func begin(_ records: [AuditRecord]) async throws {
        for record in records { try await begin(record) }
    }

    public var intentsAhead: Int { 1 }
}

/// A journal in memory: for tests and for callers that hold no state directory. It survives
/// nothing, so production passes use a durable journal.
public actor MemoryJournal: IntentJournal {
    public private(set) var open: [String: AuditRecord] = [:]
    private var order: [String] = []
    /// When set, `begin` throws it (a full disk, a read-only state directory).
    public var failure: String?
    /// Every `begin` call's record ids, in order: which intents were made durable together.
    public private(set) var begun: [[String]] = []
    public nonisolated let intentsAhead: Int

    public init(intentsAhead: Int = 1) {
        self.intentsAhead = max(1, intentsAhead)
    }

    public func fail(with message: String?) { failure = message }

    public func begin(_ record: AuditRecord) throws {
        try begin([record])
    }

    public func begin(_ records: [AuditRecord]) throws {
        if let failure { throw JournalError(failure) }
        for record in records {
            open[record.id] = record
            order.append(record.id)
        }
        begun.append(records.map(\.id))
    }

    private var tried: Set<String> = []

    public func trying(_ ids: [String]) {
        tried.formUnion(ids)
    }

    public func untriedIntents() -> Set<String> {
        Set(open.keys).subtracting(tried)
    }

    public func end(_ id: String) {
        open[id] = nil
        tried.remove(id)
        order.removeAll { $0 == id }
    }

    public func openIntents() -> [AuditRecord] { order.compactMap { open[$0] } }
}

/// The journal cannot be written or read.
public struct JournalError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
