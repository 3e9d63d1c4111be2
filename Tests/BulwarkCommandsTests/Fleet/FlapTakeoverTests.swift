@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// The flap breaker of a controller replica counts the fixes the target's previous lease owner
/// made (its records are on the other replica's ref), not only its own: a drift fixed twice by
/// replica a is escalated by replica b when b takes the target over, and a drift a fixed only
/// once is still fixed by b.
@Suite struct FlapTakeoverTests {
    @Test(.enabled(if: PostgresServer.available))
    func aReplicaThatTakesATargetOverCountsThePreviousOwnersFixes() async throws {
        let server = try PostgresServer()
        try await withTemporaryDirectory { dir in
            let work = dir + "/policy"
            try git("init", "-q", "-b", "main", work)
            try writeFlapPolicy(at: work, server: server, roles: [("flapping", "app_flap"), ("steady", "app_steady")])
            try git("add", "-A", in: work)
            try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "roles", in: work)
            let origin = dir + "/origin.git"
            try git("clone", "-q", "--bare", work, origin)
            try git("-C", work, "remote", "add", "origin", origin)
            for role in ["app_flap", "app_steady"] { try server.psql("CREATE ROLE \(role) NOLOGIN CONNECTION LIMIT 10") }
            func limit(_ role: String) -> String { (try? server.psql("SELECT rolconnlimit FROM pg_roles WHERE rolname = '\(role)'")) ?? "?" }
            func drift(_ role: String) throws { try server.psql("ALTER ROLE \(role) CONNECTION LIMIT 10") }
            /// A new revision starts a cycle of everything.
            func touchPolicy(_ note: String) throws {
                try write(work + "/desired-state/roles.yaml", try read(work + "/desired-state/roles.yaml") + "# \(note)\n")
                try git("add", "-A", in: work)
                try git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", note, in: work)
                try git("push", "-q", "origin", "main", in: work)
            }
            func replica(_ name: String) throws -> DaemonProcess {
                try DaemonProcess(["--repo", origin, "--state-dir", dir + "/state-\(name)", "--secrets-dir", server.directory,
                                   "--poll", "1", "--controller", "--replica", name, "--lease-ttl", "3",
                                   "--lease-dsn", "postgres://postgres@127.0.0.1:\(server.port)/postgres?sslmode=disable"],
                                  environment: ["BULWARK_LEASE_PASSWORD": server.password], logPath: dir + "/\(name).log")
            }
            /// The decision, result and resource of each record on a replica's ref (in the record's
            /// trailer order), oldest first.
            func records(_ name: String) -> [String] {
                let log = (try? git("--git-dir", origin, "log", "--reverse",
                                    "--format=%(trailers:key=Bulwark-Decision,key=Bulwark-Result,key=Bulwark-Resource,valueonly,separator=%x20)",
                                    "bulwark/audit-replicas/\(name)")) ?? ""
                return log.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            }

            // Replica a fixes both roles, then the flapping one a second time.
            let a = try replica("a")
            #expect(a.wait(seconds: 60) { limit("app_flap") == "3" && limit("app_steady") == "3" && records("a").count == 2 },
                    "\(records("a"))\n\(a.log)")
            try drift("app_flap")
            try touchPolicy("a second pass")
            #expect(a.wait(seconds: 60) { records("a").count == 3 && limit("app_flap") == "3" }, "\(records("a"))\n\(a.log)")
            func fixed(_ record: String, _ resource: String) -> Bool {
                let words = Set(record.split(separator: " ").map(String.init))
                return words.isSuperset(of: ["applied", "verified", resource])
            }
            #expect(records("a").filter { fixed($0, "PostgresRole/flapping") }.count == 2, "\(records("a"))")
            #expect(a.terminate() == 0, "\(a.log.suffix(3000))")

            // Both drift again; replica b takes db-0 over.
            try drift("app_flap")
            try drift("app_steady")
            let b = try replica("b")
            #expect(b.wait(seconds: 60) { records("b").count == 2 }, "\(records("b"))\n\(b.log)")
            #expect(b.terminate() == 0, "\(b.log.suffix(3000))")
            // Fixed twice within the period by a: escalated, not fixed a third time.
            #expect(records("b").contains { Set($0.split(separator: " ")).isSuperset(of: ["escalated", "PostgresRole/flapping"]) },
                    "\(records("b"))")
            #expect(!records("b").contains { fixed($0, "PostgresRole/flapping") })
            #expect(limit("app_flap") == "10")
            // Fixed once by a: b fixes it.
            #expect(records("b").contains { fixed($0, "PostgresRole/steady") }, "\(records("b"))")
            #expect(limit("app_steady") == "3")
        }
    }
}
