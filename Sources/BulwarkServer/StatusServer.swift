public import BulwarkCore
internal import Crypto
public import Foundation
public import HTTPTypes
public import Hummingbird
internal import HummingbirdCore
public import NIOCore
internal import Synchronization
public import Logging
public import Prometheus

/// What the HTTP surface asks of the daemon behind it: values (its readiness, its status), never
/// ready-made bytes; the server renders them (`/readyz`, `/api/v1/status`, the status page).
public protocol DaemonControl: Sendable {
    /// Whether the source is synced and the last cycle succeeded, and if not, why.
    func readiness() async -> (ready: Bool, reason: String)
    /// What `/api/v1/status` and the status page show.
    func status() async -> DaemonStatus
    /// A verified push webhook arrived: fetch now.
    func sourcePushed() async
    /// A verified push webhook arrived with this body; `relayed` when another Bulwark relayed it
    /// (`X-Bulwark-Relayed`). Fetch now, and a relay passes it on (never a relayed one).
    func sourcePushed(body: [UInt8], relayed: Bool) async
    /// The managed resources findings can name, for matching off the daemon's actor.
    func findingIndex() async -> FindingIndex
    /// Findings matched these resources (with the earliest first-observed time of each): reconcile them.
    func received(_ matched: [Binding: Date]) async
    /// Findings arrived: decide what the policy's finding rules say (reconcile, propose, close a
    /// proposal) and do it. Returns how many resources are reconciled now and, from a daemon
    /// that decides per finding, its report (encoded as a JSON object and merged into the answer).
    func findingsArrived(_ findings: [Finding], format: FindingFormat) async -> (matched: Int, report: (any Encodable & Sendable)?)
}

extension DaemonControl {
    /// Without a relay: fetch now.
    public func sourcePushed(body: [UInt8], relayed: Bool) async { await sourcePushed() }

    /// Without finding rules: every finding reconciles the managed resources it names.
    public func findingsArrived(_ findings: [Finding], format: FindingFormat) async -> (matched: Int, report: (any Encodable & Sendable)?) {
        let matched = await findingIndex().match(findings)
        await received(matched)
        return (matched.count, nil)
    }
}

/// How push webhooks prove they come from the forge: GitHub's `X-Hub-Signature-256`, GitLab's
/// `X-Gitlab-Token` (both as the forges send them), or Bulwark's own `X-Bulwark-Signature-256`,
/// which a relay sends: signed over `X-Bulwark-Timestamp` and the body, taken within ±5 minutes
/// and once (see WebhookReplay.swift).
public struct WebhookVerifier: Sendable {
    let secret: [UInt8]
    /// The Bulwark-signed webhooks already taken, shared by every copy of this verifier.
    let replays: WebhookReplayGuard
    /// The wall clock a timestamp is judged against (the tests fix it).
    let clock: @Sendable () -> Date

    public init(secret: [UInt8], replays: WebhookReplayGuard = WebhookReplayGuard(), clock: @escaping @Sendable () -> Date = { Date() }) {
        self.secret = secret
        self.replays = replays
        self.clock = clock
    }

    /// `sha256=<hex HMAC-SHA256 of body>`, as `X-Hub-Signature-256` and `X-Bulwark-Signature-256` carry it.
    public static func signature(of body: [UInt8], secret: [UInt8]) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// Secrets and tokens of at least this many bytes are taken as too long to guess one request
    /// at a time: their senders are checked even while their address is limited (see `RefusalLimiter`).
    public static let unguessableLength = 16

    /// Whether the secret is too long to guess one request at a time (`unguessableLength`).
    public var unguessable: Bool { secret.count >= Self.unguessableLength }

    /// nil when the request is authentic (and, signed by Bulwark, fresh and not seen before), else why not.
    public func refusal(headers: HTTPFields, body: [UInt8], now: Date? = nil) -> String? {
        check(headers: headers, body: body, now: now).refusal
    }

    /// Whether the request is authentic and not a delivery already taken: a Bulwark signature
    /// once within its window, a forge's delivery (which carries no time) once among the last
    /// ones taken (`WebhookReplayGuard`). Each one accepted is remembered.
    public func check(headers: HTTPFields, body: [UInt8], now: Date? = nil) -> WebhookCheck {
        let now = now ?? clock()
        if let refusal = forgeRefusal(headers, body: body) { return .refused(refusal) }
        if headers[HTTPField.Name("X-Gitlab-Token")!] != nil || headers[HTTPField.Name("X-Hub-Signature-256")!] != nil {
            return replays.admitForge(Self.signature(of: body, secret: secret), now: now.timeIntervalSince1970)
        }
        guard let value = headers[HTTPField.Name("X-Bulwark-Signature-256")!] else {
            return .refused("no signature: send X-Hub-Signature-256, X-Gitlab-Token or X-Bulwark-Signature-256")
        }
        guard value.hasPrefix("sha256=") else { return .refused("X-Bulwark-Signature-256: expected sha256=<hex>") }
        return bulwarkCheck(value, timestamp: headers[HTTPField.Name(Self.timestampHeader)!], body: body, now: now)
    }

