internal import BulwarkCore
internal import Foundation
package import Logging
internal import Glibc
internal import CDispatch

/// Logs to systemd's journal through its native protocol (systemd.journal-fields(7), the
/// "native protocol" of journald): one datagram per entry, each field `NAME=value` on its line,
/// or, for a value that holds a newline, `NAME`, a newline, its length as 64-bit little endian,
/// the bytes and a newline. Every metadata key becomes a field of its own (`target` →
/// `BULWARK_TARGET`), so `journalctl -u bulwark BULWARK_DECISION=blocked` finds the blocked
/// changes without parsing text.
///
/// When the journal cannot be reached (a full socket buffer, journald restarting) the entry
/// goes to standard error instead, so that nothing is lost silently.
package struct JournalLogHandler: LogHandler {
    package static let defaultSocket = "/run/systemd/journal/socket"
    /// Entries above this are cut: a datagram has a size limit, and no log line needs more.
    static let valueLimit = 48 * 1024

    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .info
    let label: String
    let socket: String
    let identifier: String

    package init(label: String, socket: String = Self.defaultSocket, identifier: String = "bulwark") {
        self.label = label
        self.socket = socket
        self.identifier = identifier
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Whether standard error is connected to the journal: systemd sets `JOURNAL_STREAM` to the
    /// `device:inode` of the stream it gave the service, and a process whose stderr is still that
    /// stream may log natively instead (sd_journal_print(3) recommends exactly this check).
    package static func stderrIsJournal(environment: [String: String]) -> Bool {
        guard let stream = environment["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    package func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("MESSAGE", event.message.description),
            ("PRIORITY", String(Self.priority(event.level))),
            ("SYSLOG_IDENTIFIER", identifier),
            ("BULWARK_LOGGER", label),
            ("CODE_FILE", event.file),
            ("CODE_LINE", String(event.line)),
            ("CODE_FUNC", event.function),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() {
            guard let value = merged[key] else { continue }
            fields.append((Self.fieldName(key), "\(value)"))
        }
        let payload = Self.encode(fields)
        do {
            try UnixDatagram.send(payload, to: socket)
        } catch {
            let line = "\(event.level) \(label): \(event.message)"
                + (merged.isEmpty ? "" : " " + merged.keys.sorted().map { "\($0)=\(merged[$0].map { "\($0)" } ?? "")" }.joined(separator: " "))
            // One line, as `OneLineLogHandler` writes them: the journal keeps a value's newlines, a stream does not.
            FileHandle.standardError.write(Data((TerminalText.escapedLine(line, limit: Self.valueLimit) + "\n").utf8))
        }
    }

    /// syslog priorities, as the journal's PRIORITY field takes them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// A journal field name: upper-case letters, digits and underscores, not starting with an
    /// underscore or a digit (those are the journal's trusted fields), at most 64 characters.
    static func fieldName(_ key: String) -> String {
        let body = key.uppercased().unicodeScalars.map { scalar -> Character in
            ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) ? Character(scalar) : "_"
        }
        return String(("BULWARK_" + String(body)).prefix(64))
    }

    static func encode(_ fields: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (name, text) in fields {
            var value = Array(text.utf8)
            if value.count > valueLimit { value = Array(value.prefix(valueLimit)) + Array(" […]".utf8) }
            out += Array(name.utf8)
            if value.contains(UInt8(ascii: "\n")) {
                out.append(UInt8(ascii: "\n"))
                withUnsafeBytes(of: UInt64(value.count).littleEndian) { out += $0 }
                out += value
            } else {
                out.append(UInt8(ascii: "="))
                out += value
            }
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }
}
