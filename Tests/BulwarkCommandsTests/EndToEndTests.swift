@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do (without it, a build failed now and then with
// "missing import of defining module 'CDispatch'" as files were added).
internal import CDispatch
import Foundation
import Testing

@Suite struct EndToEndTests {
    @Test func planApplyVerifyAuditThenInSync() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let planned = try s.planned()
            let plan = try s.run("plan")
            #expect(plan.status == 2, "plan exits 2 on drift: \(plan.stderr)")
            #expect(plan.stdout.contains("PermitRootLogin: yes -> no"))

            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            let fixed = apply.stdout.split(separator: "\n").filter { $0.hasPrefix("fixed") }.count
            #expect(fixed > 20)

            // The host tree is fixed: sshd setting before any Match, shadow 0640, runtime sysctl.
            let sshd = try read(s.host + "/etc/ssh/sshd_config")
            let added = try #require(sshd.range(of: "PermitEmptyPasswords no"))
            let match = try #require(sshd.range(of: "Match User backup"))
            #expect(added.lowerBound < match.lowerBound)
            #expect(sshd.contains("\nPermitRootLogin no\n"))
            #expect(modeAndOwnerMode(s.host + "/etc/shadow") == 0o640)
            #expect(try read(s.host + "/proc/sys/net/ipv4/ip_forward") == "0\n")

            // One commit per remediation on origin's audit branch, each verified, as git reads it.
            let commits = try s.auditCommits()
            #expect(commits.count == fixed)
            #expect(try s.trailers("Bulwark-Result") == Array(repeating: "verified", count: fixed))
            #expect(Set(try s.trailers("Bulwark-Desired-Commit")).count == 1)
            try git("--git-dir", s.origin, "fsck", "--strict")
            // Secrets stay out of the history: the guest's password hash is nowhere in it.
            let everything = try git("--git-dir", s.origin, "log", "-p", "--all")
            #expect(!everything.contains("guesthash"))

            // In sync now; another apply commits nothing.
            #expect(try s.run("plan").status == 0)
            #expect(try s.run("apply").status == 0)
            #expect(try s.auditCommits() == commits)

            // `log` reads the same history, filtered.
            let log = try s.run("log", "--kind", "SSHDConfig", "--output", "json")
            #expect(log.status == 0)
            let entries = try JSONDecoder().decode([[String: AnyDecodable]].self, from: Data(log.stdout.utf8))
            #expect(entries.count == planned.fixesByKind["SSHDConfig"])
            #expect(fixed == planned.fixes)
        }
    }

    @Test func aBrokenRevisionIsRefusedWholeAndNothingChanges() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("desired-state/hosts/zz-broken.yaml", """
                apiVersion: bulwark/v1
                kind: SSHDConfig
                metadata: {name: broken}
                spec:
                  MaxAuthTries: many
                """)
            let before = try s.snapshot()
            let apply = try s.run("apply")
            #expect(apply.status == 1)
            #expect(apply.stderr.contains("desired-state/hosts/zz-broken.yaml:5:"))
            #expect(apply.stderr.contains("spec.MaxAuthTries"))
            #expect(try s.snapshot() == before)
            #expect(try s.run("plan").status == 1)
            // Every refusal is in git, once: the record names the file, line and field.
            #expect(try s.trailers("Bulwark-Decision") == ["refused"])
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(message.hasPrefix("refuse(Revision/"))
            #expect(message.contains("desired-state/hosts/zz-broken.yaml:5:"))
            #expect(try s.run("apply").status == 1)
            #expect(try s.auditCommits().count == 1, "the same refusal is not recorded again")
            #expect(try s.snapshot() == before)
        }
    }

    @Test func anUnreachableOriginKeepsRecordsAndPushesThemLater() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            #expect(try s.run("plan").status == 2)  // fetches once
            try FileManager.default.moveItem(atPath: s.origin, toPath: s.origin + ".away")
            // Done, but against a stale revision and with its records kept locally: 3, not 0
            // (a script or CI gate must not read it as success).
            let apply = try s.run("apply")
            #expect(apply.status == 3, "\(apply.stderr)")
            #expect(apply.stderr.contains("using the last fetched revision"))
            // Said as it is, not as libgit2's "unsupported URL protocol" (outside review).
            #expect(apply.stderr.contains("(there is no git repository at ") && apply.stderr.contains("origin.git); using"), "\(apply.stderr)")
            #expect(apply.stderr.contains("kept in"))
            #expect(try s.run("plan").status == 3, "in sync, fixed from the last fetched revision, which may be stale")

            try FileManager.default.moveItem(atPath: s.origin + ".away", toPath: s.origin)
            let later = try s.run("apply")
            #expect(later.status == 0, "\(later.stderr)")
            #expect(later.stdout.contains("Pushed \(fixes) audit commits"))
            #expect(try s.run("plan").status == 0)
            #expect(try s.trailers("Bulwark-Result").count == fixes)
        }
    }

    /// The audit branch's lock file in the origin, left by a git process killed while it moved
    /// the branch: the records are kept and the warning names the lock and what to do, at once
    /// (retried as a race with another writer, each pass waited out the push's whole deadline
    /// and blamed another writer). Once it is removed, the next pass pushes them. A lock as
    /// fresh as a running push's is still waited for as before (`AuditPushRaceTests`).
    @Test func aStaleLockInTheOriginIsNamedAndTheRecordsWait() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            #expect(try s.run("apply").status == 0)
            let pushed = try s.auditCommits().count
            let lock = s.origin + "/refs/heads/bulwark/audit.lock"
            try write(lock, "")
            let old = Date().addingTimeInterval(-600).timeIntervalSince1970
            var times = [timeval(tv_sec: Int(old), tv_usec: 0), timeval(tv_sec: Int(old), tv_usec: 0)]
            #expect(utimes(lock, &times) == 0)
            // The host drifted again: made anew, as the scenario made it.
            try FileManager.default.removeItem(atPath: s.host)
            try DemoHost.create(at: s.host)
            // Every fix verified, its records kept locally: 3.
            let apply = try s.run("apply")
            #expect(apply.status == 3, "\(apply.stderr)")
            #expect(apply.stderr.contains("origin.git/refs/heads/bulwark/audit.lock has been there for"), "\(apply.stderr)")
            // It may be a Bulwark's own, killed mid-push: the words say so, and name the file to remove.
            #expect(apply.stderr.contains("or a Bulwark killed mid-push") && apply.stderr.contains("is pushing to ") && apply.stderr.contains("origin.git, remove "),
                    "\(apply.stderr)")
            #expect(!apply.stderr.contains("another writer kept moving"))
            #expect(try s.auditCommits().count == pushed, "nothing pushed past the lock")
            // `log` marks the records kept locally (outside review: they read as any other), and
            // only those: the ones on the origin are not marked.
            let log = try s.run("log", "--output", "json", "--limit", "1000")
            let entries = try #require(try JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [[String: Any]])
            #expect(entries.filter { $0["keptLocally"] as? Bool == true }.count == fixes, "\(log.stdout.prefix(2000))")
            #expect(entries.filter { $0["keptLocally"] == nil }.count == pushed)
            let text = try s.run("log", "--limit", "1000")
            #expect(text.stdout.split(separator: "\n").filter { $0.contains("LOCAL ") }.count == fixes, "\(text.stdout)")
            #expect(text.stderr.contains("\(fixes) records are marked LOCAL"), "\(text.stderr)")

            try FileManager.default.removeItem(atPath: lock)
            let later = try s.run("apply")
            #expect(later.status == 0, "\(later.stderr)")
            #expect(try s.auditCommits().count == pushed + fixes, "the kept records went out")
            let after = try s.run("log", "--limit", "1000")
            #expect(!after.stdout.contains("LOCAL ") && !after.stderr.contains("marked LOCAL"), "\(after.stdout)")
        }
    }

    /// A lock in the origin younger than a minute that stays through the whole push deadline:
    /// the records are kept, and the warning says the branch stayed locked, not that another
    /// writer kept moving it (no one did).
    @Test func aLockThatStaysThroughThePushIsCalledALock() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            let lock = s.origin + "/refs/heads/bulwark/audit.lock"
            try FileManager.default.createDirectory(atPath: s.origin + "/refs/heads/bulwark", withIntermediateDirectories: true)
            try write(lock, "")
            let apply = try s.run("apply")
            #expect(apply.status == 3, "\(apply.stderr)")
            #expect(apply.stderr.contains("stayed locked for"), "\(apply.stderr)")
            #expect(!apply.stderr.contains("another writer kept moving"), "\(apply.stderr)")
            try FileManager.default.removeItem(atPath: lock)
            #expect(try s.run("apply").status == 0)
            #expect(try s.auditCommits().count == fixes)
        }
    }

    /// The lock a push killed between libgit2's two steps leaves (the lock linked onto the
    /// branch, not yet unlinked: a second name of the branch's own file) is removed at once by
    /// the next push, which goes through: Bulwark's own kill must not block the audit branch for
    /// every writer. A lock that is a file of its own is anyone's, and stays
    /// (`aStaleLockInTheOriginIsNamedAndTheRecordsWait`).
    @Test func theLockOfAMoveThatCompletedIsRemovedAndTheRecordsGoOut() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            #expect(try s.run("apply").status == 0)
            let pushed = try s.auditCommits().count
            let branch = s.origin + "/refs/heads/bulwark/audit"
            if !FileManager.default.fileExists(atPath: branch) {
                let head = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit").trimmingCharacters(in: .whitespacesAndNewlines)
                _ = try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", head)
            }
            let lock = branch + ".lock"
            #expect(link(branch, lock) == 0)
            try FileManager.default.removeItem(atPath: s.host)
            try DemoHost.create(at: s.host)
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(!FileManager.default.fileExists(atPath: lock), "the leftover lock is gone")
            #expect(try s.auditCommits().count == pushed + fixes, "the records went out at once")
            #expect(try git("--git-dir", s.origin, "fsck", "--strict", "--no-dangling").isEmpty)
            // Nothing else of the origin was touched: no file of Bulwark's is left beside its refs.
            let top = try FileManager.default.contentsOfDirectory(atPath: s.origin)
            #expect(!top.contains { $0.hasPrefix("bulwark-completed-lock") }, "\(top)")
        }
    }

    @Test func maxChangesPerCycleDefersTheRestOnce() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "maxChangesPerCycle: 50", with: "maxChangesPerCycle: 2")
            #expect(try s.run("apply").status == 0)
            let decisions = try s.trailers("Bulwark-Decision")
            #expect(decisions.filter { $0 == "applied" }.count == 2)
            #expect(decisions.filter { $0 == "deferred" }.count == fixes - 2)
            // Next cycle: two more fixed; deferrals of unchanged drift are not recorded again.
            #expect(try s.run("apply").status == 0)
            let next = try s.trailers("Bulwark-Decision")
            #expect(next.filter { $0 == "applied" }.count == 4)
            #expect(next.filter { $0 == "deferred" }.count == fixes - 2)
        }
    }

    @Test func validateListsEveryError() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let ok = try bulwark(["validate", s.policy])
            #expect(ok.status == 0 && ok.stdout.contains("valid: \(ShippedCounts.resources) resources"))
            try write(s.policy + "/desired-state/bad.yaml", "apiVersion: bulwark/v1\nkind: Nope\nmetadata: {name: x}\nspec: {}\n")
            try write(s.policy + "/desired-state/bad2.yaml", "a: [\n")
            let bad = try bulwark(["validate", s.policy])
            #expect(bad.status == 1)
            #expect(bad.stderr.contains("desired-state/bad.yaml:2:7: kind: unknown kind 'Nope'"))
            #expect(bad.stderr.contains("desired-state/bad2.yaml:"))
        }
    }

    @Test func demoRunsTheWholeLoop() async throws {
        try await withTemporaryDirectory { dir in
            // The demo applies the shipped baseline to the demo host, plus one lockout its guard blocks.
            let planned = try Scenario(in: dir + "/count").planned()
            let demo = try bulwark(["demo", "--dir", dir + "/demo"])
            #expect(demo.status == 0, "\(demo.stderr)")
            #expect(demo.stdout.contains("Fixed and verified: \(planned.fixes)."))
            // Every fix verified, and the one lockout in the demo's policy blocked, recorded once.
            #expect(demo.stdout.contains("Blocked: 1."))
            #expect(demo.stdout.contains("Drift: 1 resource (1 property). In sync: \(planned.bound)."))
            #expect(demo.stdout.contains("blocked              block(UserAccount/demo-lock-admin): local shell /bin/bash -> /usr/sbin/nologin"))
            #expect(demo.stdout.contains("Blocked UserAccount/demo-lock-admin on local: admin is the last account in sudo"))
            #expect(try read(dir + "/demo/host/etc/passwd").contains("admin:x:1000:1000:Administrator,,,:/home/admin:/bin/bash"))
            #expect(demo.stdout.contains("MTTR (detection to verified fix) over \(planned.fixes) remediations"))
        }
    }

    @Test func exitCodesForBadArguments() throws {
        #expect(try bulwark(["plan"]).status == 64)
        // A mistyped command is named as one, with the command meant, not as an unknown option.
        for arguments in [["plna", "--repo", "/nonexistent"], ["help", "plna"]] {
            let typo = try bulwark(arguments)
            #expect(typo.status == 64, "\(typo.stderr)")
            #expect(typo.stderr.contains("unknown command 'plna'; did you mean 'plan'?"), "\(typo.stderr)")
        }
        #expect(try bulwark(["help", "plan"]).status == 0)
        #expect(try bulwark(["log", "--repo", "/nonexistent", "--since", "yesterday"]).status == 64)
        let missing = try bulwark(["plan", "--repo", "/nonexistent/repo", "--state-dir", NSTemporaryDirectory() + "/bulwark-missing-\(UUID().uuidString)"])
        // A local path with no repository is a bad argument (as verify-audit's), named as such.
        #expect(missing.status == 64)
        #expect(missing.stderr.contains("no git repository at /nonexistent/repo"), "\(missing.stderr)")
    }
}

