import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

@testable import BulwarkAWS

/// A loopback stand-in for AWS's query protocol, for answers moto cannot give (a garbage date, a
/// page token given twice, a prefix list that cannot be read). `routes` maps `Action:Value` (the
/// request's UserName, AccessKeyId or PrefixListId) or `Action` to the answers, status and XML
/// body, given in order and the last one again. `GET /_log` lists each request's form. A python3
/// process started by pid and killed by pid.
final class QueryStandIn {
    static let script = #"""
        import json, sys, threading, urllib.parse
        from http.server import BaseHTTPRequestHandler
        routes = json.loads(sys.argv[1])
        log, lock = [], threading.Lock()
        class Handler(BaseHTTPRequestHandler):
            def answer(self, status, body):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def log_message(self, *args):
                pass
            def do_GET(self):
                with lock:
                    self.answer(200, json.dumps(log))
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
                action = form.get("Action", "")
                value = form.get("UserName") or form.get("AccessKeyId") or form.get("PrefixListId") or ""
                with lock:
                    log.append(form)
                    answers = routes.get(action + ":" + value) or routes.get(action)
                    if not answers:
                        return self.answer(400, "<Response><Errors><Error><Code>NotStubbed</Code><Message>" + action + "</Message></Error></Errors></Response>")
                    status, body = answers.pop(0) if len(answers) > 1 else answers[0]
                self.answer(status, body)
        """#

    let port: Int
    var endpoint: String { "http://127.0.0.1:\(port)" }
    private let standIn: PythonStandIn

    init(_ routes: [String: [(Int, String)]]) throws {
        let json = try JSONSerialization.data(withJSONObject: routes.mapValues { $0.map { [$0.0, $0.1] as [Any] } })
        standIn = try PythonStandIn(Self.script, arguments: [String(decoding: json, as: UTF8.self)], name: "query stand-in")
        port = standIn.port
    }

    /// Each request's form, in order.
    var requests: [[String: String]] {
        get throws {
            let answer = try httpRequest(port: port, "GET", "/_log")
            return try JSONDecoder().decode([[String: String]].self, from: Data(answer.body.utf8))
        }
    }

    static func ec2(_ action: String, _ inner: String) -> String {
        "<\(action)Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\(inner)</\(action)Response>"
    }

    static func iam(_ action: String, _ inner: String) -> String {
        "<\(action)Response xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><\(action)Result>\(inner)</\(action)Result></\(action)Response>"
    }

    /// A security group with tcp 22 open to `cidr`, or through `prefixList`.
    static func group(_ id: String, cidr: String? = nil, prefixList: String? = nil) -> String {
        "<item><groupId>\(id)</groupId><groupName>\(id)</groupName><ipPermissions><item><ipProtocol>tcp</ipProtocol>"
            + "<fromPort>22</fromPort><toPort>22</toPort>"
            + (cidr.map { "<ipRanges><item><cidrIp>\($0)</cidrIp></item></ipRanges>" } ?? "")
            + (prefixList.map { "<prefixListIds><item><prefixListId>\($0)</prefixListId></item></prefixListIds>" } ?? "")
            + "</item></ipPermissions></item>"
    }

    static func accessKey(_ id: String, user: String, created: String) -> String {
        iam("ListAccessKeys", "<AccessKeyMetadata><member><UserName>\(user)</UserName><AccessKeyId>\(id)</AccessKeyId>"
            + "<Status>Active</Status><CreateDate>\(created)</CreateDate></member></AccessKeyMetadata><IsTruncated>false</IsTruncated>")
    }
}

/// Python run in moto's server before it serves: an access key of a user whose name begins with
/// `old-` is dated 400 days back, and `old-bulwark`'s key has the id the tests sign with.
let agedKeys = """
    import datetime, moto.iam.models as models
    _made = models.AccessKey.__init__
    def _aged(self, user_name, *args, **kwargs):
        _made(self, user_name, *args, **kwargs)
        if user_name and user_name.startswith("old-"):
            self.create_date -= datetime.timedelta(days=400)
        if user_name == "old-bulwark":
            self.access_key_id = "\(MotoServer.accessKeyID)"
    models.AccessKey.__init__ = _aged
    """

/// The AWS guards and the observations that must fail rather than report in sync, against moto
/// (and a stand-in where moto cannot give the answer).
@Suite(.enabled(if: MotoServer.available, "needs moto[server] (scripts/setup installs it)"))
struct AWSGuardTests {
    func withCredentials<T>(_ moto: MotoServer, _ body: () async throws -> T) async rethrows -> T {
        for (key, value) in moto.environment { setenv(key, value, 1) }
        return try await body()
    }

    func reconcile(_ state: DesiredState, audit: RecordingSink = RecordingSink()) async throws -> (Plan, CycleOutcome) {
        let reconciler = Reconciler(registry: Registry([AWSAdapter.definition()]))
        let plan = try await reconciler.plan(state)
        return (plan, await reconciler.apply(plan, state: state, audit: audit))
    }

    func load(_ endpoint: String, role: String? = nil, _ manifests: String, kinds: String) throws -> DesiredState {
        guard let role else { return try awsState(endpoint: endpoint, manifests, kinds: kinds) }
        return try DesiredStateLoader(registry: Registry([AWSAdapter.definition()])).load([
            SourceFile(path: "controllers/c.yaml", contents: Array("""
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: account-1}
                spec: {adapter: aws, region: us-east-1, endpoint: "\(endpoint)", roleArn: "\(role)"}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: cloud}
                spec: {kinds: [\(kinds)]}
                """.utf8)),
            SourceFile(path: "desired-state/aws.yaml", contents: Array(manifests.utf8)),
        ], revision: "test")
    }

    // MARK: - IAMAccessKey

    /// With `maxAgeDays: 90`, Bulwark's own static key, once older, was deactivated, and every
    /// AWS controller failed from then on. Now that change is blocked, recorded once, and the key
    /// stays active, signing with it directly or as the base key of a role; another user's old key
    /// is deactivated as before.
    @Test func bulwarksOwnAccessKeyIsBlockedAndAnotherUsersOldKeyIsDeactivated() async throws {
        let moto = try MotoServer(patch: agedKeys)
        try moto.boto("""
            iam = aws("iam")
            for u in ["old-bulwark", "old-alice"]:
                iam.create_user(UserName=u)
            own = iam.create_access_key(UserName="old-bulwark")["AccessKey"]["AccessKeyId"]
            assert own == "\(moto.accessKeyID)", own
            iam.create_access_key(UserName="old-alice")
            """)
        let manifests = """
            apiVersion: bulwark/v1
            kind: IAMAccessKey
            metadata: {name: bulwark-key}
            spec: {maxAgeDays: 90, users: [old-bulwark]}
            ---
            apiVersion: bulwark/v1
            kind: IAMAccessKey
            metadata: {name: alice-key}
            spec: {maxAgeDays: 90, users: [old-alice]}
            """
        func statuses() throws -> String {
            try moto.boto("""
                iam = aws("iam")
                print(",".join(k["Status"] for u in ["old-bulwark", "old-alice"] for k in iam.list_access_keys(UserName=u)["AccessKeyMetadata"]))
                """)
        }
        try await withCredentials(moto) {
            let state = try load(moto.endpoint, manifests, kinds: "IAMAccessKey")
            let sink = RecordingSink()
            let (plan, outcome) = try await reconcile(state, audit: sink)
            #expect(plan.remediations.first { $0.binding.resource.name == "bulwark-key" }?.decision == .blocked)
            let own = try #require(outcome.entries.first { $0.record.name == "bulwark-key" })
            #expect(own.record.decision == .blocked)
            #expect(own.record.reason?.contains("access key \(moto.accessKeyID) of old-bulwark is the key Bulwark signs") == true)
            #expect(own.record.reason?.contains(moto.secretAccessKey) == false)
            #expect(outcome.entries.first { $0.record.name == "alice-key" }?.record.result == .verified)
            #expect(try statuses() == "Active,Inactive", "Bulwark's key stays on; alice's old key is off")
            let (_, again) = try await reconcile(state, audit: sink)
            #expect(again.entries.first { $0.record.name == "bulwark-key" }?.alreadyRecorded == true, "recorded once")
            #expect(sink.records.filter { $0.name == "bulwark-key" }.count == 1)

            // Through a role, the key the role is assumed with is Bulwark's all the same.
            let viaRole = try load(moto.endpoint, role: "arn:aws:iam::123456789012:role/bulwark", manifests, kinds: "IAMAccessKey")
            let (rolePlan, roleOutcome) = try await reconcile(viaRole)
            #expect(rolePlan.remediations.map(\.decision) == [.blocked])
            #expect(roleOutcome.entries.first?.record.reason?.contains(moto.accessKeyID) == true)
            #expect(try statuses() == "Active,Inactive")
        }
    }

    /// An unreadable LastUsedDate was taken as never used, and the key judged by its creation
    /// date: a key in use every day could be switched off. Now the resource fails naming the key,
    /// and no UpdateAccessKey is sent; a key that says when it was used, or says nothing (never
    /// used), is judged and deactivated as before.
    @Test func anUnreadableLastUsedDateFailsTheResourceAndChangesNothing() async throws {
        let old = "2020-01-01T00:00:00Z"
        let stub = try QueryStandIn([
            "ListAccessKeys:carol": [(200, QueryStandIn.accessKey("AKIACAROL", user: "carol", created: old))],
            "ListAccessKeys:dave": [(200, QueryStandIn.accessKey("AKIADAVE", user: "dave", created: old))],
            "ListAccessKeys:erin": [(200, QueryStandIn.accessKey("AKIAERIN", user: "erin", created: old))],
            "GetAccessKeyLastUsed:AKIACAROL": [(200, QueryStandIn.iam("GetAccessKeyLastUsed",
                "<UserName>carol</UserName><AccessKeyLastUsed><LastUsedDate>last tuesday</LastUsedDate></AccessKeyLastUsed>"))],
            "GetAccessKeyLastUsed:AKIADAVE": [(200, QueryStandIn.iam("GetAccessKeyLastUsed",
                "<UserName>dave</UserName><AccessKeyLastUsed><LastUsedDate>2021-01-01T00:00:00Z</LastUsedDate></AccessKeyLastUsed>"))],
            "GetAccessKeyLastUsed:AKIAERIN": [(200, QueryStandIn.iam("GetAccessKeyLastUsed",
                "<UserName>erin</UserName><AccessKeyLastUsed><ServiceName>N/A</ServiceName><Region>N/A</Region></AccessKeyLastUsed>"))],
            "UpdateAccessKey": [(200, QueryStandIn.iam("UpdateAccessKey", ""))],
        ])
        setenv("AWS_ACCESS_KEY_ID", MotoServer.accessKeyID, 1)
        setenv("AWS_SECRET_ACCESS_KEY", MotoServer.secretAccessKey, 1)
        let state = try awsState(endpoint: stub.endpoint, """
            apiVersion: bulwark/v1
            kind: IAMAccessKey
            metadata: {name: carol-key}
            spec: {maxUnusedDays: 45, users: [carol]}
            ---
            apiVersion: bulwark/v1
            kind: IAMAccessKey
            metadata: {name: others}
            spec: {maxUnusedDays: 45, users: [dave, erin]}
            """, kinds: "IAMAccessKey")
        let (plan, outcome) = try await reconcile(state)
        let failure = try #require(plan.failures.first { $0.binding.resource.name == "carol-key" })
        #expect(failure.message.contains("UnreadableLastUsedDate") && failure.message.contains("AKIACAROL"))
        #expect(Set(plan.remediations.flatMap(\.changes).map(\.property)) == ["key:dave/AKIADAVE", "key:erin/AKIAERIN"])
        #expect(outcome.entries.allSatisfy { $0.record.name == "others" || $0.record.decision == .unobserved })
        #expect(outcome.entries.filter { $0.record.decision == .unobserved }.map(\.record.name) == ["carol-key"])
        let log = try stub.requests
        #expect(!log.contains { $0["Action"] == "UpdateAccessKey" && $0["AccessKeyId"] == "AKIACAROL" }, "carol's key is not touched")
        #expect(Set(log.filter { $0["Action"] == "UpdateAccessKey" }.compactMap { $0["AccessKeyId"] }) == ["AKIADAVE", "AKIAERIN"])
    }

    // MARK: - Pagination

    /// A server that gave the same page token again was asked forever. Now the listing fails as
    /// a malformed answer; distinct tokens are followed to the last page as before.
    @Test func aRepeatedPageTokenFailsTheListingAndDistinctOnesAreFollowed() async throws {
        let again = try QueryStandIn([
            "DescribeSecurityGroups": [(200, QueryStandIn.ec2("DescribeSecurityGroups",
                "<securityGroupInfo>\(QueryStandIn.group("sg-1", cidr: "10.0.0.0/8"))</securityGroupInfo><nextToken>again</nextToken>"))],
            "ListUsers": [(200, QueryStandIn.iam("ListUsers", "<Users/><IsTruncated>true</IsTruncated><Marker>m1</Marker>"))],
        ])
        let pages = try QueryStandIn([
            "DescribeSecurityGroups": [
                (200, QueryStandIn.ec2("DescribeSecurityGroups", "<securityGroupInfo>\(QueryStandIn.group("sg-1", cidr: "10.0.0.0/8"))</securityGroupInfo><nextToken>t1</nextToken>")),
                (200, QueryStandIn.ec2("DescribeSecurityGroups", "<securityGroupInfo>\(QueryStandIn.group("sg-2", cidr: "0.0.0.0/0"))</securityGroupInfo>")),
            ],
            "ListUsers": [
                (200, QueryStandIn.iam("ListUsers", "<Users><member><UserName>a</UserName></member></Users><IsTruncated>true</IsTruncated><Marker>m1</Marker>")),
                (200, QueryStandIn.iam("ListUsers", "<Users><member><UserName>b</UserName></member></Users><IsTruncated>false</IsTruncated>")),
            ],
            "ListAccessKeys": [(200, QueryStandIn.iam("ListAccessKeys", "<AccessKeyMetadata/><IsTruncated>false</IsTruncated>"))],
        ])
        setenv("AWS_ACCESS_KEY_ID", MotoServer.accessKeyID, 1)
        setenv("AWS_SECRET_ACCESS_KEY", MotoServer.secretAccessKey, 1)
        let manifests = """
            apiVersion: bulwark/v1
            kind: SecurityGroupIngress
            metadata: {name: sg}
            spec: {groups: all, forbid: [{cidr: 0.0.0.0/0, ports: [22]}]}
            ---
            apiVersion: bulwark/v1
            kind: IAMAccessKey
            metadata: {name: keys}
            spec: {maxAgeDays: 90}
            """
        let looping = try await Reconciler(registry: Registry([AWSAdapter.definition()]))
            .plan(try awsState(endpoint: again.endpoint, manifests, kinds: "SecurityGroupIngress, IAMAccessKey"))
        #expect(looping.failures.count == 2)
        #expect(looping.failures.allSatisfy { $0.message.contains("MalformedResponse") && $0.message.contains("page token") })
        #expect(try again.requests.filter { $0["Action"] == "DescribeSecurityGroups" }.count == 2)

        // Truncated, with no marker to ask for the rest: the keys of the rest would go unjudged.
        let cut = try QueryStandIn(["ListUsers": [(200, QueryStandIn.iam("ListUsers", "<Users/><IsTruncated>true</IsTruncated>"))]])
        let unmarked = try await Reconciler(registry: Registry([AWSAdapter.definition()]))
            .plan(try awsState(endpoint: cut.endpoint, manifests, kinds: "IAMAccessKey"))
        #expect(unmarked.failures.map(\.message).contains { $0.contains("truncated but names no Marker") })
        // Distinct tokens without end: stopped at the cap.
        var capped = Pagination(operation: "ListUsers")
        for page in 1..<Pagination.maximumPages { _ = try capped.next("t\(page)") }
        #expect { _ = try capped.next("one-more") } throws: { ($0 as? AWSError)?.message.contains("more than 10000 pages") == true }

        let paged = try await Reconciler(registry: Registry([AWSAdapter.definition()]))
            .plan(try awsState(endpoint: pages.endpoint, manifests, kinds: "SecurityGroupIngress, IAMAccessKey"))
        #expect(paged.failures.isEmpty)
        #expect(paged.remediations.flatMap(\.changes).map(\.property) == ["ingress:sg-2"], "the second page was read")
        #expect(try pages.requests.filter { $0["Action"] == "ListAccessKeys" }.compactMap { $0["UserName"] } == ["a", "b"])
    }

    // MARK: - SecurityGroupIngress

    /// tcp 22 opened to the world through a customer-managed prefix list was not read, and in
    /// sync. Now each entry counts as a rule: a list that holds only forbidden networks is taken
    /// off the group (the list stays); one that also holds a network that is not forbidden is
    /// blocked, since taking it off would cut that network off too.
    @Test func ingressThroughAPrefixListIsSeenRevokedOrBlocked() async throws {
        let moto = try MotoServer()
        let ids = try moto.boto("""
            ec2 = aws("ec2")
            def plist(name, cidrs):
                return ec2.create_managed_prefix_list(PrefixListName=name, MaxEntries=5, AddressFamily="IPv4",
                                                      Entries=[{"Cidr": c} for c in cidrs])["PrefixList"]["PrefixListId"]
            world, mixed = plist("world", ["0.0.0.0/1", "128.0.0.0/1"]), plist("mixed", ["0.0.0.0/0", "10.0.0.0/8"])
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            def group(name, plist):
                g = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
                ec2.authorize_security_group_ingress(GroupId=g, IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "PrefixListIds": [{"PrefixListId": plist}]},
                    {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListIds": [{"PrefixListId": plist}]}])
                return g
            print(world, mixed, group("web", world), group("admin", mixed))
            """).split(separator: " ").map(String.init)
        let (world, mixed, web, admin) = (ids[0], ids[1], ids[2], ids[3])
        func references(_ group: String) throws -> String {
            try moto.boto("""
                g = aws("ec2").describe_security_groups(GroupIds=["\(group)"])["SecurityGroups"][0]
                print(",".join(sorted("%s %s" % (p["FromPort"], r["PrefixListId"]) for p in g["IpPermissions"] for r in p.get("PrefixListIds", []))))
                """)
        }
        try await withCredentials(moto) {
            let state = try awsState(endpoint: moto.endpoint, """
                apiVersion: bulwark/v1
                kind: SecurityGroupIngress
                metadata: {name: web}
                spec: {groups: [web], forbid: [{cidr: 0.0.0.0/0, ports: [22]}]}
                ---
                apiVersion: bulwark/v1
                kind: SecurityGroupIngress
                metadata: {name: admin}
                spec: {groups: [admin], forbid: [{cidr: 0.0.0.0/0, ports: [22]}]}
                """, kinds: "SecurityGroupIngress")
            let (plan, outcome) = try await reconcile(state)
            let observed = Dictionary(plan.remediations.flatMap(\.changes).map { ($0.property, $0.observed ?? "") }) { $1 }
            #expect(observed == ["ingress:\(web)": "tcp 22-22 0.0.0.0/1 via \(world); tcp 22-22 128.0.0.0/1 via \(world)",
                                 "ingress:\(admin)": "tcp 22-22 0.0.0.0/0 via \(mixed)"])
            #expect(outcome.entries.first { $0.record.name == "web" }?.record.result == .verified)
            let blocked = try #require(outcome.entries.first { $0.record.name == "admin" })
            #expect(blocked.record.decision == .blocked)
            #expect(blocked.record.reason?.contains("would also cut off 10.0.0.0/8") == true)
            #expect(try references(web) == "443 \(world)", "22 through the list is gone, 443 stays")
            #expect(try references(admin) == "22 \(mixed),443 \(mixed)", "blocked: nothing changed")
            #expect(try moto.boto("print(len(aws('ec2').get_managed_prefix_list_entries(PrefixListId='\(world)')['Entries']))") == "2",
                    "the list itself is left alone")
        }
    }

    /// A prefix list that cannot be read left the rule out, and the group in sync. Now the
    /// observation fails, naming the group and the list.
    @Test func aPrefixListThatCannotBeReadFailsTheObservation() async throws {
        let stub = try QueryStandIn([
            "DescribeSecurityGroups": [(200, QueryStandIn.ec2("DescribeSecurityGroups",
                "<securityGroupInfo>\(QueryStandIn.group("sg-1", prefixList: "pl-hidden"))\(QueryStandIn.group("sg-2", cidr: "10.0.0.0/8"))</securityGroupInfo>"))],
            "GetManagedPrefixListEntries": [(403, "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
                                                 + "<Message>not allowed</Message></Error></Errors></Response>")],
        ])
        setenv("AWS_ACCESS_KEY_ID", MotoServer.accessKeyID, 1)
        setenv("AWS_SECRET_ACCESS_KEY", MotoServer.secretAccessKey, 1)
        func plan(_ groups: String) async throws -> Plan {
            try await Reconciler(registry: Registry([AWSAdapter.definition()])).plan(try awsState(endpoint: stub.endpoint, """
                apiVersion: bulwark/v1
                kind: SecurityGroupIngress
                metadata: {name: sg}
                spec: {groups: \(groups), forbid: [{cidr: 0.0.0.0/0, ports: [22]}]}
                """, kinds: "SecurityGroupIngress"))
        }
        let failed = try await plan("all")
        #expect(!failed.hasDrift)
        #expect(failed.failures.count == 1)
        #expect(failed.failures.first.map { $0.message.contains("UnauthorizedOperation") && $0.message.contains("sg-1")
                                                && $0.message.contains("pl-hidden") } == true)
        let other = try await plan("[sg-2]")
        #expect(other.failures.isEmpty && !other.hasDrift, "a group without the list is judged as before")
    }

    /// A named group or bucket that is not there had no property, and read as in sync. Now the
    /// resource fails naming it; names that are there, and `all`, are judged as before.
    @Test func aNamedGroupOrBucketThatIsNotThereFailsTheResource() async throws {
        let moto = try MotoServer()
        let web = try moto.boto("""
            ec2 = aws("ec2")
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
            ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
            aws("s3").create_bucket(Bucket="logs")
            print(web)
            """)
        func plan(groups: String, buckets: String) async throws -> Plan {
            try await Reconciler(registry: Registry([AWSAdapter.definition()])).plan(try awsState(endpoint: moto.endpoint, """
                apiVersion: bulwark/v1
                kind: SecurityGroupIngress
                metadata: {name: sg}
                spec: {groups: \(groups), forbid: [{cidr: 0.0.0.0/0, ports: [22]}]}
                ---
                apiVersion: bulwark/v1
                kind: S3PublicAccessBlock
                metadata: {name: buckets}
                spec: {account: false, buckets: \(buckets)}
                """, kinds: "SecurityGroupIngress, S3PublicAccessBlock"))
        }
        try await withCredentials(moto) {
            let missing = try await plan(groups: "[web, sg-0123456789abcdef0]", buckets: "[logs, no-such-bucket]")
            #expect(!missing.hasDrift)
            let messages = missing.failures.map(\.message)
            #expect(messages.contains { $0.contains("GroupNotFound") && $0.contains("'sg-0123456789abcdef0'") && !$0.contains("'web'") })
            #expect(messages.contains { $0.contains("NoSuchBucket") && $0.contains("'no-such-bucket'") })
            #expect(messages.count == 2)

            let present = try await plan(groups: "[web]", buckets: "[logs]")
            #expect(present.failures.isEmpty)
            #expect(Set(present.remediations.flatMap(\.changes).map(\.property)) == ["ingress:\(web)", "bucket:logs"])
            let all = try await plan(groups: "all", buckets: "all")
            #expect(all.failures.isEmpty)
            #expect(Set(all.remediations.flatMap(\.changes).map(\.property)) == ["ingress:\(web)", "bucket:logs"])
        }
    }

    // MARK: - Guards that AWS or this machine left short

    /// A bare policy origin under `base` whose `main` holds one AWS target at `endpoint`, a
    /// controller for SecurityGroupIngress and `manifests`, for `bulwark apply --repo`.
    func policyOrigin(in base: String, endpoint: String, _ manifests: String) throws -> String {
        let origin = base + "/origin.git", seed = base + "/seed"
        try git("init", "-q", "--bare", "-b", "main", origin)
        try git("clone", "-q", origin, seed)
        try write(seed + "/controllers/aws.yaml", awsInventory(endpoint: endpoint, kinds: "SecurityGroupIngress"))
        try write(seed + "/desired-state/aws.yaml", manifests)
        try git("add", "-A", in: seed)
        try git("commit", "-qm", "forbid ssh from anywhere", in: seed)
        try git("push", "-q", "origin", "main", in: seed)
        return origin
    }

    /// `bulwark apply` of `origin` with moto's credentials, and the audit records of `resource`
    /// (`Kind/name`) as the git CLI reads them from the origin's `bulwark/audit`.
    func applyAndRecords(_ origin: String, in base: String, of resource: String) throws -> (ProcessOutput, [String]) {
        let result = try run(try bulwarkExecutable(), ["apply", "--repo", origin, "--state-dir", base + "/state"],
                             environment: MotoServer.environment)
        let records = try git("--git-dir", origin, "log", "--format=%B%x1e", "bulwark/audit").components(separatedBy: "\u{1e}")
            .filter { $0.contains("Bulwark-Resource: \(resource)") }
        return (result, records)
    }

    static func prefixListEntries(_ cidrs: [String]) -> String {
        QueryStandIn.ec2("GetManagedPrefixListEntries", "<entrySet>" + cidrs.map { "<item><cidr>\($0)</cidr></item>" }.joined() + "</entrySet>")
    }

    static func awsError(_ code: String) -> String {
        "<Response><Errors><Error><Code>\(code)</Code><Message>\(code) from the stand-in</Message></Error></Errors></Response>"
    }

    /// The prefix-list guard throttled by AWS (503 RequestLimitExceeded, on every retry): it
    /// blocked, and a person was offered to approve a change no guard had judged. Now the change
    /// is left unjudged: the pass fails (exit 1), no approval is offered, nothing is revoked, and
    /// the resource is recorded `unobserved` with AWS's error, read back with the git CLI.
    @Test func aGuardThrottledByAWSLeavesTheChangeUnjudgedAndOffersNoApproval() async throws {
        let stub = try QueryStandIn([
            "DescribeSecurityGroups": [(200, QueryStandIn.ec2("DescribeSecurityGroups",
                "<securityGroupInfo>\(QueryStandIn.group("sg-1", prefixList: "pl-mixed"))</securityGroupInfo>"))],
            // The observation reads the list; the guard, reading it again, is throttled each time.
            "GetManagedPrefixListEntries:pl-mixed": [(200, Self.prefixListEntries(["0.0.0.0/0", "10.0.0.0/8"])),
                                                     (503, Self.awsError("RequestLimitExceeded"))],
            "RevokeSecurityGroupIngress": [(200, QueryStandIn.ec2("RevokeSecurityGroupIngress", "<return>true</return>"))],
        ])
        try await withTemporaryDirectory { base in
            let origin = try policyOrigin(in: base, endpoint: stub.endpoint, """
                apiVersion: bulwark/v1
                kind: SecurityGroupIngress
                metadata: {name: sg}
                spec: {groups: all, forbid: [{cidr: 0.0.0.0/0, ports: [22]}]}
                """)
            let (result, records) = try applyAndRecords(origin, in: base, of: "SecurityGroupIngress/sg")
            #expect(result.status == 1, "a failed pass: \(result.stdout)\(result.stderr)")
            #expect(result.stderr.contains("RequestLimitExceeded") && result.stderr.contains("ran short"), "\(result.stderr)")
            #expect(!result.stdout.contains("BLOCKED") && !result.stdout.contains("bulwark approve"), "\(result.stdout)")
            #expect(!records.isEmpty && records.allSatisfy {
                $0.contains("Bulwark-Decision: unobserved") && $0.contains("RequestLimitExceeded") && !$0.contains(MotoServer.secretAccessKey)
            }, "\(records)")
            let log = try stub.requests
            #expect(log.filter { $0["Action"] == "GetManagedPrefixListEntries" }.count >= 2, "the guard read the list")
            #expect(!log.contains { $0["Action"] == "RevokeSecurityGroupIngress" }, "nothing revoked")
        }
    }

    /// The twin: the same guard reading its lists still blocks taking a list off that holds a
    /// network not forbidden (a judgement, not `.unjudged`), lets one holding only forbidden
    /// networks go, and blocks where the list cannot be read for another reason (403). Throttled
    /// (429 ThrottlingException) or AWS slowing down (503 SlowDown), it is unjudged.
    @Test func aPrefixListGuardThatReadsStillJudgesAndOnlyShortagesAreUnjudged() async throws {
        let stub = try QueryStandIn([
            "GetManagedPrefixListEntries:pl-mixed": [(200, Self.prefixListEntries(["0.0.0.0/0", "10.0.0.0/8"]))],
            "GetManagedPrefixListEntries:pl-world": [(200, Self.prefixListEntries(["0.0.0.0/1", "128.0.0.0/1"]))],
            "GetManagedPrefixListEntries:pl-busy": [(429, Self.awsError("ThrottlingException"))],
            "GetManagedPrefixListEntries:pl-slow": [(503, Self.awsError("SlowDown"))],
            "GetManagedPrefixListEntries:pl-denied": [(403, Self.awsError("UnauthorizedOperation"))],
        ])
        setenv("AWS_ACCESS_KEY_ID", MotoServer.accessKeyID, 1)
        setenv("AWS_SECRET_ACCESS_KEY", MotoServer.secretAccessKey, 1)
        let state = try awsState(endpoint: stub.endpoint, """
            apiVersion: bulwark/v1
            kind: SecurityGroupIngress
            metadata: {name: sg}
            spec: {groups: all, forbid: [{cidr: 0.0.0.0/0, ports: [22]}]}
            """, kinds: "SecurityGroupIngress")
        let resource = try #require(state.resources.values.first)
        let target = try #require(state.targets["account-1"])
        func verdict(_ observed: String) async -> GuardVerdict {
            await SecurityGroupDriver().assess([PropertyDrift(property: "ingress:sg-1", desired: "(none)", observed: observed)],
                                               to: resource, on: target)
        }
        let mixed = await verdict("tcp 22-22 0.0.0.0/0 via pl-mixed")
        #expect(!mixed.isUnjudged && mixed.blockReason?.contains("would also cut off 10.0.0.0/8") == true, "\(mixed)")
        #expect(await verdict("tcp 22-22 0.0.0.0/1 via pl-world; tcp 22-22 128.0.0.0/1 via pl-world") == .allow)
        let denied = await verdict("tcp 22-22 0.0.0.0/0 via pl-denied")
        #expect(!denied.isUnjudged && denied.blockReason?.contains("UnauthorizedOperation") == true, "\(denied)")
        for (list, code) in [("pl-busy", "ThrottlingException"), ("pl-slow", "SlowDown")] {
            let short = await verdict("tcp 22-22 0.0.0.0/0 via \(list)")
            #expect(short.isUnjudged && short.blockReason?.contains(code) == true, "\(short)")
        }
        #expect(AWSError(code: "Unreachable", message: "", status: nil).isShortage == false)
        #expect(AWSError(code: "InternalError", message: "", status: 500).isShortage == false)
        #expect(AWSError(code: "RequestLimitExceeded", message: "", status: 400).isShortage)
    }

    // MARK: - A forbid revokes only what it forbids

    /// Forbidding 22 from 0.0.0.0/0 revoked a rule letting in tcp 0-65535 from 0.0.0.0/0 (every
    /// other port was cut off with it), and forbidding 22 from 10.0.0.0/8 revoked 22 from the whole
    /// world. Now a rule that lets in more than is forbidden is refused: blocked with what to do,
    /// recorded (read back with the git CLI), and left in place; all traffic from ::/0 likewise.
    @Test func aForbidThatWouldRevokeABroaderRuleIsRefusedAndRecorded() async throws {
        let moto = try MotoServer()
        let ids = try moto.boto("""
            ec2 = aws("ec2")
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            def group(name, permissions):
                g = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
                ec2.authorize_security_group_ingress(GroupId=g, IpPermissions=permissions)
                return g
            wide = group("wide", [{"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
                                  {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
            admin = group("admin", [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
            print(wide, admin)
            """).split(separator: " ").map(String.init)
        let (wide, admin) = (ids[0], ids[1])
        func rules() throws -> String {
            try moto.boto("""
                out = []
                for g in aws("ec2").describe_security_groups(GroupIds=["\(wide)", "\(admin)"])["SecurityGroups"]:
                    for p in g["IpPermissions"]:
                        ranges = [r["CidrIp"] for r in p.get("IpRanges", [])] + [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
                        out += ["%s %s %s-%s %s" % (g["GroupName"], p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), r) for r in ranges]
                print(",".join(sorted(out)))
                """)
        }
        let before = try rules()
        #expect(before.contains("admin tcp 22-22 0.0.0.0/0") && before.contains("wide -1 ") && before.contains("wide tcp 0-65535 0.0.0.0/0"),
                "\(before)")
        try await withTemporaryDirectory { base in
            let origin = try policyOrigin(in: base, endpoint: moto.endpoint, """
                apiVersion: bulwark/v1
                kind: SecurityGroupIngress
                metadata: {name: no-ssh-from-anywhere}
                spec: {groups: [wide], forbid: [{cidr: 0.0.0.0/0, ports: [22]}, {cidr: "::/0", ports: [22]}]}
                ---
                apiVersion: bulwark/v1
                kind: SecurityGroupIngress
                metadata: {name: no-ssh-from-the-office}
                spec: {groups: [admin], forbid: [{cidr: 10.0.0.0/8, ports: [22]}]}
                """)
            let (result, wideRecords) = try applyAndRecords(origin, in: base, of: "SecurityGroupIngress/no-ssh-from-anywhere")
            #expect(result.stdout.contains("BLOCKED") && result.stdout.contains("bulwark approve"), "\(result.stdout)\(result.stderr)")
            #expect(wideRecords.count == 1 && wideRecords.allSatisfy {
                $0.contains("Bulwark-Decision: blocked")
                    && $0.contains("rule tcp 0-65535 0.0.0.0/0 on security group \(wide) lets in more than is forbidden (22 from 0.0.0.0/0 is forbidden)")
                    && $0.contains("rule all * ::/0 on security group \(wide) lets in more than is forbidden (22 from ::/0 is forbidden)")
                    && $0.contains("Split it so that what is forbidden is a rule of its own")
            }, "\(wideRecords)")
            let adminRecords = try git("--git-dir", origin, "log", "--format=%B%x1e", "bulwark/audit").components(separatedBy: "\u{1e}")
                .filter { $0.contains("Bulwark-Resource: SecurityGroupIngress/no-ssh-from-the-office") }
            #expect(adminRecords.count == 1 && adminRecords.allSatisfy {
                $0.contains("Bulwark-Decision: blocked") && $0.contains("rule tcp 22-22 0.0.0.0/0 on security group \(admin) lets in more")
            }, "\(adminRecords)")
            #expect(try rules() == before, "no rule revoked")
        }
    }

    /// The twin: rules that let in only what is forbidden are revoked, each exactly (22-23 from the
    /// world where both are forbidden, 3389 from the world, 22 from ::/0), and the rules beside
    /// them stay (443 and udp 53 from the world, 22 from 10.1.0.0/16).
    @Test func aForbidRevokesExactlyTheRulesItForbids() async throws {
        let moto = try MotoServer()
        let web = try moto.boto("""
            ec2 = aws("ec2")
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
            ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.1.0.0/16"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 23, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
                {"IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
                {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
            print(web)
            """)
        try await withCredentials(moto) {
            let state = try awsState(endpoint: moto.endpoint, """
                apiVersion: bulwark/v1
                kind: SecurityGroupIngress
                metadata: {name: no-admin-ports}
                spec: {groups: [web], forbid: [{cidr: 0.0.0.0/0, ports: [22, 23, 3389]}, {cidr: "::/0", ports: [22]}]}
                """, kinds: "SecurityGroupIngress")
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })")
            #expect(outcome.entries.map { $0.record.result } == [.verified])
            let rules = try moto.boto("""
                g = aws("ec2").describe_security_groups(GroupIds=["\(web)"])["SecurityGroups"][0]
                out = []
                for p in g["IpPermissions"]:
                    ranges = [r["CidrIp"] for r in p.get("IpRanges", [])] + [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
                    out += ["%s %s-%s %s" % (p["IpProtocol"], p["FromPort"], p["ToPort"], r) for r in ranges]
                print(",".join(sorted(out)))
                """)
            #expect(rules == "tcp 22-22 10.1.0.0/16,tcp 443-443 0.0.0.0/0,udp 53-53 0.0.0.0/0", "only the forbidden rules went")
            #expect(try await !reconcile(state).0.hasDrift)
        }
        let forbid = [SecurityGroupDriver.Scope.Forbidden(cidr: "0.0.0.0/0", ports: [22])]
        #expect(SecurityGroupDriver.Rule(proto: "tcp", from: 22, to: 22, cidr: "0.0.0.0/1").isForbidden(by: forbid))
        #expect(!SecurityGroupDriver.Rule(proto: "tcp", from: 22, to: 23, cidr: "0.0.0.0/0").isForbidden(by: forbid))
        #expect(!SecurityGroupDriver.Rule(proto: "-1", from: nil, to: nil, cidr: "0.0.0.0/0").isForbidden(by: forbid))
        #expect(!SecurityGroupDriver.Rule(proto: "tcp", from: 22, to: 22, cidr: "::/0").isForbidden(by: forbid))
    }
}
