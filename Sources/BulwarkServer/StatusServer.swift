public import BulwarkCore
internal import Crypto
internal import Foundation
public import HTTPTypes
public import Hummingbird
public import Logging

/// What the HTTP surface asks of the daemon behind it.
public protocol DaemonControl: Sendable {
    /// Whether the source is synced and the last cycle succeeded, and if not, why.
    func readiness() async -> (ready: Bool, reason: String)
    /// `/api/v1/status` as JSON.
    func statusJSON() async -> [UInt8]
    /// The human status page.
    func statusPage() async -> String
    /// Prometheus text exposition.
    func metrics() async -> String
    /// A verified push webhook arrived: fetch now.
    func sourcePushed() async
    /// Findings arrived; returns how many managed resources they matched (each reconciled at once).
    func received(_ findings: [Finding]) async -> Int
}

/// How push webhooks prove they come from the forge: GitHub's `X-Hub-Signature-256`, GitLab's
/// `X-Gitlab-Token`, or Bulwark's own `X-Bulwark-Signature-256: sha256=<hex HMAC-SHA256 of the
/// body>`, the header its notifications carry too.
public struct WebhookVerifier: Sendable {
    let secret: [UInt8]

    public init(secret: [UInt8]) { self.secret = secret }

    /// `sha256=<hex HMAC-SHA256 of body>`, as `X-Hub-Signature-256` and `X-Bulwark-Signature-256` carry it.
    public static func signature(of body: [UInt8], secret: [UInt8]) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// nil when the request is authentic, else why not.
    public func refusal(headers: HTTPFields, body: [UInt8]) -> String? {
        if let token = headers[HTTPField.Name("X-Gitlab-Token")!] {
            return Self.constantTimeEqual(Array(token.utf8), secret) ? nil : "X-Gitlab-Token does not match"
        }
        for name in ["X-Hub-Signature-256", "X-Bulwark-Signature-256"] {
            guard let value = headers[HTTPField.Name(name)!] else { continue }
            guard value.hasPrefix("sha256=") else { return "\(name): expected sha256=<hex>" }
            return Self.constantTimeEqual(Array(value.lowercased().utf8), Array(Self.signature(of: body, secret: secret).utf8))
                ? nil : "\(name) does not match the body"
        }
        return "no signature: send X-Hub-Signature-256, X-Gitlab-Token or X-Bulwark-Signature-256"
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}

/// The daemon's HTTP server (hummingbird): health, readiness, metrics, status, the push webhook
/// and findings. Runs as one service of the daemon's service group.
public enum StatusServer {
    public static let maxBody = FindingParser.maxSize

    public static func application(
        control: some DaemonControl, host: String, port: Int, verifier: WebhookVerifier?, logger: Logger
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("healthz") { _, _ in text(.ok, "ok\n") }
        router.get("readyz") { _, _ in
            let (ready, reason) = await control.readiness()
            return text(ready ? .ok : .serviceUnavailable, reason + "\n")
        }
        router.get("metrics") { _, _ in
            text(.ok, await control.metrics(), type: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.get("api/v1/status") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(bytes: await control.statusJSON())))
        }
        router.get("/") { _, _ in text(.ok, await control.statusPage(), type: "text/html; charset=utf-8") }
        router.post("hooks/git") { request, _ -> Response in
            let body = try await collect(request)
            guard let verifier else { return text(.unauthorized, "no webhook secret is configured; see bulwark run --help\n") }
            if let refusal = verifier.refusal(headers: request.headers, body: body) {
                logger.warning("webhook refused", metadata: ["reason": .string(refusal)])
                return text(.unauthorized, refusal + "\n")
            }
            await control.sourcePushed()
            return text(.accepted, "fetching\n")
        }
        router.post("api/v1/findings") { request, _ -> Response in
            let body = try await collect(request)
            let findings: [Finding]
            do {
                findings = try FindingParser.parse(body)
            } catch {
                return text(.badRequest, "\(error)\n")
            }
            let matched = await control.received(findings)
            let answer = try JSONSerialization.data(withJSONObject: ["findings": findings.count, "matched": matched], options: [.sortedKeys])
            return Response(status: .accepted, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: answer)))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "bulwark"),
                           logger: logger)
    }

    static func collect(_ request: Request) async throws -> [UInt8] {
        do {
            return Array(try await request.body.collect(upTo: maxBody).readableBytesView)
        } catch {
            throw HTTPError(.contentTooLarge, message: "the body is larger than \(maxBody) bytes")
        }
    }

    static func text(_ status: HTTPResponse.Status, _ body: String, type: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
