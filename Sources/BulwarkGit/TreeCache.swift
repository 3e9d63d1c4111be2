internal import CLibGit2

/// Trees as lists of entries, by id: what `writeCommit` read or wrote last. Each audit record
/// rewrites the same path (`audit/YYYY/MM/DD/HH/<c>/<d>/`), so the next record's commit finds every
/// tree on that path here rather than looking each up, parsing it and copying its entries into
/// a libgit2 tree builder (a fifth of an apply's work in the audit actor).
///
/// Content-addressed, so an entry is never stale; bounded (emptied past `limit` trees: a record needs the eight on its path) and
/// emptied when buffered objects are dropped, so that no tree is built on one that is gone.
final class TreeCache {
    struct Entry {
        var name: [UInt8]
        var mode: git_filemode_t
        var id: git_oid
    }

    static let limit = 256
    private(set) var trees: [Key: [Entry]] = [:]

    func entries(_ id: git_oid) -> [Entry]? { trees[Key(id)] }

    func remember(_ id: git_oid, _ entries: [Entry]) {
        if trees.count >= Self.limit { trees.removeAll(keepingCapacity: true) }
        trees[Key(id)] = entries
    }

    func removeAll() { trees.removeAll() }

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
        treeCache.remember(id, entries)
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
        let id = try TreeCache.serialize(list).withBytes { (raw) throws(GitError) in try writeObject(raw, type: GIT_OBJECT_TREE) }
        treeCache.remember(id, list)
        return id
    }
}
