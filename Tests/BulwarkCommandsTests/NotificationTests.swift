import BulwarkTestSupport
import Foundation
import Testing

@Suite struct NotificationTests {
    func approveMode(_ s: Scenario, notifier: String) throws {
        let controller = try read(s.policy + "/controllers/host-hardening.yaml")
            .replacingOccurrences(of: "mode: enforce", with: "mode: approve")
        try s.commitPolicy("controllers/host-hardening.yaml", controller + "---\n" + notifier)
    }

    func apply(_ s: Scenario, timeout: Int = 10, env: [String: String] = [:]) throws -> ProcessOutput {
        try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state, "--notify-timeout", String(timeout)],
                environment: env)
    }

    @Test func heldDecisionsAreAnnouncedOnceInSlackFormat() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            let server = try TestHTTPServer()
            defer { server.stop() }
            try approveMode(s, notifier: """
                apiVersion: bulwark/v1
                kind: Notifier
                metadata: {name: secops-chat}
                spec: {url: "\(server.url)", format: slack}
                """)
            let first = try apply(s)
            #expect(first.status == 0, "\(first.stderr)")
            let held = try s.trailers("Bulwark-Decision").filter { $0 == "held" }.count
            #expect(held == fixes)
            #expect(server.requests.count == held)
            #expect(first.stdout.contains("Notifications: \(fixes) delivered, 0 pending."))
            let texts = try server.requests.map { try JSONDecoder().decode([String: String].self, from: $0.body)["text"] ?? "" }
            #expect(texts.contains { $0.hasPrefix("*held* SSHDConfig/cis-5.1.20-permit-root-login on local: PermitRootLogin yes -> no") })
            #expect(server.requests.allSatisfy { $0.method == "POST" && $0.path == "/hook" && $0.headers["x-bulwark-signature-256"] == nil })
            // Nothing new is decided, so nothing is announced again.
            #expect(try apply(s).status == 0)
            #expect(server.requests.count == held)
        }
    }

    @Test func signedJSONIsRetriedUntilTheReceiverTakesIt() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            let server = try TestHTTPServer(statuses: [500, 503])
            defer { server.stop() }
            try approveMode(s, notifier: """
                apiVersion: bulwark/v1
                kind: Notifier
                metadata: {name: siem}
                spec: {url: "\(server.url)", format: json, secretEnv: HOOK_SECRET, on: [held]}
                """)
            let secret = "s3cret-\(UUID().uuidString)"
            let result = try apply(s, env: ["HOOK_SECRET": secret])
            #expect(result.status == 0, "\(result.stderr)")
            let requests = server.requests
            let delivered = Dictionary(grouping: requests, by: { $0.headers["x-bulwark-delivery"] ?? "" })
            #expect(delivered.count == fixes, "every held decision delivered")
            #expect(requests.count == fixes + 2, "two refusals were retried")
            let sample = try #require(requests.last)
            let event = try #require(try JSONSerialization.jsonObject(with: sample.body) as? [String: Any])
            #expect(event["event"] as? String == "bulwark.decision")
            #expect((event["record"] as? [String: Any])?["decision"] as? String == "held")
            // An independent check of the signature.
            try sample.body.write(to: URL(fileURLWithPath: dir + "/body"))
            let openssl = try run("/usr/bin/openssl", ["dgst", "-sha256", "-hmac", secret, dir + "/body"])
            let expected = try #require(openssl.stdout.split(separator: " ").last).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(sample.headers["x-bulwark-signature-256"] == "sha256=" + expected)
            // The secret is in neither the output nor the history.
            #expect(!result.stdout.contains(secret) && !result.stderr.contains(secret))
            #expect(!(try git("--git-dir", s.origin, "log", "-p", "--all")).contains(secret))
        }
    }

    @Test func aReceiverThatIsDownGetsItsNotificationsOnTheNextRun() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            let probe = try TestHTTPServer()
            let port = probe.port
            probe.stop()
            try approveMode(s, notifier: """
                apiVersion: bulwark/v1
                kind: Notifier
                metadata: {name: chat}
                spec: {url: "http://127.0.0.1:\(port)/hook", format: slack}
                """)
            let started = ContinuousClock.now
            let down = try apply(s, timeout: 1)
            #expect(down.status == 0, "a receiver that is down never fails the pass")
            #expect(ContinuousClock.now - started < .seconds(30))
            #expect(down.stderr.contains("kept in"))
            let pending = try FileManager.default.contentsOfDirectory(atPath: s.state + "/outbox").filter { $0.hasSuffix(".json") }
            #expect(pending.count == fixes)

            let server = try TestHTTPServer(port: port)
            defer { server.stop() }
            let up = try apply(s, timeout: 5)
            #expect(up.status == 0)
            #expect(server.requests.count == fixes)
            #expect(try FileManager.default.contentsOfDirectory(atPath: s.state + "/outbox").filter { $0.hasSuffix(".json") }.isEmpty)
        }
    }
}
