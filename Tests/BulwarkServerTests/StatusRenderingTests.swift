import BulwarkCore
import BulwarkServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Prometheus
import Testing

/// The server renders the status value the daemon hands it (`DaemonStatus`): JSON for
/// `/api/v1/status`, the HTML page, the registry it is given as `/metrics`, and a daemon's
/// findings report merged into the answer. Hostile names never reach the page as markup.
@Suite struct StatusRenderingTests {
    static let detected = Timestamp.parse("2026-11-01T10:00:00.250Z") ?? Date(timeIntervalSince1970: 0)

    /// A status after a cycle: one target, one open drift on a resource whose name is markup,
    /// one sensitive value, and one verified fix.
    static func busyStatus() -> DaemonStatus {
        var recent = DecisionJSON(id: "d-1")
        recent.target = "web-1"
        recent.resource = "SSHDConfig/permit-root-login"
        recent.decision = .applied
        recent.result = .verified
        recent.commit = "0123456789abcdef0123456789abcdef01234567"
        recent.detectedAt = detected
        let secret = PropertyDrift(property: "password", desired: "hunter2-new", observed: "hunter2-old", sensitive: true)
        return DaemonStatus(
            schemaVersion: 2, revision: "fedcba9876543210fedcba9876543210fedcba98", busy: true, cycles: 3, ready: true,
            readiness: "ready: revision fedcba9", sourceError: nil, lastCycleAt: detected, lastCycleSeconds: 1.25, lastCycleError: nil,
            targets: [.init(name: "web-1", adapter: "host", resources: 2)],
            openDrift: [.init(target: "web-1", resource: "Sysctl/<script>alert(1)</script>", controller: "host-hardening",
                              severity: .high, risk: 7, decision: .held, reason: "outside the change window",
                              changes: [DecisionJSON.Change(secret)])],
            recent: [recent], mttrLastDay: MTTRSummary([2.5]), mttrLastWeek: MTTRSummary([2.5, 90]))
    }

    func app(_ daemon: RecordingDaemon, metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) -> some ApplicationProtocol {
        let settings = ServerSettings(host: "127.0.0.1", port: 0, repository: "git.example/<policy>", webhook: nil,
                                      findings: FindingsAuthenticator(signer: nil, token: Array(StatusServerTests.token.utf8)))
        return StatusServer.application(control: daemon, settings: settings, metrics: metrics, logger: Logger(label: "test"))
    }

