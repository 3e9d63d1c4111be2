internal import BulwarkCore
/// The root's own `etc/passwd` and `etc/group`, so names resolve as they do on that host,
/// not on the machine Bulwark runs on.
struct AccountDatabase: Sendable {
    var users: [(name: String, id: UInt32)] = []
    var groups: [(name: String, id: UInt32)] = []

    /// Parsed per root, reused while both files are unchanged (see `ParseCache`): a fleet host's
    /// five FileMode resources read them once, not each.
    ///
    /// Also under the target's lock, where a fix is built from settled reads: an entry is
    /// stored only when neither file had changed for two seconds before it was read
    /// (`unlessRecent`), and used only while both have the very device, inode, size and times
    /// they had then, at the paths a walk resolves now. Any write since moves one of them, and a
    /// link pointed elsewhere changes the path, so a hit is the bytes a settled read would
    /// return now, without its read: each FileMode fix read both files again
    /// (two of every three file reads in a pass of 20,000 FileMode resources).
    static let cache = ParseCache<AccountDatabase>()

    init(root: HostRoot) throws {
        // Under the lock the paths are walked again (links judged as a read judges them): a
        // link on the way pointed elsewhere since the entry was stored is a miss.
        let locked = HostLock.isHeld(root)
        let resolved = locked ? Set([try root.resolve("etc/passwd"), try root.resolve("etc/group")]) : nil
        if let cached = Self.cache.lookup(root.path, paths: resolved, settledOnly: locked) {
            self = cached
            return
        }
        var snapshot = FileSnapshot()
        // Before the reads: a change after this is seen at the next lookup.
        snapshot.take(try root.resolve("etc/passwd"))
        snapshot.take(try root.resolve("etc/group"))
        users = try Self.read("etc/passwd", root)
        groups = try Self.read("etc/group", root)
        Self.cache.store(self, for: root.path, readAt: snapshot, unlessRecent: true)
    }

    private static func read(_ path: String, _ root: HostRoot) throws -> [(name: String, id: UInt32)] {
        guard let text = try FileIO.readText(path, in: root) else { return [] }
        // By bytes, as glibc reads the file (see `splitBytes`).
        return Substring(text).splitBytes(at: "\n", omittingEmpty: true).compactMap { line in
            let fields = LineFile.glibcContent(line).splitBytes(at: ":")
            guard fields.count >= 3, fields[0].utf8.first != UInt8(ascii: "#"), let id = glibcNumber(fields[2]) else { return nil }
            return (String(fields[0]), id)
        }
    }

    func userName(_ id: UInt32) -> String { users.first { $0.id == id }?.name ?? String(id) }
    func groupName(_ id: UInt32) -> String { groups.first { $0.id == id }?.name ?? String(id) }
    func userID(_ name: String) -> UInt32? { users.first { $0.name.isSameBytes(name) }?.id ?? UInt32(name) }
    func groupID(_ name: String) -> UInt32? { groups.first { $0.name.isSameBytes(name) }?.id ?? UInt32(name) }
}

/// One `etc/shadow` line as glibc 2.36's nss_files reads it (`files-spwd.c`, checked case by
/// case against `sgetspent`): nil for a line it skips, which gives its account no shadow entry
/// at all (no password, no lock, no expiry). It takes the name and hash up to each `:`, then
/// numbers: each may be empty, may start with C blanks and a `+`, must fit in 32 bits (past
/// that the line is skipped; `sgetspent` itself never returns), and must end at a `:` or at
/// the line's end (`-0` is 0, other negative numbers are past 32 bits); the days of change, minimum and maximum are required, and a line that stops
/// after them (blanks aside) is complete. The flag, last, must end the line. So a CRLF line
/// (`…:7:::\r`) is skipped whole: its carriage return is no number.
struct ShadowLine {
    var name: Substring
    var hash: Substring
    /// The expiry day, nil where the field is empty (or -1).
    var expiresDay: Int?

