internal import Foundation

/// Two network namespaces joined by a veth pair: `host` (192.0.2.1, 2001:db8::1) whose
/// firewall Bulwark manages, and `peer` (192.0.2.2, 2001:db8::2). Documentation addresses
/// only; everything lives in namespaces the test creates and removes.
public final class NetworkLab {
    public static var available: Bool {
        isRoot && FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft") && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
    }

    public let host: String
    public let peer: String
    private var servers: [Process] = []
    /// Second names bound to the host namespace (`alias`), removed with the lab.
    private var aliases: [String] = []

    public init() throws {
        let tag = String(UUID().uuidString.prefix(6)).lowercased()
        host = "bwh\(tag)"
        peer = "bwp\(tag)"
        for command in [
            ["netns", "add", host], ["netns", "add", peer],
            ["link", "add", "vh\(tag)", "type", "veth", "peer", "name", "vp\(tag)"],
            ["link", "set", "vh\(tag)", "netns", host], ["link", "set", "vp\(tag)", "netns", peer],
            ["-n", host, "addr", "add", "192.0.2.1/24", "dev", "vh\(tag)"],
            ["-n", peer, "addr", "add", "192.0.2.2/24", "dev", "vp\(tag)"],
            ["-n", host, "addr", "add", "2001:db8::1/64", "dev", "vh\(tag)", "nodad"],
            ["-n", peer, "addr", "add", "2001:db8::2/64", "dev", "vp\(tag)", "nodad"],
            ["-n", host, "link", "set", "vh\(tag)", "up"], ["-n", peer, "link", "set", "vp\(tag)", "up"],
            ["-n", host, "link", "set", "lo", "up"], ["-n", peer, "link", "set", "lo", "up"],
        ] {
            let result = try run("/usr/sbin/ip", command)
            guard result.status == 0 else {
                remove()
                throw SupportError("ip \(command.joined(separator: " ")): \(result.stderr)")
            }
        }
    }

    public func remove() {
        for server in servers where server.isRunning { server.terminate() }
        // A second name first: `ip netns del` unmounts it and removes it, the namespace stays
        // while its own name is bound.
        for alias in aliases { _ = try? run("/usr/sbin/ip", ["netns", "del", alias]) }
        // Whatever still runs inside the namespaces goes with them.
        for namespace in [host, peer] {
            let pids = (try? run("/usr/sbin/ip", ["netns", "pids", namespace]).stdout) ?? ""
            for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
        }
        _ = try? run("/usr/sbin/ip", ["netns", "del", host])
        _ = try? run("/usr/sbin/ip", ["netns", "del", peer])
    }

