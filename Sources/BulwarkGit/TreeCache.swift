internal import CLibGit2

/// Trees by id, as their object bytes: what `writeCommit` read or wrote last. Each audit record
/// rewrites the trees on its path (`audit/YYYY/MM/DD/HH/<c>/<d>/`), so the next record's commit
/// finds them here rather than looking each up, parsing it and copying its entries into a
/// libgit2 tree builder (a fifth of an apply's work in the audit actor).
///
/// A record's tree replaces the one it was built on, which is forgotten then: what is kept is
/// the trees records build on next, about 1,060 for a pass's hour (32 fan-out folders of 32
/// record folders). Kept as bytes (one allocation a tree, 60-odd bytes an entry): by that count
/// about 0.2 MiB for a pass of 2,400 records and 1.3 MiB for 20,000. Bounded at `byteLimit`
/// (then emptied), and emptied when buffered objects are dropped, so that no tree is built on
/// one that is gone. Content-addressed, so a tree kept is never stale. Held as lists of entries and emptied past 256 trees,
/// the cache lost the hour's record folders every 40-odd records, and a pass of 20,000 records
/// read 15,000 trees back from its packs.
final class TreeCache {
    struct Entry {
        var name: [UInt8]
        var mode: git_filemode_t
        var id: git_oid
    }

    /// Bytes of trees kept at most.
    static let byteLimit = 4 << 20
    private(set) var trees: [Key: [UInt8]] = [:]
    private(set) var bytes = 0

    func entries(_ id: git_oid) -> [Entry]? { trees[Key(id)].flatMap(Self.parse) }

    func remember(_ id: git_oid, _ serialized: [UInt8]) {
        let key = Key(id)
        if let old = trees[key] { bytes -= old.count }
        if bytes + serialized.count > Self.byteLimit {
            trees.removeAll(keepingCapacity: true)
            bytes = 0
        }
        trees[key] = serialized
        bytes += serialized.count
    }

    /// Forgets a tree a newer one replaced: the next record builds on the newer one.
    func forget(_ id: git_oid) {
        if let old = trees.removeValue(forKey: Key(id)) { bytes -= old.count }
    }

    func removeAll() {
        trees.removeAll()
        bytes = 0
    }

    /// The entries of a tree object's bytes (`serialize`'s format, which is git's); nil when they
    /// are not that (never for bytes this cache was given).
    static func parse(_ bytes: [UInt8]) -> [Entry]? {
        var entries: [Entry] = []
        var index = 0
        let count = bytes.count
        while index < count {
            var mode: UInt32 = 0
            while index < count, bytes[index] != 32 {
                let digit = bytes[index] &- 48
                guard digit < 8, mode < 0o1_000_000 else { return nil }
                mode = mode * 8 + UInt32(digit)
                index += 1
            }
            index += 1
            guard index < count, let nul = bytes[index...].firstIndex(of: 0), nul > index, nul + 21 <= count else { return nil }
            let name = Array(bytes[index..<nul])
            var id = git_oid()
            withUnsafeMutableBytes(of: &id.id) { raw in
                for offset in 0..<20 { raw[offset] = bytes[nul + 1 + offset] }
            }
            entries.append(Entry(name: name, mode: git_filemode_t(rawValue: mode), id: id))
            index = nul + 21
        }
        return entries
    }

    /// The 20 bytes of an object id, hashable.
    struct Key: Hashable {
        var a: UInt64
        var b: UInt64
        var c: UInt32

