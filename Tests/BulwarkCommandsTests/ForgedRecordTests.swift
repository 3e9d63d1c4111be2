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

    /// An unsigned commit carrying `trailers`, pushed to the origin's audit branch (made when
    /// there is none yet), as `forge.py` of the review does; returns its id.
    static func forge(_ s: Scenario, subject: String, trailers: [(String, String)]) throws -> String {
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
        try git("-c", "user.name=Bulwark", "-c", "user.email=bulwark@localhost", "-c", "commit.gpgsign=false",
                "commit", "-q", "--allow-empty", "-m", message, in: work)
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

    // MARK: - Sequence numbers

    /// A forged `Bulwark-Sequence` of 2^64-1 naming this instance made `+ 1` trap on every run
    /// after the fix was made, and `x` stopped every record. The number now comes from the
    /// state: the forged commits are passed over, and Bulwark's own numbers go on 1, 2, 3 ….
    @Test(arguments: [false, true])
    func aForgedSequenceNumberNamingThisBulwarkIsPassedOver(fromOldTrailFile: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            let signed = ["--secrets-dir", key.secrets, "--signing-key", key.path]
            let first = try s.run("apply", signed[0], signed[1], signed[2], signed[3])
            #expect(first.status == 0, "\(first.stderr)")
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
}
