@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// `bulwark revert`: the real binary on a real host tree, the waiver and the record read back with git.
@Suite struct RevertTests {
    static let person = ["GIT_AUTHOR_NAME": "Olga Operator", "GIT_AUTHOR_EMAIL": "olga@example.org"]

    static func day(in days: Double) -> String {
        Date().addingTimeInterval(days * 86_400).formatted(Date.ISO8601FormatStyle().year().month().day())
    }

    /// The id of the newest record of `resource` with `decision`, as git reads the audit branch.
    static func recordID(_ s: Scenario, resource: String, decision: String) throws -> String {
        let log = try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)|%(trailers:key=Bulwark-Id,valueonly,separator=)", "bulwark/audit")
        let line = try #require(log.split(separator: "\n").first { $0.hasPrefix("\(resource)|\(decision)|") })
        return String(line.split(separator: "|")[2])
    }

    /// The refused records of `revert ID` on the audit branch (read with git): bodies whose reason
    /// names the command, by Olga.
    static func refusedReverts(_ s: Scenario, _ id: String) throws -> [String] {
        try CommandRefusalTests.refusals(s).filter { $0.contains("bulwark revert \(id.uppercased()) by Olga Operator <olga@example.org>: ") }
    }

    static func revert(_ s: Scenario, _ id: String, reason: String = "the backup robot logs in as root until CHG-42",
                       expires: String = day(in: 30)) throws -> ProcessOutput {
        try run(try bulwarkExecutable(), ["revert", id, "--repo", s.origin, "--state-dir", s.state, "--reason", reason,
                                          "--expires", expires], environment: person)
    }

    /// Someone who can push to the origin copies the record `id` under `newID`, unsigned, and
    /// pushes it to the audit branch; returns the copy.
    static func pushCopy(of id: String, as newID: String, to s: Scenario, in dir: String,
                         changing change: (inout AuditRecord) -> Void = { _ in }) async throws -> AuditRecord {
        let state = dir + "/forger-state-\(newID.suffix(4))"
        let forger = try PolicyRepository(.init(url: s.origin, stateDirectory: state))
        _ = try await forger.sync()
        var copy = try await Bulwark.Revert.record(id, in: forger, stateDirectory: state, auditBranch: "bulwark/audit", trust: nil)
        copy.id = newID
        change(&copy)
        _ = try await forger.write(copy)
        #expect(try await forger.publish() == .pushed(commits: 1))
        return copy
    }

    @Test func aVerifiedFixIsUndoneWaivedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let sshd = s.host + "/etc/ssh/sshd_config"
            #expect(try read(sshd).contains("\nPermitRootLogin no\n"))
            let id = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            let before = try s.snapshot()
            let fixes = try Self.report(s).fixes

            let expires = Self.day(in: 30)
            let revert = try Self.revert(s, id, expires: expires)
            #expect(revert.status == 0, "\(revert.stdout)\n\(revert.stderr)")
            #expect(revert.stdout.contains("PermitRootLogin no -> yes, now yes"))

            // The old value is back, and nothing else on the host moved.
            #expect(try read(sshd).contains("\nPermitRootLogin yes\n"))
            let after = try s.snapshot()
            #expect(Set(after.keys) == Set(before.keys))
            #expect(before.keys.filter { before[$0] != after[$0] } == ["etc/ssh/sshd_config"])

            // The waiver is on main, owned by the person who ran the command, for that one property.
            let waiver = try git("--git-dir", s.origin, "show", "main:waivers/revert-\(id.lowercased()).yaml")
            #expect(waiver.contains("kind: Waiver"))
            #expect(waiver.contains("resource: \"cis-5.1.20-permit-root-login\""))
            #expect(waiver.contains("property: \"PermitRootLogin\""))
            #expect(waiver.contains("owner: \"Olga Operator <olga@example.org>\""))
            #expect(waiver.contains("expires: \(expires)"))
            #expect(try git("--git-dir", s.origin, "log", "-1", "--format=%an", "main") == "Olga Operator\n")

            // Its own record on the audit branch: applied, verified, the reason naming the reverted id.
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Reason: revert of \(id) by Olga Operator <olga@example.org>: the backup robot logs in as root until CHG-42"))
            #expect(record.contains("PermitRootLogin: no -> yes, now yes"))
            #expect(record.contains("Bulwark-Decision: applied"))
            #expect(record.contains("Bulwark-Result: verified"))
            #expect(record.contains("Bulwark-Approved-By: Olga Operator <olga@example.org>"))
            #expect(record.contains("Bulwark-Reverts: \(id)"), "\(record)")

            // The next pass leaves it alone: waived, not fixed again.
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)")
            #expect(try read(sshd).contains("\nPermitRootLogin yes\n"))
            #expect(try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "waived").count == 26)
            // Only waived drift is left: plan exits 0, so a gate on it can pass.
            let plan = try s.run("plan")
            #expect(plan.status == 0, "\(plan.stdout)")
            #expect(plan.stdout.contains("waived"), "\(plan.stdout)")

            // Reverting the same fix twice is refused (its id in lowercase, as the waiver file names it, is the same id).
            let again = try Self.revert(s, id.lowercased())
            #expect(again.status == 1)
            #expect(again.stderr.contains("was already reverted"))
            // Refused and recorded in git, naming the fix's resource and target.
            let already = try Self.refusedReverts(s, id)
            #expect(already.count == 1 && already[0].contains("was already reverted") && already[0].contains("Bulwark-Decision: refused"),
                    "\(already)")
            #expect(already.first?.contains("Bulwark-Resource: SSHDConfig/cis-5.1.20-permit-root-login") == true, "\(already)")
            // And so is reverting the revert: its own waiver is what to remove.
            let revertID = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            #expect(revertID != id)
            let undo = try Self.revert(s, revertID)
            #expect(undo.status == 1)
            #expect(undo.stderr.contains("is itself a revert"))
            #expect(undo.stderr.contains("remove waivers/revert-\(id.lowercased()).yaml from main"))
            #expect(try Self.refusedReverts(s, revertID).first?.contains("is itself a revert") == true)
            #expect(try read(sshd).contains("\nPermitRootLogin yes\n"))

            // `report` counts the fix and not its undoing, and the refused reverts open no drift
            // (outside review: "2 fixes", and "refused, open" beside a plan in sync).
            let report = try Self.report(s)
            #expect(report.fixes == fixes, "\(report)")
            #expect(!report.open.contains("SSHDConfig/cis-5.1.20-permit-root-login"), "\(report)")
        }
    }

    /// `report --output json`: how many fixes its MTTR counts, and the resources it shows open.
    static func report(_ s: Scenario) throws -> (fixes: Int, open: [String]) {
        let output = try s.run("report", "--output", "json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any], "\(output.stdout)")
        let mttr = try #require(object["mttr"] as? [String: Any])
        let open = (object["open"] as? [[String: Any]] ?? []).compactMap { $0["resource"] as? String }
        return (try #require(mttr["fixes"] as? Int), open)
    }

    /// Guard: while changes are paused (`bulwark pause`), a revert is refused and nothing changes,
    /// neither the host nor the policy branch (review: it restored the old value through the
    /// emergency brake). Legitimate: once resumed, the same revert goes through.
    @Test func aRevertWaitsForAPauseToBeLifted() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let id = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            #expect(try s.run("pause", "--reason", "incident 42: freeze all changes").status == 0)
            let before = try s.snapshot()
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let refused = try Self.revert(s, id)
            #expect(refused.status == 1 && refused.stderr.contains("changes are paused") && refused.stderr.contains("incident 42"),
                    "\(refused.stderr)")
            #expect(try s.snapshot() == before)
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main, "no waiver committed")
            let paused = try Self.refusedReverts(s, id)
            #expect(paused.count == 1 && paused[0].contains("changes are paused") && paused[0].contains("incident 42"), "\(paused)")

            #expect(try s.run("resume", "--reason", "incident 42 over").status == 0)
            let reverted = try Self.revert(s, id)
            #expect(reverted.status == 0, "\(reverted.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin yes\n"))
            #expect(try Self.refusedReverts(s, id).count == 1, "the revert that went through is no refusal")
        }
    }

    /// The values a revert puts back come from the record. With a signing key, a record another
    /// writer pushed to the audit branch (a copy of a real fix, with its own id) is refused and
    /// nothing changes; the real fix, which this Bulwark signed, is reverted.
    @Test func aRecordThisBulwarkDidNotSignIsNotRevertedAndItsOwnIs() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            let signing = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            func revert(_ id: String) throws -> ProcessOutput {
                try run(try bulwarkExecutable(), ["revert", id, "--repo", s.origin, "--state-dir", s.state,
                                                  "--reason", "CHG-42", "--expires", Self.day(in: 30)] + signing, environment: Self.person)
            }
            let applied = try s.run("apply", signing[0], signing[1], signing[2], signing[3])
            #expect(applied.status == 0, "\(applied.stderr)")
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let genuine = try Self.recordID(s, resource: resource, decision: "applied")

            // Someone who can push copies the fix's record under a new id, unsigned.
            let copy = try await Self.pushCopy(of: genuine, as: "01FQRGEDRECQRD0000000000BB", to: s, in: dir)

            let host = try s.snapshot()
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let audit = try s.auditCommits()
            let refused = try revert(copy.id)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("the audit record \(copy.id) cannot be reverted: its commit"), "\(refused.stderr)")
            #expect(refused.stderr.contains("is not signed"), "\(refused.stderr)")
            #expect(try s.snapshot() == host)
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            // One commit more on the audit branch: the refusal, signed as this Bulwark's records are.
            #expect(try s.auditCommits().count == audit.count + 1)
            let unsigned = try Self.refusedReverts(s, copy.id)
            #expect(unsigned.count == 1 && unsigned[0].contains("cannot be reverted") && unsigned[0].contains("Bulwark-Resource: Revert/\(copy.id)"),
                    "\(unsigned)")

            let reverted = try revert(genuine)
            #expect(reverted.status == 0, "\(reverted.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin yes\n"))
        }
    }

    /// Someone who can push puts on the audit branch a record saying the fix was already
    /// reverted, and a newer commit with the fix's own id and another value to restore. With a
    /// signing key, the newest record Bulwark signed is taken: both are passed over and named,
    /// and the value from before Bulwark's own fix is restored. (The newest one was refused,
    /// and the made-up revert stopped the real one.)
    @Test func newerRecordsThisBulwarkDidNotSignArePassedOverAndItsOwnIsReverted() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            let signing = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            let applied = try s.run("apply", signing[0], signing[1], signing[2], signing[3])
            #expect(applied.status == 0, "\(applied.stderr)")
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let genuine = try Self.recordID(s, resource: resource, decision: "applied")
            _ = try await Self.pushCopy(of: genuine, as: "01FQRGEDREVERT000000000000", to: s, in: dir) {
                $0.reason = "\(Bulwark.Revert.reasonPrefix)\(genuine) by Mallory <mallory@example.org>: done"
            }
            _ = try await Self.pushCopy(of: genuine, as: genuine, to: s, in: dir) {
                $0.changes = $0.changes.map { change in
                    var change = change
                    change.observedBefore = "without-password"
                    return change
                }
            }
            let reverted = try run(try bulwarkExecutable(), ["revert", genuine, "--repo", s.origin, "--state-dir", s.state,
                                                             "--reason", "CHG-42", "--expires", Self.day(in: 30)] + signing,
                                   environment: Self.person)
            #expect(reverted.status == 0, "\(reverted.stdout)\n\(reverted.stderr)")
            #expect(reverted.stderr.contains("a newer commit with the audit record \(genuine) is passed over"), "\(reverted.stderr)")
            #expect(reverted.stderr.contains("a record of a revert of \(genuine) is passed over"), "\(reverted.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin yes\n"))
        }
    }

    /// Without signatures every record counts, so its names must be ones Bulwark wrote: a record
    /// whose `resource` carries YAML (a second document, a waiver matching everything) is refused
    /// before anything is committed; the genuine record is reverted, its waiver naming only it.
    @Test func aRecordWhoseResourceIsNotItsKindAndNameIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let resource = "SSHDConfig/cis-5.1.20-permit-root-login"
            let genuine = try Self.recordID(s, resource: resource, decision: "applied")
            let injected = resource + "\napiVersion: bulwark/v1\nkind: Waiver\nmetadata: {name: quiet}\n"
                + "spec: {match: {}, reason: x, owner: x, expires: \(Self.day(in: 30))}\n"
            let copy = try await Self.pushCopy(of: genuine, as: "01FQRGEDRECQRD0000000000CC", to: s, in: dir) { $0.resource = injected }

            let host = try s.snapshot()
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let refused = try Self.revert(s, copy.id)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("does not match its commit"), "\(refused.stderr)")
            #expect(try s.snapshot() == host)
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            // Recorded under the id it named, never under the injected resource.
            let forged = try Self.refusedReverts(s, copy.id)
            #expect(forged.count == 1 && forged[0].contains("Bulwark-Resource: Revert/\(copy.id)") && !forged[0].contains("quiet"), "\(forged)")

            let reverted = try Self.revert(s, genuine)
            #expect(reverted.status == 0, "\(reverted.stderr)")
            let waiver = try git("--git-dir", s.origin, "show", "main:waivers/revert-\(genuine.lowercased()).yaml")
            #expect(waiver.components(separatedBy: "kind: Waiver").count == 2, "\(waiver)")
            #expect(!waiver.contains("quiet"))
        }
    }

    @Test func anUnknownIdIsRefusedAndNothingChanges() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let host = try s.snapshot()
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let audit = try s.auditCommits()
            let revert = try Self.revert(s, "01ABCDEFGHJKMNPQRSTVWXYZ01")
            #expect(revert.status == 1)
            #expect(revert.stderr.contains("no audit record with id 01ABCDEFGHJKMNPQRSTVWXYZ01 in bulwark/audit"))
            #expect(try s.snapshot() == host)
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            // In git, once: the same revert refused again adds nothing.
            #expect(try s.auditCommits().count == audit.count + 1)
            #expect(try Self.revert(s, "01abcdefghjkmnpqrstvwxyz01").status == 1)
            let unknown = try Self.refusedReverts(s, "01ABCDEFGHJKMNPQRSTVWXYZ01")
            #expect(unknown.count == 1, "\(unknown)")
            #expect(unknown.first?.contains("Bulwark-Resource: Revert/01ABCDEFGHJKMNPQRSTVWXYZ01") == true, "\(unknown)")
            #expect(unknown.first?.contains("no audit record with id 01ABCDEFGHJKMNPQRSTVWXYZ01") == true, "\(unknown)")
            #expect(try s.auditCommits().count == audit.count + 1)

            // Legitimate: a real fix's id is reverted, and no refusal is added.
            let id = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            let reverted = try Self.revert(s, id)
            #expect(reverted.status == 0, "\(reverted.stderr)")
            #expect(try CommandRefusalTests.refusals(s).count == 1)
        }
    }

    @Test func aHeldRecordIsNotAFixAndIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let id = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "held")
            let host = try s.snapshot()
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let revert = try Self.revert(s, id)
            #expect(revert.status == 1)
            #expect(revert.stderr.contains("\(id) is a held record"))
            #expect(revert.stderr.contains("only a verified applied fix can be reverted"))
            #expect(try s.snapshot() == host)
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            let held = try Self.refusedReverts(s, id)
            #expect(held.count == 1 && held[0].contains("is a held record") && held[0].contains("Bulwark-Resource: SSHDConfig/cis-5.1.20-permit-root-login"),
                    "\(held)")

            // Legitimate: enforced, the fix is applied, and its own record is reverted.
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: approve", with: "mode: enforce")
            #expect(try s.run("apply").status == 0)
            let fix = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            let reverted = try Self.revert(s, fix)
            #expect(reverted.status == 0, "\(reverted.stderr)")
            #expect(try Self.refusedReverts(s, fix).isEmpty)
        }
    }

    @Test func anExpiryInThePastOrBeyondAYearIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let id = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            let host = try s.snapshot()
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let past = try Self.revert(s, id, expires: Self.day(in: -2))
            #expect(past.status == 1)
            #expect(past.stderr.contains("is in the past"))
            let far = try Self.revert(s, id, expires: Self.day(in: 400))
            #expect(far.status == 1)
            #expect(far.stderr.contains("a waiver may last at most a year"))
            #expect(try s.snapshot() == host)
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
        }
    }

    @Test func aValueThatWasUnsetBeforeCannotBeRestored() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let id = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.19-permit-empty-passwords", decision: "applied")
            let host = try s.snapshot()
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let revert = try Self.revert(s, id)
            #expect(revert.status == 1)
            #expect(revert.stderr.contains("PermitEmptyPasswords of SSHDConfig/cis-5.1.19-permit-empty-passwords was unset before the fix"))
            #expect(try s.snapshot() == host)
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            let unset = try Self.refusedReverts(s, id)
            #expect(unset.count == 1 && unset[0].contains("was unset before the fix"), "\(unset)")

            // Legitimate: the fix of a value that was set is reverted.
            let fix = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            #expect(try Self.revert(s, fix).status == 0)
            #expect(try CommandRefusalTests.refusals(s).count == 1)
        }
    }
}

