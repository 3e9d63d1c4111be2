@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// A state directory that never applied a revision takes its baseline (what weakenings are
/// compared with, where signature checks start) from the newest applied record on the audit
/// branch. It reads a few commits first and more only when those hold no applied record.
@Suite struct LastAppliedTests {
    let applied = "1111111111111111111111111111111111111111"

    func record(_ n: Int, _ decision: Decision, desired: String = "2222222222222222222222222222222222222222") -> AuditRecord {
        var record = PolicyRepositoryTests().record(String(format: "01LASTAPPLIED%013d", n))
        record.decision = decision
        record.result = decision == .applied ? .verified : nil
        record.desiredCommit = Revision(desired)
        return record
    }

    /// Pushes an applied record naming `applied`, then `after` records of other decisions on top;
    /// returns what a new state directory takes as its baseline.
    func baseline(in dir: String, after: Int) async throws -> Provenance.LastApplied? {
        let s = try Scenario(in: dir)
        do {
            let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
            _ = try await repo.sync()
            _ = try await repo.write(record(0, .applied, desired: applied))
            for n in 0..<after { _ = try await repo.write(record(n + 1, n.isMultiple(of: 2) ? .held : .reported)) }
            #expect(try await repo.publish() == .pushed(commits: after + 1))
        }
        let fresh = dir + "/fresh-state"
        let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: fresh))
        _ = try await repo.sync()
        return await Provenance.lastApplied(repository: repo, stateDirectory: fresh)
    }

    @Test func theNewestAppliedRecordIsFoundWhenItIsTheNewestCommit() async throws {
        try await withTemporaryDirectory { dir in
            let found = try #require(try await baseline(in: dir, after: 0))
            #expect(found.id?.hex == applied && found.fromAuditBranch)
        }
    }

    @Test(arguments: [1, 5, 31, 32, 40, 499])
    func anAppliedRecordBehindOthersIsStillFound(after: Int) async throws {
        try await withTemporaryDirectory { dir in
            let found = try #require(try await baseline(in: dir, after: after))
            #expect(found.id?.hex == applied && found.fromAuditBranch)
        }
    }

    /// Commits pushed over the last applied record do not hide it: the search goes on past 500.
    @Test(arguments: [500, 1100])
    func anAppliedRecordBehindMoreThan500OthersIsFound(after: Int) async throws {
        try await withTemporaryDirectory { dir in
            let found = try #require(try await baseline(in: dir, after: after))
            #expect(found.id?.hex == applied && found.fromAuditBranch)
        }
    }

    @Test func theStateDirectorysOwnFileComesFirst() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state))
            _ = try await repo.sync()
            _ = try await repo.write(record(0, .applied, desired: applied))
            _ = try await repo.publish()
            let own = "3333333333333333333333333333333333333333"
            try (own + "\n").write(toFile: Provenance.baselineFile(s.state), atomically: true, encoding: .utf8)
            let found = try #require(await Provenance.lastApplied(repository: repo, stateDirectory: s.state))
            #expect(found.id?.hex == own && !found.fromAuditBranch)
        }
    }

    /// An ed25519 key made by ssh-keygen: the signer Bulwark reads, and its allowed_signers line.
    func key(_ dir: String, _ principal: String) throws -> (signer: SSHSigningKey, line: String) {
        let path = dir + "/key-\(principal)"
        let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", path])
        guard made.status == 0 else { throw SupportError("ssh-keygen failed: \(made.stderr)") }
        let fields = try read(path + ".pub").split(separator: " ")
        return (try SSHSigningKey(openSSH: read(path)), "\(principal) namespaces=\"git\" \(fields[0]) \(fields[1])\n")
    }

    /// Bulwark (signing key `own`) records an applied revision; then another writer, who can push
    /// to the origin (signing with `other`'s key, or not at all), records a newer one naming
    /// another revision. Returns the baseline a new state directory takes, with `own` as its
    /// signing key when `readerSigns`, and the trusted signers file listing `trustedSigners`.
    func baselineAfterAnotherWriter(in dir: String, otherSigns: Bool, readerSigns: Bool = true, trustedSigners: [String]?) async throws
        -> (found: Provenance.LastApplied?, forged: String) {
        let s = try Scenario(in: dir)
        let own = try key(dir, "bulwark")
        let other = try key(dir, "mallory")
        let forged = "4444444444444444444444444444444444444444"
        let bulwark = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state, signer: own.signer))
        _ = try await bulwark.sync()
        _ = try await bulwark.write(record(0, .applied, desired: applied))
        #expect(try await bulwark.publish() == .pushed(commits: 1))
        let writer = try PolicyRepository(.init(url: s.origin, stateDirectory: dir + "/mallory-state",
                                                signer: otherSigns ? other.signer : nil))
        _ = try await writer.sync()
        _ = try await writer.write(record(1, .applied, desired: forged))
        #expect(try await writer.publish() == .pushed(commits: 1))

        let fresh = dir + "/fresh-state"
        let repo = try PolicyRepository(.init(url: s.origin, stateDirectory: fresh, signer: readerSigns ? own.signer : nil))
        _ = try await repo.sync()
        var verification: SourceVerification?
        if let trustedSigners {
            let file = dir + "/allowed_signers"
            try write(file, trustedSigners.map { $0 == "mallory" ? other.line : own.line }.joined())
            verification = SourceVerification(allowedSigners: file, trustedKeyring: nil, trustPolicy: nil)
        }
        return (await Provenance.lastApplied(repository: repo, stateDirectory: fresh, verification: verification), forged)
    }

    @Test(arguments: [false, true])
    func aRecordNoTrustedKeySignedIsNotTheBaseline(otherSigns: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let (found, _) = try await baselineAfterAnotherWriter(in: dir, otherSigns: otherSigns, trustedSigners: nil)
            let baseline = try #require(found)
            #expect(baseline.id?.hex == applied && baseline.fromAuditBranch)
            #expect(baseline.untrusted.count == 1)
            #expect(baseline.untrusted.first?.contains(otherSigns ? "not signed by this Bulwark's signing key" : "is not signed") == true)
        }
    }

    /// With a signing key, only that key's records count, even one a trusted signer of the policy signed.
    @Test func aRecordATrustedPolicySignerSignedIsNotTheBaselineOfABulwarkWithASigningKey() async throws {
        try await withTemporaryDirectory { dir in
            let (found, _) = try await baselineAfterAnotherWriter(in: dir, otherSigns: true, trustedSigners: ["mallory", "bulwark"])
            let baseline = try #require(found)
            #expect(baseline.id?.hex == applied && baseline.untrusted.count == 1)
            #expect(baseline.untrusted.first?.contains("not signed by this Bulwark's signing key") == true)
        }
    }

    /// Another Bulwark of the fleet (a replica, an agent) signs with its own key: listed in
    /// --audit-signers, its record is the baseline of a new state directory; not listed, it is
    /// not, and the warning says where to list it.
    @Test(arguments: [true, false])
    func anotherBulwarksRecordIsTheBaselineWhenItsKeyIsAnAuditSigner(listed: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let replica = try key(dir, "replica-a")
            let own = try key(dir, "replica-b")
            let a = try PolicyRepository(.init(url: s.origin, stateDirectory: s.state, signer: replica.signer))
            _ = try await a.sync()
            _ = try await a.write(record(0, .applied, desired: applied))
            #expect(try await a.publish() == .pushed(commits: 1))
            let fresh = dir + "/fresh-state"
            var configuration = PolicyRepository.Configuration(url: s.origin, stateDirectory: fresh, signer: own.signer)
            if listed {
                configuration.auditSigners = dir + "/audit_signers"
                try write(dir + "/audit_signers", replica.line)
            }
            let b = try PolicyRepository(configuration)
            _ = try await b.sync()
            let found = try #require(await Provenance.lastApplied(repository: b, stateDirectory: fresh))
            if listed {
                #expect(found.id?.hex == applied && found.untrusted.isEmpty)
            } else {
                #expect(found.id == nil)
                #expect(found.untrusted.first?.contains("list the other Bulwarks' keys in --audit-signers") == true, "\(found.untrusted)")
            }
        }
    }

    /// Without one, a key the trusted signers file lists is what can be checked.
    @Test func withoutASigningKeyARecordATrustedSignerSignedIsTheBaseline() async throws {
        try await withTemporaryDirectory { dir in
            let (found, forged) = try await baselineAfterAnotherWriter(in: dir, otherSigns: true, readerSigns: false,
                                                                       trustedSigners: ["mallory"])
            let baseline = try #require(found)
            #expect(baseline.id?.hex == forged && baseline.untrusted.isEmpty)
        }
    }

    @Test func withoutASigningKeyARecordSignedByAKeyTheTrustedSignersDoNotListIsNotTheBaseline() async throws {
        try await withTemporaryDirectory { dir in
            let (found, _) = try await baselineAfterAnotherWriter(in: dir, otherSigns: true, readerSigns: false,
                                                                  trustedSigners: ["bulwark"])
            let baseline = try #require(found)
            #expect(baseline.id?.hex == applied && baseline.untrusted.count == 1)
            #expect(baseline.untrusted.first?.contains("not in the trusted signers file") == true)
        }
    }

    /// With nothing to check against, every record counts, as before.
    @Test func withNoKeyAtAllTheNewestAppliedRecordIsTheBaseline() async throws {
        try await withTemporaryDirectory { dir in
            let (found, forged) = try await baselineAfterAnotherWriter(in: dir, otherSigns: false, readerSigns: false, trustedSigners: nil)
            let baseline = try #require(found)
            #expect(baseline.id?.hex == forged && baseline.untrusted.isEmpty)
        }
    }
}
