internal import CLibGit2

/// New objects kept in memory (libgit2's mempack backend) until they are written to disk as one
/// pack: a pass of 2,300 audit commits writes one pack file and its index instead of about
/// 20,000 loose object files.
///
/// The caller keeps the rule that no reference ever points at objects that are not on disk:
/// objects written while a buffer is open may only be referenced (`updateReference`) after
/// `flushObjectBuffer` returned. Reading works throughout: the buffer is searched first, then
/// the disk.
/// A pack written by `flushObjectBuffer`: the objects `tip` brings over `base`, exactly.
struct FlushedPack {
    var base: ObjectID?
    var tip: ObjectID
    /// `pack-<checksum>`, in the repository's `objects/pack`.
    var name: String

    /// How many unpushed packs are remembered (a push that finds fewer falls back to packing
    /// the objects again): a daemon cut off from its origin flushes a pack per fix.
    static let kept = 64
}

final class ObjectBuffer {
    /// The mempack backend, owned by `odb` (freed with it).
    let backend: UnsafeMutablePointer<git_odb_backend>
    /// The object database the repository used before: the disk only.
    let disk: OpaquePointer
    /// The database in use while buffering: the mempack first, then the disk's backends.
    let odb: OpaquePointer

    init(backend: UnsafeMutablePointer<git_odb_backend>, disk: OpaquePointer, odb: OpaquePointer) {
        self.backend = backend
        self.disk = disk
        self.odb = odb
    }

    deinit {
        git_odb_free(odb)
        git_odb_free(disk)
    }
}

extension Repository {
    /// Whether new objects currently go to memory (see `beginObjectBuffer`).
    public var isBufferingObjects: Bool { objectBuffer != nil }

    /// From now on, new objects (blobs, trees, commits) are kept in memory until
    /// `flushObjectBuffer`. Does nothing when a buffer is already open.
    public func beginObjectBuffer() throws(GitError) {
        guard objectBuffer == nil else { return }
        var disk: OpaquePointer?
        try check(git_repository_odb(&disk, pointer), "git_repository_odb")
        guard let disk else { throw GitError(function: "git_repository_odb", code: -1, message: "no object database") }
        var odb: OpaquePointer?
        let objects = path + (path.hasSuffix("/") ? "" : "/") + "objects"
        do {
            try check(git_odb_open(&odb, objects), "git_odb_open(\(objects))")
        } catch {
            git_odb_free(disk)
            throw error
        }
        guard let odb else {
            git_odb_free(disk)
            throw GitError(function: "git_odb_open", code: -1, message: "no object database")
        }
        // Every object libgit2 writes is first looked for, and a miss rescans the pack folder
        // (`git_odb_refresh`: a stat of the folder and of its multi-pack index, and a listing
        // of it): for a pass of audit commits that is every new object, and the listing grows
        // with the packs. No pack appears in this folder while the buffer is open except by
        // `flushObjectBuffer`, which closes it (the next buffer opens the folder afresh), so
        // this database's backends are never rescanned.
        for position in 0..<git_odb_num_backends(odb) {
            var existing: UnsafeMutablePointer<git_odb_backend>?
            if git_odb_get_backend(&existing, odb, position) == 0, let existing { existing.pointee.refresh = nil }
        }
        var backend: UnsafeMutablePointer<git_odb_backend>?
        let created = git_mempack_new(&backend)
        guard created == 0, let backend else {
            git_odb_free(odb)
            git_odb_free(disk)
            try check(created, "git_mempack_new")
            throw GitError(function: "git_mempack_new", code: -1, message: "no memory backend")
        }
        // Highest priority: writes go to memory, reads look there first.
        let added = git_odb_add_backend(odb, backend, 999)
        guard added == 0 else {
            backend.pointee.free(backend)
            git_odb_free(odb)
            git_odb_free(disk)
            try check(added, "git_odb_add_backend(mempack)")
            return
        }
        git_repository_set_odb(pointer, odb)
        objectBuffer = ObjectBuffer(backend: backend, disk: disk, odb: odb)
    }

    /// Writes the objects `tip` brings over `base` (see `newObjects`) from memory to disk as one
    /// pack, indexed before this returns, then closes the buffer: new objects go to disk again.
    /// After it returns, a reference may point at `tip`. Returns the number of objects written.
    @discardableResult
    public func flushObjectBuffer(tip: ObjectID?, base: ObjectID?) throws(GitError) -> Int {
        guard let buffer = objectBuffer else { return 0 }
        var written = 0
        if let tip, tip != base {
            let objects = try newObjects(reaching: tip, notReaching: base)
            // Read from memory, written as one durable pack under objects/pack (see `PackFile`).
            var source: OpaquePointer?
            try check(git_repository_odb(&source, pointer), "git_repository_odb")
            defer { git_odb_free(source) }
            guard let source else { throw GitError(function: "git_repository_odb", code: -1, message: "no object database") }
            if let checksum = try PackFile.write(objects, from: source, into: packFolder) {
                unpushedPacks.append(FlushedPack(base: base, tip: tip, name: "pack-" + checksum))
                if unpushedPacks.count > FlushedPack.kept { unpushedPacks.removeFirst(unpushedPacks.count - FlushedPack.kept) }
            }
            // The disk's database looks for the new pack.
            try check(git_odb_refresh(buffer.disk), "git_odb_refresh")
            written = objects.count
        }
        git_repository_set_odb(pointer, buffer.disk)
        objectBuffer = nil
        return written
    }

    /// Drops every object written since `beginObjectBuffer` (nothing references them).
    public func discardObjectBuffer() {
        guard let buffer = objectBuffer else { return }
        // Trees of the dropped objects must not be built upon.
        treeCache.removeAll()
        git_mempack_reset(buffer.backend)
        git_repository_set_odb(pointer, buffer.disk)
        objectBuffer = nil
    }
}