    /// Why a forge's push signature does not verify, or nil when the request carries a valid one
    /// or none (checked first: GitLab's token, then GitHub's signature).
    func forgeRefusal(_ headers: HTTPFields, body: [UInt8]) -> String? {
        if let token = headers[HTTPField.Name("X-Gitlab-Token")!] {
            return Self.constantTimeEqual(Array(token.utf8), secret) ? nil : "X-Gitlab-Token does not match"
        }
        guard let value = headers[HTTPField.Name("X-Hub-Signature-256")!] else { return nil }
        guard value.hasPrefix("sha256=") else { return "X-Hub-Signature-256: expected sha256=<hex>" }
        // Bulwark signs "<timestamp>." + body with the same secret: a captured Bulwark-signed
        // request sent again as a GitHub delivery of that text would verify, with no time limit.
        // No forge's delivery begins so (GitHub's is JSON or `payload=`).
        if Self.beginsAsBulwarkSigned(body) {
            return "X-Hub-Signature-256: the body begins with digits and a dot, as the text of a Bulwark-signed request does, "
                + "which no forge's delivery does: refused"
        }
        return Self.constantTimeEqual(Array(value.lowercased().utf8), Array(Self.signature(of: body, secret: secret).utf8))
            ? nil : "X-Hub-Signature-256 does not match the body"
    }

    /// What the headers alone decide: a GitLab token is checked whole; a signature needs the
    /// body; a request with neither is refused before any of its body is read.
    public func headerVerdict(_ headers: HTTPFields) -> HeaderVerdict {
        if headers[HTTPField.Name("X-Gitlab-Token")!] != nil {
            // Its body is read after (to tell a delivery taken before), not before it is trusted.
            return forgeRefusal(headers, body: []).map { .refused($0) } ?? .authentic
        }
        if headers[HTTPField.Name("X-Bulwark-Signature-256")!] != nil {
            // A stale or missing timestamp is refused before the body: a sender without the
            // secret cannot hold a place among the unverified bodies with a captured old header.
            let timestamp = headers[HTTPField.Name(Self.timestampHeader)!]
            guard let timestamp, let seconds = Self.seconds(timestamp),
                  abs(Double(seconds) - clock().timeIntervalSince1970) <= Self.window else {
                return .refused(timestamp == nil ? "X-Bulwark-Signature-256 needs \(Self.timestampHeader) (Unix seconds)"
                                : "\(Self.timestampHeader) is missing, malformed or outside ±\(Int(Self.window)) s of this host's clock")
            }
            return .needsBody
        }
        if headers[HTTPField.Name("X-Hub-Signature-256")!] != nil { return .needsBody }
        return .refused("no signature: send X-Hub-Signature-256, X-Gitlab-Token or X-Bulwark-Signature-256")
    }

    /// Whether `body` begins as the text Bulwark signs does: 1 to 12 digits and a dot.
    static func beginsAsBulwarkSigned(_ body: [UInt8]) -> Bool {
        guard let dot = body.prefix(13).firstIndex(of: UInt8(ascii: ".")), dot > 0 else { return false }
        return body[..<dot].allSatisfy { (0x30...0x39).contains($0) }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}

/// What a request's headers prove before its body is read.
public enum HeaderVerdict: Sendable, Equatable {
    /// Authentic by its headers (a bearer token, a GitLab token).
    case authentic
    /// Signed over its body: only the body can tell.
    case needsBody
    /// Refused, and why; none of the body is read.
    case refused(String)
}

/// Who may post findings: a request signed with Bulwark's own timestamped signature made with
/// the findings secret (`X-Bulwark-Timestamp`, `X-Bulwark-Signature-256`: fresh and taken once,
/// see `WebhookVerifier`), or one that carries `Authorization: Bearer <token>` with a findings
/// token. Never the push webhook secret: GitLab sends it in clear with every push
/// (`X-Gitlab-Token`), so whoever sees one delivery (a proxy's log, a forge's settings) could
/// sign findings, which propose and merge fixes. A request signed with it is refused saying what
/// to configure. The forges' push signatures are not taken either: GitHub's covers the body
/// alone and GitLab's token is a secret sent as it is, so a captured signed finding could be
/// posted again forever, reopening findings after each fix and closing proposals.
public struct FindingsAuthenticator: Sendable {
    /// Why a forge's push signature is refused on the findings route.
    static let forgeSignature = "findings take Authorization: Bearer <token> or X-Bulwark-Signature-256 with X-Bulwark-Timestamp; "
        + "X-Hub-Signature-256 and X-Gitlab-Token carry no time, so a captured finding could be posted again forever"

    /// Why a finding signed with the push webhook secret is refused, and what to configure.
    static let webhookSecretSigned = "this X-Bulwark-Signature-256 is made with the push webhook secret, which does not sign findings "
        + "(GitLab sends it in clear with every push, as X-Gitlab-Token): give findings a secret of their own "
        + "(bulwark run --findings-secret-file, or $BULWARK_FINDINGS_SECRET) and sign with it, or send Authorization: Bearer <findings token>"

