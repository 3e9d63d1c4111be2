internal import CLibGit2
internal import Crypto

/// A pack written by `flushObjectBuffer`: the objects `tip` brings over `base`, and whatever else
/// the buffer held (objects written and then not used: a commit replayed elsewhere). A copy of
/// it holds everything a repository that has `base` needs to have `tip`.
struct FlushedPack {
    var base: ObjectID?
    var tip: ObjectID
    /// `pack-<checksum>`, in the repository's `objects/pack`.
    var name: String

    /// How many unpushed packs are remembered (a push that finds fewer falls back to packing
    /// the objects again): a daemon cut off from its origin flushes a pack per fix.
    static let kept = 64
}

/// The objects written while a buffer is open, in memory, in the order they were written: what
/// the flush packs. Their bytes are kept in chunks of `chunkSize`, each object whole in one
/// chunk; they are found by their raw ids. One array doubling as it grew held up to twice the
/// bytes, three times while it was copied: 2.6 MiB at the peak of a 100-root pass whose objects
/// came to about 1 MiB.
///
/// Not thread-safe: used by the repository that owns it and by libgit2 on that repository's
/// thread, through the backend `makeBackend` returns.
final class BufferedObjects {
    struct Object {
        var id: git_oid
        var type: git_object_t
        var chunk: Int
        var start: Int
        var count: Int
    }

    /// Bytes a chunk is made with; a larger object gets a chunk of its own size.
    static let chunkSize = 64 << 10

    private(set) var objects: [Object] = []
    private var positions: [TreeCache.Key: Int] = [:]
    private var chunks: [[UInt8]] = []

    var count: Int { objects.count }
    var isEmpty: Bool { objects.isEmpty }

    func contains(_ id: git_oid) -> Bool { positions[TreeCache.Key(id)] != nil }

    func object(_ id: git_oid) -> Object? { positions[TreeCache.Key(id)].map { objects[$0] } }

    /// The bytes of `object`, sharing the buffer's storage (valid until the next `insert`).
    func bytes(of object: Object) -> ArraySlice<UInt8> { chunks[object.chunk][object.start..<(object.start + object.count)] }

    /// Keeps `data` as the object `id` of `type` (the caller hashed it); a second write of an id
    /// is dropped, as git's databases do.
    func insert(_ id: git_oid, type: git_object_t, data: UnsafeRawBufferPointer) {
        let key = TreeCache.Key(id)
        guard positions[key] == nil else { return }
        positions[key] = objects.count
        if chunks.last.map({ $0.count + data.count > $0.capacity }) ?? true {
            var chunk: [UInt8] = []
            chunk.reserveCapacity(max(Self.chunkSize, data.count))
            chunks.append(chunk)
        }
        let last = chunks.count - 1
        objects.append(Object(id: id, type: type, chunk: last, start: chunks[last].count, count: data.count))
        chunks[last].append(contentsOf: data)
    }

    func removeAll() {
        objects = []
        positions = [:]
        chunks = []
    }

    /// The id git gives `data` as an object of `type`: the SHA-1 of `<type> <size>\0` and the bytes.
    static func hash(_ data: UnsafeRawBufferPointer, type: git_object_t) throws(GitError) -> git_oid {
        guard let name = git_object_type2string(type) else {
            throw GitError(function: "hash", code: -1, message: "no object type \(type.rawValue)")
        }
        var sha = Insecure.SHA1()
        sha.update(data: Array("\(String(cString: name)) \(data.count)\0".utf8))
        sha.update(bufferPointer: data)
        var id = git_oid()
        withUnsafeMutableBytes(of: &id.id) { raw in
            for (index, byte) in sha.finalize().enumerated() { raw[index] = byte }
        }
        return id
    }
}