func modeAndOwnerMode(_ path: String) -> Int {
    var info = stat()
    _ = stat(path, &info)
    return Int(info.st_mode & 0o7777)
}

/// Decodes any JSON value (for reading `--output json`).
struct AnyDecodable: Decodable {
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if (try? container.decode([String: AnyDecodable].self)) != nil { return }
        if (try? container.decode([AnyDecodable].self)) != nil { return }
        _ = try? container.decode(String.self)
    }
}

@Suite struct GateEndToEndTests {
    /// `bulwark approve` of a guard's block copies the block its record showed into the
    /// approval, and the next pass makes the change past that block.
    @Test func approvingABlockNamesTheBlockAndLetsItThrough() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("desired-state/lock-admin.yaml", """
                apiVersion: bulwark/v1
                kind: UserAccount
                metadata: {name: lock-admin}
                spec: {name: admin, shell: /usr/sbin/nologin}
                """)
            #expect(try s.run("apply").status == 0)
            #expect(try read(s.host + "/etc/passwd").contains(":/home/admin:/bin/bash\n"))
            let log = try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)|%(trailers:key=Bulwark-Id,valueonly,separator=)", "bulwark/audit")
            let line = try #require(log.split(separator: "\n").first { $0.hasPrefix("UserAccount/lock-admin|blocked|") }, "\(log)")
            let id = String(line.split(separator: "|")[2])
            let approve = try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state,
                                                            "--reason", "console access exists"],
                                  environment: ["GIT_AUTHOR_NAME": "Alice Admin", "GIT_AUTHOR_EMAIL": "alice@example.org"])
            #expect(approve.status == 0, "\(approve.stderr)")
            let file = try git("--git-dir", s.origin, "show", "main:approvals/\(id).yaml")
            #expect(file.contains("  block: \"admin is the last account in sudo"), "\(file)")
            #expect(!file.contains("bulwark approve"), "\(file)")
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(try read(s.host + "/etc/passwd").contains(":/home/admin:/usr/sbin/nologin\n"))
            let approved = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit", "--grep", "lock-admin")
            #expect(approved.contains("Bulwark-Approved-By: Alice Admin <alice@example.org>"), "\(approved)")
        }
    }

    @Test func approveModeHoldsThenAnApprovalCommitLetsTheFixThrough() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin yes\n"))
            let log = try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)|%(trailers:key=Bulwark-Id,valueonly,separator=)", "bulwark/audit")
            let line = try #require(log.split(separator: "\n").first { $0.hasPrefix("SSHDConfig/cis-5.1.20-permit-root-login|held|") })
            let id = String(line.split(separator: "|")[2])
            // Held once: another pass records nothing new.
            let count = try s.auditCommits().count
            #expect(try s.run("apply").status == 0)
            #expect(try s.auditCommits().count == count)

            let approve = try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state,
                                                            "--reason", "maintenance window CHG-7"],
                                  environment: ["GIT_AUTHOR_NAME": "Alice Admin", "GIT_AUTHOR_EMAIL": "alice@example.org"])
            #expect(approve.status == 0, "\(approve.stderr)")
            #expect(try git("--git-dir", s.origin, "show", "main:approvals/\(id).yaml").contains("approver: \"Alice Admin <alice@example.org>\""))
            #expect(try git("--git-dir", s.origin, "log", "-1", "--format=%an", "main") == "Alice Admin\n")

            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
            let approved = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit", "--grep", "cis-5.1.20")
            #expect(approved.contains("Bulwark-Approved-By: Alice Admin <alice@example.org>"))
            #expect(approved.contains("Bulwark-Result: verified"))
            #expect(try bulwark(["approve", "01ABCDEFGHJKMNPQRSTVWXYZ01", "--repo", s.origin, "--state-dir", s.state, "--reason", "x"]).status == 1)
        }
    }

    @Test func aCommittedWaiverLeavesItsDriftAlone() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let expires = Date().addingTimeInterval(60 * 86_400).formatted(Date.ISO8601FormatStyle().year().month().day())
            try s.commitPolicy("waivers/router.yaml", """
                apiVersion: bulwark/v1
                kind: Waiver
                metadata: {name: router-needs-forwarding}
                spec:
                  match: {kind: Sysctl, property: net.ipv4.ip_forward}
                  reason: this host routes lab traffic
                  owner: netops@example.org
                  ticket: SEC-123
                  expires: \(expires)
                """)
            #expect(try s.run("apply").status == 0)
            #expect(try read(s.host + "/proc/sys/net/ipv4/ip_forward") == "1\n")
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "waived" }.count == 1)
            #expect(try s.run("apply").status == 0)
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "waived" }.count == 1, "recorded once per waiver")
        }
    }
}

extension GateEndToEndTests {
    @Test func aPropertyThatKeepsDriftingBackIsEscalated() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "maxChangesPerCycle: 50", with: "maxChangesPerCycle: 50\n  flapBreaker: {count: 2, period: 1h}")
            let sshd = s.host + "/etc/ssh/sshd_config"
            for round in 1...2 {
                #expect(try s.run("apply").status == 0)
                #expect(try read(sshd).contains("\nPermitRootLogin no\n"), "fixed in round \(round)")
                // Something else on the host puts it back.
                try write(sshd, try read(sshd).replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n"), mode: 0o600)
            }
            let third = try s.run("apply")
            #expect(third.status == 0)
            #expect(third.stdout.contains("ESCALATE"))
            #expect(try read(sshd).contains("\nPermitRootLogin yes\n"), "the breaker stopped fixing it")
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "escalated" }.count == 1)
            let plan = try s.run("plan")
            #expect(plan.status == 2 && plan.stdout.contains("escalated"))
        }
    }

    /// The audit branch takes in what the origin holds, and anyone who can push there can add
    /// records. Copies of a real fix, pushed unsigned, would make the breaker count fixes that
    /// never happened and escalate a drift instead of fixing it. With a signing key, only this
    /// Bulwark's signed records count: the drift is fixed, the copy named in a warning; its own
    /// fixes still trip the breaker.
    @Test func recordsAnotherWriterPushedDoNotTripTheFlapBreaker() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            func apply() throws -> ProcessOutput {
                try s.run("apply", "--secrets-dir", key.secrets, "--signing-key", key.path)
            }
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "maxChangesPerCycle: 50", with: "maxChangesPerCycle: 50\n  flapBreaker: {count: 2, period: 1h}")
            let sshd = s.host + "/etc/ssh/sshd_config"
            func drift() throws {
                try write(sshd, try read(sshd).replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n"), mode: 0o600)
            }
            #expect(try apply().status == 0)
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let genuine = try RevertTests.recordID(s, resource: resource, decision: "applied")
            _ = try await RevertTests.pushCopy(of: genuine, as: "01FQRGEDRECQRD0000000000CC", to: s, in: dir)

            try drift()
            let second = try apply()
            #expect(second.status == 0, "\(second.stderr)")
            #expect(!second.stdout.contains("ESCALATE"), "\(second.stdout)")
            #expect(second.stderr.contains("record 01FQRGEDRECQRD0000000000CC on bulwark/audit is not counted by the flap breaker"), "\(second.stderr)")
            #expect(try read(sshd).contains("\nPermitRootLogin no\n"), "fixed: one fix of its own so far")

            try drift()
            let third = try apply()
            #expect(third.stdout.contains("ESCALATE"), "its own two fixes trip it: \(third.stdout)")
            #expect(try read(sshd).contains("\nPermitRootLogin yes\n"))
        }
    }
}

