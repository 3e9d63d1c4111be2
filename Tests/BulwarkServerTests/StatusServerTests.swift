import BulwarkCore
@testable import BulwarkServer
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Prometheus
import Synchronization
import Testing

/// The daemon at the HTTP server's seam: what the routes hand it, and what they answer.
actor RecordingDaemon: DaemonControl {
    var ready: (ready: Bool, reason: String) = (true, "ready: revision abc")
    private(set) var received: [[Binding: Date]] = []
    private(set) var pushes = 0
    var current = StatusServerTests.status
    /// What the daemon decides per finding (a rule's report), when it does.
    var report: StatusServerTests.FindingsReport?
    let index: FindingIndex

    init(bindings: [Binding]) { index = FindingIndex(bindings: bindings) }

    func setReady(_ value: (ready: Bool, reason: String)) { ready = value }
    func readiness() -> (ready: Bool, reason: String) { ready }
    func status() -> DaemonStatus { current }
    func setStatus(_ value: DaemonStatus) { current = value }
    func setReport(_ value: StatusServerTests.FindingsReport?) { report = value }
    func findingsArrived(_ findings: [Finding], format: FindingFormat) async -> (matched: Int, report: (any Encodable & Sendable)?) {
        let matched = index.match(findings)
        received(matched)
        return (matched.count, report)
    }
    func sourcePushed() { pushes += 1 }
    func findingIndex() -> FindingIndex { index }
    func received(_ matched: [Binding: Date]) { received.append(matched) }
}

@Suite struct StatusServerTests {
    static let secret = Array("webhook-secret-for-tests".utf8)
    static let token = "findings-token-for-tests"
    /// The findings secret: findings are never signed with the push webhook secret.
    static let findingsSecret = Array("findings-secret-for-tests".utf8)
    static let sshd = Binding(controller: "host-hardening", target: "web-1",
                              resource: ResourceID(kind: "SSHDConfig", name: "permit-root-login"))
    static let sysctl = Binding(controller: "host-hardening", target: "web-2",
                                resource: ResourceID(kind: "Sysctl", name: "ip-forward"))
    /// A daemon's status before its first cycle.
    static let status = DaemonStatus(
        schemaVersion: 2, revision: nil, busy: false, cycles: 0, ready: false, readiness: "source not synced yet", sourceError: nil,
        lastCycleAt: nil, lastCycleSeconds: nil, lastCycleError: nil, targets: [], openDrift: [], recent: [],
        mttrLastDay: MTTRSummary([]), mttrLastWeek: MTTRSummary([]))

    struct FindingsReport: Encodable, Sendable {
        var proposals: [String]
    }

    /// A fixed wall clock for webhook timestamps: no test depends on how long a loaded machine takes.
    static let clockNow = Date(timeIntervalSince1970: 1_800_000_000)

    func app(_ daemon: RecordingDaemon, webhook: Bool = true, secret: [UInt8] = StatusServerTests.secret,
             token: String? = StatusServerTests.token,
             unverifiedBodies: Int = 16, perAddress: Int = 4, deadline: Duration = .seconds(10),
             idleTimeout: Duration = .seconds(15), refusalBurst: Int = 10, refusalsPerSecond: Double = 1,
             refusalClock: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
             trustedProxies: TrustedProxies = .none,
             metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) -> some ApplicationProtocol {
        let verifier = webhook ? WebhookVerifier(secret: secret, clock: { StatusServerTests.clockNow }) : nil
        let signer = webhook ? WebhookVerifier(secret: Self.findingsSecret, clock: { StatusServerTests.clockNow }) : nil
        let settings = ServerSettings(host: "127.0.0.1", port: 0, webhook: verifier,
                                      findings: FindingsAuthenticator(signer: signer, token: token.map { Array($0.utf8) },
                                                                      webhookSecret: webhook ? secret : nil),
                                      idleTimeout: idleTimeout,
                                      unverifiedBodies: unverifiedBodies, unverifiedBodiesPerAddress: perAddress,
                                      unverifiedBodyDeadline: deadline, refusalBurst: refusalBurst,
                                      refusalsPerSecond: refusalsPerSecond, refusalClock: refusalClock,
                                      trustedProxies: trustedProxies)
        return StatusServer.application(control: daemon, settings: settings, metrics: metrics,
                                        logger: Logger(label: "test"))
    }

