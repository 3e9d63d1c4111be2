internal import CLibGit2
internal import Crypto

/// A git pack (version 2) of whole objects, no deltas, built in memory.
///
/// Audit objects are small and new (a record, the handful of trees on its path, a commit), so
/// a delta search over them costs far more than it saves: libgit2's pack builder compares every
/// object with ten others and spent most of a 2,300-record push doing so. This writer only
/// compresses each object (zlib, fastest level) and appends it; `git index-pack`, libgit2's
/// indexer and `git fsck` read the result as any other pack.
struct PackWriter {
    private(set) var body: [UInt8] = []
    private(set) var count: UInt32 = 0

    /// Appends one object (`GIT_OBJECT_COMMIT`, `_TREE`, `_BLOB` or `_TAG`) and its bytes.
    mutating func append(type: git_object_t, data: UnsafeRawBufferPointer) throws(GitError) {
        guard type == GIT_OBJECT_COMMIT || type == GIT_OBJECT_TREE || type == GIT_OBJECT_BLOB || type == GIT_OBJECT_TAG else {
            throw GitError(function: "pack", code: -1, message: "object type \(type.rawValue) cannot be packed whole")
        }
        guard count < UInt32.max else { throw GitError(function: "pack", code: -1, message: "too many objects for one pack") }
        // Header: type in bits 4-6 of the first byte, the size in 4 bits, then 7 bits a byte.
        var size = UInt64(data.count)
        var byte = UInt8(truncatingIfNeeded: (UInt64(type.rawValue) << 4) | (size & 0x0f))
        size >>= 4
        while size > 0 {
            body.append(byte | 0x80)
            byte = UInt8(truncatingIfNeeded: size & 0x7f)
            size >>= 7
        }
        body.append(byte)
        var bound = compressBound(uLong(data.count))
        let start = body.count
        body.append(contentsOf: repeatElement(0, count: Int(bound)))
        let code = body.withUnsafeMutableBufferPointer { out in
            compress2(out.baseAddress.map { $0 + start }, &bound,
                      data.baseAddress?.assumingMemoryBound(to: Bytef.self), uLong(data.count), Z_BEST_SPEED)
        }
        guard code == Z_OK else {
            body.removeSubrange(start...)
            throw GitError(function: "compress2", code: code, message: "zlib could not compress an object (\(code))")
        }
        body.removeSubrange((start + Int(bound))...)
        count += 1
    }

    /// The whole pack: header, objects, and the SHA-1 of both as its trailer.
    func finish() -> [UInt8] {
        var pack: [UInt8] = Array("PACK".utf8) + [0, 0, 0, 2]
        pack += [UInt8(truncatingIfNeeded: count >> 24), UInt8(truncatingIfNeeded: count >> 16),
                 UInt8(truncatingIfNeeded: count >> 8), UInt8(truncatingIfNeeded: count)]
        pack += body
        pack += Array(Insecure.SHA1.hash(data: pack))
        return pack
    }
}

