internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct VerifyAudit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify-audit",
            abstract: "Check a whole audit branch: the chain of records, their sequence numbers and their signatures.",
            discussion: """
                Reads the audit branch of a local git repository (a clone, or Bulwark's state clone) and checks, \
                from its first commit to its head: that it is one line of commits, each adding exactly its own \
                record and changing nothing else; that each Bulwark instance's records carry the sequence \
                numbers 1, 2, 3 … with none missing or repeated; and, with --audit-signers (the Bulwarks' keys), \
                that every commit is SSH-signed by a key of that allowed signers file. A record removed from the \
                middle leaves a gap; one edited breaks its signature. Records cut off the end (the branch moved \
                back) leave no trace in the branch itself: the Bulwark that wrote them finds that at its next run \
                from the trail in its state directory, records the tampering and pushes its records to a recovery \
                branch (bulwark/audit-recovered-…).

                Exit status: 0 when every check passes, 1 when problems were found (each is listed), 64 on a \
                usage mistake (no such repository or branch).
                """)

        @Option(help: ArgumentHelp("A local git repository holding the audit branch (bare or not).", valueName: "path"))
        var repo: String = "."

        @Option(help: "The audit branch (a local branch, else the origin's as fetched).")
        var auditBranch: String = "bulwark/audit"

        @Option(help: ArgumentHelp("The allowed_signers file of the Bulwarks that write the branch (as `run --audit-signers`): "
                                   + "every audit commit must be signed by a key in it (namespace git).", valueName: "path"))
        var auditSigners: String?

        @Option(help: ArgumentHelp("An ssh-keygen allowed_signers file: every audit commit must be signed by a key in it "
                                   + "(namespace git). A file that also lists people lets their signatures pass: prefer --audit-signers.",
                                   valueName: "path"))
        var trustedSigners: String?

        /// The file signatures are checked against: the Bulwarks' own when given.
        var signers: String? { auditSigners ?? trustedSigners }

        func validate() throws {
            try RepositoryOptions.checkBranch(auditBranch, option: "--audit-branch")
            if auditSigners != nil, trustedSigners != nil {
                throw ValidationError("--audit-signers and --trusted-signers cannot be used together: give the Bulwarks' keys in --audit-signers")
            }
            for (file, what) in [(auditSigners, "audit signers"), (trustedSigners, "trusted signers")] {
                if let file, !FileManager.default.isReadableFile(atPath: file) {
                    throw ValidationError("cannot read the \(what) file \(file)")
                }
            }
        }

        func run() async throws {
            let console = Console()
            let repository: Repository
            do { repository = try Repository.open(at: repo) } catch {
                throw ValidationError("\(repo) is not a git repository: \(error.message)")
            }
            // The audit branch, and the fleet's per-writer refs (agents', replicas'), each its own chain.
            let branches = try FleetAuditRefs.branches(in: repository, shared: auditBranch)
            guard !branches.isEmpty else {
                throw ValidationError("\(repo) has no branch \(auditBranch) (nor origin/\(auditBranch)) and no per-target audit refs; fetch it first")
            }
            let verification = AuditVerification(repository: repository, trustedSigners: signers)
            var problems = 0
            var ids: [String: String] = [:]
            for (branch, head) in branches {
                let report = try verification.check(head: head)
                for problem in report.problems { console.error(problem) }
                problems += report.problems.count
                // One record on two refs: two writers decided about the same drift.
                for commit in try repository.history(from: head) {
                    guard let id = commit.trailer(.id) else { continue }
                    if let other = ids[id], other != branch {
                        console.error("record \(id) is on both \(other) and \(branch): two writers recorded the same decision")
                        problems += 1
                    }
                    ids[id] = branch
                }
                console.print(report.summary(branch: branch, head: head))
            }
            if problems > 0 { throw ExitCode.failure }
        }
    }
}

/// The checks of `bulwark verify-audit` over one audit branch.
struct AuditVerification {
    let repository: Repository
    let trustedSigners: String?

    struct Report {
        var records = 0
        var problems: [String] = []
        /// Per instance: the last sequence number seen.
        var sequences: [String: UInt64] = [:]
        /// Commits verified, per signer.
        var signers: [String: Int] = [:]
        /// Without signers to check against: the record commits that carry a signature, and those
        /// that do not (nil when signatures were checked).
        var unchecked: (signed: Int, unsigned: [ObjectID])?