    /// Why a signed finding is refused by a daemon without a findings secret.
    static let noFindingsSecret = "signed findings need the findings secret, and none is configured "
        + "(bulwark run --findings-secret-file, or $BULWARK_FINDINGS_SECRET; the push webhook secret does not sign findings); "
        + "or send Authorization: Bearer <findings token>"

    /// Whether the request carries a forge's push signature, whatever else it carries: the
    /// verifier checks those first, so a captured one beside a made-up Bulwark signature would pass.
    static func forgeSigned(_ headers: HTTPFields) -> Bool {
        headers[HTTPField.Name("X-Hub-Signature-256")!] != nil || headers[HTTPField.Name("X-Gitlab-Token")!] != nil
    }

    /// Checks Bulwark signatures made with the findings secret.
    let signer: WebhookVerifier?
    /// The push webhook secret, only to tell a sender who signs with it what to configure instead.
    let webhookSecret: [UInt8]?
    let token: [UInt8]?
    /// Tokens that post the findings of one source each (`bulwark run --findings-source-tokens`):
    /// a finding of another source with one of them is refused, so the holder of a scanner's
    /// token cannot speak for another scanner, whose finding rules may auto-merge policy or
    /// close its proposals.
    let sourceTokens: [SourceToken]

    /// A token bound to the findings of `source` (`sarif:*` takes every `sarif:` source).
    public struct SourceToken: Sendable {
        public var source: String
        public var token: [UInt8]
        public init(source: String, token: [UInt8]) {
            self.source = source
            self.token = token
        }

        /// Whether this token may post a finding of `source`.
        public func allows(_ source: String) -> Bool {
            self.source.hasSuffix("*") ? source.hasPrefix(self.source.dropLast()) : source == self.source
        }
    }

    /// - Parameters:
    ///   - signer: verifies signatures made with the findings secret; never one made with the
    ///     push webhook secret (a signer with that secret is dropped).
    ///   - webhookSecret: the push webhook secret, to name it in the refusal of a finding signed with it.
    public init(signer: WebhookVerifier?, token: [UInt8]?, sourceTokens: [SourceToken] = [], webhookSecret: [UInt8]? = nil) {
        let webhookSecret = webhookSecret.flatMap { $0.isEmpty ? nil : $0 }
        self.signer = signer.flatMap { $0.secret.isEmpty || $0.secret == webhookSecret ? nil : $0 }
        self.webhookSecret = webhookSecret
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        self.sourceTokens = sourceTokens.filter { !$0.token.isEmpty }
    }

    public var configured: Bool { signer != nil || token != nil || !sourceTokens.isEmpty }

    /// The bearer token the request carries, if it is one of the findings tokens: nil, or the
    /// source it is bound to (`.some(nil)` for the token of every source).
    func bearer(_ headers: HTTPFields) -> String?? {
        guard let authorization = headers[.authorization], authorization.hasPrefix("Bearer ") else { return nil }
        let sent = Array(authorization.dropFirst(7).utf8)
        // Every token is compared, whichever matches: the time taken does not say which one.
        var matched: String?? = nil
        if let token, WebhookVerifier.constantTimeEqual(sent, token) { matched = .some(nil) }
        for bound in sourceTokens where WebhookVerifier.constantTimeEqual(sent, bound.token) {
            if matched == nil { matched = .some(bound.source) }
        }
        return matched
    }

    /// Whether the request carries a findings bearer token (a check of the headers alone).
    public func acceptsBearer(_ headers: HTTPFields) -> Bool { bearer(headers) != nil }

    /// Why the request may not post these findings, or nil: a source-bound token posts only
    /// its source's (`SourceToken`).
    public func sourceRefusal(headers: HTTPFields, findings: [Finding]) -> String? {
        guard case .some(.some(let source)) = bearer(headers) else { return nil }
        let bound = sourceTokens.first { $0.source == source }
        guard let other = findings.first(where: { !(bound?.allows($0.source) ?? false) }) else { return nil }
        return "this token posts findings of source \(source) only; the document has one of source \(quotedForMessage(other.source))"
    }

    /// Whether the credential the request would be checked with is too long to guess one request
    /// at a time: the bearer token when it sends `Authorization`, else the findings secret.
    public func unguessable(_ headers: HTTPFields) -> Bool {
        if headers[.authorization] != nil {
            return ([token].compactMap { $0 } + sourceTokens.map(\.token)).allSatisfy { $0.count >= WebhookVerifier.unguessableLength }
        }
        return signer?.unguessable ?? false
    }

    static let notConfigured = "no findings token or findings secret is configured: set bulwark run --findings-token-file or --findings-secret-file "
        + "($BULWARK_FINDINGS_TOKEN, $BULWARK_FINDINGS_SECRET); the push webhook secret does not sign findings"

