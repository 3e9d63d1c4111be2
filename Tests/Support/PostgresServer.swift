internal import Foundation

/// A real PostgreSQL server for one test: `initdb` into a temporary folder (as the `postgres`
/// user when the tests run as root, since initdb refuses root), `pg_ctl` on a free loopback
/// port (another one when something took it first), SCRAM password authentication. `psql` is
/// the independent client. It runs with `fsync=off` on its command line (quicker, and a test's
/// cluster is thrown away), unless made with `fsync: true`: the server's own default (on), which
/// `ALTER SYSTEM` can change.
public final class PostgresServer {
    public static let binaries = "/usr/lib/postgresql/15/bin"

    public static var available: Bool {
        FileManager.default.isExecutableFile(atPath: binaries + "/initdb") && FileManager.default.isExecutableFile(atPath: "/usr/bin/psql")
            && (!isRoot || getpwnam("postgres") != nil)
    }

    public let directory: String
    /// Chosen when it first starts; `start` again takes the same one.
    public private(set) var port = 0
    public let password = "pw-" + UUID().uuidString
    private var data: String { directory + "/data" }
    /// Whether the command line leaves `fsync` to the server's default and configuration.
    private let fsync: Bool

    public init(fsync: Bool = false) throws {
        self.fsync = fsync
        var template = Array("/tmp/bulwark-pg-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw SupportError("mkdtemp failed") }
        directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        chmod(directory, 0o755)
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try password.write(toFile: directory + "/pw", atomically: true, encoding: .utf8)
        if isRoot, let owner = getpwnam("postgres") {
            for path in [directory, data, directory + "/pw"] { chown(path, owner.pointee.pw_uid, owner.pointee.pw_gid) }
        }
        chmod(data, 0o700)
        try postgres(["initdb", "-D", data, "-U", "postgres", "-A", "scram-sha-256", "--pwfile", directory + "/pw",
                      "--no-sync", "--no-instructions"])
        try startOnFreePort { port in
            self.port = port
            try start()
        }
    }

    /// The server's password in a file of the secrets folder (`directory`) named after `target`,
    /// the only file that target's `passwordFile` may name; its path.
    public func passwordFile(_ target: String) -> String {
        let path = directory + "/" + target
        try? password.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    deinit {
        try? stop(mode: "immediate")
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func start() throws {
        try postgres(["pg_ctl", "-D", data, "-l", directory + "/log", "-w", "-t", "30", "-o",
                      "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1" + (fsync ? "" : " -c fsync=off"), "start"])
    }

    /// Stops the server; `immediate` is a crash as far as clients can tell.
    public func stop(mode: String = "fast") throws {
        try postgres(["pg_ctl", "-D", data, "-m", mode, "-w", "stop"])
    }

    /// Runs SQL as the superuser with psql and returns its unaligned output. `sslmode` is
    /// libpq's (`require`: over TLS or not at all); nil: libpq's default, TLS when offered.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres", sslmode: String? = nil) throws -> String {
        var environment = ["PGPASSWORD": password]
        environment["PGSSLMODE"] = sslmode
        let result = try run("/usr/bin/psql", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", database,
                                               "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                             environment: environment)
        guard result.status == 0 else { throw SupportError("psql: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A self-signed certificate and its key (`openssl req`), made in the server's folder and
    /// readable by the server alone (its user's, the key 0600): their paths.
    public func makeCertificate(name: String = "server") throws -> (certificate: String, key: String) {
        let (certificate, key) = (directory + "/\(name).crt", directory + "/\(name).key")
        let made = try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate,
                                                "-days", "2", "-subj", "/CN=localhost"])
        guard made.status == 0 else { throw SupportError("openssl req: \(made.stderr)") }
        try giveToServer([certificate, key])
        chmod(key, 0o600)
        return (certificate, key)
    }

    /// A certificate authority of the test's own in the server's folder: its certificate and an
    /// empty revocation list it signed (`openssl ca -gencrl`), readable by the server: their paths.
    public func makeAuthority(name: String = "ca") throws -> (certificate: String, revocations: String) {
        let folder = directory + "/\(name)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let (certificate, key, revocations) = (folder + "/ca.crt", folder + "/ca.key", folder + "/ca.crl")
        try "".write(toFile: folder + "/index.txt", atomically: true, encoding: .utf8)
        try "01\n".write(toFile: folder + "/crlnumber", atomically: true, encoding: .utf8)
        try "[ca]\ndefault_ca = d\n[d]\ndatabase = \(folder)/index.txt\ncrlnumber = \(folder)/crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n"
            .write(toFile: folder + "/ca.cnf", atomically: true, encoding: .utf8)
        for arguments in [["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=test-ca"],
                          ["ca", "-config", folder + "/ca.cnf", "-gencrl", "-keyfile", key, "-cert", certificate, "-out", revocations]] {
            let made = try run("/usr/bin/openssl", arguments)
            guard made.status == 0 else { throw SupportError("openssl \(arguments[0]): \(made.stderr)") }
        }
        try giveToServer([folder, certificate, revocations])
        return (certificate, revocations)
    }

    /// RFC 7919's ffdhe2048 group as a PEM `DH PARAMETERS` file the server reads: its path.
    public func makeDHParameters(name: String = "dh.pem") throws -> String {
        let path = directory + "/" + name
        let made = try run("/usr/bin/openssl", ["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out", path])
        guard made.status == 0 else { throw SupportError("openssl genpkey: \(made.stderr)") }
        try giveToServer([path])
        return path
    }

    /// Makes `paths` the server's user's when the tests run as root (the server reads them as it).
    public func giveToServer(_ paths: [String]) throws {
        guard isRoot, let owner = getpwnam("postgres") else { return }
        for path in paths { chown(path, owner.pointee.pw_uid, owner.pointee.pw_gid) }
    }

    /// Runs `sql` in a psql of its own, in the background, and returns once it is running
    /// `pg_sleep` in a transaction that holds what `sql` locked; `release` ends it, or the
    /// transaction commits by itself after `seconds`.
    /// `user` logs in with the server's password (a role made for a test is given it).
    public func hold(_ sql: String, application: String, seconds: Int = 120, user: String = "postgres",
                     database: String = "postgres") throws -> HeldTransaction {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        process.arguments = ["-h", "127.0.0.1", "-p", String(port), "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1",
                             "-c", "BEGIN", "-c", sql, "-c", "SELECT pg_sleep(\(seconds))", "-c", "COMMIT"]
        process.environment = ["PGPASSWORD": password, "PGAPPNAME": application]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let held = HeldTransaction(server: self, application: application, process: process)
        for _ in 0..<100 {
            let sleeping = try psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '\(application)' AND query LIKE '%pg_sleep%'")
            if sleeping == "1" { return held }
            Thread.sleep(forTimeInterval: 0.05)
        }
        held.release()
        throw SupportError("psql holding \(sql) did not start")
    }

    /// Runs one of PostgreSQL's programs with its output in a file, and with every inherited
    /// descriptor above 2 closed first: the server `pg_ctl` starts outlives it, and would
    /// otherwise hold open the descriptors through which Foundation's `Process` learns that
    /// its child exited, so waiting for `pg_ctl` would never return.
    private func postgres(_ arguments: [String]) throws {
        let binary = Self.binaries + "/" + arguments[0]
        let closeAndExec = ["/usr/bin/python3", "-c", "import os, sys; os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])"]
        let command = closeAndExec + (isRoot ? ["/usr/sbin/runuser", "-u", "postgres", "--", binary] + arguments.dropFirst()
                                             : [binary] + arguments.dropFirst())
        let outputPath = directory + "/\(arguments[0]).out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        defer { try? output.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            let log = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
            throw SupportError("\(arguments[0]) failed: \(text)\n\(log.suffix(2000))")
        }
    }
}

/// A transaction another session keeps open (`PostgresServer.hold`).
public final class HeldTransaction {
    let server: PostgresServer
    let application: String
    let process: Process

    init(server: PostgresServer, application: String, process: Process) {
        (self.server, self.application, self.process) = (server, application, process)
    }

    /// Ends it: its server session is terminated (the transaction rolls back) and psql reaped.
    public func release() {
        _ = try? server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '\(application)'")
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
