package import BulwarkCore
package import BulwarkGit
import Foundation

/// What the engine needs to know about its repository, resolved once by the command line
/// (flags, environment, defaults) and handed down: the runtime never reads flags itself.
package struct RuntimeOptions: Sendable {
    /// Where the policy lives, which branches, the state folder, the author, the access.
    package var configuration: PolicyRepository.Configuration
    /// The repository's URL as messages show it (any password replaced).
    package var displayURL: String
    /// Signature verification of the policy, when a trusted signers file is given.
    package var sourceVerification: SourceVerification?
    /// The kinds and adapters this build knows.
    package var registry: Registry
    /// A host agent's selection (`run --self`, `--target`): only the bindings of its targets are
    /// reconciled, chosen afresh for every revision. `.all`: every target.
    package var agent: AgentSelection = .all
    /// A controller replica's leases (`run --controller`): only the non-host targets it holds
    /// are reconciled, each change fenced by its lease. Nil: no leases.
    package var leases: LeaseKeeper? = nil
    /// Where a verified push webhook is relayed (`run --webhook-relay-file`). Nil: nowhere.
    package var webhookRelay: WebhookRelay? = nil

    package init(configuration: PolicyRepository.Configuration, displayURL: String,
                 sourceVerification: SourceVerification?, registry: Registry) {
        self.configuration = configuration
        self.displayURL = displayURL
        self.sourceVerification = sourceVerification
        self.registry = registry
    }

    package var stateDirectory: String { configuration.stateDirectory }
}

/// The record of a refused revision, committed once per revision and errors and pushed, so
/// that `git log` explains why nothing happened.
package enum RevisionRefusal {
    /// A refusal's record after this run: committed now (`entry`) or by an earlier run (nil),
    /// and what pushing achieved (a push that failed outright: kept locally, with why). An
    /// earlier run's record that could not be pushed goes out now, as a new one would.
    package struct Recorded: Sendable {
        package var entry: (record: AuditRecord, commit: String)?
        package var publication: PolicyRepository.Publication
    }

    /// Commits the refusal's record (once per revision and errors) and pushes what waits; nil
    /// when it could not be committed (a warning says why).
    @discardableResult
    package static func record(of head: ObjectID, errors: [String], in repository: PolicyRepository,
                               console: Console, what: String = AuditRecord.revisionRefused) async -> Recorded? {
        await record(AuditRecord.refusal(revision: Revision(head), errors: errors, at: Date(), what: what), in: repository, console: console)
    }

    /// Commits a refusal's record unless the audit branch holds its id already, and pushes what
    /// waits; nil when it could not be committed (a warning says why).
    @discardableResult
    package static func record(_ record: AuditRecord, in repository: PolicyRepository, console: Console) async -> Recorded? {
        var entry: (record: AuditRecord, commit: String)?
        do {
            if try await !repository.contains(recordID: record.id) {
                entry = (record, try await repository.write(record))
            }
        } catch {
            console.warn("cannot record the refusal on the audit branch: \(error)")
            return nil
        }
        let publication: PolicyRepository.Publication
        do {
            publication = try await repository.publish()
        } catch {
            publication = .keptLocally(commits: entry == nil ? 0 : 1, reason: "\(error)")
        }
        if case .keptLocally(let count, let reason, _) = publication, count > 0 {
            console.warn("the refusal record is kept locally and pushed on the next run: \(reason)")
        }
        return Recorded(entry: entry, publication: publication)
    }
}