    @Test func theStatusJSONIsTheValueGivenInOneEncoding() async throws {
        let daemon = RecordingDaemon(bindings: [])
        await daemon.setStatus(Self.busyStatus())
        try await app(daemon).test(.router) { client in
            try await client.execute(uri: "/api/v1/status", method: .get) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "application/json")
                let text = String(buffer: response.body)
                // The one JSON encoding (JSONOutput): the same bytes `--output json` prints.
                let expected = try JSONOutput.encoder().encode(Self.busyStatus())
                #expect(text == String(decoding: expected, as: UTF8.self))
                let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
                #expect(object["schemaVersion"] as? Int == 2 && object["cycles"] as? Int == 3 && object["busy"] as? Bool == true)
                #expect(object["lastCycleAt"] as? String == "2026-11-01T10:00:00.250Z")
                let drift = try #require((object["openDrift"] as? [[String: Any]])?.first)
                let change = try #require((drift["changes"] as? [[String: Any]])?.first)
                #expect(change["observed"] as? String == "[redacted]" && change["desired"] as? String == "[redacted]")
                #expect(!text.contains("hunter2"), "a sensitive value never reaches the status")
                let mttr = try #require(object["mttrLastWeek"] as? [String: Any])
                #expect(mttr["fixes"] as? Int == 2 && mttr["maxSeconds"] as? Double == 90)
            }
        }
    }

    @Test func thePageEscapesWhatTheStatusSaysAndShowsTheRepositoryGiven() async throws {
        let daemon = RecordingDaemon(bindings: [])
        await daemon.setStatus(Self.busyStatus())
        try await app(daemon).test(.router) { client in
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "text/html; charset=utf-8")
                let page = String(buffer: response.body)
                #expect(page.contains("Sysctl/&lt;script&gt;alert(1)&lt;/script&gt;"))
                #expect(!page.contains("<script>"))
                #expect(page.contains("git.example/&lt;policy&gt;"))
                #expect(page.contains("<code>fedcba987654</code>"), "the revision, shortened")
                #expect(page.contains("<code>0123456789ab</code>"), "the audit commit of the recent fix")
                #expect(page.contains("1 fixes · p50 2.5 s") && page.contains("2 fixes · p50 2.5 s · p90 1.5 min"))
                #expect(!page.contains("hunter2"))
            }
        }
        // Before the first cycle: nothing to list, and it says so.
        await daemon.setStatus(StatusServerTests.status)
        try await app(daemon).test(.router) { client in
            try await client.execute(uri: "/", method: .get) { response in
                let page = String(buffer: response.body)
                #expect(page.contains("revision <code>none</code>") && page.contains("source not synced yet"))
                #expect(page.contains("no verified fixes") && page.contains("Open drift (0)"))
            }
        }
    }

    /// A target's value or a resource's name may hold bidirectional controls (which reorder
    /// what follows them on the page, so a row could read as another) and control characters:
    /// shown as escapes, as the terminal shows them; text of any language and markup characters
    /// are shown as they are.
    @Test func thePageShowsBidiAndControlScalarsFromOutsideAsEscapes() async throws {
        var status = Self.busyStatus()
        status.targets = [.init(name: "web-1\u{2066}", adapter: "host", resources: 1)]
        status.openDrift[0].resource = "Sysctl/net.ipv4\u{202E}gnp"
        status.openDrift[0].changes = [DecisionJSON.Change(property: "Banner", observed: "Überprüfung & 日本語 \u{1B}[2J", desired: "none")]
        let daemon = RecordingDaemon(bindings: [])
        await daemon.setStatus(status)
        try await app(daemon).test(.router) { client in
            try await client.execute(uri: "/", method: .get) { response in
                let page = String(buffer: response.body)
                #expect(!page.unicodeScalars.contains { TerminalText.isUnsafe($0) && $0 != "\n" }, "\(page.debugDescription)")
                #expect(page.contains("Sysctl/net.ipv4\\u202Egnp") && page.contains("web-1\\u2066"))
                #expect(page.contains("Banner: Überprüfung &amp; 日本語 \\u001B[2J -&gt; none"))
            }
        }
    }

    @Test func metricsAreTheRegistryGiven() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "bulwark", subsystem: "test", metricName: "cycles", unitName: "total", helpText: ""), labels: [("controller", "host-hardening")]).increment(by: Int64(3))
        try await app(RecordingDaemon(bindings: []), metrics: registry).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                #expect(String(buffer: response.body).contains(#"bulwark_test_cycles_total{controller="host-hardening"} 3"#))
            }
        }
        // A registry the daemon put nothing in holds only the server's own families, at 0 (the
        // refusals by route and reason), not an error.
        try await app(RecordingDaemon(bindings: [])).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(response.status == .ok)
                let samples = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
                #expect(!samples.isEmpty && samples.allSatisfy { $0.hasPrefix("bulwark_http_refused_total{") && $0.hasSuffix(" 0") }, "\(text)")
            }
        }
    }

    @Test func aDaemonsFindingsReportIsMergedIntoTheAnswer() async throws {
        let daemon = RecordingDaemon(bindings: [StatusServerTests.sshd])
        await daemon.setReport(.init(proposals: ["bulwark/proposals/p-1"]))
        let finding = #"{"resource": "SSHDConfig/permit-root-login", "control": "cis-5.1.20"}"#
        let headers: HTTPFields = [.authorization: "Bearer \(StatusServerTests.token)", .contentType: "application/json"]
        try await app(daemon).test(.router) { client in
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: headers, body: ByteBuffer(string: finding)) { response in
                #expect(response.status == .accepted)
                let answer = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any])
                #expect(answer["proposals"] as? [String] == ["bulwark/proposals/p-1"])
                // The server's own fields win over a report's.
                #expect(answer["findings"] as? Int == 1 && answer["matched"] as? Int == 1 && answer["format"] as? String == "generic")
            }
        }
    }
}
