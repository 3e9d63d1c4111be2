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

    /// A webhook URL is its credential: plain http is refused where the notifier is written
    /// (inline, at validation, naming file and line) or when it is read (urlEnv, before anything
    /// is sent, naming the notifier's file and never the URL), unless it goes to this machine.
    @Test func plainHTTPToAnotherHostIsRefusedAndLoopbackIsAccepted() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let path = "controllers/host-hardening.yaml"
            let controller = try read(s.policy + "/" + path)
            func notifier(_ spec: String) -> String {
                controller + "---\napiVersion: bulwark/v1\nkind: Notifier\nmetadata: {name: chat}\nspec: \(spec)\n"
            }
            let line = controller.split(separator: "\n", omittingEmptySubsequences: false).count + 4
            try write(s.policy + "/" + path, notifier("{url: \"http://example.com/hook?token=T0KEN-1\"}"))
            let refused = try bulwark(["validate", s.policy])
            #expect(refused.status == 1, "\(refused.stdout) \(refused.stderr)")
            let said = refused.stdout + refused.stderr
            #expect(said.contains("\(path):\(line):") && said.contains("plain http is accepted only to a loopback address"), "\(said)")
            #expect(!said.contains("T0KEN-1"))
            try write(s.policy + "/" + path, notifier("{url: \"http://127.0.0.1:9/hook\"}"))
            let accepted = try bulwark(["validate", s.policy])
            #expect(accepted.status == 0, "\(accepted.stdout) \(accepted.stderr)")

            // From the environment: refused before sending, the URL in no message; loopback delivered.
            try write(s.policy + "/" + path, controller)
            let fixes = try s.planned().fixes
            let server = try TestHTTPServer()
            defer { server.stop() }
            try approveMode(s, notifier: "apiVersion: bulwark/v1\nkind: Notifier\nmetadata: {name: chat}\nspec: {urlEnv: CHAT_URL, format: slack}\n")
            let outside = try apply(s, timeout: 0, env: ["CHAT_URL": "http://example.com/hook?token=T0KEN-2"])
            #expect(outside.status == 0, "\(outside.stderr)")
            #expect(outside.stderr.contains("notifier chat (controllers/host-hardening.yaml:")
                    && outside.stderr.contains("plain http is accepted only to a loopback address"), "\(outside.stderr)")
            #expect(!(outside.stdout + outside.stderr).contains("T0KEN-2") && !(outside.stdout + outside.stderr).contains("example.com"))
            let inside = try apply(s, env: ["CHAT_URL": server.url])
            #expect(inside.status == 0, "\(inside.stderr)")
            #expect(server.requests.count == fixes, "the pending notifications go to the loopback URL")
        }
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
            // Down: bound, not listening (connections are refused), so that no other test can
            // take its port before it comes up.
            let server = try TestHTTPServer(listening: false)
            defer { server.stop() }
            let port = server.port
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
            // Private as the README says: the folder 0700, each entry 0600, also once rewritten
            // after a failed attempt (it was rewritten 0644, the folder made 0755).
            #expect(modeAndOwnerMode(s.state + "/outbox") & 0o777 == 0o700)
            var rewritten = 0
            for name in pending {
                #expect(modeAndOwnerMode(s.state + "/outbox/" + name) & 0o777 == 0o600, "\(name)")
                let entry = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s.state + "/outbox/" + name))) as? [String: Any])
                if (entry["attempts"] as? Int ?? 0) > 0 { rewritten += 1 }
            }
            // The first entry of the receiver is tried (and rewritten with its attempts); the rest wait for the next run.
            #expect(rewritten >= 1, "an entry was rewritten after its failed attempt")

            try server.listen()
            let up = try apply(s, timeout: 5)
            #expect(up.status == 0)
            #expect(server.requests.count == fixes)
            #expect(try FileManager.default.contentsOfDirectory(atPath: s.state + "/outbox").filter { $0.hasSuffix(".json") }.isEmpty)
        }
    }
}
