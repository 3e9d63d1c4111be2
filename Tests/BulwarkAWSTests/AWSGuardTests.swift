import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

@testable import BulwarkAWS

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

}
