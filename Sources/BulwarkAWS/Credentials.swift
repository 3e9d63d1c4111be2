internal import AsyncHTTPClient
internal import BulwarkCore
import Foundation
internal import NIOCore
internal import NIOHTTP1
internal import Synchronization

/// A source in the credential chain, named in errors so an operator knows where to look.
/// Holds names and paths, never a secret.
public enum AWSCredentialSource: Sendable, Hashable, CustomStringConvertible {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    case environment
    /// A profile of the shared files (`~/.aws/credentials`, `~/.aws/config`).
    case profile(String)
    /// STS AssumeRole of a role, with credentials from another source.
    case assumeRole(String)
    /// STS AssumeRoleWithWebIdentity of a role with a token file (EKS/IRSA).
    case webIdentity(String)
    /// The EC2 instance metadata service (IMDSv2) at an endpoint.
    case instanceMetadata(String)
    /// The chain as a whole: no source had credentials.
    case chain

    public var description: String {
        switch self {
        case .environment: "the environment"
        case .profile(let name): "profile '\(name)'"
        case .assumeRole(let role): "AssumeRole of \(role)"
        case .webIdentity(let role): "web identity for \(role)"
        case .instanceMetadata(let endpoint): "the instance metadata service at \(endpoint)"
        case .chain: "the credential chain"
        }
    }
}

/// Credentials resolved as the AWS SDKs resolve them, in the SDKs' order:
///
/// 1. the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), skipped
///    when the target names a profile (as botocore skips it for an explicit profile);
/// 2. the profile (the target's `profile`, else `AWS_PROFILE`, else `default`) of the shared files
///    (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, `AWS_CONFIG_FILE` or
///    `~/.aws/config`) when it has `role_arn`: AssumeRole through STS with credentials from
///    `source_profile`, `credential_source` (`Environment`, `Ec2InstanceMetadata`) or
///    `web_identity_token_file`;
/// 3. web identity from the environment (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`,
///    `AWS_ROLE_SESSION_NAME`): AssumeRoleWithWebIdentity, as on EKS with IRSA;
/// 4. the profile's static keys;
/// 5. the EC2 instance metadata service, IMDSv2 only (a session token first; never a request
///    without one), at `AWS_EC2_METADATA_SERVICE_ENDPOINT` or 169.254.169.254, unless
///    `AWS_EC2_METADATA_DISABLED=true`.
///
/// Then, when the target names `roleArn`, that role is assumed with what the chain found.
/// Temporary credentials are cached in `cache` and fetched again `refreshWindow` before they
/// expire, timed on the monotonic clock. A file named by a variable that does not exist, a
/// profile that is named but missing, a `source_profile` loop or half a key pair is an error
/// naming the source and what to do; a secret is never in an error.
public struct AWSCredentialChain: Sendable {
    public var environment: [String: String]
    /// The target's profile: named explicitly, so the environment's keys are not used.
    public var profile: String?
    /// A role the target assumes with the credentials the chain found.
    public var roleArn: String?
    public var externalID: String?
    public var region: String
    /// The target's endpoint (policy's choice). STS is reached there only when it is this
    /// machine (a stand-in such as moto); else at `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`
    /// (the operator's choice), else the regional endpoint: a web identity token is a bearer
    /// token, and a policy that named another host would have been handed it to replay at STS.
    public var endpoint: String?
    public var cache: AWSCredentialCache
    /// How long before expiry temporary credentials are fetched again (the SDKs use 5 minutes).
    public var refreshWindow: Duration = .seconds(300)
    /// How long one request to the instance metadata service may take.
    public var metadataTimeout: Duration = .seconds(2)

    public init(environment: [String: String], profile: String? = nil, roleArn: String? = nil, externalID: String? = nil,
                region: String, endpoint: String? = nil, cache: AWSCredentialCache = .shared) {
        self.environment = environment
        self.profile = profile
        self.roleArn = roleArn
        self.externalID = externalID
        self.region = region
        self.endpoint = endpoint
        self.cache = cache
    }

    /// Profiles may name source profiles at most this deep.
    static let maximumDepth = 16
    /// A shared file larger than this is refused, not read.
    static let maximumFileSize = 1 << 20

    /// The credentials to sign with.
    public func resolve() async throws(AWSError) -> AWSCredentials {
        try await resolveWithKeys().credentials
    }

