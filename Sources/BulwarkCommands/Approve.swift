internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Approve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "approve",
            abstract: "Approve a held, blocked or escalated remediation by committing approvals/<ID>.yaml to the policy branch.",
            discussion: """
                The commit carries your git identity (GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, or git's \
                user.name and user.email). The next pass applies the fix only if the drift is still \
                exactly the one that was held; its audit commit carries Bulwark-Approved-By. The approval of a \
                safety guard's block names that block (block:, copied from the record), and lets no other \
                block of the drift through. With --signing-key or --audit-signers, the record approved is the \
                newest one with the id that Bulwark's key or a key of --audit-signers signed.
                """)

        // Ids are ULIDs, whose letters are read in either case (waiver files name them in lowercase).
        @Argument(help: "The Bulwark-Id of the held, blocked or escalated remediation.", transform: { $0.uppercased() })
        var id: String

        @OptionGroup var repository: RepositoryOptions

        @Option(help: "Why the fix may go ahead (recorded in the approval).")
        var reason: String

        @Option(help: "The last day the approval may be used (YYYY-MM-DD).")
        var expires: String?

        func validate() throws {
            guard id.count == 26, id.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber) }) else {
                throw ValidationError("'\(id)' is not a Bulwark-Id (26 characters, such as 01JD3M...)")
            }
            // The reason is also the commit message's body: one line of printable text.
            try checkReason(reason)
            if let expires {
                guard try checkDay(expires, option: "--expires") > Date() else {
                    throw ValidationError("--expires \(expires) is in the past")
                }
            }
        }

        func run() async throws {
            let console = Console()
            let policy = try PolicyRepository(try repository.configuration())
            let (head, stale) = try await policy.sync()
            if let stale { throw CommandError(stale) }
            // Every refusal from here on is in git (once per id and reason), as a refused
            // revision or finding is: someone tried to let something through.
            func refused(_ reason: String) async -> CommandError {
                let who = await policy.callerSignature().map { "\($0.name) <\($0.email)>" } ?? "an unknown git identity"
                let record = AuditRecord.refusedCommand(["approve", id, reason], resource: "Approval/\(id)", severity: .high,
                                                        reason: "bulwark approve \(id) by \(who) refused: \(reason)",
                                                        revision: Revision(head), at: Date())
                await RevisionRefusal.record(record, in: policy, console: console)
                return CommandError(reason)
            }
            // Held drift, a safety guard's block and a flap-breaker escalation are approved alike.
            let approvable: Set<String> = [Decision.held.rawValue, Decision.blocked.rawValue, Decision.escalated.rawValue]
            let history = try await policy.auditHistory()
            let carrying = history.filter {
                $0.trailer(.id) == id && approvable.contains($0.trailer(.decision) ?? "")
            }
            guard var held = carrying.first else {
                throw await refused("no held, blocked or escalated remediation with id \(id) in \(repository.auditBranch)")
            }
            // An approval counts for one fix: the drift back after it is held under a new id.
            if try await policy.usedApproval(id) {
                throw await refused("a fix already used the approval of \(id) (an approval counts for one fix); drift that came back "
                                    + "after it is held under a new id, recorded anew: `bulwark plan` or `bulwark log --decision held` shows it")
            }
            // With a signing key or audit signers, the newest record one of the Bulwarks signed:
            // anyone who can push can put a newer one with the same id, showing another block.
            // (The people of --trusted-signers do not sign Bulwark's records: they do not count here.)
            if let trust = RecordTrust(ownKey: await policy.auditKey, auditSigners: await policy.auditSigners, verification: nil) {
                let (trusted, passedOver) = await trust.newest(of: carrying, in: policy)
                guard let trusted else {
                    throw await refused("the record \(id) in \(repository.auditBranch) cannot be approved: \(passedOver.first ?? "no trusted key signed it")")
                }
                for problem in passedOver { console.warn("a newer commit with the record \(id) is passed over: \(problem)") }
                held = trusted
            } else if let unlike = try await Self.unlikeItsNeighbours(held, in: history, policy) {
                // Without a key to check against, a Bulwark that signs its records still shows: a
                // record unsigned, or signed by a key none of the records around it was signed by,
                // is someone else's (a forged summary, "10 -> 4", for the drift "4 -> 10" held).
                throw await refused("the record \(id) in \(repository.auditBranch) (commit \(held.id.short)) \(unlike): anyone who can push "
                                    + "can write one; give --audit-signers (the Bulwarks' keys) or --signing-key to approve the record a "
                                    + "Bulwark signed")
            }
            // What is approved, as the record says: the person reads it before the commit is made.
            console.print("Approving \(id): \(quotedForMessage(held.summary, limit: 400))")
            for line in held.message.split(separator: "\n") where line.hasPrefix("- ") || line.hasPrefix("Reason: ") {
                console.print("  " + quotedForMessage(String(line), limit: 400))
            }
            guard let author = await policy.callerSignature() else {
                throw CommandError("no git identity: set user.name and user.email (git config) or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL")
            }
            // A guard's block is approved as the record showed it, and no other block of the drift.
            var block: String?
            if held.trailer(.decision) == Decision.blocked.rawValue {
                let recorded = held.message.split(separator: "\n").first { $0.hasPrefix("Reason: ") }.map { String($0.dropFirst(8)) }
                guard let shown = recorded.flatMap({ Planner.approvedBlock(fromRecorded: $0, id: id) }) else {
                    throw await refused("the blocked record \(id) in \(repository.auditBranch) names no block Bulwark wrote (no Reason: line "
                                       + "ending in 'bulwark approve \(id)'); it cannot be approved")
                }
                block = shown
            }
            let text = Self.document(id: id, summary: held.summary, approver: "\(author.name) <\(author.email)>",
                                     reason: reason, expires: expires, block: block, record: held.id.hex)
            // Signed with the caller's key when git is set up to sign (gpg.format ssh, user.signingkey):
            // with --trusted-signers, the approver is whoever signed.
            var signer = await policy.callerSigner()
            signer?.subject = "the approval of \(id) (approvals/\(id).yaml)"
            let commit = try await policy.commitPolicy(
                ["approvals/\(id).yaml": Array(text.utf8)],
                message: "approve(\(held.trailer(.resource) ?? id)): \(held.trailer(.target) ?? "")\n\n\(reason)\n\n\(AuditTrailer.approves.rawValue): \(id)\n",
                author: author, signer: signer, verification: repository.sourceVerification)
            console.print("Approved \(id) as \(author.name) <\(author.email)>: approvals/\(id).yaml committed to \(repository.branch) (\(commit.short))"
                          + (signer == nil ? ", unsigned (set gpg.format ssh and user.signingkey to sign it)." : ", signed."))
            console.print("The next `bulwark apply` fixes it if the drift is unchanged.")
        }

        /// Why `record` is not signed as the audit records written around it (the 50 newest and
        /// the 50 before it) are, or nil: unsigned while one of them is signed, or signed by an SSH
        /// key that signed none of them (or whose ed25519 signature does not verify: a Bulwark's
        /// signature copied onto another commit). Nil when none of them is signed: nothing to compare.
        static func unlikeItsNeighbours(_ record: CommitInfo, in history: [CommitInfo], _ policy: PolicyRepository) async throws -> String? {
            let at = history.firstIndex { $0.id == record.id } ?? 0
            let nearby = history.prefix(50) + history[at..<min(history.count, at + 50)]
            var keys: Set<[UInt8]> = []
            var example: ObjectID?
            for commit in nearby where commit.id != record.id && commit.trailer(.id) != nil {
                guard let signature = try await policy.signature(of: commit.id) else { continue }
                example = example ?? commit.id
                if let key = SSHSignature(armored: signature.signature)?.publicKey { keys.insert(key) }
            }
            guard let example else { return nil }
            guard let own = try await policy.signature(of: record.id) else {
                return "is unsigned, while other records there are signed (commit \(example.short))"
            }
            // Keys compared only where the records around it are signed with SSH keys (as Bulwark signs).
            guard !keys.isEmpty else { return nil }
            guard let parsed = SSHSignature(armored: own.signature), keys.contains(parsed.publicKey) else {
                return "is signed by a key that signed none of the records around it (commit \(example.short) is signed by another)"
            }
            if parsed.publicKeyLine?.hasPrefix("ssh-ed25519 ") == true, !parsed.isValidEd25519(of: own.signedData) {
                return "names the key of the records around it, but its signature does not verify"
            }
            return nil
        }

        /// The approval manifest. Every value from outside (the held record's summary, the git
        /// identity, the reason) is escaped, so that whatever it holds (a line separator such as
        /// U+2028 in a held value, quotes, control characters) the file reads back as written
        /// and never breaks the revisions after it.
        static func document(id: String, summary: String, approver: String, reason: String, expires: String?,
                             block: String? = nil, record: String? = nil) -> String {
            var text = """
                # Approval of \(YAML.commentText(summary))
                apiVersion: bulwark/v1
                kind: Approval
                metadata: {name: approval-\(id.lowercased())}
                spec:
                  id: \(YAML.doubleQuoted(id))
                  approver: \(YAML.doubleQuoted(approver))
                  reason: \(YAML.doubleQuoted(reason))

                """
            if let expires { text += "  expires: \(YAML.doubleQuoted(expires))\n" }
            if let block { text += "  block: \(YAML.doubleQuoted(block))\n" }
            if let record { text += "  record: \(YAML.doubleQuoted(record))\n" }
            return text
        }
    }
}
