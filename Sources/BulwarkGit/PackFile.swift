internal import CLibGit2
internal import Crypto
internal import Foundation

/// A pack (version 2) of whole objects and its index (version 2), written straight into a pack
/// folder by Bulwark rather than through libgit2's indexer.
///
/// The indexer inflates every object it is given, hashes it again and writes the pack in many
/// small writes; for a pass of 2,400 audit commits (21,600 objects, 11 MB of trees, records and
/// commits) that, with a zlib stream set up and torn down per object, was most of the flush.
/// Here the object ids are already known (the objects come from an object database under
/// those ids), each object is compressed once with one reused zlib stream, and the index is
/// built from the ids, offsets and CRC-32s collected on the way.
///
/// Durability: the pack and its index are written under temporary names (`tmp_pack_*`, which
/// git's own maintenance removes), fsynced, renamed into place (the pack first: readers find a
/// pack by its index), and the folder is fsynced; only then does the caller move a reference
/// to the objects. A pack of the same name already in the folder is the same pack (the name is
/// the checksum of its content) and is kept as it is.
enum PackFile {
    /// zlib's level for pack entries: none (stored blocks, still a zlib stream every git reader
    /// inflates). Audit trees, three quarters of a pass's bytes, are mostly object ids and shrink
    /// by a quarter at best, and compressing 21,600 small objects one by one cost more than
    /// writing the whole pack (0.65 s against 0.05 s for a pass of 2,400 records, 11.3 MB):
    /// the pack is 45 % larger. Consolidation and git's own repacking compress it again.
    static let level = Z_NO_COMPRESSION

    /// Writes `objects`, read from `source`, into `folder` (an `objects/pack` folder) as
    /// `pack-<checksum>.pack` and `.idx`. Returns the checksum (hex); nil when `objects` is empty.
    /// `level` is zlib's (`PackFile.level` for a pass's flush; consolidation compresses).
    static func write(_ objects: [ObjectID], from source: OpaquePointer, into folder: String,
                      level: Int32 = PackFile.level) throws(GitError) -> String? {
        guard !objects.isEmpty else { return nil }
        guard objects.count < Int(Int32.max) else { throw failure("too many objects for one pack") }
        let pack = try Output(folder: folder)
        defer { pack.discard() }
        var entries: [(oid: git_oid, crc: UInt32, offset: UInt64)] = []
        entries.reserveCapacity(objects.count)
        var seen = Set<ObjectID>()
        for id in objects where seen.insert(id).inserted {}
        let count = UInt32(seen.count)
        seen = []
        try pack.append(Array("PACK".utf8) + [0, 0, 0, 2] + bigEndian(count))
        var stream = z_stream()
        guard deflateInit_(&stream, level, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw failure("zlib could not start a stream")
        }
        defer { deflateEnd(&stream) }
        var entry: [UInt8] = []
        for id in objects where seen.insert(id).inserted {
            var oid = id.raw
            var object: OpaquePointer?
            try check(git_odb_read(&object, source, &oid), "git_odb_read(\(id.short))")
            defer { git_odb_object_free(object) }
            let type = git_odb_object_type(object)
            guard type == GIT_OBJECT_COMMIT || type == GIT_OBJECT_TREE || type == GIT_OBJECT_BLOB || type == GIT_OBJECT_TAG else {
                throw failure("object \(id.short) of type \(type.rawValue) cannot be packed whole")
            }
            let size = git_odb_object_size(object)
            let data = git_odb_object_data(object)
            // Header: the type in bits 4-6 of the first byte, the size in 4 bits, then 7 bits a byte.
            entry.removeAll(keepingCapacity: true)
            var rest = UInt64(size)
            var byte = UInt8(truncatingIfNeeded: (UInt64(type.rawValue) << 4) | (rest & 0x0f))
            rest >>= 4
            while rest > 0 {
                entry.append(byte | 0x80)
                byte = UInt8(truncatingIfNeeded: rest & 0x7f)
                rest >>= 7
            }
            entry.append(byte)
            let header = entry.count
            guard deflateReset(&stream) == Z_OK else { throw failure("zlib could not reset its stream") }
            let bound = Int(deflateBound(&stream, uLong(size)))
            entry.append(contentsOf: repeatElement(0, count: bound))
            let code = entry.withUnsafeMutableBufferPointer { out -> Int32 in
                stream.next_in = UnsafeMutablePointer(mutating: data?.assumingMemoryBound(to: Bytef.self))
                stream.avail_in = uInt(size)
                stream.next_out = out.baseAddress.map { $0 + header }
                stream.avail_out = uInt(bound)
                return deflate(&stream, Z_FINISH)
            }
            guard code == Z_STREAM_END else { throw failure("zlib could not compress object \(id.short) (\(code))") }
            entry.removeSubrange((header + bound - Int(stream.avail_out))...)
            let crc = entry.withUnsafeBufferPointer { UInt32(truncatingIfNeeded: crc32(0, $0.baseAddress, uInt($0.count))) }
            entries.append((oid, crc, pack.offset))
            try pack.append(entry)
        }
        let checksum = pack.digest()
        try pack.append(checksum)
        try pack.finish()

        // The index: fan-out, sorted ids, CRC-32s, offsets (31 bits, or an index into the
        // 64-bit table), the pack's checksum and the index's own.
        entries.sort { a, b in
            var x = a.oid
            var y = b.oid
            return git_oid_cmp(&x, &y) < 0
        }
        let index = try Output(folder: folder)
        defer { index.discard() }
        var table: [UInt8] = [0xff, 0x74, 0x4f, 0x63, 0, 0, 0, 2]
        var fanout = [UInt32](repeating: 0, count: 256)
        for entry in entries { fanout[Int(entry.oid.id.0)] += 1 }
        var running: UInt32 = 0
        for value in fanout {
            running += value
            table += bigEndian(running)
        }
        for entry in entries { withUnsafeBytes(of: entry.oid.id) { table.append(contentsOf: $0) } }
        for entry in entries { table += bigEndian(entry.crc) }
        var large: [UInt8] = []
        var largeCount: UInt32 = 0
        for entry in entries {
            if entry.offset < 0x8000_0000 {
                table += bigEndian(UInt32(entry.offset))
            } else {
                table += bigEndian(0x8000_0000 | largeCount)
                large += bigEndian(UInt32(truncatingIfNeeded: entry.offset >> 32)) + bigEndian(UInt32(truncatingIfNeeded: entry.offset))
                largeCount += 1
            }
        }
        table += large
        table += checksum
        try index.append(table)
        try index.append(index.digest())
        try index.finish()

        let name = "pack-" + hex(checksum)
        if access(folder + "/" + name + ".idx", F_OK) != 0 {
            try pack.rename(to: folder + "/" + name + ".pack")
            try index.rename(to: folder + "/" + name + ".idx")
            try Repository.sync(folder)
        }
        return hex(checksum)
    }