    /// Why a request is refused by a daemon that takes no findings at all.
    static func unconfigured(_ headers: HTTPFields) -> String {
        headers[HTTPField.Name("X-Bulwark-Signature-256")!] != nil ? noFindingsSecret : notConfigured
    }

    /// What the headers alone decide (see `WebhookVerifier.headerVerdict`).
    public func headerVerdict(_ headers: HTTPFields) -> HeaderVerdict {
        guard configured else { return .refused(Self.unconfigured(headers)) }
        if headers[.authorization] != nil { return check(headers: headers, body: []).refusal.map { .refused($0) } ?? .authentic }
        if Self.forgeSigned(headers) { return .refused(Self.forgeSignature) }
        guard let signer else {
            return .refused(headers[HTTPField.Name("X-Bulwark-Signature-256")!] != nil ? Self.noFindingsSecret
                            : "no credentials: send Authorization: Bearer <token>")
        }
        return signer.headerVerdict(headers)
    }

    /// nil when the request is authentic, else why not (never echoing what was sent).
    public func refusal(headers: HTTPFields, body: [UInt8], now: Date? = nil) -> String? {
        check(headers: headers, body: body, now: now).refusal
    }

    /// Whether the request may post findings; a signed one accepted is remembered (taken once).
    public func check(headers: HTTPFields, body: [UInt8], now: Date? = nil) -> WebhookCheck {
        guard configured else { return .refused(Self.unconfigured(headers)) }
        if let authorization = headers[.authorization] {
            guard token != nil || !sourceTokens.isEmpty else {
                return .refused("bearer tokens are not configured; sign the body with the findings secret")
            }
            guard authorization.hasPrefix("Bearer ") else { return .refused("Authorization: expected Bearer <token>") }
            return bearer(headers) != nil ? .accepted : .refused("the bearer token does not match")
        }
        if Self.forgeSigned(headers) { return .refused(Self.forgeSignature) }
        if let value = headers[HTTPField.Name("X-Bulwark-Signature-256")!], let webhookSecret,
           let timestamp = headers[HTTPField.Name(WebhookVerifier.timestampHeader)!].flatMap(WebhookVerifier.seconds),
           WebhookVerifier.constantTimeEqual(Array(value.lowercased().utf8),
                                             Array(WebhookVerifier.signature(of: body, timestamp: timestamp, secret: webhookSecret).utf8)) {
            return .refused(Self.webhookSecretSigned)
        }
        guard let signer else {
            return .refused(headers[HTTPField.Name("X-Bulwark-Signature-256")!] != nil ? Self.noFindingsSecret
                            : "no credentials: send Authorization: Bearer <token>")
        }
        return signer.check(headers: headers, body: body, now: now)
    }
}

/// The HTTP server's settings: where it listens, who may post, and its limits under abuse.
public struct ServerSettings: Sendable {
    public var host: String
    public var port: Int
    /// The policy repository as the status page names it (credentials already removed).
    public var repository: String
    public var webhook: WebhookVerifier?
    public var findings: FindingsAuthenticator
    /// A connection that sends nothing (no complete request head, no further request) for this
    /// long is closed: idle keep-alive connections and slow senders free their descriptor.
    public var idleTimeout: Duration
    /// Connections open at once; past it new ones wait in the backlog until one closes, so the
    /// daemon keeps descriptors for git, adapters and the state directory.
    public var maxConnections: Int
    /// Bodies read at once before their signature is checked (webhooks, signed findings; up to
    /// 1 MiB each): past it a request is turned away with 503 and Retry-After, so that
    /// connections trickling unauthenticated bodies cannot take the daemon's memory. Requests
    /// the headers already authenticate (a bearer or GitLab token) do not count.
    public var unverifiedBodies: Int
    /// Of those, at most this many from one client address: one client trickling bodies cannot
    /// take every place and keep the webhooks of others waiting.
    public var unverifiedBodiesPerAddress: Int
    /// An unverified body must arrive whole within this time (408 after it, and its place is
    /// free again): a client that sends a body a byte at a time holds a place only this long.
    public var unverifiedBodyDeadline: Duration
    /// Failed authentications one client address may have in a row (a token bucket's size)
    /// before its webhooks and findings get 429 without being read, and how many a second it
    /// earns back: a stream of guesses is cut short, and so is its log.
    public var refusalBurst: Int
    public var refusalsPerSecond: Double
    /// The monotonic clock the buckets refill on (the tests move it).
    public var refusalClock: @Sendable () -> ContinuousClock.Instant
    /// The proxies whose `X-Forwarded-For` names the client (see `TrustedProxies`).
    public var trustedProxies: TrustedProxies

    /// Whether `host` (a `--listen` host: a name, an IPv4 or IPv6 address, bracketed or not) is
    /// loopback; `0.0.0.0` and `::` (every address) are not.
    public static func isLoopback(_ host: String) -> Bool {
        // By its bytes: `0:0:0:0:0:0:0:1` and `::ffff:127.0.0.1` are loopback too.
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if let bytes = TrustedProxies.bytes(bare) {
            return bytes.count == 4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
        }
        return Loopback.isHost(of: "http://" + (host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host))
    }

