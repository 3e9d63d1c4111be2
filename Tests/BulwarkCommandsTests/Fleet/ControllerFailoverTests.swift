@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// Two `bulwark run --controller` replicas share PostgreSQL targets through leases in a real
/// PostgreSQL; one is killed (SIGKILL) mid-pass.
@Suite struct ControllerFailoverTests {
    static let targets = 6
    /// Long enough that a replica stalled for seconds on a busy machine keeps its leases (with
    /// 3 s, a stall of a few seconds could hand a target over mid-fix); waits scale from it.
    static let ttl = 10

    @Test(.enabled(if: PostgresServer.available))
    func aKilledReplicasTargetsAreTakenOverAndNothingIsFixedTwice() async throws {
        let server = try PostgresServer()
        try await withTemporaryDirectory { dir in
            let origin = try Self.policy(server, dir: dir)
            for index in 0..<Self.targets { try server.psql("CREATE ROLE app_\(index) NOLOGIN CONNECTION LIMIT 10") }
            // A lease login of its own: a target whose password is the lease password fails.
            let leases = try leaseDatabase(server)
            let environment = ["BULWARK_LEASE_PASSWORD": leases.password]
            func replica(_ name: String) throws -> DaemonProcess {
                try DaemonProcess(["--repo", origin, "--state-dir", dir + "/state-\(name)", "--secrets-dir", server.directory,
                                   "--poll", "1", "--controller", "--replica", name, "--lease-ttl", String(Self.ttl),
                                   "--lease-dsn", leases.dsn],
                                  environment: environment, logPath: dir + "/\(name).log")
            }
            func holders() -> [String: String] {
                let rows = (try? server.psql("SELECT target || ' ' || holder FROM bulwark_leases WHERE expires_at > now()", database: "bulwark_leases")) ?? ""
                return Dictionary(rows.split(separator: "\n").map { line in
                    let parts = line.split(separator: " ")
                    return (String(parts[0]), String(parts[1]))
                }, uniquingKeysWith: { a, _ in a })
            }
            func fixed() -> Int {
                Int((try? server.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'app\\_%' AND rolconnlimit = 3")) ?? "") ?? -1
            }
            var a: DaemonProcess? = try replica("a")
            let b = try replica("b")
            // Both replicas hold a share: the sharding settled.
            #expect(b.wait(seconds: 60) { Set(holders().values) == ["a", "b"] && holders().count == Self.targets },
                    "both replicas hold leases: \(holders())\n\(a?.log ?? "")\n\(b.log)")
            let ofA = Set(holders().filter { $0.value == "a" }.keys)
            // Kill a while it works (its first pass, or the next one).
            let killed = Date()
            if let pid = a?.process.processIdentifier { kill(pid, SIGKILL) }
            a?.process.waitUntilExit()
            a = nil
            #expect(b.wait(seconds: Double(Self.ttl) * 10) { holders().count == Self.targets && Set(holders().values) == ["b"] },
                    "b took over a's targets \(ofA.sorted()): \(holders())\n\(b.log)")
            print("failover: a's \(ofA.count) target(s) held by b \(Int(Date().timeIntervalSince(killed) * 1000)) ms after SIGKILL (TTL \(Self.ttl) s)")
            #expect(b.wait(seconds: 60) { fixed() == Self.targets }, "every role fixed: \(fixed())\n\(b.log)")
            // a comes back: what it recorded before it was killed (and did not push) goes out now.
            let again = try replica("a")
            #expect(again.wait(seconds: 60) { (try? again.get("/readyz").status) == 200 }, "\(again.log)")
            #expect(again.terminate() == 0, "\(again.log.suffix(4000))")
            #expect(b.terminate() == 0, "\(b.log.suffix(4000))")

            // Every role was fixed exactly once, across both replicas' refs, and each record carries its lease.
            var applied: [String: Int] = [:]
            var lines: [String] = []
            var tokens: [String: [Int]] = [:]
            for ref in ["bulwark/audit-replicas/a", "bulwark/audit-replicas/b"] {
                guard (try? git("--git-dir", origin, "rev-parse", "--verify", "-q", ref)) != nil else { continue }
                let log = try git("--git-dir", origin, "log", "--format=%(trailers:key=Bulwark-Decision,key=Bulwark-Target,key=Bulwark-Lease,key=Bulwark-Result,key=Bulwark-Id,separator=|)", ref)
                // A fix is claimed by a verified record; a replica killed mid-fix records `interrupted`.
                for line in log.split(separator: "\n") where line.contains("Bulwark-Decision: applied") && line.contains("Bulwark-Result: verified") {
                    let fields = Dictionary(line.split(separator: "|").map { field in
                        let parts = field.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                        return (parts[0], parts.count > 1 ? parts[1] : "")
                    }, uniquingKeysWith: { a, _ in a })
                    let target = fields["Bulwark-Target"] ?? "?"
                    lines.append(ref + " " + line)
                    applied[target, default: 0] += 1
                    let lease = (fields["Bulwark-Lease"] ?? "").split(separator: " ")
                    #expect(lease.first.map(String.init) == target, "the record names its lease: \(line)")
                    if let token = lease.last.flatMap({ Int($0) }) { tokens[target, default: []].append(token) }
                }
            }
            #expect(applied == Dictionary(uniqueKeysWithValues: (0..<Self.targets).map { ("db-\($0)", 1) }),
                    "each target's drift fixed and verified exactly once: \(applied)\n\(lines.joined(separator: "\n"))")
            #expect(tokens.count == Self.targets)
            let verify = try bulwark(["verify-audit", "--repo", origin])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }
    }

    /// A policy with `targets` PostgreSQL targets on one server, each owning one role's connection limit.
    static func policy(_ server: PostgresServer, dir: String) throws -> String {
        let work = dir + "/policy"
        try git("init", "-q", "-b", "main", work)
        var inventory = (0..<targets).map { index in
            """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: db-\(index)}
            spec: {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, database: postgres,
                   passwordFile: \(server.passwordFile("db-\(index)")), sslmode: disable}
            """
        }
        inventory.append("""
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: postgres}
            spec: {kinds: [PostgresRole], interval: 1h}
            """)
        try write(work + "/controllers/c.yaml", inventory.joined(separator: "\n---\n") + "\n")
        try write(work + "/desired-state/roles.yaml", (0..<targets).map { index in
            """
            apiVersion: bulwark/v1
            kind: PostgresRole
            metadata: {name: app-\(index)}
            targets: {names: [db-\(index)]}
            spec: {role: app_\(index), connectionLimit: 3}
            """
        }.joined(separator: "\n---\n") + "\n")
        try git("add", "-A", in: work)
        try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "roles", in: work)
        try git("clone", "-q", "--bare", work, dir + "/origin.git")
        return dir + "/origin.git"
    }
}
