import BulwarkCore
import BulwarkGit
import BulwarkRuntime
import BulwarkServer
import BulwarkTestSupport
import Foundation
import Logging
import Prometheus
import Testing

/// The status model the daemon hands the server (`DaemonStatus`), from a real daemon over a
/// real git repository: before its source is synced it says so and names no revision; once a
/// cycle has run it names the commit in force, as a `Revision`, and counts the cycle.
@Suite(.timeLimit(.minutes(20))) struct DaemonStatusTests {
    /// A policy repository with one commit holding a manifest-free tree, and a daemon on it.
    func daemon(in dir: String) throws -> (Daemon, String) {
        let origin = dir + "/origin"
        try git("init", "-q", "-b", "main", origin)
        try write(origin + "/README.md", "policy\n")
        try git("-C", origin, "add", "-A")
        try git("-C", origin, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "policy")
        let head = try git("-C", origin, "rev-parse", "HEAD").trimmingCharacters(in: .whitespacesAndNewlines)
        let configuration = PolicyRepository.Configuration(url: origin, stateDirectory: dir + "/state")
        let options = RuntimeOptions(configuration: configuration, displayURL: origin, sourceVerification: nil, registry: Registry([]))
        let daemon = try Daemon(options: options, settings: Daemon.Settings(), logger: Logger(label: "test"),
                                registry: PrometheusCollectorRegistry())
        return (daemon, head)
    }

    @Test func beforeTheSourceIsSyncedTheStatusSaysSoAndNamesNoRevision() async throws {
        try await withTemporaryDirectory { dir in
            let (daemon, _) = try daemon(in: dir)
            let status = await daemon.status(now: Date())
            #expect(!status.ready && status.readiness.hasPrefix("source not synced yet"))
            #expect(status.revision == nil && status.cycles == 0 && status.targets.isEmpty && status.openDrift.isEmpty)
            #expect(status.mttrLastDay.fixes == 0 && status.recent.isEmpty)
        }
    }

    @Test func afterACycleTheStatusNamesTheCommitInForce() async throws {
        try await withTemporaryDirectory { dir in
            let (daemon, head) = try daemon(in: dir)
            await daemon.requestSource()
            await daemon.runPending()
            let status = await daemon.status(now: Date())
            #expect(status.revision == .commit(head), "\(status.readiness)")
            #expect(status.sourceError == nil && status.lastCycleError == nil)
            #expect(status.cycles == 1 && !status.busy)
            // Its JSON is the documented shape: the revision is the commit id as text.
            let json = try #require(try JSONSerialization.jsonObject(with: JSONOutput.encoder().encode(status)) as? [String: Any])
            #expect(json["revision"] as? String == head && json["schemaVersion"] as? Int == 2)
        }
    }
}