    public init(host: String, port: Int, repository: String = "", webhook: WebhookVerifier?, findings: FindingsAuthenticator,
                idleTimeout: Duration = .seconds(15), maxConnections: Int = 4096, unverifiedBodies: Int = 16,
                unverifiedBodiesPerAddress: Int = 4, unverifiedBodyDeadline: Duration = .seconds(10),
                refusalBurst: Int = 10, refusalsPerSecond: Double = 1,
                refusalClock: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
                trustedProxies: TrustedProxies = .none) {
        self.host = host
        self.port = port
        self.repository = repository
        self.webhook = webhook
        self.findings = findings
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.unverifiedBodies = unverifiedBodies
        self.unverifiedBodiesPerAddress = unverifiedBodiesPerAddress
        self.unverifiedBodyDeadline = unverifiedBodyDeadline
        self.refusalBurst = max(1, refusalBurst)
        self.refusalsPerSecond = refusalsPerSecond > 0 ? refusalsPerSecond : 1
        self.refusalClock = refusalClock
        self.trustedProxies = trustedProxies
    }
}

/// The daemon's HTTP server (hummingbird): health, readiness, metrics, status, the push webhook
/// and findings. Runs as one service of the daemon's service group. Every error is JSON
/// (`{"error": "..."}`); a known path asked with another method is 405 with `Allow`.
public enum StatusServer {
    public static let maxBody = FindingParser.maxSize
    /// Large (XML) findings bodies read at once, over every server of the process.
    static let largeBodies = Admission(limit: 2)

    /// At most `limit` holders at once, and at most `perAddress` of them from one client
    /// address; the rest are turned away, never queued.
    final class Admission: Sendable {
        let limit: Int
        let perAddress: Int
        private let held = Mutex((count: 0, byAddress: [String: Int]()))
        init(limit: Int, perAddress: Int? = nil) {
            self.limit = limit
            self.perAddress = perAddress ?? limit
        }

        enum Verdict { case admitted, full, fullForAddress }

        func enter(from address: String = "") -> Verdict {
            held.withLock { state in
                guard state.count < limit else { return .full }
                guard state.byAddress[address, default: 0] < perAddress else { return .fullForAddress }
                state.count += 1
                state.byAddress[address, default: 0] += 1
                return .admitted
            }
        }

        func enter() -> Bool { enter(from: "") == .admitted }

        func leave(from address: String = "") {
            held.withLock { state in
                state.count -= 1
                let left = state.byAddress[address, default: 1] - 1
                state.byAddress[address] = left > 0 ? left : nil
            }
        }
    }

    /// The paths served, and their methods.
    static let routes: [String: [HTTPRequest.Method]] = [
        "/healthz": [.get, .head], "/readyz": [.get, .head], "/metrics": [.get, .head], "/api/v1/status": [.get, .head],
        "/": [.get, .head], "/hooks/git": [.post], "/api/v1/findings": [.post],
    ]

    /// `bulwark_http_refused_total{route,reason}`: requests to the POST routes answered with an
    /// error, by why (bounded: two routes, these reasons).
    static var refused: MetricNameDescriptor {
        MetricNameDescriptor(metricName: "bulwark_http_refused", unitName: "total",
                             helpText: "Webhook and findings requests refused, by route and reason")
    }
    static let refusalReasons: [HTTPResponse.Status: String] = [
        .unauthorized: "unauthorized", .tooManyRequests: "rate_limited", .serviceUnavailable: "busy",
        .contentTooLarge: "too_large", .badRequest: "malformed", .requestTimeout: "timeout", .forbidden: "wrong_source",
    ]

    /// A signed delivery already taken, sent again: 401, logged only when `logged`.
    struct Replayed: Error {
        let reason: String
        let logged: Bool
    }

    /// - Parameters:
    ///   - metrics: the registry the daemon's meters are kept in, emitted as `/metrics`.
    ///   - onRunning: called once the server listens (systemd readiness).
    public static func application(control: some DaemonControl, settings: ServerSettings, metrics: PrometheusCollectorRegistry,
                                   logger: Logger, onRunning: @escaping @Sendable () async -> Void = {}) -> some ApplicationProtocol {
        Application(router: router(control: control, settings: settings, metrics: metrics, logger: logger),
                    server: .http1(configuration: .init(idleTimeout: .seconds(Int64(settings.idleTimeout.components.seconds)))),
                    configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "bulwark",
                                         backlog: 1024,
                                         availableConnectionsDelegate: MaximumAvailableConnections(max(1, settings.maxConnections), logger: logger)),
                    onServerRunning: { _ in await onRunning() },
                    logger: logger)
    }

