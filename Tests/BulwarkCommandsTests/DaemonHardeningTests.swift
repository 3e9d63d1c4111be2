@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// `bulwark run` under abuse and at its edges, as a real process on loopback: limits across
/// cycles, idle connections, refused revisions, notifications, failing fixes.
@Suite(.serialized)
struct DaemonHardeningTests {
    let daemonTests = DaemonTests()

    func controller(_ s: Scenario, _ replacements: [(String, String)]) throws -> String {
        var text = try read(s.policy + "/controllers/host-hardening.yaml")
        for (old, new) in replacements {
            #expect(text.contains(old), "the init policy has \(old)")
            text = text.replacingOccurrences(of: old, with: new)
        }
        return text
    }

    func pushWebhook(_ daemon: DaemonProcess) throws {
        // Each push is another delivery, as a forge's body names the push: the same one again is a replay.
        let body = Array(#"{"ref":"refs/heads/main","after":"\#(UUID().uuidString)"}"#.utf8)
        let answer = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                     headers: ["X-Hub-Signature-256": daemonTests.signature(body)], body: body)
        #expect(answer.status == 202, "\(answer)")
    }

    func count(_ s: Scenario, result: String) throws -> Int {
        try s.trailers("Bulwark-Result").filter { $0 == result }.count
    }

    // MARK: - Limits across cycles

    @Test func aStreamOfFindingsCannotFixMoreThanTheControllerAllowsPerInterval() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("controllers/host-hardening.yaml",
                               try controller(s, [("maxChangesPerCycle: 50", "maxChangesPerCycle: 2"), ("interval: 5m", "interval: 1h")]))
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            #expect(daemonTests.waitIdle(daemon), "\(daemon.log)")
            // The first cycle fixes what the policy allows: two.
            #expect(try count(s, result: "verified") == 2)

            // Fifty findings, fifty cycles: still two fixes within the controller's hour.
            for index in 0..<50 {
                let answer = try daemonTests.postFindings(daemon, #"{"resource": "local", "control": "scan-\#(index)"}"#)
                #expect(answer.status == 202 && !answer.body.contains("\"matched\":0"), "\(answer)")
            }
            #expect(daemonTests.waitIdle(daemon), "\(daemon.log)")
            let status = try daemonTests.status(daemon)
            #expect((status["cycles"] as? Int ?? 0) >= 2, "the findings ran cycles: \(status)")
            #expect(try count(s, result: "verified") == 2, "\(daemon.log)")
            #expect(try git("--git-dir", s.origin, "log", "--format=%B", "bulwark/audit")
                .contains("maxChangesPerCycle 2 of controller host-hardening reached within its interval of"))
            let open = (status["openDrift"] as? [Any])?.count ?? 0
            #expect(open > 10, "the rest stays open: \(status)")
            // Drift seen in every one of those cycles is counted once.
            let values = try daemonTests.metrics(daemon)
            let detected = values.filter { $0.key.hasPrefix("bulwark_drift_detected_total{") }.values.reduce(0, +)
            #expect(detected == Double(open + 2), "\(values)")