    /// A second name for the host namespace, as `ip netns add a; touch /run/netns/b; mount --bind
    /// /run/netns/a /run/netns/b` makes one: `ip netns exec NAME` enters the host namespace.
    /// Removed with the lab.
    public func alias() throws -> String {
        let name = "bwa" + host.dropFirst(3)
        let path = "/run/netns/" + name
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw SupportError("cannot create \(path)") }
        aliases.append(name)
        let bound = try run("/usr/bin/mount", ["--bind", "/run/netns/" + host, path])
        guard bound.status == 0 else { throw SupportError("mount --bind /run/netns/\(host) \(path): \(bound.stderr)") }
        return name
    }

    /// A TCP listener in the host namespace that accepts and closes connections (or, `holding`,
    /// keeps them open, as sshd keeps a session).
    public func listen(port: Int, holding: Bool = false) throws {
        try serve(port: port, ["python3", "-c", """
            import socket
            s = socket.socket(socket.AF_INET6)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", \(port)))
            s.listen(16)
            held = []
            while True:
                c, _ = s.accept()
                \(holding ? "held.append(c)" : "c.close()")
            """])
    }

    /// A listener in the host namespace on `port`, run as `user` under the name `sshd`
    /// (prctl PR_SET_NAME): what any local user can start to look like sshd.
    public func listenAsSSHD(port: Int, user: String) throws {
        try serve(port: port, ["setpriv", "--reuid=\(user)", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", """
            import ctypes, socket
            ctypes.CDLL(None).prctl(15, b"sshd", 0, 0, 0)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", \(port)))
            s.listen(16)
            while True:
                s.accept()[0].close()
            """])
    }

    /// Runs `command` in the host namespace until the lab is removed, and waits until it accepts
    /// on `port`, from inside its own namespace.
    private func serve(port: Int, _ command: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", host] + command
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        servers.append(process)
        for _ in 0..<50 {
            if try connects(to: "127.0.0.1", port: port, from: host) { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw SupportError("listener on port \(port) did not start")
    }

    /// A real sshd in the host namespace on `port`, run as root as a system's is, with a host
    /// key in `folder`. Its privilege separation folder (/run/sshd) is made in a mount namespace
    /// of its own, on a /run of its own: nothing of the machine's is touched. It ends with the lab.
    public func sshd(port: Int, folder: String) throws {
        let key = folder + "/lab_host_key"
        let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key])
        guard made.status == 0 else { throw SupportError("ssh-keygen: \(made.stderr)") }
        // Not -D: sshd detaches from the launching process (a -D sshd started through Foundation's
        // Process kept the test's later programs from ever being seen to end). It lives in the
        // namespace, and `remove` ends it with everything else there, by pid.
        let started = try run("/usr/sbin/ip", ["netns", "exec", host, "unshare", "-m", "sh", "-c",
                                               "mount -t tmpfs none /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -f /dev/null "
                                               + "-h \"$0\" -p \(port) -o PidFile=none -o UsePAM=no", key])
        guard started.status == 0 else { throw SupportError("sshd: \(started.stderr)") }
        for _ in 0..<100 {
            if try connects(to: "127.0.0.1", port: port, from: host) { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw SupportError("sshd on port \(port) did not start")
    }

    /// Opens a TCP connection from the peer to the host's `address` and `port` and keeps it open (it ends when
    /// the lab is removed); returns once the host sees it established.
    public func openSession(port: Int, to address: String = "192.0.2.1") throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", peer, "python3", "-c",
                             "import socket, time; s = socket.create_connection(('\(address)', \(port)), timeout=5); time.sleep(600)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        // Waits for one more established session than before: a session opened earlier to the
        // same port must not count (an IPv6 one waits for duplicate address detection first).
        let before = try establishedSessions(port: port)
        try process.run()
        servers.append(process)
        for _ in 0..<200 {
            if try establishedSessions(port: port) > before { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw SupportError("no session to port \(port) was established")
    }

    /// How many TCP sessions to the host's `port` are established.
    func establishedSessions(port: Int) throws -> Int {
        let sessions = try run("/usr/sbin/ip", ["netns", "exec", host, "ss", "-Htn", "state", "established", "( sport = :\(port) )"])
        return sessions.stdout.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.count
    }

    /// Gives the host namespace a default route through `gateway` (an address on the lab's link).
    public func addDefaultRoute(via gateway: String) throws {
        let result = try run("/usr/sbin/ip", ["-n", host, "route", "add", "default", "via", gateway])
        guard result.status == 0 else { throw SupportError("ip route add default via \(gateway): \(result.stderr)") }
    }

    /// Whether a TCP connection from `namespace` (default: the peer) to `address` succeeds within a second.
    public func connects(to address: String = "192.0.2.1", port: Int, from namespace: String? = nil) throws -> Bool {
        let result = try run("/usr/sbin/ip", ["netns", "exec", namespace ?? peer, "python3", "-c",
                                              "import socket; socket.create_connection(('\(address)', \(port)), timeout=1).close()"])
        return result.status == 0
    }

    public func nft(_ arguments: [String]) throws -> ProcessOutput {
        try run("/usr/sbin/ip", ["netns", "exec", host, "nft"] + arguments)
    }
}