    func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any])
    }

    func bearer(_ token: String = StatusServerTests.token) -> HTTPFields { [.authorization: "Bearer \(token)", .contentType: "application/json"] }

    let finding = #"{"resource": "SSHDConfig/permit-root-login", "control": "cis-5.1.20", "firstObservedAt": "2026-11-01T10:00:00Z"}"#

    // MARK: - Authentication

    @Test func findingsWithoutCredentialsOrWithWrongOnesAreRefusedAndNothingReachesTheDaemon() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        try await app(daemon).test(.router) { client in
            let attempts: [HTTPFields] = [
                [:],
                bearer("not-the-token"),
                [.authorization: "Basic \(Data("a:b".utf8).base64EncodedString())"],
                [HTTPField.Name("X-Bulwark-Signature-256")!: "sha256=" + String(repeating: "0", count: 64)],
                [HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: Array("{}".utf8), secret: Self.secret)],
            ]
            for headers in attempts {
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: headers, body: ByteBuffer(string: finding)) { response in
                    #expect(response.status == .unauthorized, "\(headers)")
                    #expect(response.headers[.contentType] == "application/json")
                    let error = try json(response)["error"] as? String
                    #expect(error?.isEmpty == false)
                    #expect(error?.contains("not-the-token") == false, "what was sent is not echoed")
                }
            }
            // Signed with the push webhook secret (GitLab sends it in clear with every push): refused, saying what to configure.
            var withWebhookSecret = bulwarkSigned(Array(finding.utf8), at: Int64(Self.clockNow.timeIntervalSince1970))
            withWebhookSecret[.contentType] = "application/json"
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: withWebhookSecret, body: ByteBuffer(string: finding)) { response in
                #expect(response.status == .unauthorized)
                let error = try json(response)["error"] as? String
                #expect(error?.contains("made with the push webhook secret") == true && error?.contains("--findings-secret-file") == true, "\(error ?? "-")")
            }
        }
        #expect(await daemon.received.isEmpty)
    }

    @Test func findingsWithTheBearerTokenOrTheFindingsSecretsSignatureAreAccepted() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd, Self.sysctl])
        try await app(daemon).test(.router) { client in
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer(), body: ByteBuffer(string: finding)) { response in
                #expect(response.status == .accepted)
                let answer = try json(response)
                #expect(answer["findings"] as? Int == 1 && answer["matched"] as? Int == 1)
            }
            let body = #"{"resource": "arn:aws:ec2:eu-west-1:123456789012:instance/web-2", "control": "c"}"#
            let timestamp = Int64(Self.clockNow.timeIntervalSince1970)
            let signature = WebhookVerifier.signature(of: Array(body.utf8), timestamp: timestamp, secret: Self.findingsSecret)
            try await client.execute(uri: "/api/v1/findings", method: .post,
                                     headers: [HTTPField.Name("X-Bulwark-Signature-256")!: signature,
                                               HTTPField.Name(WebhookVerifier.timestampHeader)!: String(timestamp)],
                                     body: ByteBuffer(string: body)) { response in
                #expect(response.status == .accepted)
            }
        }
        let received = await daemon.received
        #expect(received.count == 2)
        #expect(received.first?[Self.sshd] == Timestamp.parse("2026-11-01T10:00:00Z"))
        #expect(received.last.map { Set($0.keys) } == [Self.sysctl], "an ARN ending in the target's name")
    }

    @Test func findingsAreRefusedWhenNoCredentialIsConfigured() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        try await app(daemon, webhook: false, token: nil).test(.router) { client in
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer(), body: ByteBuffer(string: finding)) { response in
                #expect(response.status == .unauthorized)
                let message = try json(response)["error"] as? String
                #expect(message?.contains("no findings token") == true)
            }
        }
        #expect(await daemon.received.isEmpty)
    }

    // MARK: - Limits

    /// A request without credentials is refused on its headers, before any of its body is read
    /// (an oversized body is 401, never 413), and bodies read before their signature is checked
    /// share a budget: past it 503 with Retry-After, so connections trickling unauthenticated
    /// megabytes cannot take the daemon's memory. Requests their headers authenticate (bearer,
    /// GitLab token) never wait on it.
    @Test func requestsWithoutCredentialsAreRefusedBeforeTheirBodyAndSignedBodiesShareABudget() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        let huge = ByteBuffer(string: String(repeating: "a", count: FindingParser.maxSize + 1))
        try await app(daemon).test(.router) { client in
            for uri in ["/hooks/git", "/api/v1/findings"] {
                try await client.execute(uri: uri, method: .post, headers: [.contentType: "application/json"], body: huge) { response in
                    #expect(response.status == .unauthorized, "\(uri)")
                    let error = try json(response)["error"] as? String
                    #expect(error?.contains("send") == true, "\(error ?? "")")
                }
            }
        }
        let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
        let signed: HTTPFields = [HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: body, secret: Self.secret)]
        let stamp = Int64(Self.clockNow.timeIntervalSince1970)
        var stampedFinding = bulwarkSigned(Array(finding.utf8), at: stamp, secret: Self.findingsSecret)
        stampedFinding[.contentType] = "application/json"
        let signedFinding = stampedFinding
        try await app(daemon, unverifiedBodies: 0).test(.router) { client in
            for (uri, headers, bytes) in [("/hooks/git", signed, body), ("/api/v1/findings", signedFinding, Array(finding.utf8))] {
                try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(bytes: bytes)) { response in
                    #expect(response.status == .serviceUnavailable && response.headers[.retryAfter] == "5", "\(uri)")
                }
            }
            // Authenticated by their headers: through at once.
            try await client.execute(uri: "/hooks/git", method: .post, headers: [HTTPField.Name("X-Gitlab-Token")!: String(decoding: Self.secret, as: UTF8.self)],
                                     body: ByteBuffer(bytes: body)) { response in
                #expect(response.status == .accepted)
            }
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer(), body: ByteBuffer(string: finding)) { response in
                #expect(response.status == .accepted)
            }
        }
        // With room in the budget, the signed ones go through.
        try await app(daemon).test(.router) { client in
            try await client.execute(uri: "/hooks/git", method: .post, headers: signed, body: ByteBuffer(bytes: body)) { response in
                #expect(response.status == .accepted)
            }
            var fresh = bulwarkSigned(Array(finding.utf8), at: stamp - 1, secret: Self.findingsSecret)
            fresh[.contentType] = "application/json"
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: fresh, body: ByteBuffer(string: finding)) { response in
                #expect(response.status == .accepted)
            }
        }
        #expect(await daemon.pushes == 2)
        #expect(await daemon.received.count == 2)
    }

    /// A client that opens signed requests and then sends their bodies a byte at a time: it
    /// holds at most `perAddress` places, each only until the deadline, and clients at other
    /// addresses go through meanwhile.
    @Test func aClientTricklingSignedBodiesHoldsFewPlacesAndOnlyUntilTheDeadline() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        let body = #"{"ref":"refs/heads/main"}"#
        let signature = WebhookVerifier.signature(of: Array(body.utf8), secret: Self.secret)
        // Each delivery taken is another push: the same one again would be a replay.
        let nextBody = #"{"ref":"refs/heads/main","after":"1"}"#
        let nextSignature = WebhookVerifier.signature(of: Array(nextBody.utf8), secret: Self.secret)
        @Sendable func head(_ length: Int, _ signature: String = signature) -> String {
            "POST /hooks/git HTTP/1.1\r\nHost: bulwark\r\nContent-Type: application/json\r\n"
                + "X-Hub-Signature-256: \(signature)\r\nContent-Length: \(length)\r\n\r\n"
        }
        // The idle timeout is longer than the deadline: the connection must be answered by the
        // deadline, not closed for sending nothing.
        try await app(daemon, perAddress: 2, deadline: .seconds(4), idleTimeout: .seconds(120)).test(.live) { client in
            let port = try #require(client.port)
            // Three requests from 127.0.0.1 whose bodies stop after one byte: two are read, and
            // whichever comes third is turned away at once.
            let stalled = try (0..<3).map { _ in try RawHTTPClient(from: "127.0.0.1", to: port) }
            for connection in stalled { try connection.send(head(body.utf8.count) + "{") }
            let refused = try #require(try await offThePool { RawHTTPClient.firstReadable(stalled) }, "no answer within 120 s")
            let third = try await offThePool { try stalled[refused].receive() }
            #expect(third.hasPrefix("HTTP/1.1 503") && third.contains("from this address"), "\(third)")
            // Another address goes through while the two are held.
            let other = try await offThePool { try RawHTTPClient(from: "127.0.0.2", to: port).exchange(head(body.utf8.count) + body) }
            #expect(other.hasPrefix("HTTP/1.1 202"), "\(other)")
            // The two held are answered 408 at the deadline, and their places are free again.
            for (index, connection) in stalled.enumerated() where index != refused {
                let answer = try await offThePool { try connection.receive() }
                #expect(answer.hasPrefix("HTTP/1.1 408") && answer.contains("did not arrive within"), "\(answer)")
            }
            let again = try await offThePool {
                try RawHTTPClient(from: "127.0.0.1", to: port).exchange(head(nextBody.utf8.count, nextSignature) + nextBody)
            }
            #expect(again.hasPrefix("HTTP/1.1 202"), "\(again)")
        }
        #expect(await daemon.pushes >= 2)
    }

    /// Loopback is told by the address bytes: `0:0:0:0:0:0:0:1` and `::ffff:127.0.0.1` are
    /// loopback (the Host check and the warning of `run` hold there), `0.0.0.0` is not.
    @Test func loopbackIsToldByTheAddress() {
        for (address, loopback) in [("127.0.0.1", true), ("0:0:0:0:0:0:0:1", true), ("::ffff:127.0.0.1", true), ("[::1]", true),
                                    ("localhost", true), ("10.0.0.1", false), ("::ffff:10.0.0.1", false), ("0.0.0.0", false)] {
            #expect(ServerSettings.isLoopback(address) == loopback, "\(address)")
        }
    }

    /// DNS rebinding: on loopback, a GET whose Host is a name other than localhost or the
    /// listen host gets 421; an IP address, localhost and the listen host are served, and so is
    /// a POST (authenticated on its own). Listening elsewhere, every Host is taken.
    @Test func aForeignHostIsRefusedOnLoopbackOnly() async throws {
        let daemon = RecordingDaemon(bindings: [])
        @Sendable func get(_ path: String, host: String) -> String { "GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\r\n" }
        try await app(daemon).test(.live) { client in
            let port = try #require(client.port)
            for path in ["/api/v1/status", "/metrics", "/", "/readyz"] {
                for host in ["rebound.example", "rebound.example:\(port)", "127.0.0.1.nip.io:\(port)"] {
                    let answer = try await offThePool { try RawHTTPClient(from: "127.0.0.1", to: port).exchange(get(path, host: host)) }
                    #expect(answer.hasPrefix("HTTP/1.1 421") && answer.contains("Host"), "\(path) \(host): \(answer)")
                    #expect(!answer.contains("openDrift"))
                }
                for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST", "[::1]:\(port)", "10.0.0.5"] {
                    let answer = try await offThePool { try RawHTTPClient(from: "127.0.0.1", to: port).exchange(get(path, host: host)) }
                    #expect(answer.hasPrefix("HTTP/1.1 200"), "\(path) \(host): \(answer)")
                }
            }
            let head = "HEAD /api/v1/status HTTP/1.1\r\nHost: rebound.example\r\nConnection: close\r\n\r\n"
            let refusedHead = try await offThePool { try RawHTTPClient(from: "127.0.0.1", to: port).exchange(head) }
            #expect(refusedHead.hasPrefix("HTTP/1.1 421"), "\(refusedHead)")
            let post = "POST /hooks/git HTTP/1.1\r\nHost: rebound.example\r\nContent-Length: 2\r\n\r\n{}"
            let posted = try await offThePool { try RawHTTPClient(from: "127.0.0.1", to: port).exchange(post) }
            #expect(posted.hasPrefix("HTTP/1.1 401"), "\(posted)")
        }
        #expect(!HostCheck<BasicRequestContext>(listenHost: "127.0.0.1").allows("rebound.example"))
        #expect(HostCheck<BasicRequestContext>(listenHost: "bulwark.internal").allows("bulwark.internal:9420") == true)
        #expect(!HostCheck<BasicRequestContext>(listenHost: "::1").allows("rebound.example"))
        #expect(HostCheck<BasicRequestContext>(listenHost: "[::1]").allows("[::1]:9420"))
        for open in ["0.0.0.0", "::", "192.0.2.7"] {
            #expect(HostCheck<BasicRequestContext>(listenHost: open).allows("rebound.example"), "\(open)")
        }
    }

    /// The budget counts an IPv6 client by its /64 (a host is given a whole one, so addresses of
    /// one /64 are one client), an IPv4-mapped one as its IPv4 address.
    @Test func theBudgetCountsAnIPv6ClientByItsSlash64() {
        #expect(ServerContext.budgetKey("2001:db8:1::1") == ServerContext.budgetKey("2001:db8:1:0:ffff::10"))
        #expect(ServerContext.budgetKey("2001:db8:1::1") == "2001:0db8:0001:0000::/64")
        #expect(ServerContext.budgetKey("2001:db8:1::1") != ServerContext.budgetKey("2001:db8:2::1"))
        #expect(ServerContext.budgetKey("::ffff:192.0.2.7") == "192.0.2.7")
        #expect(ServerContext.budgetKey("192.0.2.7") == "192.0.2.7")
        #expect(ServerContext.budgetKey("192.0.2.7") != ServerContext.budgetKey("192.0.2.8"))
    }

    @Test func oversizedFindingsAreRefusedNamingTheLimit() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        let many = "[" + Array(repeating: #"{"resource": "x", "control": "c"}"#, count: FindingParser.maxFindings + 1).joined(separator: ",") + "]"
        let resources = (0...FindingParser.maxResourcesPerFinding).map { #"{"Type": "Other", "Id": "arn:aws:ec2:r:1:instance/i-\#($0)"}"# }
        let wide = #"{"Findings": [{"SchemaVersion": "2018-10-08", "GeneratorId": "g", "Resources": [\#(resources.joined(separator: ","))]}]}"#
        let huge = #"{"resource": "x", "control": "c", "title": ""# + String(repeating: "a", count: FindingParser.maxSize) + #""}"#
        try await app(daemon).test(.router) { client in
            for (body, limit) in [(many, "at most 1000 findings"), (wide, "at most 100 a finding"), (huge, "larger than 1048576 bytes")] {
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer(), body: ByteBuffer(string: body)) { response in
                    #expect(response.status == .contentTooLarge)
                    let error = try json(response)["error"] as? String
                    #expect(error?.contains(limit) == true, "\(error ?? "")")
                }
            }
            // At the limits, the documents go through.
            let most = "[" + Array(repeating: #"{"resource": "SSHDConfig/permit-root-login", "control": "c"}"#, count: FindingParser.maxFindings)
                .joined(separator: ",") + "]"
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer(), body: ByteBuffer(string: most)) { response in
                #expect(response.status == .accepted)
                let matched = try json(response)["matched"] as? Int
                #expect(matched == 1)
            }
        }
        #expect(await daemon.received.count == 1)
    }

    @Test func malformedFindingsAreABadRequestInJSON() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        try await app(daemon).test(.router) { client in
            for bad in ["not json", #"{"resource": "x"}"#, #"{"resource": "x", "control": "c", "firstObservedAt": "yesterday"}"#] {
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer(), body: ByteBuffer(string: bad)) { response in
                    #expect(response.status == .badRequest, "\(bad)")
                    let message = try json(response)["error"] as? String
                    #expect(message?.isEmpty == false)
                }
            }
        }
        #expect(await daemon.received.isEmpty)
    }

    // MARK: - Errors, methods, readiness

    @Test func wrongMethodsAre405WithAllowAndUnknownPaths404InJSON() async throws {
        let daemon = RecordingDaemon(bindings: [])
        try await app(daemon).test(.router) { client in
            // GET routes answer HEAD too (RFC 9110), and say so in Allow.
            for (path, method, allow) in [("/api/v1/findings", HTTPRequest.Method.get, "POST"), ("/healthz", .post, "GET, HEAD"),
                                          ("/hooks/git", .put, "POST"), ("/metrics", .delete, "GET, HEAD")] {
                try await client.execute(uri: path, method: method) { response in
                    #expect(response.status == .methodNotAllowed, "\(method) \(path)")
                    #expect(response.headers[.allow] == allow)
                    let message = try json(response)["error"] as? String
                    #expect(message?.contains("not allowed") == true)
                }
            }
            try await client.execute(uri: "/nope", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/json")
            }
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func headOnEveryGetRouteIsItsStatusAndHeadersWithoutABody() async throws {
        let daemon = RecordingDaemon(bindings: [])
        await daemon.setReady((false, "not yet"))
        try await app(daemon).test(.router) { client in
            for (path, status) in [("/healthz", HTTPResponse.Status.ok), ("/readyz", .serviceUnavailable), ("/metrics", .ok),
                                   ("/api/v1/status", .ok), ("/", .ok)] {
                try await client.execute(uri: path, method: .head) { response in
                    #expect(response.status == status, "HEAD \(path)")
                    #expect(response.body.readableBytes == 0, "HEAD \(path)")
                    #expect(response.headers[.contentType] != nil, "HEAD \(path)")
                }
            }
        }
    }

    /// Failed authentications from one address: a burst, then 429 with Retry-After before the
    /// request is read or checked (nothing reaches the daemon), each counted by route and
    /// reason; a signed webhook before the burst and after the bucket refilled is taken.
    @Test func refusedRequestsFromOneAddressAreLimitedAndCounted() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        let metrics = PrometheusCollectorRegistry()
        let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
        let signed: HTTPFields = [HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: body, secret: Self.secret)]
        // The buckets' clock moves only when the test says: a loaded machine changes nothing.
        let base = ContinuousClock.now
        let elapsed = Mutex(Duration.zero)
        try await app(daemon, refusalBurst: 3, refusalsPerSecond: 1, refusalClock: { base + elapsed.withLock { $0 } },
                      metrics: metrics).test(.router) { client in
            try await client.execute(uri: "/hooks/git", method: .post, headers: signed, body: ByteBuffer(bytes: body)) { response in
                #expect(response.status == .accepted)
            }
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<6 {
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer("wrong"),
                                         body: ByteBuffer(string: finding)) { response in
                    statuses.append(response.status)
                    if response.status == .tooManyRequests { #expect(response.headers[.retryAfter] != nil) }
                }
            }
            #expect(statuses == [.unauthorized, .unauthorized, .unauthorized, .tooManyRequests, .tooManyRequests, .tooManyRequests])
            elapsed.withLock { $0 += .seconds(1) }
            // A new delivery (the same one again would be a replay).
            let next = Array(#"{"ref":"refs/heads/main","after":"1"}"#.utf8)
            try await client.execute(uri: "/hooks/git", method: .post,
                                     headers: [HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: next, secret: Self.secret)],
                                     body: ByteBuffer(bytes: next)) { response in
                #expect(response.status == .accepted)
            }
            // GET routes are never limited.
            try await client.execute(uri: "/healthz", method: .get) { response in #expect(response.status == .ok) }
        }
        #expect(await daemon.received.isEmpty, "nothing refused reached the daemon")
        #expect(await daemon.pushes == 2)
        var buffer: [UInt8] = []
        metrics.emit(into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        #expect(text.contains(#"bulwark_http_refused_total{route="/api/v1/findings",reason="unauthorized"} 3"#), "\(text)")
        #expect(text.contains(#"bulwark_http_refused_total{route="/api/v1/findings",reason="rate_limited"} 3"#), "\(text)")
        #expect(text.contains(#"bulwark_http_refused_total{route="/hooks/git",reason="unauthorized"} 0"#), "\(text)")
    }

    /// While an address is limited, a sender there whose credential is too long to guess (the
    /// forge behind the same proxy or NAT as someone guessing) is still checked and served, and a
    /// wrong guess is still 429; with a short secret or token (which guessing could find) every
    /// request from the address waits, the right one too.
    @Test func aLimitedAddressStillServesAnUnguessableCredentialButNotAShortOne() async throws {
        let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
        let base = ContinuousClock.now
        for short in [false, true] {
            let daemon = RecordingDaemon(bindings: [Self.sshd])
            let secret = short ? Array("hunter2".utf8) : Self.secret
            let token = short ? "letmein" : Self.token
            let signed: HTTPFields = [HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: body, secret: secret)]
            let forged: HTTPFields = [HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: body, secret: Array("guess".utf8))]
            try await app(daemon, secret: secret, token: token, refusalBurst: 2, refusalClock: { base }).test(.router) { client in
                for _ in 0..<2 {
                    try await client.execute(uri: "/hooks/git", method: .post, headers: forged, body: ByteBuffer(bytes: body)) { response in
                        #expect(response.status == .unauthorized)
                    }
                }
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer("wrong"), body: ByteBuffer(string: finding)) { response in
                    #expect(response.status == .tooManyRequests, "a wrong guess waits (short: \(short))")
                }
                try await client.execute(uri: "/hooks/git", method: .post, headers: forged, body: ByteBuffer(bytes: body)) { response in
                    #expect(response.status == (short ? .tooManyRequests : .unauthorized), "short: \(short)")
                }
                try await client.execute(uri: "/hooks/git", method: .post, headers: signed, body: ByteBuffer(bytes: body)) { response in
                    #expect(response.status == (short ? .tooManyRequests : .accepted), "short: \(short)")
                }
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer(token), body: ByteBuffer(string: finding)) { response in
                    #expect(response.status == (short ? .tooManyRequests : .accepted), "short: \(short)")
                }
            }
            #expect(await daemon.pushes == (short ? 0 : 1))
            #expect(await daemon.received.count == (short ? 0 : 1))
        }
    }

    /// Behind a trusted proxy each client counts as the address the proxy appended to
    /// X-Forwarded-For: one client's failed authentications do not make another wait, and what
    /// a client writes into the header itself (or any untrusted peer sends) names nobody.
    @Test func behindATrustedProxyEachClientIsLimitedByItsOwnAddress() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        // A short secret: the limit holds every request from a limited address.
        let secret = Array("hunter2".utf8)
        let body = #"{"ref":"refs/heads/main"}"#
        let good = WebhookVerifier.signature(of: Array(body.utf8), secret: secret)
        let bad = WebhookVerifier.signature(of: Array(body.utf8), secret: Array("guess".utf8))
        // Each taken delivery is another push: the same one again would be a replay.
        let nextBody = #"{"ref":"refs/heads/main","after":"1"}"#
        let nextGood = WebhookVerifier.signature(of: Array(nextBody.utf8), secret: secret)
        @Sendable func request(_ signature: String, forwardedFor: String?) -> String {
            let body = signature == nextGood ? nextBody : body
            return "POST /hooks/git HTTP/1.1\r\nHost: bulwark\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + (forwardedFor.map { "X-Forwarded-For: \($0)\r\n" } ?? "")
                + "X-Hub-Signature-256: \(signature)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        }
        let base = ContinuousClock.now
        let proxies = try TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
        try await app(daemon, secret: secret, refusalBurst: 2, refusalClock: { base }, trustedProxies: proxies).test(.live) { client in
            let port = try #require(client.port)
            func send(from source: String, _ signature: String, forwardedFor: String?) async throws -> String {
                let text = request(signature, forwardedFor: forwardedFor)
                return try await offThePool { try RawHTTPClient(from: source, to: port).exchange(text) }
            }
            // The guesser, through the proxy (which appends its address), claiming the forge's.
            for _ in 0..<3 {
                _ = try await send(from: "127.0.0.1", bad, forwardedFor: "203.0.113.5, 198.51.100.7, 10.1.2.3")
            }
            let limited = try await send(from: "127.0.0.1", good, forwardedFor: "198.51.100.7")
            #expect(limited.hasPrefix("HTTP/1.1 429"), "\(limited)")
            // The forge, through the same proxy.
            let forge = try await send(from: "127.0.0.1", good, forwardedFor: "203.0.113.5")
            #expect(forge.hasPrefix("HTTP/1.1 202"), "\(forge)")
            // A peer that is no proxy: its header names nobody; it is limited as itself.
            for _ in 0..<3 {
                _ = try await send(from: "127.0.0.2", bad, forwardedFor: "203.0.113.9")
            }
            let direct = try await send(from: "127.0.0.2", good, forwardedFor: "203.0.113.9")
            #expect(direct.hasPrefix("HTTP/1.1 429"), "\(direct)")
            let named = try await send(from: "127.0.0.1", nextGood, forwardedFor: "203.0.113.9")
            #expect(named.hasPrefix("HTTP/1.1 202"), "\(named)")
        }
        #expect(await daemon.pushes == 2)
    }

    /// A token bound to one source posts that source's findings (`sarif:*`: every SARIF tool's)
    /// and is refused (403, nothing reaches the daemon) a finding of another source, which could
    /// trigger that source's finding rules; the token of every source still posts any.
    @Test func aSourceBoundTokenPostsOnlyItsSourcesFindings() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        let verifier = WebhookVerifier(secret: Self.secret, clock: { StatusServerTests.clockNow })
        let settings = ServerSettings(host: "127.0.0.1", port: 0, webhook: verifier,
                                      findings: FindingsAuthenticator(signer: nil, token: Array(Self.token.utf8), sourceTokens: [
                                          .init(source: "garak", token: Array("garak-token-for-the-tests".utf8)),
                                          .init(source: "sarif:*", token: Array("sarif-token-for-the-tests".utf8)),
                                      ]))
        @Sendable func finding(_ source: String) -> String {
            #"{"resource": "SSHDConfig/permit-root-login", "control": "c", "source": "\#(source)", "firstObservedAt": "2026-11-01T10:00:00Z"}"#
        }
        try await StatusServer.application(control: daemon, settings: settings, metrics: PrometheusCollectorRegistry(),
                                           logger: Logger(label: "test")).test(.router) { client in
            let cases: [(token: String, source: String, status: HTTPResponse.Status)] = [
                ("garak-token-for-the-tests", "garak", .accepted),
                ("garak-token-for-the-tests", "prowler", .forbidden),
                ("sarif-token-for-the-tests", "sarif:semgrep", .accepted),
                ("sarif-token-for-the-tests", "garak", .forbidden),
                (Self.token, "prowler", .accepted),
                ("no-such-token-for-the-tests", "garak", .unauthorized),
            ]
            for item in cases {
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: bearer(item.token),
                                         body: ByteBuffer(string: finding(item.source))) { response in
                    #expect(response.status == item.status, "\(item.token) \(item.source): \(String(buffer: response.body))")
                    if item.status == .forbidden {
                        #expect(String(buffer: response.body).contains("posts findings of source"), "\(String(buffer: response.body))")
                        #expect(!String(buffer: response.body).contains("token-for-the-tests"), "the token is not echoed")
                    }
                }
            }
        }
        #expect(await daemon.received.count == 3, "only the three allowed reached the daemon")
    }

    /// `--trusted-proxy` values, and the client a header names: the last entry that is not a
    /// trusted proxy; a malformed one, or none, leaves the proxy itself.
    @Test func trustedProxiesNameTheClientTheirProxiesSaw() throws {
        let proxies = try TrustedProxies(["10.0.0.0/8", "fd00::/8", "192.0.2.1"])
        #expect(proxies.client(peer: "10.9.8.7", forwardedFor: ["1.2.3.4, 5.6.7.8"]) == "5.6.7.8")
        #expect(proxies.client(peer: "10.9.8.7", forwardedFor: ["1.2.3.4", "5.6.7.8, 10.1.1.1"]) == "5.6.7.8")
        #expect(proxies.client(peer: "fd00::5", forwardedFor: ["2001:db8::1"]) == "2001:db8::1")
        #expect(proxies.client(peer: "192.0.2.1", forwardedFor: ["1.2.3.4, not-an-address"]) == "192.0.2.1")
        #expect(proxies.client(peer: "192.0.2.1", forwardedFor: []) == "192.0.2.1")
        #expect(proxies.client(peer: "192.0.2.1", forwardedFor: ["10.0.0.1"]) == "192.0.2.1")
        #expect(proxies.client(peer: "192.0.2.2", forwardedFor: ["1.2.3.4"]) == "192.0.2.2", "not a proxy")
        #expect(proxies.client(peer: "11.0.0.1", forwardedFor: ["1.2.3.4"]) == "11.0.0.1", "outside the /8")
        #expect(proxies.client(peer: "::ffff:10.0.0.1", forwardedFor: ["1.2.3.4"]) == "1.2.3.4", "IPv4-mapped")
        for wrong in ["", "10.0.0.0/33", "10.0.0.0/", "proxy.example", "fd00::/129", "10.0.0.0/-1", "1.2.3.4/８"] {
            #expect(throws: TrustedProxyError.self, "\(wrong)") { try TrustedProxies([wrong]) }
        }
        #expect(TrustedProxies.none.client(peer: "10.0.0.1", forwardedFor: ["1.2.3.4"]) == "10.0.0.1")
    }

    @Test func readinessFollowsTheDaemonAndAnUnconfiguredWebhookIs401() async throws {
        let daemon = RecordingDaemon(bindings: [])
        await daemon.setReady((false, "revision 1234567 refused: bad manifest"))
        try await app(daemon, webhook: false).test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let message = try json(response)["error"] as? String
                #expect(message?.contains("refused") == true)
            }
            try await client.execute(uri: "/hooks/git", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .unauthorized)
                let message = try json(response)["error"] as? String
                #expect(message?.contains("no webhook secret") == true)
            }
        }
        await daemon.setReady((true, "ready"))
        try await app(daemon).test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
            }
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            try await client.execute(uri: "/hooks/git", method: .post,
                                     headers: [HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: body, secret: Self.secret)],
                                     body: ByteBuffer(bytes: body)) { response in
                #expect(response.status == .accepted)
            }
        }
        #expect(await daemon.pushes == 1)
    }

    // MARK: - Replayed webhooks

    /// A finding signed as a forge signs a push (GitHub's signature over the body alone, GitLab's
    /// token) could be posted again forever once captured: refused, saying what to send, and
    /// nothing reaches the daemon. A finding with Bulwark's timestamped signature is taken once;
    /// the same request again is refused as replayed.
    @Test func aFindingSignedAsAForgeSignsAPushIsRefusedAndABulwarkSignedOneIsTakenOnce() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        let body = Array(finding.utf8)
        try await app(daemon).test(.router) { client in
            let hub = WebhookVerifier.signature(of: body, secret: Self.secret)
            let stamp = String(Int64(Self.clockNow.timeIntervalSince1970))
            let forged: [HTTPFields] = [
                [HTTPField.Name("X-Hub-Signature-256")!: hub, .contentType: "application/json"],
                [HTTPField.Name("X-Gitlab-Token")!: String(decoding: Self.secret, as: UTF8.self), .contentType: "application/json"],
                // A made-up Bulwark signature beside the captured one changes nothing.
                [HTTPField.Name("X-Hub-Signature-256")!: hub, HTTPField.Name("X-Bulwark-Signature-256")!: "sha256=00",
                 HTTPField.Name(WebhookVerifier.timestampHeader)!: stamp, .contentType: "application/json"],
                [HTTPField.Name("X-Gitlab-Token")!: String(decoding: Self.secret, as: UTF8.self), HTTPField.Name("X-Bulwark-Signature-256")!: "x",
                 HTTPField.Name(WebhookVerifier.timestampHeader)!: stamp, .contentType: "application/json"],
            ]
            for headers in forged {
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: headers, body: ByteBuffer(bytes: body)) { response in
                    #expect(response.status == .unauthorized)
                    let message = try json(response)["error"] as? String
                    #expect(message?.contains("carry no time, so a captured finding could be posted again forever") == true, "\(message ?? "-")")
                }
            }
            var signed = bulwarkSigned(body, at: Int64(Self.clockNow.timeIntervalSince1970), secret: Self.findingsSecret)
            signed[.contentType] = "application/json"
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: signed, body: ByteBuffer(bytes: body)) { response in
                #expect(response.status == .accepted)
            }
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: signed, body: ByteBuffer(bytes: body)) { response in
                #expect(response.status == .unauthorized)
                let message = try json(response)["error"] as? String
                #expect(message?.contains("replayed") == true, "\(message ?? "-")")
            }
        }
        #expect(await daemon.received.count == 1, "only the fresh, Bulwark-signed finding reached the daemon")
    }

    func bulwarkSigned(_ body: [UInt8], at timestamp: Int64, secret: [UInt8] = StatusServerTests.secret) -> HTTPFields {
        [HTTPField.Name("X-Bulwark-Signature-256")!: WebhookVerifier.signature(of: body, timestamp: timestamp, secret: secret),
         HTTPField.Name(WebhookVerifier.timestampHeader)!: String(timestamp), HTTPField.Name("X-Bulwark-Relayed")!: "1"]
    }

    /// A relayed webhook (Bulwark's signature) captured on the wire cannot be replayed: not again
    /// within the window, not after it, not with its timestamp changed, not without it, not signed
    /// over the body alone (as before). Each is refused, named, and reaches nothing.
    @Test func aCapturedRelayedWebhookIsRefusedWhenReplayedStaleRestampedOrUnstamped() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        let body = Array(#"{"ref":"refs/heads/main","after":"1111111111111111111111111111111111111111"}"#.utf8)
        try await app(daemon).test(.router) { client in
            let now = Int64(Self.clockNow.timeIntervalSince1970)
            let captured = bulwarkSigned(body, at: now)
            try await client.execute(uri: "/hooks/git", method: .post, headers: captured, body: ByteBuffer(bytes: body)) { response in
                #expect(response.status == .accepted)
            }
            var restamped = captured
            restamped[HTTPField.Name(WebhookVerifier.timestampHeader)!] = String(now + 1)
            var unstamped = captured
            unstamped[HTTPField.Name(WebhookVerifier.timestampHeader)!] = nil
            let bodyOnly: HTTPFields = [HTTPField.Name("X-Bulwark-Signature-256")!: WebhookVerifier.signature(of: body, secret: Self.secret),
                                        HTTPField.Name("X-Bulwark-Relayed")!: "1"]
            let attempts: [(HTTPFields, String)] = [
                (captured, "replayed"),
                (bulwarkSigned(body, at: now - 301), "outside ±300 s"),
                (bulwarkSigned(body, at: now + 3_600), "outside ±300 s"),
                (restamped, "does not match the timestamp and body"),
                (unstamped, "needs X-Bulwark-Timestamp"),
                (bodyOnly, "needs X-Bulwark-Timestamp"),
                (bulwarkSigned(body, at: now, secret: Array("wrong".utf8)), "does not match"),
            ]
            for (headers, reason) in attempts {
                try await client.execute(uri: "/hooks/git", method: .post, headers: headers, body: ByteBuffer(bytes: body)) { response in
                    #expect(response.status == .unauthorized, "\(headers)")
                    let message = try json(response)["error"] as? String
                    #expect(message?.contains(reason) == true, "\(message ?? "-")")
                }
            }
        }
        #expect(await daemon.pushes == 1, "only the first delivery fetches")
    }

    /// What still goes through: every fresh relayed webhook, the same body again with a new
    /// timestamp, one from a clock a few minutes off, and the forges' own webhooks as before
    /// (GitHub's signature and GitLab's token carry no timestamp: each delivery is taken once).
    @Test func freshRelayedWebhooksAndTheForgesWebhooksAreAccepted() async throws {
        let daemon = RecordingDaemon(bindings: [Self.sshd])
        let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
        let stamped: [@Sendable (Int64) -> HTTPFields] = [{ self.bulwarkSigned(body, at: $0) }, { self.bulwarkSigned(body, at: $0 + 1) },
                                               { self.bulwarkSigned(body, at: $0 - 200) }, { self.bulwarkSigned(body, at: $0 + 200) }]
        // The forges' deliveries, each of another push (the same one again is a replay).
        let pushes = (1...3).map { Array(#"{"ref":"refs/heads/main","after":"\#($0)"}"#.utf8) }
        let forges: [(HTTPFields, [UInt8])] = [
            ([HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: pushes[0], secret: Self.secret)], pushes[0]),
            ([HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: pushes[1], secret: Self.secret)], pushes[1]),
            ([HTTPField.Name("X-Gitlab-Token")!: String(decoding: Self.secret, as: UTF8.self)], pushes[2])]
        try await app(daemon).test(.router) { client in
            let deliveries = stamped.map { ($0(Int64(Self.clockNow.timeIntervalSince1970)), body) } + forges
            for (headers, bytes) in deliveries {
                try await client.execute(uri: "/hooks/git", method: .post, headers: headers, body: ByteBuffer(bytes: bytes)) { response in
                    #expect(response.status == .accepted, "\(headers): \(String(buffer: response.body))")
                }
            }
        }
        #expect(await daemon.pushes == 7)
    }

    /// The replay memory holds only what verified, and is bounded: when full of fresh signatures
    /// it refuses (an agent still polls) rather than forget one and take a replay; once they age
    /// out of the window it takes new ones again.
    @Test func theReplayMemoryIsBoundedAndForgetsOnlyWhatLeftTheWindow() {
        let replays = WebhookReplayGuard()
        let verifier = WebhookVerifier(secret: Self.secret, replays: replays)
        let start = Date()
        let body = Array("{}".utf8)
        func headers(_ timestamp: Int64) -> HTTPFields {
            [HTTPField.Name("X-Bulwark-Signature-256")!: WebhookVerifier.signature(of: body, timestamp: timestamp, secret: Self.secret),
             HTTPField.Name(WebhookVerifier.timestampHeader)!: String(timestamp)]
        }
        let base = Int64(start.timeIntervalSince1970) - 299
        for offset in 0..<Int64(WebhookReplayGuard.capacity) {
            // Spread over the window (each signature differs by its timestamp).
            let timestamp = base + offset % 599
            let distinct = Array("{\"n\":\(offset)}".utf8)
            let fields: HTTPFields = [HTTPField.Name("X-Bulwark-Signature-256")!: WebhookVerifier.signature(of: distinct, timestamp: timestamp, secret: Self.secret),
                                      HTTPField.Name(WebhookVerifier.timestampHeader)!: String(timestamp)]
            #expect(verifier.refusal(headers: fields, body: distinct, now: start) == nil)
        }
        #expect(replays.count == WebhookReplayGuard.capacity)
        let full = verifier.refusal(headers: headers(Int64(start.timeIntervalSince1970)), body: body, now: start)
        #expect(full?.contains("more than \(WebhookReplayGuard.capacity)") == true, "\(full ?? "accepted")")
        // Eleven minutes later every remembered one is out of the window and its minute's margin:
        // forgotten, and new ones are taken.
        let later = start.addingTimeInterval(700)
        #expect(verifier.refusal(headers: headers(Int64(later.timeIntervalSince1970)), body: body, now: later) == nil)
        #expect(replays.count == 1)
    }

    // MARK: - Matching

    @Test func findingsMatchByResourceNameTargetOrAnIdentifierEndingInTheTarget() {
        let index = FindingIndex(bindings: [Self.sshd, Self.sysctl])
        let early = Date(timeIntervalSince1970: 1_000)
        let late = Date(timeIntervalSince1970: 2_000)
        let matched = index.match([
            Finding(resource: "permit-root-login", control: "c", firstObservedAt: late),
            Finding(resource: "SSHDConfig/permit-root-login", control: "c", firstObservedAt: early),
            Finding(resource: "arn:aws:ec2:eu-west-1:1:instance/web-2", control: "c", firstObservedAt: late),
            Finding(resource: "SSHDConfig/permit-root-login", target: "web-9", control: "c", firstObservedAt: early),
            Finding(resource: "instance/web-22", control: "c", firstObservedAt: early),
        ])
        #expect(matched == [Self.sshd: early, Self.sysctl: late])
    }
}

