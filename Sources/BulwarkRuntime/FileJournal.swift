package import BulwarkCore
package import Foundation

/// The intent journal in a state directory: `intents.log`, one JSON line per event. A `begin`
/// line is appended and fdatasynced before the change it announces is made; an `end` line is
/// appended (not synced) once the change's record is committed. A line cut short by a crash is
/// ignored: its begin was never durable, so its change was never made.
///
/// One writer: the state directory's lock (`StateLock`) keeps a second process out.
package actor FileJournal: IntentJournal {
    private struct Line: Codable {
        package var begin: AuditRecord?
        package var end: String?
    }

    package let path: String
    private var descriptor: Int32 = -1
    private var openIDs: Set<String> = []
    /// Whether `openIntents` has read the file: only then is it known that nothing else is open.
    private var loaded = false

    package init(stateDirectory: String) {
        path = stateDirectory + "/intents.log"
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    private func handle() throws(JournalError) -> Int32 {
        if descriptor >= 0 { return descriptor }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw JournalError("cannot open \(path): \(String(cString: strerror(errno)))") }
        descriptor = fd
        return fd
    }

    private func append(_ line: Line, sync: Bool) throws(JournalError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(line) else { throw JournalError("cannot encode an intent") }
        let bytes = Array(data) + [10]
        let fd = try handle()
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = errno == ENOSPC ? "the state directory is full" : String(cString: strerror(errno))
                // A partial line is harmless (ignored on reading), but nothing may follow it on the same line.
                if offset > 0 { _ = [UInt8(10)].withUnsafeBytes { write(fd, $0.baseAddress, 1) } }
                throw JournalError("cannot write \(path): \(reason)")
            }
            offset += n
        }
        if sync, fdatasync(fd) != 0 {
            throw JournalError("cannot sync \(path): \(String(cString: strerror(errno)))")
        }
    }

    package func begin(_ record: AuditRecord) throws {
        try append(Line(begin: record), sync: true)
        openIDs.insert(record.id)
    }

    /// Several intents, made durable with one sync.
    package func begin(_ records: [AuditRecord]) throws {
        for (index, record) in records.enumerated() {
            try append(Line(begin: record), sync: index == records.count - 1)
        }
        for record in records { openIDs.insert(record.id) }
    }

    package func end(_ id: String) throws {
        try append(Line(end: id), sync: false)
        openIDs.remove(id)
    }

    package func openIntents() throws -> [AuditRecord] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var open: [String: AuditRecord] = [:]
        var order: [String] = []
        let decoder = JSONDecoder()
        for line in data.split(separator: 10) {
            guard let entry = try? decoder.decode(Line.self, from: Data(line)) else { continue }
            if let record = entry.begin {
                if open[record.id] == nil { order.append(record.id) }
                open[record.id] = record
            } else if let id = entry.end {
                open[id] = nil
            }
        }
        openIDs = Set(open.keys)
        loaded = true
        return order.compactMap { open[$0] }
    }

    /// Empties the journal when no intent is open, so it never grows with history.
    package func compact() {
        guard loaded, openIDs.isEmpty, FileManager.default.fileExists(atPath: path) else { return }
        if let fd = try? handle() { _ = ftruncate(fd, 0) }
    }
}
