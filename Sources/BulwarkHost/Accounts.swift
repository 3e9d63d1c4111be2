/// The root's own `etc/passwd` and `etc/group`, so names resolve as they do on that host,
/// not on the machine Bulwark runs on.
struct AccountDatabase: Sendable {
    var users: [(name: String, id: UInt32)] = []
    var groups: [(name: String, id: UInt32)] = []

    /// Parsed per root, reused while both files are unchanged (see `ParseCache`): a fleet host's
    /// five FileMode resources read them once, not each. Never under the target's lock, where
    /// a fix is built from fresh reads.
    static let cache = ParseCache<AccountDatabase>()

    init(root: HostRoot) throws {
        let cacheable = !HostLock.isHeld(root)
        if cacheable, let cached = Self.cache.lookup(root.path) {
            self = cached
            return
        }
        var snapshot = FileSnapshot()
        // Before the reads: a change after this is seen at the next lookup.
        if cacheable {
            snapshot.take(try root.resolve("etc/passwd"))
            snapshot.take(try root.resolve("etc/group"))
        }
        users = try Self.read("etc/passwd", root)
        groups = try Self.read("etc/group", root)
        if cacheable { Self.cache.store(self, for: root.path, readAt: snapshot, unlessRecent: true) }
    }

    private static func read(_ path: String, _ root: HostRoot) throws -> [(name: String, id: UInt32)] {
        guard let text = try FileIO.readText(path, in: root) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 3, let id = UInt32(fields[2]) else { return nil }
            return (String(fields[0]), id)
        }
    }

    func userName(_ id: UInt32) -> String { users.first { $0.id == id }?.name ?? String(id) }
    func groupName(_ id: UInt32) -> String { groups.first { $0.id == id }?.name ?? String(id) }
    func userID(_ name: String) -> UInt32? { users.first { $0.name == name }?.id ?? UInt32(name) }
    func groupID(_ name: String) -> UInt32? { groups.first { $0.name == name }?.id ?? UInt32(name) }
}
