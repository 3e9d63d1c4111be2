@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkServer
import BulwarkTestSupport
import Foundation
import Testing

/// Push webhooks fanned out: the forge's webhook reaches one process (`--webhook-relay-file`),
/// which relays it, signed with the same secret, to the agents it lists; an agent that polls once
/// an hour fetches at once. A forged webhook is relayed to no one, and a relayed one is not
/// relayed again.
@Suite struct WebhookRelayTests {
    static let secret = "relay-secret-for-tests"

    @Test func aVerifiedWebhookReachesAnAgentThroughTheRelayAndAForgedOneReachesNoOne() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 2)
            let environment = ["BULWARK_WEBHOOK_SECRET": Self.secret]
            func maxAuthTries(_ index: Int) -> String? {
                ((try? read(fleet.host(index) + "/etc/ssh/sshd_config")) ?? "").split(separator: "\n")
                    .first { $0.hasPrefix("MaxAuthTries ") }.map { String($0.dropFirst("MaxAuthTries ".count)) }
            }
            // Agent 1 polls once an hour. Its own relay list names the relay: a loop, if a relayed webhook were relayed again.
            try write(dir + "/agent-relays", "http://127.0.0.1:1/hooks/git\n")
            let agent = try DaemonProcess(["--repo", fleet.origin, "--state-dir", fleet.state(1), "--poll", "3600",
                                           "--self", "--identity-root", fleet.identity(1), "--webhook-relay-file", dir + "/agent-relays"],
                                          environment: environment, logPath: dir + "/agent.log")
            // The relay (here host 0's agent) lists agent 1, one agent that is not there, and a
            // wire tap that keeps what it is sent (an attacker who captured a relayed webhook).
            let tap = try TestHTTPServer()
            defer { tap.stop() }
            try write(dir + "/relays", "# agents\nhttp://127.0.0.1:\(agent.port)/hooks/git\n\nhttp://127.0.0.1:1/hooks/git\n\(tap.url)\n")
            let relay = try DaemonProcess(["--repo", fleet.origin, "--state-dir", fleet.state(0), "--poll", "3600",
                                           "--self", "--identity-root", fleet.identity(0), "--webhook-relay-file", dir + "/relays"],
                                          environment: environment, logPath: dir + "/relay.log")
            // The list is read again for each webhook.
            try write(dir + "/agent-relays", "http://127.0.0.1:\(relay.port)/hooks/git\n")
            for daemon in [agent, relay] {
                #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            }
            #expect(agent.wait(seconds: 60) { maxAuthTries(1) == "4" }, "\(agent.log)")

            // The policy changes; the forge's webhook goes to the relay only.
            let work = dir + "/work"
            try git("clone", "-q", fleet.origin, work)
            let path = work + "/desired-state/hosts/sshd.yaml"
            try write(path, try read(path).replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3"))
            try git("commit", "-qam", "MaxAuthTries 3", in: work)
            try git("push", "-q", "origin", "main", in: work)
            let body = Array(#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}"#.utf8)

            // Forged: refused by the relay, relayed to no one.
            let forged = try httpRequest(port: relay.port, "POST", "/hooks/git",
                                         headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: body, secret: Array("wrong".utf8))], body: body)
            #expect(forged.status == 401)
            // Verified: the relay fetches, and agent 1 does too, at once, though it polls once an hour.
            let signed = try httpRequest(port: relay.port, "POST", "/hooks/git",
                                         headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: body, secret: Array(Self.secret.utf8))], body: body)
            #expect(signed.status == 202)
            #expect(agent.wait(seconds: 60) { maxAuthTries(1) == "3" }, "\(agent.log)\n\(relay.log)")
            #expect(relay.wait(seconds: 60) { relay.log.contains("webhook relayed") }, "\(relay.log)")
            #expect(relay.wait(seconds: 60) { maxAuthTries(0) == "3" }, "\(relay.log)")

            // The captured relayed webhook, replayed to the agent as it was sent: refused (the
            // agent took that signature once), and the agent does not fetch for it.
            #expect(relay.wait(seconds: 30) { tap.requests.count == 1 }, "\(relay.log)")
            let captured = try #require(tap.requests.first)
            #expect(captured.headers["x-bulwark-relayed"] == "1" && captured.headers["x-bulwark-timestamp"] != nil)
            let replayed = try httpRequest(port: agent.port, "POST", "/hooks/git",
                                           headers: ["X-Bulwark-Signature-256": captured.headers["x-bulwark-signature-256"] ?? "",
                                                     "X-Bulwark-Timestamp": captured.headers["x-bulwark-timestamp"] ?? "",
                                                     "X-Bulwark-Relayed": "1"], body: Array(captured.body))
            #expect(replayed.status == 401 && replayed.body.contains("replayed"), "\(replayed.body)")
            // The forge's webhook replayed to the relay (GitHub signs no timestamp): the relay took
            // that delivery once, so it is refused and reaches no one.
            let again = try httpRequest(port: relay.port, "POST", "/hooks/git",
                                        headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: body, secret: Array(Self.secret.utf8))], body: body)
            #expect(again.status == 401 && again.body.contains("replayed"), "\(again.body)")
            // A verified delivery that moved nothing (a push to another branch): the relay's fetch
            // finds the branch where the last fan-out left it, so no agent hears of it.
            let other = Array(#"{"ref":"refs/heads/other","after":"0000000000000000000000000000000000000000"}"#.utf8)
            let elsewhere = try httpRequest(port: relay.port, "POST", "/hooks/git",
                                            headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: other, secret: Array(Self.secret.utf8))], body: other)
            #expect(elsewhere.status == 202)
            #expect(relay.wait(seconds: 30) { relay.log.contains("webhook not relayed") }, "\(relay.log)")

            // A real push after it is relayed again, with a later timestamp, and the agent takes it.
            try write(path, try read(path).replacingOccurrences(of: "MaxAuthTries: 3", with: "MaxAuthTries: 2"))
            try git("commit", "-qam", "MaxAuthTries 2", in: work)
            try git("push", "-q", "origin", "main", in: work)
            let pushed = Array(#"{"ref":"refs/heads/main","after":"1111111111111111111111111111111111111111"}"#.utf8)
            let second = try httpRequest(port: relay.port, "POST", "/hooks/git",
                                         headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: pushed, secret: Array(Self.secret.utf8))], body: pushed)
            #expect(second.status == 202)
            #expect(agent.wait(seconds: 60) { maxAuthTries(1) == "2" }, "\(agent.log)\n\(relay.log)")
            #expect(relay.wait(seconds: 30) { tap.requests.count == 2 }, "\(relay.log)")
            let stamps = tap.requests.compactMap { $0.headers["x-bulwark-timestamp"].flatMap { Int64($0) } }
            #expect(stamps.count == 2 && stamps[1] > stamps[0], "\(stamps)")
            // Every host holds the webhook secret: a finding signed with it is refused by an agent
            // and by a relay (findings can propose policy), and reaches nothing.
            let finding = Array(#"{"Findings":[{"Id":"f-1","Title":"t","Severity":{"Label":"HIGH"},"Resources":[{"Id":"local"}]}]}"#.utf8)
            for daemon in [relay, agent] {
                let posted = try httpRequest(port: daemon.port, "POST", "/api/v1/findings",
                                             headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: finding, secret: Array(Self.secret.utf8)),
                                                       "Content-Type": "application/json"], body: finding)
                #expect(posted.status == 401, "\(posted.body)")
                let stamp = Int64(Date().timeIntervalSince1970)
                let stamped = try httpRequest(port: daemon.port, "POST", "/api/v1/findings",
                                              headers: ["X-Bulwark-Timestamp": String(stamp), "Content-Type": "application/json",
                                                        "X-Bulwark-Signature-256": WebhookVerifier.signature(of: finding, timestamp: stamp, secret: Array(Self.secret.utf8))],
                                              body: finding)
                #expect(stamped.status == 401 && stamped.body.contains("--findings-secret-file"), "\(stamped.body)")
            }
            #expect(agent.terminate() == 0)
            #expect(relay.terminate() == 0)

            // Two relayed webhooks reached agent 1 (not the forged one, not the replays), and agent 1 relayed nothing back.
            #expect(agent.log.components(separatedBy: "push webhook verified").count - 1 == 2, "\(agent.log)")
            #expect(agent.log.contains("replayed"), "the refused replay is logged: \(agent.log)")
            #expect(relay.log.components(separatedBy: "push webhook verified").count - 1 == 3, "\(relay.log)")
            #expect(relay.log.components(separatedBy: "webhook relayed").count - 1 == 2, "\(relay.log)")
            #expect(!agent.log.contains("webhook relayed"), "\(agent.log)")
            // The agent that is not there is reported, the ones that are counted.
            #expect(relay.log.contains("delivered=2") && relay.log.contains("failed=1"), "\(relay.log)")
        }
    }

    /// SIGTERM while a fan-out waits for a slow agent: the relay lets it finish before it exits,
    /// so the agents still hear of the push the relay took.
    @Test func aRelayStoppedDuringAFanOutFinishesItFirst() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 1)
            let slow = try TestHTTPServer(holding: true)
            defer { slow.stop() }
            try write(dir + "/relays", "\(slow.url)\n")
            // The relay waits for the agent's answer, and its shutdown for the fan-out, for as long as the test holds it.
            let relay = try DaemonProcess(["--repo", fleet.origin, "--state-dir", fleet.state(0), "--poll", "3600",
                                           "--self", "--identity-root", fleet.identity(0), "--webhook-relay-file", dir + "/relays",
                                           "--shutdown-grace", "600"],
                                          environment: ["BULWARK_WEBHOOK_SECRET": Self.secret, "BULWARK_FAULT_RELAY_TIMEOUT": "600"],
                                          logPath: dir + "/relay.log")
            #expect(relay.wait(seconds: 60) { (try? relay.get("/readyz").status) == 200 }, "\(relay.log)")
            let work = dir + "/work"
            try git("clone", "-q", fleet.origin, work)
            let path = work + "/desired-state/hosts/sshd.yaml"
            try write(path, try read(path).replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3"))
            try git("commit", "-qam", "MaxAuthTries 3", in: work)
            try git("push", "-q", "origin", "main", in: work)
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let signed = try httpRequest(port: relay.port, "POST", "/hooks/git",
                                         headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: body, secret: Array(Self.secret.utf8))], body: body)
            #expect(signed.status == 202)
            // The agent has the request and holds its answer; the relay is told to stop meanwhile.
            #expect(relay.wait(seconds: 60) { slow.requests.count == 1 }, "\(relay.log)")
            kill(relay.process.processIdentifier, SIGTERM)
            #expect(relay.wait(seconds: 60) { relay.log.contains("shutdown requested") }, "\(relay.log)")
            // Held 5 s more: a relay that did not wait for its fan-out would have exited by then.
            _ = relay.wait(seconds: 5) { !relay.process.isRunning }
            #expect(relay.process.isRunning && !relay.log.contains("webhook relayed"), "the relay waits for the fan-out: \(relay.log)")
            slow.release()
            let exited = relay.wait(seconds: 60) { !relay.process.isRunning }
            #expect(exited, "\(relay.log)")
            if exited { #expect(relay.process.terminationStatus == 0, "\(relay.log)") }
            #expect(relay.log.contains("webhook relayed") && relay.log.contains("delivered=1"), "\(relay.log)")
        }
    }

    @Test func theRelayListIsCheckedAndNeedsTheSecret() async throws {
        try await withTemporaryDirectory { dir in
            try write(dir + "/list", "http://127.0.0.1:9/hooks/git\nnot a url\n")
            #expect(throws: CommandError.self) { try WebhookRelay(file: dir + "/list", secret: Array("s".utf8)) }
            try write(dir + "/list", "# nobody\n")
            #expect(throws: CommandError.self) { try WebhookRelay(file: dir + "/list", secret: Array("s".utf8)) }
            #expect(throws: CommandError.self) { try WebhookRelay(file: dir + "/missing", secret: Array("s".utf8)) }
            try write(dir + "/list", "https://agent-1.example:9420/hooks/git\n  http://10.0.0.2:9420/hooks/git  \n")
            #expect(try WebhookRelay(file: dir + "/list", secret: Array("s".utf8)).agents().urls
                    == ["https://agent-1.example:9420/hooks/git", "http://10.0.0.2:9420/hooks/git"])

            let fleet = try FleetFixture(in: dir + "/fleet", count: 1)
            let refused = try bulwark(["run", "--repo", fleet.origin, "--state-dir", fleet.state(0), "--listen", "127.0.0.1:0",
                                       "--webhook-relay-file", dir + "/list", "--webhook-secret-env", "BULWARK_NO_SUCH_SECRET"])
            #expect(refused.status == 1 && refused.stderr.contains("--webhook-relay-file needs the webhook secret"), "\(refused.stderr)")
        }
    }
}
