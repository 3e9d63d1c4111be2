internal import CLibGit2
internal import Foundation

/// What `Repository.seedObjects(from:)` did to a new clone's object database.
public enum ObjectSeed: Sendable, Equatable {
    /// The origin's packs are in the clone, `linked` of them hard-linked (the origin's files)
    /// and `copied` copied; its `looseObjects` loose objects were written as one pack.
    case seeded(linked: Int, copied: Int, looseObjects: Int)
    /// Nothing was seeded (the clone's object folder is as it was): the first fetch transfers
    /// every object. Why, in words.
    case skipped(String)
}

extension Repository {
    /// Fills the object database of a new clone (one without any reference) with every object
    /// of its origin before the first fetch, when the origin is a repository on this machine
    /// (a path, or a `file://` URL), as `git clone --local` does: the origin's packs are
    /// hard-linked into the clone's `objects/pack` (copied and checked when a link is refused,
    /// e.g. another filesystem), and its loose objects read through libgit2 and written into the
    /// clone as one pack. The fetch then finds every tip it wants already present (libgit2's
    /// `fetch.c` marks such heads local and asks for no pack) and only writes references.
    /// Without it libgit2's local transport packs every object of the origin again, 800,007 of
    /// them for 100,000 audit records (about 50 s of CPU), and indexes them into the clone.
    ///
    /// Never alternates (the origin may gc), never a write into the origin (it is only read;
    /// a link adds a name to a file in the clone's folder). libgit2 still checks every object's
    /// hash when it reads it. Best effort: any failure (a pack deleted or rewritten while it was
    /// linked or copied, a loose object pruned, an unreadable file) removes whatever this placed,
    /// reopens the object database, and returns `.skipped`; a pack or index appears only under
    /// its final name and complete (a link, or a checked copy renamed into place, the pack
    /// before its index). Origins that may lack objects are not seeded: shallow ones, with
    /// alternates, or with promisor packs.
    ///
    /// The origin's folders are read until two readings in a row find nothing new (at most four
    /// rounds), loose objects before packs: git moves an object from loose to a pack, or from a
    /// pack to another, only by writing the new pack first, so an object the origin had when a
    /// round began is in the clone when a round ends finding nothing new.
    public func seedObjects(from url: String) -> ObjectSeed {
        guard let originPath = Self.localPath(url) else { return .skipped("the origin is not a repository on this machine") }
        var placed: [String] = []
        do throws(GitError) {
            guard try !hasReferences() else { return .skipped("the clone is not new") }
            let origin = try Repository.open(at: originPath)
            let shallow = git_repository_is_shallow(origin.pointer)
            try check(shallow, "git_repository_is_shallow")
            guard shallow == 0 else { return .skipped("the origin is shallow") }
            guard let commondir = git_repository_commondir(origin.pointer) else {
                throw GitError(function: "git_repository_commondir", code: -1, message: "no folder")
            }
            let common = String(cString: commondir)
            let objects = common + (common.hasSuffix("/") ? "" : "/") + "objects"
            guard access(objects + "/info/alternates", F_OK) != 0 else { return .skipped("the origin borrows objects (alternates)") }
            var odb: OpaquePointer?
            try check(git_repository_odb(&odb, pointer), "git_repository_odb")
            defer { git_odb_free(odb) }
            guard let odb else { throw GitError(function: "git_repository_odb", code: -1, message: "no object database") }

            let target = packFolder
            var seededLoose = Set<ObjectID>()
            var seededPacks = Set<String>()
            var linked = 0
            var copied = 0
            var stable = false
            for round in 0..<4 where !stable {
                let loose = try Self.looseObjects(in: objects).filter { !seededLoose.contains($0) }
                if let written = try origin.writeNamedPack(loose, into: self, database: odb) {
                    placed += [target + "/pack-" + written.checksum + ".pack", target + "/pack-" + written.checksum + ".idx"]
                    seededLoose.formUnion(loose)
                }
                let packs = try Self.packNames(in: objects + "/pack").subtracting(seededPacks)
                for name in packs.sorted() {
                    if try placePack(name, from: objects + "/pack", into: target, placed: &placed) { linked += 1 } else { copied += 1 }
                    seededPacks.insert(name)
                }
                stable = round > 0 && loose.isEmpty && packs.isEmpty
            }
            guard stable else { throw GitError(function: "seed", code: -1, message: "the origin's objects kept changing") }
            try Self.sync(target)
            try reopenObjectDatabase()
            return .seeded(linked: linked, copied: copied, looseObjects: seededLoose.count)
        } catch {
            // Indexes first: a pack without its index is ignored by every reader.
            for file in placed.sorted(by: { $0.hasSuffix(".idx") && !$1.hasSuffix(".idx") }) { unlink(file) }
            // libgit2 may have mapped a removed pack: it must not answer for its objects.
            do { try reopenObjectDatabase() } catch {
                return .skipped("\(error.description) (after a failed seed)")
            }
            return .skipped(error.description)
        }
    }

