public import BulwarkCore
internal import Foundation

/// The AWS adapter: security group ingress, S3 public access blocks, IAM access keys and EBS
/// default encryption, over the AWS APIs with SigV4.
///
/// Targets: `spec: {adapter: aws, region: eu-west-1, endpoint: optional URL, profile: optional,
/// roleArn: optional, externalId: optional, account: optional}`. Credentials come from where the
/// AWS SDKs look (``AWSCredentialChain``), never from the policy repository, and are never logged
/// or recorded; `roleArn` is assumed with them.
public enum AWSAdapter {
    public static let name = "aws"

    public static func definition() -> AdapterDefinition {
        var ebs = KindDefinition(name: "EBSDefaultEncryption", adapter: name, parse: EBSEncryptionDriver.parse, driver: EBSEncryptionDriver(),
                                 weakens: EBSEncryptionDriver.weakens)
        ebs.weakensNew = { property, value in EBSEncryptionDriver.weakens(property, "true", value) }
        return AdapterDefinition(
            name: name, settings: parseSettings,
            kinds: [
                KindDefinition(name: "SecurityGroupIngress", adapter: name,
                               parse: SecurityGroupDriver.parse, driver: SecurityGroupDriver()),
                KindDefinition(name: "S3PublicAccessBlock", adapter: name,
                               parse: PublicAccessBlockDriver.parse, driver: PublicAccessBlockDriver()),
                KindDefinition(name: "IAMAccessKey", adapter: name,
                               parse: AccessKeyDriver.parse, driver: AccessKeyDriver()),
                ebs,
            ])
    }

    /// Whether an endpoint's host is this machine: `localhost`, 127.0.0.0/8 or `::1`.
    static func isLoopback(_ endpoint: String) -> Bool { Loopback.isHost(of: endpoint) }

    @Sendable static func parseSettings(_ spec: SpecReader) -> AWSTargetSettings? {
        spec.allowOnly(["adapter", "region", "endpoint", "profile", "roleArn", "externalId", "account"])
        guard let reader = spec.field("region", required: true), let region = reader.string() else { return nil }
        guard !region.isEmpty, region.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) else {
            reader.fail("expected a region such as eu-west-1, got '\(region)'")
            return nil
        }
        var settings = AWSTargetSettings(region: region)
        if let reader = spec.field("endpoint"), let endpoint = reader.string() {
            guard let url = URLComponents(string: endpoint), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false,
                  url.path.isEmpty || url.path == "/", url.query == nil, url.user == nil else {
                reader.fail("expected an endpoint such as https://vpce.example:443 (scheme, host, optional port), got '\(endpoint)'")
                return nil
            }
            guard url.scheme == "https" || Self.isLoopback(endpoint) else {
                reader.fail("plain http is accepted only to a loopback address (a local stand-in such as moto): "
                            + "signed requests and their session token would cross the network in the clear; use https")
                return nil
            }
            settings.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        }
        if let reader = spec.field("profile"), let profile = reader.string() {
            guard !profile.isEmpty, profile.count <= 128, profile.allSatisfy({ !$0.isNewline && !"[]".contains($0) }) else {
                reader.fail("expected the name of a profile in ~/.aws/config or ~/.aws/credentials, got '\(profile)'")
                return nil
            }
            settings.profile = profile
        }
        if let reader = spec.field("roleArn"), let role = reader.string() {
            let parts = role.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
            guard parts.count == 6, parts[0] == "arn", parts[1].hasPrefix("aws"), parts[2] == "iam", parts[3].isEmpty,
                  parts[4].count == 12, parts[4].allSatisfy(\.isNumber), parts[5].hasPrefix("role/"), parts[5].count > 5,
                  role.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                reader.fail("expected a role ARN such as arn:aws:iam::123456789012:role/bulwark, got '\(role)'")
                return nil
            }
            settings.roleArn = role
        }
        if let reader = spec.field("externalId"), let external = reader.string() {
            guard (2...1224).contains(external.count), external.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+=,.@:/-_".contains($0)) }) else {
                reader.fail("expected 2 to 1224 letters, digits or +=,.@:/-_ (STS's rule for ExternalId)")
                return nil
            }
            settings.externalId = external
        }
        if let reader = spec.field("account"), let account = reader.string() {
            guard account.count == 12, account.allSatisfy(\.isNumber) else {
                reader.fail("expected a 12-digit account id, got '\(account)'")
                return nil
            }
            settings.account = account
        }
        return settings
    }

    /// The text settings of a target (what `Target.settings` holds).
    @Sendable static func parseTarget(_ spec: SpecReader) -> [String: String]? { parseSettings(spec)?.strings }

    /// The target's credential chain: its profile, role and endpoint over the process environment.
    static func credentialChain(_ target: Target, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(AWSError) -> AWSCredentialChain {
        let settings = try settings(target)
        return AWSCredentialChain(environment: environment, profile: settings.profile, roleArn: settings.roleArn,
                                  externalID: settings.externalId, region: settings.region, endpoint: settings.endpoint)
    }

    /// The target's settings as `parseSettings` typed them when the target was read.
    static func settings(_ target: Target) throws(AWSError) -> AWSTargetSettings {
        do {
            return try target.typedSettings(AWSTargetSettings.self)
        } catch {
            throw AWSError(code: "Internal", message: error.description)
        }
    }

    /// A resource's spec as its kind's parser typed it.
    static func spec<T: TypedSpec>(_ resource: Resource, _ type: T.Type) throws(AWSError) -> T {
        do {
            return try resource.typedSpec(type)
        } catch {
            throw AWSError(code: "Internal", message: error.description)
        }
    }

    static func client(_ target: Target) async throws(AWSError) -> AWSClient {
        let settings = try settings(target)
        let credentials = try await credentialChain(target).resolve()
        return AWSClient(region: settings.region, endpoint: settings.endpoint, credentials: credentials)
    }

    /// The target's account: from its settings, else from STS.
    static func account(_ target: Target, _ client: AWSClient) async throws(AWSError) -> String {
        if let account = try settings(target).account { return account }
        let answer = try await client.query(.sts, "GetCallerIdentity")
        guard let account = answer.find("Account")?.text, !account.isEmpty else {
            throw AWSError(code: "MalformedResponse", message: "GetCallerIdentity named no account", operation: "GetCallerIdentity")
        }
        return account
    }
}

/// An AWS target's settings, checked once when the target is read.
struct AWSTargetSettings: TypedTargetSettings {
    var region: String
    /// `scheme://host[:port]`, without a trailing slash.
    var endpoint: String?
    var profile: String?
    var roleArn: String?
    var externalId: String?
    /// The 12-digit account id.
    var account: String?

    init(region: String) { self.region = region }

    var strings: [String: String] {
        var strings = ["region": region]
        strings["endpoint"] = endpoint
        strings["profile"] = profile
        strings["roleArn"] = roleArn
        strings["externalId"] = externalId
        strings["account"] = account
        return strings
    }
}
