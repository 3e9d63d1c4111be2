@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Host agents (`--self`, `--target`): each reconciles only its own targets and commits to its own
/// audit ref; readers see every ref as one history.
@Suite struct HostAgentTests {
    @Test func eachAgentFixesOnlyItsOwnHostAndRecordsOnItsOwnRef() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 3)
            let untouched = try fleet.snapshot(2)
            // Host 1 by machine id, host 0 by host name.
            for index in [1, 0] {
                let run = try fleet.agent(index, "apply", ["--self", "--identity-root", fleet.identity(index)])
                #expect(run.status == 0, "\(run.stderr)")
            }
            #expect(try fleet.snapshot(2) == untouched, "host 2 has no agent yet: nothing of it may change")
            // plan takes the same selection: host 0 is in sync, host 2 still drifted.
            #expect(try fleet.agent(0, "plan", ["--target", "web-0"]).status == 0)
            let drifted = try fleet.agent(2, "plan", ["--self", "--identity-root", fleet.identity(2), "--output", "json"])
            #expect(drifted.status == 2 && drifted.stdout.contains("web-2") && !drifted.stdout.contains("\"web-0\""), "\(drifted.stderr)")
            #expect(try fleet.refs(under: "bulwark/") == ["bulwark/audit-targets/web-0", "bulwark/audit-targets/web-1"])
            for index in [0, 1] {
                let targets = try fleet.trailers("Bulwark-Target", on: "bulwark/audit-targets/web-\(index)")
                #expect(!targets.isEmpty && targets.allSatisfy { $0 == "web-\(index)" })
            }
            // A second pass finds both hosts fixed: nothing new is recorded.
            let again = try fleet.agent(0, "apply", ["--target", "web-0"])
            #expect(again.status == 0, "\(again.stderr)")
            let before = try fleet.trailers("Bulwark-Id", on: "bulwark/audit-targets/web-0")
            #expect(try fleet.trailers("Bulwark-Id", on: "bulwark/audit-targets/web-0") == before)

            // A reader (one process, the shared branch) sees both agents' records as one history.
            let log = try bulwark(["log", "--repo", fleet.origin, "--state-dir", dir + "/reader", "--output", "json", "--limit", "1000"])
            #expect(log.status == 0, "\(log.stderr)")
            let total = try fleet.trailers("Bulwark-Id", on: "bulwark/audit-targets/web-0").count
                + fleet.trailers("Bulwark-Id", on: "bulwark/audit-targets/web-1").count
            let entries = try JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [[String: Any]] ?? []
            #expect(entries.count == total)
            let shown = Set(entries.compactMap { $0["target"] as? String })
            #expect(shown == ["web-0", "web-1"])

            // verify-audit checks every ref, each a chain of its own.
            let verified = try bulwark(["verify-audit", "--repo", fleet.origin])
            #expect(verified.status == 0, "\(verified.stderr)")
            #expect(verified.stdout.contains("on bulwark/audit-targets/web-0") && verified.stdout.contains("on bulwark/audit-targets/web-1"))
        }
    }

    /// Guard: an agent bound to nothing (an identity no target names, a target that does not
    /// exist) changes nothing and records nothing.
    @Test func anAgentBoundToNoTargetChangesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 2)
            let before = try (0..<2).map(fleet.snapshot)
            try FileManager.default.createDirectory(atPath: dir + "/stranger/etc", withIntermediateDirectories: true)
            try write(dir + "/stranger/etc/hostname", "web-9\n")
            try write(dir + "/stranger/etc/machine-id", "not-a-machine-id\n")
            let stranger = try fleet.agent(0, "apply", ["--self", "--identity-root", dir + "/stranger"])
            #expect(stranger.status == 1)
            #expect(stranger.stderr.contains("no target of revision") && stranger.stderr.contains("web-9"))
            let missing = try fleet.agent(1, "apply", ["--target", "web-7"])
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("no target named web-7"))
            #expect(try (0..<2).map(fleet.snapshot) == before)
            #expect(try fleet.refs(under: "bulwark/").isEmpty)
            // The legitimate agent on the same state directory still goes through.
            let legit = try fleet.agent(0, "apply", ["--self", "--identity-root", fleet.identity(0)])
            #expect(legit.status == 0, "\(legit.stderr)")
            #expect(try fleet.refs(under: "bulwark/") == ["bulwark/audit-targets/web-0"])
            #expect(try fleet.snapshot(1) == before[1])
        }
    }

    /// The default, one process owning every target, still writes the shared branch, next to
    /// agents' refs in the same repository (the layout git allows: not `bulwark/audit/<target>`).
    @Test func theSharedBranchAndAgentRefsLiveSideBySide() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 2)
            let agent = try fleet.agent(0, "apply", ["--target", "web-0"])
            #expect(agent.status == 0, "\(agent.stderr)")
            let single = try bulwark(["apply", "--repo", fleet.origin, "--state-dir", dir + "/single"])
            #expect(single.status == 0, "\(single.stderr)")
            #expect(try fleet.refs(under: "bulwark/") == ["bulwark/audit", "bulwark/audit-targets/web-0"])
            // Host 0 was fixed by its agent: the single process only fixed host 1.
            #expect(Set(try fleet.trailers("Bulwark-Target", on: "bulwark/audit")) == ["web-1"])
            // What git refuses, and why the layout is a sibling folder.
            let refused = try run("/usr/bin/git", ["--git-dir", fleet.origin, "update-ref", "refs/heads/bulwark/audit/web-0",
                                                   "refs/heads/bulwark/audit"])
            #expect(refused.status != 0)
        }
    }

    /// The daemon as a host agent: fixes its own host, commits to its own ref, leaves the other
    /// host alone, and its status page reads every agent's records.
    @Test func aDaemonAgentReconcilesOnlyItsOwnHost() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 2)
            let other = try fleet.agent(1, "apply", ["--self", "--identity-root", fleet.identity(1)])
            #expect(other.status == 0, "\(other.stderr)")
            let untouched = try fleet.snapshot(1)
            let daemon = try DaemonProcess(["--repo", fleet.origin, "--state-dir", fleet.state(0), "--poll", "1",
                                            "--self", "--identity-root", fleet.identity(0)], logPath: dir + "/daemon.log")
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            #expect(daemon.wait(seconds: 30) { ((try? fleet.trailers("Bulwark-Target", on: "bulwark/audit-targets/web-0")) ?? []).count > 0 },
                    "\(daemon.log)")
            #expect(Set(try fleet.trailers("Bulwark-Target", on: "bulwark/audit-targets/web-0")) == ["web-0"])
            #expect(daemon.terminate() == 0)
            #expect(try fleet.snapshot(1) == untouched)
            #expect(try fleet.refs(under: "bulwark/") == ["bulwark/audit-targets/web-0", "bulwark/audit-targets/web-1"])

            // A daemon of the default mode reads every agent's ref: its MTTR counts both agents' fixes.
            let verified = try ["web-0", "web-1"].flatMap { try fleet.trailers("Bulwark-Result", on: "bulwark/audit-targets/\($0)") }
                .filter { $0 == "verified" }.count
            let reader = try DaemonProcess(["--repo", fleet.origin, "--state-dir", dir + "/reader", "--poll", "1"],
                                           logPath: dir + "/reader.log")
            #expect(reader.wait(seconds: 60) { (try? reader.get("/readyz").status) == 200 }, "\(reader.log)")
            let status = try JSONSerialization.jsonObject(with: Data(try reader.get("/api/v1/status").body.utf8)) as? [String: Any]
            let week = status?["mttrLastWeek"] as? [String: Any]
            #expect(verified > 0 && week?["fixes"] as? Int == verified, "\(String(describing: week))")
            #expect(reader.terminate() == 0)
        }
    }

    @Test func auditRefNamesAreCheckedAndStable() throws {
        #expect(try AuditRef.agent(targets: ["web-2", "web-1", "web-2"]).branch == "bulwark/audit-targets/web-1+web-2")
        #expect(throws: CommandError.self) { try AuditRef.agent(targets: ["a..b"]) }
        #expect(throws: CommandError.self) { try AuditRef.agent(targets: []) }
        #expect(try AuditRef.replica("r1").isPerWriter)
        #expect(!AuditRef(shared: "bulwark/audit").isPerWriter)
        #expect(AuditRef(shared: "bulwark/audit").fetchRefspecs(policyBranch: "main") == ["+refs/heads/*:refs/remotes/origin/*"])
        #expect(try AuditRef.agent(targets: ["web-1"]).fetchRefspecs(policyBranch: "main")
                == ["+refs/heads/main:refs/remotes/origin/main",
                    "+refs/heads/bulwark/audit-targets/web-1:refs/remotes/origin/bulwark/audit-targets/web-1"])
    }

    @Test func hostIdentityReadsOnlyWellFormedValues() async throws {
        try await withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: true)
            try write(dir + "/etc/machine-id", "ABCDEF0123456789ABCDEF0123456789\n")
            try write(dir + "/etc/hostname", "web-1\n")
            let identity = HostIdentity.read(root: dir)
            #expect(identity == HostIdentity(machineID: "abcdef0123456789abcdef0123456789", hostname: "web-1"))
            let location = SourceLocation(file: "t", line: 1)
            #expect(identity.binds(Target(name: "web-1", adapter: "host", settings: [:], location: location)))
            #expect(identity.binds(Target(name: "x", adapter: "host", labels: ["machine-id": "abcdef0123456789abcdef0123456789"],
                                          settings: [:], location: location)))
            #expect(!identity.binds(Target(name: "web-10", adapter: "host", labels: ["hostname": "web-1 "], settings: [:],
                                           location: location)))
            // The host's firewall is the agent's (nft acts on the machine it runs on); a database or a
            // cloud account is the replicas', whatever its name or labels say.
            #expect(identity.binds(Target(name: "web-1-firewall", adapter: "nftables", labels: ["hostname": "web-1"], settings: [:],
                                          location: location)))
            #expect(!identity.binds(Target(name: "db", adapter: "postgres", labels: ["hostname": "web-1"], settings: [:],
                                           location: location)))
            #expect(!identity.binds(Target(name: "web-1", adapter: "aws", settings: [:], location: location)))
            try write(dir + "/etc/machine-id", "../../etc/shadow\n")
            try write(dir + "/etc/hostname", "\n")
            #expect(HostIdentity.read(root: dir) == HostIdentity(machineID: nil, hostname: nil))
        }
    }
}
