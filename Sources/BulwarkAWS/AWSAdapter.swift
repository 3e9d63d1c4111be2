public import BulwarkCore
internal import Foundation

/// The AWS adapter: security group ingress, S3 public access blocks, IAM access keys and EBS
/// default encryption, over the AWS APIs with SigV4.
///
/// Targets: `spec: {adapter: aws, region: eu-west-1, endpoint: optional URL, profile: optional}`.
/// Credentials come from the standard environment variables or the shared credentials file,
/// never from the policy repository, and are never logged or recorded.
public enum AWSAdapter {
    public static let name = "aws"

    public static func definition() -> AdapterDefinition {
        AdapterDefinition(
            name: name, parseTarget: parseTarget,
            kinds: [
                KindDefinition(name: "SecurityGroupIngress", adapter: name, summary: "revoke forbidden ingress rules from security groups",
                               parse: SecurityGroupDriver.parse, driver: SecurityGroupDriver()),
                KindDefinition(name: "S3PublicAccessBlock", adapter: name, summary: "all four public access block flags, account and buckets",
                               parse: PublicAccessBlockDriver.parse, driver: PublicAccessBlockDriver()),
                KindDefinition(name: "IAMAccessKey", adapter: name, summary: "deactivate (never delete) unused or old access keys",
                               parse: AccessKeyDriver.parse, driver: AccessKeyDriver()),
                KindDefinition(name: "EBSDefaultEncryption", adapter: name, summary: "EBS encryption by default, per region",
                               parse: EBSEncryptionDriver.parse, driver: EBSEncryptionDriver()),
            ])
    }

    @Sendable static func parseTarget(_ spec: SpecReader) -> [String: String]? {
        spec.allowOnly(["adapter", "region", "endpoint", "profile", "account"])
        guard let reader = spec.field("region", required: true), let region = reader.string() else { return nil }
        guard !region.isEmpty, region.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) else {
            reader.fail("expected a region such as eu-west-1, got '\(region)'")
            return nil
        }
        var settings = ["region": region]
        if let reader = spec.field("endpoint"), let endpoint = reader.string() {
            guard let url = URLComponents(string: endpoint), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false,
                  url.path.isEmpty || url.path == "/", url.query == nil, url.user == nil else {
                reader.fail("expected an endpoint such as https://vpce.example:443 (scheme, host, optional port), got '\(endpoint)'")
                return nil
            }
            settings["endpoint"] = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        }
        if let profile = spec.field("profile")?.string() { settings["profile"] = profile }
        if let reader = spec.field("account"), let account = reader.string() {
            guard account.count == 12, account.allSatisfy(\.isNumber) else {
                reader.fail("expected a 12-digit account id, got '\(account)'")
                return nil
            }
            settings["account"] = account
        }
        return settings
    }

    static func client(_ target: Target) throws(AWSError) -> AWSClient {
        let credentials = try CredentialSource.load(profile: target.settings["profile"])
        return AWSClient(region: target.settings["region"] ?? "us-east-1", endpoint: target.settings["endpoint"], credentials: credentials)
    }

    /// The target's account: from its settings, else from STS.
    static func account(_ target: Target, _ client: AWSClient) async throws(AWSError) -> String {
        if let account = target.settings["account"] { return account }
        let answer = try await client.query(.sts, "GetCallerIdentity")
        guard let account = answer.find("Account")?.text, !account.isEmpty else {
            throw AWSError(code: "MalformedResponse", message: "GetCallerIdentity named no account", operation: "GetCallerIdentity")
        }
        return account
    }
}
