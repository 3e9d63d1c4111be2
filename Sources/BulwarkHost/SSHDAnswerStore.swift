internal import Foundation
internal import Synchronization
// `stat`: in a build where CLinux's header brings it in first, its members are CLinux's.
internal import CLinux

/// sshd's and ssh's answers about a configuration (`sshd -T`, `ssh -G`) kept in the state
/// directory, so that the next Bulwark process asks again only what changed: a drifted 100-root
/// plan otherwise waited about 40 ms, both cores idle, for `ssh-keygen`, four `sshd -T` and
/// `ssh -G`, every time it ran.
///
/// An answer is kept by its probe's whole input (`ProbeKey`: the sshd binary's path and
/// identity, the machine's passwd and group, every byte of the candidate and its Includes, the
/// connection asked about), stored in full beside the answer and compared byte for byte when
/// read: the file's name only finds it. What is kept:
/// - only answers: a rejection or a failure is never written, and `sshd -t` (the check before a
///   write) is never answered from here;
/// - at most `limit` files, the oldest removed first; none older than `lifetime` is used, so a
///   change no key names (a library sshd loads) is seen within a day;
/// - in a folder of this process's user only, mode 0700, opened without following a link: in a
///   folder another user could write to, nothing is read or written (`keep(in:)` says why), since
///   a forged answer could let a lockout through.
///
/// Every read or write that fails is a miss: the probe runs as it would without the store.
final class SSHDAnswerStore: Sendable {
    static let limit = 128
    static let lifetime: TimeInterval = 24 * 60 * 60
    private static let magic = Array("bulwark sshd answer 1\n".utf8)

    let folder: String

    private init(folder: String) { self.folder = folder }

    /// A store in `folder` (made if missing, mode 0700). Throws why not where the folder is not
    /// a private folder of this user.
    static func open(_ folder: String) throws(HostError) -> SSHDAnswerStore {
        if mkdir(folder, 0o700) != 0, errno != EEXIST {
            throw HostError("sshd answers are not kept: \(errnoText())", path: folder)
        }
        let store = SSHDAnswerStore(folder: folder)
        guard let fd = store.openFolder() else {
            throw HostError("sshd answers are not kept: the folder must be this user's, and no one else may write to it", path: folder)
        }
        close(fd)
        return store
    }

    /// The folder, opened without following a link, if it is a directory this user owns that
    /// neither its group nor others can enter.
    private func openFolder() -> Int32? {
        let fd = Foundation.open(folder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & FileType.mask == FileType.directory,
              info.st_uid == geteuid(), info.st_mode & 0o077 == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// The file name an answer for `key` is kept under: 32 hex digits of two 64-bit FNV-1a
    /// hashes of the key. A collision is only a miss: the key stored in the file must match.
    static func name(_ key: ProbeKey) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325
        var b: UInt64 = 0x6c62_272e_07bb_0142
        for byte in key.bytes {
            a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = b &+ (a >> 29)
        }
        return String(a, radix: 16).leftPadded(16) + String(b, radix: 16).leftPadded(16)
    }

    /// The answer kept for `key`, if a whole, recent one is there.
    func read(_ key: ProbeKey) -> [String: [String]]? {
        guard let folderFD = openFolder() else { return nil }
        defer { close(folderFD) }
        let fd = openat(folderFD, Self.name(key), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & FileType.mask == FileType.regular, info.st_uid == geteuid(),
              info.st_mode & 0o077 == 0, info.st_size > 0, info.st_size <= 4 << 20 else { return nil }
        let age = Date().timeIntervalSince1970 - TimeInterval(info.st_mtim.tv_sec)
        guard age < Self.lifetime, age > -60 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes[filled...].withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return nil }
            filled += n
        }
        return Self.decode(bytes, key: key)
    }