extension BufferedObjects {
    /// A libgit2 object database backend that reads and writes these objects (read, read_header,
    /// exists, write; no refresh, no freshen: an object written twice is kept once).
    ///
    /// The backend is freed by the object database it is added to (`git_odb_add_backend`), through
    /// its `free`, which releases these objects; until it is added, the caller frees it by calling
    /// its `free`.
    func makeBackend() throws(GitError) -> UnsafeMutablePointer<git_odb_backend> {
        let backend = UnsafeMutablePointer<bulwark_odb_backend>.allocate(capacity: 1)
        backend.initialize(to: bulwark_odb_backend())
        let initialized = git_odb_init_backend(&backend.pointee.parent, UInt32(GIT_ODB_BACKEND_VERSION))
        guard initialized == 0 else {
            backend.deallocate()
            try check(initialized, "git_odb_init_backend")
            throw GitError(function: "git_odb_init_backend", code: initialized, message: "cannot set up an object database backend")
        }
        backend.pointee.objects = Unmanaged.passRetained(self).toOpaque()
        backend.pointee.parent.read = { data, length, type, backend, id in
            guard let data, let length, let type, let id, let objects = BufferedObjects.owning(backend),
                  let object = objects.object(id.pointee) else { return GIT_ENOTFOUND.rawValue }
            guard let copy = git_odb_backend_data_alloc(backend, max(object.count, 1)) else {
                git_error_set_oom()
                return GIT_ERROR.rawValue
            }
            objects.bytes(of: object).withUnsafeBytes { raw in
                if let source = raw.baseAddress { copy.copyMemory(from: source, byteCount: raw.count) }
            }
            data.pointee = copy
            length.pointee = object.count
            type.pointee = object.type
            return 0
        }
        backend.pointee.parent.read_header = { length, type, backend, id in
            guard let length, let type, let id, let objects = BufferedObjects.owning(backend),
                  let object = objects.object(id.pointee) else { return GIT_ENOTFOUND.rawValue }
            length.pointee = object.count
            type.pointee = object.type
            return 0
        }
        backend.pointee.parent.exists = { backend, id in
            guard let id, let objects = BufferedObjects.owning(backend) else { return 0 }
            return objects.contains(id.pointee) ? 1 : 0
        }
        backend.pointee.parent.write = { backend, id, data, length, type in
            guard let id, let objects = BufferedObjects.owning(backend) else { return GIT_ERROR.rawValue }
            objects.insert(id.pointee, type: type, data: UnsafeRawBufferPointer(start: data, count: length))
            return 0
        }
        backend.pointee.parent.free = { backend in
            guard let backend else { return }
            let own = UnsafeMutableRawPointer(backend).assumingMemoryBound(to: bulwark_odb_backend.self)
            if let objects = own.pointee.objects { Unmanaged<BufferedObjects>.fromOpaque(objects).release() }
            own.deinitialize(count: 1)
            own.deallocate()
        }
        return UnsafeMutableRawPointer(backend).assumingMemoryBound(to: git_odb_backend.self)
    }

    /// The objects behind a backend made by `makeBackend`.
    private static func owning(_ backend: UnsafeMutablePointer<git_odb_backend>?) -> BufferedObjects? {
        guard let backend,
              let objects = UnsafeMutableRawPointer(backend).assumingMemoryBound(to: bulwark_odb_backend.self).pointee.objects
        else { return nil }
        return Unmanaged<BufferedObjects>.fromOpaque(objects).takeUnretainedValue()
    }
}

/// The objects of an open buffer and the object databases around it.
final class ObjectBuffer {
    /// Every object written since the buffer opened (also reachable through `odb`'s first backend).
    let objects: BufferedObjects
    /// The object database the repository used before: the disk only.
    let disk: OpaquePointer
    /// The database in use while buffering: `objects` first, then the disk's backends.
    let odb: OpaquePointer