extension Repository {
    /// The objects `tip` brings that `base` does not have: every commit reachable from `tip` and
    /// not from `base`, and of each commit's tree whatever differs from its first parent's tree
    /// at the same path (a record appended to the audit branch: the blob, the trees on its path,
    /// the commit). Objects equal to the parent's are reachable from the parent, so whoever has
    /// the parent has them.
    func newObjects(reaching tip: ObjectID, notReaching base: ObjectID?) throws(GitError) -> [ObjectID] {
        var walk: OpaquePointer?
        try check(git_revwalk_new(&walk, pointer), "git_revwalk_new")
        defer { git_revwalk_free(walk) }
        git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL.rawValue | GIT_SORT_REVERSE.rawValue)
        var start = tip.raw
        try check(git_revwalk_push(walk, &start), "git_revwalk_push")
        if let base {
            var hidden = base.raw
            try check(git_revwalk_hide(walk, &hidden), "git_revwalk_hide")
        }
        var result: [ObjectID] = []
        var seen = Set<ObjectID>()
        var oid = git_oid()
        while true {
            let code = git_revwalk_next(&oid, walk)
            if code == GIT_ITEROVER.rawValue { break }
            try check(code, "git_revwalk_next")
            let commit = try lookupCommit(ObjectID(oid))
            defer { git_commit_free(commit) }
            var tree: OpaquePointer?
            try check(git_commit_tree(&tree, commit), "git_commit_tree")
            defer { git_tree_free(tree) }
            var parentTree: OpaquePointer?
            if git_commit_parentcount(commit) > 0 {
                var parent: OpaquePointer?
                try check(git_commit_parent(&parent, commit, 0), "git_commit_parent")
                defer { git_commit_free(parent) }
                try check(git_commit_tree(&parentTree, parent), "git_commit_tree")
            }
            defer { if let parentTree { git_tree_free(parentTree) } }
            try collect(tree: tree, base: parentTree, into: &result, seen: &seen)
            let id = ObjectID(oid)
            if seen.insert(id).inserted { result.append(id) }
        }
        return result
    }

    private func collect(tree: OpaquePointer?, base: OpaquePointer?, into result: inout [ObjectID],
                         seen: inout Set<ObjectID>) throws(GitError) {
        guard let tree else { return }
        let id = ObjectID(git_tree_id(tree).pointee)
        if let base, ObjectID(git_tree_id(base).pointee) == id { return }
        guard seen.insert(id).inserted else { return }
        for index in 0..<git_tree_entrycount(tree) {
            guard let entry = git_tree_entry_byindex(tree, index) else { continue }
            let entryID = ObjectID(git_tree_entry_id(entry).pointee)
            let name = git_tree_entry_name(entry)
            let old = base.flatMap { git_tree_entry_byname($0, name) }
            if let old, ObjectID(git_tree_entry_id(old).pointee) == entryID { continue }
            switch git_tree_entry_type(entry) {
            case GIT_OBJECT_TREE:
                var child: OpaquePointer?
                var childID = entryID.raw
                try check(git_tree_lookup(&child, pointer, &childID), "git_tree_lookup")
                defer { git_tree_free(child) }
                var oldChild: OpaquePointer?
                if let old, git_tree_entry_type(old) == GIT_OBJECT_TREE {
                    var oldID = git_tree_entry_id(old).pointee
                    try check(git_tree_lookup(&oldChild, pointer, &oldID), "git_tree_lookup")
                }
                defer { if let oldChild { git_tree_free(oldChild) } }
                try collect(tree: child, base: oldChild, into: &result, seen: &seen)
            case GIT_OBJECT_BLOB:
                if seen.insert(entryID).inserted { result.append(entryID) }
            default:
                continue  // a submodule's commit is not in this repository
            }
        }
        result.append(id)
    }

    /// Writes `objects`, read from this repository, into `target`'s object database as one
    /// pack of whole objects, indexed by libgit2 before this returns (the pack and its index
    /// appear under their final names only once complete). Returns the number of objects.
    @discardableResult
    func writePack(_ objects: [ObjectID], into target: Repository) throws(GitError) -> Int {
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, target.pointer), "git_repository_odb")
        defer { git_odb_free(odb) }
        guard let odb else { throw GitError(function: "git_repository_odb", code: -1, message: "no object database") }
        return try writePack(objects, into: target, database: odb)
    }

    /// `writePack(_:into:)` into the object database `odb` of `target`. The pack is streamed into
    /// libgit2's indexer one object at a time (its object count is known up front and its
    /// checksum is computed as it goes), so memory holds one object, not the pack.
    func writePack(_ objects: [ObjectID], into target: Repository, database odb: OpaquePointer) throws(GitError) -> Int {
        guard !objects.isEmpty else { return 0 }
        guard objects.count < Int(UInt32.max) else { throw GitError(function: "pack", code: -1, message: "too many objects for one pack") }
        var source: OpaquePointer?
        try check(git_repository_odb(&source, pointer), "git_repository_odb")
        defer { git_odb_free(source) }
        var writer: UnsafeMutablePointer<git_odb_writepack>?
        try check(git_odb_write_pack(&writer, odb, nil, nil), "git_odb_write_pack")
        guard let writer else { throw GitError(function: "git_odb_write_pack", code: -1, message: "no pack writer") }
        defer { writer.pointee.free(writer) }
        var stats = git_indexer_progress()
        var checksum = Insecure.SHA1()
        func send(_ bytes: [UInt8]) throws(GitError) {
            checksum.update(data: bytes)
            try check(bytes.withUnsafeBytes { writer.pointee.append(writer, $0.baseAddress, $0.count, &stats) }, "pack append")
        }
        let count = UInt32(objects.count)
        try send(Array("PACK".utf8) + [0, 0, 0, 2, UInt8(truncatingIfNeeded: count >> 24), UInt8(truncatingIfNeeded: count >> 16),
                                      UInt8(truncatingIfNeeded: count >> 8), UInt8(truncatingIfNeeded: count)])
        for id in objects {
            var object: OpaquePointer?
            var oid = id.raw
            try check(git_odb_read(&object, source, &oid), "git_odb_read(\(id.short))")
            defer { git_odb_object_free(object) }
            let data = UnsafeRawBufferPointer(start: git_odb_object_data(object), count: git_odb_object_size(object))
            var entry = PackWriter()
            try entry.append(type: git_odb_object_type(object), data: data)
            try send(entry.body)
        }
        let trailer = Array(checksum.finalize())
        try check(trailer.withUnsafeBytes { writer.pointee.append(writer, $0.baseAddress, $0.count, &stats) }, "pack append")
        try check(writer.pointee.commit(writer, &stats), "pack commit")
        try check(git_odb_refresh(odb), "git_odb_refresh")
        return objects.count
    }
}
