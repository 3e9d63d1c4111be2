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
/// Durability: the pack and its index are written under temporary names (`tmp_pack_bulwark_*`,
/// which git's own maintenance removes, and Bulwark once an hour old: `removePackLeftovers`),
/// fsynced, renamed into place (the pack first: readers find a pack by its index), and the
/// folder is fsynced; only then does the caller move a reference
/// to the objects. A pack of the same name already in the folder is the same pack (the name is
/// the checksum of its content) and is kept as it is.
enum PackFile {
    /// zlib's level for pack entries: none (stored blocks, still a zlib stream every git reader
    /// inflates). Audit trees, three quarters of a pass's bytes, are mostly object ids and shrink
    /// by a quarter at best, and compressing 21,600 small objects one by one cost more than
    /// writing the whole pack (0.65 s against 0.05 s for a pass of 2,400 records, 11.3 MB):
    /// the pack is 45 % larger. git's own repacking compresses it again; consolidation copies
    /// its entries as they are.
    static let level = Z_NO_COMPRESSION

    /// Writes `objects`, read from `source`, into `folder` (an `objects/pack` folder) as
    /// `pack-<checksum>.pack` and `.idx`. Returns the checksum (hex); nil when `objects` is empty.
    /// `level` is zlib's (`PackFile.level` for a pass's flush; consolidation compresses).
    static func write(_ objects: [ObjectID], from source: OpaquePointer, into folder: String,
                      level: Int32 = PackFile.level) throws(GitError) -> String? {
        var seen = Set<ObjectID>()
        let unique = objects.filter { seen.insert($0).inserted }
        guard !unique.isEmpty else { return nil }
        let pack = try Builder(folder: folder, count: unique.count, level: level)
        for id in unique { try pack.append(id.raw, from: source) }
        return try pack.finish()
    }

    /// Writes the buffered objects, in the order they were written, then `others` read from
    /// `source` (objects the buffer does not hold), as one pack in `folder` (see `write`).
    static func write(_ buffered: BufferedObjects, and others: [git_oid], from source: OpaquePointer,
                      into folder: String) throws(GitError) -> String? {
        guard buffered.count + others.count > 0 else { return nil }
        let pack = try Builder(folder: folder, count: buffered.count + others.count, level: level)
        for object in buffered.objects {
            try buffered.bytes(of: object).withBytes { (raw) throws(GitError) in
                try pack.append(object.id, type: object.type, data: raw)
            }
        }
        for id in others { try pack.append(id, from: source) }
        return try pack.finish()
    }

    /// A pack being written: `count` objects appended one by one (compressed here, or copied
    /// whole from another pack), then `finish` writes its index and moves both into place.
    final class Builder {
        let folder: String
        let count: Int
        private let pack: Output
        private var stream = z_stream()
        private var entries: [(oid: git_oid, crc: UInt32, offset: UInt64)] = []
        private var entry: [UInt8] = []

        init(folder: String, count: Int, level: Int32) throws(GitError) {
            guard count > 0, count < Int(Int32.max) else { throw PackFile.failure("cannot write a pack of \(count) objects") }
            self.folder = folder
            self.count = count
            pack = try Output(folder: folder)
            guard deflateInit_(&stream, level, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                pack.discard()
                throw PackFile.failure("zlib could not start a stream")
            }
            entries.reserveCapacity(count)
            try pack.append(Array("PACK".utf8) + [0, 0, 0, 2] + PackFile.bigEndian(UInt32(count)))
        }

        deinit {
            deflateEnd(&stream)
            pack.discard()
        }

        /// Appends object `id` as `source` reads it.
        func append(_ id: git_oid, from source: OpaquePointer) throws(GitError) {
            var oid = id
            var object: OpaquePointer?
            try check(git_odb_read(&object, source, &oid), "git_odb_read(\(ObjectID(id).short))")
            defer { git_odb_object_free(object) }
            try append(id, type: git_odb_object_type(object),
                       data: UnsafeRawBufferPointer(start: git_odb_object_data(object), count: git_odb_object_size(object)))
        }

