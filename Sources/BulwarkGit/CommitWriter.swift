internal import CLibGit2

extension Repository {
    /// Writes a commit whose tree is the parent's tree with `files` added or replaced, without
    /// touching any working tree or reference. `files` maps repository paths to contents.
    /// With `signer`, the commit carries its signature (see `CommitSigner`).
    ///
    /// `merging`: a second parent, whose tree takes no part (the tree is `parent`'s with `files`):
    /// a commit that a branch at `merging` fast-forwards to, keeping that branch's history.
    public func writeCommit(
        adding files: [String: [UInt8]], parent: ObjectID?, merging: ObjectID? = nil, message: String,
        author: Signature, committer: Signature? = nil, signer: (any CommitSigner)? = nil
    ) throws(GitError) -> ObjectID {
        var blobs: [String: git_oid] = [:]
        for (path, bytes) in files {
            try validate(path: path)
            blobs[path] = try bytes.withBytes { (raw) throws(GitError) in try writeObject(raw, type: GIT_OBJECT_BLOB) }
        }
        if let merging { git_commit_free(try lookupCommit(merging)) }
        return try writeCommit(blobs: blobs, parent: parent, merging: merging, message: message, author: author,
                               committer: committer ?? author, signer: signer)
    }

    /// Re-creates `commit` on top of `newParent`: the same added or changed files, message and
    /// author, so unique audit paths never conflict. Returns the new commit's id. The new commit
    /// has a new parent, so any signature of the original no longer holds: `signer` signs it again.
    public func replay(_ commit: ObjectID, onto newParent: ObjectID, signer: (any CommitSigner)? = nil) throws(GitError) -> ObjectID {
        let original = try lookupCommit(commit)
        defer { git_commit_free(original) }
        // Folder by folder, only where ids differ: a whole-tree diff read every folder of both
        // trees, for each commit replayed (quadratic on a long audit branch, and all of it while
        // another writer could move the origin's branch again).
        let parent: ObjectID? = git_commit_parentcount(original) > 0 ? ObjectID(git_commit_parent_id(original, 0).pointee) : nil
        var blobs: [String: git_oid] = [:]
        for change in try changedFilesOfChangedFolders(from: parent, to: commit) {
            // Added or modified, as a diff has it: a file on the commit's side.
            guard let blob = change.blob else {
                throw GitError(function: "replay", code: -1,
                               message: "commit \(commit.short) deletes or renames files; only additions can be replayed")
            }
            blobs[change.path] = blob
        }
        let message = String(cString: git_commit_message(original))
        let author = Signature(git_commit_author(original))
        let committer = Signature(git_commit_committer(original))
        return try writeCommit(blobs: blobs, parent: newParent, message: message, author: author, committer: committer,
                               signer: signer)
    }

    /// Whether `other`'s tree holds every file `commit` added or changed (over its first parent)
    /// with the same content: the record `commit` wrote is there, whatever commit put it there.
    public func holdsChanges(of commit: ObjectID, at other: ObjectID) throws(GitError) -> Bool {
        let original = try lookupCommit(commit)
        let parent: ObjectID? = git_commit_parentcount(original) > 0 ? ObjectID(git_commit_parent_id(original, 0).pointee) : nil
        git_commit_free(original)
        for change in try changedFilesOfChangedFolders(from: parent, to: commit) {
            guard let blob = change.blob, let entry = try entry(at: other, path: change.path),
                  entry.id == ObjectID(blob) else { return false }
        }
        return true
    }

    private func writeCommit(
        blobs: [String: git_oid], parent: ObjectID?, merging: ObjectID? = nil, message: String, author: Signature,
        committer: Signature, signer: (any CommitSigner)?
    ) throws(GitError) -> ObjectID {
        var parentCommit: OpaquePointer?
        if let parent { parentCommit = try lookupCommit(parent) }
        defer { if let parentCommit { git_commit_free(parentCommit) } }
        let entries = blobs.map { (components: $0.key.split(separator: "/").map(String.init), oid: $0.value) }
        let treeID: git_oid
        if entries.allSatisfy({ TreeCache.isPlain($0.components) }) {
            // Audit records: the parent's trees are known (see `TreeCache`).
            treeID = try writeCachedTree(base: parentCommit.map { git_commit_tree_id($0).pointee }, entries: entries[...])
        } else {
            var baseTree: OpaquePointer?
            if let parentCommit { try check(git_commit_tree(&baseTree, parentCommit), "git_commit_tree") }
            defer { if let baseTree { git_tree_free(baseTree) } }
            treeID = try buildTree(base: baseTree, entries: entries[...])
        }
        // The commit is written by hand rather than with git_commit_create, whose signatures
        // carry only 32-bit times (see Signature.gitSeconds).
        var text = "tree \(ObjectID(treeID).hex)\n"
        if let parent { text += "parent \(parent.hex)\n" }
        if let merging, parent != nil, merging != parent { text += "parent \(merging.hex)\n" }
        text += try author.header("author") + "\n"
        text += try committer.header("committer") + "\n\n"
        text += message
        return try writeCommitObject(text, signer: signer)
    }

    /// Writes a tree: `base` (may be nil) with `entries` inserted, creating sub-trees on the way.
    private func buildTree(
        base: OpaquePointer?, entries: ArraySlice<(components: [String], oid: git_oid)>
    ) throws(GitError) -> git_oid {
        var builder: OpaquePointer?
        try check(git_treebuilder_new(&builder, pointer, base), "git_treebuilder_new")
        defer { git_treebuilder_free(builder) }

        var nested: [String: [(components: [String], oid: git_oid)]] = [:]
        for entry in entries {
            if entry.components.count == 1 {
                var oid = entry.oid
                try check(git_treebuilder_insert(nil, builder, entry.components[0], &oid, GIT_FILEMODE_BLOB),
                          "git_treebuilder_insert(\(entry.components[0]))")
            } else {
                nested[entry.components[0], default: []].append((Array(entry.components.dropFirst()), entry.oid))
            }
        }
        for (name, children) in nested.sorted(by: { $0.key < $1.key }) {
            var subtree: OpaquePointer?
            if let existing = git_treebuilder_get(builder, name), git_tree_entry_filemode(existing) == GIT_FILEMODE_TREE {
                var existingID = git_tree_entry_id(existing).pointee
                try check(git_tree_lookup(&subtree, pointer, &existingID), "git_tree_lookup(\(name))")
            }
            defer { if let subtree { git_tree_free(subtree) } }
            var childID = try buildTree(base: subtree, entries: children[...])
            try check(git_treebuilder_insert(nil, builder, name, &childID, GIT_FILEMODE_TREE),
                      "git_treebuilder_insert(\(name))")
        }
        var treeID = git_oid()
        try check(git_treebuilder_write(&treeID, builder), "git_treebuilder_write")
        return treeID
    }

    private func validate(path: String) throws(GitError) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." || $0 == ".git" }) else {
            throw GitError(function: "writeCommit", code: -1, message: "invalid path in commit: \(path)")
        }
    }
}
