@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do (without it, a build failed now and then with
// "missing import of defining module 'CDispatch'" as files were added).
internal import CDispatch
import Foundation

/// A fleet in one folder: `count` drifted host trees (each a target of the policy, each bound to
/// its own identity root), one bare origin, and a state directory per agent.
struct FleetFixture {
    let dir: String
    let count: Int
    var origin: String { dir + "/origin.git" }
    func host(_ index: Int) -> String { dir + "/host-\(index)" }
    func identity(_ index: Int) -> String { dir + "/id-\(index)" }
    func state(_ index: Int) -> String { dir + "/state-\(index)" }
    func target(_ index: Int) -> String { "web-\(index)" }
    /// Odd hosts are bound by machine id, even ones by host name.
    func machineID(_ index: Int) -> String { String(format: "%032x", 0xb0_1000 + index) }
    /// The audit ref of host `index`'s `--self` agent: named after its machine id (odd hosts),
    /// else its host name.
    func hostRef(_ index: Int) -> String { "bulwark/audit-hosts/" + (index % 2 == 1 ? machineID(index) : target(index)) }

    init(in dir: String, count: Int, origin: String? = nil) throws {
        self.dir = dir
        self.count = count
        for index in 0..<count {
            try DemoHost.create(at: host(index))
            try FileManager.default.createDirectory(atPath: identity(index) + "/etc", withIntermediateDirectories: true)
            if index % 2 == 1 {
                try write(identity(index) + "/etc/machine-id", machineID(index) + "\n")
                try write(identity(index) + "/etc/hostname", "not-a-target-\(index)\n")
            } else {
                try write(identity(index) + "/etc/hostname", target(index) + "\n")
            }
        }
        let created = try bulwark(["init", dir + "/policy", "--host-root", host(0)])
        guard created.status == 0 else { throw SupportError("init failed: \(created.stderr)") }
        try write(dir + "/policy/controllers/targets.yaml", (0..<count).map { index in
            let labels = index % 2 == 1 ? "{role: baseline, machine-id: \(machineID(index))}" : "{role: baseline}"
            return """
                apiVersion: bulwark/v1
                kind: Target
                metadata:
                  name: \(target(index))
                  labels: \(labels)
                spec:
                  adapter: host
                  root: \(host(index))
                """
        }.joined(separator: "\n---\n") + "\n")
        try git("add", "-A", in: dir + "/policy")
        try git("commit", "-qm", "fleet targets", in: dir + "/policy")
        try git("clone", "-q", "--bare", dir + "/policy", self.origin)
    }

    /// `bulwark COMMAND --repo ORIGIN --state-dir STATE(index) …`.
    func agent(_ index: Int, _ command: String, _ extra: [String], url: String? = nil) throws -> ProcessOutput {
        try bulwark([command, "--repo", url ?? origin, "--state-dir", state(index)] + extra)
    }

    /// The origin's refs under `folder` (`bulwark/audit-targets/`), without `refs/heads/`.
    func refs(under folder: String) throws -> [String] {
        try git("--git-dir", origin, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/" + folder)
            .split(separator: "\n").map(String.init)
    }

    /// The values of trailer `key` on branch `branch` of the origin, newest first.
    func trailers(_ key: String, on branch: String) throws -> [String] {
        try git("--git-dir", origin, "log", "--format=%(trailers:key=\(key),valueonly)", branch)
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    /// Every regular file of a host tree with mode and content.
    func snapshot(_ index: Int) throws -> [String: String] {
        var result: [String: String] = [:]
        let root = host(index)
        let walker = FileManager.default.enumerator(atPath: root)
        while let relative = walker?.nextObject() as? String {
            var info = stat()
            guard lstat(root + "/" + relative, &info) == 0, info.st_mode & 0o170000 == 0o100000 else { continue }
            result[relative] = String(info.st_mode & 0o7777, radix: 8) + ":" + (try read(root + "/" + relative))
        }
        return result
    }
}

/// The policy the flap-breaker takeover tests share: one PostgreSQL target, a controller whose
/// flap breaker escalates a second fix within the hour, and `PostgresRole`s (name, role) with a
/// connection limit of 3, written into the working tree `work`.
func writeFlapPolicy(at work: String, server: PostgresServer, roles: [(name: String, role: String)]) throws {
    try write(work + "/controllers/c.yaml", """
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: db-0}
        spec: {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, database: postgres,
               passwordFile: \(server.passwordFile("db-0")), sslmode: disable}
        ---
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: postgres}
        spec: {kinds: [PostgresRole], interval: 1h, flapBreaker: {count: 2, period: 1h}}
        """)
    try write(work + "/desired-state/roles.yaml", roles.map { name, role in
        "apiVersion: bulwark/v1\nkind: PostgresRole\nmetadata: {name: \(name)}\nspec: {role: \(role), connectionLimit: 3}\n"
    }.joined(separator: "---\n"))
}

/// The lease store of controller-replica tests: a login and database of its own on `server`
/// (`bulwark_leases`, made once), because a target whose password is one of Bulwark's own
/// credentials (the lease password among them) fails. The DSN and the password.
func leaseDatabase(_ server: PostgresServer) throws -> (dsn: String, password: String) {
    let password = "lease-" + server.password
    try server.psql("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bulwark_leases') THEN CREATE ROLE bulwark_leases LOGIN; END IF; END$$")
    try server.psql("ALTER ROLE bulwark_leases PASSWORD '\(password)'")
    if try server.psql("SELECT count(*) FROM pg_database WHERE datname = 'bulwark_leases'") == "0" {
        try server.psql("CREATE DATABASE bulwark_leases OWNER bulwark_leases")
    }
    return ("postgres://bulwark_leases@127.0.0.1:\(server.port)/bulwark_leases?sslmode=disable", password)
}
