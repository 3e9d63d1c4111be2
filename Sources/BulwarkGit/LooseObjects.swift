internal import CLibGit2
internal import Foundation

extension Repository {
    /// Loose object files that are not one complete zlib stream (truncated, overwritten), as
    /// paths. Checked here because libgit2 1.5 can spin forever inflating a truncated loose
    /// object instead of reporting it.
    public func damagedLooseObjects() -> [String] {
        looseObjectFiles().map(\.file).filter { !Self.isCompleteZlibStream($0) }.sorted()
    }

    /// The loose objects (`objects/xx/…`), by id.
    public func looseObjects() -> [ObjectID] {
        looseObjectFiles().map(\.id).sorted()
    }

    /// Every file of the object folder's fan-out (`objects/xx/` and 38 hex digits), its id and path.
    private func looseObjectFiles() -> [(id: ObjectID, file: String)] {
        let objects = path + (path.hasSuffix("/") ? "" : "/") + "objects"
        let fm = FileManager.default
        guard let folders = try? fm.contentsOfDirectory(atPath: objects) else { return [] }
        var files: [(id: ObjectID, file: String)] = []
        for folder in folders where folder.utf8.count == 2 && folder.allSatisfy(\.isHexDigit) {
            guard let names = try? fm.contentsOfDirectory(atPath: objects + "/" + folder) else { continue }
            for name in names where name.utf8.count == 38 {
                if let id = ObjectID(hex: (folder + name).lowercased()) { files.append((id, objects + "/" + folder + "/" + name)) }
            }
        }
        return files
    }

    /// Writes every loose object into one pack, durable (`PackFile.write`: fsynced and renamed
    /// into place, the folder fsynced) before any loose file is removed, so that no object is
    /// ever missing; then removes the loose files and the fan-out folders left empty. Only
    /// with no other writer in the repository (Bulwark's state directory lock). Returns the
    /// number of objects packed (0: there were none). Damaged loose objects must be dealt with
    /// first (`damagedLooseObjects`): one that cannot be read fails the pack, and nothing is
    /// removed.
    @discardableResult
    public func packLooseObjects() throws(GitError) -> Int {
        guard objectBuffer == nil else { return 0 }
        let loose = looseObjects()
        guard !loose.isEmpty else { return 0 }
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, pointer), "git_repository_odb")
        defer { git_odb_free(odb) }
        guard let odb else { throw GitError(function: "git_repository_odb", code: -1, message: "no object database") }
        _ = try PackFile.write(loose, from: odb, into: packFolder, level: Z_BEST_SPEED)
        try check(git_odb_refresh(odb), "git_odb_refresh")
        let objects = path + (path.hasSuffix("/") ? "" : "/") + "objects"
        let fm = FileManager.default
        var folders = Set<String>()
        for id in loose {
            let folder = objects + "/" + id.hex.prefix(2)
            folders.insert(folder)
            try? fm.removeItem(atPath: folder + "/" + id.hex.dropFirst(2))
        }
        for folder in folders { rmdir(folder) }
        // libgit2 keeps the loose backend's view; reopened, it reads the pack.
        try reopenObjectDatabase()
        return loose.count
    }

    /// Whether `file` holds one zlib stream that inflates to its end (output discarded).
    static func isCompleteZlibStream(_ file: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: file) else { return false }
        defer { try? handle.close() }
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return false }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: 65_536)
        while true {
            guard let chunk = try? handle.read(upToCount: 65_536), !chunk.isEmpty else { return false }
            var input = [UInt8](chunk)
            let inputCount = input.count
            let status: Int32 = input.withUnsafeMutableBufferPointer { inBuffer in
                stream.next_in = inBuffer.baseAddress
                stream.avail_in = UInt32(inputCount)
                var code = Z_OK
                while stream.avail_in > 0 || code == Z_OK {
                    code = output.withUnsafeMutableBufferPointer { outBuffer in
                        stream.next_out = outBuffer.baseAddress
                        stream.avail_out = UInt32(outBuffer.count)
                        return inflate(&stream, Z_NO_FLUSH)
                    }
                    if code == Z_STREAM_END || (code != Z_OK && code != Z_BUF_ERROR) { return code }
                    if code == Z_BUF_ERROR || (stream.avail_in == 0 && stream.avail_out > 0) { return Z_OK }
                }
                return code
            }
            if status == Z_STREAM_END { return true }
            guard status == Z_OK || status == Z_BUF_ERROR else { return false }
        }
    }
}
