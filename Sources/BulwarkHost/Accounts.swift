internal import BulwarkCore
/// The root's own `etc/passwd` and `etc/group`, so names resolve as they do on that host,
/// not on the machine Bulwark runs on.
struct AccountDatabase: Sendable {
    var users: [(name: String, id: UInt32)] = []
    var groups: [(name: String, id: UInt32)] = []

    /// Parsed per root, reused while both files are unchanged (see `ParseCache`): a fleet host's
    /// five FileMode resources read them once, not each.
    ///
    /// Also under the target's lock, where a fix is built from settled reads: an entry is
    /// stored only when neither file had changed for two seconds before it was read
    /// (`unlessRecent`), and used only while both have the very device, inode, size and times
    /// they had then, at the paths a walk resolves now. Any write since moves one of them, and a
    /// link pointed elsewhere changes the path, so a hit is the bytes a settled read would
    /// return now, without its read: each FileMode fix read both files again
    /// (two of every three file reads in a pass of 20,000 FileMode resources).
    static let cache = ParseCache<AccountDatabase>()

    init(root: HostRoot) throws {
        // Under the lock the paths are walked again (links judged as a read judges them): a
        // link on the way pointed elsewhere since the entry was stored is a miss.
        let locked = HostLock.isHeld(root)
        let resolved = locked ? Set([try root.resolve("etc/passwd"), try root.resolve("etc/group")]) : nil
        if let cached = Self.cache.lookup(root.path, paths: resolved, settledOnly: locked) {
            self = cached
            return
        }
        var snapshot = FileSnapshot()
        // Before the reads: a change after this is seen at the next lookup.
        snapshot.take(try root.resolve("etc/passwd"))
        snapshot.take(try root.resolve("etc/group"))
        users = try Self.read("etc/passwd", root)
        groups = try Self.read("etc/group", root)
        Self.cache.store(self, for: root.path, readAt: snapshot, unlessRecent: true)
    }

    private static func read(_ path: String, _ root: HostRoot) throws -> [(name: String, id: UInt32)] {
        guard let text = try FileIO.readText(path, in: root) else { return [] }
        // By bytes, as glibc reads the file (see `splitBytes`).
        return Substring(text).splitBytes(at: "\n", omittingEmpty: true).compactMap { line in
            let fields = line.splitBytes(at: ":")
            guard fields.count >= 3, let id = UInt32(fields[2]) else { return nil }
            return (String(fields[0]), id)
        }
    }

    func userName(_ id: UInt32) -> String { users.first { $0.id == id }?.name ?? String(id) }
    func groupName(_ id: UInt32) -> String { groups.first { $0.id == id }?.name ?? String(id) }
    func userID(_ name: String) -> UInt32? { users.first { $0.name.isSameBytes(name) }?.id ?? UInt32(name) }
    func groupID(_ name: String) -> UInt32? { groups.first { $0.name.isSameBytes(name) }?.id ?? UInt32(name) }
}
