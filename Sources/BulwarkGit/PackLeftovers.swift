public import Foundation

/// What a push killed part-way leaves in a local origin's pack folder, and which of it may go.
///
/// Packs are written under temporary names and renamed into place, the pack before its index,
/// and only then does a reference move: a process killed part-way leaves a temporary file, or a
/// pack without its index, that no reader ever uses (git and libgit2 find packs by their index)
/// and no reference needs. Another writer's push in progress (git, another Bulwark) looks just
/// the same for a moment, so a leftover is removed only once it is too old to be one:
///
/// - Bulwark's own temporary files (`tmp_pack_bulwark_*`) once not changed for an hour: Bulwark
///   writes, syncs and renames one within seconds.
/// - Any other temporary pack file (`tmp_*`: git's `index-pack`, which can work on one for a long
///   time) and a pack without its index, once not changed for two weeks: the age git's own
///   `gc` (`gc.pruneExpire`, through `git prune`) removes temporary pack files at.
///
/// "Not changed" is, for files not Bulwark's own, both the modification and the status-change
/// time: a copy that keeps the source's modification time (`rsync -a`, `cp -p`) renames its file
/// into place with a new status-change time. A pack with a `.keep` file is left alone.
extension Repository {
    public static let ownTemporaryPackPrefix = "tmp_pack_bulwark_"
    public static let ownLeftoverAge: TimeInterval = 3600
    public static let foreignLeftoverAge: TimeInterval = 14 * 24 * 3600

    /// The folder `url` names when Bulwark pushes to it as a path on this machine, else nil.
    public static func localOriginPath(_ url: String) -> String? { localPath(url) }

    /// Removes the leftovers of killed pushes in the pack folder of the repository at `path`
    /// that are old enough (see the type's note) at `now`; returns what was done, in words.
    public static func removePackLeftovers(in path: String, now: Date = Date()) -> [String] {
        let folder = path + (path.hasSuffix("/") ? "" : "/") + "objects/pack"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        let present = Set(names)
        var done: [String] = []
        for name in names.sorted() {
            let age: TimeInterval
            let what: String
            if name.hasPrefix(ownTemporaryPackPrefix) {
                age = ownLeftoverAge
                what = "a temporary pack file a Bulwark killed while pushing left"
            } else if name.hasPrefix("tmp_") {
                age = foreignLeftoverAge
                what = "a temporary pack file a process killed while writing left"
            } else if name.hasPrefix("pack-"), name.hasSuffix(".pack") {
                let stem = String(name.dropLast(".pack".count))
                guard !present.contains(stem + ".idx"), !present.contains(stem + ".keep") else { continue }
                age = foreignLeftoverAge
                what = "a pack without its index, which no reader uses, left by a process killed while pushing"
            } else {
                continue
            }
            let file = folder + "/" + name
            var info = stat()
            guard lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            // Bulwark's own: written, synced and renamed by one process, never copied with its time kept.
            let modified = TimeInterval(info.st_mtim.tv_sec)
            let changed = name.hasPrefix(ownTemporaryPackPrefix) ? modified : max(modified, TimeInterval(info.st_ctim.tv_sec))
            guard now.timeIntervalSince1970 - changed > age else { continue }
            let since = Date(timeIntervalSince1970: changed).formatted(.iso8601)
            if unlink(file) == 0 {
                done.append("removed \(file), \(what) (unchanged since \(since))")
            } else {
                done.append("cannot remove \(file), \(what) (unchanged since \(since)): \(String(cString: strerror(errno)))")
            }
        }
        return done
    }
}
