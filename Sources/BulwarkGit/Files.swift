internal import CLibGit2

/// One file read from a commit's tree, straight from the object database.
public struct GitFile: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case regular
        case executable
        case symlink
        case submodule
    }

    /// Path from the repository's top, with `/` separators.
    public let path: String
    public let kind: Kind
    /// The blob's id: equal ids mean equal content, so parsed results can be cached by it.
    public let blob: ObjectID
    public let size: Int
    /// The content, or nil when the blob is larger than the limit the caller gave (or not a blob).
    public let contents: [UInt8]?
}

extension Repository {
    /// Every file below `folders` in the tree of `commit`, read from the object database (no
    /// checkout). Blobs over `maxSize` bytes are listed with `contents == nil` and not read.
    public func files(at commit: ObjectID, under folders: [String], maxSize: Int) throws(GitError) -> [GitFile] {
        let root = try tree(ofCommit: commit)
        defer { git_tree_free(root) }
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, pointer), "git_repository_odb")
        defer { git_odb_free(odb) }
        var result: [GitFile] = []
        for folder in folders {
            var entry: OpaquePointer?
            let code = git_tree_entry_bypath(&entry, root, folder)
            if code == GIT_ENOTFOUND.rawValue { continue }
            try check(code, "git_tree_entry_bypath(\(folder))")
            guard let entry else { continue }
            defer { git_tree_entry_free(entry) }
            try collect(entry: entry, path: folder, maxSize: maxSize, odb: odb, into: &result)
        }
        return result.sorted { $0.path < $1.path }
    }

    private func collect(entry: OpaquePointer, path: String, maxSize: Int, odb: OpaquePointer?,
                         into result: inout [GitFile]) throws(GitError) {
        var oid = git_tree_entry_id(entry).pointee
        let mode = git_tree_entry_filemode(entry)
        switch mode {
        case GIT_FILEMODE_TREE:
            var subtree: OpaquePointer?
            try check(git_tree_lookup(&subtree, pointer, &oid), "git_tree_lookup(\(path))")
            guard let subtree else { return }
            defer { git_tree_free(subtree) }
            for index in 0..<git_tree_entrycount(subtree) {
                guard let child = git_tree_entry_byindex(subtree, index) else { continue }
                let name = String(cString: git_tree_entry_name(child))
                try collect(entry: child, path: path + "/" + name, maxSize: maxSize, odb: odb, into: &result)
            }
        case GIT_FILEMODE_COMMIT:
            result.append(GitFile(path: path, kind: .submodule, blob: ObjectID(oid), size: 0, contents: nil))
        default:
            let kind: GitFile.Kind = switch mode {
            case GIT_FILEMODE_LINK: .symlink
            case GIT_FILEMODE_BLOB_EXECUTABLE: .executable
            default: .regular
            }
            // The size from the object's header first: a blob of gigabytes (one pushed without a
            // signature, before the revision is verified) is listed, never inflated into memory.
            var headerSize = 0
            var type = GIT_OBJECT_ANY
            try check(git_odb_read_header(&headerSize, &type, odb, &oid), "git_odb_read_header(\(path))")
            guard type == GIT_OBJECT_BLOB else { throw GitError(function: "files", code: -1, message: "\(path) is not a blob") }
            if headerSize > maxSize || mode == GIT_FILEMODE_LINK {
                result.append(GitFile(path: path, kind: kind, blob: ObjectID(oid), size: headerSize, contents: nil))
                return
            }
            var blob: OpaquePointer?
            try check(git_blob_lookup(&blob, pointer, &oid), "git_blob_lookup(\(path))")
            guard let blob else { return }
            defer { git_blob_free(blob) }
            let size = Int(git_blob_rawsize(blob))
            var contents: [UInt8]?
            if size <= maxSize, mode != GIT_FILEMODE_LINK {
                let raw = git_blob_rawcontent(blob)
                contents = raw.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            }
            result.append(GitFile(path: path, kind: kind, blob: ObjectID(oid), size: size, contents: contents))
        }
    }

    /// The paths that differ between two commits (added, modified, deleted, renamed), sorted.
    /// `from == nil` compares against the empty tree.
    public func changedPaths(from old: ObjectID?, to new: ObjectID) throws(GitError) -> [String] {
        let newTree = try tree(ofCommit: new)
        defer { git_tree_free(newTree) }
        var oldTree: OpaquePointer?
        if let old { oldTree = try tree(ofCommit: old) }
        defer { if let oldTree { git_tree_free(oldTree) } }
        var diff: OpaquePointer?
        try check(git_diff_tree_to_tree(&diff, pointer, oldTree, newTree, nil), "git_diff_tree_to_tree")
        defer { git_diff_free(diff) }
        var paths = Set<String>()
        for index in 0..<git_diff_num_deltas(diff) {
            guard let delta = git_diff_get_delta(diff, index) else { continue }
            if let p = delta.pointee.old_file.path { paths.insert(String(cString: p)) }
            if let p = delta.pointee.new_file.path { paths.insert(String(cString: p)) }
        }
        return paths.sorted()
    }
}

