@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// With signatures configured (`--trusted-signers`), the flap breaker of a replica that takes a
/// target over counts the previous owner's fixes only when a trusted key signed their records.
/// Replica a fixes a drift twice; replica b takes the target over:
/// - a signed its records with a key the trusted signers file lists: b counts them and escalates
///   the drift instead of fixing it a third time (as without signatures);
/// - a's records are unsigned (anyone able to push under `bulwark/audit-replicas/` could have
///   written them): b does not count them, fixes the drift, logs each record it left out and
///   counts them in `bulwark_peer_records_rejected_total{reason="unsigned"}`;
/// - b lists the fleet's Bulwarks in `--audit-signers`: a's records count when a Bulwark key
///   signed them, and not when a person of the trusted signers file did (she could otherwise
///   write made-up fixes that stop the breaker's count from being Bulwark's own).
@Suite struct PeerRecordSignatureTests {
    /// Who signs replica a's records, and whether b lists the Bulwarks' keys in `--audit-signers`.
    enum Case: String, CaseIterable, CustomTestStringConvertible {
        case bulwarkKey, unsigned, personUnderAuditSigners, bulwarkKeyUnderAuditSigners
        var testDescription: String { rawValue }
        var counted: Bool { self == .bulwarkKey || self == .bulwarkKeyUnderAuditSigners }
        var auditSigners: Bool { self == .personUnderAuditSigners || self == .bulwarkKeyUnderAuditSigners }
    }

    struct Key {
        var privateKey: String
        var line: String
    }

    static func key(_ principal: String, at path: String) throws -> Key {
        let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", path])
        guard made.status == 0 else { throw SupportError("ssh-keygen failed: \(made.stderr)") }
        let fields = try read(path + ".pub").split(separator: " ")
        return Key(privateKey: path, line: "\(principal) namespaces=\"git\" \(fields[0]) \(fields[1])")
    }

    @Test(.enabled(if: PostgresServer.available), arguments: Case.allCases)
    func peerFixesCountForTheFlapBreakerOnlyWhenATrustedKeySignedThem(_ signing: Case) async throws {
        let server = try PostgresServer()
        try await withTemporaryDirectory { dir in
            let person = try Self.key("person", at: server.directory + "/person")
            let bulwarkKey = try Self.key("bulwark", at: server.directory + "/bulwark-signing-key")
            let signers = dir + "/allowed_signers"
            try write(signers, person.line + "\n" + bulwarkKey.line + "\n")
            let auditSignersFile = dir + "/audit_signers"
            try write(auditSignersFile, bulwarkKey.line + "\n")
            let work = dir + "/policy"
            try git("init", "-q", "-b", "main", work)
            try writeFlapPolicy(at: work, server: server, roles: [("flapping", "app_flap")])
            func commit(_ message: String) throws {
                try git("add", "-A", in: work)
                try git("-c", "user.name=t", "-c", "user.email=t@t", "-c", "gpg.format=ssh", "-c", "user.signingkey=\(person.privateKey)",
                        "commit", "-S", "-qm", message, in: work)
            }
            try commit("roles")
            let origin = dir + "/origin.git"
            try git("clone", "-q", "--bare", work, origin)
            try git("-C", work, "remote", "add", "origin", origin)
            try server.psql("CREATE ROLE app_flap NOLOGIN CONNECTION LIMIT 10")
            func limit() -> String { (try? server.psql("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app_flap'")) ?? "?" }
            func drift() throws { try server.psql("ALTER ROLE app_flap CONNECTION LIMIT 10") }
            func touchPolicy(_ note: String) throws {
                try write(work + "/desired-state/roles.yaml", try read(work + "/desired-state/roles.yaml") + "# \(note)\n")
                try commit(note)
                try git("push", "-q", "origin", "main", in: work)
            }
            func replica(_ name: String, signsWith key: Key?, auditSigners: Bool = false) throws -> DaemonProcess {
                try DaemonProcess(["--repo", origin, "--state-dir", dir + "/state-\(name)", "--secrets-dir", server.directory,
                                   "--poll", "1", "--controller", "--replica", name, "--lease-ttl", "3",
                                   "--lease-dsn", "postgres://postgres@127.0.0.1:\(server.port)/postgres?sslmode=disable",
                                   "--trusted-signers", signers] + (key.map { ["--signing-key", $0.privateKey] } ?? [])
                                  + (auditSigners ? ["--audit-signers", auditSignersFile] : []),
                                  environment: ["BULWARK_LEASE_PASSWORD": server.password], logPath: dir + "/\(name).log")
            }
            func records(_ name: String) -> [String] {
                let log = (try? git("--git-dir", origin, "log", "--reverse",
                                    "--format=%(trailers:key=Bulwark-Decision,key=Bulwark-Result,key=Bulwark-Resource,valueonly,separator=%x20)",
                                    "bulwark/audit-replicas/\(name)")) ?? ""
                return log.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            }
            func fixed(_ record: String) -> Bool {
                Set(record.split(separator: " ").map(String.init)).isSuperset(of: ["applied", "verified", "PostgresRole/flapping"])
            }

            // Replica a fixes the role twice.
            let a = try replica("a", signsWith: [.bulwarkKey: bulwarkKey, .bulwarkKeyUnderAuditSigners: bulwarkKey,
                                                 .personUnderAuditSigners: person][signing])
            #expect(a.wait(seconds: 60) { limit() == "3" && records("a").count == 1 }, "\(records("a"))\n\(a.log)")
            try drift()
            try touchPolicy("a second pass")
            #expect(a.wait(seconds: 60) { records("a").count == 2 && limit() == "3" }, "\(records("a"))\n\(a.log)")
            #expect(records("a").filter(fixed).count == 2, "\(records("a"))")
            #expect(a.terminate() == 0, "\(a.log.suffix(3000))")

            // It drifts again; replica b (which signs its own records) takes db-0 over.
            try drift()
            let b = try replica("b", signsWith: bulwarkKey, auditSigners: signing.auditSigners)
            #expect(b.wait(seconds: 60) { records("b").count == 1 }, "\(records("b"))\n\(b.log)")
            let metrics = (try? b.get("/metrics").body) ?? ""
            #expect(b.terminate() == 0, "\(b.log.suffix(3000))")
            let reason = signing == .unsigned ? "unsigned" : "untrusted"
            let rejected = metrics.split(separator: "\n").first { $0.hasPrefix("bulwark_peer_records_rejected_total{reason=\"\(reason)\"}") }
            if signing.counted {
                // Trusted: a's two fixes count, so the third is escalated, not made.
                #expect(records("b").contains { Set($0.split(separator: " ")).isSuperset(of: ["escalated", "PostgresRole/flapping"]) },
                        "\(records("b"))")
                #expect(!records("b").contains(where: fixed))
                #expect(limit() == "10")
                #expect(rejected == nil && !b.log.contains("not counted"), "\(b.log.suffix(2000))")
            } else {
                // Unsigned, or signed by a person where only Bulwarks count: left out, logged and
                // counted; b's own history has no fix of it, so b fixes it.
                #expect(records("b").contains(where: fixed), "\(records("b"))")
                #expect(limit() == "3")
                #expect(rejected?.hasSuffix(" 2") == true, "\(rejected ?? "no series")\n\(metrics.prefix(200))")
                #expect(b.log.contains("not counted by the flap breaker") && b.log.contains("bulwark/audit-replicas/a"), "\(b.log.suffix(3000))")
            }
        }
    }
}