    init(objects: BufferedObjects, disk: OpaquePointer, odb: OpaquePointer) {
        self.objects = objects
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
    /// `flushObjectBuffer`: a pass of 2,300 audit commits writes one pack file and its index
    /// instead of about 20,000 loose object files. Does nothing when a buffer is already open.
    ///
    /// The caller keeps the rule that no reference ever points at objects that are not on disk:
    /// objects written while a buffer is open may only be referenced (`updateReference`) after
    /// `flushObjectBuffer` returned. Reading works throughout: the buffer is searched first, then
    /// the disk.
    public func beginObjectBuffer() throws(GitError) {
        guard objectBuffer == nil else { return }
        var disk: OpaquePointer?
        try check(git_repository_odb(&disk, pointer), "git_repository_odb")
        guard let disk else { throw GitError(function: "git_repository_odb", code: -1, message: "no object database") }
        var odb: OpaquePointer?
        let folder = path + (path.hasSuffix("/") ? "" : "/") + "objects"
        do {
            try check(git_odb_open(&odb, folder), "git_odb_open(\(folder))")
        } catch {
            git_odb_free(disk)
            throw error
        }
        guard let odb else {
            git_odb_free(disk)
            throw GitError(function: "git_odb_open", code: -1, message: "no object database")
        }
        // A read that misses rescans the pack folder (`git_odb_refresh`: a stat of the folder and
        // of its multi-pack index, and a listing of it), and the listing grows with the packs. No
        // pack appears in this folder while the buffer is open except by `flushObjectBuffer`,
        // which closes it (the next buffer opens the folder afresh), so this database's backends
        // are never rescanned.
        for position in 0..<git_odb_num_backends(odb) {
            var existing: UnsafeMutablePointer<git_odb_backend>?
            if git_odb_get_backend(&existing, odb, position) == 0, let existing { existing.pointee.refresh = nil }
        }
        let objects = BufferedObjects()
        let backend: UnsafeMutablePointer<git_odb_backend>
        do {
            backend = try objects.makeBackend()
        } catch {
            git_odb_free(odb)
            git_odb_free(disk)
            throw error
        }
        // Highest priority: writes go to memory, reads look there first.
        let added = git_odb_add_backend(odb, backend, 999)
        guard added == 0 else {
            backend.pointee.free(backend)
            git_odb_free(odb)
            git_odb_free(disk)
            try check(added, "git_odb_add_backend(buffer)")
            return
        }
        git_repository_set_odb(pointer, odb)
        objectBuffer = ObjectBuffer(objects: objects, disk: disk, odb: odb)
    }

    /// Writes one object and returns its id. While a buffer is open it goes straight into the
    /// buffer, hashed here: `git_odb_write` first looks for the id in every backend (a failed
    /// `utimensat` of a loose path, a search of every pack), which a pass of audit objects, all
    /// new, paid for each of them; an object that is already on disk costs a copy in the next
    /// pack, which is harmless. Otherwise through libgit2, to disk.
    func writeObject(_ data: UnsafeRawBufferPointer, type: git_object_t) throws(GitError) -> git_oid {
        if let buffer = objectBuffer {
            let id = try BufferedObjects.hash(data, type: type)
            buffer.objects.insert(id, type: type, data: data)
            return id
        }
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, pointer), "git_repository_odb")
        defer { git_odb_free(odb) }
        var id = git_oid()
        try check(git_odb_write(&id, odb, data.baseAddress, data.count, type), "git_odb_write(\(type.rawValue))")
        return id
    }

    /// Writes every object written since `beginObjectBuffer` from memory to disk as one pack,
    /// with whatever else `tip` brings over `base` that the buffer does not hold (read from disk:
    /// a replayed record's blob), indexed and durable before this returns; then closes the
    /// buffer: new objects go to disk again. After it returns, a reference may point at `tip`.
    /// Throws, and writes nothing, when an object `tip` needs is neither in memory nor on disk.
    /// Returns the number of objects written.
    @discardableResult
    public func flushObjectBuffer(tip: ObjectID?, base: ObjectID?) throws(GitError) -> Int {
        guard let buffer = objectBuffer else { return 0 }
        var written = 0
        if let tip, tip != base {
            let others = try objectsNotBuffered(reaching: tip, notReaching: base, in: buffer)
            if let checksum = try PackFile.write(buffer.objects, and: others, from: buffer.disk, into: packFolder) {
                unpushedPacks.append(FlushedPack(base: base, tip: tip, name: "pack-" + checksum))
                if unpushedPacks.count > FlushedPack.kept { unpushedPacks.removeFirst(unpushedPacks.count - FlushedPack.kept) }
            }
            // The disk's database looks for the new pack.
            try check(git_odb_refresh(buffer.disk), "git_odb_refresh")
            written = buffer.objects.count + others.count
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
        buffer.objects.removeAll()
        git_repository_set_odb(pointer, buffer.disk)
        objectBuffer = nil
    }
}

// MARK: - What a flush must add to the buffered objects

