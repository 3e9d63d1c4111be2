import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

@testable import BulwarkAWS

/// A loopback stand-in for the EC2 instance metadata service, IMDSv2 as AWS documents it: a PUT
/// of `/latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1 to 21600) gives a token;
/// every GET without a valid token is 401. Each credentials document has a new key id
/// (`ASIAIMDS1`, `ASIAIMDS2`, …) expiring `lifetime` seconds from the answer. `v1only` mode
/// refuses tokens (403) and answers GETs without one, as an IMDSv1-only service would.
/// `GET /_log` lists what it received. A python3 process started by pid and killed by pid.
final class MetadataStandIn {
    static let script = #"""
        import json, secrets, sys, time, threading
        from http.server import BaseHTTPRequestHandler
        lifetime, mode = int(sys.argv[1]), sys.argv[2]
        tokens, log, issued, lock = set(), [], [0], threading.Lock()
        class Handler(BaseHTTPRequestHandler):
            def answer(self, status, body=b"", kind="text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args):
                pass
            def do_PUT(self):
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                with lock:
                    log.append({"method": "PUT", "path": self.path, "ttl": ttl})
                if mode == "v1only":
                    return self.answer(403)
                if self.path != "/latest/api/token":
                    return self.answer(404)
                if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self.answer(400)
                token = secrets.token_urlsafe(32)
                with lock:
                    tokens.add(token)
                self.answer(200, token.encode())
            def do_GET(self):
                if self.path == "/_log":
                    with lock:
                        return self.answer(200, json.dumps(log).encode(), "application/json")
                token = self.headers.get("X-aws-ec2-metadata-token")
                with lock:
                    valid = token in tokens
                    log.append({"method": "GET", "path": self.path, "token": valid})
                if mode != "v1only" and not valid:
                    return self.answer(401)
                prefix = "/latest/meta-data/iam/security-credentials/"
                if self.path == prefix:
                    return self.answer(200, b"bulwark-instance-role")
                if self.path == prefix + "bulwark-instance-role":
                    with lock:
                        issued[0] += 1
                        n = issued[0]
                    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + lifetime))
                    document = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": f"ASIAIMDS{n}",
                                "SecretAccessKey": f"imds-secret-{n}", "Token": f"imds-session-{n}", "Expiration": expiration}
                    return self.answer(200, json.dumps(document).encode(), "application/json")
                self.answer(404)
        """#

    struct Received: Decodable, Sendable {
        var method: String
        var path: String
        var ttl: String?
        var token: Bool?
    }

    let port: Int
    var endpoint: String { "http://127.0.0.1:\(port)" }
    private let standIn: PythonStandIn

    init(lifetime: Int = 21_600, mode: String = "v2") throws {
        standIn = try PythonStandIn(Self.script, arguments: [String(lifetime), mode], name: "metadata stand-in")
        port = standIn.port
    }

    var received: [Received] {
        get throws {
            let answer = try httpRequest(port: port, "GET", "/_log")
            return try JSONDecoder().decode([Received].self, from: Data(answer.body.utf8))
        }
    }

    var credentialFetches: Int {
        get throws { try received.filter { $0.path.hasSuffix("/bulwark-instance-role") }.count }
    }
}

/// The credential chain, as the AWS SDKs resolve it: environment, shared files with profiles,
/// AssumeRole and web identity against moto's STS, and IMDSv2 against a loopback stand-in. Every
/// test passes its own environment and its own cache, so tests running at once do not meet.
@Suite struct CredentialChainTests {
    /// A folder as `HOME` with `.aws/credentials` and `.aws/config` when given.
    func home(_ folder: String, credentials: String? = nil, config: String? = nil) throws -> [String: String] {
        if let credentials { try write(folder + "/.aws/credentials", credentials, mode: 0o600) }
        if let config { try write(folder + "/.aws/config", config, mode: 0o600) }
        return ["HOME": folder, "AWS_EC2_METADATA_DISABLED": "true"]
    }

    func chain(_ environment: [String: String], profile: String? = nil, roleArn: String? = nil, endpoint: String? = nil) -> AWSCredentialChain {
        AWSCredentialChain(environment: environment, profile: profile, roleArn: roleArn, region: "us-east-1", endpoint: endpoint,
                           cache: AWSCredentialCache())
    }

    func failure(_ chain: AWSCredentialChain) async -> AWSError? {
        do {
            let credentials = try await chain.resolve()
            Issue.record("expected a failure, got \(credentials)")
            return nil
        } catch {
            return error
        }
    }

    /// The ARN STS says the credentials belong to.
    func identity(_ credentials: AWSCredentials, _ moto: MotoServer) async throws -> String {
        let client = AWSClient(region: "us-east-1", endpoint: moto.endpoint, credentials: credentials)
        return try #require(try await client.query(.sts, "GetCallerIdentity").find("Arn")?.text)
    }

    // MARK: - Environment and shared files

    @Test func theEnvironmentComesFirstUnlessTheTargetNamesAProfile() async throws {
        try await withTemporaryDirectory { folder in
            var env = try home(folder, credentials: "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s-file\n\n"
                                   + "[audit]\naws_access_key_id=AKIDAUDIT\naws_secret_access_key=s-audit\naws_session_token = t-audit\n")
            #expect(try await chain(env).resolve().accessKeyID == "AKIDFILE")
            env.merge(["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s-env", "AWS_SESSION_TOKEN": "t-env"]) { $1 }
            let fromEnvironment = try await chain(env).resolve()
            #expect(fromEnvironment.accessKeyID == "AKIDENV" && fromEnvironment.sessionToken == "t-env")
            // AWS_PROFILE does not outrank the environment's keys (as in botocore)...
            #expect(try await chain(env.merging(["AWS_PROFILE": "audit"]) { $1 }).resolve().accessKeyID == "AKIDENV")
            // ...but the target's own profile does: it names the identity to use.
            let audit = try await chain(env, profile: "audit").resolve()
            #expect(audit.accessKeyID == "AKIDAUDIT" && audit.sessionToken == "t-audit")
        }
    }

    @Test func profilesComeFromBothFilesAndTheCredentialsFileWins() async throws {
        try await withTemporaryDirectory { folder in
            try write(folder + "/elsewhere/creds", "[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = s-ops\n")
            try write(folder + "/elsewhere/config", """
                [default]
                region = us-east-1
                [profile ops]
                aws_access_key_id = AKIDSTALE
                aws_secret_access_key = s-stale
                s3 =
                  aws_access_key_id = AKIDNESTED
                [profile dev]
                aws_access_key_id = AKIDDEV
                aws_secret_access_key = s-dev
                [sso-session dev]
                aws_access_key_id = AKIDNOTAPROFILE
                """)
            let env = ["HOME": folder, "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": folder + "/elsewhere/creds",
                       "AWS_CONFIG_FILE": folder + "/elsewhere/config"]
            #expect(try await chain(env.merging(["AWS_PROFILE": "ops"]) { $1 }).resolve().accessKeyID == "AKIDOPS")
            #expect(try await chain(env, profile: "dev").resolve().accessKeyID == "AKIDDEV")
        }
    }

    @Test func aFileNamedByAVariableThatDoesNotExistIsAClearErrorNotAnotherIdentity() async throws {
        try await withTemporaryDirectory { folder in
            // The default file exists with other keys; the variable's typo must not fall back to them.
            var env = try home(folder, credentials: "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s-default\n")
            env["AWS_SHARED_CREDENTIALS_FILE"] = folder + "/credentails"
            let error = try #require(await failure(chain(env)))
            #expect(error.code == "FileNotFound")
            #expect(error.description.contains("AWS_SHARED_CREDENTIALS_FILE names \(folder)/credentails, which does not exist"))
            env["AWS_SHARED_CREDENTIALS_FILE"] = nil
            env["AWS_CONFIG_FILE"] = folder + "/no-config"
            #expect(await failure(chain(env))?.code == "FileNotFound")
            // The default files may be absent: then the chain says what it tried and what to do.
            let empty = try #require(await failure(chain(["HOME": folder + "/nowhere", "AWS_EC2_METADATA_DISABLED": "true"])))
            #expect(empty.code == "NoCredentials" && empty.source == .chain)
            #expect(empty.description.contains("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"))
            env["AWS_CONFIG_FILE"] = nil
            #expect(try await chain(env).resolve().accessKeyID == "AKIDDEFAULT")
        }
    }

    @Test func aNamedProfileThatIsMissingOrEmptyIsAnErrorAndHalfAKeyPairIsRefused() async throws {
        try await withTemporaryDirectory { folder in
            let env = try home(folder, credentials: "[half]\naws_secret_access_key = s-half-SECRET\n[empty]\nregion = us-east-1\n"
                                   + "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s-default\n")
            let missing = try #require(await failure(chain(env, profile: "missing")))
            #expect(missing.code == "ProfileNotFound" && missing.source == .profile("missing"))
            #expect(await failure(chain(env.merging(["AWS_PROFILE": "missing"]) { $1 }))?.code == "ProfileNotFound")
            #expect(await failure(chain(env, profile: "empty"))?.code == "NoCredentials")
            let half = try #require(await failure(chain(env, profile: "half")))
            #expect(half.code == "PartialCredentials" && !half.description.contains("s-half-SECRET"))
            let partial = try #require(await failure(chain(env.merging(["AWS_SECRET_ACCESS_KEY": "env-SECRET"]) { $1 })))
            #expect(partial.code == "PartialCredentials" && partial.source == .environment && !partial.description.contains("env-SECRET"))
            #expect(try await chain(env).resolve().accessKeyID == "AKIDDEFAULT")
        }
    }

    @Test func aSourceProfileLoopIsRefusedBeforeAnythingIsAsked() async throws {
        try await withTemporaryDirectory { folder in
            let env = try home(folder, config: """
                [profile a]
                role_arn = arn:aws:iam::123456789012:role/a
                source_profile = b
                [profile b]
                role_arn = arn:aws:iam::123456789012:role/b
                source_profile = c
                [profile c]
                role_arn = arn:aws:iam::123456789012:role/c
                source_profile = a
                [profile self]
                role_arn = arn:aws:iam::123456789012:role/self
                source_profile = self
                [profile dangling]
                role_arn = arn:aws:iam::123456789012:role/dangling
                source_profile = nobody
                """)
            // An endpoint that refuses connections (bound and not listening, so that no other
            // test's server can take its port): a loop must be refused without any request.
            let refusing = try TestHTTPServer(listening: false)
            defer { refusing.stop() }
            let endpoint = "http://127.0.0.1:\(refusing.port)"
            let loop = try #require(await failure(chain(env, profile: "a", endpoint: endpoint)))
            #expect(loop.code == "ProfileLoop")
            #expect(loop.description.contains("a -> b -> c -> a"))
            #expect(await failure(chain(env, profile: "self", endpoint: endpoint))?.code == "ProfileLoop")
            let dangling = try #require(await failure(chain(env, profile: "dangling", endpoint: endpoint)))
            #expect(dangling.code == "ProfileNotFound" && dangling.description.contains("source_profile 'nobody'"))
        }
    }

    @Test func aMissingWebIdentityTokenFileIsNamedAndTheTokenNeverShown() async throws {
        try await withTemporaryDirectory { folder in
            var env = try home(folder)
            env["AWS_WEB_IDENTITY_TOKEN_FILE"] = folder + "/token"
            let noRole = try #require(await failure(chain(env)))
            #expect(noRole.code == "IncompleteWebIdentity" && noRole.description.contains("AWS_ROLE_ARN"))
            env["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/irsa"
            // STS refuses connections (bound and not listening: no other test's server takes its port).
            let refusing = try TestHTTPServer(listening: false)
            defer { refusing.stop() }
            let sts = "http://127.0.0.1:\(refusing.port)"
            let noFile = try #require(await failure(chain(env, endpoint: sts)))
            #expect(noFile.code == "TokenFileUnreadable" && noFile.source == .webIdentity("arn:aws:iam::123456789012:role/irsa"))
            #expect(noFile.description.contains(folder + "/token"))
            // STS unreachable: the error names the source, never the token.
            try write(folder + "/token", "eyJhbGciOiJSUzI1NiJ9.TOKEN-SECRET.sig\n")
            let unreachable = try #require(await failure(chain(env, endpoint: sts)))
            #expect(unreachable.source == .webIdentity("arn:aws:iam::123456789012:role/irsa"))
            #expect(!unreachable.description.contains("TOKEN-SECRET"))
        }
    }

    @Test func targetsNameAProfileARoleAndAnExternalIdOrAreRefusedWithTheField() throws {
        let registry = Registry([AWSAdapter.definition()])
        func load(_ spec: String) throws -> DesiredState {
            try DesiredStateLoader(registry: registry).load([SourceFile(path: "controllers/c.yaml", contents: Array("""
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: account-1}
                spec: {adapter: aws, region: us-east-1, \(spec)}
                """.utf8))], revision: "test")
        }
        let state = try load("profile: audit, roleArn: 'arn:aws:iam::123456789012:role/bulwark', externalId: 'bulwark-ext-1'")
        let target = try #require(state.targets.values.first)
        #expect(target.settings["profile"] == "audit")
        #expect(target.settings["roleArn"] == "arn:aws:iam::123456789012:role/bulwark")
        let chain = try AWSAdapter.credentialChain(target, environment: [:])
        #expect(chain.profile == "audit" && chain.roleArn == "arn:aws:iam::123456789012:role/bulwark" && chain.externalID == "bulwark-ext-1")
        // The settings are typed once, when the target is read; a target the adapter did not read has none.
        #expect(target.typed?.as(AWSTargetSettings.self)?.externalId == "bulwark-ext-1")
        let handMade = Target(name: "x", adapter: "aws", settings: target.settings, location: target.location)
        #expect { try AWSAdapter.credentialChain(handMade, environment: [:]) } throws: { "\($0)".contains("has no AWSTargetSettings") }
        #expect { try load("roleArn: 'arn:aws:iam::12345:user/x'") } throws: { "\($0)".contains("spec.roleArn") }
        #expect { try load("externalId: 'a b'") } throws: { "\($0)".contains("spec.externalId") }
        #expect { try load("profile: '[x]'") } throws: { "\($0)".contains("spec.profile") }
    }

    // MARK: - STS (moto)

    @Test(.enabled(if: MotoServer.available, "needs moto[server]"))
    func aProfileWithRoleArnAssumesTheRoleThroughSTSAndCachesIt() async throws {
        let moto = try MotoServer()
        try await withTemporaryDirectory { folder in
            let env = try home(folder, credentials: """
                [base]
                aws_access_key_id = \(moto.accessKeyID)
                aws_secret_access_key = \(moto.secretAccessKey)
                """, config: """
                [profile deploy]
                role_arn = arn:aws:iam::123456789012:role/deploy
                source_profile = base
                role_session_name = bulwark-deploy
                [profile audit]
                role_arn = arn:aws:iam::123456789012:role/audit
                source_profile = deploy
                role_session_name = bulwark-audit
                duration_seconds = 900
                [profile keyed-self]
                role_arn = arn:aws:iam::123456789012:role/keyed
                source_profile = keyed-self
                aws_access_key_id = \(moto.accessKeyID)
                aws_secret_access_key = \(moto.secretAccessKey)
                """)
            let deploy = chain(env, profile: "deploy", endpoint: moto.endpoint)
            let first = try await deploy.resolve()
            #expect(first.sessionToken != nil && first.accessKeyID != moto.accessKeyID)
            #expect(try await identity(first, moto).hasSuffix(":assumed-role/deploy/bulwark-deploy"))
            #expect(try await deploy.resolve().accessKeyID == first.accessKeyID, "valid for an hour: reused, not assumed again")
            // Two hops: audit is assumed with deploy's temporary credentials.
            #expect(try await identity(try await chain(env, profile: "audit", endpoint: moto.endpoint).resolve(), moto)
                        .hasSuffix(":assumed-role/audit/bulwark-audit"))
            // A profile may name itself as source when it holds keys: not a loop.
            #expect(try await identity(try await chain(env, profile: "keyed-self", endpoint: moto.endpoint).resolve(), moto)
                        .contains(":assumed-role/keyed/"))
        }
    }

    @Test(.enabled(if: MotoServer.available, "needs moto[server]"))
    func theTargetsRoleIsAssumedWithWhatTheChainFound() async throws {
        let moto = try MotoServer()
        let env = moto.environment.merging(["HOME": "/nonexistent"]) { $1 }
        let credentials = try await chain(env, roleArn: "arn:aws:iam::123456789012:role/bulwark-target", endpoint: moto.endpoint).resolve()
        #expect(try await identity(credentials, moto).contains(":assumed-role/bulwark-target/bulwark-"))
        // Without roleArn the environment's own identity is used.
        #expect(try await identity(try await chain(env, endpoint: moto.endpoint).resolve(), moto).contains("user/moto"))
    }

    @Test(.enabled(if: MotoServer.available, "needs moto[server]"))
    func webIdentityFromTheEnvironmentAsOnEKS() async throws {
        let moto = try MotoServer()
        try await withTemporaryDirectory { folder in
            try write(folder + "/token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YnVsd2FyazpidWx3YXJrIn0.sig\n")
            var env = try home(folder)
            env["AWS_WEB_IDENTITY_TOKEN_FILE"] = folder + "/token"
            env["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/irsa-bulwark"
            env["AWS_ROLE_SESSION_NAME"] = "bulwark-pod"
            let credentials = try await chain(env, endpoint: moto.endpoint).resolve()
            #expect(try await identity(credentials, moto).hasSuffix(":assumed-role/irsa-bulwark/bulwark-pod"))
        }
    }

    /// A web identity token is a bearer token: it goes to STS only where the operator says
    /// (`AWS_ENDPOINT_URL_STS`) or to this machine, never to an endpoint a policy named.
    /// (Sent to the target's endpoint, it went to a host that could replay it at STS.)
    @Test(.enabled(if: MotoServer.available, "needs moto[server]"))
    func aWebIdentityTokenIsNeverSentToTheEndpointAPolicyNamed() async throws {
        let moto = try MotoServer()
        try await withTemporaryDirectory { folder in
            try write(folder + "/token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.sig\n")
            var env = try home(folder)
            env["AWS_WEB_IDENTITY_TOKEN_FILE"] = folder + "/token"
            env["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/irsa-bulwark"
            env["AWS_ROLE_SESSION_NAME"] = "bulwark-pod"
            env["AWS_ENDPOINT_URL_STS"] = moto.endpoint
            #expect(chain(env, endpoint: "https://sts.attacker.invalid").stsEndpoint == moto.endpoint)
            #expect(chain(env, endpoint: moto.endpoint).stsEndpoint == moto.endpoint)
            let credentials = try await chain(env, endpoint: "https://sts.attacker.invalid").resolve()
            #expect(try await identity(credentials, moto).hasSuffix(":assumed-role/irsa-bulwark/bulwark-pod"))
        }
    }

    // MARK: - Instance metadata (stand-in)

    @Test func instanceMetadataIsAskedWithASessionTokenOnly() async throws {
        let imds = try MetadataStandIn()
        try await withTemporaryDirectory { folder in
            let env = ["HOME": folder, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint + "/"]
            let credentials = try await chain(env).resolve()
            #expect(credentials.accessKeyID == "ASIAIMDS1" && credentials.sessionToken == "imds-session-1")
            let received = try imds.received
            #expect(received.first?.method == "PUT" && received.first?.path == "/latest/api/token" && received.first?.ttl == "21600")
            #expect(received.dropFirst().map(\.path) == ["/latest/meta-data/iam/security-credentials/",
                                                         "/latest/meta-data/iam/security-credentials/bulwark-instance-role"])
            #expect(received.dropFirst().allSatisfy { $0.token == true })
            // The stand-in enforces the token: a request without one is refused.
            #expect(try httpRequest(port: imds.port, "GET", "/latest/meta-data/iam/security-credentials/").status == 401)
        }
    }

    @Test func aServiceThatWillNotGiveATokenIsNeverAskedWithoutOne() async throws {
        let imds = try MetadataStandIn(mode: "v1only")
        let error = try #require(await failure(chain(["HOME": "/nonexistent", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint])))
        #expect(error.status == 403 && error.source == .instanceMetadata(imds.endpoint))
        #expect(error.description.contains("IMDSv1 is never used"))
        #expect(try imds.received.map(\.method) == ["PUT"], "no GET without a token, though this service would answer it")
    }

    @Test func credentialsAboutToExpireAreFetchedAgainAndFreshOnesAreReused() async throws {
        // 4 minutes left is inside the 5-minute refresh window: every use fetches again. (60 s
        // left was once taken as already expired: a whole-package CI run had starved the task
        // for over a minute between the answer and its check.)
        let expiring = try MetadataStandIn(lifetime: 240)
        let soon = chain(["HOME": "/nonexistent", "AWS_EC2_METADATA_SERVICE_ENDPOINT": expiring.endpoint])
        #expect(try await soon.resolve().accessKeyID == "ASIAIMDS1")
        #expect(try await soon.resolve().accessKeyID == "ASIAIMDS2")
        #expect(try expiring.credentialFetches == 2)
        // Six hours left: fetched once, then served from the cache.
        let fresh = try MetadataStandIn(lifetime: 21_600)
        let later = chain(["HOME": "/nonexistent", "AWS_EC2_METADATA_SERVICE_ENDPOINT": fresh.endpoint])
        #expect(try await later.resolve().accessKeyID == "ASIAIMDS1")
        #expect(try await later.resolve().accessKeyID == "ASIAIMDS1")
        #expect(try fresh.credentialFetches == 1)
        // Already expired when given (a wrong clock): refused, not used.
        let expired = try MetadataStandIn(lifetime: -60)
        let stale = try #require(await failure(chain(["HOME": "/nonexistent", "AWS_EC2_METADATA_SERVICE_ENDPOINT": expired.endpoint])))
        #expect(stale.code == "ExpiredCredentials")
    }

    @Test func disabledInstanceMetadataIsNotAsked() async throws {
        let imds = try MetadataStandIn()
        let error = try #require(await failure(chain(["HOME": "/nonexistent", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
                                                      "AWS_EC2_METADATA_DISABLED": "true"])))
        #expect(error.code == "NoCredentials")
        #expect(try imds.received.isEmpty)
    }

    @Test(.enabled(if: MotoServer.available, "needs moto[server]"))
    func aProfileCanAssumeARoleWithTheInstanceRole() async throws {
        let moto = try MotoServer()
        let imds = try MetadataStandIn()
        try await withTemporaryDirectory { folder in
            var env = try home(folder, config: """
                [profile from-instance]
                role_arn = arn:aws:iam::123456789012:role/cross-account
                credential_source = Ec2InstanceMetadata
                role_session_name = bulwark-instance
                """)
            env["AWS_EC2_METADATA_DISABLED"] = nil
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.endpoint
            let credentials = try await chain(env, profile: "from-instance", endpoint: moto.endpoint).resolve()
            #expect(try await identity(credentials, moto).hasSuffix(":assumed-role/cross-account/bulwark-instance"))
            #expect(try imds.credentialFetches == 1)
        }
    }
}
