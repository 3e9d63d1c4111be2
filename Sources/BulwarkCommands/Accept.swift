internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Accept: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "accept",
            abstract: "Merge a finding's proposal (bulwark/proposals/<ID>) into the policy branch, as your commit.",
            discussion: """
                The file the proposal changes is committed to the policy branch with your git identity (and your \
                signature when git is set up to sign), carrying the proposal's message and trailers when a trusted \
                key signed it, else only what accept checked (resource, rule, change, the finding its file cites); \
                its diff is printed first. Refused when the proposal is closed, when the policy changed that file since it was \
                made, and when the branch's last commit is not what Bulwark proposes: one resource changed or added in \
                the one desired-state/ file its Change line names, nothing else in the policy different, nothing \
                weaker than the policy in force, and (with --trusted-signers or --trusted-keyring) signed by a trusted \
                key, by the --proposer key when one is named. The next pass applies it under every guard, limit and window.
                """)

        @Argument(help: "The finding's id (the part after bulwark/proposals/).")
        var id: String

        @Flag(help: "You read the diff of a proposal whose values come from its finding (needed without --trusted-signers or --trusted-keyring).")
        var reviewed = false

        @Option(help: ArgumentHelp("Who signs proposals: the proposal must be signed by this principal of --trusted-signers (or, with "
                                   + "--trusted-keyring, the full fingerprint of its key), not by just any trusted key.",
                                   valueName: "principal"))
        var proposer: String?

        @OptionGroup var repository: RepositoryOptions

        func validate() throws {
            try checkNotEmpty(["the proposal id": id])
            // A branch named in full must be one git can name (`bulwark/proposals/../../heads/main` is not).
            if id.hasPrefix(ProposalEngine.branchPrefix), !GitLibrary.isValidBranchName(id) {
                throw ValidationError("'\(quotedForMessage(id))' is not a branch name git takes")
            }
        }

        func run() async throws {
            let console = Console()
            if proposer != nil, repository.sourceVerification == nil {
                throw ValidationError("--proposer needs --trusted-signers or --trusted-keyring to check whose signature a proposal carries")
            }
            let policy = try PolicyRepository(try repository.configuration())
            let (head, stale) = try await policy.sync()
            if let stale { throw CommandError(stale) }
            let branch = id.hasPrefix(ProposalEngine.branchPrefix) ? id : ProposalEngine.branch(for: id)
            guard let tip = try await policy.fetchedBranch(branch) else { throw CommandError("no proposal \(branch) in \(repository.displayURL)") }
            let info = try await policy.commit(tip)
            switch info.trailer(AuditTrailer.proposal.rawValue) {
            case "proposed": break
            case "closed": throw CommandError("\(branch) is closed: its finding was resolved")
            default: throw CommandError("\(branch) is not an open proposal (its last commit has no Bulwark-Proposal: proposed)")
            }
            // A branch refused for what it holds is recorded on the audit branch (decision
            // `refused`, once per commit and reason): someone may have written it by hand.
            let checked: (shape: ProposalShape, before: [UInt8]?, proposed: [UInt8], now: DesiredState, citation: FindingCitation)
            do {
                checked = try await Self.check(branch, tip: info, head: head, in: policy, repository: repository, proposer: proposer)
            } catch let refusal as CommandError {
                await RevisionRefusal.record(of: info.id, errors: ["accept \(branch): \(refusal.description)"], in: policy, console: console,
                                             what: "acceptance refused; nothing was committed")
                throw refusal
            }
            let (shape, before, proposed, now, citation) = checked
            let path = shape.path
            let files = [path: proposed]
            console.print("Accepting \(branch): \(shape.change)")
            for line in ProposalShape.diff(before ?? [], proposed) { console.print("  " + line) }
            // A value the rule takes from the finding (`{{field}}`) is only as good as the branch:
            // without a signature to check, anyone who can push one could have chosen it.
            if repository.sourceVerification == nil, shape.takesValuesFromTheFinding(in: now), !reviewed {
                throw CommandError("\(branch) carries values its rule takes from the finding, and without --trusted-signers or "
                                   + "--trusted-keyring nothing shows Bulwark wrote them (anyone who can push a branch could have). "
                                   + "Read the diff above and run again with --reviewed, or check signatures (the daemon signing "
                                   + "proposals with --signing-key). Nothing was committed.")
            }
            guard let author = await policy.callerSignature() else {
                throw CommandError("no git identity: set user.name and user.email (git config) or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL")
            }
            let message = repository.sourceVerification != nil
                ? Self.signedMessage(info.message)
                : Self.unsignedMessage(shape, citation: citation)
            let signer = await policy.callerSigner()
            let commit = try await policy.commitPolicy(files, message: message, author: author, signer: signer,
                                                       verification: repository.sourceVerification)
            console.print("Accepted \(branch) as \(author.name) <\(author.email)>: committed to \(repository.branch) (\(commit.short))"
                          + (signer == nil ? ", unsigned." : ", signed."))
            console.print("The next `bulwark apply` (or the daemon) applies it.")
        }

        /// A proposal made before its file last changed on the policy branch: refused, not recorded.
        struct Stale: Error, CustomStringConvertible {
            var description: String
        }

        /// A proposal a trusted key signed keeps its message (its finding, evidence, priority,
        /// validation and plan), `propose(` made `accept(` and its proposal trailer `accepted`
        /// (matched as git matches trailer keys, in any case).
        static func signedMessage(_ message: String) -> String {
            let proposal = AuditTrailer.proposal.rawValue.lowercased() + ":"
            return message.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                line.lowercased().hasPrefix(proposal) ? "\(AuditTrailer.proposal.rawValue): accepted" : String(line)
            }.joined(separator: "\n").replacingOccurrences(of: "propose(", with: "accept(", options: .anchored)
        }

        /// An unsigned proposal's message is anyone's who can push a branch: only what `check`
        /// established is kept (the resource, the rule, the change, the finding its file cites);
        /// its other lines (evidence, priority, validation, plan) are not carried onto the branch.
        static func unsignedMessage(_ shape: ProposalShape, citation: FindingCitation) -> String {
            (["accept(\(shape.resource)): finding \(TerminalText.oneLine(citation.id))", "",
              "Rule: \(shape.rule)", "Change: \(shape.change)",
              "Accepted from an unsigned proposal after review of its diff: its other lines are not kept.", ""]
             + citation.trailers.map { "\($0.0.rawValue): \(TerminalText.oneLine($0.1))" }
             + ["\(AuditTrailer.proposal.rawValue): accepted"]).joined(separator: "\n") + "\n"
        }

        /// Whether the proposal's tip is what Bulwark proposes: one resource, in the one file its
        /// Change line names, as the rule in force writes it, nothing weaker, validating on the
        /// branch head, signed by a trusted key (the proposer's) when signatures are checked.
        /// Throws a `CommandError` saying why not (anyone who can push can name a branch so).
        static func check(_ branch: String, tip info: CommitInfo, head: ObjectID, in policy: PolicyRepository,
                          repository: RepositoryOptions, proposer: String?) async throws
            -> (shape: ProposalShape, before: [UInt8]?, proposed: [UInt8], now: DesiredState, citation: FindingCitation) {
            guard let base = info.parents.first else { throw CommandError("\(branch) has no base commit") }
            let tip = info.id
            let shape = try ProposalShape(message: info.message, branch: branch)
            let changed = try await policy.pathsChanged(by: info)
            guard changed == [shape.path] else {
                throw CommandError("\(branch) changes \(changed.isEmpty ? "nothing" : changed.joined(separator: ", ")); "
                                   + "a proposal changes only \(shape.path), the file its Change line names. Nothing was committed.")
            }
            if let verification = repository.sourceVerification {
                // A trusted key is not necessarily the proposer's: a person's key in the same
                // signers file could have written a branch shaped like a proposal.
                if case .failure(let untrusted) = await verification.signer(of: info, repository: policy, proposer: proposer) {
                    throw CommandError("\(branch)'s last commit (\(info.id.short)) is not signed by "
                                       + (proposer == nil ? "a trusted key" : "the proposer") + ": \(untrusted). Nothing was committed.")
                }
            }
            let path = shape.path
            let before = try await policy.file(at: base, path: path)
            guard before == (try await policy.file(at: head, path: path)) else {
                // Not a refusal of what the branch holds: the proposal is behind the policy.
                throw Stale(description: "the policy changed \(path) since the proposal was made; it is not merged over that change")
            }
            guard let proposed = try await policy.file(at: tip, path: path) else {
                throw CommandError("\(branch) removes \(path); proposals only change files")
            }
            // The policy with the proposal in it must still validate: another proposal accepted since
            // (two new resources setting one key on one target) would otherwise refuse every later revision.
            let current = try await policy.files(at: head)
            let merged = current.filter { $0.path != path } + [SourceFile(path: path, contents: proposed)]
            let loader = DesiredStateLoader(registry: Bulwark.registry())
            let now: DesiredState, after: DesiredState
            do {
                now = try loader.load(current, revision: Revision(head))
                after = try loader.load(merged, revision: Revision(head))
            } catch {
                throw CommandError("\(branch) does not validate on top of \(repository.branch) (\(head.short)); nothing was committed:\n"
                                   + error.errors.prefix(5).map { "  \($0)" }.joined(separator: "\n"))
            }
            let expected = try shape.expectedFile(in: now, base: before.map { String(decoding: $0, as: UTF8.self) },
                                                  proposed: String(decoding: proposed, as: UTF8.self),
                                                  finding: info.trailer(AuditTrailer.finding.rawValue))
            guard Array(expected.file.utf8) == proposed else {
                throw CommandError("\(branch) is not merged: its \(path) is not what rule \(shape.rule) writes for \(shape.resource) "
                                   + "(someone changed it by hand, or wrote the branch). Nothing was committed.")
            }
            if let problem = shape.problem(from: now, to: after, registry: Bulwark.registry()) {
                throw CommandError("\(branch) is not merged: \(problem). Nothing was committed.")
            }
            return (shape, before, proposed, now, expected.citation)
        }
    }
}
