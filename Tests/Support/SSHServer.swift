internal import Foundation

/// A real OpenSSH server for one test, serving git over SSH on a free loopback port (another one
/// when something took it first).
///
/// It runs unprivileged with its own configuration, host key and authorized_keys in a
/// temporary folder: as the `postgres` user when the tests run as root (an unprivileged sshd
/// can only log in its own user, and needs no privilege separation folder), otherwise as the
/// user running the tests. Repositories it serves must belong to that user (`own`).
public final class SSHServer {
    public static var available: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") && FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/git-upload-pack")
            && (!isRoot || getpwnam("postgres") != nil)
    }

    public let directory: String
    public private(set) var port = 0
    /// The user the server runs as, and the only one it lets in.
    public let user: String
    /// A key authorized_keys accepts, and one it does not.
    public var clientKey: String { directory + "/client_key" }
    public var strangerKey: String { directory + "/stranger_key" }
    /// A known_hosts file with this server's host key, as `ssh-keyscan` writes it.
    public var knownHosts: String { directory + "/known_hosts" }
    private let uid: uid_t
    private let gid: gid_t

    public init() throws {
        var template = Array("/tmp/bulwark-ssh-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw SupportError("mkdtemp failed") }
        directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        chmod(directory, 0o755)
        if isRoot, let owner = getpwnam("postgres") {
            (user, uid, gid) = ("postgres", owner.pointee.pw_uid, owner.pointee.pw_gid)
        } else {
            guard let me = getpwuid(geteuid()) else { throw SupportError("no passwd entry for uid \(geteuid())") }
            (user, uid, gid) = (String(cString: me.pointee.pw_name), me.pointee.pw_uid, me.pointee.pw_gid)
        }
        for name in ["host_key", "client_key", "stranger_key"] {
            let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", directory + "/" + name])
            guard made.status == 0 else { throw SupportError("ssh-keygen: \(made.stderr)") }
        }
        try write(directory + "/authorized_keys", try read(clientKey + ".pub"))
        let hostKey = try read(directory + "/host_key.pub").split(separator: " ")
        try startOnFreePort { port in
            self.port = port
            try write(knownHosts, "[127.0.0.1]:\(port) \(hostKey[0]) \(hostKey[1])\n")
            try launch()
        }
    }

    /// Starts sshd on `port`, with a new log: what it says when the port is taken is this
    /// attempt's.
    private func launch() throws {
        try write(directory + "/sshd_config", """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(directory)/host_key
            AuthorizedKeysFile \(directory)/authorized_keys
            PidFile \(directory)/sshd.pid
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            LogLevel VERBOSE

            """)
        _ = FileManager.default.createFile(atPath: directory + "/sshd.log", contents: nil)
        for name in ["", "/host_key", "/authorized_keys", "/sshd_config", "/sshd.log"] { chown(directory + name, uid, gid) }
        // sshd daemonizes: the process started here exits once the server listens, and the
        // server, holding no descriptor of this process (closed before exec), is found again
        // through its pid file. Run in the foreground it would keep Foundation's Process,
        // which waits for children one at a time, from ever noticing another child's exit.
        let script = "import os, sys; os.closerange(3, 65536); os.setgroups([]); os.setgid(\(gid)); os.setuid(\(uid)); os.execv(sys.argv[1], sys.argv[1:])"
        let start = Process()
        start.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        start.arguments = ["-c", script, "/usr/sbin/sshd", "-E", directory + "/sshd.log", "-f", directory + "/sshd_config"]
        start.currentDirectoryURL = URL(fileURLWithPath: directory)
        start.standardOutput = FileHandle.nullDevice
        start.standardError = FileHandle.nullDevice
        start.standardInput = FileHandle.nullDevice
        try start.run()
        start.waitUntilExit()
        guard start.terminationStatus == 0 else { throw SupportError("sshd did not start (\(start.terminationStatus)): \(log)") }
        // It binds once daemonized, so a port someone took is not an exit status: only its log
        // tells (and a connection would reach whoever took it).
        let deadline = Date().addingTimeInterval(15)
        while !log.contains("Server listening on 127.0.0.1 port \(port).") {
            guard !log.contains("Cannot bind any address"), Date() < deadline else { throw SupportError("sshd is not listening: \(log)") }
            usleep(20_000)
        }
    }

    deinit {
        if let text = try? read(directory + "/sshd.pid"), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGTERM)
            for _ in 0..<250 where kill(pid, 0) == 0 { usleep(20_000) }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The server's log, for failure messages.
    public var log: String { (try? read(directory + "/sshd.log")) ?? "" }

    /// `ssh://user@127.0.0.1:port/path` for a repository at `path`.
    public func url(_ path: String) -> String { "ssh://\(user)@127.0.0.1:\(port)\(path)" }

    /// Gives every file under `path` to the server's user, so it can serve and take pushes.
    public func own(_ path: String) throws {
        let result = try run("/usr/bin/chown", ["-R", "\(uid):\(gid)", path])
        guard result.status == 0 else { throw SupportError("chown: \(result.stderr)") }
    }
}
