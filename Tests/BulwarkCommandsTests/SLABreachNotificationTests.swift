import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A finding still open past its priority's SLA is announced to notifiers that ask for
/// `sla-breach`, once per finding, with the scanner's text unable to mention a channel.
@Suite struct SLABreachNotificationTests {
    static func notifier(_ url: String, events: String) -> String {
        """
        apiVersion: bulwark/v1
        kind: Notifier
        metadata: {name: secops-chat}
        spec: {url: "\(url)", format: slack, on: \(events)}

        """
    }

    /// The MaxAuthTries rule, with a one-hour SLA for its (P4) findings.
    static let rule = FindingProposalEndToEndTests.rule.replacingOccurrences(of: "    set: {MaxAuthTries: \"3\"}\n",
                                                                             with: "    set: {MaxAuthTries: \"3\"}\n  sla: {P4: 1h}\n")

    func ingest(_ s: Scenario, _ document: String) throws -> ProcessOutput {
        let path = s.dir + "/finding-\(UUID().uuidString.prefix(6)).json"
        try write(path, document)
        return try s.run("ingest", path, "--output", "json")
    }

    @Test func aFindingOpenPastItsSLAIsAnnouncedOnceAndItsTextCannotMentionAChannel() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try TestHTTPServer()
            defer { server.stop() }
            try s.commitPolicy("controllers/notifiers.yaml", Self.notifier(server.url, events: "[held, sla-breach]"), message: "notifier")
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            // First seen two hours ago: past the rule's one-hour SLA, still open (its proposal awaits review).
            let late = FindingProposalEndToEndTests.finding(id: "late-one", control: "SSH-7408-MaxAuthTries <!channel>",
                                                            firstSeen: Date().addingTimeInterval(-7200))
            let first = try ingest(s, late)
            #expect(first.status == 2, "\(first.stdout)\(first.stderr)")
            #expect(first.stdout.contains("\"outcome\" : \"proposed\""), "\(first.stdout)")
            #expect(server.requests.count == 1)
            let request = try #require(server.requests.first)
            let text = try JSONDecoder().decode([String: String].self, from: request.body)["text"] ?? ""
            #expect(text.hasPrefix("*SLA breach* P4 finding late-one from ocsf: SSH-7408-MaxAuthTries &lt;!channel&gt; on local [medium]"), "\(text)")
            #expect(text.contains("still open (proposed bulwark/proposals/late-one)") && !text.contains("<!channel>"), "\(text)")
            #expect(request.headers["x-bulwark-delivery"]?.hasPrefix("sla-") == true)

            // Reported again, still open: not announced a second time.
            let again = try ingest(s, late)
            #expect(again.stdout.contains("already-proposed"), "\(again.stdout)")
            #expect(server.requests.count == 1)
        }
    }

    @Test func aFindingWithinItsSLAOrANotifierWithoutTheEventAnnouncesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let asking = try TestHTTPServer(), other = try TestHTTPServer()
            defer { asking.stop(); other.stop() }
            try s.commitPolicy("controllers/notifiers.yaml", Self.notifier(asking.url, events: "[sla-breach]") + "---\n"
                               + Self.notifier(other.url, events: "[held, failed, escalated]").replacingOccurrences(of: "secops-chat", with: "ops"),
                               message: "notifiers")
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            // Within the SLA: proposed, not announced.
            let fresh = try ingest(s, FindingProposalEndToEndTests.finding(id: "fresh-one", firstSeen: Date().addingTimeInterval(-600)))
            #expect(fresh.status == 2 && fresh.stdout.contains("\"outcome\" : \"proposed\""), "\(fresh.stdout)\(fresh.stderr)")
            #expect(asking.requests.isEmpty)
            // Past it: announced to the notifier that asks for it only.
            let late = try ingest(s, FindingProposalEndToEndTests.finding(id: "late-two", firstSeen: Date().addingTimeInterval(-7200)))
            #expect(late.status == 2, "\(late.stderr)")
            #expect(asking.requests.count == 1 && other.requests.isEmpty)
            // A resolved finding past its SLA is fixed, not breaching: nothing more.
            _ = try ingest(s, FindingProposalEndToEndTests.finding(id: "late-three", firstSeen: Date().addingTimeInterval(-7200), resolved: true))
            #expect(asking.requests.count == 1)
        }
    }

    @Test func theDaemonAnnouncesABreachPostedToItOnce() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try TestHTTPServer()
            defer { server.stop() }
            try s.commitPolicy("controllers/notifiers.yaml", Self.notifier(server.url, events: "[sla-breach]")
                .replacingOccurrences(of: "format: slack", with: "format: json"), message: "notifier")
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            let token = "findings-token-for-sla"
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"],
                                           environment: ["BULWARK_FINDINGS_TOKEN": token], logPath: dir + "/daemon.log")
            defer { _ = daemon.terminate() }
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let late = FindingProposalEndToEndTests.finding(id: "late-daemon", firstSeen: Date().addingTimeInterval(-7200))
            for _ in 0..<2 {
                let posted = try httpRequest(port: daemon.port, "POST", "/api/v1/findings",
                                             headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"],
                                             body: Array(late.utf8))
                #expect(posted.status == 202, "\(posted.body)")
            }
            #expect(daemon.wait(seconds: 30) { !server.requests.isEmpty }, "\(daemon.log)")
            let first = try #require(server.requests.first)
            let event = try #require(try JSONSerialization.jsonObject(with: first.body) as? [String: Any])
            #expect(event["event"] as? String == "bulwark.sla-breach")
            let finding = try #require(event["finding"] as? [String: Any])
            #expect(finding["id"] as? String == "late-daemon" && finding["priority"] as? String == "P4" && finding["outcome"] as? String == "proposed")
            // Posted twice, announced once: one marker, and nothing left in the outbox once it is delivered.
            #expect(try FileManager.default.contentsOfDirectory(atPath: s.state + "/sla-breaches").count == 1)
            #expect(daemon.wait(seconds: 30) {
                ((try? FileManager.default.contentsOfDirectory(atPath: s.state + "/outbox")) ?? []).allSatisfy { !$0.hasSuffix(".json") }
            })
            #expect(server.requests.count == 1)
        }
    }
}