    /// Whether the repository has any reference (HEAD of a new repository is not one).
    private func hasReferences() throws(GitError) -> Bool {
        var iterator: OpaquePointer?
        try check(git_reference_iterator_new(&iterator, pointer), "git_reference_iterator_new")
        defer { git_reference_iterator_free(iterator) }
        var name: UnsafePointer<CChar>?
        let code = git_reference_next_name(&name, iterator)
        if code == GIT_ITEROVER.rawValue { return false }
        try check(code, "git_reference_next_name")
        return true
    }

    /// The ids of the loose objects under `objects` (`xx/` + 38 hex digits; temporary files skipped).
    private static func looseObjects(in objects: String) throws(GitError) -> [ObjectID] {
        var result: [ObjectID] = []
        for folder in try names(in: objects) where folder.utf8.count == 2 && folder.allSatisfy(\.isHexDigit) {
            for name in try names(in: objects + "/" + folder) where name.utf8.count == 38 && name.allSatisfy(\.isHexDigit) {
                if let id = ObjectID(hex: (folder + name).lowercased()) { result.append(id) }
            }
        }
        return result
    }

    /// The names (`pack-<hex>`) of the packs in `folder` that have an index; throws when one is
    /// a promisor pack (the origin is a partial clone and may lack objects).
    private static func packNames(in folder: String) throws(GitError) -> Set<String> {
        let files = Set(try names(in: folder))
        if files.contains(where: { $0.hasSuffix(".promisor") }) {
            throw GitError(function: "seed", code: -1, message: "the origin has promisor packs (a partial clone)")
        }
        return Set(files.compactMap { file -> String? in
            guard file.hasPrefix("pack-"), file.hasSuffix(".pack") else { return nil }
            let name = String(file.dropLast(".pack".count))
            guard name.utf8.count == 45, name.dropFirst(5).allSatisfy(\.isHexDigit), files.contains(name + ".idx") else { return nil }
            return name
        })
    }

    private static func names(in folder: String) throws(GitError) -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            if access(folder, F_OK) != 0 { return [] }
            throw GitError(function: "seed", code: -1, message: "cannot list \(folder): \(error.localizedDescription)")
        }
    }

    /// Places the origin's pack `name` and its index in `target`, the pack first: hard-linked
    /// when the filesystem allows (returns true), else copied through a temporary file and
    /// checked (SHA-1 of the whole file; see `copyCheckedPackFile`). A linked pack must end in
    /// the checksum its name states, and its index must name that pack. A pack already in
    /// `target` under that name (a seed cut short) is kept when it passes the same checks.
    private func placePack(_ name: String, from source: String, into target: String,
                           placed: inout [String]) throws(GitError) -> Bool {
        let pack = target + "/" + name + ".pack"
        let index = target + "/" + name + ".idx"
        func failed(_ what: String) -> GitError {
            GitError(function: "seed", code: -1, message: "\(name) of the origin: \(what)")
        }
        guard let id = ObjectID(hex: String(name.dropFirst("pack-".count)).lowercased()) else { throw failed("not a pack name") }
        let checksum = withUnsafeBytes(of: id.raw.id) { Array($0) }
        switch Self.link(source + "/" + name + ".pack", to: pack, placed: &placed) {
        case .linked, .exists:
            guard Self.packEnds(pack, as: name) else { throw failed("the pack does not end in its checksum") }
        case .refused:
            guard Self.copyCheckedPackFile(source + "/" + name + ".pack", to: pack, in: target, name: name, packChecksum: nil) != nil
            else { throw failed("cannot copy the pack") }
            placed.append(pack)
            guard Self.copyCheckedPackFile(source + "/" + name + ".idx", to: index, in: target, name: name, packChecksum: checksum) != nil
            else { throw failed("cannot copy the index") }
            placed.append(index)
            return false
        case .failed(let code):
            throw failed("cannot link the pack (errno \(code))")
        }
        switch Self.link(source + "/" + name + ".idx", to: index, placed: &placed) {
        case .linked, .exists:
            guard Self.indexNames(index, pack: checksum) else { throw failed("the index is not the pack's") }
        case .refused:
            guard Self.copyCheckedPackFile(source + "/" + name + ".idx", to: index, in: target, name: name, packChecksum: checksum) != nil
            else { throw failed("cannot copy the index") }
            placed.append(index)
        case .failed(let code):
            throw failed("cannot link the index (errno \(code))")
        }
        return true
    }

    private enum LinkOutcome { case linked, exists, refused, failed(Int32) }

    /// A hard link of `source` at `destination` (recorded in `placed`); `.refused` when the
    /// filesystem or the kernel does not allow one here (the caller copies instead).
    private static func link(_ source: String, to destination: String, placed: inout [String]) -> LinkOutcome {
        if Glibc.link(source, destination) == 0 {
            placed.append(destination)
            return .linked
        }
        switch errno {
        case EEXIST: return .exists
        case EXDEV, EPERM, EACCES, EMLINK, EOPNOTSUPP, EROFS: return .refused
        case let code: return .failed(code)
        }
    }

    /// Whether the index at `path` is a regular file of at least a header, a fan-out table and
    /// its trailer, whose trailer names the pack `checksum`.
    private static func indexNames(_ path: String, pack checksum: [UInt8]) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size >= 8 + 1024 + 40 else { return false }
        var named = [UInt8](repeating: 0, count: 20)
        let read = named.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 20, info.st_size - 40) }
        return read == 20 && named == checksum
    }
}
