package import BulwarkCore
package import BulwarkGit
package import Foundation

/// The append-only audit trail, as one Bulwark (one state directory) keeps it.
///
/// Each record this Bulwark commits carries `Bulwark-Instance` (its name, made once per state
/// directory) and `Bulwark-Sequence` (1, 2, 3 … with no gaps), so that `bulwark verify-audit`
/// finds a record removed from the middle of the branch. Bulwark remembers the last audit commit
/// it pushed; when the origin's audit branch no longer contains it (rewritten, deleted, replaced),
/// Bulwark does not rebase onto the new history: it records the tampering and pushes its whole
/// trail to `bulwark/audit-recovered-<time>` until the origin's branch contains it again.
package struct AuditTrail: Codable, Sendable, Equatable {
    /// This Bulwark's name on the audit branch.
    package var instance: String
    /// The last audit commit pushed (hex).
    package var lastPushed: String?
    /// The audit branch this state directory records to (`--audit-branch`), kept at each push:
    /// another name given later is refused, not taken for this branch deleted. Absent in a
    /// file written before it was kept, until the branch is found to hold `lastPushed`.
    package var auditBranch: String?
    /// Where records go while the origin's audit branch is not to be trusted.
    package var recoveryBranch: String?
    /// Whether a push to `recoveryBranch` was made: from then on, the branch missing on the
    /// origin is its deletion (tampering), not a branch not pushed yet.
    package var recoveryPushed: Bool?
    /// Whether this Bulwark may have made an audit commit: false from the trail's making until
    /// just before its first commit, when the file is saved with true before the commit is
    /// written. While false, no commit anywhere carries this instance's name, so its first
    /// number is 1 without reading the audit branch (which, on a branch of 100,000 records that
    /// another Bulwark wrote, read every commit back to the root). Absent in a file written
    /// before it was kept: not known, and the branch is read as before.
    package var committed: Bool?
    /// The newest origin commit the local audit branch took in (by a fast-forward, or as the
    /// base its own records were replayed onto): every commit it reaches came from the origin,
    /// whatever its trailers say, and is never pushed back or replayed as this instance's.
    package var followed: String?
    /// The number of the last record this instance committed that is on disk (saved once the
    /// branch moved to it). The next record follows it. Kept here because the audit branch
    /// cannot tell it: every record names its instance, so anyone who can push writes a commit
    /// with this name and any number. Absent in a file written before it was kept: then it is
    /// read once from the branch (`lastSequence`), from this instance's own key's commits.
    package var sequence: UInt64?

    package static let instanceTrailer = AuditTrailer.instance.rawValue
    package static let sequenceTrailer = AuditTrailer.sequence.rawValue
    package static let fileName = "audit-trail.json"
    package static let recoveryPrefix = "bulwark/audit-recovered-"

    /// The trail kept in `stateDirectory`, or a new one (with a new instance name, `created`) when
    /// there is none. A file that cannot be read is an error: starting a new trail would hide tampering.
    package static func load(stateDirectory: String) throws -> (trail: AuditTrail, created: Bool) {
        let path = stateDirectory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else {
            let trail = AuditTrail(instance: newInstanceName(), committed: false)
            try trail.save(stateDirectory: stateDirectory)
            return (trail, true)
        }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let trail = try JSONDecoder().decode(AuditTrail.self, from: data)
            guard isValidInstance(trail.instance), trail.lastPushed.map({ ObjectID(hex: $0) != nil }) ?? true,
                  trail.auditBranch.map(GitLibrary.isValidBranchName) ?? true,
                  trail.recoveryBranch.map({ $0.hasPrefix(recoveryPrefix) && GitLibrary.isValidBranchName($0) }) ?? true else {
                throw CommandError("it holds values Bulwark never writes")
            }
            return (trail, false)
        } catch {
            throw CommandError("cannot read \(path) (\(error)): it remembers the last audit commit pushed, which detects a "
                               + "rewritten audit branch. Restore it, or remove it to start a new trail (the check starts again "
                               + "from the next push)")
        }
    }

    /// Replaces the trail file atomically (see `StateFile`).
    package func save(stateDirectory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try StateFile.replace(stateDirectory + "/" + Self.fileName, with: Array(try encoder.encode(self)))
    }

    /// `<host>-<8 random hex>`: a name people recognise, unique per state directory.
    package static func newInstanceName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "bulwark"
        let safe = String(host.filter { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }.prefix(40))
        var rng = SystemRandomNumberGenerator()
        let suffix = String(UInt32.random(in: .min ... .max, using: &rng), radix: 16)
        return (safe.isEmpty ? "bulwark" : safe) + "-" + String(repeating: "0", count: 8 - suffix.count) + suffix
    }

    package static func isValidInstance(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }
    }

    /// The trailer lines added to a record's commit message (its trailers already end it).
    package static func trailers(instance: String, sequence: UInt64) -> String {
        "\(instanceTrailer): \(instance)\n\(sequenceTrailer): \(sequence)\n"
    }

    /// The sequence number of the newest record `instance` committed on the line ending at `head`
    /// (first parents), with the commit that carries it (nil: none, the number is 0) and the
    /// number of commits read. A commit `untrusted` has a reason for (not signed by this
    /// instance's key), or whose number is not a number, is someone else's: passed over with a
    /// warning, never an error, so that a made-up record cannot stop Bulwark recording.
    package static func lastSequence(of instance: String, in repository: Repository, head: ObjectID?,
                                     untrusted: (CommitInfo) -> String?) throws -> (number: UInt64, commit: ObjectID?, read: Int) {
        var next = head
        var read = 0
        while let id = next {
            let commit = try repository.commitInfo(id)
            read += 1
            next = commit.parents.first
            guard commit.trailer(instanceTrailer) == instance, let text = commit.trailer(sequenceTrailer) else { continue }
            guard let number = UInt64(text) else {
                Console().warn("audit commit \(id.short) names this Bulwark (\(instance)) with the sequence number "
                               + "'\(quotedForMessage(text))', not a number: it is not this Bulwark's, passed over")
                continue
            }
            if let problem = untrusted(commit) {
                Console().warn("audit commit \(id.short) names this Bulwark (\(instance)) with the sequence number \(number), "
                               + "but \(problem): it is not this Bulwark's, passed over")
                continue
            }
            return (number, id, read)
        }
        return (0, nil, read)
    }

    /// The number of this instance's last record when its state says `saved`: `saved`, or more
    /// when the newest commits of the line ending at `head` are this instance's records numbered
    /// `saved + 1`, `saved + 2` … with no gap, each one `untrusted` has nothing against (a process
    /// stopped between moving the branch and saving the trail; its records, never pushed, are
    /// replayed on top of the origin's). Any other number is someone else's, and is passed over
    /// with a warning. Returns the number and the commits read.
    package static func lastSequence(saved: UInt64, of instance: String, in repository: Repository, head: ObjectID?,
                                     untrusted: (CommitInfo) -> String?) throws -> (number: UInt64, read: Int) {
        var newestFirst: [(commit: ObjectID, number: UInt64)] = []
        var next = head
        var read = 0
        while let id = next {
            let commit = try repository.commitInfo(id)
            read += 1
            guard commit.trailer(instanceTrailer) == instance, let text = commit.trailer(sequenceTrailer),
                  let number = UInt64(text), number > saved else { break }
            if let problem = untrusted(commit) {
                Console().warn("audit commit \(id.short) names this Bulwark (\(instance)) with the sequence number \(number), "
                               + "but \(problem): it is not this Bulwark's, passed over")
                break
            }
            newestFirst.append((id, number))
            next = commit.parents.first
        }
        var number = saved
        for found in newestFirst.reversed() {
            guard number < .max, found.number == number + 1 else {
                Console().warn("audit commit \(found.commit.short) names this Bulwark (\(instance)) with the sequence number "
                               + "\(found.number), where its last record is \(number) (\(fileName)): it is not this Bulwark's, passed over")
                break
            }
            number += 1
        }
        return (number, read)
    }

    /// The number after `last`, checked: an overflow is an error, never a trap. With `count`, the
    /// `count` numbers after `last` must all exist (a pass's records, numbered before its first
    /// fix). `source` says where `last` came from, for the error.
    package static func number(after last: UInt64, reserving count: Int = 1, source: String) throws -> UInt64 {
        guard !last.addingReportingOverflow(UInt64(max(count, 1))).overflow else {
            throw CommandError("the last sequence number of this Bulwark's records, \(last) (\(source)), leaves no number for "
                               + "\(count == 1 ? "the next record" : "the \(count) records of this pass"): nothing is recorded, and "
                               + "no fix is made without its record")
        }
        return last + 1
    }

    /// The name of a recovery branch made at `date` by the Bulwark `instance`:
    /// `bulwark/audit-recovered-20261201T193000Z-4F2K9Q7M`. The instance's part (its id's hash)
    /// keeps two writers that recover in the same second (two agents whose refs were deleted
    /// at once) on branches of their own: on one, each took the other's records for its own
    /// branch rewritten, and recorded a false tampering.
    package static func recoveryBranch(at date: Date, instance: String) -> String {
        recoveryPrefix + Timestamp.format(date).prefix(19).filter { $0.isNumber || $0 == "T" } + "Z-"
            + AuditID.stable("recovery\u{1}" + instance).prefix(8)
    }

    /// The command that puts the records of `recovery` back on `auditBranch`, from any clone
    /// (the branch is the origin's: a fresh clone names it `origin/…`).
    package static func restoreCommand(recovery: String, auditBranch: String) -> String {
        "`git fetch origin && git push origin origin/\(recovery):\(auditBranch)`"
    }

    /// The record of a tampered audit branch: stable for the same last-pushed commit and remote
    /// head, so that it is committed once.
    package static func tamperRecord(auditBranch: String, lastPushed: ObjectID, remoteHead: ObjectID?, recovery: String?,
                             at date: Date) -> AuditRecord {
        let what = remoteHead.map { "rewritten: it is now at \($0.short), which does not contain it" } ?? "deleted"
        var reason = "the audit branch \(auditBranch) on the origin was \(what). \(lastPushed.short) is the last audit commit "
            + "this Bulwark pushed there. "
        if let recovery {
            reason += "Bulwark did not rebase onto that history: every record it holds, with the ones already pushed, goes to "
                + "\(recovery) instead; nothing was lost"
        } else {
            reason += "This state clone was made again and does not hold it either, so the records up to it that the origin "
                + "lost cannot be recovered by this Bulwark"
        }
        return AuditRecord(
            id: AuditID.stable(["tampered", auditBranch, lastPushed.hex, remoteHead?.hex ?? "-"].joined(separator: "\u{1}")),
            controller: AuditRecord.noTarget, target: AuditRecord.noTarget, resource: "AuditBranch/\(auditBranch)", kind: "AuditBranch", name: auditBranch,
            severity: .critical, risk: 0, mode: .enforce, decision: .refused, result: nil, reason: reason, changes: [],
            detectedAt: date, appliedAt: nil, verifiedAt: nil, desiredCommit: Revision(lastPushed),
            approver: nil, error: nil)
    }
}