    /// The routes, shared by the daemon and the tests (`app.test(.router)`).
    public static func router(control: some DaemonControl, settings: ServerSettings, metrics: PrometheusCollectorRegistry,
                              logger: Logger) -> Router<ServerContext> {
        // HEAD on every GET route (RFC 9110): the same status and headers, no body.
        let router = Router(context: ServerContext.self, options: .autoGenerateHeadEndpoints)
        let unverified = Admission(limit: settings.unverifiedBodies, perAddress: settings.unverifiedBodiesPerAddress)
        let limiter = RefusalLimiter(settings: .init(burst: settings.refusalBurst, perSecond: settings.refusalsPerSecond),
                                     now: settings.refusalClock)
        for route in ["/hooks/git", "/api/v1/findings"] {
            for reason in Set(refusalReasons.values).union(["other", "replayed"]) {
                _ = metrics.makeCounter(descriptor: refused, labels: [("route", route), ("reason", reason)])
            }
        }
        /// Who a request counts as: its peer's address, or, from a trusted proxy, the client its
        /// proxies name (`TrustedProxies`); an IPv6 address as its /64.
        @Sendable func client(_ request: Request, _ context: ServerContext) -> String {
            guard let peer = context.remoteAddress?.ipAddress else { return "" }
            let forwarded = settings.trustedProxies.isEmpty ? []
                : request.headers[values: HTTPField.Name("X-Forwarded-For")!]
            return ServerContext.budgetKey(settings.trustedProxies.client(peer: peer, forwardedFor: forwarded))
        }
        /// Runs a POST route for a client: 429 while its address has used up its refusals, unless
        /// the request carries a credential the headers accept or one only its body can tell and
        /// that credential is too long to guess (`unguessable`): then the sender that shares an
        /// address (a proxy, a NAT) with someone guessing is still served, and guessing a short
        /// secret stays slow. Every error answer counted by reason, a failed authentication taken
        /// from its bucket, and logged as `RefusalLimiter` allows, with the address and how many
        /// it stands for.
        @Sendable func guarded(_ route: String, _ what: String, from address: String, verdict: HeaderVerdict, unguessable: Bool,
                               _ handle: () async throws -> Response) async throws -> Response {
            do {
                let checked: Bool
                if case .refused = verdict { checked = false } else { checked = unguessable }
                if !checked, let wait = limiter.retryAfter(address) {
                    throw HTTPError(.tooManyRequests, headers: [.retryAfter: String(wait)],
                                    message: "too many refused requests from this address; try again in \(wait) s")
                }
                return try await handle()
            } catch let replay as Replayed {
                // Refused and counted as every failed authentication is, but logged once per
                // delivery: a captured one sent again and again is not a line each time.
                metrics.makeCounter(descriptor: refused, labels: [("route", route), ("reason", "replayed")]).increment()
                limiter.take(address)
                if replay.logged {
                    logger.warning("\(what) refused", metadata: [
                        "address": .string(address.isEmpty ? "-" : address), "status": .stringConvertible(401),
                        "reason": .string(replay.reason + " (further replays of this delivery are refused without a line)"),
                    ])
                }
                throw HTTPError(.unauthorized, message: replay.reason)
            } catch let error as HTTPError {
                let reason = refusalReasons[error.status] ?? "other"
                metrics.makeCounter(descriptor: refused, labels: [("route", route), ("reason", reason)]).increment()
                if let line = limiter.refused(address, take: error.status == .unauthorized) {
                    logger.warning("\(what) refused", metadata: [
                        "address": .string(address.isEmpty ? "-" : address), "status": .stringConvertible(error.status.code),
                        "reason": .string(error.body ?? reason),
                        "refusals": .stringConvertible(line.count),
                        "held_back_elsewhere": .stringConvertible(line.heldBack),
                    ])
                }
                throw error
            }
        }
        /// Goes on when the check accepted the request, else throws what answers it.
        @Sendable func accept(_ check: WebhookCheck) throws {
            switch check {
            case .accepted: return
            case .refused(let why): throw HTTPError(.unauthorized, message: why)
            case .replayed(let why, let logged): throw Replayed(reason: why, logged: logged)
            case .unavailable(let why): throw HTTPError(.serviceUnavailable, headers: [.retryAfter: "30"], message: why)
            }
        }
        /// Refuses what the headers refuse, and takes a place among the unverified bodies for a
        /// request whose body must be read to check it (the caller leaves it once checked).
        @Sendable func admit(_ verdict: HeaderVerdict, _ what: String, from address: String) throws -> Bool {
            switch verdict {
            case .authentic: return false
            case .refused(let reason):
                throw HTTPError(.unauthorized, message: reason)
            case .needsBody:
                switch unverified.enter(from: address) {
                case .admitted: return true
                case .full:
                    throw HTTPError(.serviceUnavailable, headers: [.retryAfter: "5"],
                                    message: "\(unverified.limit) signed requests are being read; send this one again shortly")
                case .fullForAddress:
                    throw HTTPError(.serviceUnavailable, headers: [.retryAfter: "5"],
                                    message: "\(unverified.perAddress) signed requests from this address are being read; send this one again shortly")
                }
            }
        }
        /// An unverified body, within the deadline.
        @Sendable func unverifiedBody(_ request: Request, upTo limit: Int = maxBody) async throws -> [UInt8] {
            try await collect(request, upTo: limit, within: settings.unverifiedBodyDeadline)
        }
        router.add(middleware: JSONErrorMiddleware(routes: routes))
        router.add(middleware: HostCheck(listenHost: settings.host))
        router.get("healthz") { _, _ in text(.ok, "ok\n") }
        router.get("readyz") { _, _ in
            let (ready, reason) = await control.readiness()
            return ready ? json(.ok, ["ready": true, "reason": reason]) : json(.serviceUnavailable, ["ready": false, "error": reason])
        }
        router.get("metrics") { _, _ in
            var buffer: [UInt8] = []
            metrics.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("api/v1/status") { _, _ in
            let status = await control.status()
            let data = (try? JSONOutput.encoder().encode(status)) ?? Data("{}".utf8)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/") { _, _ in
            text(.ok, StatusPage.render(await control.status(), repository: settings.repository), type: "text/html; charset=utf-8")
        }
        router.post("hooks/git") { request, context -> Response in
            let address = client(request, context)
            let verdict = settings.webhook?.headerVerdict(request.headers)
                ?? .refused("no webhook secret is configured; see bulwark run --help")
            return try await guarded("/hooks/git", "webhook", from: address, verdict: verdict,
                                     unguessable: settings.webhook?.unguessable ?? false) {
                guard let verifier = settings.webhook else {
                    throw HTTPError(.unauthorized, message: "no webhook secret is configured; see bulwark run --help")
                }
                let held = try admit(verdict, "webhook", from: address)
                defer { if held { unverified.leave(from: address) } }
                let body = held ? try await unverifiedBody(request) : try await collect(request)
                try accept(verifier.check(headers: request.headers, body: body))
                await control.sourcePushed(body: body, relayed: request.headers[HTTPField.Name("X-Bulwark-Relayed")!] != nil)
                return json(.accepted, ["status": "fetching"])
            }
        }
        router.post("api/v1/findings") { request, context -> Response in
            let address = client(request, context)
            let verdict = settings.findings.headerVerdict(request.headers)
            return try await guarded("/api/v1/findings", "findings", from: address, verdict: verdict,
                                     unguessable: settings.findings.unguessable(request.headers)) {
                // A scan's XML results run to several MiB (oscap's ARF for SSG's content is 8 MB): a
                // request that says XML and carries the bearer token, checked before any of the body
                // is read, may send up to FindingParser.maxXMLSize; every other one 1 MiB.
                let held = try admit(verdict, "findings", from: address)
                defer { if held { unverified.leave(from: address) } }
                let large = FindingParser.isXMLContentType(request.headers[.contentType])
                    && settings.findings.acceptsBearer(request.headers)
                // Each is held whole and parsed: a few at a time, so that a burst of them cannot take
                // the daemon's memory (the others are asked to come back).
                if large, !largeBodies.enter() {
                    throw HTTPError(.serviceUnavailable, headers: [.retryAfter: "5"],
                                    message: "\(largeBodies.limit) large results are being read; send this one again shortly")
                }
                defer { if large { largeBodies.leave() } }
                let limit = large ? FindingParser.maxXMLSize : maxBody
                let body = held ? try await unverifiedBody(request, upTo: limit) : try await collect(request, upTo: limit)
                try accept(settings.findings.check(headers: request.headers, body: body))
                // Parsed and matched here, on the request's task: the daemon's actor only takes
                // the matched resources, so a large document never holds up readiness or a cycle.
                // The content type decides the format where it is specific (application/sarif+json,
                // application/x-ndjson), else the document's shape.
                let document: (format: FindingFormat, findings: [Finding])
                do {
                    document = try FindingParser.document(body, contentType: request.headers[.contentType])
                } catch let error as FindingError {
                    throw HTTPError(error.exceedsLimit ? .contentTooLarge : .badRequest, message: error.description)
                }
                if let refusal = settings.findings.sourceRefusal(headers: request.headers, findings: document.findings) {
                    throw HTTPError(.forbidden, message: refusal)
                }
                let (matched, report) = await control.findingsArrived(document.findings, format: document.format)
                logger.info("findings received", metadata: ["findings": .stringConvertible(document.findings.count),
                                                            "format": .string(document.format.rawValue),
                                                            "matched": .stringConvertible(matched)])
                let encoded = report.flatMap { try? JSONOutput.encoder().encode($0) }
                var answer = encoded.flatMap { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] } ?? [:]
                answer["findings"] = document.findings.count
                answer["matched"] = matched
                answer["format"] = document.format.rawValue
                let data = (try? JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])) ?? Data("{}".utf8)
                return Response(status: .accepted, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(bytes: Array(data) + [0x0A])))
            }
        }
        return router
    }

    /// `collect(_:upTo:)`, or 408 when the whole body has not arrived within `deadline`.
    static func collect(_ request: Request, upTo limit: Int, within deadline: Duration) async throws -> [UInt8] {
        try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            group.addTask { try await collect(request, upTo: limit) }
            group.addTask {
                try await Task.sleep(for: deadline)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let body = first else {
                throw HTTPError(.requestTimeout, message: "the body did not arrive within \(deadline) of its headers")
            }
            return body
        }
    }

    static func collect(_ request: Request, upTo limit: Int = maxBody) async throws -> [UInt8] {
        do {
            return Array(try await request.body.collect(upTo: limit).readableBytesView)
        } catch let error as HTTPError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch is NIOTooManyBytesError {
            throw HTTPError(.contentTooLarge, message: "the body is larger than \(limit) bytes"
                            + (limit < FindingParser.maxXMLSize ? " (XML results with the bearer token may be up to \(FindingParser.maxXMLSize))" : ""))
        } catch {
            // A malformed chunked encoding, a connection that ended mid-body: the request, not its size.
            throw HTTPError(.badRequest, message: "the body could not be read: it is malformed or ended early")
        }
    }

    static func text(_ status: HTTPResponse.Status, _ body: String, type: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func json(_ status: HTTPResponse.Status, _ object: [String: any Sendable], headers: HTTPFields = [:]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: Array(data) + [0x0A])))
    }
}

