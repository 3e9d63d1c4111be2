package import BulwarkCore
package import BulwarkGit
package import Foundation

/// The verified fixes of the local audit branch's recent commits, kept in the state directory
/// (`recent-fixes`), so that the flap breaker's history does not read every recent record's
/// commit, tree and JSON file in every process (2,400 of them after one fleet pass: half of an
/// in-sync `plan`).
///
/// The file says which audit commit it is up to date with (`head`) and since when it holds
/// every verified fix (`since`, a commit time). A reader walks the branch from its head back
/// **until it meets that commit or the window's start**, whichever comes first, reading from
/// git (as before) only the commits after it: normally none. So:
/// - a file that names a commit not on the branch (another clone's, a rewritten branch, a
///   replay) is never met: the whole window is read from git and the file written again;
/// - a stale file (an older head) costs the commits after it, which are read from git;
/// - a file that covers less than the window (`since` after its start), a damaged one (its
///   checksum or a line does not check out) or a missing one is rebuilt from git.
/// What the file holds can only add to what git says (entries older than the window are
/// filtered by commit time, never by position), never take away from it, except by a forgery
/// that keeps the checksum: the file is as trusted as the state clone it sits beside (the
/// same owner, mode 0600, under the same lock), whose audit branch such a writer could
/// rewrite as well.
///
/// Format (UTF-8, one line each; fields percent-encoded: `%`, space and control bytes):
///
///     bulwark-recent-fixes 2
///     head <commit hex, or none>
///     since <unix seconds>
///     trust <none, or the digest of the trust that checked the records: `RecordTrust.digest`>
///     <commit hex> <commit time, s> <fix time, ms> <record id> <target> <kind> <name> <property> <desired> [<property> <desired> …]
///     …
///     end <entries> <FNV-1a of every byte before this line, hex>
package struct RecentFixIndex: Sendable, Equatable {
    package struct Change: Sendable, Equatable {
        package var property: String
        package var desired: String
    }

    /// One verified-fix record.
    package struct Entry: Sendable, Equatable {
        package var commit: ObjectID
        /// The commit's committer time, in whole seconds (as git stores it).
        package var committed: Int64
        /// When the fix was made, as the record states it (`verifiedAt ?? appliedAt`), in milliseconds.
        package var at: Int64
        package var id: String
        package var target: String
        package var kind: String
        package var name: String
        package var changes: [Change]

        /// The entry of `record` committed as `commit` at `committed`, or nil when it is not a verified fix.
        /// `id`: the record's id as its commit's `Bulwark-Id` trailer states it (what the flap
        /// history counts each record once by); the record's own by default.
        package init?(_ record: AuditRecord, commit: ObjectID, committed: Date, id: String? = nil) {
            guard record.decision == .applied, record.result == .verified, let at = record.verifiedAt ?? record.appliedAt,
                  let ms = RecentFixIndex.milliseconds(at), let seconds = RecentFixIndex.seconds(committed) else { return nil }
            self.init(commit: commit, committed: seconds, at: ms, id: id ?? record.id, target: record.target, kind: record.kind,
                      name: record.name, changes: record.changes.map { Change(property: $0.property, desired: $0.desired) })
        }

        package init(commit: ObjectID, committed: Int64, at: Int64, id: String, target: String, kind: String, name: String,
                     changes: [Change]) {
            self.commit = commit
            self.committed = committed
            self.at = at
            self.id = id
            self.target = target
            self.kind = kind
            self.name = name
            self.changes = changes
        }

        /// Adds its fixes to `history`, as `FixHistory.add` adds a record's.
        package func add(to history: inout FixHistory) {
            let resource = ResourceID(kind: kind, name: name)
            let date = Date(timeIntervalSince1970: Double(at) / 1000)
            for change in changes {
                history.fixes[FixHistory.Key(target: target, resource: resource, property: change.property), default: []]
                    .append(FixHistory.Fix(at: date, desired: change.desired))
            }
        }
    }

    package static let fileName = "recent-fixes"
    static let header = "bulwark-recent-fixes 2"
    /// A file larger than this is not read (a window of fixes is far smaller): rebuilt from git.
    static let maxSize = 256 << 20

    /// The audit commit the file is up to date with; nil: the branch did not exist (a walk
    /// never meets it, so such a file is only used to add the first records to).
    package var head: ObjectID?
    /// Every verified fix of a commit on `head`'s history committed at or after this time
    /// (unix seconds) is in `entries`, as a walk from `head` back to that time finds them.
    package var since: Int64
    /// Which records it took in: `none` (every record), or the digest of the trust that checked
    /// them (`RecordTrust.digest`). A file built by a run without keys held whatever fixes anyone
    /// pushed (made up, they made the flap breaker escalate a drift instead of fixing it); a run
    /// with keys does not use it.
    package var trust: String
    /// Oldest first.
    package var entries: [Entry]

    package init(head: ObjectID?, since: Int64, trust: String = "none", entries: [Entry]) {
        self.head = head
        self.since = since
        self.trust = trust
        self.entries = entries
    }

    // MARK: - Reading and writing

    /// The file in `directory`, or nil when there is none or it does not check out.
    package static func read(in directory: String) -> RecentFixIndex? {
        CheckedLineFile.read(directory + "/" + fileName, maxSize: maxSize).flatMap(parse)
    }

    /// The index `bytes` state, or nil when they are not one whole, well-formed file.
    static func parse(_ bytes: [UInt8]) -> RecentFixIndex? {
        guard let (lines, count) = CheckedLineFile.lines(bytes) else { return nil }
        guard lines.count == count + 4, String(decoding: lines[0], as: UTF8.self) == header else { return nil }
        let headLine = String(decoding: lines[1], as: UTF8.self)
        let sinceLine = String(decoding: lines[2], as: UTF8.self)
        let headHex = String(headLine.dropFirst(5))
        guard headLine.hasPrefix("head "), headHex == "none" || ObjectID(hex: headHex) != nil,
              sinceLine.hasPrefix("since "), let since = Int64(sinceLine.dropFirst(6)),
              let trust = CheckedLineFile.trust(lines[3]) else { return nil }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for line in lines[4...] {
            guard let entry = parseEntry(line) else { return nil }
            entries.append(entry)
        }
        return RecentFixIndex(head: ObjectID(hex: headHex), since: since, trust: trust, entries: entries)
    }

    static func parseEntry(_ line: ArraySlice<UInt8>) -> Entry? {
        let fields = line.split(separator: 0x20, omittingEmptySubsequences: false)
        // Seven fields and at least one change; changes come in pairs.
        guard fields.count >= 9, (fields.count - 7) % 2 == 0, let commit = ObjectID(hex: String(decoding: fields[0], as: UTF8.self)),
              let committed = Int64(String(decoding: fields[1], as: UTF8.self)), let at = Int64(String(decoding: fields[2], as: UTF8.self)),
              let id = decode(fields[3]), let target = decode(fields[4]), let kind = decode(fields[5]), let name = decode(fields[6])
        else { return nil }
        var changes: [Change] = []
        var index = 7
        while index + 1 < fields.count {
            guard let property = decode(fields[index]), let desired = decode(fields[index + 1]) else { return nil }
            changes.append(Change(property: property, desired: desired))
            index += 2
        }
        return Entry(commit: commit, committed: committed, at: at, id: id, target: target, kind: kind, name: name, changes: changes)
    }

    /// The file's bytes.
    package func serialized() -> [UInt8] {
        var bytes = Array("\(Self.header)\nhead \(head?.hex ?? "none")\nsince \(since)\ntrust \(trust)\n".utf8)
        for entry in entries {
            bytes += "\(entry.commit.hex) \(entry.committed) \(entry.at) ".utf8
            Self.encode(entry.id, into: &bytes)
            for field in [entry.target, entry.kind, entry.name] {
                bytes.append(0x20)
                Self.encode(field, into: &bytes)
            }
            for change in entry.changes {
                bytes.append(0x20)
                Self.encode(change.property, into: &bytes)
                bytes.append(0x20)
                Self.encode(change.desired, into: &bytes)
            }
            bytes.append(0x0a)
        }
        CheckedLineFile.end(&bytes, entries: entries.count)
        return bytes
    }

    /// Replaces the file in `directory` (temporary file renamed over it; not synced: after a
    /// crash it is the old file, the new one, or none, and each of those is safe).
    package func write(in directory: String) throws {
        try StateFile.replace(directory + "/" + Self.fileName, with: serialized())
    }

    // MARK: - Fields

    /// Percent-encodes `%`, space and control bytes (so no field holds a separator), and marks
    /// the empty string `%`.
    static func encode(_ text: String, into bytes: inout [UInt8]) {
        if text.isEmpty {
            bytes.append(UInt8(ascii: "%"))
            return
        }
        let digits = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            if byte == UInt8(ascii: "%") || byte == 0x20 || byte < 0x20 || byte == 0x7f {
                bytes += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 15)]]
            } else {
                bytes.append(byte)
            }
        }
    }

    static func decode(_ field: ArraySlice<UInt8>) -> String? {
        guard !field.isEmpty else { return nil }
        if field.count == 1, field.first == UInt8(ascii: "%") { return "" }
        guard field.contains(UInt8(ascii: "%")) else { return String(validating: field, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(field.count)
        var index = field.startIndex
        while index < field.endIndex {
            let byte = field[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < field.endIndex,
                      let high = hexValue(field[index + 1]), let low = hexValue(field[index + 2]) else { return nil }
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(byte)
                index += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    /// Whole seconds, down (as git stores a commit's time) or, with `up`, up (the first whole
    /// second at or after `date`: what a walk back to `date` covers).
    static func seconds(_ date: Date, up: Bool = false) -> Int64? {
        let value = date.timeIntervalSince1970.rounded(up ? .up : .down)
        guard value.isFinite, abs(value) < 1e15 else { return nil }
        return Int64(value)
    }

    static func milliseconds(_ date: Date) -> Int64? {
        let value = (date.timeIntervalSince1970 * 1000).rounded()
        guard value.isFinite, abs(value) < 1e15 else { return nil }
        return Int64(value)
    }
}
