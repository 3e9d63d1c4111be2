package import BulwarkCore
import Foundation
import Glibc
internal import CDispatch

/// The intent journal in a state directory: `intents.log`, one JSON line per event. A `begin`
/// line (with an empty `tried` list: this version writes `tried` lines) is appended and
/// fdatasynced before the change it announces is made; a `tried` line (not synced) right before
/// the change; an `end` line (not synced) once the change's record is committed. A line cut
/// short by a crash is ignored, and removed by the next append: its begin was never durable, so
/// its change was never made. A whole line that does not read is damage (`damage`).
///
/// One writer: the state directory's lock (`StateLock`) keeps a second process out.
///
/// Group commit: targets worked on in parallel each begin their intents, and one `fdatasync`
/// makes every line written before it started durable. A `begin` returns only after a sync that
/// started after its lines were written, so "intent before action" holds as with a sync per
/// call; the sync runs off the actor (and off Swift's cooperative threads), so other targets
/// keep appending meanwhile and the next sync covers them all. After a failed sync nothing is
/// known durable any more (the kernel may have dropped the dirty pages): every later `begin` fails.
package actor FileJournal: IntentJournal {
    private struct Line: Codable {
        package var begin: AuditRecord?
        package var end: String?
        package var tried: [String]?

        enum CodingKeys: String, CodingKey { case begin, end, tried }

        init(begin: AuditRecord? = nil, end: String? = nil, tried: [String]? = nil) {
            self.begin = begin
            self.end = end
            self.tried = tried
        }

        /// Any key, to find the ones a line should not have.
        struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        /// Refuses a key this journal never writes: a begin line whose key is damaged
        /// (`{"bxgin": …, "tried": []}`) read as an empty `tried` line, and its begin was lost
        /// in silence.
        init(from decoder: any Decoder) throws {
            let keys = try decoder.container(keyedBy: AnyKey.self).allKeys
            if let unknown = keys.first(where: { CodingKeys(rawValue: $0.stringValue) == nil }) {
                throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: [unknown], debugDescription: "not a key of the journal"))
            }
            let container = try decoder.container(keyedBy: CodingKeys.self)
            begin = try container.decodeIfPresent(AuditRecord.self, forKey: .begin)
            end = try container.decodeIfPresent(String.self, forKey: .end)
            tried = try container.decodeIfPresent([String].self, forKey: .tried)
        }
    }

    package let path: String
    private var descriptor: Int32 = -1
    private var openIDs: Set<String> = []
    /// Open intents with a `tried` line, as `openIntents` read them and later lines added.
    private var triedIDs: Set<String> = []
    /// Whether `openIntents` has read the file: only then is it known that nothing else is open.
    private var loaded = false
    /// Lines appended so far, and how many of them a finished `fdatasync` covers.
    private var written: UInt64 = 0
    private var synced: UInt64 = 0
    /// Whether an `fdatasync` is running; callers that need it wait in `waiting`.
    private var syncing = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    /// Why the last sync failed: then no later line can be called durable.
    private var syncFailure: String?

    /// A target's next steps, up to this many records, have their intents made durable with one
    /// sync: a pass of many small fixes waits for the disk once per batch, not once per fix. A kill
    /// leaves at most this many intents of one target open that were not yet tried; `recover`
    /// observes each and records what it finds.
    package nonisolated let intentsAhead: Int

    package init(stateDirectory: String, intentsAhead: Int = 32) {
        path = stateDirectory + "/intents.log"
        self.intentsAhead = max(1, intentsAhead)
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    private func handle() throws(JournalError) -> Int32 {
        if descriptor >= 0 { return descriptor }
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw JournalError("cannot open \(path): \(String(cString: strerror(errno)))") }
        descriptor = fd
        return fd
    }

    /// Whether the file may end in part of a line (a write cut short by a full disk or a kill):
    /// unknown until the first write looks, and after a short write here.
    private var mayEndMidLine = true

    /// Removes a line cut short (a write cut short by a full disk or a kill), so that the next
    /// one starts on its own: appended to the partial one, an intent would not decode, and a
    /// fix made after it would be missing on restart. Its begin was never durable, so its change
    /// was never made; and with it gone, every whole line that does not read is damage
    /// (`damage`), never a write cut short.
    private func endPartialLine(_ fd: Int32) throws(JournalError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw JournalError("cannot read \(path): \(String(cString: strerror(errno)))") }
        var end = Int64(info.st_size)
        var chunk = [UInt8](repeating: 0, count: 4096)
        // Back to the byte after the last line break (or the start).
        search: while end > 0 {
            let start = max(0, end - Int64(chunk.count))
            let count = Int(end - start)
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(start)) }
            guard n == count else { throw JournalError("cannot read \(path): \(String(cString: strerror(errno)))") }
            for index in stride(from: count - 1, through: 0, by: -1) where chunk[index] == 10 {
                end = start + Int64(index) + 1
                break search
            }
            end = start
        }
        if end < Int64(info.st_size), ftruncate(fd, off_t(end)) != 0 {
            throw JournalError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        mayEndMidLine = false
    }

    /// A line's JSON, as `JSONEncoder` with `[.sortedKeys, .withoutEscapingSlashes]` writes it.
    static func lineBytes(begin record: AuditRecord?, end id: String?, tried: [String]? = nil) -> [UInt8] {
        var members: [(String, PrettyJSON.Value)] = []
        if let record { members.append(("begin", record.jsonValue)) }
        if let id { members.append(("end", .string(id))) }
        if let tried { members.append(("tried", .array(tried.map { .string($0) }))) }
        return PrettyJSON.bytes(.object(members), pretty: false) + [10]
    }

    private func append(_ line: Line) throws(JournalError) {
        let bytes = Self.lineBytes(begin: line.begin, end: line.end, tried: line.tried)
        let fd = try handle()
        if mayEndMidLine { try endPartialLine(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = errno == ENOSPC ? "the state directory is full" : String(cString: strerror(errno))
                // A partial line is harmless (ignored on reading), but nothing may follow it: the
                // next append removes it first.
                if offset > 0 { mayEndMidLine = true }
                throw JournalError("cannot write \(path): \(reason)")
            }
            offset += n
        }
        written += 1
    }

    /// Returns once every line up to the `line`th is durable: after a sync that started when
    /// they were all written, this caller's or one it waited for.
    private func makeDurable(upTo line: UInt64) async throws(JournalError) {
        while synced < line {
            if let syncFailure { throw JournalError("cannot sync \(path): \(syncFailure)") }
            if syncing {
                await withCheckedContinuation { waiting.append($0) }
                continue
            }
            syncing = true
            let covered = written
            let fd = try handle()
            let failure = await Self.syncData(fd)
            syncing = false
            if let failure { syncFailure = failure } else { synced = max(synced, covered) }
            let waiters = waiting
            waiting = []
            for waiter in waiters { waiter.resume() }
        }
    }

    /// `fdatasync` on a thread of its own, so that neither this actor nor Swift's cooperative
    /// threads wait for the disk; returns why it failed, or nil.
    private static func syncData(_ fd: Int32) async -> String? {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let code = fdatasync(fd) == 0 ? 0 : errno
                continuation.resume(returning: code == 0 ? nil : String(cString: strerror(code)))
            }
        }
    }

    package func begin(_ record: AuditRecord) async throws {
        try await begin([record])
    }

    /// Several intents, made durable with one sync (shared with the other targets' intents
    /// written meanwhile).
    package func begin(_ records: [AuditRecord]) async throws {
        if let syncFailure { throw JournalError("cannot sync \(path): \(syncFailure)") }
        // `tried: []` marks a begin written by a version that writes `tried` lines.
        for record in records { try append(Line(begin: record, tried: [])) }
        try await makeDurable(upTo: written)
        for record in records { openIDs.insert(record.id) }
    }

    package func end(_ id: String) throws {
        try append(Line(end: id))
        openIDs.remove(id)
        triedIDs.remove(id)
    }

    package func trying(_ ids: [String]) throws {
        try append(Line(tried: ids))
        triedIDs.formUnion(ids)
    }

    package func untriedIntents() throws -> Set<String> {
        if !loaded { _ = try openIntents() }
        return openIDs.subtracting(triedIDs)
    }

    /// Whether `line` is the start of a JSON object cut short: it opens with `{` and ends
    /// inside that object (or inside a string of it). A line whose object closes before its end,
    /// or that is no object, was not cut short: it is damaged.
    static func isCutShort(_ line: some Collection<UInt8>) -> Bool {
        guard line.first == UInt8(ascii: "{") else { return false }
        var depth = 0
        var inString = false
        var escaped = false
        for byte in line {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 { return false }
            default: break
            }
        }
        return true
    }

    package func openIntents() throws -> [AuditRecord] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var open: [String: AuditRecord] = [:]
        var order: [String] = []
        var tried: Set<String> = []
        let decoder = JSONDecoder()
        let lines = data.split(separator: 10, omittingEmptySubsequences: false)
        var damagedLines = 0
        for (number, line) in lines.enumerated() where !line.isEmpty {
            guard let entry = try? decoder.decode(Line.self, from: Data(line)) else {
                // The last part, with no line break after it, is a write cut short: its begin was
                // never durable, so its change was never made; so is a line that stops inside its
                // object (an earlier version ended a line cut short with a line break, and went
                // on after it; cut just after an inner brace, it still ends in one). A whole line
                // that does not read (bit rot, an edit) may have announced a change that was
                // made: never passed over in silence.
                if number < lines.count - 1, !Self.isCutShort(line) { damagedLines += 1 }
                continue
            }
            // A line that says nothing (`{}`): a begin may be what was lost.
            guard entry.begin != nil || entry.end != nil || entry.tried != nil else {
                damagedLines += 1
                continue
            }
            if let record = entry.begin {
                if open[record.id] == nil { order.append(record.id) }
                open[record.id] = record
                // Written by a version without `tried` lines: whether it was tried is unknown,
                // so it counts as tried (recorded, never closed unrecorded).
                if entry.tried == nil { tried.insert(record.id) }
            } else if let id = entry.end {
                open[id] = nil
                tried.remove(id)
            } else if let ids = entry.tried {
                tried.formUnion(ids.filter { open[$0] != nil })
            }
        }
        openIDs = Set(open.keys)
        triedIDs = tried
        loaded = true
        if damagedLines > 0, damage == nil {
            // Kept as it is before anything appends to it or `compact` empties it.
            let kept = path + ".damaged-\(Int(Date().timeIntervalSince1970))"
            let copied = (try? StateFile.replace(kept, with: [UInt8](data))) != nil
            damage = "\(damagedLines) line\(damagedLines == 1 ? "" : "s") of \(path) could not be read: a fix "
                + "\(damagedLines == 1 ? "it" : "they") announced may have been made without its record; "
                + (copied ? "the journal is kept as \(kept); " : "")
                + "compare the targets with the audit branch"
        }
        return order.compactMap { open[$0] }
    }

    /// Why the journal could not be read whole (`openIntents` found lines that do not read), or
    /// nil: said as an error by the pass that read it (which then exits 1), once.
    package private(set) var damage: String?

    /// Empties the journal when no intent is open, so it never grows with history.
    package func compact() {
        guard loaded, openIDs.isEmpty, FileManager.default.fileExists(atPath: path) else { return }
        if let fd = try? handle() { _ = ftruncate(fd, 0) }
    }
}