@Suite(.enabled(if: NetworkLab.available, "needs root, nft and ip"))
struct FirewallEndToEndTests {
    @Test func aBlocklistedPeerIsCutOffAndASecondApplyAddsNoCommit() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8443)
            #expect(try lab.connects(port: 8443))
            try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
            try s.commitPolicy("controllers/edge.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: edge-1, labels: {role: edge, exposure: internet}}
                spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(lab.host), management: [192.0.2.200/32]}
                """)
            try s.commitPolicy("desired-state/firewall/blocklist.yaml", """
                apiVersion: bulwark/v1
                kind: FirewallBlocklist
                metadata: {name: known-bad, annotations: {severity: high}}
                spec: {addresses: [192.0.2.2]}
                """)
            try s.acceptHead()
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            #expect(apply.stdout.contains("fixed    edge-1  FirewallBlocklist/known-bad: addresses (unset) -> 192.0.2.2"))
            #expect(try !lab.connects(port: 8443), "the peer can no longer connect")
            let commits = try s.auditCommits()
            #expect(try s.trailers("Bulwark-Resource").contains("FirewallBlocklist/known-bad"))
            #expect(try s.run("apply").status == 0)
            #expect(try s.auditCommits() == commits, "a second apply adds no commit")
            #expect(try read(dir + "/edge-root/etc/nftables.d/bulwark.nft").contains("192.0.2.2"))
        }
    }
}

extension FirewallEndToEndTests {
    /// A quarantine that ends while the daemon runs is lifted when it ends, though no commit
    /// comes: the revision is read again at its expiry (`DesiredState.changesAt`). Before, what
    /// "active" meant was decided when the manifest was read, and the daemon reads it only when
    /// the branch moves: the host stayed cut off, and a hand lift was undone, until some commit.
    /// The daemon's wall clock is stepped past the expiry (`BULWARK_FAULT_WALL_CLOCK_OFFSET_FILE`).
    @Test func aQuarantineEndsAtItsExpiryWithoutACommit() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8443)
            try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
            let tomorrow = Date().addingTimeInterval(86_400).formatted(Date.ISO8601FormatStyle().year().month().day())
            try s.commitPolicy("controllers/edge.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: edge-1, labels: {role: edge}}
                spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(lab.host), management: [192.0.2.200/32]}
                """)
            try s.commitPolicy("desired-state/firewall/quarantine.yaml", """
                apiVersion: bulwark/v1
                kind: Quarantine
                metadata: {name: incident-7}
                spec: {hosts: [edge-1], allow: [192.0.2.200/32], expires: \(tomorrow)}
                """)
            let offset = dir + "/wall-clock-offset"
            try write(offset, "0\n")
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "1"],
                                           environment: ["BULWARK_FAULT_WALL_CLOCK_OFFSET_FILE": offset,
                                                         "BULWARK_WEBHOOK_SECRET": DaemonTests.secret],
                                           logPath: dir + "/daemon.log")
            defer { _ = daemon.terminate() }
            #expect(daemon.wait(seconds: 60) { (try? lab.connects(port: 8443)) == false }, "quarantined: \(daemon.log)")
            let policy = try git("--git-dir", s.origin, "rev-parse", "main")

            // Two days on, by the daemon's clock: the quarantine has ended.
            try write(offset, "172800\n")
            #expect(daemon.wait(seconds: 60) { (try? lab.connects(port: 8443)) == true }, "lifted at its expiry: \(daemon.log)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == policy, "no commit to the policy")
            #expect(daemon.wait(seconds: 30) {
                ((try? git("--git-dir", s.origin, "log", "--format=%s", "bulwark/audit")) ?? "").contains("edge-1 quarantine:edge-1 active allow=192.0.2.200 until=\(tomorrow) -> lifted")
            }, "the lift is recorded: \((try? git("--git-dir", s.origin, "log", "--format=%s", "bulwark/audit")) ?? "")")
            #expect(daemon.terminate() == 0)
        }
    }
}

@Suite(.enabled(if: PostgresServer.available, "needs PostgreSQL 15"))
struct PostgresEndToEndTests {
    @Test func eveLosesSuperuserAndThePasswordIsNowhereInTheHistory() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try PostgresServer()
            try server.psql("CREATE ROLE eve SUPERUSER")
            try s.commitPolicy("controllers/db.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: db-1, labels: {tier: db}}
                spec: {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, database: postgres,
                       passwordEnv: BULWARK_DB_1_PASSWORD, sslmode: disable}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: roles}
                spec: {kinds: [PostgresRole], targets: {names: [db-1]}}
                """)
            try s.commitPolicy("desired-state/postgres/eve.yaml", """
                apiVersion: bulwark/v1
                kind: PostgresRole
                metadata: {name: eve}
                spec: {role: eve, superuser: false}
                """)
            let apply = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                environment: ["BULWARK_DB_1_PASSWORD": server.password])
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            #expect(try server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'eve'") == "f")
            let eve = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit", "--grep", "PostgresRole/eve")
            #expect(eve.contains("Bulwark-Result: verified") && eve.contains("Bulwark-Target: db-1"))
            #expect(!(try git("--git-dir", s.origin, "log", "-p", "--all")).contains(server.password))
            #expect(!apply.stdout.contains(server.password) && !apply.stderr.contains(server.password))
        }
    }

    /// Harmful: `fsync: off` was written server-wide and verified (a crash can then corrupt the
    /// whole cluster). `bulwark apply` blocks it and the audit branch records the refusal, with
    /// why; the server keeps fsync on. The twin: turned off by hand, a policy that wants it on
    /// is applied, verified and recorded so.
    @Test func fsyncOffIsBlockedAndTheRefusalRecordedInGitWhileFsyncOnIsApplied() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try PostgresServer(fsync: true)
            try s.commitPolicy("controllers/db.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: db-1}
                spec: {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, database: postgres,
                       passwordEnv: BULWARK_DB_1_PASSWORD, sslmode: disable}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: settings}
                spec: {kinds: [PostgresSetting], targets: {names: [db-1]}}
                """)
            let manifest = "apiVersion: bulwark/v1\nkind: PostgresSetting\nmetadata: {name: durability}\nspec: {settings: {fsync: \"%@\"}}\n"
            try s.commitPolicy("desired-state/postgres/durability.yaml", String(format: manifest, "off"))
            let environment = ["BULWARK_DB_1_PASSWORD": server.password]
            let blocked = try s.run("apply", environment: environment)
            #expect(blocked.status == 0, "\(blocked.stdout)\n\(blocked.stderr)")
            #expect(try server.psql("SHOW fsync") == "on")
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit", "--grep", "PostgresSetting/durability")
            #expect(record.contains("Bulwark-Decision: blocked") && record.contains("Bulwark-Target: db-1"), "\(record)")
            #expect(record.contains("fsync: 'off' stops the server from forcing what it writes to disk"), "\(record)")

            try server.psql("ALTER SYSTEM SET fsync = off")
            try server.psql("SELECT pg_reload_conf()")
            try s.commitPolicy("desired-state/postgres/durability.yaml", String(format: manifest, "on"))
            let applied = try s.run("apply", environment: environment)
            #expect(applied.status == 0, "\(applied.stdout)\n\(applied.stderr)")
            #expect(try server.psql("SHOW fsync") == "on")
            let fixed = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit", "--grep", "PostgresSetting/durability")
            #expect(fixed.contains("Bulwark-Decision: applied") && fixed.contains("Bulwark-Result: verified"), "\(fixed)")
        }
    }
}

