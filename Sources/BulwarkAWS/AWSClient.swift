internal import AsyncHTTPClient
internal import BulwarkCore
internal import BulwarkHTTP
internal import Foundation
internal import NIOCore
internal import NIOHTTP1

/// An error from AWS or on the way to it: AWS's error code and message, and the operation.
/// Never holds credentials.
public struct AWSError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var status: Int?
    public var operation: String?
    /// For a failure to get credentials: the source in the chain that failed.
    public var source: AWSCredentialSource?

    public init(code: String, message: String, status: Int? = nil, operation: String? = nil, source: AWSCredentialSource? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.operation = operation
        self.source = source
    }

    public var description: String {
        (source.map { "AWS credentials from \($0): " } ?? "") + (operation.map { "\($0): " } ?? "") + "\(code): \(message)"
            + (status.map { " (HTTP \($0))" } ?? "")
    }

    /// Throttling and server-side failures are worth another try; other 4xx answers are not, and
    /// neither is an endpoint that cannot be reached (the HTTP client already kept trying to
    /// connect for its whole connect timeout).
    var isRetryable: Bool {
        if let status, status >= 500 || status == 429 { return true }
        return Self.retryableCodes.contains(code)
    }

    /// AWS or this machine ran short, not anything in the request: AWS throttled it (429, or
    /// `throttlingCodes`), the service was unavailable (503, `SlowDown`, `ServiceUnavailable`),
    /// or it could not be sent for want of this machine's resources (`Shortage`, counted there).
    /// A guard that meets one has judged nothing: `GuardVerdict.unjudged`, never a block.
    var isShortage: Bool {
        if let status, status == 429 || status == 503 { return true }
        return Self.throttlingCodes.contains(code) || local
    }

    /// It could not be sent for want of this machine's resources (`Shortage.codes`).
    var local = false

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
        "SlowDown", "RequestThrottled", "RequestThrottledException", "ServiceUnavailable",
    ]

    /// Worth another try: a shortage (`throttlingCodes`), or a request AWS could not finish.
    static let retryableCodes = throttlingCodes.union(["PriorRequestNotComplete", "RequestTimeout", "InternalError"])
}

/// The AWS services Bulwark speaks to, with their protocol details.
enum AWSService: String, Sendable {
    case ec2, iam, sts, s3, s3control

    /// The name in the signature's scope.
    var signingName: String { self == .s3control ? "s3" : rawValue }
    /// API version of the query protocol.
    var version: String? {
        switch self {
        case .ec2: "2016-11-15"
        case .iam: "2010-05-08"
        case .sts: "2011-06-15"
        case .s3, .s3control: nil
        }
    }
}

/// SigV4-signed requests to AWS over async-http-client: the query protocol (EC2, IAM, STS) and
/// REST-XML (S3, S3 Control). Throttling, 5xx answers and failed connections are retried with
/// exponential backoff and full jitter; other errors carry AWS's code and message.
struct AWSClient: Sendable {
    var region: String
    /// `scheme://host[:port]` that every service is sent to (moto, LocalStack, a VPC endpoint).
    var endpoint: String?
    /// Nil only for the one unsigned call, STS AssumeRoleWithWebIdentity.
    var credentials: AWSCredentials?
    var attempts = 4
    var baseDelay: Duration = .milliseconds(200)
    /// Throttling, 5xx answers and failed connections: `attempts` in all, full jitter from `baseDelay`.
    var retry: RetryPolicy { RetryPolicy(base: baseDelay, cap: .seconds(20), maxAttempts: attempts, jitter: .full) }
    var timeout: TimeAmount = .seconds(30)

    /// The process's one HTTP client (`HTTP.client`): connections are pooled across cycles, an
    /// unreachable endpoint fails a resource in seconds, redirects are not followed.
    static var http: HTTPClient { HTTP.client }

    /// Query-protocol call: a form-encoded POST of `Action`, `Version` and `parameters`.
    func query(_ service: AWSService, _ action: String, _ parameters: [(String, String)] = []) async throws(AWSError) -> XMLElement {
        let form = ([("Action", action), ("Version", service.version ?? "")] + parameters)
            .map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        let response = try await send(service, operation: action, method: "POST", path: "/",
                                      headers: ["content-type": "application/x-www-form-urlencoded; charset=utf-8"],
                                      body: Array(form.utf8))
        guard let xml = response.xml else {
            throw AWSError(code: "MalformedResponse", message: "the answer is not XML", status: response.status, operation: action)
        }
        return xml
    }

