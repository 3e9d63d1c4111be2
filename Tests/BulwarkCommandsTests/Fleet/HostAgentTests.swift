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
            #expect(Set(try fleet.refs(under: "bulwark/")) == [fleet.hostRef(0), fleet.hostRef(1)])
            for index in [0, 1] {
                let targets = try fleet.trailers("Bulwark-Target", on: fleet.hostRef(index))
                #expect(!targets.isEmpty && targets.allSatisfy { $0 == "web-\(index)" })
            }
            // A second pass finds both hosts fixed: nothing new is recorded.
            let again = try fleet.agent(0, "apply", ["--target", "web-0"])
            #expect(again.status == 0, "\(again.stderr)")
            let before = try fleet.trailers("Bulwark-Id", on: fleet.hostRef(0))
            #expect(try fleet.trailers("Bulwark-Id", on: fleet.hostRef(0)) == before)
            #expect(Set(try fleet.refs(under: "bulwark/")) == [fleet.hostRef(0), fleet.hostRef(1)], "--target on that state directory keeps its ref")

            // A reader (one process, the shared branch) sees both agents' records as one history.
            let log = try bulwark(["log", "--repo", fleet.origin, "--state-dir", dir + "/reader", "--output", "json", "--limit", "1000"])
            #expect(log.status == 0, "\(log.stderr)")
            let total = try fleet.trailers("Bulwark-Id", on: fleet.hostRef(0)).count
                + fleet.trailers("Bulwark-Id", on: fleet.hostRef(1)).count
            let entries = try JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [[String: Any]] ?? []
            #expect(entries.count == total)
            let shown = Set(entries.compactMap { $0["target"] as? String })
            #expect(shown == ["web-0", "web-1"])
            // The same from an agent's own state directory, read without the agent's flags (the
            // shared branch, not its ref): the state directory's audit branch is not taken for a
            // mistyped --audit-branch, and its trail is left alone.
            let fromAgent = try fleet.agent(0, "log", ["--output", "json", "--limit", "1000"])
            #expect(fromAgent.status == 0, "\(fromAgent.stderr)")
            #expect((try JSONSerialization.jsonObject(with: Data(fromAgent.stdout.utf8)) as? [[String: Any]])?.count == total)
            #expect(!fromAgent.stderr.contains("tamper") && !fromAgent.stderr.contains("deleted"), "\(fromAgent.stderr)")
            #expect(try fleet.agent(0, "apply", ["--target", "web-0"]).status == 0, "the agent goes on on its ref")
            // Writing the shared branch with it is refused: its numbers there would read as
            // records removed from both.
            let plain = try fleet.agent(0, "apply", [])
            #expect(plain.status == 64 && plain.stderr.contains("records to the audit branch \(fleet.hostRef(0))"), "\(plain.stderr)")

            // verify-audit checks every ref, each a chain of its own.
            let verified = try bulwark(["verify-audit", "--repo", fleet.origin])
            #expect(verified.status == 0, "\(verified.stderr)")
            #expect(verified.stdout.contains("on \(fleet.hostRef(0))") && verified.stdout.contains("on \(fleet.hostRef(1))"), "\(verified.stdout)")
        }
    }

    /// Guard: the shared branch, which an agent's state directory only reads, rewritten on the
    /// origin (an administrator took a forged record off it): the agent's copy follows the origin
    /// as it is. Nothing is replayed or pushed, no "not this instance's" warning, the trail is
    /// untouched. Legitimate: the agent goes on recording on its own ref.
    @Test func anAgentsCopyOfTheSharedBranchFollowsItWhenTheOriginRewritesIt() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 2)
            #expect(try fleet.agent(0, "apply", ["--self", "--identity-root", fleet.identity(0)]).status == 0)
            let central = try bulwark(["apply", "--repo", fleet.origin, "--state-dir", dir + "/central"])
            #expect(central.status == 0, "\(central.stderr)")
            // A record forged on the shared branch, read by the agent's state directory.
            let work = dir + "/forger"
            try git("clone", "-q", "-b", "bulwark/audit", fleet.origin, work)
            try git("-c", "user.name=Bulwark", "-c", "user.email=bulwark@localhost", "-c", "commit.gpgsign=false",
                    "commit", "-q", "--allow-empty", "-m", "remediate(x): forged\n\nBulwark-Id: 01FQRGEDF0110W00000000000", in: work)
            try git("push", "-q", "origin", "HEAD:refs/heads/bulwark/audit", in: work)
            let first = try fleet.agent(0, "log", ["--output", "json", "--limit", "1000"])
            #expect(first.status == 0 && first.stdout.contains("01FQRGEDF0110W00000000000"), "\(first.stderr)")
            let clone = fleet.state(0) + "/repository.git"
            #expect(try git("--git-dir", clone, "rev-parse", "bulwark/audit") == (try git("--git-dir", fleet.origin, "rev-parse", "bulwark/audit")))
            // The administrator takes it off.
            try git("--git-dir", fleet.origin, "update-ref", "refs/heads/bulwark/audit", "bulwark/audit~1")
            let origin = try git("--git-dir", fleet.origin, "for-each-ref")
            let trail = try read(fleet.state(0) + "/audit-trail.json")
            let again = try fleet.agent(0, "log", ["--output", "json", "--limit", "1000"])
            #expect(again.status == 0, "\(again.stderr)")
            #expect(!again.stderr.contains("not this instance's") && !again.stderr.contains("tamper"), "\(again.stderr)")
            #expect(!again.stdout.contains("01FQRGEDF0110W00000000000"), "the forged record is gone from the agent's copy too")
            #expect(try git("--git-dir", clone, "rev-parse", "bulwark/audit") == (try git("--git-dir", fleet.origin, "rev-parse", "bulwark/audit")))
            #expect(try git("--git-dir", fleet.origin, "for-each-ref") == origin, "nothing pushed")
            #expect(try read(fleet.state(0) + "/audit-trail.json") == trail, "the agent's trail is its own ref's")
            // The agent goes on on its ref.
            try write(fleet.host(0) + "/etc/ssh/sshd_config",
                      try read(fleet.host(0) + "/etc/ssh/sshd_config").replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n"),
                      mode: 0o600)
            let before = try fleet.trailers("Bulwark-Id", on: fleet.hostRef(0)).count
            #expect(try fleet.agent(0, "apply", ["--self", "--identity-root", fleet.identity(0)]).status == 0)
            #expect(try fleet.trailers("Bulwark-Id", on: fleet.hostRef(0)).count == before + 1)
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
            #expect(try fleet.refs(under: "bulwark/") == [fleet.hostRef(0)])
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
            #expect(daemon.wait(seconds: 30) { ((try? fleet.trailers("Bulwark-Target", on: fleet.hostRef(0))) ?? []).count > 0 },
                    "\(daemon.log)")
            #expect(Set(try fleet.trailers("Bulwark-Target", on: fleet.hostRef(0))) == ["web-0"])
            #expect(daemon.terminate() == 0)
            #expect(try fleet.snapshot(1) == untouched)
            #expect(Set(try fleet.refs(under: "bulwark/")) == [fleet.hostRef(0), fleet.hostRef(1)])

            // A daemon of the default mode reads every agent's ref: its MTTR counts both agents' fixes.
            let verified = try [0, 1].flatMap { try fleet.trailers("Bulwark-Result", on: fleet.hostRef($0)) }
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

    /// Guard: the bound targets change (a revision binds a second target to the host) and the
    /// agent starts again: its records stay on its one ref, named after the host, with no new
    /// ref and no tampering reported (a ref named after the targets would have moved, leaving
    /// the tamper check to find its last push gone). What still goes through: the new target is
    /// reconciled on that ref, and `verify-audit` finds the ref whole.
    @Test func anAgentsRefKeepsItsNameWhenItsTargetsChange() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 2)
            let first = try fleet.agent(0, "apply", ["--self", "--identity-root", fleet.identity(0)])
            #expect(first.status == 0, "\(first.stderr)")
            #expect(try fleet.refs(under: "bulwark/") == [fleet.hostRef(0)])
            let before = try fleet.trailers("Bulwark-Id", on: fleet.hostRef(0))

            // web-1 is now also bound to host 0 (by its host name); host 1's agent never ran.
            let work = dir + "/work"
            try git("clone", "-q", fleet.origin, work)
            let targets = try read(work + "/controllers/targets.yaml")
            try write(work + "/controllers/targets.yaml",
                      targets.replacingOccurrences(of: "{role: baseline, machine-id: \(fleet.machineID(1))}",
                                                   with: "{role: baseline, machine-id: \(fleet.machineID(1)), hostname: web-0}"))
            try git("commit", "-qam", "web-1 runs on web-0", in: work)
            try git("push", "-q", "origin", "main", in: work)

            let second = try fleet.agent(0, "apply", ["--self", "--identity-root", fleet.identity(0)])
            #expect(second.status == 0, "\(second.stderr)")
            #expect(!second.stderr.contains("tampered") && !second.stdout.contains("tampered"), "\(second.stderr)")
            #expect(try fleet.refs(under: "bulwark/") == [fleet.hostRef(0)], "no ref named after the new targets")
            let after = try fleet.trailers("Bulwark-Id", on: fleet.hostRef(0))
            #expect(Array(after.suffix(before.count)) == before, "the ref only grew")
            #expect(Set(try fleet.trailers("Bulwark-Target", on: fleet.hostRef(0))) == ["web-0", "web-1"])
            #expect(try fleet.trailers("Bulwark-Decision", on: fleet.hostRef(0)).allSatisfy { $0 != "refused" })
            let verified = try bulwark(["verify-audit", "--repo", fleet.origin])
            #expect(verified.status == 0, "\(verified.stderr)")
        }
    }

    /// Refs named the old way (`audit-targets/<targets>`, as agents before named them) still
    /// work: an agent whose state directory writes to one goes on writing to it, whatever it is
    /// started with; readers (`log`, `report`, `verify-audit`) read it and the new host refs as
    /// one history.
    @Test func oldAgentRefsAreKeptByTheirAgentAndReadWithTheNewOnes() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 2)
            // Host 0's state directory writes to audit-targets/web-0 (an agent of before, or --target).
            let old = try fleet.agent(0, "apply", ["--target", "web-0"])
            #expect(old.status == 0, "\(old.stderr)")
            let oldRecords = try fleet.trailers("Bulwark-Id", on: "bulwark/audit-targets/web-0")
            #expect(!oldRecords.isEmpty)
            // Drift again, and the same state directory as a --self agent: it stays on its ref.
            let config = fleet.host(0) + "/etc/ssh/sshd_config"
            try write(config, try read(config).replacingOccurrences(of: "PermitRootLogin no", with: "PermitRootLogin yes"))
            let now = try fleet.agent(0, "apply", ["--self", "--identity-root", fleet.identity(0)])
            #expect(now.status == 0, "\(now.stderr)")
            #expect(!now.stderr.contains("tampered"), "\(now.stderr)")
            let kept = try fleet.trailers("Bulwark-Id", on: "bulwark/audit-targets/web-0")
            #expect(kept.count > oldRecords.count && Array(kept.suffix(oldRecords.count)) == oldRecords,
                    "\(kept.count) records after \(oldRecords.count): the fix went on the same ref, which only grew")
            // Host 1 starts fresh: a ref named after its machine id.
            let fresh = try fleet.agent(1, "apply", ["--self", "--identity-root", fleet.identity(1)])
            #expect(fresh.status == 0, "\(fresh.stderr)")
            #expect(try fleet.refs(under: "bulwark/") == [fleet.hostRef(1), "bulwark/audit-targets/web-0"])

            let log = try bulwark(["log", "--repo", fleet.origin, "--state-dir", dir + "/reader", "--output", "json", "--limit", "1000"])
            #expect(log.status == 0, "\(log.stderr)")
            let entries = try JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [[String: Any]] ?? []
            let total = kept.count + (try fleet.trailers("Bulwark-Id", on: fleet.hostRef(1))).count
            #expect(entries.count == total && Set(entries.compactMap { $0["target"] as? String }) == ["web-0", "web-1"])
            let report = try bulwark(["report", "--repo", fleet.origin, "--state-dir", dir + "/reader", "--output", "json"])
            let records = (try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])?["records"] as? Int
            #expect(report.status == 0 && records == total, "\(report.stdout.prefix(300))")
            let verified = try bulwark(["verify-audit", "--repo", fleet.origin])
            #expect(verified.status == 0, "\(verified.stderr)")
            #expect(verified.stdout.contains("on bulwark/audit-targets/web-0") && verified.stdout.contains("on \(fleet.hostRef(1))"))
        }
    }

    @Test func auditRefNamesAreCheckedAndStable() throws {
        #expect(try AuditRef.host(HostIdentity(machineID: "4f0c6e2d9a1b4c7e8d3f2a1b0c9d8e7f", hostname: "web-17")).branch
                == "bulwark/audit-hosts/4f0c6e2d9a1b4c7e8d3f2a1b0c9d8e7f")
        #expect(try AuditRef.host(HostIdentity(machineID: nil, hostname: "web-17")).branch == "bulwark/audit-hosts/web-17")
        #expect(throws: CommandError.self) { try AuditRef.host(HostIdentity(machineID: nil, hostname: nil)) }
        #expect(throws: CommandError.self) { try AuditRef.host(HostIdentity(machineID: nil, hostname: "a..b")) }
        #expect(try AuditRef.host(HostIdentity(machineID: nil, hostname: "web-17")).isPerWriter)
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
