@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Someone who can push to the origin, the audit branch included, but does not hold Bulwark's
/// signing key, puts made-up records on the audit branch: a commit naming this Bulwark's
/// instance with any sequence number, a record with an id Bulwark computes (a held drift, the
/// fix made under an approval). With a signing key they are passed over, with a warning, and
/// Bulwark's own records are still found, so nothing is written twice.
@Suite struct ForgedRecordTests {
    static let resource = "SSHDConfig/cis-5.1.20-permit-root-login"

    /// An unsigned commit carrying `trailers` (signed with the SSH key at `signingKey` if given),
    /// pushed to the origin's audit branch (made when there is none yet), as `forge.py` of the
    /// review does; returns its id.
    /// `signingProgram`: git's `gpg.ssh.program`, for a signature written otherwise than ssh-keygen writes it.
    static func forge(_ s: Scenario, subject: String, trailers: [(String, String)], signingKey: String? = nil,
                      signingProgram: String? = nil) throws -> String {
        let work = s.dir + "/forger-\(UUID().uuidString.prefix(8))"
        try git("clone", "-q", s.origin, work)
        let exists = try git("ls-remote", s.origin, "refs/heads/bulwark/audit", in: work)
        if exists.isEmpty {
            try git("checkout", "-q", "--orphan", "forged", in: work)
            try git("rm", "-rfq", ".", in: work)
        } else {
            try git("checkout", "-q", "-b", "forged", "origin/bulwark/audit", in: work)
        }
        let message = subject + "\n\n" + trailers.map { "\($0.0): \($0.1)" }.joined(separator: "\n") + "\n"
        let signing = signingKey.map { ["-c", "gpg.format=ssh", "-c", "user.signingkey=\($0)", "-c", "commit.gpgsign=true"] }
            .map { signed in signingProgram.map { signed + ["-c", "gpg.ssh.program=\($0)"] } ?? signed }
            ?? ["-c", "commit.gpgsign=false"]
        try git(["-c", "user.name=Bulwark", "-c", "user.email=bulwark@localhost"] + signing
                + ["commit", "-q", "--allow-empty", "-m", message], in: work)
        try git("push", "-q", "origin", "HEAD:refs/heads/bulwark/audit", in: work)
        return try git("rev-parse", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// This scenario's instance name, as its records carry it (public to whoever reads the branch).
    static func instance(_ s: Scenario) throws -> String {
        try #require(try s.trailers("Bulwark-Instance").first)
    }

    /// Root login back on: the drift the policy fixes.
    static func drift(_ s: Scenario) throws {
        let path = s.host + "/etc/ssh/sshd_config"
        try write(path, try read(path).replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n"), mode: 0o600)
    }

    static func rootLoginOff(_ s: Scenario) throws -> Bool {
        try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n")
    }

    /// The sequence numbers of the records `instance` wrote that the key `allowed` lists signed
    /// (the forged ones are unsigned), newest first.
    static func signedNumbers(_ s: Scenario, instance: String, allowed: String) throws -> [UInt64] {
        let format = "--format=%G?|%(trailers:key=Bulwark-Instance,valueonly,separator=)|"
            + "%(trailers:key=Bulwark-Sequence,valueonly,separator=)"
        let log = try git("--git-dir", s.origin, "-c", "gpg.ssh.allowedSignersFile=\(allowed)", "log", format, "bulwark/audit")
        let rows: [[String]] = log.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        return rows.filter { $0.count == 3 && $0[0] == "G" && $0[1] == instance }.compactMap { UInt64($0[2]) }
    }

    /// Removes the last sequence number from the state's trail file, as a file written before it was kept.
    static func forgetSequence(_ s: Scenario) throws {
        let path = s.state + "/" + AuditTrail.fileName
        var trail = try JSONDecoder().decode(AuditTrail.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(trail.sequence != nil, "the trail keeps the last number")
        trail.sequence = nil
        try trail.save(stateDirectory: s.state)
    }

    /// A scenario applied once with a signing key, the key, and the options that name it.
    static func signedScenario(_ dir: String) throws -> (Scenario, AuditTrailTests.Key, [String]) {
        let s = try Scenario(in: dir)
        let key = try AuditTrailTests().makeKey(dir)
        let signed = ["--secrets-dir", key.secrets, "--signing-key", key.path]
        let first = try s.run("apply", signed[0], signed[1], signed[2], signed[3])
        #expect(first.status == 0, "\(first.stderr)")
        return (s, key, signed)
    }

    // MARK: - The report

    /// An unsigned record of root login fixed a millisecond after `detected`: what someone with
    /// push access would write to improve the figures.
    static func forgeFastFix(_ s: Scenario, id: String, at detected: Date, signingKey: String? = nil,
                             signingProgram: String? = nil) throws {
        _ = try forge(s, subject: "remediate(\(resource)): local PermitRootLogin yes -> no",
                      trailers: [("Bulwark-Id", id), ("Bulwark-Controller", "host-hardening"), ("Bulwark-Target", "local"),
                                 ("Bulwark-Resource", resource), ("Bulwark-Severity", "high"), ("Bulwark-Mode", "enforce"),
                                 ("Bulwark-Decision", "applied"), ("Bulwark-Result", "verified"),
                                 ("Bulwark-Desired-Commit", String(repeating: "0", count: 40)),
                                 ("Bulwark-Detected-At", Timestamp.format(detected)),
                                 ("Bulwark-Verified-At", Timestamp.format(detected.addingTimeInterval(0.001)))],
                  signingKey: signingKey, signingProgram: signingProgram)
    }

    /// A forged record of a fix verified a millisecond after its detection, pushed by someone
    /// without the signing key: with the key, `report` leaves it out of MTTR and the counts and
    /// says so; Bulwark's own signed records are all counted. Without a key every record counts
    /// (nothing to check against), as before.
    @Test func theReportLeavesOutRecordsNoTrustedKeySigned() async throws {
        try await withTemporaryDirectory { dir in
            let (s, _, signed) = try Self.signedScenario(dir)
            let own = try s.auditCommits().count
            try Self.forgeFastFix(s, id: "01FQRGEDFASTF1X00000000000", at: Date(timeIntervalSince1970: 1_796_119_200))
            let checked = try s.run("report", "--output", "json", signed[0], signed[1], signed[2], signed[3])
            #expect(checked.status == 0, "\(checked.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(checked.stdout.utf8)) as? [String: Any])
            #expect(report["records"] as? Int == own, "\(report)")
            #expect(report["untrustedRecords"] as? Int == 1, "\(report)")
            let text = try s.run("report", signed[0], signed[1], signed[2], signed[3])
            #expect(text.stdout.contains("Left out: 1 record no trusted key signed"), "\(text.stdout)")
            // Without a key there is nothing to check against: every record counts.
            let unchecked = try s.run("report", "--output", "json")
            let all = try #require(try JSONSerialization.jsonObject(with: Data(unchecked.stdout.utf8)) as? [String: Any])
            #expect(all["records"] as? Int == own + 1, "\(all)")
            #expect(all["untrustedRecords"] == nil)
        }
    }

    /// `log` with the signing key marks the forged record UNTRUSTED (text and JSON) and says how
    /// many are; Bulwark's own signed records are not marked. Without a key nothing is marked.
    @Test func logMarksRecordsNoTrustedKeySigned() async throws {
        try await withTemporaryDirectory { dir in
            let (s, _, signed) = try Self.signedScenario(dir)
            let own = try s.auditCommits().count
            try Self.forgeFastFix(s, id: "01FQRGEDFASTF1X00000000000", at: Date(timeIntervalSince1970: 1_796_119_200))
            let text = try s.run("log", signed[0], signed[1], signed[2], signed[3])
            #expect(text.status == 0, "\(text.stderr)")
            let lines = text.stdout.split(separator: "\n")
            #expect(lines.filter { $0.contains("UNTRUSTED") }.count == 1, "\(text.stdout)")
            #expect(lines.filter { !$0.contains("UNTRUSTED") }.count == own, "\(text.stdout)")
            #expect(text.stderr.contains("1 record is marked UNTRUSTED"), "\(text.stderr)")
            let json = try s.run("log", "--output", "json", signed[0], signed[1], signed[2], signed[3])
            let entries = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
            #expect(entries.filter { $0["untrusted"] as? Bool == true }.map { $0["id"] as? String } == ["01FQRGEDFASTF1X00000000000"])
            #expect(entries.filter { $0["untrusted"] as? Bool == false }.count == own)
            let unchecked = try s.run("log")
            #expect(!unchecked.stdout.contains("UNTRUSTED") && !unchecked.stderr.contains("UNTRUSTED"), "\(unchecked.stdout)")
        }
    }

    /// `report --output json` with the signing key and `audit_signers` in `dir`, and how many
    /// `ssh-keygen -Y find-principals` it ran (counted by a wrapper first on its PATH).
    static func reportCountingLookups(_ s: Scenario, _ signed: [String], dir: String) throws -> (report: [String: Any], lookups: Int) {
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try write(dir + "/bin/ssh-keygen", "#!/bin/sh\necho \"$2\" >> \(dir)/keygen.log\nexec /usr/bin/ssh-keygen \"$@\"\n", mode: 0o755)
        let checked = try s.run("report", "--output", "json", signed[0], signed[1], signed[2], signed[3],
                                "--audit-signers", dir + "/audit_signers", environment: ["PATH": dir + "/bin:/usr/bin:/bin"])
        #expect(checked.status == 0, "\(checked.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(checked.stdout.utf8)) as? [String: Any])
        let runs = ((try? read(dir + "/keygen.log")) ?? "").split(separator: "\n")
        return (report, runs.filter { $0 == "find-principals" }.count)
    }

    /// Commits signed by a key no trusted file lists (anyone with push access can make a key and
    /// sign thousands) are left out of the report without an ssh-keygen process each: each key is
    /// looked up once (`ListedKeys`), and a listed key's record is still checked and counted.
    @Test func recordsSignedByAnUnlistedKeyCostNoSshKeygenRun() async throws {
        try await withTemporaryDirectory { dir in
            let (s, _, signed) = try Self.signedScenario(dir)
            let own = try s.auditCommits().count
            let replica = try LastAppliedTests().key(dir, "replica")
            try write(dir + "/audit_signers", replica.line)
            _ = try LastAppliedTests().key(dir, "stranger")
            let detected = Date(timeIntervalSince1970: 1_796_119_200)
            for index in 0..<5 {
                try Self.forgeFastFix(s, id: "01FQRGEDFASTF1X0000000000\(index)", at: detected, signingKey: dir + "/key-stranger")
            }
            try Self.forgeFastFix(s, id: "01REPL1CAFASTF1X0000000000", at: detected, signingKey: dir + "/key-replica")
            let (report, lookups) = try Self.reportCountingLookups(s, signed, dir: dir)
            #expect(report["records"] as? Int == own + 1, "the replica's record counts: \(report)")
            #expect(report["untrustedRecords"] as? Int == 5, "\(report)")
            // One lookup of each key (the stranger's twice: now and a minute on), and one of the
            // replica's signature: 4, whatever the number of forged commits (6 before, one per commit).
            #expect(lookups == 4, "ssh-keygen find-principals runs: \(lookups)")
        }
    }

    /// Review (L1, session 38): commits carrying a listed key's signature copied from another
    /// commit each cost an `ssh-keygen -Y verify` (30,000 of them: `report` 39.5 s). An ed25519
    /// signature that is not over its commit is refused by the arithmetic, without a process; the
    /// replica's own record is still verified by ssh-keygen and counted.
    @Test func copiedSignaturesOfAListedKeyCostNoSshKeygenRun() async throws {
        try await withTemporaryDirectory { dir in
            let (s, _, signed) = try Self.signedScenario(dir)
            let own = try s.auditCommits().count
            let replica = try LastAppliedTests().key(dir, "replica")
            try write(dir + "/audit_signers", replica.line)
            // git's gpg.ssh.program: signs other bytes with the replica's key, as a copied signature is.
            try write(dir + "/copy-sign", """
                #!/bin/sh
                for last; do :; done
                printf 'another commit' > "$last.other"
                /usr/bin/ssh-keygen -Y sign -n git -f \(dir)/key-replica "$last.other" >/dev/null 2>&1 || exit 1
                mv "$last.other.sig" "$last.sig"

                """, mode: 0o755)
            let detected = Date(timeIntervalSince1970: 1_796_119_200)
            for index in 0..<5 {
                try Self.forgeFastFix(s, id: "01C0P1EDS1GNATURE00000000\(index)", at: detected, signingKey: dir + "/key-replica",
                                      signingProgram: dir + "/copy-sign")
            }
            try Self.forgeFastFix(s, id: "01REPL1CAFASTF1X0000000000", at: detected, signingKey: dir + "/key-replica")
            let (report, _) = try Self.reportCountingLookups(s, signed, dir: dir)
            #expect(report["records"] as? Int == own + 1, "the replica's record counts: \(report)")
            #expect(report["untrustedRecords"] as? Int == 5, "\(report)")
            let verifies = ((try? read(dir + "/keygen.log")) ?? "").split(separator: "\n").filter { $0 == "verify" }.count
            #expect(verifies == 1, "ssh-keygen -Y verify runs: \(verifies)")
        }
    }

    /// Signatures Bulwark cannot read go to ssh-keygen, the judge of what it accepts, at most 16 a
    /// minute: a replica's record whose armor only ssh-keygen reads (its base64 on one line, with
    /// spaces) still counts, and 24 commits signed with garbage cost 16 runs, not 24.
    @Test func unreadableSignaturesCostAtMostSixteenSshKeygenRunsAMinute() async throws {
        try await withTemporaryDirectory { dir in
            let (s, _, signed) = try Self.signedScenario(dir)
            let own = try s.auditCommits().count
            let replica = try LastAppliedTests().key(dir, "replica")
            try write(dir + "/audit_signers", replica.line)
            let detected = Date(timeIntervalSince1970: 1_796_119_200)
            // git signs through these: ssh-keygen's signature, then rewritten.
            let sign = "#!/bin/sh\n/usr/bin/ssh-keygen \"$@\" || exit 1\nfor last; do :; done\n"
            try write(dir + "/spaced-sign", sign + "{ head -n1 \"$last.sig\"; sed '1d;$d' \"$last.sig\" | paste -sd' '; tail -n1 \"$last.sig\"; } "
                      + "> \"$last.sig.new\" && mv \"$last.sig.new\" \"$last.sig\"\n", mode: 0o755)
            try write(dir + "/garbage-sign", sign + "printf -- '-----BEGIN SSH SIGNATURE-----\\n%s\\n-----END SSH SIGNATURE-----\\n' "
                      + "\"$(head -c 90 /dev/urandom | base64 -w0)\" > \"$last.sig\"\n", mode: 0o755)
            try Self.forgeFastFix(s, id: "01REPL1CASPACEDF1X00000000", at: detected, signingKey: dir + "/key-replica",
                                  signingProgram: dir + "/spaced-sign")
            let spaced = try git("--git-dir", s.origin, "cat-file", "commit", "bulwark/audit")
            #expect(spaced.split(separator: "\n").contains { $0.hasPrefix(" U1NIU0lH") && $0.count > 140 && $0.contains("= ") == false }, "\(spaced)")
            for index in 0..<24 {
                try Self.forgeFastFix(s, id: "01GARBAGEFASTF1X0000000\(index + 10)", at: detected, signingKey: dir + "/key-replica",
                                      signingProgram: dir + "/garbage-sign")
            }
            let (report, lookups) = try Self.reportCountingLookups(s, signed, dir: dir)
            #expect(report["untrustedRecords"] as? Int ?? 0 >= 24, "\(report)")
            // 16 unreadable signatures looked up (the spaced one among them or not), whatever their number.
            #expect(lookups == 16, "ssh-keygen find-principals runs: \(lookups)")

            // Alone, the record whose armor only ssh-keygen reads is the replica's, and counts.
            try git("--git-dir", s.origin, "update-ref", "refs/heads/bulwark/audit", "bulwark/audit~24")
            let alone = try s.run("report", "--output", "json", signed[0], signed[1], signed[2], signed[3],
                                  "--audit-signers", dir + "/audit_signers")
            let counted = try #require(try JSONSerialization.jsonObject(with: Data(alone.stdout.utf8)) as? [String: Any])
            #expect(counted["records"] as? Int == own + 1, "\(counted)")
            #expect(counted["untrustedRecords"] == nil || counted["untrustedRecords"] as? Int == 0, "\(counted)")
        }
    }

    /// The same forged fast fixes do not reach the daemon's MTTR (its status page, `/metrics`)
    /// nor its change budget when it has the signing key: it leaves them out and says so. Its
    /// own signed records all count.
    @Test func theDaemonsMTTRLeavesOutRecordsNoTrustedKeySigned() async throws {
        try await withTemporaryDirectory { dir in
            let (s, _, signed) = try Self.signedScenario(dir)
            let fixes = try s.trailers("Bulwark-Result").filter { $0 == "verified" }.count
            let now = Date()
            for index in 0..<3 { try Self.forgeFastFix(s, id: "01FQRGEDFASTD\(index)X0000000000000", at: now) }
            let daemon = try DaemonTests().start(s, signed)
            defer { _ = daemon.terminate() }
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            let status = try DaemonTests().status(daemon)
            let day = try #require(status["mttrLastDay"] as? [String: Any], "\(status)")
            #expect(day["fixes"] as? Int == fixes, "\(day), \(fixes) signed fixes")
            #expect(daemon.log.contains("left out of MTTR"), "\(daemon.log)")
        }
    }

    // MARK: - Sequence numbers

    /// A forged `Bulwark-Sequence` of 2^64-1 naming this instance made `+ 1` trap on every run
    /// after the fix was made, and `x` stopped every record. The number now comes from the
    /// state: the forged commits are passed over, and Bulwark's own numbers go on 1, 2, 3 ….
    @Test(arguments: [false, true])
    func aForgedSequenceNumberNamingThisBulwarkIsPassedOver(fromOldTrailFile: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let (s, key, signed) = try Self.signedScenario(dir)
            let instance = try Self.instance(s)
            let before = try Self.signedNumbers(s, instance: instance, allowed: key.allowed)
            #expect(before == Array((1...UInt64(before.count)).reversed()))
            // A trail file from before the number was kept: it is read from the branch, once.
            if fromOldTrailFile { try Self.forgetSequence(s) }
            _ = try Self.forge(s, subject: "reported(\(Self.resource)): local",
                               trailers: [("Bulwark-Id", "01FQRGEDSEQX00000000000000"), ("Bulwark-Decision", "reported"),
                                          ("Bulwark-Instance", instance), ("Bulwark-Sequence", "x")])
            let forged = try Self.forge(s, subject: "reported(\(Self.resource)): local",
                                        trailers: [("Bulwark-Id", "01FQRGEDSEQMAX0000000000000"), ("Bulwark-Decision", "reported"),
                                                   ("Bulwark-Instance", instance), ("Bulwark-Sequence", "18446744073709551615")])
            try Self.drift(s)
            for run in 1...2 {
                let applied = try s.run("apply", signed[0], signed[1], signed[2], signed[3])
                #expect(applied.status == 0, "apply \(run): \(applied.stdout)\n\(applied.stderr)")
                if run == 1 {
                    #expect(applied.stderr.contains("audit commit \(forged.prefix(12)) names this Bulwark (\(instance))"), "\(applied.stderr)")
                    #expect(applied.stderr.contains("it is not this Bulwark's, passed over"), "\(applied.stderr)")
                }
            }
            #expect(try Self.rootLoginOff(s))
            let after = try Self.signedNumbers(s, instance: instance, allowed: key.allowed)
            #expect(after.count > before.count)
            #expect(after == Array((1...UInt64(after.count)).reversed()), "numbered on from Bulwark's own last record, no gap")
            let trail = try JSONDecoder().decode(AuditTrail.self, from: Data(contentsOf: URL(fileURLWithPath: s.state + "/" + AuditTrail.fileName)))
            #expect(trail.sequence == after.first)
        }
    }

    /// A process stopped between moving the audit branch and saving its last number: the state
    /// says less than the branch holds. The records after it, this instance's own, are counted,
    /// so no number is used twice.
    @Test func recordsCommittedAfterTheStateWasSavedAreCounted() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let own = try LastAppliedTests().key(dir, "bulwark")
            let record = { (n: Int) in PolicyRepositoryTests().record(String(format: "01SEQAFTERSAVE%012d", n)) }
            do {
                let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state, signer: own.signer))
                _ = try await repo.sync()
                for n in 1...3 { _ = try await repo.write(record(n)) }
                #expect(try await repo.publish() == .pushed(commits: 3))
            }
            var trail = try AuditTrail.load(stateDirectory: s.state).trail
            #expect(trail.sequence == 3)
            trail.sequence = 1
            try trail.save(stateDirectory: s.state)
            let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state, signer: own.signer))
            _ = try await repo.sync()
            _ = try await repo.write(record(4))
            #expect(try s.trailers("Bulwark-Sequence").count == 3, "not pushed yet")
            #expect(try await repo.publish() == .pushed(commits: 1))
            #expect(try s.trailers("Bulwark-Sequence") == ["4", "3", "2", "1"])
            #expect(try AuditTrail.load(stateDirectory: s.state).trail.sequence == 4)
        }
    }

    /// Without a signing key nothing tells a forged number from Bulwark's own. One read from the
    /// branch (a trail file without the number) that leaves no next number is an error naming
    /// the commit, never a trap, and it comes before the pass changes anything: no fix is made
    /// without its record.
    @Test func aNumberThatLeavesNoNextOneStopsThePassBeforeAnyFix() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let instance = try Self.instance(s)
            try Self.forgetSequence(s)
            let forged = try Self.forge(s, subject: "reported(\(Self.resource)): local",
                                        trailers: [("Bulwark-Id", "01FQRGEDSEQMAX0000000000000"), ("Bulwark-Decision", "reported"),
                                                   ("Bulwark-Instance", instance), ("Bulwark-Sequence", "18446744073709551615")])
            try Self.drift(s)
            let host = try s.snapshot()
            let audit = try s.auditCommits()
            let refused = try s.run("apply")
            let said = refused.stdout + refused.stderr
            #expect(refused.status == 1, "an error, not a trap: \(said)")
            #expect(said.contains("audit commit \(forged.prefix(12))"), "\(said)")
            #expect(said.contains("leaves no number"), "\(said)")
            #expect(said.contains("no fix is made without its record"), "\(said)")
            #expect(try s.snapshot() == host, "nothing was changed")
            #expect(try s.auditCommits() == audit)
        }
    }

    // MARK: - Record ids

    /// The id of the held record of root login, as `plan` shows it (nothing is recorded by a plan).
    static func heldID(_ s: Scenario) throws -> String {
        let plan = try s.run("plan")
        let line = try #require(plan.stdout.split(separator: "\n").first {
            $0.contains("cis-5.1.20-permit-root-login") && $0.contains("bulwark approve ")
        }, "\(plan.stdout)")
        let id = try #require(line.components(separatedBy: "bulwark approve ").last?.prefix(26))
        return String(id)
    }

    /// A made-up record carrying the id of a held drift hid Bulwark's own held record: nobody was
    /// asked to approve. With a signing key, Bulwark writes its own (once) and names the forged commit.
    @Test func aForgedRecordWithTheHeldIdDoesNotHideTheHeldRecord() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            let signed = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            let id = try Self.heldID(s)
            let forged = try Self.forge(s, subject: "reported(\(Self.resource)): local",
                                        trailers: [("Bulwark-Id", id), ("Bulwark-Resource", Self.resource), ("Bulwark-Decision", "reported")])
            let applied = try s.run("apply", signed[0], signed[1], signed[2], signed[3])
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(applied.stderr.contains("the audit record \(id) of commit \(forged.prefix(12)) is not taken as recorded"), "\(applied.stderr)")
            func carrying() throws -> [String] {
                try git("--git-dir", s.origin, "-c", "gpg.ssh.allowedSignersFile=\(key.allowed)", "log",
                        "--format=%G?|%(trailers:key=Bulwark-Decision,valueonly,separator=)",
                        "--grep=Bulwark-Id: \(id)", "bulwark/audit").split(separator: "\n").map(String.init)
            }
            #expect(try carrying() == ["G|held", "N|reported"])
            // Bulwark's own held record is found from now on: not written again.
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).status == 0)
            #expect(try carrying().count == 2)
        }
    }

    /// A made-up record with the id of the fix made under an approval made the approval look
    /// used, and the fix was never made. With a signing key the fix goes through, once.
    @Test func aForgedRecordOfTheApprovedFixDoesNotUseTheApproval() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            let signed = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).status == 0)
            let id = try #require(try SafetyEndToEndTests().decisions(s, resource: Self.resource).first { $0.decision == "held" }?.id)
            #expect(try SafetyEndToEndTests().approve(s, id, as: "Sam Security", "sam@example.org").status == 0)
            let forged = try Self.forge(s, subject: "applied(\(Self.resource)): local",
                                        trailers: [("Bulwark-Id", AuditID.approved(id)), ("Bulwark-Resource", Self.resource),
                                                   ("Bulwark-Decision", "applied"), ("Bulwark-Result", "verified"),
                                                   ("Bulwark-Approved-By", "Sam Security <sam@example.org>")])
            let applied = try s.run("apply", signed[0], signed[1], signed[2], signed[3])
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(applied.stderr.contains("commit \(forged.prefix(12)) is not taken as recorded"), "\(applied.stderr)")
            #expect(try Self.rootLoginOff(s), "the approved fix was made")
            let fix = try #require(try SafetyEndToEndTests().decisions(s, resource: Self.resource).first)
            #expect(fix.decision == "applied" && fix.id == AuditID.approved(id) && fix.approver == "Sam Security <sam@example.org>")
            // Bulwark's own record of it uses the approval: the same drift again waits for another.
            try Self.drift(s)
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).status == 0)
            #expect(try !Self.rootLoginOff(s))
            // Held again under a new id (the episode's next, `Planner.episode`): the used one never comes back.
            let again = try s.run("plan").stdout
            #expect(again.contains("waiting for approval: bulwark approve ") && !again.contains("bulwark approve \(id)"), "\(again)")
        }
    }

    /// Without a signing key or audit signers, a made-up record of the fix made under an approval
    /// (anyone who can push to the audit branch can write one, for every held id) made the
    /// approval look used: `approve` refused it and `apply` never fixed the drift. The record
    /// counts only when the policy revision it names is on the policy branch and holds the
    /// approval file: a forged one is passed over, naming its commit (even when it names a
    /// commit of its own holding approvals/ID.yaml); Bulwark's own record of the fix still uses
    /// the approval, and approving it again is refused and recorded.
    @Test func withoutKeysAForgedRecordOfTheApprovedFixDoesNotUseTheApproval() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let id = try #require(try SafetyEndToEndTests().decisions(s, resource: Self.resource).first { $0.decision == "held" }?.id)
            // The forger's "policy revision": a commit of the audit branch's own history holding
            // approvals/ID.yaml, which the record names; and one naming the policy branch's head.
            let work = dir + "/forger-revision"
            try git("clone", "-q", s.origin, work)
            try git("checkout", "-q", "-b", "forged", "origin/bulwark/audit", in: work)
            try write(work + "/approvals/\(id).yaml", "kind: Approval\n")
            try git("add", "approvals", in: work)
            try git("-c", "user.name=Bulwark", "-c", "user.email=bulwark@localhost", "-c", "commit.gpgsign=false",
                    "commit", "-q", "-m", "a policy of my own", in: work)
            let fake = try git("rev-parse", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            try git("rm", "-rq", "approvals", in: work)
            try git("-c", "user.name=Bulwark", "-c", "user.email=bulwark@localhost", "-c", "commit.gpgsign=false",
                    "commit", "-q", "-m", "applied(\(Self.resource)): local\n\nBulwark-Id: \(AuditID.approved(id))\n"
                    + "Bulwark-Resource: \(Self.resource)\nBulwark-Decision: applied\nBulwark-Result: verified\n"
                    + "Bulwark-Desired-Commit: \(fake)\nBulwark-Approved-By: Sam Security <sam@example.org>\n", in: work)
            try git("push", "-q", "origin", "HEAD:refs/heads/bulwark/audit", in: work)
            let first = try git("rev-parse", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            let head = try git("--git-dir", s.origin, "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines)
            let second = try Self.forge(s, subject: "applied(\(Self.resource)): local",
                                        trailers: [("Bulwark-Id", AuditID.approved(id)), ("Bulwark-Resource", Self.resource),
                                                   ("Bulwark-Decision", "applied"), ("Bulwark-Result", "verified"),
                                                   ("Bulwark-Desired-Commit", head),
                                                   ("Bulwark-Approved-By", "Sam Security <sam@example.org>")])
            let approved = try SafetyEndToEndTests().approve(s, id, as: "Sam Security", "sam@example.org")
            #expect(approved.status == 0, "\(approved.stderr)")
            for forged in [first, second] {
                #expect(approved.stderr.contains("the audit record \(AuditID.approved(id)) of commit \(forged.prefix(12)) is not taken as recorded"),
                        "\(approved.stderr)")
            }
            let applied = try s.run("apply")
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try Self.rootLoginOff(s), "the approved fix was made")
            let fix = try #require(try SafetyEndToEndTests().decisions(s, resource: Self.resource).first)
            #expect(fix.decision == "applied" && fix.id == AuditID.approved(id) && fix.approver == "Sam Security <sam@example.org>")
            // Bulwark's own record of the fix uses the approval: the same drift again is held, and
            // approving the used id again is refused, the refusal recorded on the audit branch.
            try Self.drift(s)
            #expect(try s.run("apply").status == 0)
            #expect(try !Self.rootLoginOff(s))
            let again = try SafetyEndToEndTests().approve(s, id, as: "Sam Security", "sam@example.org")
            #expect(again.status == 1 && again.stderr.contains("a fix already used the approval of \(id)"), "\(again.stderr)")
            #expect(try SafetyEndToEndTests().decisions(s, resource: "Approval/\(id)").map(\.decision) == ["refused"])
            let refusal = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "--grep=Bulwark-Resource: Approval/\(id)", "bulwark/audit")
            #expect(refusal.contains("a fix already used the approval of \(id)"), "\(refusal)")
        }
    }

    /// `approve` took the newest commit carrying the id, whatever pushed it: its resource, target
    /// and reason (the block being approved) are what the approval says. With a signing key, the
    /// newest record Bulwark signed is approved and the forged one is named.
    @Test func approveTakesTheNewestRecordThisBulwarkSigned() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            let signed = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).status == 0)
            let id = try #require(try SafetyEndToEndTests().decisions(s, resource: Self.resource).first { $0.decision == "held" }?.id)
            let forged = try Self.forge(s, subject: "held(SSHDConfig/forged): elsewhere",
                                        trailers: [("Bulwark-Id", id), ("Bulwark-Resource", "SSHDConfig/forged"),
                                                   ("Bulwark-Target", "elsewhere"), ("Bulwark-Decision", "held")])
            let approved = try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state,
                                                             "--reason", "CHG-42"] + signed,
                                   environment: ["GIT_AUTHOR_NAME": "Sam Security", "GIT_AUTHOR_EMAIL": "sam@example.org"])
            #expect(approved.status == 0, "\(approved.stderr)")
            #expect(approved.stderr.contains("a newer commit with the record \(id) is passed over: its commit \(forged.prefix(12)) is not signed"),
                    "\(approved.stderr)")
            let subject = try git("--git-dir", s.origin, "log", "-1", "--format=%s", "main")
            #expect(subject.hasPrefix("approve(\(Self.resource)): "), "\(subject)")
            // And the approval lets Bulwark's own held fix through.
            #expect(try s.run("apply", signed[0], signed[1], signed[2], signed[3]).status == 0)
            #expect(try Self.rootLoginOff(s))
        }
    }

    /// At the seam every caller uses: an id counts when this Bulwark's key or a key of
    /// --audit-signers signed a commit carrying it; an unsigned one does not until Bulwark writes
    /// its own, which a new process finds too. Without either, every id counts, as the README says.
    @Test func anIdCountsWhenThisBulwarkOrAnAuditSignerSignedIt() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let own = try LastAppliedTests().key(dir, "bulwark")
            let replica = try LastAppliedTests().key(dir, "replica")
            try write(dir + "/audit_signers", replica.line)
            let forged = "01FQRGEDRECQRD000000000001"
            let fromReplica = "01REPLICARECQRD00000000001"
            for (id, signer) in [(forged, nil), (fromReplica, replica.signer)] as [(String, SSHSigningKey?)] {
                let writer = try PolicyRepository(.init(url: s.origin, stateDirectory: dir + "/writer-\(id.suffix(4))", signer: signer))
                _ = try await writer.sync()
                _ = try await writer.write(PolicyRepositoryTests().record(id))
                #expect(try await writer.publish() == .pushed(commits: 1))
            }
            var configuration = PolicyRepository.Configuration(url: s.origin, stateDirectory: s.state, signer: own.signer)
            configuration.auditSigners = dir + "/audit_signers"
            do {
                let repo = try PolicyRepository(configuration)
                _ = try await repo.sync()
                #expect(try await repo.contains(recordID: fromReplica))
                #expect(try await !repo.contains(recordID: forged))
                _ = try await repo.write(PolicyRepositoryTests().record(forged))
                #expect(try await repo.contains(recordID: forged))
                _ = try await repo.publish()
            }
            // A new process: the index file says the id is there; the walk finds Bulwark's own commit.
            let again = try PolicyRepository(configuration)
            _ = try await again.sync()
            #expect(try await again.contains(recordID: forged))
            #expect(try await again.contains(recordID: fromReplica))
            #expect(try await !again.contains(recordID: "01NEVERWRITTEN000000000000"))
            // Without a key, nothing can be checked.
            let unchecked = try PolicyRepository(.init(url: s.origin, stateDirectory: dir + "/unchecked"))
            _ = try await unchecked.sync()
            #expect(try await unchecked.contains(recordID: forged))
        }
    }

    /// An approval is used by Bulwark's record of a fix made under it: a signed record with its id
    /// and another decision does not use it.
    @Test func anApprovalIsUsedOnlyByARecordOfAFixMadeUnderIt() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let own = try LastAppliedTests().key(dir, "bulwark")
            let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state, signer: own.signer))
            _ = try await repo.sync()
            var reported = PolicyRepositoryTests().record(AuditID.approved("01APPROVALREPORTED00000000"))
            reported.decision = .reported
            reported.result = nil
            _ = try await repo.write(reported)
            #expect(try await !repo.usedApproval("01APPROVALREPORTED00000000"))
            var applied = PolicyRepositoryTests().record(AuditID.approved("01APPROVALAPPLIED000000000"))
            applied.approver = "Sam Security <sam@example.org>"
            _ = try await repo.write(applied)
            #expect(try await repo.usedApproval("01APPROVALAPPLIED000000000"))
        }
    }
}