    /// REST-XML call. A 404 is returned, not thrown, when `allowNotFound` (absent configuration).
    func rest(
        _ service: AWSService, _ operation: String, method: String, path: String, query: [(String, String)] = [],
        headers: [String: String] = [:], body: [UInt8] = [], allowNotFound: Bool = false
    ) async throws(AWSError) -> (status: Int, xml: XMLElement?) {
        var headers = headers
        if !body.isEmpty {
            headers["content-type"] = "application/xml"
            headers["content-md5"] = SigV4.md5Base64(body)
        }
        headers["x-amz-content-sha256"] = SigV4.sha256Hex(body)
        return try await send(service, operation: operation, method: method, path: path, query: query, headers: headers,
                              body: body, allowNotFound: allowNotFound)
    }

    /// Where a service is reached: scheme, host (with a non-default port) and the host-style
    /// account prefix S3 Control uses on AWS itself.
    func location(_ service: AWSService, account: String? = nil) -> (scheme: String, host: String) {
        if let endpoint, let url = URLComponents(string: endpoint), let host = url.host {
            return (url.scheme ?? "https", url.port.map { "\(host):\($0)" } ?? host)
        }
        switch service {
        case .iam: return ("https", "iam.amazonaws.com")
        case .s3control: return ("https", "\(account.map { "\($0)." } ?? "")s3-control.\(region).amazonaws.com")
        case .ec2, .sts, .s3: return ("https", "\(service.rawValue).\(region).amazonaws.com")
        }
    }

    /// Whether `error`, a request that could not be sent, failed for want of this machine's
    /// resources (`Shortage.codes`, read from NIO's errors here and from the others by
    /// `Shortage.isShortage`); counted (`Shortage.note`) when it did.
    static func noteShortage(_ error: any Error) -> Bool {
        if let error = error as? IOError {
            Shortage.note(error.errnoCode)
            return Shortage.codes.contains(error.errnoCode)
        }
        Shortage.note(error)
        return Shortage.isShortage(error)
    }

    private func send(
        _ service: AWSService, operation: String, method: String, path: String, query: [(String, String)] = [],
        headers: [String: String], body: [UInt8], allowNotFound: Bool = false
    ) async throws(AWSError) -> (status: Int, xml: XMLElement?) {
        let (scheme, host) = location(service, account: headers["x-amz-account-id"])
        let signer = credentials.map { SigV4(credentials: $0, region: service == .iam ? "us-east-1" : region, service: service.signingName) }
        let queryText = query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        let url = "\(scheme)://\(host)\(path)" + (queryText.isEmpty ? "" : "?\(queryText)")
        let policy = retry
        return try await policy.run(retryable: { (failure: AWSError) in failure.isRetryable }) { (_: Int) async throws(AWSError) -> (status: Int, xml: XMLElement?) in
            let signed = signer?.sign(method: method, host: host, path: path, query: query, headers: headers, body: body)
                ?? headers.merging(["host": host]) { $1 }
            var request = HTTPClientRequest(url: url)
            request.method = HTTPMethod(rawValue: method)
            for (name, value) in signed.sorted(by: { $0.key < $1.key }) {
                request.headers.add(name: name == "host" ? "Host" : name, value: value)
            }
            request.body = .bytes(ByteBuffer(bytes: body))
            let failure: AWSError
            do {
                let response = try await Self.http.execute(request, timeout: timeout)
                let bytes = Array(try await response.body.collect(upTo: 32 << 20).readableBytesView)
                let status = Int(response.status.code)
                let xml = bytes.isEmpty ? nil : XMLElement.parse(bytes)
                if (200..<300).contains(status) || (allowNotFound && status == 404) { return (status, xml) }
                failure = AWSError(code: xml?.find("Code")?.text ?? "HTTP\(status)",
                                   message: xml?.find("Message")?.text ?? response.status.reasonPhrase,
                                   status: status, operation: operation)
            } catch {
                var unreachable = AWSError(code: "Unreachable", message: "\(host): \(error)", operation: operation)
                unreachable.local = Self.noteShortage(error)
                failure = unreachable
            }
            throw failure
        }
    }
}
