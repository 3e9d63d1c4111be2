internal import CLibGit2
internal import Foundation

/// A git repository opened through libgit2.
///
/// Owns one `git_repository*`, freed in `deinit`. Not `Sendable`: libgit2 handles must stay on
/// one thread at a time, so a repository is owned by one actor or one synchronous caller.
public final class Repository {
    let pointer: OpaquePointer
    /// The repository's git directory (for a bare repository, the repository itself).
    public let path: String
    /// New objects kept in memory until written as one pack (see `beginObjectBuffer`).
    var objectBuffer: ObjectBuffer?
    /// Packs flushed from the object buffer whose commits have not been pushed yet, oldest
    /// first: a local push sends them as they are (see `pushLocally`).
    var unpushedPacks: [FlushedPack] = []
    /// Trees `writeCommit` read or wrote last, parsed (see `TreeCache`).
    let treeCache = TreeCache()

    private init(pointer: OpaquePointer) {
        self.pointer = pointer
        self.path = String(cString: git_repository_path(pointer))
    }

    deinit { git_repository_free(pointer) }

    /// Opens an existing repository (bare or not) at `path`.
    public static func open(at path: String) throws(GitError) -> Repository {
        LibGit2.ensureInitialized()
        var repo: OpaquePointer?
        try check(git_repository_open_ext(&repo, path, UInt32(GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue), nil),
                  "git_repository_open_ext")
        guard let repo else { throw GitError(function: "git_repository_open_ext", code: -1, message: "no repository") }
        return Repository(pointer: repo)
    }

    /// Creates a new repository at `path` (creating folders as needed).
    public static func create(at path: String, bare: Bool) throws(GitError) -> Repository {
        LibGit2.ensureInitialized()
        var repo: OpaquePointer?
        try check(git_repository_init(&repo, path, bare ? 1 : 0), "git_repository_init")
        guard let repo else { throw GitError(function: "git_repository_init", code: -1, message: "no repository") }
        return Repository(pointer: repo)
    }

    public var isBare: Bool { git_repository_is_bare(pointer) == 1 }

    // MARK: - References

    /// The object a reference points at (peeled to a commit id), or nil when it does not exist.
    public func resolve(_ reference: String) throws(GitError) -> ObjectID? {
        var oid = git_oid()
        let code = git_reference_name_to_id(&oid, pointer, reference)
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "git_reference_name_to_id(\(reference))")
        return ObjectID(oid)
    }

    /// Points `reference` at `target`, but only if it still points at `expected`
    /// (nil: only if it does not exist yet). Throws `isModified` when someone moved it.
    public func updateReference(_ reference: String, to target: ObjectID, expected: ObjectID?, message: String) throws(GitError) {
        var ref: OpaquePointer?
        var new = target.raw
        if let expected {
            var old = expected.raw
            try check(git_reference_create_matching(&ref, pointer, reference, &new, 1, &old, message),
                      "git_reference_create_matching(\(reference))")
        } else {
            let code = git_reference_create(&ref, pointer, reference, &new, 0, message)
            if code == GIT_EEXISTS.rawValue {
                throw GitError(function: "git_reference_create(\(reference))", code: GIT_EMODIFIED.rawValue,
                               message: "reference \(reference) was created concurrently")
            }
            try check(code, "git_reference_create(\(reference))")
        }
        git_reference_free(ref)
    }

    /// Points `reference` at `target` unconditionally.
    public func forceReference(_ reference: String, to target: ObjectID, message: String) throws(GitError) {
        var ref: OpaquePointer?
        var new = target.raw
        try check(git_reference_create(&ref, pointer, reference, &new, 1, message), "git_reference_create(\(reference))")
        git_reference_free(ref)
    }

    /// Makes HEAD a symbolic reference to `reference` (which need not exist yet).
    public func setHead(_ reference: String) throws(GitError) {
        try check(git_repository_set_head(pointer, reference), "git_repository_set_head")
    }

    /// Writes the tree of HEAD into the working tree and index (a forced checkout).
    public func checkoutHead() throws(GitError) {
        var options = git_checkout_options()
        try check(git_checkout_options_init(&options, UInt32(GIT_CHECKOUT_OPTIONS_VERSION)), "git_checkout_options_init")
        options.checkout_strategy = GIT_CHECKOUT_FORCE.rawValue
        try check(git_checkout_head(pointer, &options), "git_checkout_head")
    }

    // MARK: - Ancestry

    /// Whether `ancestor` is reachable from `descendant` (or is it).
    public func isAncestor(_ ancestor: ObjectID, of descendant: ObjectID) throws(GitError) -> Bool {
        if ancestor == descendant { return true }
        var a = ancestor.raw
        var d = descendant.raw
        let result = try check(git_graph_descendant_of(pointer, &d, &a), "git_graph_descendant_of")
        return result == 1
    }

    /// Whether the object database holds `id`.
    public func contains(_ id: ObjectID) throws(GitError) -> Bool {
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, pointer), "git_repository_odb")
        defer { git_odb_free(odb) }
        var oid = id.raw
        return git_odb_exists(odb, &oid) == 1
    }

    // MARK: - Objects

    /// Looks up a commit; the caller frees it with `git_commit_free`.
    func lookupCommit(_ id: ObjectID) throws(GitError) -> OpaquePointer {
        var commit: OpaquePointer?
        var oid = id.raw
        try check(git_commit_lookup(&commit, pointer, &oid), "git_commit_lookup(\(id.short))")
        guard let commit else { throw GitError(function: "git_commit_lookup", code: -1, message: "no commit") }
        return commit
    }

    /// The tree of a commit; the caller frees it with `git_tree_free`.
    func tree(ofCommit id: ObjectID) throws(GitError) -> OpaquePointer {
        let commit = try lookupCommit(id)
        defer { git_commit_free(commit) }
        var tree: OpaquePointer?
        try check(git_commit_tree(&tree, commit), "git_commit_tree(\(id.short))")
        guard let tree else { throw GitError(function: "git_commit_tree", code: -1, message: "no tree") }
        return tree
    }
}