    private static func failure(_ message: String) -> GitError { GitError(function: "pack", code: -1, message: message) }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8),
         UInt8(truncatingIfNeeded: value)]
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }, as: UTF8.self)
    }

    /// A temporary file in the pack folder, written through a buffer, its SHA-1 kept as it goes;
    /// removed unless renamed into place.
    final class Output {
        let path: String
        private var fd: Int32
        private var buffer: [UInt8] = []
        private var hash = Insecure.SHA1()
        private(set) var offset: UInt64 = 0
        private var renamed = false

        init(folder: String) throws(GitError) {
            var template = Array((folder + "/tmp_pack_XXXXXX").utf8CString)
            fd = template.withUnsafeMutableBufferPointer { $0.baseAddress.map { mkstemp($0) } ?? -1 }
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            guard fd >= 0 else { throw PackFile.failure("cannot create a temporary pack file in \(folder): \(String(cString: strerror(errno)))") }
            path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            buffer.reserveCapacity(1 << 20)
        }

        func append(_ bytes: [UInt8]) throws(GitError) {
            bytes.withUnsafeBytes { hash.update(bufferPointer: $0) }
            // Drained before it would outgrow its capacity: growing it doubled it to 2 MiB.
            if buffer.count + bytes.count > 1 << 20 { try drain() }
            buffer += bytes
            offset += UInt64(bytes.count)
        }

        /// The SHA-1 of everything appended so far.
        func digest() -> [UInt8] { Array(hash.finalize()) }

        private func drain() throws(GitError) {
            var written = 0
            while written < buffer.count {
                let n = buffer[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw PackFile.failure("cannot write \(path): \(String(cString: strerror(errno)))")
                }
                written += n
            }
            buffer.removeAll(keepingCapacity: true)
        }

        /// Writes what is buffered, makes the file read-only (as git's packs are) and durable.
        func finish() throws(GitError) {
            try drain()
            guard fchmod(fd, 0o444) == 0 else { throw PackFile.failure("cannot set the mode of \(path): \(String(cString: strerror(errno)))") }
            guard fsync(fd) == 0 else { throw PackFile.failure("cannot sync \(path): \(String(cString: strerror(errno)))") }
        }

        func rename(to final: String) throws(GitError) {
            guard Glibc.rename(path, final) == 0 else {
                throw PackFile.failure("cannot rename \(path) to \(final): \(String(cString: strerror(errno)))")
            }
            renamed = true
        }

        func discard() {
            if fd >= 0 {
                close(fd)
                fd = -1
            }
            if !renamed { unlink(path) }
        }
    }
}