extension Repository {
    /// The paths `changedPaths(from:to:)` returns, found by walking the two trees side by side
    /// and descending only into folders whose ids differ: the cost follows what changed, not
    /// the size of the tree. A commit that adds one file deep in a large tree (an audit record)
    /// reads the few folders on that file's path, where a diff reads every folder of both trees.
    /// Files are compared by id and mode; an entry that is a file on one side and a folder on
    /// the other counts as that file plus every file below the folder, as a diff lists them.
    public func changedPathsOfChangedFolders(from old: ObjectID?, to new: ObjectID) throws(GitError) -> [String] {
        try changedEntriesOfChangedFolders(from: old, to: new).keys.sorted()
    }

    /// Each changed path's entry in `old` and in `new`, found as `changedPathsOfChangedFolders` says.
    private func changedEntriesOfChangedFolders(from old: ObjectID?, to new: ObjectID) throws(GitError)
        -> [String: (was: TreeEntry?, now: TreeEntry?)] {
        let newTree = try tree(ofCommit: new)
        defer { git_tree_free(newTree) }
        var oldTree: OpaquePointer?
        if let old { oldTree = try tree(ofCommit: old) }
        defer { if let oldTree { git_tree_free(oldTree) } }
        var changes: [String: (was: TreeEntry?, now: TreeEntry?)] = [:]
        try compare(oldTree, newTree, prefix: "", into: &changes)
        return changes
    }

    /// The files `changedPathsOfChangedFolders` finds, each with its blob id in `new` (nil: not
    /// a file there, as when deleted or turned into a folder) and whether it was a file in `old`.
    func changedFilesOfChangedFolders(from old: ObjectID?, to new: ObjectID) throws(GitError)
        -> [(path: String, existed: Bool, blob: git_oid?)] {
        let changes = try changedEntriesOfChangedFolders(from: old, to: new)
        return changes.keys.sorted().map { path in
            let change = changes[path]!
            return (path, change.was != nil, change.now?.id)
        }
    }

    private struct TreeEntry {
        let id: git_oid
        let mode: git_filemode_t
        var isFolder: Bool { mode == GIT_FILEMODE_TREE }
        func sameObject(as other: TreeEntry) -> Bool {
            mode == other.mode && withUnsafeBytes(of: id) { a in withUnsafeBytes(of: other.id) { b in a.elementsEqual(b) } }
        }
    }

    private func entries(of tree: OpaquePointer?) -> [String: TreeEntry] {
        guard let tree else { return [:] }
        var result: [String: TreeEntry] = [:]
        for index in 0..<git_tree_entrycount(tree) {
            guard let entry = git_tree_entry_byindex(tree, index) else { continue }
            result[String(cString: git_tree_entry_name(entry))] =
                TreeEntry(id: git_tree_entry_id(entry).pointee, mode: git_tree_entry_filemode(entry))
        }
        return result
    }

    /// Adds to `changes` each file (anything not a folder) that differs, with its entry on each
    /// side (nil: absent there, or a folder).
    private func compare(_ old: OpaquePointer?, _ new: OpaquePointer?, prefix: String,
                         into changes: inout [String: (was: TreeEntry?, now: TreeEntry?)]) throws(GitError) {
        let before = entries(of: old)
        let after = entries(of: new)
        for name in Set(before.keys).union(after.keys) {
            let was = before[name]
            let now = after[name]
            if let was, let now, was.sameObject(as: now) { continue }
            let path = prefix + name
            let wasFile = was.flatMap { $0.isFolder ? nil : $0 }, nowFile = now.flatMap { $0.isFolder ? nil : $0 }
            if wasFile != nil || nowFile != nil { changes[path] = (wasFile, nowFile) }
            let oldFolder = try was.flatMap { $0.isFolder ? $0 : nil }.map { entry throws(GitError) in try lookupTree(entry.id, path) }
            defer { if let oldFolder { git_tree_free(oldFolder) } }
            let newFolder = try now.flatMap { $0.isFolder ? $0 : nil }.map { entry throws(GitError) in try lookupTree(entry.id, path) }
            defer { if let newFolder { git_tree_free(newFolder) } }
            if oldFolder != nil || newFolder != nil {
                try compare(oldFolder, newFolder, prefix: path + "/", into: &changes)
            }
        }
    }

    private func lookupTree(_ id: git_oid, _ path: String) throws(GitError) -> OpaquePointer {
        var oid = id
        var tree: OpaquePointer?
        try check(git_tree_lookup(&tree, pointer, &oid), "git_tree_lookup(\(path))")
        guard let tree else { throw GitError(function: "git_tree_lookup", code: -1, message: "no tree at \(path)") }
        return tree
    }
}
