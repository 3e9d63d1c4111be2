internal import CLibGit2
internal import Crypto
internal import Foundation

/// Why a reference was not updated on the remote.
public struct PushRejection: Sendable, Hashable {
    public init(reference: String, reason: String, locked: Bool = false) {
        self.reference = reference
        self.reason = reason
        self.locked = locked
    }

    public let reference: String
    public let reason: String
    /// The reference's lock file in a local origin was there: another process is moving it,
    /// or one killed while moving it left the lock (not a newer commit of another writer).
    public let locked: Bool
}

extension Repository {
    /// Makes sure remote `name` exists and points at `url` (updating it when it differs).
    public func ensureRemote(_ name: String, url: String) throws(GitError) {
        switch try remoteURL(name) {
        case nil:
            var remote: OpaquePointer?
            try check(git_remote_create(&remote, pointer, name, url), "git_remote_create(\(name))")
            git_remote_free(remote)
        case url?:
            return
        case _?:
            try check(git_remote_set_url(pointer, name, url), "git_remote_set_url(\(name))")
        }
    }

    /// The URL of remote `name`, or nil when there is no such remote.
    public func remoteURL(_ name: String) throws(GitError) -> String? {
        var config: OpaquePointer?
        try check(git_repository_config_snapshot(&config, pointer), "git_repository_config_snapshot")
        defer { git_config_free(config) }
        var value: UnsafePointer<CChar>?
        let code = git_config_get_string(&value, config, "remote.\(name).url")
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "git_config_get_string(remote.\(name).url)")
        return value.map { String(cString: $0) }
    }

    /// An in-memory remote for the URL of remote `name`, for one fetch, ls-remote or push.
    ///
    /// `git_remote_lookup` is not used here: in libgit2 1.5 it applies `url.*.insteadOf` through
    /// a regular expression whose PCRE2 match data is never freed (libgit2 PR #6382), about
    /// 20 KiB per call, which a daemon pushing after every fix cannot afford. The remote's URL
    /// is the one Bulwark itself configured, so there is nothing to rewrite.
    private func detachedRemote(_ name: String) throws(GitError) -> OpaquePointer {
        guard let url = try remoteURL(name) else {
            throw GitError(function: "remote \(name)", code: GIT_ENOTFOUND.rawValue, message: "no remote named \(name)")
        }
        var options = git_remote_create_options()
        try check(git_remote_create_options_init(&options, UInt32(GIT_REMOTE_CREATE_OPTIONS_VERSION)), "git_remote_create_options_init")
        options.repository = pointer
        options.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF.rawValue | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC.rawValue
        var remote: OpaquePointer?
        try check(git_remote_create_with_opts(&remote, url, &options), "git_remote_create_with_opts(\(name))")
        guard let remote else { throw GitError(function: "git_remote_create_with_opts(\(name))", code: -1, message: "libgit2 returned no remote") }
        return remote
    }

    /// Which redirects libgit2 follows for `remote`: none over plain http (the credential
    /// callback is asked with the URL given, not the one redirected to, so a loopback URL that
    /// redirects elsewhere would take the password with it), else the first request's, as git.
    static func redirects(_ remote: OpaquePointer) -> git_remote_redirect_t {
        let url = git_remote_url(remote).map { String(cString: $0) } ?? ""
        return url.lowercased().hasPrefix("http://") ? GIT_REMOTE_REDIRECT_NONE : GIT_REMOTE_REDIRECT_INITIAL
    }

    /// Fetches `refspecs` from remote `name` (forced updates, pruning refs deleted upstream).
    public func fetch(remote name: String, refspecs: [String], access: RemoteAccess = RemoteAccess()) throws(GitError) {
        let remote = try detachedRemote(name)
        defer { git_remote_free(remote) }
        var options = git_fetch_options()
        try check(git_fetch_options_init(&options, UInt32(GIT_FETCH_OPTIONS_VERSION)), "git_fetch_options_init")
        options.prune = GIT_FETCH_PRUNE
        options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE
        options.follow_redirects = Self.redirects(remote)
        let box = RemoteCallbacks(access: access)
        box.install(&options.callbacks)
        try box.run { () throws(GitError) in
            try withStrArray(refspecs) { (array) throws(GitError) in
                _ = try check(git_remote_fetch(remote, array, &options, "bulwark: fetch"), "git_remote_fetch(\(name))")
            }
        }
    }

    /// The references remote `name` advertises and where they point (`git ls-remote`), without
    /// fetching anything: cheap enough to ask on every poll.
    public func remoteHeads(_ name: String, access: RemoteAccess = RemoteAccess()) throws(GitError) -> [String: ObjectID] {
        let remote = try detachedRemote(name)
        defer { git_remote_free(remote) }
        var callbacks = git_remote_callbacks()
        try check(git_remote_init_callbacks(&callbacks, UInt32(GIT_REMOTE_CALLBACKS_VERSION)), "git_remote_init_callbacks")
        let box = RemoteCallbacks(access: access)
        box.install(&callbacks)
        return try box.run { () throws(GitError) -> [String: ObjectID] in
            try check(git_remote_connect(remote, GIT_DIRECTION_FETCH, &callbacks, nil, nil), "git_remote_connect(\(name))")
            defer { git_remote_disconnect(remote) }
            var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
            var count = 0
            try check(git_remote_ls(&heads, &count, remote), "git_remote_ls(\(name))")
            var result: [String: ObjectID] = [:]
            for index in 0..<count {
                guard let head = heads?[index]?.pointee, let refName = head.name else { continue }
                result[String(cString: refName)] = ObjectID(head.oid)
            }
            return result
        }
    }

    /// Pushes local reference `source` to `destination` on remote `name` as a compare-and-swap:
    /// the remote reference moves only if it still points at `expected` (nil: only if it does
    /// not exist) and only forward (`expected` must be an ancestor of `source`). Never forced.
    ///
    /// Smart transports (HTTP, SSH) send `expected` as the old value and the server updates
    /// under its ref lock, comparing first; `push_negotiation` refuses to start when the
    /// advertised value already differs. libgit2 1.5's local transport has no such check: it
    /// tests fast-forward against the value read at connect time, writes the pack, then *forces*
    /// the reference (`git_reference_create(force: 1)`), so a push landing in between is lost.
    /// For a local path, objects are therefore written into the origin's object database as a
    /// pack and its reference is moved with `git_reference_create_matching` (under git's own
    /// `.lock` file, which the git CLI honours too).
    ///
    /// - Returns: nil when the remote took the update, otherwise why not (it moved, or the
    ///   update is not a fast-forward); throws when the remote cannot be reached at all.
    public func push(_ source: String, to destination: String, expected: ObjectID?, remote name: String,
                     access: RemoteAccess = RemoteAccess()) throws(GitError) -> PushRejection? {
        guard let new = try resolve(source) else {
            throw GitError(function: "push", code: GIT_ENOTFOUND.rawValue, message: "no reference \(source) to push")
        }
        if let expected {
            guard try contains(expected), try isAncestor(expected, of: new) else {
                return PushRejection(reference: destination, reason: "not a fast-forward of \(expected.short)")
            }
        }
        guard let url = try remoteURL(name) else {
            throw GitError(function: "remote \(name)", code: GIT_ENOTFOUND.rawValue, message: "no remote named \(name)")
        }
        if let path = Self.localPath(url) {
            return try pushLocally(new, to: destination, expected: expected, origin: path)
        }
        return try pushOverNetwork(source, to: destination, expected: expected, remote: name, access: access)
    }

    /// `push(_:to:…)` of a commit no reference names: a prefix of the commits a branch holds over
    /// the remote's, replayed onto the remote's head. The smart transports push references only,
    /// so `refs/bulwark/push` names it for the push and is removed after it.
    public func push(commit new: ObjectID, to destination: String, expected: ObjectID?, remote name: String,
                     access: RemoteAccess = RemoteAccess()) throws(GitError) -> PushRejection? {
        let source = "refs/bulwark/push"
        try forceReference(source, to: new, message: "bulwark: push a prefix")
        defer { git_reference_remove(pointer, source) }
        return try push(source, to: destination, expected: expected, remote: name, access: access)
    }

    /// The folder a URL names when libgit2 would use its local transport for it, else nil.
    static func localPath(_ url: String) -> String? {
        if url.hasPrefix("file://") { return String(url.dropFirst("file://".count)).removingPercentEncoding }
        if url.contains("://") { return nil }
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url, isDirectory: &isDirectory) && isDirectory.boolValue ? url : nil
    }

    private func pushLocally(_ new: ObjectID, to destination: String, expected: ObjectID?, origin path: String) throws(GitError) -> PushRejection? {
        let origin = try Repository.open(at: path)
        guard origin.isBare else {
            throw GitError(function: "push", code: GIT_EBAREREPO.rawValue,
                           message: "\(path) is not a bare repository; Bulwark pushes only to bare repositories")
        }
        // Cheap early answer; the compare that counts is the one under the lock below.
        let current = try origin.resolve(destination)
        if current != expected {
            return PushRejection(reference: destination, reason: "the remote is at \(current?.short ?? "nothing"), not \(expected?.short ?? "nothing")")
        }
        // The packs this process flushed hold exactly what `new` brings over `expected` when they
        // chain from one to the other: they are copied as they are, or, when that would leave
        // the origin more packs than its consolidation allows, written into it as one pack.
        // Otherwise (commits written straight to disk, replayed, or packs merged since) the
        // objects are packed again.
        let chain = unpushedChain(from: expected, to: new)
        let merge = chain.count > 1 && origin.packFiles().count + chain.count > Repository.packBound
        if chain.isEmpty || !(merge ? sendMerged(chain, to: origin) : sendPacks(chain, to: origin)) {
            try copyObjects(reaching: new, notReaching: expected, into: origin)
        }
        do {
            // Never cut short by `apply`'s second Ctrl-C (`OriginReferenceMoves`): the lock would stay.
            do {
                try OriginReferenceMoves.move { () throws(GitError) in
                    try origin.updateReference(destination, to: new, expected: expected, message: "push: bulwark")
                }
            } catch where error.code == GIT_ELOCKED.rawValue && Self.removeCompletedLock(of: destination, in: path) {
                try OriginReferenceMoves.move { () throws(GitError) in
                    try origin.updateReference(destination, to: new, expected: expected, message: "push: bulwark")
                }
            }
        } catch {
            guard error.isModified || error.code == GIT_ELOCKED.rawValue else { throw error }
            if error.code == GIT_ELOCKED.rawValue, let stale = Self.staleLock(of: destination, in: path) { throw stale }
            return PushRejection(reference: destination, reason: error.message, locked: error.code == GIT_ELOCKED.rawValue)
        }
        let sent = Set(chain.map(\.name))
        unpushedPacks.removeAll { sent.contains($0.name) }
        // As git's receive-pack runs `gc --auto`: every push adds a pack to the origin, and
        // libgit2 looks at each of them (a stat and a `.keep` check) whenever it opens the
        // origin's objects, so a daemon's pushes grew slower with every fix. Its small packs
        // are merged once there are more than 16 (complete and synced before any is removed;
        // packs with a `.keep` file and large ones are left alone). A failure leaves the packs
        // as they are, for the next push to try again: the record is already on the origin.
        _ = try? origin.consolidatePacks()
        return nil
    }

    /// How old a reference's lock file in a local origin must be to be taken for one left by a
    /// killed process: git holds it for the moment a reference moves.
    static let staleLockAge: TimeInterval = 60

    /// The error for `reference`'s lock file in the local origin at `path` when it is older than
    /// `staleLockAge`, nil otherwise. A git process killed while it moved the reference leaves
    /// it, and git never removes it: every push to that branch then fails. Retried as a race
    /// with another writer, each push waited out its whole deadline before it gave up, in every
    /// pass, with words that blamed another writer.
    static func staleLock(of reference: String, in path: String) -> GitError? {
        let lock = path + "/" + reference + ".lock"
        var info = stat()
        guard lstat(lock, &info) == 0 else { return nil }
        let age = Date().timeIntervalSince1970 - (TimeInterval(info.st_mtim.tv_sec) + TimeInterval(info.st_mtim.tv_nsec) / 1e9)
        guard age > staleLockAge else { return nil }
        return GitError(function: "push", code: GIT_ELOCKED.rawValue,
                        message: "\(lock) has been there for \(Int(age)) s: a process killed while it moved \(reference) "
                            + "(a git command, or a Bulwark killed mid-push) leaves it, and nothing can push to that branch "
                            + "while it is there; once no git or Bulwark process is pushing to \(path), remove \(lock)")
    }

    /// Removes `reference`'s lock file in the local origin at `path` when it is the leftover of a
    /// move that completed: libgit2 renames the lock onto a reference that has no loose file by
    /// `link` and then `unlink`, and a process killed between the two (a Bulwark killed mid-push)
    /// leaves the lock as a second name of the reference's file, which blocked every push to
    /// that branch, by every Bulwark and every person, until someone removed it. Only that
    /// shape is removed (the same file as the reference: same device and inode); any other lock
    /// is some git process's, live or not, and stays (`staleLock` reports an old one). The lock
    /// is first moved aside under a name git does not read, and removed only if it is still the
    /// reference's file: a lock another process took in between is put back.
    ///
    /// Bulwarks that remove such locks do it one at a time, under a `flock` of the origin's
    /// `refs` folder: two of them interleaved could otherwise move aside a live lock a third
    /// writer took after the leftover was gone, and two writers would then both hold the branch.
    /// - Returns: whether a lock was removed (the move can be tried again).
    static func removeCompletedLock(of reference: String, in path: String) -> Bool {
        let folder = Glibc.open(path + "/refs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard folder >= 0 else { return false }
        defer { close(folder) }
        // Blocking: the one holding it only moves and compares a file.
        guard flock(folder, LOCK_EX) == 0 else { return false }
        let lock = path + "/" + reference + ".lock"
        func identity(_ file: String) -> (dev_t, ino_t)? {
            var info = stat()
            guard lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
            return (info.st_dev, info.st_ino)
        }
        guard let locked = identity(lock), let current = identity(path + "/" + reference), locked == current else { return false }
        let aside = path + "/bulwark-completed-lock-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard rename(lock, aside) == 0 else { return false }
        guard let moved = identity(aside), let still = identity(path + "/" + reference), moved == still else {
            // Another process's lock, taken after the check: back where it was (`link` never
            // replaces a newer one; then its owner's move fails and is tried again).
            _ = link(aside, lock)
            unlink(aside)
            return false
        }
        return unlink(aside) == 0
    }

    /// The unpushed packs that lead from `base` to `tip`, oldest first; empty when they do not.
    func unpushedChain(from base: ObjectID?, to tip: ObjectID) -> [FlushedPack] {
        var chain: [FlushedPack] = []
        var next: ObjectID? = tip
        while next != base {
            guard let current = next, let pack = unpushedPacks.last(where: { $0.tip == current }), chain.count < FlushedPack.kept
            else { return [] }
            chain.append(pack)
            next = pack.base
        }
        return chain.reversed()
    }

    /// Copies `packs` (see `PackFile`) into `origin`'s pack folder: each file streamed into a
    /// temporary file while its SHA-1 is computed (the pack's checked against its name and
    /// trailer, the index's against its trailer and the pack's checksum), and only when it holds
    /// fsynced and renamed into place, the pack before its index; then the folder synced. A copy,
    /// never a hard link: the origin is the record, and damage to the state clone (a truncated
    /// file) must not reach it. Streamed, not read whole: at the end of an apply the packs of the
    /// pass (2-3 MB each) were held twice over (file contents and a copy). Returns false when
    /// one could not be placed (a pack given without its index is taken back), and the caller
    /// packs the objects again, reading each through libgit2.
    private func sendPacks(_ packs: [FlushedPack], to origin: Repository) -> Bool {
        let source = packFolder
        let target = origin.packFolder
        for pack in packs {
            let indexPath = target + "/" + pack.name + ".idx"
            // Already there (the name is the content's checksum): only when the pack is too and
            // ends in that checksum, never on an index alone that someone left or made.
            if access(indexPath, F_OK) == 0, Self.packEnds(target + "/" + pack.name + ".pack", as: pack.name) { continue }
            let packPath = target + "/" + pack.name + ".pack"
            guard let packChecksum = Self.copyCheckedPackFile(source + "/" + pack.name + ".pack", to: packPath, in: target,
                                                              name: pack.name, packChecksum: nil) else { return false }
            guard Self.copyCheckedPackFile(source + "/" + pack.name + ".idx", to: indexPath, in: target,
                                           name: pack.name, packChecksum: packChecksum) != nil else {
                unlink(packPath)
                return false
            }
        }
        do { try Repository.sync(target) } catch { return false }
        return true
    }

    /// Writes `packs` into `origin` as one pack (`mergePacks`: each entry of Bulwark's packs
    /// copied as it is, its CRC-32 checked against its index), durable before the reference
    /// moves. A large pass flushes a pack every 512 records: copied one by one, the origin then
    /// held more than 16 packs and merged them again, so every byte was written, hashed and
    /// synced twice. (Not for a few packs: a merge holds one pack's bytes and every object id
    /// in memory, where a copy streams; 4-5 MiB more at the peak of a 2,400-record pass.)
    /// Returns false when the pack could not be written; the caller then packs the objects again.
    private func sendMerged(_ packs: [FlushedPack], to origin: Repository) -> Bool {
        var odb: OpaquePointer?
        guard git_repository_odb(&odb, pointer) == 0, let odb else { return false }
        defer { git_odb_free(odb) }
        let target = origin.packFolder
        do {
            // The builder syncs the pack, its index and, when it renamed them into place, the
            // folder; synced here too for a pack of that name found there already.
            guard let checksum = try Self.mergePacks(packs.map { packFolder + "/" + $0.name }, into: target, reading: odb)
            else { return false }
            // A pack of that name found there already counts only whole, as in `sendPacks`:
            // never on an index alone that someone left or made.
            let name = "pack-" + checksum
            guard access(target + "/" + name + ".idx", F_OK) == 0, Self.packEnds(target + "/" + name + ".pack", as: name)
            else { return false }
            try Repository.sync(target)
            return true
        } catch {
            return false
        }
    }

    /// Whether the pack file at `path` is a regular file ending in the checksum its name states.
    static func packEnds(_ path: String, as name: String) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size >= 32 else { return false }
        var trailer = [UInt8](repeating: 0, count: 20)
        let read = trailer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 20, info.st_size - 20) }
        return read == 20 && "pack-" + PackFile.hex(trailer) == name
    }

    /// Copies a pack (`packChecksum` nil) or its index to `destination` in `folder` through a
    /// temporary file (named as git names its temporary packs, which its maintenance removes if
    /// left behind), fsynced, read-only, renamed into place only when its SHA-1 trailer holds: a
    /// pack's checksum is also its name; an index names its pack's checksum before its own.
    /// Returns the file's trailer (its checksum), nil when it was not placed.
    static func copyCheckedPackFile(_ path: String, to destination: String, in folder: String,
                                            name: String, packChecksum: [UInt8]?) -> [UInt8]? {
        let input = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { return nil }
        defer { close(input) }
        var status = stat()
        guard fstat(input, &status) == 0, status.st_size >= 40 else { return nil }
        let size = Int(status.st_size)
        let body = size - 20
        var template = Array((folder + "/" + Repository.ownTemporaryPackPrefix + "XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { $0.baseAddress.map { mkstemp($0) } ?? -1 }
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let temporary = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var hash = Insecure.SHA1()
        // The last 40 bytes: the index's copy of its pack's checksum, then the trailer.
        var tail: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256 << 10)
        var offset = 0
        var copied = true
        while copied {
            let n = chunk.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0, offset + n <= size else { copied = false; break }
            if n == 0 { break }
            chunk.withUnsafeBytes { raw in
                let part = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                if offset < body { hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: part[0..<min(n, body - offset)])) }
                let tailStart = max(offset, size - 40)
                if tailStart < offset + n { tail += part[(tailStart - offset)...] }
                var written = 0
                while written < n {
                    let w = write(fd, part.baseAddress.map { $0 + written }, n - written)
                    if w < 0 {
                        if errno == EINTR { continue }
                        copied = false
                        return
                    }
                    written += w
                }
            }
            offset += n
        }
        let trailer = Array(tail.suffix(20))
        var valid = copied && offset == size && tail.count == 40 && Array(hash.finalize()) == trailer
        if let packChecksum {
            valid = valid && Array(tail.prefix(20)) == packChecksum
        } else {
            valid = valid && "pack-" + PackFile.hex(trailer) == name
        }
        let synced = valid && fchmod(fd, 0o444) == 0 && fsync(fd) == 0
        close(fd)
        guard synced, rename(temporary, destination) == 0 else {
            unlink(temporary)
            return nil
        }
        return trailer
    }

    /// Writes the objects `tip` brings over `base` into `target` as one pack of whole objects
    /// (see `newObjects` and `writePack`): audit objects are tiny and new, so a delta search over
    /// them (libgit2's pack builder) costs far more than it saves. The pack and its index appear
    /// under their final names only once complete.
    private func copyObjects(reaching tip: ObjectID, notReaching base: ObjectID?, into target: Repository) throws(GitError) {
        try writePack(try newObjects(reaching: tip, notReaching: base), into: target)
    }

    private func pushOverNetwork(_ source: String, to destination: String, expected: ObjectID?, remote name: String,
                                 access: RemoteAccess) throws(GitError) -> PushRejection? {
        let remote = try detachedRemote(name)
        defer { git_remote_free(remote) }
        var options = git_push_options()
        try check(git_push_options_init(&options, UInt32(GIT_PUSH_OPTIONS_VERSION)), "git_push_options_init")
        options.follow_redirects = Self.redirects(remote)
        let box = RemoteCallbacks(access: access)
        box.expectedOld = expected.map(\.raw) ?? git_oid()
        options.callbacks.push_negotiation = { updates, count, payload in
            guard let updates, let payload else { return 0 }
            let box = Unmanaged<RemoteCallbacks>.fromOpaque(payload).takeUnretainedValue()
            for index in 0..<count {
                guard var update = updates[index]?.pointee else { continue }
                if git_oid_equal(&update.src, &box.expectedOld) == 0 {
                    box.moved = "the remote is at \(ObjectID(update.src).short), not where Bulwark last fetched it"
                    return GIT_EUSER.rawValue
                }
            }
            return 0
        }
        options.callbacks.push_update_reference = { reference, status, payload in
            guard let status, let reference, let payload else { return 0 }
            let box = Unmanaged<RemoteCallbacks>.fromOpaque(payload).takeUnretainedValue()
            box.rejections.append(PushRejection(reference: String(cString: reference), reason: String(cString: status)))
            return 0
        }
        box.install(&options.callbacks)
        do {
            try box.run { () throws(GitError) in
                try withStrArray(["\(source):\(destination)"]) { (array) throws(GitError) in
                    _ = try check(git_remote_push(remote, array, &options), "git_remote_push(\(name))")
                }
            }
        } catch {
            if let moved = box.moved { return PushRejection(reference: destination, reason: moved) }
            // libgit2 refuses before sending when the advertised head is not in our history.
            if error.isNonFastForward { return PushRejection(reference: destination, reason: error.message) }
            throw error
        }
        return box.rejections.first
    }
}
