internal import CLibGit2
internal import Foundation

extension Repository {
    /// The pack files (`objects/pack/*.pack`) and their sizes.
    public func packFiles() -> [(name: String, size: Int)] {
        let folder = packFolder
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: folder) else { return [] }
        return names.filter { $0.hasPrefix("pack-") && $0.hasSuffix(".pack") }.sorted().compactMap { name in
            guard let size = (try? fm.attributesOfItem(atPath: folder + "/" + name))?[.size] as? Int else { return nil }
            return (name, size)
        }
    }

    var packFolder: String { path + (path.hasSuffix("/") ? "" : "/") + "objects/pack" }

    /// How many packs a repository holds before `consolidatePacks` merges its small ones.
    public static let packBound = 16

    /// Keeps the number of packs bounded: when there are more than `bound`, the smallest packs
    /// under `small` bytes (one per flushed pass, one per fetch), as many as `mergeCount` says,
    /// are written again as one pack of whole objects and removed, and the object database is
    /// opened again so that libgit2 lets go of the removed packs' mappings (it keeps every pack
    /// it ever opened mapped otherwise, so a daemon flushing after every fix grew by a pack's
    /// worth with each one).
    ///
    /// The new pack is complete and indexed before any old one is removed, so no object is
    /// ever missing. Packs with a `.keep` file are left alone, and nothing is done when a
    /// multi-pack index exists (Bulwark never writes one). Not while objects are buffered in
    /// memory. Returns the number of packs removed (0: nothing done).
    ///
    /// With `sparingUnpushed` (between two flushes of one pass), the packs this process flushed
    /// and has not pushed yet (at most `FlushedPack.kept`) are left as they are: the push copies
    /// them whole, where a merged pack makes it read and pack every object again. A 1,000-root
    /// pass flushes 47 packs; merging them as they came (each pack compressed again, three times
    /// over) and then packing 216,000 objects again for the push were 70 % of its CPU time.
    /// They are merged by the next call without it (the next fetch), once pushed.
    ///
    /// The merged pack is written by `mergePacks`: the entries of Bulwark's own packs are copied
    /// as they are. Inflating and compressing every object of a pass again was half of the first
    /// `plan` after it.
    @discardableResult
    public func consolidatePacks(bound: Int = Repository.packBound, small: Int = 4 << 20, sparingUnpushed: Bool = false) throws(GitError) -> Int {
        guard objectBuffer == nil else { return 0 }
        let folder = packFolder
        let fm = FileManager.default
        let packs = packFiles()
        guard packs.count > bound, !fm.fileExists(atPath: folder + "/multi-pack-index") else { return 0 }
        let spared = sparingUnpushed ? Set(unpushedPacks.map { $0.name + ".pack" }) : []
        let candidates = packs.filter { pack in
            pack.size < small && !spared.contains(pack.name)
                && !fm.fileExists(atPath: folder + "/" + pack.name.dropLast(".pack".count) + ".keep")
        }.sorted { ($0.size, $0.name) < ($1.size, $1.name) }
        // Packs that are not candidates (large, kept, spared) count against the bound; when they
        // take more than half of it, the candidates still have half. Without that, a daemon past
        // `bound` large packs merged every candidate at every fix.
        let room = max(bound - (packs.count - candidates.count), bound / 2)
        let count = Self.mergeCount(ascending: candidates.map(\.size), room: room)
        guard count > 1 else { return 0 }
        // Written in the order of their names, as before sizes chose them.
        let merged = candidates.prefix(count).sorted { $0.name < $1.name }
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, pointer), "git_repository_odb")
        defer { git_odb_free(odb) }
        guard let odb else { throw GitError(function: "git_repository_odb", code: -1, message: "no object database") }
        guard let checksum = try Self.mergePacks(merged.map { folder + "/" + $0.name.dropLast(".pack".count) }, into: folder,
                                                 reading: odb) else { return 0 }
        // The new pack may carry the name of one being merged (a consolidation killed before its
        // removals, run again, that chose the same packs: the same objects in the same order give
        // the same pack). It is never removed, and if it cannot be found by its name nothing is
        // removed at all. Run again with other packs chosen (the first run's pack is one more
        // candidate), its objects are in two packs until a later consolidation merges them.
        let kept = "pack-\(checksum)"
        guard fm.fileExists(atPath: folder + "/" + kept + ".pack"), fm.fileExists(atPath: folder + "/" + kept + ".idx") else {
            try reopenObjectDatabase()
            return 0
        }
        // Durable before anything is removed: the new pack, its index and the folder's entries
        // (libgit2 does not sync them), so that a power cut cannot keep the removals and lose it.
        try Self.sync(folder + "/" + kept + ".pack")
        try Self.sync(folder + "/" + kept + ".idx")
        try Self.sync(folder)
        var removed = 0
        // Packs merged away can no longer be sent as they are: their push packs the objects again.
        let mergedNames = Set(merged.map { String($0.name.dropLast(".pack".count)) })
        unpushedPacks.removeAll { mergedNames.contains($0.name) && $0.name != kept }
        for pack in merged where pack.name != kept + ".pack" {
            let base = folder + "/" + pack.name.dropLast(".pack".count)
            // The index first: a pack without its index is ignored by every reader.
            for suffix in [".idx", ".rev", ".pack"] { unlink(base + suffix) }
            removed += 1
        }
        try Self.sync(folder)
        try reopenObjectDatabase()
        return removed
    }

    /// How many of the smallest candidate packs (`sizes`, ascending) one consolidation merges,
    /// 0 for none: none while they fit in `room`; otherwise enough of them to leave at most half
    /// of `room`, and then each next pack smaller than twice all those taken, so that the packs
    /// left grow geometrically (as git's `repack --geometric=2` keeps them). A pack is then
    /// written again only once the packs below it add up to half its size, not at every
    /// consolidation: merging every small pack every time rewrote a daemon's whole history (up
    /// to `small`) every few fixes, work and memory that grew with every record.
    static func mergeCount(ascending sizes: [Int], room: Int) -> Int {
        guard sizes.count > room else { return 0 }
        var count = min(sizes.count, max(sizes.count - room / 2 + 1, 2))
        var total = sizes.prefix(count).reduce(0, +)
        while count < sizes.count, sizes[count] < 2 * total {
            total += sizes[count]
            count += 1
        }
        return count > 1 ? count : 0
    }

    /// Writes every object of the packs at `bases` (paths without `.pack`/`.idx`) into `folder`
    /// as one pack of whole objects (see `PackFile.Builder`), each object once; returns its
    /// checksum, nil when they hold no object. The entries of packs Bulwark wrote (whole objects,
    /// each entry's CRC-32 as its index states) are copied as they are, compressed or not; those
    /// of any other pack (a fetch's, with deltas) are read from `odb` and compressed at zlib's
    /// fastest level. One pack is mapped at a time.
    static func mergePacks(_ bases: [String], into folder: String, reading odb: OpaquePointer) throws(GitError) -> String? {
        // How many objects the merged pack holds: every id of every merged pack, once.
        var indexes: [[git_oid]] = []
        var unique = Set<TreeCache.Key>()
        for base in bases {
            guard let ids = packIndexIDs(base + ".idx") else {
                throw GitError(function: "mergePacks", code: -1, message: "cannot read the pack index \(base).idx")
            }
            for id in ids { unique.insert(TreeCache.Key(id)) }
            indexes.append(ids)
        }
        guard !unique.isEmpty else { return nil }
        let builder = try PackFile.Builder(folder: folder, count: unique.count, level: Z_BEST_SPEED)
        var written = Set<TreeCache.Key>()
        written.reserveCapacity(unique.count)
        for (base, ids) in zip(bases, indexes) {
            if let whole = PackFile.WholeEntries(pack: base + ".pack", index: base + ".idx") {
                // Bulwark's own packs (whole objects, entries as their index describes them):
                // each entry copied as it is, not inflated and compressed again.
                try whole.pack.withBytes { (raw) throws(GitError) in
                    for entry in whole.entries where written.insert(TreeCache.Key(entry.oid)).inserted {
                        try builder.append(entry.oid, entry: UnsafeRawBufferPointer(rebasing: raw[entry.range]), crc: entry.crc)
                    }
                }
            } else {
                // Deltas (a fetched pack), or an entry that does not match its index: each object
                // as libgit2 reads it (resolved, its id checked), compressed again.
                for id in ids where written.insert(TreeCache.Key(id)).inserted { try builder.append(id, from: odb) }
            }
        }
        return try builder.finish()
    }

    /// fsync of a file or folder; a failure is an error (nothing is removed after it).
    static func sync(_ path: String) throws(GitError) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw GitError(function: "open", code: -1, message: "cannot open \(path) to sync it: errno \(errno)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw GitError(function: "fsync", code: -1, message: "cannot sync \(path): errno \(errno)") }
    }

    /// Replaces the repository's object database with a newly opened one on the same folder;
    /// the old one, and every pack it mapped, is released.
    public func reopenObjectDatabase() throws(GitError) {
        guard objectBuffer == nil else { return }
        var odb: OpaquePointer?
        let objects = path + (path.hasSuffix("/") ? "" : "/") + "objects"
        try check(git_odb_open(&odb, objects), "git_odb_open(\(objects))")
        guard let odb else { throw GitError(function: "git_odb_open", code: -1, message: "no object database") }
        git_repository_set_odb(pointer, odb)
        git_odb_free(odb)  // the repository holds it now
    }

    /// The object ids a pack index (`.idx`, version 1 or 2) lists; nil when it cannot be read.
    static func packIndexIDs(_ path: String) -> [git_oid]? {
        MappedFile(path)?.withBytes { bytes in packIndexIDs(bytes) }
    }

    /// The ids of a pack index's bytes; nil when they are not one.
    static func packIndexIDs(_ bytes: UnsafeRawBufferPointer) -> [git_oid]? {
        func word(_ offset: Int) -> Int? {
            guard offset >= 0, offset + 4 <= bytes.count else { return nil }
            return Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        }
        let version2 = bytes.starts(with: [0xff, 0x74, 0x4f, 0x63])
        if version2 { guard word(4) == 2 else { return nil } }
        let fanout = version2 ? 8 : 0
        guard let count = word(fanout + 255 * 4) else { return nil }
        let table = fanout + 256 * 4
        let stride = version2 ? 20 : 24
        let skip = version2 ? 0 : 4
        guard count >= 0, table + count * stride <= bytes.count else { return nil }
        var result: [git_oid] = []
        result.reserveCapacity(count)
        for index in 0..<count {
            let start = table + index * stride + skip
            var oid = git_oid()
            withUnsafeMutableBytes(of: &oid) { raw in
                for position in 0..<20 { raw[position] = bytes[start + position] }
            }
            result.append(oid)
        }
        return result
    }
}
