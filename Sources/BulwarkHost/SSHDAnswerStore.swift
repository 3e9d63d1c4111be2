internal import Foundation
internal import BulwarkCore
internal import Synchronization
// `stat`: in a build where CLinux's header brings it in first, its members are CLinux's.
internal import CLinux

/// sshd's and ssh's answers about a configuration (`sshd -T`, `ssh -G`) kept in the state
/// directory, so that the next Bulwark process asks again only what changed: a drifted 100-root
/// plan otherwise waited about 40 ms, both cores idle, for `ssh-keygen`, four `sshd -T` and
/// `ssh -G`, every time it ran.
///
/// An answer is kept by the SHA-256 of its probe's whole input (`ProbeKey`: the sshd binary's
/// path and identity, the machine's passwd and group, every byte of the candidate and its
/// Includes, the connection asked about), which names the file and is stored in it. What is kept:
/// - only answers: a rejection or a failure is never written, and `sshd -t` (the check before a
///   write) is never answered from here;
/// - at most `limit` files (a few KiB each), the oldest removed first; none older than
///   `lifetime` is used, so a change no key names (a library sshd loads) is seen within a day;
/// - only where the machine's accounts are its files (`SSHDProbe.keepable`);
/// - in a folder of this process's user only, mode 0700, opened without following a link: in a
///   folder another user could write to, nothing is read or written (`keep(in:)` says why), since
///   a forged answer could let a lockout through. A file whose SHA-256 over digest and answer
///   does not hold (cut short by a crash, or changed) is not used.
///
/// Every read or write that fails is a miss: the probe runs as it would without the store.
final class SSHDAnswerStore: Sendable {
    static let limit = 1024
    static let lifetime: TimeInterval = 24 * 60 * 60
    private static let magic = Array("bulwark sshd answer 1\n".utf8)

    let folder: String

    private init(folder: String) { self.folder = folder }

    /// Writes since this process last trimmed the folder (`trim`).
    private let writes = Mutex(0)