    /// The credentials to sign with, and the access key ids of every credential on the way to
    /// them: a static key, or the key a role was assumed with (through any `source_profile`s)
    /// and the role's temporary key. Deactivating any of them cuts Bulwark off from AWS.
    func resolveWithKeys() async throws(AWSError) -> (credentials: AWSCredentials, keyIDs: Set<String>) {
        let base = try await resolveBase()
        guard let roleArn else { return (base.credentials, base.keyIDs) }
        let sessionName = "bulwark-\(Int(Date().timeIntervalSince1970))"
        let assumed = try await assumeRole(roleArn, with: base, sessionName: sessionName, externalID: externalID, durationSeconds: nil)
        return (assumed, base.keyIDs.union([assumed.accessKeyID]))
    }

    /// Credentials and a key naming where they came from (for the cache; never a secret).
    struct Found: Sendable {
        var credentials: AWSCredentials
        var key: String
        /// The access key ids of these credentials and of those they were obtained with.
        var keyIDs: Set<String>

        init(credentials: AWSCredentials, key: String, via source: Found? = nil) {
            self.credentials = credentials
            self.key = key
            keyIDs = (source?.keyIDs ?? []).union([credentials.accessKeyID])
        }
    }

    private func resolveBase() async throws(AWSError) -> Found {
        if profile == nil, let found = try environmentCredentials(required: false) { return found }
        let files = try SharedFiles.load(environment)
        let name = profile ?? nonEmpty("AWS_PROFILE") ?? nonEmpty("AWS_DEFAULT_PROFILE") ?? "default"
        let named = profile != nil || nonEmpty("AWS_PROFILE") != nil || nonEmpty("AWS_DEFAULT_PROFILE") != nil
        let settings = files.profiles[name]
        if settings == nil, named {
            throw AWSError(code: "ProfileNotFound",
                           message: "no [\(name)] in \(files.credentialsPath) and no [profile \(name)] in \(files.configPath); "
                               + "add the profile or name one that exists", source: .profile(name))
        }
        if let settings, settings["role_arn"] != nil {
            return try await profileCredentials(name, files: files, visited: [])
        }
        if let tokenFile = nonEmpty("AWS_WEB_IDENTITY_TOKEN_FILE") {
            guard let role = nonEmpty("AWS_ROLE_ARN") else {
                throw AWSError(code: "IncompleteWebIdentity",
                               message: "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; set both (EKS sets both for a "
                                   + "service account annotated with eks.amazonaws.com/role-arn)", source: .webIdentity("?"))
            }
            return try await webIdentity(role: role, tokenFile: tokenFile, sessionName: nonEmpty("AWS_ROLE_SESSION_NAME"))
        }
        if let settings {
            if let found = try staticCredentials(settings, profile: name) { return found }
            if named {
                throw AWSError(code: "NoCredentials",
                               message: "the profile has no aws_access_key_id and aws_secret_access_key, no role_arn and no "
                                   + "web_identity_token_file; add one of them", source: .profile(name))
            }
        }
        if metadataDisabled {
            throw AWSError(code: "NoCredentials",
                           message: "none found: AWS_ACCESS_KEY_ID is unset, profile '\(name)' is not in \(files.credentialsPath) or "
                               + "\(files.configPath), AWS_WEB_IDENTITY_TOKEN_FILE is unset and AWS_EC2_METADATA_DISABLED is set; set "
                               + "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, add a profile, or run with an instance role",
                           source: .chain)
        }
        return try await instanceMetadata()
    }

