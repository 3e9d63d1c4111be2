package import BulwarkGit
import Crypto
import Foundation

/// Which audit records a command may act on. Anyone who can push to the origin can write an
/// audit record: the branch takes in the origin's commits, and the fleet's other writers have
/// refs of their own. Where a record decides what Bulwark does (the values `revert` restores,
/// the revision a new state directory compares weakenings with, the fixes the flap breaker
/// counts), it counts only when a key this Bulwark trusts for records signed its commit:
/// - this Bulwark's own signing key (`--signing-key`), checked in this process;
/// - a key of `--audit-signers`, the allowed_signers file of the other Bulwarks that write the
///   branch (replicas, agents), checked by `ssh-keygen` once per key.
/// With either configured, the people of the trusted signers file never count: one of them must
/// not be able to write the record that hides her own weakening. With neither, a key of the
/// trusted signers file or keyring (as peer records are checked, `PeerRecordVerification`), the
/// most that can be checked; with nothing at all, every record counts, as it always did.
package struct RecordTrust: Sendable {
    /// The SSH public key (`string type, string key`) of this process's `--signing-key`.
    package let ownKey: [UInt8]?
    /// `--audit-signers`: the other Bulwarks' keys.
    package let auditSigners: String?
    package let verification: SourceVerification?

    /// Nil when there is nothing to check against: no signing key, no audit or trusted signers, no keyring.
    package init?(ownKey: [UInt8]?, auditSigners: String? = nil, verification: SourceVerification?) {
        let verification = verification.flatMap { $0.allowedSigners != nil || $0.trustedKeyring != nil ? $0 : nil }
        guard ownKey != nil || auditSigners != nil || verification != nil else { return nil }
        self.ownKey = ownKey
        self.auditSigners = auditSigners
        self.verification = verification
    }

    /// Which keys this trust takes records from, as a digest (hex SHA-256 of the signing key and
    /// the audit signers' file as it reads now, or its path when it cannot be read): a state file
    /// built from the records one trust took in (`DriftEpisodeIndex`) is not used under another.
    package var digest: String {
        var bytes = Array("bulwark-record-trust 1\nkey ".utf8) + (ownKey ?? [])
        bytes += Array("\nsigners ".utf8)
        if let auditSigners {
            bytes += (FileManager.default.contents(atPath: auditSigners).map(Array.init) ?? Array("unreadable \(auditSigners)".utf8))
        }
        if let verification {
            bytes += Array("\nverification \(verification.allowedSigners ?? "-") \(verification.trustedKeyring ?? "-")".utf8)
        }
        return SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    /// The trust of `repository`'s audit records: its signing key, its audit signers and `verification`.
    package static func of(_ repository: PolicyRepository, verification: SourceVerification?) async -> RecordTrust? {
        RecordTrust(ownKey: await repository.auditKey, auditSigners: await repository.auditSigners, verification: verification)
    }

    /// `commits` split into those a trusted key signed and the others, for readers that count
    /// records (`report`, the daemon's MTTR and change budget): a record anyone with push access
    /// wrote must not move those figures. Nil when nothing is configured to check against.
    package static func split(_ commits: [CommitInfo], in repository: PolicyRepository,
                              verification: SourceVerification?) async -> (trusted: [CommitInfo], untrusted: [CommitInfo])? {
        guard let trust = await of(repository, verification: verification) else { return nil }
        var trusted: [CommitInfo] = []
        var untrusted: [CommitInfo] = []
        var folder: String?
        var keys: [[UInt8]: String] = [:]
        defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
        for commit in commits {
            // A signature that cannot be read counts as none: the record is left out.
            let signed = try? await repository.signature(of: commit.id)
            if trust.problem(signed, commit: commit.id, folder: &folder, trustedKeys: &keys) == nil {
                trusted.append(commit)
            } else {
                untrusted.append(commit)
            }
        }
        return (trusted, untrusted)
    }

    /// Why the record commit `commit` is not to be acted on, or nil when a trusted key signed it.
    package func problem(with commit: ObjectID, in repository: PolicyRepository) async -> String? {
        let signed: CommitSignature?
        do { signed = try await repository.signature(of: commit) } catch {
            return "the signature of its commit \(commit.short) cannot be read: \(error)"
        }
        var keys: [[UInt8]: String] = [:]
        var folder: String?
        defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
        return problem(signed, commit: commit, folder: &folder, trustedKeys: &keys)
    }

    /// Why `commit`, signed as `signed` (nil: unsigned), is not to be acted on, or nil when a
    /// trusted key signed it. `trustedKeys` remembers ed25519 keys `ssh-keygen` found trusted,
    /// whose later signatures are checked in this process; `folder` is created for ssh-keygen's
    /// files when first needed, and the caller removes it.
    package func problem(_ signed: CommitSignature?, commit: ObjectID, folder: inout String?,
                         trustedKeys: inout [[UInt8]: String]) -> String? {
        guard let signed else { return "its commit \(commit.short) is not signed" }
        let parsed = SSHSignature(armored: signed.signature)
        if let ownKey, let parsed, parsed.publicKey == ownKey {
            // A copy of one of our signatures on another commit names our key too: the arithmetic decides.
            return parsed.isValidEd25519(of: signed.signedData) ? nil
                : "its commit \(commit.short) names this Bulwark's signing key, and the signature does not verify"
        }
        if let parsed, trustedKeys[parsed.publicKey] != nil, parsed.isValidEd25519(of: signed.signedData) { return nil }
        if let auditSigners {
            do {
                if folder == nil { folder = try SourceVerification.privateFolder() }
                switch try SourceVerification.verifySSH(signed, commit: commit, allowedSigners: auditSigners, folder: folder ?? "") {
                case .success(let principal):
                    if let parsed { trustedKeys[parsed.publicKey] = principal }
                    return nil
                case .failure(let untrusted):
                    return "its commit \(commit.short) is signed neither by this Bulwark's signing key nor by a key of --audit-signers: "
                        + untrusted.description
                }
            } catch {
                return "the signature of its commit \(commit.short) cannot be checked: \(error)"
            }
        }
        if ownKey != nil {
            return "its commit \(commit.short) is not signed by this Bulwark's signing key (list the other Bulwarks' keys in --audit-signers)"
        }
        guard let verification else { return "its commit \(commit.short) is not signed by a trusted key" }
        do {
            if folder == nil { folder = try SourceVerification.privateFolder() }
            switch try verification.verifyAny(signed, commit: commit, folder: folder ?? "") {
            case .success(let principal):
                if let parsed { trustedKeys[parsed.publicKey] = principal }
                return nil
            case .failure(let untrusted): return "its commit \(commit.short) is not trusted: \(untrusted.description)"
            }
        } catch {
            return "the signature of its commit \(commit.short) cannot be checked: \(error)"
        }
    }
}

extension RecordTrust {
    /// The newest of `commits` (newest first) a trusted key signed, with why each newer one was
    /// passed over. A command that acts on the record with an id (`revert`, `approve`) takes
    /// this one: anyone who can push can put a newer commit with the same id on the branch.
    package func newest(of commits: [CommitInfo], in repository: PolicyRepository) async -> (commit: CommitInfo?, passedOver: [String]) {
        var passedOver: [String] = []
        for commit in commits {
            guard let problem = await problem(with: commit.id, in: repository) else { return (commit, passedOver) }
            passedOver.append(problem)
        }
        return (nil, passedOver)
    }
}