        init(_ oid: git_oid) {
            (a, b, c) = withUnsafeBytes(of: oid.id) { raw in
                (raw.loadUnaligned(as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                 raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            }
        }
    }

    /// Whether every component of these paths is a name the cached writer builds exactly as
    /// libgit2's tree builder would: ASCII letters, digits, `.`, `_` and `-`, not starting with
    /// a dot (so never `.`, `..` or `.git`). Audit record paths always are; anything else (a
    /// policy file a person named) goes through libgit2's builder and its name checks.
    static func isPlain(_ components: [String]) -> Bool {
        components.allSatisfy { name in
            guard let first = name.utf8.first, first != UInt8(ascii: ".") else { return false }
            return name.utf8.allSatisfy { c in
                (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 46 || c == 95 || c == 45
            }
        }
    }

    /// git's order of tree entries: by name, a tree's name compared as if it ended with `/`.
    static func precedes(_ x: Entry, _ y: Entry) -> Bool {
        let xn = x.name.count, yn = y.name.count
        let common = min(xn, yn)
        for index in 0..<common where x.name[index] != y.name[index] { return x.name[index] < y.name[index] }
        let xNext: UInt8 = xn > common ? x.name[common] : (x.mode == GIT_FILEMODE_TREE ? 47 : 0)
        let yNext: UInt8 = yn > common ? y.name[common] : (y.mode == GIT_FILEMODE_TREE ? 47 : 0)
        return xNext < yNext
    }

    /// A tree object's bytes: `<mode in octal> <name>\0<20-byte id>` per entry, in git's order.
    static func serialize(_ entries: [Entry]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.count * 48)
        for entry in entries {
            bytes += Array(String(entry.mode.rawValue, radix: 8).utf8)
            bytes.append(32)
            bytes += entry.name
            bytes.append(0)
            withUnsafeBytes(of: entry.id.id) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }
}

extension Repository {
    /// The entries of tree `id`: from the cache, or read once through libgit2.
    private func cachedEntries(_ id: git_oid) throws(GitError) -> [TreeCache.Entry] {
        if let known = treeCache.entries(id) { return known }
        var tree: OpaquePointer?
        var oid = id
        try check(git_tree_lookup(&tree, pointer, &oid), "git_tree_lookup")
        defer { git_tree_free(tree) }
        var entries: [TreeCache.Entry] = []
        entries.reserveCapacity(git_tree_entrycount(tree))
        for index in 0..<git_tree_entrycount(tree) {
            guard let entry = git_tree_entry_byindex(tree, index), let name = git_tree_entry_name(entry) else { continue }
            // The name's bytes and the mode as stored: a name that is not UTF-8 (a Latin-1 file a person
            // committed) or a legacy mode (100664) is written back unchanged, never "repaired".
            let raw = UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self)
            var length = 0
            while raw[length] != 0 { length += 1 }
            let bytes = Array(UnsafeBufferPointer(start: raw, count: length))
            entries.append(TreeCache.Entry(name: bytes, mode: git_tree_entry_filemode_raw(entry), id: git_tree_entry_id(entry).pointee))
        }
        treeCache.remember(id, TreeCache.serialize(entries))
        return entries
    }

    /// `base` (nil: an empty tree) with `entries` inserted (blobs, replacing any entry of the
    /// same name, as `git_treebuilder_insert` does), sub-trees built on the way; written to the
    /// object database and remembered. Only for plain names (`TreeCache.isPlain`).
    func writeCachedTree(base: git_oid?, entries: ArraySlice<(components: [String], oid: git_oid)>) throws(GitError) -> git_oid {
        var list = try base.map { (id) throws(GitError) in try cachedEntries(id) } ?? []
        func set(_ name: [UInt8], _ mode: git_filemode_t, _ id: git_oid) {
            let entry = TreeCache.Entry(name: name, mode: mode, id: id)
            if let index = list.firstIndex(where: { $0.name == name }) { list[index] = entry } else { list.append(entry) }
        }
        var nested: [String: [(components: [String], oid: git_oid)]] = [:]
        for entry in entries {
            if entry.components.count == 1 {
                set(Array(entry.components[0].utf8), GIT_FILEMODE_BLOB, entry.oid)
            } else {
                nested[entry.components[0], default: []].append((Array(entry.components.dropFirst()), entry.oid))
            }
        }
        for (name, children) in nested.sorted(by: { $0.key < $1.key }) {
            let bytes = Array(name.utf8)
            let existing = list.first { $0.name == bytes && $0.mode == GIT_FILEMODE_TREE }?.id
            set(bytes, GIT_FILEMODE_TREE, try writeCachedTree(base: existing, entries: children[...]))
        }
        list.sort(by: TreeCache.precedes)
        let serialized = TreeCache.serialize(list)
        let id = try serialized.withBytes { (raw) throws(GitError) in try writeObject(raw, type: GIT_OBJECT_TREE) }
        if let base { treeCache.forget(base) }
        treeCache.remember(id, serialized)
        return id
    }
}
