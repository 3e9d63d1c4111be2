import BulwarkCore
package import BulwarkGit
import Foundation

/// The records a controller replica reads from other replicas' refs (`bulwark/audit-replicas/*`)
/// for the flap breaker are checked like the rest of the audit trail when signatures are
/// configured: each must carry a signature a trusted key made (`--trusted-signers`, in which
/// each replica's `--signing-key` is listed, or `--trusted-keyring`). A peer record that is
/// unsigned, or signed by a key the files do not trust, or whose signature does not verify, is
/// not counted (anyone who can push a ref under `bulwark/audit-replicas/` could otherwise make a
/// replica escalate a drift, or stop escalating one, with made-up fixes); the daemon logs it and
/// counts it in `bulwark_peer_records_rejected_total{reason}`. Without trusted signers or keyring
/// every peer record counts, as before. Each key is checked by `ssh-keygen` once; the same
/// ed25519 key's later signatures are checked in-process, as `verify-audit` does.
/// With `--audit-signers` (the fleet's Bulwarks listed), peer records are checked by
/// `RecordTrust` instead: only this Bulwark's key or an audit signer's counts, never a person
/// of the trusted signers file, who could otherwise write made-up fixes of a replica.
package struct PeerRecordVerification: Sendable {
    package let source: SourceVerification

    /// A peer record not counted, and why (`reason` is `unsigned` or `untrusted`: a bounded label).
    package struct Rejection: Sendable, Equatable {
        package var ref: String
        package var record: String
        package var commit: ObjectID
        package var reason: String
        package var detail: String
    }

    /// Nil when no trusted signers file nor keyring is configured: peer records are not checked.
    package init?(_ source: SourceVerification?) {
        guard let source, source.allowedSigners != nil || source.trustedKeyring != nil else { return nil }
        self.source = source
    }

    /// Checks one peer record's commit: nil when a trusted key signed it, else the rejection.
    /// `trustedKeys` remembers the ed25519 keys found trusted (by public key), `folder` is a private
    /// folder for ssh-keygen's files.
    package func check(_ commit: CommitInfo, record: String, ref: String, in repository: Repository, folder: String,
                       trustedKeys: inout [[UInt8]: String]) -> Rejection? {
        func reject(_ reason: String, _ detail: String) -> Rejection {
            Rejection(ref: ref, record: record, commit: commit.id, reason: reason, detail: detail)
        }
        let signed: CommitSignature
        do {
            guard let found = try repository.signature(of: commit.id) else { return reject("unsigned", "the commit is not signed") }
            signed = found
        } catch {
            return reject("untrusted", "its signature cannot be read: \(error)")
        }
        if let parsed = SSHSignature(armored: signed.signature), trustedKeys[parsed.publicKey] != nil,
           parsed.isValidEd25519(of: signed.signedData) {
            return nil
        }
        do {
            switch try source.verifyAny(signed, commit: commit.id, folder: folder) {
            case .success(let principal):
                if let parsed = SSHSignature(armored: signed.signature) { trustedKeys[parsed.publicKey] = principal }
                return nil
            case .failure(let untrusted):
                return reject("untrusted", untrusted.description)
            }
        } catch {
            return reject("untrusted", "its signature cannot be checked: \(error)")
        }
    }
}
