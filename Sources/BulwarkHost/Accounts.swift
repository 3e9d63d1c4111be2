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
/// at all (no password, no lock, no expiry). After the name and hash come numbers, each read as
/// `glibcNumber` reads one, or empty; the days of change, minimum and maximum are required (a
/// line may not end where one is expected), and a line that stops after them (blanks aside) is
/// complete; the flag, last, must end the line. So a CRLF line (`…:7:::\r`) is skipped whole:
/// its carriage return is no number.
struct ShadowLine {
    var name: Substring
    var hash: Substring
    /// The expiry day, nil where the field is empty (or -1).
    var expiresDay: Int?

    private struct Skipped: Error {}

    /// `line` as `LineFile.glibcContent` gives it.
    init?(_ line: Substring) {
        let fields = line.splitBytes(at: ":")
        guard fields.count >= 2, let first = fields[0].utf8.first, first != UInt8(ascii: "+"), first != UInt8(ascii: "-") else {
            return nil
        }
        /// Field `index` as glibc's INT_FIELD_MAYBE_NULL reads it: -1 where empty. glibc skips
        /// the line where it ends before the field, or the field is no number.
        func number(_ index: Int) throws(Skipped) -> Int {
            guard index < fields.count, !(fields[index].isEmpty && index == fields.count - 1) else { throw Skipped() }
            if fields[index].isEmpty { return -1 }
            guard let value = glibcNumber(fields[index]) else { throw Skipped() }
            return Int(Int32(bitPattern: value))
        }
        var expire = -1
        do {
            for index in 2...4 { _ = try number(index) }  // last change, minimum, maximum
            let oldForm = fields.count == 5 || fields.count == 6 && fields[5].utf8.allSatisfy(isCSpace)
            if !oldForm {
                // Blanks before the warning are skipped first: a field of blanks alone is empty.
                if !fields[5].utf8.allSatisfy(isCSpace) { _ = try number(5) }
                _ = try number(6)  // inactivity
                expire = try number(7)
                // The flag, where the line goes on after the expiry's `:`, ends the line.
                if fields.count > 9 || fields.count == 9 && !fields[8].isEmpty && glibcNumber(fields[8]) == nil { throw Skipped() }
            }
        } catch {
            return nil
        }
        name = fields[0]
        hash = fields[1]
        expiresDay = expire == -1 ? nil : expire
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
