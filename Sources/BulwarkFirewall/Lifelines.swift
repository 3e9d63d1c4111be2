internal import BulwarkCore
internal import Foundation

/// What must stay reachable on a target whatever the policy says, read at the moment a change is
/// judged: the management networks the Target names, the peers of established SSH sessions, and
/// the default gateways. All read in the target's network namespace.
struct Lifelines {
    var management: [Network]
    /// Peers of established TCP connections to the target's SSH port (one address each).
    var sessions: [Network]
    /// Next hops of the default routes (IPv4 and IPv6, every routing table).
    var gateways: [Network]

    static func read(_ target: Target) throws -> Lifelines {
        let settings = try target.firewall()
        let namespace = settings.netns
        let port = settings.sshPort ?? 22
        var sessions: [Network] = []
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text: String
            if let namespace {
                do {
                    text = String(decoding: try NFT.run("/usr/bin/cat", [file], namespace: namespace), as: UTF8.self)
                } catch let failure as NFT.Failure where file.hasSuffix("6") && failure.message.contains("No such file") {
                    continue  // IPv6 disabled in the kernel
                }
            } else {
                guard let data = FileManager.default.contents(atPath: file) else {
                    if file.hasSuffix("6") { continue }
                    throw NFT.Failure(program: "read", arguments: [file], status: -1, message: "cannot read \(file)")
                }
                text = String(decoding: data, as: UTF8.self)
            }
            sessions += try established(text, localPort: port, file: file)
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

    /// Peers of established connections to `localPort` in the kernel's `/proc/net/tcp{,6}` table.
    /// Addresses are printed as 32-bit words in the host's byte order, ports in hex.
    static func established(_ text: String, localPort: Int, file: String) throws -> [Network] {
        var peers: [Network] = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 3 else { continue }
            guard fields[3] == "01" else { continue }  // TCP_ESTABLISHED
            guard let local = endpoint(fields[1]), let remote = endpoint(fields[2]) else {
                throw NFT.Failure(program: "read", arguments: [file], status: -1, message: "unexpected line: \(line)")
            }
            if local.port == localPort, let peer = Network(bytes: remote.address) { peers.append(peer) }
        }
        return peers
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