        /// Appends `data` as object `id` of `type` (the caller vouches for the id), compressed.
        func append(_ id: git_oid, type: git_object_t, data: UnsafeRawBufferPointer) throws(GitError) {
            guard entries.count < count else { throw PackFile.failure("more objects than the pack's \(count)") }
            guard type == GIT_OBJECT_COMMIT || type == GIT_OBJECT_TREE || type == GIT_OBJECT_BLOB || type == GIT_OBJECT_TAG else {
                throw PackFile.failure("object \(ObjectID(id).short) of type \(type.rawValue) cannot be packed whole")
            }
            let size = data.count
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
            guard deflateReset(&stream) == Z_OK else { throw PackFile.failure("zlib could not reset its stream") }
            let bound = Int(deflateBound(&stream, uLong(size)))
            entry.append(contentsOf: repeatElement(0, count: bound))
            let code = entry.withUnsafeMutableBufferPointer { out -> Int32 in
                stream.next_in = UnsafeMutablePointer(mutating: data.baseAddress?.assumingMemoryBound(to: Bytef.self))
                stream.avail_in = uInt(size)
                stream.next_out = out.baseAddress.map { $0 + header }
                stream.avail_out = uInt(bound)
                return deflate(&stream, Z_FINISH)
            }
            guard code == Z_STREAM_END else { throw PackFile.failure("zlib could not compress object \(ObjectID(id).short) (\(code))") }
            entry.removeSubrange((header + bound - Int(stream.avail_out))...)
            let crc = entry.withUnsafeBufferPointer { UInt32(truncatingIfNeeded: crc32(0, $0.baseAddress, uInt($0.count))) }
            entries.append((id, crc, pack.offset))
            try pack.append(entry)
        }

        /// Appends an entry copied as it is from another pack (its header and zlib stream, whose
        /// CRC-32 the caller checked): object `id`, not a delta.
        func append(_ id: git_oid, entry bytes: UnsafeRawBufferPointer, crc: UInt32) throws(GitError) {
            guard entries.count < count else { throw PackFile.failure("more objects than the pack's \(count)") }
            entries.append((id, crc, pack.offset))
            try pack.append(bytes)
        }

        /// Writes the pack's checksum and its index, both durable, and moves them into place.
        /// Returns the checksum (hex).
        func finish() throws(GitError) -> String {
            guard entries.count == count else { throw PackFile.failure("\(entries.count) objects written of the pack's \(count)") }
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
            for position in entries.indices.dropFirst() where TreeCache.Key(entries[position].oid) == TreeCache.Key(entries[position - 1].oid) {
                throw PackFile.failure("object \(ObjectID(entries[position].oid).short) twice in one pack")
            }
            let index = try Output(folder: folder)
            defer { index.discard() }
            var table: [UInt8] = [0xff, 0x74, 0x4f, 0x63, 0, 0, 0, 2]
            var fanout = [UInt32](repeating: 0, count: 256)
            for entry in entries { fanout[Int(entry.oid.id.0)] += 1 }
            var running: UInt32 = 0
            for value in fanout {
                running += value
                table += PackFile.bigEndian(running)
            }
            for entry in entries { withUnsafeBytes(of: entry.oid.id) { table.append(contentsOf: $0) } }
            for entry in entries { table += PackFile.bigEndian(entry.crc) }
            var large: [UInt8] = []
            var largeCount: UInt32 = 0
            for entry in entries {
                if entry.offset < 0x8000_0000 {
                    table += PackFile.bigEndian(UInt32(entry.offset))
                } else {
                    table += PackFile.bigEndian(0x8000_0000 | largeCount)
                    large += PackFile.bigEndian(UInt32(truncatingIfNeeded: entry.offset >> 32)) + PackFile.bigEndian(UInt32(truncatingIfNeeded: entry.offset))
                    largeCount += 1
                }
            }
            table += large
            table += checksum
            try index.append(table)
            try index.append(index.digest())
            try index.finish()

            let name = "pack-" + PackFile.hex(checksum)
            if access(folder + "/" + name + ".idx", F_OK) != 0 {
                try pack.rename(to: folder + "/" + name + ".pack")
                try index.rename(to: folder + "/" + name + ".idx")
                try Repository.sync(folder)
            }
            return PackFile.hex(checksum)
        }
    }

    /// A pack whose entries can be copied into another as they are: every entry a whole object
    /// (no delta) whose bytes match the CRC-32 its index (version 2) gives, the index naming
    /// this pack's checksum. Bulwark's own packs are such packs; nil for any other (and for any
    /// damage), which is then read object by object through libgit2.
    struct WholeEntries {
        /// The pack file, mapped (not read into memory).
        let pack: MappedFile
        /// Each object's id, CRC-32 and bytes in `pack` (its header and zlib stream), in the
        /// order of the pack.
        let entries: [(oid: git_oid, crc: UInt32, range: Range<Int>)]

        init?(pack path: String, index: String) {
            guard let pack = MappedFile(path), let index = MappedFile(index),
                  let entries = pack.withBytes({ bytes in index.withBytes { table in Self.entries(bytes, table) } }) else { return nil }
            self.pack = pack
            self.entries = entries
        }

