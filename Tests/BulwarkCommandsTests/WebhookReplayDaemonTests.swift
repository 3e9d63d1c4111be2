@testable import BulwarkCommands
import BulwarkCore
import BulwarkServer
import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do (without it, a build failed now and then with
// "missing import of defining module 'CDispatch'" as files were added).
internal import CDispatch
import Foundation
import Testing

/// `bulwark run` as a real process on loopback: findings are never signed with the push webhook
/// secret (GitLab sends it in clear), signed webhooks and findings are taken once across a
/// restart, and a delivery replayed again and again is refused each time but logged once.
@Suite(.serialized)
struct WebhookReplayDaemonTests {
    static let secret = "webhook-secret-for-the-replay-tests"
    static let findingsSecret = "findings-secret-for-the-replay-tests"

    func start(_ s: Scenario, findingsSecret: Bool = true, port: Int? = nil, log: String? = nil) throws -> DaemonProcess {
        var environment = ["BULWARK_WEBHOOK_SECRET": Self.secret]
        if findingsSecret { environment["BULWARK_FINDINGS_SECRET"] = Self.findingsSecret }
        let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"], port: port,
                                       environment: environment, logPath: log ?? s.dir + "/daemon-\(UUID().uuidString.prefix(6)).log")
        #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
        return daemon
    }

    /// Bulwark's headers: `X-Bulwark-Signature-256` over `"<timestamp>." + body` with `secret`.
    func signed(_ body: [UInt8], secret: String, at timestamp: Int64 = Int64(Date().timeIntervalSince1970)) -> [String: String] {
        ["X-Bulwark-Timestamp": String(timestamp),
         "X-Bulwark-Signature-256": WebhookVerifier.signature(of: body, timestamp: timestamp, secret: Array(secret.utf8)),
         "Content-Type": "application/json"]
    }

    func refusals(_ daemon: DaemonProcess, _ route: String, _ reason: String) throws -> Double {
        let line = try daemon.get("/metrics").body.split(separator: "\n")
            .first { $0.hasPrefix("bulwark_http_refused_total{route=\"\(route)\",reason=\"\(reason)\"} ") }
        return line.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } } ?? 0
    }

    func count(_ text: String, _ needle: String) -> Int { text.components(separatedBy: needle).count - 1 }

    static let finding = Array("""
        {"Findings": [{"SchemaVersion": "2018-10-08", "Id": "f-replay-1", "GeneratorId": "cis-5.1.x11",
          "Title": "X11 forwarding enabled", "FirstObservedAt": "2026-01-01T00:00:00Z",
          "Resources": [{"Type": "Other", "Id": "arn:aws:ec2:eu-west-1:123456789012:instance/local"}]}]}
        """.utf8)

    // MARK: - L4: findings are not signed with the push webhook secret

    /// Whoever saw one GitLab push delivery holds the webhook secret (its X-Gitlab-Token): a
    /// finding signed with it is refused (401, counted, logged) saying what to configure, and
    /// never reaches the finding rules. The same finding signed with the findings secret goes
    /// through; so does a push webhook with the webhook secret.
    @Test func aFindingSignedWithTheWebhookSecretIsRefusedAndOneSignedWithTheFindingsSecretIsTaken() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try start(s)
            let port = try daemon.port
            let forged = try httpRequest(port: port, "POST", "/api/v1/findings",
                                         headers: signed(Self.finding, secret: Self.secret), body: Self.finding)
            #expect(forged.status == 401, "\(forged)")
            #expect(forged.body.contains("made with the push webhook secret") && forged.body.contains("--findings-secret-file"), "\(forged.body)")
            #expect(!forged.body.contains(Self.secret) && !daemon.log.contains(Self.secret), "the secret is never shown")
            #expect(try refusals(daemon, "/api/v1/findings", "unauthorized") == 1)
            #expect(daemon.wait { daemon.log.contains("findings refused") && daemon.log.contains("made with the push webhook secret") }, "\(daemon.log)")
            #expect(!daemon.log.contains("findings received"), "nothing reached the finding rules: \(daemon.log)")

            let taken = try httpRequest(port: port, "POST", "/api/v1/findings",
                                        headers: signed(Self.finding, secret: Self.findingsSecret), body: Self.finding)
            #expect(taken.status == 202 && taken.body.contains("\"matched\""), "\(taken)")
            #expect(daemon.wait { daemon.log.contains("findings received") }, "\(daemon.log)")
            let push = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let webhook = try httpRequest(port: port, "POST", "/hooks/git", headers: signed(push, secret: Self.secret), body: push)
            #expect(webhook.status == 202, "the webhook secret still signs push webhooks: \(webhook)")
            #expect(daemon.terminate() == 0)
        }
    }

    /// An operator who posts findings signed with the webhook secret and has configured no
    /// findings secret: the daemon says at start that findings answer 401 and why, and each such
    /// finding gets 401 naming the option to set; the bearer token still posts.
    @Test func afterAnUpgradeFindingsSignedWithTheWebhookSecretGetAnErrorNamingWhatToConfigure() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try start(s, findingsSecret: false)
            #expect(daemon.log.contains("POST /api/v1/findings answers 401; the push webhook secret does not sign findings"), "\(daemon.log)")
            let refused = try httpRequest(port: daemon.port, "POST", "/api/v1/findings",
                                          headers: signed(Self.finding, secret: Self.secret), body: Self.finding)
            #expect(refused.status == 401 && refused.body.contains("--findings-secret-file"), "\(refused)")
            #expect(!daemon.log.contains("findings received"))
            #expect(daemon.terminate() == 0)
            // The same daemon with a findings token: the bearer token posts.
            let withToken = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"],
                                              environment: ["BULWARK_WEBHOOK_SECRET": Self.secret, "BULWARK_FINDINGS_TOKEN": "findings-token-for-the-replay-tests"],
                                              logPath: s.dir + "/token.log")
            #expect(withToken.wait(seconds: 60) { (try? withToken.get("/readyz").status) == 200 }, "\(withToken.log)")
            let posted = try httpRequest(port: withToken.port, "POST", "/api/v1/findings",
                                         headers: ["Authorization": "Bearer findings-token-for-the-replay-tests", "Content-Type": "application/json"],
                                         body: Self.finding)
            #expect(posted.status == 202, "\(posted)")
            #expect(withToken.terminate() == 0)
        }
    }

    /// A findings secret that is the webhook secret would reopen the hole: the daemon does not start.
    @Test func aFindingsSecretEqualToTheWebhookSecretIsRefusedAtStart() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"],
                                           environment: ["BULWARK_WEBHOOK_SECRET": Self.secret, "BULWARK_FINDINGS_SECRET": Self.secret],
                                           logPath: s.dir + "/same.log")
            try #require(daemon.wait(seconds: 60) { !daemon.process.isRunning }, "\(daemon.log)")
            #expect(daemon.process.terminationStatus != 0)
            #expect(daemon.log.contains("is the push webhook secret"), "\(daemon.log)")
            #expect(!daemon.log.contains(Self.secret))
        }
    }

    // MARK: - L8: taken once, across a restart

    /// A Bulwark-signed webhook and a signed finding taken before a restart, and a GitHub
    /// delivery, sent again after it: each refused as replayed. A fresh one of each goes through.
    @Test func signedDeliveriesTakenBeforeARestartAreRefusedAfterItAndFreshOnesAreTaken() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let log = s.dir + "/daemon.log"
            let first = try start(s, log: log)
            let port = try first.port
            let push = Array(#"{"ref":"refs/heads/main","after":"1111111111111111111111111111111111111111"}"#.utf8)
            let stamp = Int64(Date().timeIntervalSince1970)
            let relayed = signed(push, secret: Self.secret, at: stamp)
            let finding = signed(Self.finding, secret: Self.findingsSecret, at: stamp)
            let hub = ["X-Hub-Signature-256": WebhookVerifier.signature(of: push, secret: Array(Self.secret.utf8))]
            for (path, headers, body) in [("/hooks/git", relayed, push), ("/api/v1/findings", finding, Self.finding), ("/hooks/git", hub, push)] {
                let answer = try httpRequest(port: port, "POST", path, headers: headers, body: body)
                #expect(answer.status == 202, "\(path): \(answer)")
            }
            let file = s.state + "/webhook-replays"
            var info = stat()
            #expect(lstat(file, &info) == 0 && (info.st_mode & 0o777) == 0o600, "kept in the state directory, 0600")
            let kept = try read(file)
            #expect(!kept.contains(relayed["X-Bulwark-Signature-256"]!.dropFirst(7)) && !kept.contains(hub["X-Hub-Signature-256"]!.dropFirst(7)),
                    "only digests of the signatures are kept")
            #expect(first.terminate() == 0)

            let second = try start(s, port: port, log: log)
            for (path, headers, body) in [("/hooks/git", relayed, push), ("/api/v1/findings", finding, Self.finding), ("/hooks/git", hub, push)] {
                let answer = try httpRequest(port: port, "POST", path, headers: headers, body: body)
                #expect(answer.status == 401 && answer.body.contains("replayed"), "\(path) after the restart: \(answer)")
            }
            #expect(try refusals(second, "/hooks/git", "replayed") == 2)
            #expect(try refusals(second, "/api/v1/findings", "replayed") == 1)
            #expect(!second.log.contains("findings received") && !second.log.contains("push webhook verified"), "\(second.log)")
            // Fresh ones: a later stamp, a new push.
            let later = stamp + 1
            let pushed = Array(#"{"ref":"refs/heads/main","after":"2222222222222222222222222222222222222222"}"#.utf8)
            let fresh: [(String, [String: String], [UInt8])] = [
                ("/hooks/git", signed(push, secret: Self.secret, at: later), push),
                ("/api/v1/findings", signed(Self.finding, secret: Self.findingsSecret, at: later), Self.finding),
                ("/hooks/git", ["X-Hub-Signature-256": WebhookVerifier.signature(of: pushed, secret: Array(Self.secret.utf8))], pushed),
            ]
            for (path, headers, body) in fresh {
                let answer = try httpRequest(port: port, "POST", path, headers: headers, body: body)
                #expect(answer.status == 202, "\(path): \(answer)")
            }
            #expect(second.terminate() == 0)
        }
    }

    /// A replay memory the daemon cannot trust (edited, cut short in its header, a link to another file): the
    /// daemon starts and serves, logs why, and refuses Bulwark-signed requests stamped before
    /// start + 5 minutes (what the file could have held: 503, counted), never crashing; a forge's
    /// new delivery still goes through, and the file a link pointed to is left as it was.
    @Test func anUntrustedReplayMemoryFailsClosedForSignedRequestsAndNeverStopsTheDaemon() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FileManager.default.createDirectory(atPath: s.state, withIntermediateDirectories: true)
            let elsewhere = s.dir + "/elsewhere"
            try write(elsewhere, "not the daemon's\n")
            let contents: [(String, () throws -> Void)] = [
                ("edited", { try write(s.state + "/webhook-replays", "bulwark-webhook-replays 1\ns 1 zz\n") }),
                ("cut short in its header", { try write(s.state + "/webhook-replays", "bulwark-webhook-repl") }),
                ("a link", { try FileManager.default.createSymbolicLink(atPath: s.state + "/webhook-replays", withDestinationPath: elsewhere) }),
            ]
            for (index, (what, make)) in contents.enumerated() {
                try? FileManager.default.removeItem(atPath: s.state + "/webhook-replays")
                try make()
                let daemon = try start(s)
                #expect(daemon.log.contains("webhook replay memory cannot be trusted"), "\(what): \(daemon.log)")
                let push = Array(#"{"ref":"refs/heads/main","n":\#(index)}"#.utf8)
                let signedPush = try httpRequest(port: daemon.port, "POST", "/hooks/git", headers: signed(push, secret: Self.secret), body: push)
                #expect(signedPush.status == 503 && signedPush.body.contains("could not be read at a start"), "\(what): \(signedPush)")
                let signedFinding = try httpRequest(port: daemon.port, "POST", "/api/v1/findings",
                                                    headers: signed(Self.finding, secret: Self.findingsSecret), body: Self.finding)
                #expect(signedFinding.status == 503, "\(what): \(signedFinding)")
                #expect(!daemon.log.contains("findings received"))
                let hub = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                          headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: push, secret: Array(Self.secret.utf8))], body: push)
                #expect(hub.status == 202, "\(what): a new forge delivery is taken: \(hub)")
                #expect(try refusals(daemon, "/hooks/git", "busy") == 1)
                #expect(daemon.terminate() == 0, "\(what)")
            }
            #expect(try read(elsewhere) == "not the daemon's\n", "a link is not followed")
            var info = stat()
            #expect(lstat(s.state + "/webhook-replays", &info) == 0 && (info.st_mode & 0o170000) == 0o100000,
                    "the link was replaced by a rename over it, once a delivery was taken")
        }
    }

    // MARK: - L3: a replay logged once per delivery

    /// A captured delivery sent again and again (GitHub's signs no time, so only memory tells):
    /// every replay refused (401, counted), one line in the log per delivery, however many times
    /// it comes; a new delivery is still taken and logged.
    @Test func aDeliveryReplayedManyTimesIsRefusedEachTimeAndLoggedOnce() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try start(s)
            let port = try daemon.port
            let push = Array(#"{"ref":"refs/heads/main","after":"3333333333333333333333333333333333333333"}"#.utf8)
            let hub = ["X-Hub-Signature-256": WebhookVerifier.signature(of: push, secret: Array(Self.secret.utf8))]
            let gitlab = Array(#"{"object_kind":"push","after":"4444444444444444444444444444444444444444"}"#.utf8)
            let token = ["X-Gitlab-Token": Self.secret]
            let relayed = signed(push, secret: Self.secret)
            let deliveries: [([String: String], [UInt8])] = [(hub, push), (token, gitlab), (relayed, push)]
            for (headers, body) in deliveries {
                #expect(try httpRequest(port: port, "POST", "/hooks/git", headers: headers, body: body).status == 202)
            }
            for _ in 0..<8 {
                for (headers, body) in deliveries {
                    let again = try httpRequest(port: port, "POST", "/hooks/git", headers: headers, body: body)
                    #expect(again.status == 401 && again.body.contains("replayed"), "\(again)")
                }
            }
            #expect(try refusals(daemon, "/hooks/git", "replayed") == 24)
            #expect(daemon.wait { count(daemon.log, "further replays of this delivery are refused without a line") == 3 }, "\(daemon.log)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(count(daemon.log, "webhook refused") == 3, "one line per delivery: \(daemon.log)")
            #expect(count(daemon.log, "push webhook verified") == 3, "only the first of each was taken")
            // A new delivery after them: taken.
            let next = Array(#"{"ref":"refs/heads/main","after":"5555555555555555555555555555555555555555"}"#.utf8)
            let taken = try httpRequest(port: port, "POST", "/hooks/git",
                                        headers: ["X-Hub-Signature-256": WebhookVerifier.signature(of: next, secret: Array(Self.secret.utf8))], body: next)
            #expect(taken.status == 202, "\(taken)")
            #expect(daemon.wait { count(daemon.log, "push webhook verified") == 4 }, "\(daemon.log)")
            #expect(daemon.terminate() == 0)
        }
    }
}
