internal import Foundation

/// Reading and atomically replacing files under a host root.
enum FileIO {
    /// Largest host file read (sshd_config, shadow, ...); anything larger is refused, not truncated.
    static let maxSize = 16 << 20

    /// The file's bytes, or nil when it does not exist.
    static func read(_ path: String) throws(HostError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw HostError("cannot open: \(errnoText())", path: path)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw HostError("cannot stat: \(errnoText())", path: path) }
        guard info.st_mode & FileType.mask == FileType.regular else { throw HostError("not a regular file", path: path) }
        guard info.st_size <= maxSize else { throw HostError("file is larger than \(maxSize) bytes", path: path) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HostError("cannot read: \(errnoText())", path: path)
            }
            if n == 0 { break }
            result += chunk[0..<n]
            guard result.count <= maxSize else { throw HostError("file is larger than \(maxSize) bytes", path: path) }
        }
        return result
    }

    static func readText(_ path: String) throws(HostError) -> String? {
        guard let bytes = try read(path) else { return nil }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw HostError("not valid UTF-8 text", path: path) }
        return text
    }

    /// Replaces `path` with `bytes` atomically: a temporary file in the same folder, the old
    /// file's owner and mode (or `mode` for a new file), fsync, `validate` on the temporary file,
    /// rename, fsync of the folder. Does nothing when the content is already equal.
    /// Returns whether the file changed.
    @discardableResult
    static func write(
        _ path: String, _ bytes: [UInt8], newFileMode: mode_t = 0o644,
        validate: ((String) throws -> Void)? = nil
    ) throws -> Bool {
        if let current = try read(path), current == bytes { return false }
        let folder = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        var template = Array("\(folder)/.\(name).bulwark-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw HostError("cannot create a temporary file: \(errnoText())", path: folder) }
        let temporary = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlink(temporary) }
        }
        var existing = stat()
        if stat(path, &existing) == 0 {
            guard fchown(fd, existing.st_uid, existing.st_gid) == 0 || geteuid() != 0 else {
                throw HostError("cannot keep the owner: \(errnoText())", path: path)
            }
            guard fchmod(fd, existing.st_mode & 0o7777) == 0 else { throw HostError("cannot keep the mode: \(errnoText())", path: path) }
        } else {
            guard fchmod(fd, newFileMode) == 0 else { throw HostError("cannot set the mode: \(errnoText())", path: path) }
        }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HostError("cannot write: \(errnoText())", path: temporary)
            }
            offset += n
        }
        guard fsync(fd) == 0 else { throw HostError("cannot fsync: \(errnoText())", path: temporary) }
        try validate?(temporary)
        guard rename(temporary, path) == 0 else { throw HostError("cannot rename into place: \(errnoText())", path: path) }
        renamed = true
        let dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
        return true
    }

    /// Overwrites a kernel parameter file in place (`/proc/sys/...` cannot be renamed over).
    static func writeInPlace(_ path: String, _ text: String) throws(HostError) {
        let fd = open(path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw HostError("cannot open for writing: \(errnoText())", path: path) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw HostError("cannot write: \(errnoText())", path: path) }
    }
}

/// A text file as lines, each kept with its own ending so untouched lines stay byte for byte.
struct LineFile {
    var lines: [Substring]

    init(_ text: String) {
        // Split on the newline byte: a scalar boundary, and much cheaper than Characters.
        var result: [Substring] = []
        let bytes = text.utf8
        var start = bytes.startIndex
        var index = start
        while index < bytes.endIndex {
            let next = bytes.index(after: index)
            if bytes[index] == 10 {
                result.append(text[start..<next])
                start = next
            }
            index = next
        }
        if start < bytes.endIndex { result.append(text[start...]) }
        lines = result
    }

    /// A line's content without its ending.
    static func content(_ line: Substring) -> Substring {
        var line = line
        while line.last == "\n" || line.last == "\r\n" || line.last == "\r" { line.removeLast() }
        return line
    }

    /// The line's ending (`\n`, `\r\n` or nothing).
    static func ending(_ line: Substring) -> String {
        if line.hasSuffix("\r\n") { return "\r\n" }
        return line.hasSuffix("\n") ? "\n" : ""
    }

    /// Appends a line, adding a newline to the last line first when it has none.
    mutating func append(_ line: String) {
        if let last = lines.last, LineFile.ending(last).isEmpty { lines[lines.count - 1] = last + "\n" }
        lines.append(Substring(line + "\n"))
    }

    mutating func insert(_ line: String, at index: Int) {
        lines.insert(Substring(line + "\n"), at: index)
    }

    var text: String { lines.joined() }
    var bytes: [UInt8] { Array(text.utf8) }
}
