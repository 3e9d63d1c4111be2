@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// `bulwark run` as operations see it, as a real process on loopback: readiness that does not
/// forget a standing problem, a pass that halts, an address in use, SIGHUP, the shutdown
/// watchdog and the commands it leaves behind, refused webhooks by the thousand.
@Suite(.serialized)
struct DaemonOpsTests {
    let daemonTests = DaemonTests()

    /// Posts raw bytes to the daemon and returns the status line's code (no Content-Length added).
    func raw(_ port: Int, _ request: String) throws -> Int {
        let fd = try loopbackConnection(port: port, timeout: 15)
        defer { close(fd) }
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buffer, buffer.count)
        let text = String(decoding: buffer.prefix(max(0, n)), as: UTF8.self)
        return text.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? -1
    }

    /// The process whose command line holds `marker`, if one runs (not a zombie).
    func process(running marker: String) -> pid_t? {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(name), let data = FileManager.default.contents(atPath: "/proc/\(name)/cmdline") else { continue }
            let line = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            guard line.contains(marker), !line.contains("bulwark") else { continue }
            let stat = (try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8)) ?? ""
            if let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "Z" { continue }
            return pid
        }
        return nil
    }

    // MARK: - Readiness keeps standing problems

    /// A fix that failed and is held back stays a reason on /readyz and in the status, however
    /// small the cycles after it (a finding naming one other resource); the last-success time
    /// does not move. Once the cause is gone and the policy changes, the fix goes through and
    /// the daemon is ready.
    @Test func aSmallCycleAfterAFailedFixDoesNotMakeTheDaemonReady() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let readOnly = try ReadOnlyFolder(s.host + "/etc/ssh")
            defer { readOnly.release() }

            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { daemon.log.contains("result=failed") }, "\(daemon.log)")
            #expect(daemonTests.waitIdle(daemon))
            #expect(try daemon.get("/readyz").status == 503)
            // A cycle of one other resource, which is fine.
            let answer = try daemonTests.postFindings(daemon, #"{"resource": "cis-5.4.1.1-pass-max-days", "control": "scan"}"#)
            #expect(answer.status == 202 && answer.body.contains("\"matched\":1"), "\(answer)")
            #expect(daemonTests.waitIdle(daemon))
            let cycles = try daemonTests.status(daemon)["cycles"] as? Int ?? 0
            #expect(cycles >= 2, "the finding ran a cycle")
            let readyz = try daemon.get("/readyz")
            #expect(readyz.status == 503 && readyz.body.contains("standing problem") && readyz.body.contains("SSHDConfig"), "\(readyz.body)")
            let status = try daemonTests.status(daemon)
            #expect(status["ready"] as? Bool == false, "\(status)")
            let open = (status["openDrift"] as? [[String: Any]]) ?? []
            #expect(open.contains { ($0["resource"] as? String)?.hasPrefix("SSHDConfig") == true }, "\(open)")
            #expect(try daemonTests.metrics(daemon)["bulwark_last_successful_cycle_timestamp_seconds"] == 0)

            // The cause goes away and the policy changes: the fix is tried again and holds.
            #expect(readOnly.release())
            try s.commitPolicy("desired-state/hosts/extra.yaml", """
                apiVersion: bulwark/v1
                kind: SSHDConfig
                metadata: {name: no-agent-forwarding, annotations: {severity: medium}}
                spec: {AllowAgentForwarding: "no"}
                """)
            kill(daemon.process.processIdentifier, SIGHUP)
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            #expect(daemon.wait(seconds: 60) {
                ((try? daemonTests.metrics(daemon))?["bulwark_last_successful_cycle_timestamp_seconds"] ?? 0) > 0
            }, "\(daemon.log)")
            #expect(daemon.terminate() == 0)
        }
    }

    /// A fix whose cause goes away by itself (here a read-only mount that is taken away) is
    /// tried again after its hold, with no policy change and no restart, and the daemon is
    /// ready; while it fails again it is not recorded again. Held twice as long each time.
    @Test func aHeldFixIsTriedAgainAfterItsHoldAndRecordedOnce() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "interval: 5m", with: "interval: 10s")
            let readOnly = try ReadOnlyFolder(s.host + "/etc/ssh")
            defer { readOnly.release() }
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { daemon.log.contains("result=failed") }, "\(daemon.log)")
            #expect(daemonTests.waitIdle(daemon))
            // The next cycle (a failed controller is retried within seconds) holds it and says until when.
            #expect(daemon.wait(seconds: 30) { (try? daemon.get("/readyz"))?.body.contains("tried again in") == true }, "\(daemon.log)")
            #expect(try daemon.get("/readyz").status == 503)
            // Two holds (8 s, then 16 s): tried again, failed again, recorded once.
            #expect(daemon.wait(seconds: 40) { (try? daemon.get("/readyz"))?.body.contains("failed before (2 times in a row)") == true },
                    "\(daemon.log)")
            let failed = try s.trailers("Bulwark-Result").filter { $0 == "failed" }.count
            #expect(failed >= 1)
            #expect(readOnly.release())
            // No policy change, no restart: the next try after the hold fixes it.
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            #expect(try s.trailers("Bulwark-Result").filter { $0 == "failed" }.count == failed, "the failures were recorded once")
            #expect(daemon.terminate() == 0)
        }
    }

    /// An intent journal that cannot be written halts the pass: logged as an error, the fixes
    /// left undone are open drift (status and gauge) and /readyz says so. With the journal
    /// writable again, the next daemon fixes them and is ready.
    @Test func aHaltedPassIsLoggedAndItsUndoneFixesAreOpenDrift() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FileManager.default.createDirectory(atPath: s.state + "/intents.log", withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            #expect(chmod(s.state, 0o700) == 0)
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { daemon.log.contains("the pass stopped changing systems") }, "\(daemon.log)")
            #expect(daemonTests.waitIdle(daemon))
            let line = daemon.log.split(separator: "\n").first { $0.contains("the pass stopped changing systems") } ?? ""
            #expect(line.contains("error"), "logged at error level: \(line)")
            let status = try daemonTests.status(daemon)
            let open = (status["openDrift"] as? [[String: Any]]) ?? []
            #expect(open.count > 5, "\(status)")
            #expect(open.contains { ($0["reason"] as? String)?.contains("not attempted") == true }, "\(open)")
            let gauges = try daemonTests.metrics(daemon).filter { $0.key.hasPrefix("bulwark_open_drift{") }.values.reduce(0, +)
            #expect(gauges == Double(open.count))
            let readyz = try daemon.get("/readyz")
            #expect(readyz.status == 503 && readyz.body.contains("stopped changing systems"), "\(readyz.body)")
            #expect(daemon.terminate() == 0)

            try FileManager.default.removeItem(atPath: s.state + "/intents.log")
            let next = try daemonTests.start(s)
            #expect(next.wait { (try? next.get("/readyz").status) == 200 }, "\(next.log)")
            #expect(((try daemonTests.status(next)["openDrift"] as? [Any]) ?? [1]).isEmpty)
            #expect(next.terminate() == 0)
        }
    }

    // MARK: - Start and signals

    /// An address in use ends `bulwark run` with 1 before anything is fetched or changed.
    @Test func anAddressInUseExitsBeforeAnyChange() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let holder = try TestHTTPServer()
            defer { holder.stop() }
            let host = try s.snapshot()
            let result = try run(try bulwarkExecutable(), ["run", "--repo", s.origin, "--state-dir", s.state,
                                                           "--listen", "127.0.0.1:\(holder.port)"])
            #expect(result.status == 1, "\(result.stderr)")
            // Said as the option that chose it, the address named, parentheses balanced.
            #expect(result.stderr.contains("cannot listen on 127.0.0.1:\(holder.port) (--listen): Address already in use"),
                    "\(result.stderr)")
            #expect(result.stderr.filter { $0 == "(" }.count == result.stderr.filter { $0 == ")" }.count, "\(result.stderr)")
            #expect(try s.snapshot() == host, "nothing changed on the host")
            #expect(((try? s.auditCommits()) ?? []).isEmpty, "nothing recorded")

            // The address free, the same daemon starts and fixes the host.
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            #expect(try s.snapshot() != host)
            #expect(!daemon.log.contains("not on loopback"), "a loopback listener is not warned about")
            #expect(daemon.terminate() == 0)
        }
    }

    /// A listener on another address than loopback (here one no interface has, so nothing is
    /// opened to the network) is warned about at start: the endpoints are open to anyone.
    @Test func aListenAddressOffLoopbackIsWarnedAbout() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let result = try run(try bulwarkExecutable(), ["run", "--repo", s.origin, "--state-dir", s.state,
                                                           "--listen", "192.0.2.1:9420"])
            #expect(result.status == 1, "\(result.stderr)")
            #expect(result.stderr.contains("listens on 192.0.2.1:9420, not on loopback") && result.stderr.contains("TLS proxy"),
                    "\(result.stderr)")
        }
    }

    /// SIGHUP checks the source now; the daemon goes on, and SIGTERM still ends it with 0.
    @Test func sighupChecksTheSourceAndNeverEndsTheDaemon() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            try s.commitPolicy("desired-state/hosts/extra.yaml", """
                apiVersion: bulwark/v1
                kind: SSHDConfig
                metadata: {name: no-agent-forwarding, annotations: {severity: medium}}
                spec: {AllowAgentForwarding: "no"}
                """)
            #expect(kill(daemon.process.processIdentifier, SIGHUP) == 0)
            #expect(try daemon.wait { try daemonTests.sshdSetting(s, "AllowAgentForwarding") == "AllowAgentForwarding no" }, "\(daemon.log)")
            #expect(daemon.process.isRunning)
            #expect(daemon.log.contains("SIGHUP"), "\(daemon.log)")
            // Twice more, during whatever runs: still there.
            kill(daemon.process.processIdentifier, SIGHUP)
            kill(daemon.process.processIdentifier, SIGHUP)
            #expect(daemonTests.waitIdle(daemon))
            #expect(daemon.process.isRunning)
            #expect(try daemon.get("/healthz").status == 200)
            #expect(daemon.terminate() == 0)
        }
    }

    /// A cycle stuck in a reload command past --shutdown-grace: the daemon kills the command's
    /// process group and exits 75, so a supervisor can tell an abandoned cycle from a clean stop.
    @Test func anAbandonedCycleExits75AndLeavesNoCommandRunning() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let root = dir + "/slowhost"
            try FileManager.default.createDirectory(atPath: root + "/etc/app", withIntermediateDirectories: true)
            try write(root + "/etc/app/config.yaml", "feature:\n  enabled: false\n")
            let marker = "40.\(Int.random(in: 100...999))"
            try s.commitPolicy("controllers/slow.yaml", """
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: slow}
                spec:
                  kinds: [ConfigFile]
                  targets: {selector: {role: slow}}
                  interval: 5m
                  mode: enforce
                  maxChangesPerCycle: 5
                ---
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: slow, labels: {role: slow}}
                spec: {adapter: host, root: \(root)}
                """)
            try s.commitPolicy("desired-state/slow/reload.yaml", """
                apiVersion: bulwark/v1
                kind: ConfigFile
                metadata: {name: slow-reload, annotations: {severity: low}}
                spec:
                  path: etc/app/config.yaml
                  format: yaml
                  properties: {feature.enabled: true}
                  reload: [/usr/bin/sleep, "\(marker)"]
                  timeoutSeconds: 600
                """)
            try s.acceptHead()
            let daemon = try daemonTests.start(s, ["--shutdown-grace", "2"])
            var reload: pid_t?
            #expect(daemon.wait(seconds: 60) {
                reload = process(running: "sleep \(marker)")
                return reload != nil
            }, "\(daemon.log.split(separator: "\n").filter { $0.contains("slow") || $0.contains("error") }.joined(separator: "\n"))")
            defer { if let reload, process(running: "sleep \(marker)") == reload { kill(reload, SIGKILL) } }
            #expect(daemon.terminate() == 75, "\(daemon.log)")
            #expect(daemon.log.contains("did not finish within 2 s"), "\(daemon.log)")
            #expect(daemon.wait(seconds: 5) { process(running: "sleep \(marker)") == nil }, "the reload was killed with the daemon")
        }
    }

    /// SIGTERM while the daemon starts, after its shutdown watchdog took the signal and before
    /// the service group traps it: the process ends at once with 0, and nothing was fetched,
    /// changed or recorded (it went on to start, fix the host, and exit 75 at the end of the
    /// grace). SIGTERM once it runs still takes the graceful path with 0 (every other test here).
    @Test func sigtermWhileTheDaemonStartsEndsItBeforeAnythingChanges() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = try s.snapshot()
            // The pause outlasts any wait of the test's (the signal ends it), and the grace
            // outlasts the bound below: a signal that took the graceful path would be seen.
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600", "--shutdown-grace", "90"],
                                           environment: ["BULWARK_WEBHOOK_SECRET": DaemonTests.secret,
                                                         "BULWARK_FAULT_PAUSE_BEFORE_SERVICES": "120"],
                                           logPath: dir + "/daemon.log")
            #expect(daemon.wait(seconds: 60) { daemon.log.contains("bulwark run") }, "\(daemon.log)")
            let began = Date()
            #expect(daemon.terminate(timeout: 60) == 0, "\(daemon.log)")
            #expect(Date().timeIntervalSince(began) < 30, "at once, not after the grace")
            #expect(daemon.log.contains("stopped by a signal before the daemon started"), "\(daemon.log)")
            #expect(try s.snapshot() == before, "nothing on the host changed")
            #expect((try? s.auditCommits()) == nil, "no audit branch: nothing recorded")
        }
    }

    /// SIGTERM at the very start, before the state clone is opened (or repaired): it ended the
    /// process with 143 (the default action: the watchdog was made later), in the middle of
    /// whatever it did (outside review). Now the watchdog takes it from the start: 0, nothing
    /// fetched, changed or recorded.
    @Test func sigtermAtTheVeryStartEndsTheDaemonWithZero() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = try s.snapshot()
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"],
                                           environment: ["BULWARK_WEBHOOK_SECRET": DaemonTests.secret,
                                                         "BULWARK_FAULT_SIGNAL_AT_START": String(SIGTERM)],
                                           logPath: dir + "/daemon.log")
            #expect(daemon.wait(seconds: 60) { !daemon.process.isRunning }, "\(daemon.log)")
            #expect(!daemon.process.isRunning && daemon.process.terminationReason == .exit && daemon.process.terminationStatus == 0,
                    "\(daemon.process.terminationReason) \(daemon.process.isRunning ? -1 : daemon.process.terminationStatus) \(daemon.log)")
            #expect(daemon.log.contains("stopped by a signal before the daemon started"), "\(daemon.log)")
            #expect(try s.snapshot() == before, "nothing on the host changed")
            #expect((try? s.auditCommits()) == nil, "no audit branch: nothing recorded")
        }
    }

    // MARK: - HTTP under abuse

    /// Hundreds of badly signed webhooks from one address, with a secret too long to guess: each
    /// is checked and refused (401), so the forge at the same address (a proxy, a NAT) is still
    /// served at once; past the burst, a request the headers alone refuse (no signature) gets
    /// 429; the log grows by a few lines that name the address, and the refusals are counted.
    @Test func refusedWebhooksAreRateLimitedPerAddressAndLoggedSparingly() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            let before = daemon.log.utf8.count
            var statuses: [Int: Int] = [:]
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let began = Date()
            for index in 0..<300 {
                let answer = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                             headers: ["X-Hub-Signature-256": "sha256=" + String(repeating: "0", count: 63) + String(index % 10)],
                                             body: body)
                statuses[answer.status, default: 0] += 1
            }
            #expect(statuses == [401: 300], "\(statuses)")
            let unsigned = try httpRequest(port: daemon.port, "POST", "/hooks/git", headers: [:], body: body)
            #expect(unsigned.status == 429, "\(unsigned)")
            let added = daemon.log.utf8.count - before
            let lines = daemon.log.split(separator: "\n").filter { $0.contains("webhook refused") }
            let minutes = Int(Date().timeIntervalSince(began) / 60) + 1
            #expect(lines.count <= 2 * minutes && added < 2000 * minutes, "\(lines.count) lines, \(added) bytes")
            #expect(lines.first?.contains("127.0.0.1") == true, "\(lines)")
            // The signed webhook from the same address is taken at once.
            let signed = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                         headers: ["X-Hub-Signature-256": daemonTests.signature(body)], body: body)
            #expect(signed.status == 202, "\(signed)")
            let metrics = try daemonTests.metrics(daemon)
            #expect(metrics[#"bulwark_http_refused_total{route="/hooks/git",reason="rate_limited"}"#] == 1,
                    "\(metrics.keys.filter { $0.contains("refused") })")
            #expect(metrics[#"bulwark_http_refused_total{route="/hooks/git",reason="unauthorized"}"#] == 300)
            // GET routes are not limited, and HEAD works on them.
            #expect(try daemon.get("/healthz").status == 200)
            #expect(try httpRequest(port: daemon.port, "HEAD", "/readyz").status == 200)
            #expect(daemon.terminate() == 0)
        }
    }

    /// A malformed chunked body is a bad request, not one "larger than" the limit.
    @Test func aMalformedChunkedBodyIs400() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try daemonTests.start(s)
            #expect(daemon.wait { (try? daemon.get("/healthz").status) == 200 }, "\(daemon.log)")
            let head = "POST /api/v1/findings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(DaemonTests.token)\r\n"
                + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            #expect(try raw(daemon.port, head + "zz\r\n{}\r\n0\r\n\r\n") == 400)
            // A well-formed chunked body is read.
            let finding = #"{"resource": "local", "control": "scan"}"#
            #expect(try raw(daemon.port, head + String(finding.utf8.count, radix: 16) + "\r\n" + finding + "\r\n0\r\n\r\n") == 202)
            #expect(daemon.terminate() == 0)
        }
    }
}
