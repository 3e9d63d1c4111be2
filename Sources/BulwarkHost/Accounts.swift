/// The root's own `etc/passwd` and `etc/group`, so names resolve as they do on that host,
/// not on the machine Bulwark runs on.
struct AccountDatabase {
    var users: [(name: String, id: UInt32)] = []
    var groups: [(name: String, id: UInt32)] = []

    init(root: HostRoot) throws {
        users = try Self.read("etc/passwd", root)
        groups = try Self.read("etc/group", root)
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