        /// The entries of `bytes`, a pack, as `table`, its index, gives them; nil unless every
        /// entry is a whole object whose bytes match its CRC-32.
        private static func entries(_ bytes: UnsafeRawBufferPointer, _ table: UnsafeRawBufferPointer)
            -> [(oid: git_oid, crc: UInt32, range: Range<Int>)]? {
            func word(_ data: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
                UInt32(data[offset]) << 24 | UInt32(data[offset + 1]) << 16 | UInt32(data[offset + 2]) << 8 | UInt32(data[offset + 3])
            }
            // The index: header, fan-out, ids, CRC-32s, offsets, 64-bit offsets, two checksums.
            guard table.count >= 8 + 1024 + 40, table.starts(with: [0xff, 0x74, 0x4f, 0x63]), word(table, 4) == 2 else { return nil }
            let count = Int(word(table, 8 + 255 * 4))
            let ids = 8 + 1024
            let crcs = ids + count * 20
            let offsets = crcs + count * 4
            let large = offsets + count * 4
            guard large + 40 <= table.count else { return nil }
            let largeCount = (table.count - 40 - large) / 8
            guard large + largeCount * 8 + 40 == table.count else { return nil }
            // The pack: its header, and the checksum its index names as its trailer.
            guard bytes.count >= 12 + 20, bytes.starts(with: Array("PACK".utf8)), word(bytes, 4) == 2, Int(word(bytes, 8)) == count,
                  bytes[(bytes.count - 20)...].elementsEqual(table[(table.count - 40)..<(table.count - 20)]) else { return nil }
            var found: [(oid: git_oid, crc: UInt32, start: Int)] = []
            found.reserveCapacity(count)
            for position in 0..<count {
                var oid = git_oid()
                withUnsafeMutableBytes(of: &oid.id) { raw in
                    for byte in 0..<20 { raw[byte] = table[ids + position * 20 + byte] }
                }
                var offset = Int(word(table, offsets + position * 4))
                if offset & 0x8000_0000 != 0 {
                    let slot = offset & 0x7fff_ffff
                    guard slot < largeCount else { return nil }
                    offset = Int(word(table, large + slot * 8)) << 32 | Int(word(table, large + slot * 8 + 4))
                }
                found.append((oid, word(table, crcs + position * 4), offset))
            }
            found.sort { $0.start < $1.start }
            var entries: [(oid: git_oid, crc: UInt32, range: Range<Int>)] = []
            entries.reserveCapacity(count)
            let end = bytes.count - 20
            for (position, entry) in found.enumerated() {
                let next = position + 1 < found.count ? found[position + 1].start : end
                guard entry.start >= 12, entry.start < next, next <= end else { return nil }
                // Bits 4-6 of the first byte: 1 commit, 2 tree, 3 blob, 4 tag; 6 and 7 are deltas.
                let type = (bytes[entry.start] >> 4) & 7
                guard type >= 1 && type <= 4 else { return nil }
                let slice = UnsafeRawBufferPointer(rebasing: bytes[entry.start..<next])
                let crc = UInt32(truncatingIfNeeded: crc32(0, slice.baseAddress?.assumingMemoryBound(to: UInt8.self), uInt(slice.count)))
                guard crc == entry.crc else { return nil }
                entries.append((entry.oid, entry.crc, entry.start..<next))
            }
            guard found.first.map({ $0.start == 12 }) ?? (end == 12) else { return nil }
            return entries
        }
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
        /// Bytes written at a time. A pack's file and its index's are open at once, and 1 MiB
        /// each was 2 MiB of a pass's peak memory (heaptrack); the writes cost no more.
        static let bufferSize = 256 << 10

        let path: String
        private var fd: Int32
        private var buffer: [UInt8] = []
        private var hash = Insecure.SHA1()
        private(set) var offset: UInt64 = 0
        private var renamed = false

        init(folder: String) throws(GitError) {
            var template = Array((folder + "/" + Repository.ownTemporaryPackPrefix + "XXXXXX").utf8CString)
            fd = template.withUnsafeMutableBufferPointer { $0.baseAddress.map { mkstemp($0) } ?? -1 }
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            guard fd >= 0 else { throw PackFile.failure("cannot create a temporary pack file in \(folder): \(String(cString: strerror(errno)))") }
            path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            buffer.reserveCapacity(Self.bufferSize)
        }

        func append(_ bytes: [UInt8]) throws(GitError) {
            try bytes.withBytes { (raw) throws(GitError) in try append(raw) }
        }

        func append(_ bytes: UnsafeRawBufferPointer) throws(GitError) {
            hash.update(bufferPointer: bytes)
            // Drained before it would outgrow its capacity: growing it doubled it.
            if buffer.count + bytes.count > Self.bufferSize { try drain() }
            buffer.append(contentsOf: bytes)
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
