public import AsyncHTTPClient
internal import NIOCore
internal import NIOHTTP1
internal import Synchronization

/// The process's one HTTP client (async-http-client), shared by every caller (the AWS adapter,
/// the notification outbox), so connections are pooled across cycles and there is one place to
/// shut it down. It keeps trying to connect for at most 3 s, so an unreachable endpoint fails in
/// seconds, not minutes, and never follows a redirect (a receiver or endpoint that redirects
/// would send a signed request somewhere the policy did not name).
public enum HTTP {
    /// The process's client.
    public static let shared = SharedHTTPClient()

    public static var client: HTTPClient { shared.client }
    public static var isRunning: Bool { shared.isRunning }

    /// Shuts the process's client down; see `SharedHTTPClient.shutdown`.
    public static func shutdown() async throws { try await shared.shutdown() }

    /// Sends one request on the process's client; see `SharedHTTPClient.send`.
    public static func send(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: [UInt8] = [],
        timeout: Duration, maxBody: Int = 1 << 20
    ) async throws -> SharedHTTPClient.Response {
        try await shared.send(method, url, headers: headers, body: body, timeout: timeout, maxBody: maxBody)
    }
}

/// An async-http-client made on first use with Bulwark's settings, and shut down once. `HTTP.shared`
/// is the process's; a test makes its own so that shutting it down cannot cut another test's request.
public final class SharedHTTPClient: Sendable {
    private let state = Mutex<HTTPClient?>(nil)

    public init() {}

    /// The client, made on first use (again after `shutdown`).
    public var client: HTTPClient {
        state.withLock { current in
            if let current { return current }
            var configuration = HTTPClient.Configuration()
            configuration.timeout = .init(connect: .seconds(3), read: .seconds(30))
            configuration.redirectConfiguration = .disallow
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            current = client
            return client
        }
    }

    /// Whether the client exists now (made and not shut down).
    public var isRunning: Bool { state.withLock { $0 != nil } }

    /// Shuts the shared client down, closing its pooled connections; the next use makes a new one.
    /// Called once when the process is done with HTTP (a command's end, the daemon's shutdown).
    public func shutdown() async throws {
        let client = state.withLock { current in
            defer { current = nil }
            return current
        }
        try await client?.shutdown()
    }

    /// An answer: the status, its reason phrase, and at most `maxBody` bytes of body.
    public struct Response: Sendable {
        public var status: Int
        public var reason: String
        public var body: [UInt8]
    }

    /// Sends one request on the shared client and collects the answer's body (at most `maxBody`
    /// bytes: a longer body fails the request). Header names are sent as given, in order.
    public func send(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: [UInt8] = [],
        timeout: Duration, maxBody: Int = 1 << 20
    ) async throws -> Response {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if !body.isEmpty || method != "GET" { request.body = .bytes(ByteBuffer(bytes: body)) }
        let (seconds, attoseconds) = timeout.components
        let response = try await client.execute(request, timeout: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
        let bytes = Array(try await response.body.collect(upTo: maxBody).readableBytesView)
        return Response(status: Int(response.status.code), reason: response.status.reasonPhrase, body: bytes)
    }
}