    private func nonEmpty(_ name: String) -> String? {
        environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    private var metadataDisabled: Bool { environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true" }

    /// The environment's key pair; half a pair is an error, not a reason to look elsewhere.
    private func environmentCredentials(required: Bool) throws(AWSError) -> Found? {
        let id = nonEmpty("AWS_ACCESS_KEY_ID"), secret = nonEmpty("AWS_SECRET_ACCESS_KEY")
        switch (id, secret) {
        case (let id?, let secret?):
            return Found(credentials: AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: nonEmpty("AWS_SESSION_TOKEN")),
                         key: "env:\(id)")
        case (nil, nil) where !required:
            return nil
        case (nil, nil):
            throw AWSError(code: "NoCredentials", message: "credential_source = Environment, but AWS_ACCESS_KEY_ID and "
                               + "AWS_SECRET_ACCESS_KEY are unset; set both", source: .environment)
        case (_?, nil):
            throw AWSError(code: "PartialCredentials", message: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both or "
                               + "neither", source: .environment)
        case (nil, _?):
            throw AWSError(code: "PartialCredentials", message: "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both or "
                               + "neither", source: .environment)
        }
    }

    private func staticCredentials(_ settings: [String: String], profile: String) throws(AWSError) -> Found? {
        let id = settings["aws_access_key_id"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = settings["aws_secret_access_key"].flatMap { $0.isEmpty ? nil : $0 }
        switch (id, secret) {
        case (let id?, let secret?):
            let token = settings["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
            return Found(credentials: AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token), key: "profile:\(profile):\(id)")
        case (nil, nil):
            return nil
        default:
            throw AWSError(code: "PartialCredentials", message: "the profile has only one of aws_access_key_id and aws_secret_access_key; "
                               + "set both", source: .profile(profile))
        }
    }

    /// A profile's credentials. `visited` holds the profiles on the way here: a `source_profile`
    /// that leads back is a loop and refused (a profile may name itself only when it has keys).
    private func profileCredentials(_ name: String, files: SharedFiles, visited: [String]) async throws(AWSError) -> Found {
        guard let settings = files.profiles[name] else {
            throw AWSError(code: "ProfileNotFound",
                           message: "source_profile '\(name)' (from '\(visited.last ?? name)') is in neither \(files.credentialsPath) nor "
                               + "\(files.configPath); add it or fix source_profile", source: .profile(visited.last ?? name))
        }
        guard visited.count < Self.maximumDepth else {
            throw AWSError(code: "ProfileChainTooLong", message: "more than \(Self.maximumDepth) profiles chained by source_profile",
                           source: .profile(name))
        }
        guard let role = settings["role_arn"] else {
            if let found = try staticCredentials(settings, profile: name) { return found }
            throw AWSError(code: "NoCredentials",
                           message: "the profile has no aws_access_key_id and aws_secret_access_key and no role_arn; add them",
                           source: .profile(name))
        }
        let source: Found
        if let sourceProfile = settings["source_profile"] {
            if sourceProfile == name, let own = try staticCredentials(settings, profile: name) {
                source = own
            } else if sourceProfile == name || visited.contains(sourceProfile) {
                let path = (visited + [name, sourceProfile]).joined(separator: " -> ")
                throw AWSError(code: "ProfileLoop", message: "source_profile leads back to a profile already on the way (\(path)); end "
                                   + "the chain at a profile with aws_access_key_id and aws_secret_access_key", source: .profile(name))
            } else if let sourceSettings = files.profiles[sourceProfile], let keys = try staticCredentials(sourceSettings, profile: sourceProfile) {
                // The SDKs take a source profile's own keys before its role_arn.
                source = keys
            } else {
                source = try await profileCredentials(sourceProfile, files: files, visited: visited + [name])
            }
        } else if let credentialSource = settings["credential_source"] {
            switch credentialSource {
            case "Environment":
                guard let found = try environmentCredentials(required: true) else {
                    throw AWSError(code: "NoCredentials", message: "AWS_ACCESS_KEY_ID is unset", source: .environment)
                }
                source = found
            case "Ec2InstanceMetadata":
                guard !metadataDisabled else {
                    throw AWSError(code: "NoCredentials", message: "credential_source = Ec2InstanceMetadata but AWS_EC2_METADATA_DISABLED "
                                       + "is set; unset it or use another credential_source", source: .profile(name))
                }
                source = try await instanceMetadata()
            default:
                throw AWSError(code: "UnsupportedCredentialSource",
                               message: "credential_source '\(credentialSource)' is not supported; use Environment, Ec2InstanceMetadata "
                                   + "or source_profile", source: .profile(name))
            }
        } else if let tokenFile = settings["web_identity_token_file"] {
            return try await webIdentity(role: role, tokenFile: tokenFile, sessionName: settings["role_session_name"])
        } else {
            throw AWSError(code: "NoCredentials", message: "role_arn needs source_profile, credential_source or web_identity_token_file; "
                               + "add one", source: .profile(name))
        }
        let duration = try settings["duration_seconds"].map { text throws(AWSError) -> Int in
            guard let seconds = Int(text), (900...43_200).contains(seconds) else {
                throw AWSError(code: "InvalidProfile", message: "duration_seconds must be 900 to 43200, got '\(text)'", source: .profile(name))
            }
            return seconds
        }
        return Found(credentials: try await assumeRole(role, with: source, sessionName: settings["role_session_name"]
                                                          ?? "bulwark-\(Int(Date().timeIntervalSince1970))",
                                                      externalID: settings["external_id"], durationSeconds: duration),
                     key: "assume:\(role):\(source.key)", via: source)
    }

    // MARK: - STS

    var stsEndpoint: String? {
        endpoint.flatMap { AWSAdapter.isLoopback($0) ? $0 : nil } ?? nonEmpty("AWS_ENDPOINT_URL_STS") ?? nonEmpty("AWS_ENDPOINT_URL")
    }

    private func assumeRole(_ role: String, with source: Found, sessionName: String, externalID: String?,
                            durationSeconds: Int?) async throws(AWSError) -> AWSCredentials {
        let key = "assume:\(role):\(externalID ?? ""):\(source.key)"
        let chain = self
        return try await cache.credentials(for: key, refreshWindow: refreshWindow) { () async throws(AWSError) -> (AWSCredentials, Date) in
            var parameters = [("RoleArn", role), ("RoleSessionName", sessionName)]
            if let externalID { parameters.append(("ExternalId", externalID)) }
            if let durationSeconds { parameters.append(("DurationSeconds", String(durationSeconds))) }
            let client = AWSClient(region: chain.region, endpoint: chain.stsEndpoint, credentials: source.credentials)
            do throws(AWSError) {
                return try Self.temporaryCredentials(try await client.query(.sts, "AssumeRole", parameters), source: .assumeRole(role))
            } catch {
                var failure = error
                failure.source = .assumeRole(role)
                failure.message += "; check that the role exists and trusts the source credentials"
                throw failure
            }
        }
    }

    private func webIdentity(role: String, tokenFile: String, sessionName: String?) async throws(AWSError) -> Found {
        let key = "web-identity:\(role):\(tokenFile)"
        let chain = self
        let credentials = try await cache.credentials(for: key, refreshWindow: refreshWindow) { () async throws(AWSError) -> (AWSCredentials, Date) in
            // Read on every fetch: the kubelet rotates the projected token in place.
            guard let data = FileManager.default.contents(atPath: tokenFile) else {
                throw AWSError(code: "TokenFileUnreadable",
                               message: "the token file \(tokenFile) does not exist or cannot be read; check AWS_WEB_IDENTITY_TOKEN_FILE "
                                   + "(or web_identity_token_file) and the service account's token volume", source: .webIdentity(role))
            }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty, token.utf8.count <= 20_000 else {
                throw AWSError(code: "TokenFileUnreadable", message: "the token file \(tokenFile) is empty or larger than 20,000 bytes",
                               source: .webIdentity(role))
            }
            let parameters = [("RoleArn", role), ("RoleSessionName", sessionName ?? "bulwark-\(Int(Date().timeIntervalSince1970))"),
                              ("WebIdentityToken", token)]
            let client = AWSClient(region: chain.region, endpoint: chain.stsEndpoint, credentials: nil)
            do throws(AWSError) {
                return try Self.temporaryCredentials(try await client.query(.sts, "AssumeRoleWithWebIdentity", parameters),
                                                     source: .webIdentity(role))
            } catch {
                var failure = error
                failure.source = .webIdentity(role)
                failure.message += "; check the role's trust policy for the identity provider and the token's audience"
                throw failure
            }
        }
        return Found(credentials: credentials, key: key)
    }

    /// The `Credentials` element of an AssumeRole answer.
    static func temporaryCredentials(_ answer: XMLElement, source: AWSCredentialSource) throws(AWSError) -> (AWSCredentials, Date) {
        guard let element = answer.find("Credentials"), let id = element.value("AccessKeyId"), let secret = element.value("SecretAccessKey"),
              let token = element.value("SessionToken"), !id.isEmpty, !secret.isEmpty,
              let expiration = element.value("Expiration").flatMap(Timestamp.parse) else {
            throw AWSError(code: "MalformedResponse", message: "the answer has no complete Credentials element", source: source)
        }
        return (AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token), expiration)
    }

    // MARK: - Instance metadata (IMDSv2)

    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the IPv4 (or, with
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`, IPv6) link-local address.
    var metadataEndpoint: String {
        if let endpoint = nonEmpty("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            return endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        }
        return environment["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"]?.lowercased() == "ipv6" ? "http://[fd00:ec2::254]" : "http://169.254.169.254"
    }

    private func instanceMetadata() async throws(AWSError) -> Found {
        let endpoint = metadataEndpoint
        let source = AWSCredentialSource.instanceMetadata(endpoint)
        guard let url = URLComponents(string: endpoint), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false,
              url.path.isEmpty, url.query == nil, url.user == nil else {
            throw AWSError(code: "InvalidEndpoint", message: "AWS_EC2_METADATA_SERVICE_ENDPOINT must be scheme://host[:port], such as "
                               + "http://169.254.169.254", source: source)
        }
        let key = "imds:\(endpoint)"
        let timeout = TimeAmount.nanoseconds(Int64(metadataTimeout.timeInterval * 1e9))
        let credentials = try await cache.credentials(for: key, refreshWindow: refreshWindow) { () async throws(AWSError) -> (AWSCredentials, Date) in
            // IMDSv2: a session token first. A service that will not give one is refused, never
            // asked without one (IMDSv1 answers any process that can reach it, SSRF included).
            let token = try await Self.metadata(endpoint + "/latest/api/token", method: .PUT,
                                                headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")], timeout: timeout, source: source,
                                                what: "a session token (PUT /latest/api/token)",
                                                remedy: "IMDSv1 is never used; check that the instance allows IMDSv2 and its hop limit")
            guard !token.isEmpty, token.utf8.count <= 4096, token.allSatisfy({ $0.isASCII && !$0.isNewline && $0 != "\r" }) else {
                throw AWSError(code: "MalformedResponse", message: "the session token is empty or not a header value", source: source)
            }
            let auth = [("X-aws-ec2-metadata-token", token)]
            let roles = try await Self.metadata(endpoint + "/latest/meta-data/iam/security-credentials/", method: .GET, headers: auth,
                                                timeout: timeout, source: source, what: "the instance role",
                                                remedy: "attach an IAM role (instance profile) to the instance")
            guard let role = roles.split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty,
                  role.utf8.count <= 128, role.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+=,.@_-".contains($0)) }) else {
                throw AWSError(code: "NoInstanceRole", message: "no role name in the answer; attach an IAM role (instance profile) to the "
                                   + "instance", source: source)
            }
            let document = try await Self.metadata(endpoint + "/latest/meta-data/iam/security-credentials/\(role)", method: .GET,
                                                   headers: auth, timeout: timeout, source: source, what: "the credentials of role \(role)",
                                                   remedy: "check the instance profile's role")
            struct Document: Decodable {
                var Code: String?
                var AccessKeyId: String?
                var SecretAccessKey: String?
                var Token: String?
                var Expiration: String?
            }
            guard let parsed = try? JSONDecoder().decode(Document.self, from: Data(document.utf8)) else {
                throw AWSError(code: "MalformedResponse", message: "the credentials of role \(role) are not JSON", source: source)
            }
            guard parsed.Code == nil || parsed.Code == "Success" else {
                throw AWSError(code: parsed.Code ?? "Failure", message: "the service could not give the credentials of role \(role); check "
                                   + "the instance profile", source: source)
            }
            guard let id = parsed.AccessKeyId, let secret = parsed.SecretAccessKey, let token = parsed.Token, !id.isEmpty, !secret.isEmpty,
                  let expiration = parsed.Expiration.flatMap(Timestamp.parse) else {
                throw AWSError(code: "MalformedResponse", message: "the credentials of role \(role) are incomplete", source: source)
            }
            return (AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token), expiration)
        }
        return Found(credentials: credentials, key: key)
    }

    /// One request to the metadata service: its body on 200, else an error saying what was asked
    /// (never the answer's body, which may hold credentials).
    private static func metadata(_ url: String, method: HTTPMethod, headers: [(String, String)], timeout: TimeAmount,
                                 source: AWSCredentialSource, what: String, remedy: String) async throws(AWSError) -> String {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let status: Int
        let body: [UInt8]
        do {
            let response = try await AWSClient.http.execute(request, timeout: timeout)
            status = Int(response.status.code)
            body = Array(try await response.body.collect(upTo: 64 << 10).readableBytesView)
        } catch {
            throw AWSError(code: "Unreachable", message: "asking for \(what): \(error); off EC2, configure another source or set "
                               + "AWS_EC2_METADATA_DISABLED=true", source: source)
        }
        guard status == 200 else {
            throw AWSError(code: status == 404 ? "NotFound" : "Refused", message: "asking for \(what); \(remedy)", status: status, source: source)
        }
        return String(decoding: body, as: UTF8.self)
    }
}

// MARK: - Cache

/// Temporary credentials by where they came from, each fetched again `refreshWindow` before it
/// expires (on the monotonic clock, so a wall-clock step neither keeps nor drops them early).
/// When a refresh fails while the old credentials are still valid, the old ones are used.
public final class AWSCredentialCache: Sendable {
    public static let shared = AWSCredentialCache()

    private struct Entry: Sendable {
        var credentials: AWSCredentials
        var refreshAt: ContinuousClock.Instant
        var expiresAt: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])

    public init() {}

    func credentials(for key: String, refreshWindow: Duration,
                     fetch: () async throws(AWSError) -> (AWSCredentials, Date)) async throws(AWSError) -> AWSCredentials {
        let now = ContinuousClock.now
        let cached = entries.withLock { $0[key] }
        if let cached, now < cached.refreshAt { return cached.credentials }
        let credentials: AWSCredentials, expiration: Date
        do {
            (credentials, expiration) = try await fetch()
        } catch {
            if let cached, ContinuousClock.now < cached.expiresAt { return cached.credentials }
            throw error
        }
        let remaining = expiration.timeIntervalSinceNow
        guard remaining > 0, remaining.isFinite else {
            throw AWSError(code: "ExpiredCredentials", message: "the credentials expired at \(Timestamp.format(expiration)) when given; "
                               + "check this machine's clock", source: nil)
        }
        let expiresAt = ContinuousClock.now + .milliseconds(Int64(min(remaining, 1e9) * 1000))
        entries.withLock { $0[key] = Entry(credentials: credentials, refreshAt: expiresAt - refreshWindow, expiresAt: expiresAt) }
        return credentials
    }

    /// Forgets every entry (tests; a process that knows its roles changed).
    public func removeAll() { entries.withLock { $0.removeAll() } }
}

// MARK: - Shared files

/// The profiles of the shared config and credentials files, merged (the credentials file wins).
struct SharedFiles: Sendable {
    var credentialsPath: String
    var configPath: String
    var profiles: [String: [String: String]]

    /// Reads both files. A file named by `AWS_SHARED_CREDENTIALS_FILE` or `AWS_CONFIG_FILE` must
    /// exist: a mistyped path must not silently fall through to another identity. The default
    /// paths may be absent.
    static func load(_ environment: [String: String]) throws(AWSError) -> SharedFiles {
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let credentialsVariable = environment["AWS_SHARED_CREDENTIALS_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        let configVariable = environment["AWS_CONFIG_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        let credentialsPath = expand(credentialsVariable ?? "~/.aws/credentials", home: home)
        let configPath = expand(configVariable ?? "~/.aws/config", home: home)
        var profiles: [String: [String: String]] = [:]
        if let text = try read(configPath, named: configVariable.map { _ in "AWS_CONFIG_FILE" }) {
            for (section, values) in parse(text) {
                let name: String
                if section == "default" {
                    name = section
                } else if section.hasPrefix("profile ") || section.hasPrefix("profile\t") {
                    name = section.dropFirst("profile".count).trimmingCharacters(in: .whitespaces)
                } else {
                    continue  // sso-session, services and other sections are not profiles
                }
                profiles[name, default: [:]].merge(values) { $1 }
            }
        }
        if let text = try read(credentialsPath, named: credentialsVariable.map { _ in "AWS_SHARED_CREDENTIALS_FILE" }) {
            for (section, values) in parse(text) { profiles[section, default: [:]].merge(values) { $1 } }
        }
        return SharedFiles(credentialsPath: credentialsPath, configPath: configPath, profiles: profiles)
    }

    static func expand(_ path: String, home: String) -> String {
        path == "~" ? home : path.hasPrefix("~/") ? home + path.dropFirst(1) : path
    }

    /// The file's text; nil when a default path is absent.
    private static func read(_ path: String, named variable: String?) throws(AWSError) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if let variable {
                throw AWSError(code: "FileNotFound", message: "\(variable) names \(path), which does not exist; fix the path or unset "
                                   + variable, source: .chain)
            }
            return nil
        }
        if (info.st_mode & S_IFMT) == S_IFCHR { return "" }  // /dev/null: no profiles
        guard (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= AWSCredentialChain.maximumFileSize else {
            throw AWSError(code: "InvalidFile", message: "\(path) is not a regular file of at most 1 MiB", source: .chain)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AWSError(code: "FileUnreadable", message: "\(path) cannot be read; check its permissions", source: .chain)
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The INI format of both files: `[section]` headers and `key = value` lines. Indented lines
    /// (sub-settings such as `s3 =` blocks) and comments are skipped. Never echoes a line.
    static func parse(_ text: String) -> [String: [String: String]] {
        var result: [String: [String: String]] = [:]
        var section: String?
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline) {
            if raw.first == " " || raw.first == "\t" { continue }
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let section, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            result[section, default: [:]][key] = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return result
    }
}