            // A legitimate change still goes through: a revision that raises the limit lets the
            // rest be fixed (the two of this hour count against the new limit too).
            try s.commitPolicy("controllers/host-hardening.yaml",
                               try controller(s, [("maxChangesPerCycle: 50", "maxChangesPerCycle: 100"), ("interval: 5m", "interval: 1h")]))
            try pushWebhook(daemon)
            #expect(try daemon.wait(seconds: 30) { try count(s, result: "verified") == open + 2 }, "\(daemon.log)")
            #expect(daemonTests.waitIdle(daemon))
            #expect((try daemonTests.status(daemon)["openDrift"] as? [Any])?.isEmpty == true)
            #expect(daemon.terminate() == 0)
        }
    }

    // MARK: - Connections

    /// Opens `count` TCP connections to the port and sends nothing on them.
    func idleConnections(port: Int, count: Int) throws -> [Int32] {
        var sockets: [Int32] = []
        for _ in 0..<count {
            sockets.append(try loopbackConnection(port: port, timeout: 30))
        }
        return sockets
    }

    @Test func twoThousandIdleConnectionsDoNotStopHealthOrMetrics() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let sockets = try idleConnections(port: daemon.port, count: 2000)
            defer { for fd in sockets { close(fd) } }
            #expect(sockets.count == 2000)
            #expect(try daemon.get("/healthz").status == 200)
            #expect(try daemon.get("/metrics").status == 200)
            #expect(try daemon.get("/readyz").status == 200)
            #expect(daemon.terminate() == 0, "\(daemon.log)")
        }
    }

    @Test func pastTheConnectionCapIdleConnectionsAreClosedAndTheDaemonKeepsAnsweringAndSyncing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try daemonTests.start(s, ["--max-connections", "20", "--idle-timeout", "1"])
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let sockets = try idleConnections(port: daemon.port, count: 200)
            defer { for fd in sockets { close(fd) } }
            // An idle connection is closed by the daemon: reading it ends.
            var timeout = timeval(tv_sec: 20, tv_usec: 0)
            setsockopt(sockets[0], SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var byte: UInt8 = 0
            #expect(read(sockets[0], &byte, 1) == 0, "the daemon closed the idle connection")
            #expect(daemon.wait(seconds: 30) { (try? daemon.get("/healthz").status) == 200 }, "\(daemon.log)")
            // Git still works: a pushed revision is fetched and applied.
            try s.commitPolicy("desired-state/hosts/extra.yaml", """
                apiVersion: bulwark/v1
                kind: SSHDConfig
                metadata: {name: no-agent-forwarding, annotations: {severity: medium}}
                spec: {AllowAgentForwarding: "no"}
                """)
            try pushWebhook(daemon)
            #expect(try daemon.wait(seconds: 20) { try daemonTests.sshdSetting(s, "AllowAgentForwarding") == "AllowAgentForwarding no" },
                    "\(daemon.log)")
            #expect(daemon.terminate() == 0, "\(daemon.log)")
        }
    }

    // MARK: - Readiness

    @Test func aRefusedRevisionMakesReadyz503UntilAGoodOneArrives() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            #expect(daemonTests.waitIdle(daemon))
            let host = try s.snapshot()
            let before = try s.auditCommits().count
            try s.commitPolicy("desired-state/hosts/extra.yaml", """
                apiVersion: bulwark/v1
                kind: NoSuchKind
                metadata: {name: broken}
                spec: {}
                """)
            try pushWebhook(daemon)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 503 }, "\(daemon.log)")
            let readyz = try daemon.get("/readyz")
            #expect(readyz.body.contains("refused") && readyz.body.contains("stays in force"), "\(readyz.body)")
            #expect(try s.snapshot() == host, "nothing changed on the host")
            // The refusal itself is recorded on the audit branch, once.
            #expect(daemon.wait { ((try? s.auditCommits().count) ?? 0) == before + 1 }, "\(daemon.log)")
            #expect(try s.trailers("Bulwark-Decision").first == "refused")

            try s.commitPolicy("desired-state/hosts/extra.yaml", """
                apiVersion: bulwark/v1
                kind: SSHDConfig
                metadata: {name: no-agent-forwarding, annotations: {severity: medium}}
                spec: {AllowAgentForwarding: "no"}
                """)
            try pushWebhook(daemon)
            #expect(try daemon.wait { try daemonTests.sshdSetting(s, "AllowAgentForwarding") == "AllowAgentForwarding no" }, "\(daemon.log)")
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            #expect(daemon.terminate() == 0)
        }
    }

    // MARK: - Notifications

    @Test func theDaemonAnnouncesItsDecisions() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try TestHTTPServer()
            defer { server.stop() }
            try s.commitPolicy("controllers/notify.yaml", """
                apiVersion: bulwark/v1
                kind: Notifier
                metadata: {name: siem}
                spec: {url: "\(server.url)", format: json, on: [applied]}
                """)
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let fixed = try count(s, result: "verified")
            #expect(fixed > 10)
            #expect(daemon.wait(seconds: 20) { server.requests.count >= fixed }, "\(server.requests.count) of \(fixed): \(daemon.log)")
            let ids = Set(try s.trailers("Bulwark-Id"))
            let delivered = Set(server.requests.compactMap { $0.headers["x-bulwark-delivery"] })
            #expect(delivered.count == fixed && delivered.isSubset(of: ids))
            let first = try #require(server.requests.first)
            let event = try #require(try JSONSerialization.jsonObject(with: first.body) as? [String: Any])
            #expect((event["record"] as? [String: Any])?["decision"] as? String == "applied")
            #expect(daemon.wait { ((try? daemonTests.metrics(daemon))?["bulwark_notifications_delivered_total"] ?? 0) == Double(fixed) })
            // Nothing new is decided, so nothing is announced again.
            let answer = try daemonTests.postFindings(daemon, #"{"resource": "local", "control": "again"}"#)
            #expect(answer.status == 202)
            #expect(daemonTests.waitIdle(daemon))
            #expect(server.requests.count == fixed)
            #expect(daemon.terminate() == 0)
        }
    }

    // MARK: - Failing fixes

    @Test func aFixThatFailsIsRecordedOnceNotOnEveryPass() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            // /etc/ssh read-only (even for root): the SSHD fixes fail.
            let readOnly = try ReadOnlyFolder(s.host + "/etc/ssh")
            defer { readOnly.release() }

            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { daemon.log.contains("result=failed") }, "\(daemon.log)")
            #expect(daemonTests.waitIdle(daemon))
            let failed = try count(s, result: "failed")
            #expect(failed > 0)
            let commits = try s.auditCommits().count
            for index in 0..<5 {
                let answer = try daemonTests.postFindings(daemon, #"{"resource": "local", "control": "scan-\#(index)"}"#)
                #expect(answer.status == 202)
                #expect(daemonTests.waitIdle(daemon))
            }
            #expect(try count(s, result: "failed") == failed, "the same failure is not recorded again")
            #expect(try s.auditCommits().count == commits, "\(daemon.log)")
            #expect(try daemonTests.status(daemon)["ready"] as? Bool == false, "the failure shows on readiness")
            #expect(daemon.terminate() == 0)

            // Once the cause is gone, the next daemon fixes it.
            #expect(readOnly.release())
            let next = try daemonTests.start(s)
            #expect(next.wait { (try? next.get("/readyz").status) == 200 }, "\(next.log)")
            #expect(try daemonTests.sshdSetting(s, "PermitRootLogin") == "PermitRootLogin no")
            #expect(next.terminate() == 0)
        }
    }

    /// A loopback socket that takes connections and never answers (a PostgreSQL server that
    /// hangs, or one that must never be reached): its descriptor, which the caller closes, and port.
    func silentListener() throws -> (Int32, UInt16) {
        let (listener, port) = try boundLoopbackSocket()
        guard listen(listener, 16) == 0 else {
            close(listener)
            throw SupportError("cannot listen on loopback: \(String(cString: strerror(errno)))")
        }
        return (listener, port)
    }

    // MARK: - Shutdown

    @Test func sigtermEndsTheDaemonEvenWhenAnAdapterIsStuck() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            // A PostgreSQL server that takes the connection and never answers.
            let (listener, port) = try silentListener()
            defer { close(listener) }
            try write(dir + "/silent-db", "secret\n", mode: 0o600)
            // The shipped postgres controller and its CIS settings cover targets with `role: database`.
            try s.commitPolicy("controllers/silent-db.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: silent-db, labels: {role: database}}
                spec: {adapter: postgres, host: 127.0.0.1, port: \(port), user: postgres, database: postgres,
                       passwordFile: \(dir)/silent-db, sslmode: disable}
                """)
            let daemon = try daemonTests.start(s, ["--shutdown-grace", "2", "--secrets-dir", dir])
            #expect(daemon.wait { (try? daemon.get("/healthz").status) == 200 }, "\(daemon.log)")
            // The first cycle waits on the silent server (the source is synced first; under load
            // that takes a while, so wait for it rather than for a fixed time).
            #expect(daemon.wait { ((try? daemon.get("/readyz").body) ?? "").contains("no cycle has run yet") }, "\(daemon.log)")
            let readyz = try daemon.get("/readyz")
            #expect(readyz.status == 503 && readyz.body.contains("no cycle has run yet"), "\(readyz.body)")
            // Ended, but with the cycle abandoned: 75, not the 0 of a clean stop.
            #expect(daemon.terminate() == 75, "SIGTERM ends it: \(daemon.log)")
            #expect(daemon.log.contains("did not finish within 2 s"), "\(daemon.log)")
        }
    }

    // MARK: - Bulwark's own credentials

    /// A policy commit that points a database target at its own server and names Bulwark's own
    /// credentials as the password (the audit signing key in the secrets folder, the git password
    /// file) gets neither: the target fails before any connection, naming why, and the server
    /// never sees a connection. (A target's own password still connects: PostgresTests.)
    @Test(arguments: ["signing key", "git password"])
    func aTargetNamingBulwarksOwnCredentialIsNeverConnected(credential: String) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let (listener, port) = try silentListener()
            defer { close(listener) }
            try #require(fcntl(listener, F_SETFL, O_NONBLOCK) == 0)
            let secrets = dir + "/secrets"
            try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true)
            let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", secrets + "/bulwark-signing-key"])
            try #require(made.status == 0)
            try write(secrets + "/git-password", "git-\(UUID().uuidString)\n", mode: 0o600)
            // A file of the target's own name (the only one it may name) holding a copy of the credential.
            let file = "thief-db"
            try write(secrets + "/" + file, try read(secrets + "/" + (credential == "signing key" ? "bulwark-signing-key" : "git-password")), mode: 0o600)
            try s.commitPolicy("controllers/thief-db.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: thief-db, labels: {role: database}}
                spec: {adapter: postgres, host: 127.0.0.1, port: \(port), user: postgres, database: postgres,
                       passwordFile: \(file), sslmode: disable}
                """)
            let plan = try s.run("plan", "--secrets-dir", secrets, "--signing-key", secrets + "/bulwark-signing-key",
                                 "--git-password-file", secrets + "/git-password")
            let output = plan.stdout + plan.stderr
            #expect(output.contains("passwordFile \(file) holds one of Bulwark's own credentials"), "\(output)")
            let password = try read(secrets + "/git-password").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!output.contains("PRIVATE KEY") && !output.contains(password))
            #expect(accept(listener, nil, nil) < 0 && errno == EAGAIN, "no connection reached the server")
        }
    }
}