/// The pure parts of `revert`: which values may be put back, and the waiver the loader reads.
@Suite struct RevertPartsTests {
    static func record(_ changes: [AuditRecord.Change]) -> AuditRecord {
        AuditRecord(id: "01JD3M0000000000000000000A", controller: "host-hardening", target: "host", resource: "Kind/name",
                    kind: "SSHDConfig", name: "cis-5.1.20-permit-root-login", severity: .critical, risk: 4, mode: .enforce,
                    decision: .applied, result: .verified, reason: nil, changes: changes, detectedAt: Timestamp.parse("2026-12-01T10:00:00.000Z") ?? .distantPast,
                    appliedAt: nil, verifiedAt: nil, desiredCommit: "abc", approver: nil, error: nil)
    }

    @Test func aSensitiveValueIsRefusedAndAPlainOneIsRestored() throws {
        let secret = Self.record([.init(property: "password", desired: "[redacted]", observedBefore: "[redacted]", observedAfter: "[redacted]")])
        #expect(throws: CommandError.self) { try Bulwark.Revert.restorable(secret, sensitive: []) }
        do {
            _ = try Bulwark.Revert.restorable(secret, sensitive: [])
        } catch let error as CommandError {
            #expect(error.description.contains("password of Kind/name is sensitive"))
        }
        // Redacted inside a value (a file's typed value, a token in a mapping, a URL's password):
        // put back, the placeholder itself would be written into the file.
        for before in [#""[redacted]""#, #"{"a":"[redacted]","b":1}"#, "postgres://u:<redacted>@db/x"] {
            let partly = Self.record([.init(property: "model_alias", desired: #""gpt-4o""#, observedBefore: before, observedAfter: #""gpt-4o""#)])
            #expect(throws: CommandError.self, "\(before)") { try Bulwark.Revert.restorable(partly, sensitive: []) }
        }
        // Sensitive by the manifest, even if a record showed a value.
        let marked = Self.record([.init(property: "password", desired: "x", observedBefore: "y", observedAfter: "x")])
        #expect(throws: CommandError.self) { try Bulwark.Revert.restorable(marked, sensitive: ["password"]) }

        let plain = Self.record([
            .init(property: "PermitRootLogin", desired: "no", observedBefore: "yes", observedAfter: "no"),
            .init(property: "MaxAuthTries", desired: "4", observedBefore: "6", observedAfter: "4"),
        ])
        let restore = try Bulwark.Revert.restorable(plain, sensitive: ["password"])
        #expect(restore.map(\.property) == ["PermitRootLogin", "MaxAuthTries"])
        #expect(restore.map(\.value) == ["yes", "6"])
    }

    @Test func theWaiverLoadsAsOneWaiverPerPropertyForThatResourceAndTarget() throws {
        let record = Self.record([])
        let expires = RevertTests.day(in: 30)
        let text = Bulwark.Revert.waiver(of: record, id: record.id, properties: ["PermitRootLogin", "MaxAuthTries"],
                                         reason: #"robot "backup" needs root \ until CHG-42"#, owner: "Olga <olga@example.org>",
                                         expires: expires)
        let state = try DesiredStateLoader(registry: Bulwark.registry())
            .load([SourceFile(path: "waivers/revert-x.yaml", contents: Array(text.utf8))], revision: "abc")
        let waivers = state.waivers.sorted { $0.name < $1.name }
        #expect(waivers.map(\.name) == ["revert-01jd3m0000000000000000000a-1", "revert-01jd3m0000000000000000000a-2"])
        #expect(waivers.map(\.property) == ["PermitRootLogin", "MaxAuthTries"])
        for waiver in waivers {
            #expect(waiver.kind == "SSHDConfig")
            #expect(waiver.resource == "cis-5.1.20-permit-root-login")
            #expect(waiver.targets == ["host"])
            #expect(waiver.owner == "Olga <olga@example.org>")
            #expect(waiver.reason == #"revert of 01JD3M0000000000000000000A: robot "backup" needs root \ until CHG-42"#)
        }
        let binding = Binding(controller: "host-hardening", target: "host", resource: ResourceID(kind: "SSHDConfig", name: "cis-5.1.20-permit-root-login"))
        #expect(waivers[0].matches(binding, property: "PermitRootLogin", at: Date()))
        #expect(!waivers[0].matches(binding, property: "MaxAuthTries", at: Date()))
        #expect(!waivers[0].matches(Binding(controller: "host-hardening", target: "other", resource: binding.resource),
                                    property: "PermitRootLogin", at: Date()))
    }
}

extension RevertTests {
    /// Harmful: the fix's resource was renamed in the policy since (no longer in the desired
    /// state): the revert is refused, and the refusal recorded in git once, naming the fix's
    /// resource. Legitimate: named as before again, the same revert goes through.
    @Test func aFixWhoseResourceLeftThePolicyIsRefusedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let id = try Self.recordID(s, resource: "SSHDConfig/cis-5.1.20-permit-root-login", decision: "applied")
            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "cis-5.1.20-permit-root-login", with: "cis-5.1.20-root-login")
            let host = try s.snapshot()
            for _ in 0..<2 {
                let refused = try Self.revert(s, id)
                #expect(refused.status == 1, "\(refused.stdout)\n\(refused.stderr)")
                #expect(refused.stderr.contains("SSHDConfig/cis-5.1.20-permit-root-login on ") && refused.stderr.contains(" is no longer in the desired state"),
                        "\(refused.stderr)")
            }
            #expect(try s.snapshot() == host)
            let records = try Self.refusedReverts(s, id)
            #expect(records.count == 1, "recorded once: \(records)")
            #expect(records.first?.contains("Bulwark-Resource: SSHDConfig/cis-5.1.20-permit-root-login") == true, "\(records)")
            #expect(records.first?.contains("Bulwark-Target: -") == false, "the fix's target: \(records)")

            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "cis-5.1.20-root-login", with: "cis-5.1.20-permit-root-login")
            let reverted = try Self.revert(s, id)
            #expect(reverted.status == 0, "\(reverted.stdout)\n\(reverted.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin yes\n"))
            #expect(try Self.refusedReverts(s, id).count == 1)
        }
    }
}