    /// A store in `folder` (made if missing, mode 0700). Throws why not where the folder is not
    /// a private folder of this user.
    static func open(_ folder: String) throws(HostError) -> SSHDAnswerStore {
        if mkdir(folder, 0o700) != 0, errno != EEXIST {
            throw HostError("sshd answers are not kept: \(errnoText())", path: folder)
        }
        let store = SSHDAnswerStore(folder: folder)
        guard let fd = store.openFolder() else {
            var info = stat()
            let found = lstat(folder, &info) == 0
                ? "found owner uid \(info.st_uid), mode \(String(info.st_mode & 0o7777, radix: 8))\(info.st_mode & FileType.mask == FileType.symlink ? ", a symbolic link" : "")"
                : "cannot be read: \(errnoText())"
            throw HostError("sshd answers are not kept (sshd is asked every time): the folder must be a folder of uid \(geteuid()) "
                            + "with mode 0700, \(found); remove it and Bulwark makes it again", path: folder)
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

    /// The SHA-256 of `key`: what an answer is kept by.
    static func digest(_ key: ProbeKey) -> [UInt8] { SHA256.hash(key.bytes) }

    /// The file name of an answer kept by `digest`: its 64 hex digits.
    static func name(_ digest: [UInt8]) -> String { SHA256.hex(digest) }

    /// The answer kept for `key`, if a whole, recent one is there, and when it was written.
    func read(_ key: ProbeKey) -> (answer: [String: [String]], at: Date)? {
        guard let folderFD = openFolder() else { return nil }
        defer { close(folderFD) }
        let digest = Self.digest(key)
        let fd = openat(folderFD, Self.name(digest), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & FileType.mask == FileType.regular, info.st_uid == geteuid(),
              info.st_mode & 0o077 == 0, info.st_size > 0, info.st_size <= 1 << 20 else { return nil }
        let age = Date().timeIntervalSince1970 - TimeInterval(info.st_mtim.tv_sec)
        guard age < Self.lifetime, age > -60 else { return nil }
        guard let bytes = Descriptor.read(fd, upTo: Int(info.st_size)), bytes.count == Int(info.st_size) else { return nil }
        return Self.decode(bytes, digest: digest).map { ($0, Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec))) }
    }

    /// Keeps `answer` for `key`: written to a new file, then renamed over the old one, so that a
    /// reader sees a whole file or none. Not synced: a file a crash cut short fails `decode`.
    func write(_ answer: [String: [String]], for key: ProbeKey) {
        let digest = Self.digest(key)
        guard let encoded = Self.encode(answer, digest: digest) else { return }
        // A folder removed since (a clean-up of the state directory) is made again.
        if mkdir(folder, 0o700) != 0, errno != EEXIST { return }
        guard let folderFD = openFolder() else { return }
        defer { close(folderFD) }
        let temporary = ".new-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = openat(folderFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let complete = Descriptor.writeAll(fd, encoded)
        close(fd)
        guard complete, renameat(folderFD, temporary, folderFD, Self.name(digest)) == 0 else {
            unlinkat(folderFD, temporary, 0)
            return
        }
        // The folder is listed at a process's first write, then every 64th.
        if writes.withLock({ count in defer { count += 1 }; return count % 64 == 0 }) { trim(folderFD) }
    }

    /// Removes the oldest answers beyond `limit`, and new files a process left behind a minute ago or more.
    private func trim(_ folderFD: Int32) {
        // Listed through the descriptor whose owner and mode were checked, not by its path again.
        // (Without /proc, by its path: its owner and mode were checked a moment ago.)
        guard let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd/\(folderFD)"))
            ?? (try? FileManager.default.contentsOfDirectory(atPath: folder)) else { return }
        let now = Date().timeIntervalSince1970
        var answers: [(mtime: Int, name: String)] = []
        for name in names {
            var info = stat()
            guard fstatat(folderFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if name.hasPrefix(".new-") {
                if now - TimeInterval(info.st_mtim.tv_sec) > 60 { unlinkat(folderFD, name, 0) }
            } else if name.utf8.count == 64 {
                answers.append((info.st_mtim.tv_sec, name))
            }
        }
        guard answers.count > Self.limit else { return }
        for old in answers.sorted(by: { $0.mtime < $1.mtime }).prefix(answers.count - Self.limit) {
            unlinkat(folderFD, old.name, 0)
        }
    }

    // MARK: - The file

    /// magic, the key's digest, the answer's length and the answer (`keyword value` lines,
    /// keywords in order), the SHA-256 of digest and answer; the length 8 bytes big-endian.
    /// nil where a keyword holds a space, any text a line break, or a keyword no value (none of
    /// which would read back the same).
    static func encode(_ answer: [String: [String]], digest: [UInt8]) -> [UInt8]? {
        var body: [UInt8] = []
        for keyword in answer.keys.sorted() {
            guard !keyword.isEmpty, !keyword.contains(" "), !keyword.contains("\n"), answer[keyword]?.isEmpty == false else { return nil }
            for value in answer[keyword] ?? [] {
                guard !value.contains("\n") else { return nil }
                body += Array("\(keyword) \(value)\n".utf8)
            }
        }
        var bytes = magic + digest
        withUnsafeBytes(of: UInt64(body.count).bigEndian) { bytes.append(contentsOf: $0) }
        bytes += body
        bytes += seal(digest, body)
        return bytes
    }

    static func decode(_ bytes: [UInt8], digest: [UInt8]) -> [String: [String]]? {
        let head = magic.count + digest.count + 8, sealSize = SHA256.byteCount
        guard bytes.count >= head + sealSize, bytes[..<magic.count].elementsEqual(magic),
              bytes[magic.count..<magic.count + digest.count].elementsEqual(digest) else { return nil }
        let length = bytes[(head - 8)..<head].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard length == UInt64(bytes.count - head - sealSize) else { return nil }
        let body = Array(bytes[head..<(bytes.count - sealSize)])
        guard bytes[(bytes.count - sealSize)...].elementsEqual(seal(digest, body)) else { return nil }
        var answer: [String: [String]] = [:]
        for line in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            guard let space = line.firstIndex(of: UInt8(ascii: " ")), space > line.startIndex else { return nil }
            answer[String(decoding: line[..<space], as: UTF8.self), default: []]
                .append(String(decoding: line[(space + 1)...], as: UTF8.self))
        }
        return answer
    }

    private static func seal(_ digest: [UInt8], _ body: [UInt8]) -> [UInt8] { SHA256.hash(digest + body) }
}
