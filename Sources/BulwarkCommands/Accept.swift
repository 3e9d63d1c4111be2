internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Accept: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Merge a finding's proposal (bulwark/proposals/<ID>) into the policy branch, as your commit.",
            discussion: """
                The files the proposal changes are committed to the policy branch with your git identity (and your \
                signature when git is set up to sign), carrying the proposal's message and trailers. Refused when the \
                proposal is closed or the policy changed those files since it was made. The next pass applies it under \
                every guard, limit and window.
                """)

        @Argument(help: "The finding's id (the part after bulwark/proposals/).")
        var id: String

        @OptionGroup var repository: RepositoryOptions

        func run() async throws {
            let console = Console()
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
            guard let base = info.parents.first else { throw CommandError("\(branch) has no base commit") }
            var files: [String: [UInt8]] = [:]
            for path in try await policy.pathsChanged(by: info) {
                let before = try await policy.file(at: base, path: path)
                let now = try await policy.file(at: head, path: path)
                guard before == now else {
                    throw CommandError("the policy changed \(path) since the proposal was made; it is not merged over that change")
                }
                guard let proposed = try await policy.file(at: tip, path: path) else {
                    throw CommandError("\(branch) removes \(path); proposals only change files")
                }
                files[path] = proposed
            }
            // The policy with the proposal in it must still validate: another proposal accepted since
            // (two new resources setting one key on one target) would otherwise refuse every later revision.
            var merged = try await policy.files(at: head)
            for (path, bytes) in files {
                merged.removeAll { $0.path == path }
                merged.append(SourceFile(path: path, contents: bytes))
            }
            do {
                _ = try DesiredStateLoader(registry: Bulwark.registry()).load(merged, revision: Revision(head))
            } catch {
                throw CommandError("\(branch) does not validate on top of \(repository.branch) (\(head.short)); nothing was committed:\n"
                                   + error.errors.prefix(5).map { "  \($0)" }.joined(separator: "\n"))
            }
            guard let author = await policy.callerSignature() else {
                throw CommandError("no git identity: set user.name and user.email (git config) or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL")
            }
            let message = info.message.replacingOccurrences(of: "\(AuditTrailer.proposal.rawValue): proposed",
                                                           with: "\(AuditTrailer.proposal.rawValue): accepted")
                .replacingOccurrences(of: "propose(", with: "accept(", options: .anchored)
            let signer = await policy.callerSigner()
            let commit = try await policy.commitPolicy(files, message: message, author: author, signer: signer)
            console.print("Accepted \(branch) as \(author.name) <\(author.email)>: committed to \(repository.branch) (\(commit.short))"
                          + (signer == nil ? ", unsigned." : ", signed."))
            console.print("The next `bulwark apply` (or the daemon) applies it.")
        }
    }
}