@Suite(.enabled(if: MotoServer.available, "needs moto[server] (scripts/setup installs it)"))
struct AWSEndToEndTests {
    @Test func sshFromAnywhereIsRevokedHttpsKeptAndNoSecretInTheHistory() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let moto = try MotoServer()
            let group = try moto.boto("""
                ec2 = aws("ec2")
                vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
                g = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
                ec2.authorize_security_group_ingress(GroupId=g, IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]} for p in (22, 443)])
                print(g)
                """)
            try s.commitPolicy("controllers/cloud.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: account-1, labels: {role: cloud, exposure: internet}}
                spec: {adapter: aws, region: us-east-1, endpoint: "\(moto.endpoint)"}
                """)
            let apply = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                environment: moto.environment)
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            #expect(apply.stdout.contains("SecurityGroupIngress/no-admin-ports-from-anywhere"))
            let ports = try moto.boto("""
                g = aws("ec2").describe_security_groups(GroupIds=["\(group)"])["SecurityGroups"][0]
                print(",".join(str(p["FromPort"]) for p in g["IpPermissions"]))
                """)
            #expect(ports == "443")
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit", "--grep", "SecurityGroupIngress")
            #expect(record.contains("Bulwark-Result: verified") && record.contains("Bulwark-Target: account-1"))
            #expect(record.contains("tcp 22-22 0.0.0.0/0"))
            let history = try git("--git-dir", s.origin, "log", "-p", "--all")
            #expect(!history.contains(moto.secretAccessKey))
            #expect(!apply.stdout.contains(moto.secretAccessKey) && !apply.stderr.contains(moto.secretAccessKey))
            let again = try run(try bulwarkExecutable(), ["plan", "--repo", s.origin, "--state-dir", s.state],
                                environment: moto.environment)
            #expect(again.status == 0, "in sync: \(again.stdout)")
        }
    }
}

/// Crash safety through the binary: a run SIGKILLed between a fix and its audit commit leaves an
/// open intent; the next run records it before doing anything else, so every fix has exactly one
/// record on the origin.
@Suite struct CrashSafetyTests {
    @Test(arguments: [1, 4])
    func aKillBetweenAFixAndItsRecordIsRecordedByTheNextRun(killAt: Int) async throws {
        try await withTemporaryDirectory { dir in
            // The same host and policy applied without a crash: how many fixes a pass makes.
            let control = try Scenario(in: dir + "/control")
            #expect(try control.run("apply").status == 0)
            let expected = try control.trailers("Bulwark-Decision").filter { $0 == "applied" }.count
            #expect(expected > killAt)

            let scenario = try Scenario(in: dir + "/crash")
            let before = try scenario.snapshot()
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", scenario.origin, "--state-dir", scenario.state],
                                  environment: ["BULWARK_FAULT_KILL_BEFORE_RECORD": "\(killAt)"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault")
            #expect(try scenario.snapshot() != before, "the fixes before the kill were made")
            let intents = try read(scenario.state + "/intents.log")
            #expect(intents.contains("\"begin\""), "the fix whose record was lost is an open intent")

            let next = try scenario.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect(next.stderr.contains("recorded an interrupted fix of an earlier run"))
            // The fixes begun with it and never tried: closed, said so, and fixed by this run.
            #expect(next.stderr.contains("closed an intent of an earlier run that was never carried out"))
            let ids = try scenario.trailers("Bulwark-Id")
            #expect(Set(ids).count == ids.count, "no record twice")
            let decisions = try scenario.trailers("Bulwark-Decision")
            #expect(decisions.filter { $0 == "applied" }.count == expected, "every fix has exactly one record")
            #expect(try scenario.trailers("Bulwark-Result").allSatisfy { $0 == "verified" })
            let log = try git("--git-dir", scenario.origin, "log", "--format=%B", "bulwark/audit")
            #expect(log.contains("recorded after a restart"))
            #expect(try scenario.run("plan").status == 0, "in sync afterwards")
            #expect(try read(scenario.state + "/intents.log").isEmpty, "the journal is emptied once nothing is open")
            let fsck = try run("/usr/bin/git", ["--git-dir", scenario.origin, "fsck", "--strict"])
            #expect(fsck.status == 0, "\(fsck.stderr)")
        }
    }

    /// A kill while an sshd_config fix is still being checked (after its intents, after `sshd -t`
    /// accepted the candidate, before the rename): nothing was changed, so the next run closes
    /// those intents without a record and fixes the drift itself; no record says `interrupted`.
    /// Before, the intents were marked tried before `sshd -t`, and each SSHDConfig resource got
    /// an `interrupted` record of a change that never happened.
    @Test func aKillWhileAnSSHDFixIsCheckedLeavesNoRecordOfAChangeNeverMade() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let config = s.host + "/etc/ssh/sshd_config"
            let before = try read(config)
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_IN_SSHD_FIX": "checked"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault: \(crashed.stdout)\(crashed.stderr)")
            #expect(try read(config) == before, "nothing renamed into place")
            #expect(try read(s.state + "/intents.log").contains("SSHDConfig/"), "the sshd fixes' intents are open")

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            // The fixes of other kinds made before the kill are recorded; the sshd ones are closed.
            #expect(next.stderr.contains("closed an intent of an earlier run that was never carried out: SSHDConfig/"), "\(next.stderr)")
            #expect(!next.stderr.contains("recorded an interrupted fix of an earlier run: SSHDConfig/"), "\(next.stderr)")
            #expect(try s.trailers("Bulwark-Result").allSatisfy { $0 == "verified" }, "no interrupted record")
            let log = try git("--git-dir", s.origin, "log", "--format=%B%x1e", "bulwark/audit")
            let sshd = log.components(separatedBy: "\u{1e}").filter { $0.contains("Bulwark-Resource: SSHDConfig/") }
            #expect(!sshd.isEmpty && !sshd.contains { $0.contains("the process stopped") || $0.contains("after a restart") }, "\(sshd)")
            let resources = sshd.flatMap { $0.split(separator: "\n").filter { $0.hasPrefix("Bulwark-Resource:") } }
            #expect(Set(resources).count == resources.count, "one record per sshd fix, made by this run: \(resources)")
            #expect(try s.run("plan").status == 0, "in sync afterwards")
        }
    }

    /// The twin: a kill once sshd_config is renamed into place (the change made, its records not
    /// written) still gets each sshd fix recorded verified by the next run, as a fix the process
    /// that stopped made: the rename marked its intents tried.
    @Test func aKillAfterAnSSHDFixIsWrittenIsRecordedVerifiedByTheNextRun() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let config = s.host + "/etc/ssh/sshd_config"
            let before = try read(config)
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_IN_SSHD_FIX": "written"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault: \(crashed.stdout)\(crashed.stderr)")
            #expect(try read(config) != before, "renamed into place")

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect(next.stderr.contains("recorded an interrupted fix of an earlier run: SSHDConfig/"), "\(next.stderr)")
            let log = try git("--git-dir", s.origin, "log", "--format=%B%x1e", "bulwark/audit")
            let sshd = log.components(separatedBy: "\u{1e}").filter { $0.contains("Bulwark-Resource: SSHDConfig/") }
            #expect(!sshd.isEmpty && sshd.allSatisfy {
                $0.contains("Bulwark-Result: verified") && $0.contains("recorded after a restart")
            }, "\(sshd)")
            let resources = sshd.flatMap { $0.split(separator: "\n").filter { $0.hasPrefix("Bulwark-Resource:") } }
            #expect(Set(resources).count == resources.count, "one record per sshd fix: \(resources)")
            #expect(try s.trailers("Bulwark-Result").allSatisfy { $0 == "verified" })
            #expect(try s.run("plan").status == 0, "in sync afterwards")
        }
    }

    /// What the fixes of `kind` change on the demo host: equal before and after a run that
    /// changed nothing of it.
    static func hostState(_ kind: String, _ s: Scenario) throws -> String {
        switch kind {
        case "Sysctl":
            let owned = (try? read(s.host + "/etc/sysctl.d/zz-bulwark.conf")) ?? "(none)"
            let runtime = try DemoHost.runtime.keys.sorted().map { "\($0)=\(try read(s.host + "/proc/sys/" + $0))" }
            return ([owned, try read(s.host + "/etc/sysctl.conf")] + runtime).joined(separator: "\n")
        case "LoginDefs":
            return try read(s.host + "/etc/login.defs")
        case "FileMode":
            return ["etc/ssh/sshd_config", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"].map { path in
                var info = stat()
                guard lstat(s.host + "/" + path, &info) == 0 else { return "\(path) missing" }
                return "\(path) \(String(info.st_mode & 0o7777, radix: 8)) \(info.st_uid):\(info.st_gid)"
            }.joined(separator: "\n")
        default:
            return try ["etc/passwd", "etc/shadow"].map { path in
                try read(s.host + "/" + path).split(separator: "\n").filter { $0.hasPrefix("guest:") }.joined(separator: "\n")
            }.joined(separator: "\n")
        }
    }

    /// The audit records of the resources whose ids start with `resource`, newest first.
    static func records(of resource: String, _ s: Scenario) throws -> [String] {
        try git("--git-dir", s.origin, "log", "--format=%B%x1e", "bulwark/audit").components(separatedBy: "\u{1e}")
            .filter { $0.contains("Bulwark-Resource: \(resource)") }
    }

    /// The other host kinds that announce their changes (`ChangeGate`), as SSHDConfig does: a
    /// kill right before a fix's first change, its checks done (the files read again under the
    /// lock, the guard asked again), leaves that kind's part of the host as it was and its
    /// intents never tried. The next plan finds the drift again; the next run closes the intents
    /// without a record and fixes the drift itself: no record says `interrupted`. Before, the
    /// step was marked tried before the driver ran, and each such intent was recorded
    /// `interrupted` though nothing was changed (71 to 80 in about 130 kills, outside review).
    @Test(arguments: ["Sysctl", "LoginDefs", "FileMode", "UserAccount"])
    func aKillRightBeforeAHostFixChangesAnythingLeavesNoRecord(kind: String) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = try Self.hostState(kind, s)
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_AT_CHANGE": "\(kind):before"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault: \(crashed.stdout)\(crashed.stderr)")
            #expect(try Self.hostState(kind, s) == before, "nothing of \(kind) changed")
            #expect(try read(s.state + "/intents.log").contains("\(kind)/"), "the \(kind) fixes' intents are open")
            let plan = try s.run("plan")
            #expect(plan.status == 2 && plan.stdout.contains("\(kind)/"), "the drift is found again: \(plan.stdout)")

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect(next.stderr.contains("closed an intent of an earlier run that was never carried out: \(kind)/"), "\(next.stderr)")
            #expect(!next.stderr.contains("recorded an interrupted fix of an earlier run: \(kind)/"), "\(next.stderr)")
            #expect(try s.trailers("Bulwark-Result").allSatisfy { $0 == "verified" }, "no interrupted record")
            let records = try Self.records(of: kind + "/", s)
            #expect(!records.isEmpty && !records.contains { $0.contains("the process stopped") || $0.contains("after a restart") },
                    "\(records)")
            let resources = records.flatMap { $0.split(separator: "\n").filter { $0.hasPrefix("Bulwark-Resource:") } }
            #expect(Set(resources).count == resources.count, "one record per \(kind) fix, made by this run: \(resources)")
            #expect(try Self.hostState(kind, s) != before, "fixed by the next run")
            #expect(try s.run("plan").status == 0, "in sync afterwards")
        }
    }

    /// A host guard that cannot run for want of file descriptors judged nothing: its drift is not
    /// observed this pass (exit 1, recorded `unobserved` with the guard's error, the host left as
    /// it was), never `blocked` with an approval offered for a change no guard looked at. The
    /// twin: the next pass, with descriptors, fixes the same drift. (FileMode's guard walks the
    /// root at every judgment; the account guard may judge from accounts already read, and
    /// then needs no descriptor.)
    @Test func aGuardOutOfDescriptorsFailsThePassAndOffersNoApproval() async throws {
        let (kind, guardName) = ("FileMode", "file mode")
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = try Self.hostState(kind, s)
            let short = try s.run("apply", environment: ["BULWARK_FAULT_NO_DESCRIPTORS_IN_GUARD": guardName])
            #expect(short.status == 1, "a failed pass: \(short.stdout)\(short.stderr)")
            #expect(try Self.hostState(kind, s) == before, "nothing of \(kind) changed")
            #expect(short.stderr.contains("the \(guardName) guard could not judge this change"), "\(short.stderr)")
            #expect(!short.stdout.contains("BLOCKED") && !short.stdout.contains("bulwark approve"), "\(short.stdout)")
            let records = try Self.records(of: kind + "/", s)
            #expect(!records.isEmpty && records.allSatisfy {
                $0.contains("Bulwark-Decision: unobserved") && $0.contains("Too many open files")
            }, "\(records)")

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect(try Self.hostState(kind, s) != before, "fixed by the next pass")
            #expect(try Self.records(of: kind + "/", s).contains { $0.contains("Bulwark-Result: verified") })
        }
    }

    /// The twin: a kill once a fix of `kind` made its changes (its records not written) still
    /// gets each of its fixes recorded verified by the next run, as a fix the process that
    /// stopped made: its first change marked its intents tried.
    @Test(arguments: ["Sysctl", "LoginDefs", "FileMode", "UserAccount"])
    func aKillRightAfterAHostFixChangedIsRecordedVerifiedByTheNextRun(kind: String) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = try Self.hostState(kind, s)
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_AT_CHANGE": "\(kind):after"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault: \(crashed.stdout)\(crashed.stderr)")
            #expect(try Self.hostState(kind, s) != before, "changed before the kill")

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect(next.stderr.contains("recorded an interrupted fix of an earlier run: \(kind)/"), "\(next.stderr)")
            let records = try Self.records(of: kind + "/", s)
            let killed = records.filter { $0.contains("recorded after a restart") }
            #expect(!killed.isEmpty && killed.allSatisfy { $0.contains("Bulwark-Result: verified") }, "\(records)")
            let resources = records.flatMap { $0.split(separator: "\n").filter { $0.hasPrefix("Bulwark-Resource:") } }
            #expect(Set(resources).count == resources.count, "one record per \(kind) fix: \(resources)")
            #expect(try s.trailers("Bulwark-Result").allSatisfy { $0 == "verified" })
            #expect(try s.run("plan").status == 0, "in sync afterwards")
        }
    }

    /// A sysctl whose file holds its value already and whose runtime value drifted: the write
    /// under proc/sys is the fix's one change, and it is announced too. Killed before it: the
    /// value is as it was, and the next run closes the intent without a record; killed after:
    /// the next run records the fix verified, as this process's.
    @Test(arguments: ["before", "after"])
    func aSysctlFixOfTheRuntimeValueAloneIsMarkedTriedAtItsWrite(point: String) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let runtime = s.host + "/proc/sys/net/ipv4/ip_forward"
            #expect(try read(runtime) == "0\n")
            try write(runtime, "1\n")
            let owned = try read(s.host + "/etc/sysctl.d/zz-bulwark.conf")
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_AT_CHANGE": "Sysctl:\(point)"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault: \(crashed.stdout)\(crashed.stderr)")
            #expect(try read(s.host + "/etc/sysctl.d/zz-bulwark.conf") == owned, "the file held the value already")
            #expect(try read(runtime) == (point == "before" ? "1\n" : "0\n"))

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            let record = try #require(try Self.records(of: "Sysctl/cis-3.3.1-ip-forward\n", s).first)
            if point == "before" {
                #expect(next.stderr.contains("closed an intent of an earlier run that was never carried out: Sysctl/cis-3.3.1-ip-forward"),
                        "\(next.stderr)")
                #expect(!next.stderr.contains("recorded an interrupted fix"), "\(next.stderr)")
                #expect(record.contains("Bulwark-Result: verified") && !record.contains("after a restart"), "fixed by this run: \(record)")
            } else {
                #expect(next.stderr.contains("recorded an interrupted fix of an earlier run: Sysctl/cis-3.3.1-ip-forward"), "\(next.stderr)")
                #expect(record.contains("Bulwark-Result: verified") && record.contains("recorded after a restart"), "\(record)")
            }
            #expect(try Self.records(of: "Sysctl/cis-3.3.1-ip-forward\n", s).count == 2, "the first run's record and this one")
            #expect(try s.trailers("Bulwark-Result").allSatisfy { $0 == "verified" })
            #expect(try read(runtime) == "0\n")
            #expect(try s.run("plan").status == 0, "in sync afterwards")
        }
    }

    /// Every audit commit an `apply` names on its lines ("fixed … audit <hash>") exists. A pass
    /// holds its records in memory until a flush writes them to disk: a run killed before that
    /// named commits that never existed, and the next start recorded those fixes again under
    /// other ids. A line with a commit is printed only once that commit is durable.
    @Test func everyAuditCommitAnApplyNamesExists() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_BEFORE_RECORD": "4"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault")
            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            func named(_ output: String) -> [String] {
                output.split(separator: "\n").compactMap { line in
                    line.range(of: "  audit ").map { String(line[$0.upperBound...].prefix(12)) }
                }
            }
            let printed = named(crashed.stdout) + named(next.stdout)
            #expect(named(next.stdout).count >= 4, "\(next.stdout)")
            for hash in printed {
                #expect(hash.count == 12 && hash.allSatisfy(\.isHexDigit), "\(hash)")
                for repository in [s.origin, s.state + "/repository.git"] {
                    let found = try run("/usr/bin/git", ["--git-dir", repository, "cat-file", "-e", hash + "^{commit}"])
                    #expect(found.status == 0, "audit \(hash) was printed and is not in \(repository)")
                }
            }
        }
    }

    /// `apply` started as a process with the fault hook `fault` set, its output in `dir`/apply.out and apply.err.
    static func startApply(_ s: Scenario, in dir: String, fault: (String, String)) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try bulwarkExecutable())
        process.arguments = ["apply", "--repo", s.origin, "--state-dir", s.state]
        var environment = ProcessInfo.processInfo.environment
        environment[fault.0] = fault.1
        environment["NO_COLOR"] = "1"
        process.environment = environment
        for name in ["out", "err"] { _ = FileManager.default.createFile(atPath: dir + "/apply.\(name)", contents: nil) }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/apply.out"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/apply.err"))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Waits (up to 120 s) until `file` holds `text` while `process` runs; whether it came.
    static func wait(for text: String, in file: String, of process: Process) -> Bool {
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, process.isRunning {
            if ((try? read(file)) ?? "").contains(text) { return true }
            usleep(20_000)
        }
        return ((try? read(file)) ?? "").contains(text)
    }

    /// Ctrl-C in the middle of a pass (SIGINT while the second fix's record is written, held there
    /// by a fault hook until the signal comes): the fixes in flight finish, no other is started,
    /// every fix made has its record on the origin (each audit commit the run printed exists),
    /// and the run exits 130 saying so. The next run fixes the rest; nothing is recorded twice.
    @Test func anInterruptedApplyFinishesTheFixesInFlightRecordsAndPushesThem() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let process = try Self.startApply(s, in: dir, fault: ("BULWARK_FAULT_PAUSE_BEFORE_RECORD", "2"))
            #expect(Self.wait(for: "fault: paused before record 2", in: dir + "/apply.err", of: process),
                    "the pass waits at its second record: \((try? read(dir + "/apply.err")) ?? "")")
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            let out = try read(dir + "/apply.out"), err = try read(dir + "/apply.err")
            #expect(process.terminationReason == .exit && process.terminationStatus == 130, "\(process.terminationStatus) \(err)")
            #expect(err.contains("interrupted: no other fix is started"), "\(err)")
            #expect(out.contains("stopped changing systems: interrupted") || err.contains("stopped changing systems: interrupted"),
                    "\(out) \(err)")
            // Every audit commit printed is on the origin, and every fix made has one.
            let printed = out.split(separator: "\n").filter { !$0.hasPrefix("Pushed") }
                .compactMap { line in line.range(of: "  audit ").map { String(line[$0.upperBound...].prefix(12)) } }
            #expect(printed.count >= 2, "\(out)")
            let pushed = try s.auditCommits()
            for commit in printed { #expect(pushed.contains { $0.hasPrefix(commit) }, "audit \(commit) is on the origin") }
            let fixed = try s.trailers("Bulwark-Decision").filter { $0 == "applied" }.count
            #expect(fixed == out.split(separator: "\n").filter { $0.hasPrefix("fixed") }.count, "\(out)")
            #expect(try s.run("plan").status == 2, "drift is left for the next run")

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            // Every intent of the interrupted pass was closed: none is recorded or closed now.
            #expect(!next.stderr.contains("interrupted fix of an earlier run"), "\(next.stderr)")
            #expect(!next.stderr.contains("closed an intent of an earlier run"), "\(next.stderr)")
            #expect(try s.run("plan").status == 0, "in sync afterwards")
            let ids = try s.trailers("Bulwark-Id")
            #expect(Set(ids).count == ids.count, "no record twice")
            #expect(try bulwark(["verify-audit", "--repo", s.origin]).status == 0)
        }
    }

    /// A signal as apply starts (its handlers just in place, the revision not yet loaded) ends
    /// it at once with 128 + the signal, and nothing is fixed or recorded: nothing was started.
    /// Before, a signal that came before libdispatch had registered its handler (on another
    /// thread) was thrown away, and the pass made every fix and exited 0 (outside review: 2 of
    /// 60 runs). Once the revision is loaded, the first signal stops the pass before its first
    /// fix (130, "no other fix is started"), and the drift is left for the next run.
    @Test func aSignalAsApplyStartsIsNeverLost() async throws {
        for (hook, number, status) in [("BULWARK_FAULT_SIGNAL_AT_START", SIGTERM, Int32(143)),
                                       ("BULWARK_FAULT_SIGNAL_AT_START", SIGINT, 130),
                                       ("BULWARK_FAULT_SIGNAL_WHEN_LOADED", SIGTERM, 130)] {
            try await withTemporaryDirectory { dir in
                let s = try Scenario(in: dir)
                let before = (try? s.auditCommits()) ?? []
                let process = try Self.startApply(s, in: dir, fault: (hook, String(number)))
                process.waitUntilExit()
                let out = try read(dir + "/apply.out"), err = try read(dir + "/apply.err")
                #expect(process.terminationReason == .exit && process.terminationStatus == status,
                        "\(hook) \(number): \(process.terminationReason.rawValue) \(process.terminationStatus) \(out) \(err)")
                #expect(!out.contains("fixed"), "\(hook): \(out)")
                #expect(err.contains(hook.hasSuffix("START") ? "interrupted before any fix was started" : "no other fix is started"),
                        "\(hook): \(err)")
                #expect(((try? s.auditCommits()) ?? []) == before, "nothing recorded")
                #expect(try s.run("plan").status == 2, "the drift is left for the next run")
            }
        }
    }

    /// A second Ctrl-C while a fix does not finish (held 60 s by a fault hook) ends the process at
    /// once with 130; the next run records the fix in flight from its intent, and the branch is
    /// sound. Before, the second signal waited, blocked, on a thread that blocks signals.
    @Test func aSecondInterruptStopsApplyAtOnce() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let process = try Self.startApply(s, in: dir, fault: ("BULWARK_FAULT_HOLD_BEFORE_RECORD", "2"))
            #expect(Self.wait(for: "fault: held before record 2", in: dir + "/apply.err", of: process))
            kill(process.processIdentifier, SIGINT)
            #expect(Self.wait(for: "Interrupt again", in: dir + "/apply.err", of: process))
            let second = Date()
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            #expect(Date().timeIntervalSince(second) < 30, "ended at once, not after the 60 s hold")
            #expect(process.terminationReason == .exit && process.terminationStatus == 130, "\(process.terminationStatus)")
            // It says so before it ends: what it left is for the next run.
            let err = try read(dir + "/apply.err")
            #expect(err.contains("interrupted again: stopped at once; the next run records what was in flight"), "\(err)")
            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect(next.stderr.contains("recorded an interrupted fix of an earlier run"), "\(next.stderr)")
            let ids = try s.trailers("Bulwark-Id")
            #expect(Set(ids).count == ids.count, "no record twice")
            #expect(try bulwark(["verify-audit", "--repo", s.origin]).status == 0)
        }
    }

    /// Ctrl-C while the push waits for the origin's audit branch (its lock file held, here by the
    /// test, as another writer holds it for a moment): the push makes no other attempt, the run
    /// says how many audit commits it keeps locally for the next run and exits 130, promptly (not
    /// after the push's 30 s), and leaves no lock file of its own in the origin. The next run
    /// pushes them. Before, the signal's default action ended the process silently (no summary,
    /// no word of what was kept), and could end it with the origin's lock file left behind.
    @Test func anInterruptDuringThePushStopsItsRetriesAndKeepsTheRecordsForTheNextRun() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = (try? s.auditCommits()) ?? []
            let lock = s.origin + "/refs/heads/bulwark/audit.lock"
            try write(lock, "held by the test\n")
            let process = try Self.startApply(s, in: dir, fault: ("BULWARK_FAULT_SAY_PUSH", "1"))
            #expect(Self.wait(for: "fault: pushing", in: dir + "/apply.err", of: process), "\((try? read(dir + "/apply.err")) ?? "")")
            usleep(1_500_000)  // the first attempt refused, the retries under way
            #expect(process.isRunning, "still pushing: \((try? read(dir + "/apply.err")) ?? "")")
            let signalled = Date()
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            let out = try read(dir + "/apply.out"), err = try read(dir + "/apply.err")
            #expect(Date().timeIntervalSince(signalled) < 15, "stopped promptly, not after the push's 30 s")
            #expect(process.terminationReason == .exit && process.terminationStatus == 130, "\(process.terminationStatus) \(out) \(err)")
            let fixed = out.split(separator: "\n").filter { $0.hasPrefix("fixed") }.count
            #expect(fixed > 0, "\(out)")
            #expect(err.contains("the push makes no other attempt"), "\(err)")
            #expect(err.contains("kept in \(s.state) and pushed on the next run: interrupted: the push was stopped"), "\(err)")
            #expect(out.contains("Fixed and verified: \(fixed)."), "the summary is printed: \(out)")
            #expect(((try? s.auditCommits()) ?? []) == before, "nothing pushed past the lock")
            // The lock is the test's as it made it; Bulwark left none of its own.
            #expect(try read(lock) == "held by the test\n")
            let locks = try FileManager.default.subpathsOfDirectory(atPath: s.origin + "/refs").filter { $0.hasSuffix(".lock") }
            #expect(locks == ["heads/bulwark/audit.lock"], "\(locks)")

            try FileManager.default.removeItem(atPath: lock)
            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            #expect(next.stdout.contains("Pushed"), "\(next.stdout)")
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "applied" }.count == fixed, "every fix's record went out")
            #expect(try s.run("plan").status == 0, "in sync afterwards")
        }
    }

    /// The twin without the signal: the push waits for the lock, which goes away while it
    /// retries; the records go out in this run and it exits 0.
    @Test func aPushThatWaitsForTheOriginsLockGoesOutOnceTheLockIsGone() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lock = s.origin + "/refs/heads/bulwark/audit.lock"
            try write(lock, "held by the test\n")
            let process = try Self.startApply(s, in: dir, fault: ("BULWARK_FAULT_SAY_PUSH", "1"))
            #expect(Self.wait(for: "fault: pushing", in: dir + "/apply.err", of: process), "\((try? read(dir + "/apply.err")) ?? "")")
            usleep(1_500_000)
            try FileManager.default.removeItem(atPath: lock)
            process.waitUntilExit()
            let out = try read(dir + "/apply.out"), err = try read(dir + "/apply.err")
            #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(process.terminationStatus) \(out) \(err)")
            let fixed = out.split(separator: "\n").filter { $0.hasPrefix("fixed") }.count
            #expect(out.contains("Pushed \(fixed) audit commit"), "\(out)")
            #expect(!err.contains("kept in"), "\(err)")
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "applied" }.count == fixed)
        }
    }

    /// Two Bulwarks with their own state directories fix one host. The first is killed between a
    /// fix and its record, and the host is put back as it was (as when it drifts again after that
    /// fix); the second fixes the drift and records it. The first, restarted, finds the values as
    /// desired and the other's verified record of them: the change may be the other's or its own
    /// made before (a record cannot tell), so it records its intent `interrupted`, naming that
    /// record, and never closes it without one (a change made would then have no record: an
    /// outside review found 212 such changes in 40 kill rounds when it did). `bulwark report`
    /// counts those records as no open drift and no stretched MTTR. Alone, a restarted Bulwark
    /// still records its own interrupted fix verified (`aKillBetweenAFixAndItsRecord…`).
    @Test func aFixAnotherBulwarkRecordedSinceIsRecordedInterruptedNamingItAfterARestart() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try run("/bin/cp", ["-a", s.host, dir + "/host.before"])
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_BEFORE_RECORD": "1"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault")
            #expect(try read(s.state + "/intents.log").contains("\"tried\":[\""), "killed between a tried fix and its record")
            let open = try read(s.state + "/intents.log").split(separator: "\n").filter { $0.contains("\"begin\"") }.count
            try FileManager.default.removeItem(atPath: s.host)
            try run("/bin/cp", ["-a", dir + "/host.before", s.host])

            let other = try s.run("apply", stateDir: dir + "/state-other")
            #expect(other.status == 0, "\(other.stdout)\(other.stderr)")
            let fixes = try s.trailers("Bulwark-Result").filter { $0 == "verified" }.count
            let commits = try s.auditCommits()
            #expect(fixes > 0 && fixes == commits.count)

            let restarted = try s.run("apply")
            #expect(restarted.stderr.contains("recorded an interrupted fix of an earlier run"), "\(restarted.stderr)")
            let instance = try #require(Set(try s.trailers("Bulwark-Instance")).first { _ in true })
            let log = try git("--git-dir", s.origin, "log", "--format=%B%x1e", "bulwark/audit")
            let records = log.components(separatedBy: "\u{1e}").filter { $0.contains("Bulwark-Id:") }
            let verified = records.filter { $0.contains("Bulwark-Result: verified") }
            let interrupted = records.filter { $0.contains("Bulwark-Result: interrupted") }
            #expect(verified.count == fixes, "no verified record claimed by the restarted Bulwark")
            #expect(interrupted.count == open && open > 0, "every open intent recorded: \(interrupted.count) of \(open)")
            #expect(records.count == fixes + open)
            // The record names the other instance's record (its text is in the record file).
            let paths = try git("--git-dir", s.origin, "log", "--format=", "--name-only", "--diff-filter=A", "bulwark/audit")
                .split(separator: "\n").map(String.init)
            let texts = try paths.map { try git("--git-dir", s.origin, "show", "bulwark/audit:" + $0) }
            #expect(texts.filter { $0.contains("recorded a fix of the same values since this drift was detected") }.count == open,
                    "\(texts.filter { $0.contains("interrupted") }.prefix(1))")
            #expect(!instance.isEmpty)
            // The report counts nothing open and no stretched MTTR.
            let report = try s.run("report")
            #expect(report.stdout.contains("Open items: none."), "\(report.stdout)")
            #expect(try read(s.state + "/intents.log").isEmpty, "every intent closed")
            #expect(try s.run("plan").status == 0, "in sync afterwards")
            let fsck = try run("/usr/bin/git", ["--git-dir", s.origin, "fsck", "--strict"])
            #expect(fsck.status == 0, "\(fsck.stderr)")
        }
    }

    /// Anyone who can push to the audit branch can add a commit that names the interrupted fix
    /// as another instance's verified one, whose record path is a folder: reading it threw, and
    /// that stopped recovery, so every later pass changed nothing. Such a commit is passed over:
    /// the interrupted fix is recorded verified, as with no other writer.
    @Test func aForgedRecordThatCannotBeReadDoesNotStopRecovery() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_BEFORE_RECORD": "1"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault")
            let intents = try read(s.state + "/intents.log").split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            let begun = try #require(intents.compactMap { $0["begin"] as? [String: Any] }.first)
            let target = try #require(begun["target"] as? String), resource = try #require(begun["resource"] as? String)

            let work = dir + "/forger"
            // The audit branch is not on the origin yet (the kill came before the first record).
            try git("clone", "-q", s.origin, work)
            try git("checkout", "-q", "--orphan", "bulwark/audit", in: work)
            try git("rm", "-r", "-q", "-f", ".", in: work)
            let id = "01M94YZ0000000000000000000", stamp = Timestamp.format(Date())
            let folder = work + "/" + AuditRecord.path(id: id, detectedAt: stamp)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try write(folder + "/x", "not a record\n")
            try git("add", "-A", in: work)
            try git("commit", "-qm", "forged\n\nBulwark-Id: \(id)\nBulwark-Target: \(target)\nBulwark-Resource: \(resource)\n"
                    + "Bulwark-Decision: applied\nBulwark-Result: verified\nBulwark-Detected-At: \(stamp)\nBulwark-Verified-At: \(stamp)\n"
                    + "Bulwark-Instance: vm-evil0001", in: work)
            try git("push", "-q", "origin", "bulwark/audit", in: work)

            let next = try s.run("apply")
            #expect(!next.stderr.contains("cannot resolve the open intents"), "\(next.stderr)")
            #expect(next.stderr.contains("recorded an interrupted fix of an earlier run"), "\(next.stderr)")
            let log = try git("--git-dir", s.origin, "log", "--format=%B%x1e", "bulwark/audit")
            let recovered = log.components(separatedBy: "\u{1e}").filter { $0.contains("recorded after a restart") }
            #expect(recovered.count == 1 && recovered.allSatisfy { $0.contains("Bulwark-Result: verified") }, "\(recovered) \(next.stdout) \(next.stderr) \(log)")
        }
    }

    /// A kill while a `ConfigFile`'s reload runs (systemd's final SIGKILL of a stopping Bulwark;
    /// here the reload command kills the Bulwark that runs it): the file already holds its new
    /// value, its service never read it. The next run records the interrupted fix `interrupted`,
    /// saying the reload did not complete, never `verified`; it then runs the owed reload and
    /// records that, and the plan after it is in sync. Against the old code the fix was recorded
    /// verified after the restart and the reload never ran again.
    @Test func aKillDuringAConfigFilesReloadLeavesTheReloadOwed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try write(dir + "/gw/etc/litellm/config.yaml", FindingValueTypeTests.gatewayConfig, mode: 0o640)
            try write(dir + "/reload.sh", """
                #!/bin/sh
                echo ran >> \(dir)/reloads
                [ -e \(dir)/killed ] || { touch \(dir)/killed; kill -9 $PPID; }

                """, mode: 0o755)
            let work = dir + "/gw-work"
            try git("clone", "-q", s.origin, work)
            try git("rm", "-q", "desired-state/ai-gateway/litellm.yaml", in: work)
            try write(work + "/controllers/gw.yaml", FindingValueTypeTests.inventory.replacingOccurrences(of: "ROOT", with: dir + "/gw"))
            try write(work + "/desired-state/ai-gateway/gw.yaml", """
                apiVersion: bulwark/v1
                kind: ConfigFile
                metadata: {name: gw-logging}
                spec:
                  path: etc/litellm/config.yaml
                  properties:
                    litellm_settings.json_logs: true
                  reload: [\(dir)/reload.sh]

                """)
            try git("add", "-A", in: work)
            try git("commit", "-qm", "the gateway's logging, reloaded", in: work)
            try git("push", "-q", "origin", "main", in: work)
            try s.acceptHead()

            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state])
            #expect(crashed.status == SIGKILL, "killed during the reload: \(crashed.stdout)\(crashed.stderr)")
            #expect(try read(dir + "/gw/etc/litellm/config.yaml").contains("json_logs: true"), "written before the reload")

            let next = try s.run("apply")
            #expect(next.status == 1, "an interrupted fix recorded: \(next.stdout)\(next.stderr)")
            let log = try git("--git-dir", s.origin, "log", "--format=%B%x1e", "bulwark/audit")
            let gateway = log.components(separatedBy: "\u{1e}").filter { $0.contains("Bulwark-Resource: ConfigFile/gw-logging") }
            let interrupted = gateway.filter { $0.contains("Bulwark-Result: interrupted") }
            #expect(interrupted.count == 1, "\(gateway)")
            #expect(interrupted.first?.contains("its reload did not complete") == true, "\(gateway)")
            let verified = gateway.filter { $0.contains("Bulwark-Result: verified") }
            #expect(verified.count == 1 && verified.allSatisfy { $0.contains("[reload of ConfigFile/gw-logging]") && !$0.contains("json_logs") },
                    "only the reload is recorded verified: \(gateway)")
            #expect(try read(dir + "/reloads").split(separator: "\n").count == 2, "the reload ran again, once")
            let plan = try s.run("plan")
            #expect(plan.status == 0, "in sync afterwards: \(plan.stdout)\(plan.stderr)")
        }
    }

    /// A kill between a fix and its record, then a person's commit that removes every host
    /// resource: the next run observes the interrupted fix as the revision it was made from gave
    /// it, and records it verified, saying the resource left the desired state. Recorded as
    /// "interrupted … now (unset)" it said nothing of a change that was made. A fix whose
    /// resource is still there is recorded as before (`aKillBetweenAFixAndItsRecord…`).
    @Test func anInterruptedFixOfAResourceRemovedSinceIsObservedAsItsRevisionGaveIt() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let crashed = try run(try bulwarkExecutable(), ["apply", "--repo", s.origin, "--state-dir", s.state],
                                  environment: ["BULWARK_FAULT_KILL_BEFORE_RECORD": "1"])
            #expect(crashed.status == SIGKILL, "killed by the injected fault")
            let work = dir + "/work"
            try git("clone", "-q", s.origin, work)
            try git("rm", "-r", "-q", "desired-state/hosts", in: work)
            try git("commit", "-qm", "host settings managed elsewhere", in: work)
            try git("push", "-q", "origin", "main", in: work)

            let next = try s.run("apply")
            #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
            let log = try git("--git-dir", s.origin, "log", "--format=%B%x1e", "bulwark/audit")
            let interrupted = log.components(separatedBy: "\u{1e}").filter { $0.contains("the process stopped") || $0.contains("after a restart") }
            #expect(interrupted.count == 1, "\(interrupted)")
            let record = try #require(interrupted.first)
            #expect(record.contains("Bulwark-Result: verified"), "\(record)")
            #expect(record.contains("is no longer in the desired state (observed as"), "\(record)")
            #expect(!record.contains("(unset)"), "\(record)")
        }
    }
}

/// Two nftables targets of one pass whose namespaces are one namespace, though their names differ:
/// the loader compares names, so the pass compares what the names are (`Reconciler.sharedClaims`).
extension FirewallEndToEndTests {
    /// Harmful (review): edge-a in the lab's namespace, managed from the peer (192.0.2.2), and
    /// edge-b in a second name bound to that namespace (`mount --bind`), managed from
    /// 203.0.113.0/24, and a blocklist of 192.0.2.2 bound to both. edge-a's guard blocked it;
    /// edge-b's let it through onto the same ruleset and cut edge-a's management network off.
    /// Now neither is reconciled: the ruleset is as it was, the peer still connects, and each
    /// binding's refusal, naming both targets and both names, is in git.
    @Test func twoNamesOfOneNamespaceAreNotReconciledAndTheRefusalIsInGit() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            let alias = try lab.alias()
            try lab.listen(port: 8443)
            try Self.commitEdges(s, a: lab.host, b: alias, block: "192.0.2.2")
            let before = try lab.nft(["list", "ruleset"]).stdout
            let apply = try s.run("apply")
            #expect(!apply.stdout.contains("fixed    edge-"), "\(apply.stdout)\n\(apply.stderr)")
            #expect(try lab.nft(["list", "ruleset"]).stdout == before, "the shared ruleset is unchanged")
            #expect(try lab.connects(port: 8443), "edge-a's management network still reaches it")
            try Self.expectRefusals(s, "all manage one thing: the nftables ruleset of network namespace \(lab.host) and the nftables "
                                      + "ruleset of network namespace \(alias) are one network namespace (device ")
        }
    }

    /// Harmful: Bulwark runs in the lab's namespace (`ip netns exec`); edge-a names none (the
    /// namespace Bulwark runs in) and edge-b names the lab's, the same one. As above: edge-b
    /// applied the blocklist edge-a's guard blocked. Neither is reconciled, and that is in git.
    @Test func aNameForTheNamespaceBulwarkRunsInBesideATargetWithoutOneIsNotReconciled() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8443)
            try Self.commitEdges(s, a: nil, b: lab.host, block: "192.0.2.2")
            let before = try lab.nft(["list", "ruleset"]).stdout
            let apply = try Self.apply(s, in: lab.host)
            #expect(!apply.stdout.contains("fixed    edge-"), "\(apply.stdout)\n\(apply.stderr)")
            #expect(try lab.nft(["list", "ruleset"]).stdout == before, "the shared ruleset is unchanged")
            #expect(try lab.connects(port: 8443), "edge-a's management network still reaches it")
            try Self.expectRefusals(s, "all manage one thing: the nftables ruleset of the network namespace Bulwark runs in (no netns) "
                                      + "and the nftables ruleset of network namespace \(lab.host) are one network namespace (device ")
        }
    }

    /// Legitimate twin: Bulwark in the lab's namespace, edge-a naming it (alone on it: its guard
    /// reads the namespace it changes) and edge-b in the peer's, a distinct namespace. Both apply
    /// the blocklist, each to its own ruleset.
    @Test func targetsInDistinctNamespacesBothApply() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try Self.commitEdges(s, a: lab.host, b: lab.peer, block: "198.51.100.7")
            try s.acceptHead()
            let apply = try Self.apply(s, in: lab.host)
            #expect(apply.stdout.contains("fixed    edge-a  FirewallBlocklist/known-bad: addresses (unset) -> 198.51.100.7"),
                    "\(apply.stdout)\n\(apply.stderr)")
            #expect(apply.stdout.contains("fixed    edge-b  FirewallBlocklist/known-bad: addresses (unset) -> 198.51.100.7"),
                    "\(apply.stdout)\n\(apply.stderr)")
            #expect(!apply.stderr.contains("of this pass all manage"), "\(apply.stderr)")
            for namespace in [lab.host, lab.peer] {
                let ruleset = try run("/usr/sbin/ip", ["netns", "exec", namespace, "nft", "list", "ruleset"]).stdout
                #expect(ruleset.contains("198.51.100.7"), "\(namespace): \(ruleset)")
            }
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "unobserved" }.isEmpty)
        }
    }

    /// edge-a (managed from the lab's peer, 192.0.2.2) in namespace `a`, edge-b (managed from
    /// 203.0.113.0/24) in `b` (nil: none), and a blocklist of `block` bound to both.
    static func commitEdges(_ s: Scenario, a: String?, b: String?, block: String) throws {
        for name in ["edge-a", "edge-b"] {
            try FileManager.default.createDirectory(atPath: s.dir + "/\(name)-root", withIntermediateDirectories: true)
        }
        func netns(_ name: String?) -> String { name.map { "netns: \($0), " } ?? "" }
        try s.commitPolicy("controllers/edge.yaml", """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-a, labels: {role: edge}}
            spec: {adapter: nftables, root: \(s.dir)/edge-a-root, \(netns(a))management: [192.0.2.2/32]}
            ---
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: edge-b, labels: {role: edge}}
            spec: {adapter: nftables, root: \(s.dir)/edge-b-root, \(netns(b))management: [203.0.113.0/24]}
            """)
        try s.commitPolicy("desired-state/firewall/blocklist.yaml", """
            apiVersion: bulwark/v1
            kind: FirewallBlocklist
            metadata: {name: known-bad}
            spec: {addresses: [\(block)]}
            """)
    }

    /// `bulwark apply` run inside `namespace`, as a Bulwark in that network namespace.
    static func apply(_ s: Scenario, in namespace: String) throws -> ProcessOutput {
        try run("/usr/sbin/ip", ["netns", "exec", namespace, try bulwarkExecutable(), "apply", "--repo", s.origin, "--state-dir", s.state])
    }

    /// One record per target of the blocklist in the audit branch, as git reads it: unobserved,
    /// saying both targets of the pass manage `shared`.
    static func expectRefusals(_ s: Scenario, _ shared: String) throws {
        let log = try git("--git-dir", s.origin, "log", "--format=%B%x1e", "bulwark/audit")
        let records = log.split(separator: "\u{1e}").map(String.init).filter { $0.contains("Bulwark-Resource: FirewallBlocklist/known-bad") }
        #expect(records.count == 2, "\(log)")
        for target in ["edge-a", "edge-b"] {
            let record = records.first { $0.contains("Bulwark-Target: \(target)\n") }
            #expect(record?.contains("Bulwark-Decision: unobserved") == true, "\(target): \(log)")
            #expect(record?.contains("not reconciled: targets edge-a, edge-b of this pass " + shared) == true, "\(target): \(log)")
        }
    }
}

extension FirewallEndToEndTests {
    /// A day `days` from today (UTC), as `expires` takes it.
    static func day(_ days: Int) -> String {
        Date().addingTimeInterval(Double(days) * 86_400).formatted(Date.ISO8601FormatStyle().year().month().day())
    }

    static func quarantine(expires: String?, allow: String = "192.0.2.200/32") -> String {
        """
        apiVersion: bulwark/v1
        kind: Quarantine
        metadata: {name: incident-7}
        spec: {hosts: [edge-1], allow: [\(allow)]\(expires.map { ", expires: " + $0 } ?? "")}
        """
    }

    /// The decisions recorded for the quarantine, newest first.
    static func quarantineDecisions(_ s: Scenario) throws -> [String] {
        try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)", "bulwark/audit")
            .split(separator: "\n").filter { $0.hasPrefix("Quarantine/incident-7|") }.map { String($0.split(separator: "|").last ?? "") }
    }

    /// Lifting or narrowing an active quarantine by editing the policy (its expiry moved into
    /// the past or earlier, a network added to `allow`) weakens it: held for a second person and
    /// recorded, the host still cut off. One author lifted it at once before (outside review).
    /// Lengthening it, or ending the expiry, still goes through.
    @Test func aQuarantineLiftedOrNarrowedByThePolicyIsHeldAndOneLengthenedGoesThrough() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8443)
            try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
            try s.commitPolicy("controllers/edge.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: edge-1, labels: {role: edge}}
                spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(lab.host), management: [192.0.2.200/32]}
                """)
            let path = "desired-state/firewall/quarantine.yaml"
            try s.commitPolicy(path, Self.quarantine(expires: Self.day(10)))
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
            #expect(try !lab.connects(port: 8443), "quarantined")
            #expect(try Self.quarantineDecisions(s) == ["applied"])

            // Each of these lifts or narrows it: held, recorded, the host still cut off.
            let weaker: [(String, String)] = [
                (Self.quarantine(expires: Self.day(-1)), "lifts the quarantine of edge-1, set to last until \(Self.day(10))"),
                (Self.quarantine(expires: Self.day(3)), "ends the quarantine of edge-1 after \(Self.day(3)), not \(Self.day(10))"),
                (Self.quarantine(expires: Self.day(10), allow: "192.0.2.200/32, 198.51.100.0/24"), "lets edge-1 reach 198.51.100.0/24 too"),
            ]
            for (index, (text, why)) in weaker.enumerated() {
                try s.commitPolicy(path, text)
                let held = try s.run("apply")
                #expect(held.stdout.contains("weakens the policy by Test Person"), "\(held.stdout)\n\(held.stderr)")
                #expect(held.stdout.contains(why), "\(held.stdout)")
                #expect(try !lab.connects(port: 8443), "still quarantined")
                #expect(try Self.quarantineDecisions(s).first == "held", "recorded")
                #expect(try Self.quarantineDecisions(s).count == 2 + index, "each held revision recorded once")
            }

            // Legitimate: lengthened, then without an end: applied, still cut off, nothing held.
            for text in [Self.quarantine(expires: Self.day(30)), Self.quarantine(expires: nil)] {
                try s.commitPolicy(path, text)
                let longer = try s.run("apply")
                #expect(longer.status == 0, "\(longer.stdout)\n\(longer.stderr)")
                #expect(!longer.stdout.contains("weakens the policy"), "\(longer.stdout)")
                #expect(try Self.quarantineDecisions(s).first == "applied", "\(longer.stdout)")
                #expect(try !lab.connects(port: 8443), "still quarantined")
            }

            // Removing the resource is a prune, held like any other (`Planner.prunes`).
            try s.commitPolicy(path, "# incident 7 closed\n")
            let removed = try s.run("apply")
            #expect(removed.stdout.contains("Quarantine/incident-7 was removed from the desired state"), "\(removed.stdout)")
            #expect(try Self.quarantineDecisions(s).first == "held")
            #expect(try !lab.connects(port: 8443), "still quarantined")
        }
    }

    /// An expiry that passes by itself lifts the quarantine though the revision moved meanwhile:
    /// the last applied revision is read at the same time as the new one, so both say `lifted`
    /// and nothing weakened. Read with the real clock while the daemon's was stepped, the old
    /// revision still said `active` and the lift was held for a second person.
    @Test func aQuarantineThatEndsByItselfIsLiftedThoughTheRevisionMoved() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let lab = try NetworkLab()
            defer { lab.remove() }
            try lab.listen(port: 8443)
            try FileManager.default.createDirectory(atPath: dir + "/edge-root", withIntermediateDirectories: true)
            try s.commitPolicy("controllers/edge.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: edge-1, labels: {role: edge}}
                spec: {adapter: nftables, root: \(dir)/edge-root, netns: \(lab.host), management: [192.0.2.200/32]}
                """)
            try s.commitPolicy("desired-state/firewall/quarantine.yaml", Self.quarantine(expires: Self.day(1)))
            let offset = dir + "/wall-clock-offset"
            try write(offset, "0\n")
            func daemon() throws -> DaemonProcess {
                try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "1"],
                                  environment: ["BULWARK_FAULT_WALL_CLOCK_OFFSET_FILE": offset,
                                                "BULWARK_WEBHOOK_SECRET": DaemonTests.secret],
                                  logPath: dir + "/daemon-\(UUID().uuidString.prefix(8)).log")
            }
            let before = try daemon()
            #expect(before.wait(seconds: 60) { (try? lab.connects(port: 8443)) == false }, "quarantined: \(before.log)")
            #expect(before.wait(seconds: 30) { (try? Self.quarantineDecisions(s)) == ["applied"] }, "\(before.log)")
            #expect(before.terminate() == 0)

            // Three days on, and an unrelated commit: the new revision is compared with the old.
            try write(offset, "259200\n")
            try s.commitPolicy("NOTES.md", "Incident 7: edge-1 quarantined until its expiry.\n")
            let after = try daemon()
            defer { _ = after.terminate() }
            #expect(after.wait(seconds: 60) { (try? lab.connects(port: 8443)) == true }, "lifted at its expiry: \(after.log)")
            #expect(try Self.quarantineDecisions(s).first == "applied", "\(after.log)")
            #expect(try !Self.quarantineDecisions(s).contains("held"))
            #expect(after.terminate() == 0)
        }
    }
}
