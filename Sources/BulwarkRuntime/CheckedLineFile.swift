package import Foundation

/// The framing the state directory's line indexes share (`RecentFixIndex`, `DriftEpisodeIndex`):
/// lines, then `end <entries> <FNV-1a of every byte before this line, 16 hex digits>`. A file
/// that is not whole (cut short, edited, damaged) does not check out, and is rebuilt from git.
enum CheckedLineFile {
    /// The bytes of the file at `path`, or nil when there is none, it cannot be read or it is
    /// larger than `maxSize`. Opened without following a link and without blocking: a FIFO put
    /// in its place does not hang the reader.
    static func read(_ path: String, maxSize: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { raw in raw.baseAddress.map { Foundation.read(fd, $0, raw.count) } ?? -1 }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { break }
            bytes += chunk[..<n]
            guard bytes.count <= maxSize else { return nil }
        }
        return bytes
    }

    /// The lines before the end line, and how many entries it says, when `bytes` end in an end
    /// line whose checksum covers them; else nil.
    static func lines(_ bytes: [UInt8]) -> (lines: [ArraySlice<UInt8>], count: Int)? {
        guard bytes.last == 0x0a else { return nil }
        let body = bytes.dropLast()
        let endStart = body.lastIndex(of: 0x0a).map { $0 + 1 } ?? 0
        let endFields = bytes[endStart..<(bytes.count - 1)].split(separator: 0x20, omittingEmptySubsequences: false)
        guard endFields.count == 3, String(decoding: endFields[0], as: UTF8.self) == "end",
              let count = Int(String(decoding: endFields[1], as: UTF8.self)), count >= 0,
              endFields[2].count == 16, let checksum = UInt64(String(decoding: endFields[2], as: UTF8.self), radix: 16),
              AuditIndex.checksum(bytes[..<endStart]) == checksum else { return nil }
        var lines = bytes[..<endStart].split(separator: 0x0a, omittingEmptySubsequences: false)
        guard lines.last?.isEmpty == true else { return nil }
        lines.removeLast()
        return (lines, count)
    }

    /// The value of a `trust <digest>` line (the trust its records were taken in under:
    /// `RecordTrust.digest`, or `none`), or nil when `line` is not one: printable ASCII, no blank.
    static func trust(_ line: ArraySlice<UInt8>) -> String? {
        let text = String(decoding: line, as: UTF8.self)
        let trust = text.dropFirst("trust ".count)
        guard text.hasPrefix("trust "), !trust.isEmpty, trust.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return nil }
        return String(trust)
    }

    /// Appends the end line for `entries` entries to `bytes`.
    static func end(_ bytes: inout [UInt8], entries: Int) {
        let hex = String(AuditIndex.checksum(bytes), radix: 16)
        bytes += "end \(entries) \(String(repeating: "0", count: 16 - hex.count) + hex)\n".utf8
    }
}