extension Repository {
    /// The objects `tip` brings over `base` (as `newObjects` defines them: the commits from
    /// `tip` back to `base`, and of each commit's tree what differs from its first parent's)
    /// that the buffer does not hold, found by reading the buffered commits and trees from
    /// memory. Every such object must be on disk: the flush reads it from there into the pack,
    /// and fails when it cannot. Usually empty: a replayed commit's blobs are its exception.
    ///
    /// The walk reads only buffered objects, and from disk only the trees of `base` on the
    /// changed paths. When the commits between `tip` and `base` are not all buffered (a commit
    /// fetched or written before the buffer opened), `newObjects` decides.
    func objectsNotBuffered(reaching tip: ObjectID, notReaching base: ObjectID?, in buffer: ObjectBuffer) throws(GitError) -> [git_oid] {
        let objects = buffer.objects
        let baseKey = base.map { TreeCache.Key($0.raw) }
        var walk = BufferWalk(objects: objects)
        var commits = [tip.raw]
        var seenCommits = Set<TreeCache.Key>()
        while let id = commits.popLast() {
            let key = TreeCache.Key(id)
            if key == baseKey || !seenCommits.insert(key).inserted { continue }
            guard let commit = objects.object(id), commit.type == GIT_OBJECT_COMMIT else {
                return try newObjects(reaching: tip, notReaching: base).map(\.raw).filter { !objects.contains($0) }
            }
            guard let header = RawCommit(objects.bytes(of: commit)) else {
                throw GitError(function: "flush", code: -1, message: "buffered commit \(ObjectID(id).short) cannot be read")
            }
            var parentTree: git_oid?
            if let first = header.parents.first {
                if let parent = objects.object(first), parent.type == GIT_OBJECT_COMMIT {
                    parentTree = RawCommit(objects.bytes(of: parent))?.tree
                } else {
                    let parent = try lookupCommit(ObjectID(first))
                    parentTree = git_commit_tree_id(parent).pointee
                    git_commit_free(parent)
                }
            }
            try walk.compare(header.tree, with: parentTree, in: self)
            commits += header.parents
        }
        return walk.notBuffered
    }
}

/// The tree and parents of a commit, from its bytes.
struct RawCommit {
    var tree: git_oid
    var parents: [git_oid] = []

    init?(_ bytes: ArraySlice<UInt8>) {
        var tree: git_oid?
        var index = bytes.startIndex
        // Header lines up to the first empty line; `tree` comes first, then `parent`s.
        while index < bytes.endIndex, bytes[index] != 10 {
            let end = bytes[index...].firstIndex(of: 10) ?? bytes.endIndex
            let line = bytes[index..<end]
            if line.starts(with: Self.treePrefix) {
                tree = Self.oid(line.dropFirst(Self.treePrefix.count))
                if tree == nil { return nil }
            } else if line.starts(with: Self.parentPrefix) {
                guard let parent = Self.oid(line.dropFirst(Self.parentPrefix.count)) else { return nil }
                parents.append(parent)
            } else {
                break  // author, committer and the rest: no ids
            }
            index = end + 1
        }
        guard let tree else { return nil }
        self.tree = tree
    }

    private static let treePrefix = Array("tree ".utf8)
    private static let parentPrefix = Array("parent ".utf8)

    private static func oid(_ hex: ArraySlice<UInt8>) -> git_oid? {
        guard hex.count == 40 else { return nil }
        var oid = git_oid()
        let code = hex.withUnsafeBufferPointer { raw in
            raw.baseAddress.map { git_oid_fromstrn(&oid, UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self), 40) } ?? -1
        }
        return code == 0 ? oid : nil
    }
}

/// The tree comparison of `objectsNotBuffered`: each new tree against its parent's, entry by
/// entry in git's order, down the entries that differ.
struct BufferWalk {
    let objects: BufferedObjects
    private(set) var notBuffered: [git_oid] = []
    private var notBufferedKeys = Set<TreeCache.Key>()
    private var seenTrees = Set<TreeCache.Key>()

    init(objects: BufferedObjects) { self.objects = objects }

    struct Entry {
        var name: Range<Int>
        var isTree: Bool
        var isCommit: Bool
        var id: git_oid
    }

