internal import BulwarkCore
package import BulwarkGit
import Foundation

/// The `Bulwark-Id`s of the commits on the local audit branch, as of one commit of it, kept in
/// the state directory (`audit-index`) so that asking whether a record exists does not walk the
/// whole branch in every process.
///
/// The file is **append-only**: a pass adds the ids it recorded as one block followed by a
/// checkpoint line naming the audit commit the whole file is now up to date with. Opening it
/// reads the header and the end of the file only; nothing in a pass rewrites it or parses all
/// of it. Answering `contains` reads the file once per process (hashes and offsets in memory,
/// no strings), and the hits are confirmed against the file's bytes.
///
/// Invariant: the ids in the file up to its last checkpoint are exactly the ids of the history
/// of that checkpoint's commit, never more. The file is a cache: whatever cannot be trusted
/// (missing, unreadable, a checksum that does not match, a head that is no longer on the branch)
/// is rebuilt from git, so a wrong file costs one walk and never makes Bulwark believe a record
/// exists that is not on the branch. Appends are written after the branch moved (never before)
/// and are not synced: a crash loses at most the last block (the next process reads those
/// commits from git again) or leaves a torn block after the last good checkpoint, which is cut off.
///
/// Format (UTF-8, one field a line):
///
///     bulwark-audit-index 2
///     <id>                                     ← a block: the ids of some commits
///     …
///     @ <head hex or "none"> <total ids> <offset of the block> <checksum of the block, hex>
///     <id>                                     ← the next block, appended by a later pass
///     …
///     @ …
///
/// The checksum is FNV-1a (64 bits) over the block's bytes (its id lines): it finds torn and
/// damaged blocks, not an attacker (who could as well delete the file, which only costs a walk).
package final class AuditIndex {
    /// What keeping the index up to date cost in this process, for tests and diagnostics.
    package struct Statistics: Sendable, Equatable {
        /// The index was read from its file (and was usable).
        package var loadedFromFile = false
        /// Full walks of the audit branch.
        package var rebuilds = 0
        /// Audit commits read from git (by rebuilds and incremental updates alike).
        package var commitsRead = 0
    }

    package static let fileName = "audit-index"
    static let header = Array("bulwark-audit-index 2\n".utf8)
    /// The end of the file read when opening it: a torn last block is shorter than this.
    static let tailWindow = 1 << 20

    package let path: String
    /// The audit commit the file is up to date with; nil: the branch did not exist.
    package private(set) var head: ObjectID?
    /// Id lines in the file up to its last checkpoint.
    package private(set) var count: Int
    /// Where the last checkpoint line ends: everything after it is a torn append.
    private var end: Int
    /// Where the last block starts (its checkpoint names it), for the next checkpoint's check.
    private var lastBlock: Int
    /// Id hash → offset of its line, built on the first lookup; `collisions` holds the rare
    /// further offsets of a hash already present.
    private var offsets: [UInt64: Int]?
    private var collisions: [UInt64: [Int]] = [:]

    package enum Damage: Error, CustomStringConvertible {
        case damaged(String)
        package var description: String { switch self { case .damaged(let why): "the audit index is damaged: \(why)" } }
    }

    private init(path: String, head: ObjectID?, count: Int, end: Int, lastBlock: Int) {
        self.path = path
        self.head = head
        self.count = count
        self.end = end
        self.lastBlock = lastBlock
    }

    // MARK: - Opening

    /// The index in `directory`, from its header and the end of the file; nil when there is
    /// none or it cannot be trusted (then it is rebuilt from git when a lookup needs it).
    package static func open(in directory: String) -> AuditIndex? {
        let path = directory + "/" + fileName
        let fd = Foundation.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int(status.st_size)
        guard size > header.count, let first = readBytes(fd, at: 0, count: header.count), first == header else { return nil }
        let windowStart = max(header.count, size - tailWindow)
        guard let tail = readBytes(fd, at: windowStart, count: size - windowStart) else { return nil }
        // The last checkpoint line that is complete and whose block checks out; a torn append
        // after it is ignored (and cut off by the next append).
        var lineEnd = tail.count
        while lineEnd > 0 {
            // The newline that ends a candidate line, then the start of that line.
            guard let newline = tail[..<lineEnd].lastIndex(of: 0x0a) else { break }
            let start = tail[..<newline].lastIndex(of: 0x0a).map { $0 + 1 } ?? 0
            lineEnd = start
            // A line cut by the window's start is not a line.
            if start == 0, windowStart > header.count { break }
            guard newline - start > 2, tail[start] == UInt8(ascii: "@"), tail[start + 1] == UInt8(ascii: " ") else { continue }
            guard let checkpoint = Checkpoint(tail[(start + 2)..<newline]) else { continue }
            let lineStart = windowStart + start
            // Every id is at least one byte and a newline: a count the file cannot hold is damage.
            guard checkpoint.block >= header.count, checkpoint.block <= lineStart,
                  checkpoint.count >= 0, checkpoint.count <= (lineStart - header.count) / 2 else { continue }
            // The last block is checked when it is in the window (a pass's worth); a larger one
            // (a rebuild's) is checked with the rest at the first lookup.
            if checkpoint.block >= windowStart {
                let block = tail[(checkpoint.block - windowStart)..<start]
                guard checksum(block) == checkpoint.checksum, wellFormed(block) else { continue }
            }
            return AuditIndex(path: path, head: checkpoint.head, count: checkpoint.count, end: windowStart + newline + 1,
                              lastBlock: checkpoint.block)
        }
        return nil
    }

    /// Writes a new index holding `ids` as of `head` (temporary file renamed over the old one).
    package static func create(in directory: String, head: ObjectID?, ids: some Sequence<String>) throws -> AuditIndex {
        var bytes = header
        var count = 0
        for id in ids where isStorable(id) {
            bytes += id.utf8
            bytes.append(0x0a)
            count += 1
        }
        let block = header.count
        bytes += checkpointLine(head: head, count: count, block: block, checksum: checksum(bytes[block...]))
        let path = directory + "/" + fileName
        try StateFile.replace(path, with: bytes)
        return AuditIndex(path: path, head: head, count: count, end: bytes.count, lastBlock: block)
    }

    /// Whether an id can be held: one line, no spaces, not a checkpoint. Ids Bulwark makes
    /// always can; an id that cannot is not indexed (its lookups walk nothing and answer no,
    /// so a foreign commit with such an id is recorded again rather than believed recorded).
    package static func isStorable(_ id: String) -> Bool {
        !id.isEmpty && !id.hasPrefix("@") && id.utf8.count <= 512 && !id.contains(where: { $0.isNewline || $0 == " " })
    }

    // MARK: - Appending

    /// Appends `ids` (the ids of the commits after `self.head` up to `head`) as one block and a
    /// checkpoint naming `head`. Not synced (see the type's comment). A torn earlier append
    /// after the last checkpoint is cut off first.
    package func append(_ ids: [String], head: ObjectID) throws {
        var bytes: [UInt8] = []
        var added: [(id: String, offset: Int)] = []
        for id in ids where AuditIndex.isStorable(id) {
            added.append((id, end + bytes.count))
            bytes += id.utf8
            bytes.append(0x0a)
        }
        let newCount = count + added.count
        bytes += AuditIndex.checkpointLine(head: head, count: newCount, block: end, checksum: AuditIndex.checksum(bytes[...]))
        let fd = Foundation.open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw CommandError("cannot append to \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(end)) == 0 else { throw CommandError("cannot append to \(path): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { buffer in
                buffer.baseAddress.map { pwrite(fd, $0 + written, buffer.count - written, off_t(end + written)) } ?? -1
            }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                _ = ftruncate(fd, off_t(end))
                throw CommandError("cannot append to \(path): \(reason)")
            }
            written += n
        }
        lastBlock = end
        end += bytes.count
        count = newCount
        self.head = head
        if offsets != nil { for entry in added { insert(AuditIndex.hash(entry.id.utf8), at: entry.offset) } }
    }

    // MARK: - Lookups

    /// Whether the file holds `id`. The first call reads the whole file once, checks every
    /// block's checksum and count, and keeps each id's hash and offset; a hit is confirmed by
    /// reading the id's line again. Throws `Damage` when the file does not check out (the
    /// caller rebuilds it).
    package func contains(_ id: String) throws(Damage) -> Bool {
        guard AuditIndex.isStorable(id) else { return false }
        let fd = Foundation.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .damaged("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if offsets == nil { try load(fd) }
        let key = AuditIndex.hash(id.utf8)
        guard let first = offsets?[key] else { return false }
        let wanted = Array(id.utf8) + [0x0a]
        for offset in [first] + (collisions[key] ?? []) {
            guard let line = AuditIndex.readBytes(fd, at: offset, count: wanted.count) else {
                throw .damaged("cannot read \(path) at \(offset)")
            }
            if line == wanted { return true }
        }
        return false
    }

    private func insert(_ key: UInt64, at offset: Int) {
        if offsets?[key] == nil {
            offsets?[key] = offset
        } else {
            collisions[key, default: []].append(offset)
        }
    }

    private func load(_ fd: Int32) throws(Damage) {
        guard let bytes = AuditIndex.readBytes(fd, at: 0, count: end) else { throw .damaged("cannot read \(path)") }
        guard bytes.starts(with: AuditIndex.header) else { throw .damaged("no header") }
        offsets = Dictionary(minimumCapacity: min(max(count, 0), (end - AuditIndex.header.count) / 2))
        collisions = [:]
        var position = AuditIndex.header.count
        var block = position
        var ids = 0
        var lastHead: ObjectID??
        while position < bytes.count {
            guard let newline = bytes[position...].firstIndex(of: 0x0a) else { offsets = nil; throw .damaged("a line without its end") }
            if bytes[position] == UInt8(ascii: "@") {
                guard newline - position > 2, bytes[position + 1] == UInt8(ascii: " "),
                      let checkpoint = Checkpoint(bytes[(position + 2)..<newline]), checkpoint.block == block,
                      checkpoint.count == ids, AuditIndex.checksum(bytes[block..<position]) == checkpoint.checksum else {
                    offsets = nil
                    throw .damaged("a checkpoint that does not match its block at \(position)")
                }
                lastHead = .some(checkpoint.head)
                block = newline + 1
            } else {
                guard newline > position, !bytes[position..<newline].contains(UInt8(ascii: " ")) else {
                    offsets = nil
                    throw .damaged("a malformed line at \(position)")
                }
                insert(AuditIndex.hash(bytes[position..<newline]), at: position)
                ids += 1
            }
            position = newline + 1
        }
        guard block == bytes.count, ids == count, let lastHead, lastHead == head else {
            offsets = nil
            throw .damaged("the file does not end with the checkpoint it was opened at")
        }
    }

    /// Every id the file holds up to its last checkpoint, after checking it whole (for tests
    /// and diagnostics); nil when it does not check out.
    package func allIDs() -> Set<String>? {
        let fd = Foundation.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard (try? load(fd)) != nil, let bytes = AuditIndex.readBytes(fd, at: 0, count: end) else { return nil }
        var result = Set<String>()
        for line in bytes[AuditIndex.header.count...].split(separator: 0x0a) where line.first != UInt8(ascii: "@") {
            result.insert(String(decoding: line, as: UTF8.self))
        }
        return result
    }

    // MARK: - Format

    struct Checkpoint {
        var head: ObjectID?
        var count: Int
        var block: Int
        var checksum: UInt64

        init?(_ fields: ArraySlice<UInt8>) {
            let parts = fields.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            guard parts.count == 4, let count = Int(parts[1]), count >= 0, let block = Int(parts[2]), block >= 0,
                  parts[3].utf8.count == 16, let checksum = UInt64(parts[3], radix: 16) else { return nil }
            if parts[0] == "none" {
                head = nil
            } else {
                guard let id = ObjectID(hex: parts[0]) else { return nil }
                head = id
            }
            self.count = count
            self.block = block
            self.checksum = checksum
        }
    }

    static func checkpointLine(head: ObjectID?, count: Int, block: Int, checksum: UInt64) -> [UInt8] {
        let hex = String(checksum, radix: 16)
        return Array("@ \(head?.hex ?? "none") \(count) \(block) \(String(repeating: "0", count: 16 - hex.count) + hex)\n".utf8)
    }

    static func checksum(_ bytes: some Collection<UInt8>) -> UInt64 { hash(bytes) }

    /// FNV-1a, 64 bits.
    static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            value ^= UInt64(byte)
            value &*= 0x0000_0100_0000_01b3
        }
        return value
    }

    /// Every line of a block is an id (no checkpoint, no space, no NUL).
    static func wellFormed(_ block: ArraySlice<UInt8>) -> Bool {
        guard block.isEmpty || block.last == 0x0a else { return false }
        for line in block.split(separator: 0x0a, omittingEmptySubsequences: false).dropLast() {
            guard let first = line.first, first != UInt8(ascii: "@"), !line.contains(0), !line.contains(UInt8(ascii: " ")) else { return false }
        }
        return true
    }

    static func readBytes(_ fd: Int32, at offset: Int, count: Int) -> [UInt8]? {
        guard count >= 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { raw in
                raw.baseAddress.map { pread(fd, $0 + done, count - done, off_t(offset + done)) } ?? -1
            }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return nil }
            done += n
        }
        return buffer
    }
}
