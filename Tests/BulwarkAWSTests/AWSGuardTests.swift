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
}