    /// Keeps `answer` for `key`: written to a new file, then renamed over the old one, so that a
    /// reader sees a whole file or none. Not synced: a file a crash cut short fails `decode`.
    func write(_ answer: [String: [String]], for key: ProbeKey) {
        guard let encoded = Self.encode(answer, key: key), let folderFD = openFolder() else { return }
        defer { close(folderFD) }
        let temporary = ".new-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = openat(folderFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        var offset = 0
        while offset < encoded.count {
            let n = encoded[offset...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            offset += n
        }
        close(fd)
        guard offset == encoded.count, renameat(folderFD, temporary, folderFD, Self.name(key)) == 0 else {
            unlinkat(folderFD, temporary, 0)
            return
        }
        trim(folderFD)
    }

    /// Removes the oldest answers beyond `limit`, and new files a process left behind a minute ago or more.
    private func trim(_ folderFD: Int32) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        let now = Date().timeIntervalSince1970
        var answers: [(mtime: Int, name: String)] = []
        for name in names {
            var info = stat()
            guard fstatat(folderFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if name.hasPrefix(".new-") {
                if now - TimeInterval(info.st_mtim.tv_sec) > 60 { unlinkat(folderFD, name, 0) }
            } else if name.utf8.count == 32 {
                answers.append((info.st_mtim.tv_sec, name))
            }
        }
        guard answers.count > Self.limit else { return }
        for old in answers.sorted(by: { $0.mtime < $1.mtime }).prefix(answers.count - Self.limit) {
            unlinkat(folderFD, old.name, 0)
        }
    }

    // MARK: - The file

    /// magic, key length and key, answer length and answer (`keyword value` lines, keywords in
    /// order), an FNV-1a checksum of key and answer; lengths and checksum 8 bytes big-endian.
    /// nil where a keyword holds a space or any text a line break (it would not read back the same).
    static func encode(_ answer: [String: [String]], key: ProbeKey) -> [UInt8]? {
        var body: [UInt8] = []
        for keyword in answer.keys.sorted() {
            guard !keyword.isEmpty, !keyword.contains(" "), !keyword.contains("\n") else { return nil }
            for value in answer[keyword] ?? [] {
                guard !value.contains("\n") else { return nil }
                body += Array("\(keyword) \(value)\n".utf8)
            }
        }
        var bytes = magic
        append(UInt64(key.bytes.count), to: &bytes)
        bytes += key.bytes
        append(UInt64(body.count), to: &bytes)
        bytes += body
        append(checksum(key.bytes, body), to: &bytes)
        return bytes
    }

    static func decode(_ bytes: [UInt8], key: ProbeKey) -> [String: [String]]? {
        var cursor = magic.count
        guard bytes.count >= cursor, bytes[..<cursor].elementsEqual(magic) else { return nil }
        func number() -> Int? {
            guard bytes.count - cursor >= 8 else { return nil }
            let value = bytes[cursor..<cursor + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            cursor += 8
            return value <= UInt64(bytes.count) ? Int(value) : nil
        }
        guard let keyLength = number(), keyLength == key.bytes.count, bytes.count - cursor >= keyLength,
              bytes[cursor..<cursor + keyLength].elementsEqual(key.bytes) else { return nil }
        cursor += keyLength
        guard let bodyLength = number(), bytes.count - cursor == bodyLength + 8 else { return nil }
        let body = Array(bytes[cursor..<cursor + bodyLength])
        cursor += bodyLength
        let stored = bytes[cursor..<cursor + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard stored == checksum(key.bytes, body) else { return nil }
        var answer: [String: [String]] = [:]
        for line in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            guard let space = line.firstIndex(of: UInt8(ascii: " ")), space > line.startIndex else { return nil }
            answer[String(decoding: line[..<space], as: UTF8.self), default: []]
                .append(String(decoding: line[(space + 1)...], as: UTF8.self))
        }
        return answer
    }

    private static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    private static func checksum(_ key: [UInt8], _ body: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        for byte in body { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return hash
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - utf8.count)) + self }
}