/// `apply`'s exit code while a fix keeps failing: the failure is recorded once, by the first
/// run, and the later runs, which try the fix again and fail again, said "(recorded before)" and
/// exited 0, so a cron job of `apply || alert` alerted once. They exit 1; once the cause is gone,
/// the next run fixes it and exits 0.
@Suite(.serialized) struct RepeatedFailureExitTests {
    @Test func aFixThatFailsAgainExitsOneOnEveryRunUntilItIsFixed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let readOnly = try ReadOnlyFolder(s.host + "/etc/ssh")
            defer { readOnly.release() }
            let first = try s.run("apply")
            #expect(first.status == 1, "\(first.stdout)\(first.stderr)")
            let failures = try s.trailers("Bulwark-Result").filter { $0 == "failed" }.count
            #expect(failures > 0)
            let again = try s.run("apply")
            #expect(again.status == 1, "failed again: \(again.stdout)\(again.stderr)")
            #expect(again.stdout.contains("(recorded before)"), "\(again.stdout)")
            #expect(try s.trailers("Bulwark-Result").filter { $0 == "failed" }.count == failures, "recorded once")
            // The summary counts the failures of this pass, recorded before or not (it said "Failed: 0").
            let failedAgain = again.stdout.split(separator: "\n").filter { $0.hasPrefix("FAILED") }.count
            #expect(failedAgain > 0 && again.stdout.contains("Failed: \(failedAgain)."), "\(again.stdout)")
            #expect(readOnly.release())
            let fixed = try s.run("apply")
            #expect(fixed.status == 0, "\(fixed.stdout)\(fixed.stderr)")
        }
    }
}

/// A folder of a test's own tree bind-mounted read-only onto itself: even root cannot write
/// there, so the fixes of the files in it fail. `release` unmounts it (once; later calls are
/// no-ops), and answers whether that worked.
final class ReadOnlyFolder {
    let path: String
    private var mounted = true

    init(_ path: String) throws {
        self.path = path
        let bound = try run("/usr/bin/mount", ["--bind", path, path])
        guard bound.status == 0 else { throw SupportError("cannot bind-mount \(path): \(bound.stderr)") }
        let readOnly = try run("/usr/bin/mount", ["-o", "remount,bind,ro", path])
        guard readOnly.status == 0 else {
            _ = try? run("/usr/bin/umount", [path])
            throw SupportError("cannot make \(path) read-only: \(readOnly.stderr)")
        }
    }

    @discardableResult
    func release() -> Bool {
        guard mounted else { return true }
        mounted = false
        return (try? run("/usr/bin/umount", [path]))?.status == 0
    }
}