/// Blocking work on a thread of its own: a test that blocks the cooperative pool's few threads
/// (two on this machine) can starve the server it is testing, whose deadline then never fires.
func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// A blocking TCP client bound to a chosen loopback source address, to send exactly the bytes a
/// slow or hostile client sends.
final class RawHTTPClient: Sendable {
    let socket: Int32

    /// The index of the first of `clients` with something to read (an answer, or the server
    /// closing), waiting up to 120 s.
    static func firstReadable(_ clients: [RawHTTPClient]) -> Int? {
        var descriptors = clients.map { pollfd(fd: $0.socket, events: Int16(POLLIN), revents: 0) }
        guard poll(&descriptors, nfds_t(descriptors.count), 120_000) > 0 else { return nil }
        return descriptors.firstIndex { $0.revents != 0 }
    }

    init(from source: String, to port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw POSIXError(.EIO) }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, source, &local.sin_addr)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr)
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        let connected = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, connected == 0 else {
            close(socket)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }

    deinit { close(socket) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw POSIXError(.EIO)
        }
    }

    /// What the server answers, up to when it closes or 120 s pass (a response that says its
    /// length is read to its end).
    func receive() throws -> String {
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            answer += buffer[..<count]
            let text = String(decoding: answer, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n"),
               let line = text[..<end.lowerBound].split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") }),
               let length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)),
               text.utf8.distance(from: end.upperBound.samePosition(in: text.utf8)!, to: text.utf8.endIndex) >= length {
                break
            }
        }
        return String(decoding: answer, as: UTF8.self)
    }

    func exchange(_ text: String) throws -> String {
        try send(text)
        return try receive()
    }
}
