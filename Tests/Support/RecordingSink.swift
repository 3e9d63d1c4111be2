public import BulwarkCore
internal import Synchronization

/// An audit sink that keeps records in memory, at the `AuditSink` seam; the git-backed one is
/// tested end to end against real repositories.
public final class RecordingSink: AuditSink {
    private let stored = Mutex<[AuditRecord]>([])

    public init() {}

    public var records: [AuditRecord] { stored.withLock { $0 } }

    public func contains(recordID: String) async throws -> Bool { stored.withLock { $0.contains { $0.id == recordID } } }

    public func write(_ record: AuditRecord) async throws -> String {
        stored.withLock { $0.append(record) }
        return "commit-\(record.id)"
    }
}