        func summary(branch: String, head: ObjectID) -> String {
            var lines = ["\(records) audit record(s) on \(branch) (head \(head.short)): "
                         + (problems.isEmpty ? "no problems found" : "\(problems.count) problem(s) found")]
            for (instance, last) in sequences.sorted(by: { $0.key < $1.key }) {
                lines.append("  instance \(instance): records 1 to \(last)")
            }
            for (signer, count) in signers.sorted(by: { $0.key < $1.key }) {
                lines.append("  signed by \(signer): \(count) commit(s)")
            }
            if let unchecked {
                lines.append("  signatures not checked (no --audit-signers): \(unchecked.signed) commit(s) carry a signature, "
                             + "\(unchecked.unsigned.count) do not; a record anyone with push access wrote passes every other check")
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Walks the branch from its root to `head` and checks every commit.
    func check(head: ObjectID) throws -> Report {
        var report = Report()
        // The chain, newest first, following first parents; a merge is itself a problem.
        var chain: [CommitInfo] = []
        var next: ObjectID? = head
        while let id = next {
            let commit = try repository.commitInfo(id)
            if commit.parents.count > 1 {
                report.problems.append("commit \(id.short) is a merge: Bulwark only appends, so someone else wrote it")
            }
            chain.append(commit)
            next = commit.parents.first
        }
        let folder = try SourceVerification.privateFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Keys ssh-keygen accepted once, with their principal: later commits by the same ed25519
        // key are checked in-process (the same arithmetic, without two processes per commit).
        var trustedKeys: [[UInt8]: String] = [:]
        var seen = Set<String>()
        // Without signers: the SSH keys each instance's records are signed with, and their commits.
        var keysOfInstance: [String: [[UInt8]: [ObjectID]]] = [:]
        for commit in chain.reversed() {
            let name = "commit \(commit.id.short)"
            guard let id = commit.trailer(.id) else {
                report.problems.append("\(name) (\"\(quotedForMessage(commit.summary))\") is not an audit record (no Bulwark-Id)")
                continue
            }
            report.records += 1
            if !seen.insert(id).inserted { report.problems.append("\(name): record \(id) appears twice") }
            report.problems += try checkContents(commit, id: id)
            if let problem = checkSequence(commit, in: &report) { report.problems.append("\(name): \(problem)") }
            if let trustedSigners {
                switch try checkSignature(commit, allowedSigners: trustedSigners, folder: folder, trustedKeys: &trustedKeys) {
                case .success(let principal): report.signers[principal, default: 0] += 1
                case .failure(let problem): report.problems.append("\(name) (record \(id)): \(problem.description)")
                }
            } else if let signed = try repository.signature(of: commit.id) {
                report.unchecked = ((report.unchecked?.signed ?? 0) + 1, report.unchecked?.unsigned ?? [])
                if let parsed = SSHSignature(armored: signed.signature) {
                    if let instance = commit.trailer(AuditTrail.instanceTrailer) {
                        keysOfInstance[instance, default: [:]][parsed.publicKey, default: []].append(commit.id)
                    }
                    // A Bulwark's signature copied onto another commit names its key, and does not verify.
                    if parsed.publicKeyLine?.hasPrefix("ssh-ed25519 ") == true, !parsed.isValidEd25519(of: signed.signedData) {
                        report.problems.append("\(name) (record \(id)): its signature names a key and does not verify (copied from "
                                               + "another commit)")
                    }
                }
            } else {
                // Appended in place: a copy of the list per record made the walk quadratic.
                var unchecked = report.unchecked ?? (signed: 0, unsigned: [])
                report.unchecked = nil
                unchecked.unsigned.append(commit.id)
                report.unchecked = unchecked
            }
        }
        // A Bulwark with a signing key signs every record it writes: unsigned records among
        // signed ones were written by someone else, or before it signed (both worth a look).
        if let unchecked = report.unchecked, unchecked.signed > 0, !unchecked.unsigned.isEmpty {
            let named = unchecked.unsigned.prefix(5).map(\.short).joined(separator: ", ")
                + (unchecked.unsigned.count > 5 ? " and \(unchecked.unsigned.count - 5) more" : "")
            report.problems.append("\(unchecked.unsigned.count) record commit(s) are unsigned among \(unchecked.signed) signed ones "
                                   + "(\(named)): a Bulwark that signs its records signs every one; check the branch with --audit-signers")
        }
        // One Bulwark signs all its records with its one key: records of one instance signed by
        // another key were written by someone who knows the instance's name (anyone who reads
        // the branch), signing with a key of their own; or the key was changed (worth a look).
        for (instance, keys) in keysOfInstance.sorted(by: { $0.key < $1.key }) where keys.count > 1 {
            let described = keys.values.sorted { $0.count > $1.count }.map { commits in
                "\(commits.count) commit(s) such as \(commits[0].short)"
            }
            report.problems.append("instance \(quotedForMessage(instance))'s records are signed by \(keys.count) different keys "
                                   + "(\(described.joined(separator: "; "))): a Bulwark signs every record with its one key; check the "
                                   + "branch with --audit-signers")
        }
        return report
    }

    /// A record commit adds exactly its own record file, which holds that record, and changes nothing else.
    /// Its own record file is at the path of the current layout or of the one before it
    /// (`AuditRecord.paths`: records written by earlier versions); whichever it adds, the other is
    /// not its own.
    private func checkContents(_ commit: CommitInfo, id: String) throws -> [String] {
        let name = "commit \(commit.id.short) (record \(id))"
        let parent = commit.parents.first
        var problems: [String] = []
        let changed = try repository.changedPathsOfChangedFolders(from: parent, to: commit.id)
        let candidates = commit.trailer(.detectedAt).map { AuditRecord.paths(id: id, detectedAt: $0) } ?? []
        let expected = candidates.first { changed.contains($0) } ?? candidates.first
        for path in changed where path != expected {
            let before = try parent.flatMap { try repository.file(at: $0, path: path) }
            let after = try repository.file(at: commit.id, path: path)
            let what = before == nil ? "adds" : after == nil ? "deletes" : "changes"
            problems.append("\(name) \(what) \(quotedForMessage(path)), which is not its own record")
        }
        guard let expected else { return problems + ["\(name) has no Bulwark-Detected-At, so its record cannot be found"] }
        if let parent, try repository.file(at: parent, path: expected) != nil {
            problems.append("\(name) rewrites \(expected), which an earlier commit recorded")
        }
        guard let bytes = try repository.file(at: commit.id, path: expected) else {
            return problems + ["\(name) does not add its record \(expected)"]
        }
        guard let record = try? AuditRecord(json: bytes), record.id == id else {
            return problems + ["\(name): \(expected) does not hold record \(id)"]
        }
        return problems
    }

    /// Each instance's sequence numbers go 1, 2, 3 … on the branch, oldest first.
    private func checkSequence(_ commit: CommitInfo, in report: inout Report) -> String? {
        guard let instance = commit.trailer(AuditTrail.instanceTrailer) else {
            // Records written before sequence numbers existed, or records of other writers.
            return nil
        }
        guard let text = commit.trailer(AuditTrail.sequenceTrailer), let number = UInt64(text) else {
            return "instance \(quotedForMessage(instance)) wrote no valid sequence number"
        }
        let last = report.sequences[instance] ?? 0
        report.sequences[instance] = max(last, number)
        if number == last &+ 1 { return nil }
        if number <= last {
            return "instance \(quotedForMessage(instance)) repeats or reorders sequence number \(number) (after \(last))"
        }
        let missing = number - last - 1
        return "instance \(quotedForMessage(instance)): \(missing) record(s) missing before sequence number \(number) "
            + "(\(last == 0 ? "its first record on the branch" : "after \(last)")): removed from the branch"
    }

    private func checkSignature(_ commit: CommitInfo, allowedSigners: String, folder: String,
                                trustedKeys: inout [[UInt8]: String]) throws -> Result<String, SourceVerification.Untrusted> {
        guard let signed = try repository.signature(of: commit.id) else {
            return .failure(.init(description: "the commit is not signed"))
        }
        if let parsed = SSHSignature(armored: signed.signature), let principal = trustedKeys[parsed.publicKey],
           parsed.isValidEd25519(of: signed.signedData) {
            return .success(principal)
        }
        let result = try SourceVerification.verifySSH(signed, commit: commit.id, allowedSigners: allowedSigners, folder: folder)
        if case .success(let principal) = result, let parsed = SSHSignature(armored: signed.signature) {
            trustedKeys[parsed.publicKey] = principal
        }
        return result
    }
}
