internal import BulwarkCore
internal import Foundation

/// What must stay reachable on a target whatever the policy says, read at the moment a change is
/// judged: the management networks the Target names, the peers of established SSH sessions, and
/// the default gateways. All read in the target's network namespace.
struct Lifelines {
    var management: [Network]
    /// Peers of established TCP connections to the target's SSH port or a port sshd listens on
    /// (one address each).
    var sessions: [Network]
    /// Next hops of the default routes (IPv4 and IPv6, every routing table).
    var gateways: [Network]

    /// The kernel's TCP tables (`/proc/net/tcp`, and `tcp6` where IPv6 is on), read in the
    /// target's network namespace.
    static func tcpTables(_ namespace: String?) throws -> [(file: String, text: String)] {
        var tables: [(file: String, text: String)] = []
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let namespace {
                do {
                    tables.append((file, String(decoding: try NFT.run("/usr/bin/cat", [file], namespace: namespace), as: UTF8.self)))
                } catch let failure as NFT.Failure where file.hasSuffix("6") && failure.message.contains("No such file") {
                    continue  // IPv6 disabled in the kernel
                }
            } else {
                guard let data = FileManager.default.contents(atPath: file) else {
                    if file.hasSuffix("6") { continue }
                    throw NFT.Failure(program: "read", arguments: [file], status: -1, message: "cannot read \(file)")
                }
                tables.append((file, String(decoding: data, as: UTF8.self)))
            }
        }
        return tables
    }

    static func read(_ target: Target) throws -> Lifelines {
        let settings = try target.firewall()
        let namespace = settings.netns
        // The Target's sshPort (22 unless set) and every port sshd listens on: a session to
        // sshd on 2222 of a target that left sshPort at 22 was not seen, and a blocklist of its
        // peer went through and cut it.
        let tables = try tcpTables(namespace)
        let ports = try sshdPorts(in: tables).union([settings.sshPort ?? 22])
        var sessions: [Network] = []
        for (file, text) in tables {
            sessions += try established(text, localPorts: ports, file: file)
        }
        var gateways: [Network] = []
        for family in ["-4", "-6"] {
            let arguments = (namespace.map { ["-n", $0] } ?? []) + [family, "route", "show", "table", "all", "default"]
            let text = String(decoding: try NFT.run("/usr/sbin/ip", arguments, namespace: nil), as: UTF8.self)
            gateways += nextHops(text)
        }
        return Lifelines(management: settings.management, sessions: Array(Set(sessions)).sorted(),
                         gateways: Array(Set(gateways)).sorted())
    }

    /// Peers of established connections to `localPorts` in the kernel's `/proc/net/tcp{,6}` table.
    /// Addresses are printed as 32-bit words in the host's byte order, ports in hex.
    static func established(_ text: String, localPorts: Set<Int>, file: String) throws -> [Network] {
        var peers: [Network] = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 3 else { continue }
            guard fields[3] == "01" else { continue }  // TCP_ESTABLISHED
            guard let local = endpoint(fields[1]), let remote = endpoint(fields[2]) else {
                throw NFT.Failure(program: "read", arguments: [file], status: -1, message: "unexpected line: \(line)")
            }
            if localPorts.contains(local.port), let peer = Network(bytes: remote.address) { peers.append(peer) }
        }
        return peers
    }

    /// The ports sshd listens on in the target's network namespace: listening sockets (state
    /// `0A`) of the namespace's TCP tables, matched by inode to a process named `sshd` that runs
    /// as root (its descriptors under /proc): any user can start a process of that name, and
    /// make the guard take its port for sshd's. Empty where none is found (no sshd, or one
    /// systemd's socket holds for it): nothing is known then, and nothing is judged by it.
    /// Throws where /proc cannot be read for want of the machine's resources (`Shortage`): an
    /// sshd not read is not one that is not there.
    static func sshdPorts(_ target: Target) throws -> Set<Int> {
        try sshdPorts(in: try tcpTables(try target.firewall().netns))
    }

    /// `sshdPorts` in TCP tables already read (`tcpTables`).
    static func sshdPorts(in tables: [(file: String, text: String)]) throws -> Set<Int> {
        var ports: [UInt64: Int] = [:]
        for (_, text) in tables {
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 9, fields[3] == "0A", let local = endpoint(fields[1]), let inode = UInt64(fields[9]), inode != 0 else { continue }
                ports[inode] = local.port
            }
        }
        guard !ports.isEmpty else { return [] }
        var found: Set<Int> = []
        let processes: [String]
        do {
            processes = try FileManager.default.contentsOfDirectory(atPath: "/proc")
        } catch {
            Shortage.note(error)
            throw NFT.Failure(program: "read", arguments: ["/proc"], status: -1, message: "cannot list /proc: \(error)")
        }
        for pid in processes where pid.allSatisfy(\.isNumber) {
            guard let comm = try procFile("/proc/\(pid)/comm"),
                  String(decoding: comm, as: UTF8.self).trimmingCharacters(in: .newlines) == "sshd",
                  try Self.runsAsRoot(pid) else { continue }
            let descriptors: [String]
            do {
                descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
            } catch where Shortage.isShortage(error) {
                Shortage.note(error)
                throw NFT.Failure(program: "read", arguments: ["/proc/\(pid)/fd"], status: -1, message: "\(error)")
            } catch {
                continue  // gone, or not readable: not an sshd of root's after all
            }
            for descriptor in descriptors {
                guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(descriptor)"),
                      link.hasPrefix("socket:["), link.hasSuffix("]"),
                      let inode = UInt64(link.dropFirst(8).dropLast()), let port = ports[inode] else { continue }
                found.insert(port)
            }
        }
        return found
    }

    /// Whether every user id of process `pid` (real, effective, saved, file system) is 0.
    private static func runsAsRoot(_ pid: String) throws -> Bool {
        guard let status = try procFile("/proc/\(pid)/status") else { return false }
        let line = String(decoding: status, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("Uid:") }
        let ids = line?.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" }) ?? []
        return ids.count == 4 && ids.allSatisfy { $0 == "0" }
    }

    /// A file under /proc (at most 64 KiB), or nil where it cannot be read (the process is gone,
    /// or hides it); throws where it could not be read for want of the machine's resources.
    private static func procFile(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            guard Shortage.codes.contains(code) else { return nil }
            throw NFT.Failure(program: "read", arguments: [path], status: -1, message: Shortage.errnoText(code))
        }
        defer { close(fd) }
        guard let bytes = Descriptor.read(fd, upTo: 1 << 16) else {
            let code = errno
            guard Shortage.codes.contains(code) else { return nil }
            throw NFT.Failure(program: "read", arguments: [path], status: -1, message: Shortage.errnoText(code))
        }
        return bytes
    }

    private static func endpoint(_ field: Substring) -> (address: [UInt8], port: Int)? {
        let parts = field.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1], radix: 16), parts[0].count == 8 || parts[0].count == 32 else { return nil }
        var bytes: [UInt8] = []
        var rest = parts[0][...]
        while !rest.isEmpty {
            guard let word = UInt32(rest.prefix(8), radix: 16) else { return nil }
            // The kernel printed the word as a native integer: its bytes in memory are the network-order bytes.
            withUnsafeBytes(of: word) { bytes += $0 }
            rest = rest.dropFirst(8)
        }
        return (bytes, port)
    }

    /// Addresses after `via` in `ip route` output (a multipath route has several).
    static func nextHops(_ text: String) -> [Network] {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init)
        var hops: [Network] = []
        for (index, word) in words.enumerated() where word == "via" && index + 1 < words.count {
            var next = index + 1
            if ["inet", "inet6"].contains(words[next]), next + 1 < words.count { next += 1 }
            if let hop = Network(words[next]) { hops.append(hop) }
        }
        return hops
    }
}