/// The request context of the daemon's server: hummingbird's basic one, and the client's address
/// (the unverified-body budget is also counted per address).
public struct ServerContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// Who the unverified-body budget counts this client as: its IPv4 address, or its IPv6 /64
    /// (one host is usually given a whole /64), or "" when there is none (a test's in-process
    /// channel).
    var address: String { remoteAddress?.ipAddress.map(Self.budgetKey) ?? "" }

    /// `a.b.c.d` as it is; an IPv6 address as its /64, an IPv4-mapped one (`::ffff:a.b.c.d`) as
    /// the IPv4 address.
    package static func budgetKey(_ ip: String) -> String {
        guard ip.contains(":") else { return ip }
        var raw = in6_addr()
        guard inet_pton(AF_INET6, ip, &raw) == 1 else { return ip }
        let bytes = withUnsafeBytes(of: raw) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            return bytes[12...].map { String($0) }.joined(separator: ".")
        }
        let hex = Array("0123456789abcdef".utf8)
        let groups = stride(from: 0, to: 8, by: 2).map { index in
            String(decoding: [bytes[index] >> 4, bytes[index] & 0xf, bytes[index + 1] >> 4, bytes[index + 1] & 0xf].map { hex[Int($0)] },
                   as: UTF8.self)
        }
        return groups.joined(separator: ":") + "::/64"
    }
}