    mutating func compare(_ tree: git_oid, with base: git_oid?, in repository: Repository) throws(GitError) {
        if let base, TreeCache.Key(base) == TreeCache.Key(tree) { return }
        guard seenTrees.insert(TreeCache.Key(tree)).inserted else { return }
        let new = try bytes(tree, in: repository, needed: true)
        let old = try base.map { (id) throws(GitError) in try bytes(id, in: repository, needed: false) } ?? []
        guard let newEntries = Self.entries(new), let oldEntries = Self.entries(old) else {
            throw GitError(function: "flush", code: -1, message: "tree \(ObjectID(tree).short) cannot be read")
        }
        var o = 0
        for entry in newEntries {
            // git's order: by name, a tree's name compared as if it ended with `/`.
            var order = 1
            while o < oldEntries.count {
                order = Self.order(old, oldEntries[o], new, entry)
                if order >= 0 { break }
                o += 1
            }
            let same = order == 0 ? oldEntries[o] : nil
            if let same, TreeCache.Key(same.id) == TreeCache.Key(entry.id) { continue }
            if entry.isCommit { continue }  // a submodule's commit is not in this repository
            if entry.isTree {
                try compare(entry.id, with: same?.isTree == true ? same?.id : nil, in: repository)
            } else {
                need(entry.id)
            }
        }
    }

    /// A tree's bytes: from the buffer, else from disk (and, when `needed`, into the pack).
    private mutating func bytes(_ id: git_oid, in repository: Repository, needed: Bool) throws(GitError) -> ArraySlice<UInt8> {
        if let object = objects.object(id) { return objects.bytes(of: object) }
        if needed { need(id) }
        return try repository.rawObject(id)[...]
    }

    private mutating func need(_ id: git_oid) {
        guard !objects.contains(id), notBufferedKeys.insert(TreeCache.Key(id)).inserted else { return }
        notBuffered.append(id)
    }

    /// A tree's entries: `<octal mode> <name>\0<20-byte id>` each; nil when malformed.
    static func entries(_ bytes: ArraySlice<UInt8>) -> [Entry]? {
        var result: [Entry] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            guard let space = bytes[index...].firstIndex(of: 32) else { return nil }
            let mode = bytes[index..<space]
            guard let nul = bytes[(space + 1)...].firstIndex(of: 0), nul + 21 <= bytes.endIndex else { return nil }
            var id = git_oid()
            withUnsafeMutableBytes(of: &id.id) { raw in
                for position in 0..<20 { raw[position] = bytes[nul + 1 + position] }
            }
            result.append(Entry(name: (space + 1)..<nul, isTree: mode.elementsEqual(Self.treeMode),
                                isCommit: mode.elementsEqual(Self.commitMode), id: id))
            index = nul + 21
        }
        return result
    }

    private static let treeMode = Array("40000".utf8)
    private static let commitMode = Array("160000".utf8)

    /// -1, 0 or 1 as `a` (in `x`) comes before, at or after `b` (in `y`) in git's order.
    static func order(_ x: ArraySlice<UInt8>, _ a: Entry, _ y: ArraySlice<UInt8>, _ b: Entry) -> Int {
        let an = a.name.count, bn = b.name.count
        let common = min(an, bn)
        for offset in 0..<common {
            let p = x[a.name.lowerBound + offset], q = y[b.name.lowerBound + offset]
            if p != q { return p < q ? -1 : 1 }
        }
        let p: UInt8 = an > common ? x[a.name.lowerBound + common] : (a.isTree ? 47 : 0)
        let q: UInt8 = bn > common ? y[b.name.lowerBound + common] : (b.isTree ? 47 : 0)
        return p == q ? 0 : (p < q ? -1 : 1)
    }
}

extension Repository {
    /// The bytes of object `id` as the repository's object database reads it.
    func rawObject(_ id: git_oid) throws(GitError) -> [UInt8] {
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, pointer), "git_repository_odb")
        defer { git_odb_free(odb) }
        var object: OpaquePointer?
        var oid = id
        try check(git_odb_read(&object, odb, &oid), "git_odb_read(\(ObjectID(id).short))")
        defer { git_odb_object_free(object) }
        guard let data = git_odb_object_data(object) else { return [] }
        return Array(UnsafeRawBufferPointer(start: data, count: git_odb_object_size(object)))
    }
}