    private struct Skipped: Error {}

    /// `line` as `LineFile.glibcContent` gives it.
    init?(_ line: Substring) {
        let bytes = Array(line.utf8), colon = UInt8(ascii: ":")
        var at = 0
        /// The text up to the next `:` (taken) or the end; whether a `:` ended it.
        func text() -> (ArraySlice<UInt8>, Bool) {
            let start = at
            while at < bytes.count, bytes[at] != colon { at += 1 }
            defer { if at < bytes.count { at += 1 } }
            return (bytes[start..<at], at < bytes.count)
        }
        /// glibc's INT_FIELD_MAYBE_NULL: -1 for an empty field.
        func number(last: Bool) throws(Skipped) -> Int {
            guard at < bytes.count else { throw Skipped() }  // more input was expected
            var end = at
            while end < bytes.count, isCSpace(bytes[end]) { end += 1 }
            var negative = false
            if end < bytes.count, bytes[end] == UInt8(ascii: "+") || bytes[end] == UInt8(ascii: "-") {
                negative = bytes[end] == UInt8(ascii: "-")
                end += 1
            }
            let digits = end
            var value: UInt32 = 0
            while end < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[end]) {
                let (times, overflow) = value.multipliedReportingOverflow(by: 10)
                let (sum, carry) = times.addingReportingOverflow(UInt32(bytes[end] - UInt8(ascii: "0")))
                guard !overflow, !carry else { throw Skipped() }
                value = sum
                end += 1
            }
            let converted = end > digits
            if converted, negative, value != 0 { throw Skipped() }  // -0 is 0; -1 is past 32 bits
            if !converted { end = at }  // nothing converted: the field's text is judged from its start
            if end == bytes.count {
                at = end
            } else if bytes[end] == colon, !last {
                at = end + 1
            } else {
                throw Skipped()
            }
            return converted ? Int(Int32(bitPattern: value)) : -1
        }
        let (name, afterName) = text()
        guard afterName, let first = name.first, first != UInt8(ascii: "+"), first != UInt8(ascii: "-") else { return nil }
        let (hash, _) = text()
        do {
            for _ in 0..<3 { _ = try number(last: false) }  // last change, minimum, maximum
            var expire = -1
            if bytes[at...].contains(where: { !isCSpace($0) }) {
                while isCSpace(bytes[at]) { at += 1 }
                _ = try number(last: false)  // warning
                _ = try number(last: false)  // inactivity
                expire = try number(last: false)
                if at < bytes.count { _ = try number(last: true) }  // flag
            }
            self.name = Substring(decoding: name, as: UTF8.self)
            self.hash = Substring(decoding: hash, as: UTF8.self)
            self.expiresDay = expire == -1 ? nil : expire
        } catch {
            return nil
        }
    }
}

/// A uid or gid field as glibc's nss_files reads it (`INT_FIELD`, strtoul within 32 bits): C
/// blanks first, a `+` or `-`, then at least one digit, and nothing after; `-0` is 0, and any
/// other negative number or one past 32 bits is no number. `UInt32(" 0")` is nil, and a line
/// glibc reads as uid 0 was no account to the guards.
func glibcNumber(_ field: Substring) -> UInt32? {
    var bytes = field.utf8.drop(while: isCSpace)
    var negative = false
    if let sign = bytes.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
        negative = sign == UInt8(ascii: "-")
        bytes = bytes.dropFirst()
    }
    guard !bytes.isEmpty else { return nil }
    var value: UInt32 = 0
    for byte in bytes {
        guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
        let (times, overflow) = value.multipliedReportingOverflow(by: 10)
        let (sum, carry) = times.addingReportingOverflow(UInt32(byte - UInt8(ascii: "0")))
        guard !overflow, !carry else { return nil }
        value = sum
    }
    return negative && value != 0 ? nil : value
}