/// DNS rebinding: a web page whose name is made to resolve to 127.0.0.1 could read the status,
/// metrics and open drift of a loopback daemon from the user's browser, which sends the page's
/// name as `Host`. While the server listens on loopback, a `GET` (or `HEAD`) whose `Host` is
/// neither an IP address, `localhost`, nor the `--listen` host gets 421. Listening on another
/// address, the names it is reached by cannot be known: every `Host` is taken. The POST routes
/// are authenticated and not checked.
struct HostCheck<Context: RequestContext>: RouterMiddleware {
    /// Nil when every Host is taken; else the names taken besides IP addresses.
    let names: Set<String>?

    init(listenHost: String) {
        let host = listenHost.lowercased()
        names = ServerSettings.isLoopback(host) ? ["localhost", HostCheck.name(host)] : nil
    }

    /// The host part of a `Host` value: no port, no brackets, no final dot, lower case.
    static func name(_ authority: String) -> String {
        var host = Substring(authority.lowercased())
        if host.hasPrefix("[") {
            host = host.dropFirst().prefix { $0 != "]" }
        } else if let colon = host.lastIndex(of: ":"), !host[..<colon].contains(":") {
            host = host[..<colon]
        }
        if host.hasSuffix(".") { host = host.dropLast() }
        return String(host)
    }

    func allows(_ authority: String?) -> Bool {
        guard let names, let authority else { return true }
        let host = Self.name(authority)
        return TrustedProxies.bytes(host) != nil || names.contains(host)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .get || request.method == .head, !allows(request.head.authority) {
            throw HTTPError(.misdirectedRequest, message: "this server answers requests for its IP address, localhost or its "
                            + "--listen host only (the Host header named another: a page rebinding its name to this address?)")
        }
        return try await next(request, context)
    }
}

/// Every error the routes throw, and a route not found, as `{"error": "..."}`; a known path
/// asked with a method it does not serve is 405 with `Allow`.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: [String: [HTTPRequest.Method]]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let path = request.uri.path
            if error.status == .notFound, let allowed = routes[path], !allowed.contains(request.method) {
                return StatusServer.json(.methodNotAllowed, ["error": "\(request.method.rawValue) is not allowed on \(path)"],
                                         headers: [.allow: allowed.map(\.rawValue).joined(separator: ", ")])
            }
            return StatusServer.json(error.status, ["error": error.body ?? error.status.reasonPhrase], headers: error.headers)
        } catch let error as any HTTPResponseError {
            return StatusServer.json(error.status, ["error": error.status.reasonPhrase])
        } catch {
            return StatusServer.json(.internalServerError, ["error": "internal error"])
        }
    }
}
