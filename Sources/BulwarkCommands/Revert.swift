internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Revert: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revert",
            abstract: "Undo one verified fix: restore the values observed before it and commit a waiver so the next pass leaves them.",
            discussion: """
                Only a record with decision applied and result verified can be reverted, and only when every \
                value it changed can be put back: a property that was unset before, or a sensitive (redacted) \
                value, is refused. The kind's safety guards judge the revert as they judge a fix: a revert that \
                would lock people out is refused. Order: the waiver waivers/revert-<id>.yaml is committed to \
                the policy branch first (owner: your git identity), then the values are restored and observed \
                again, then an applied record whose reason says `revert of <ID>` is committed to the audit branch. \
                With --signing-key, --trusted-signers or --trusted-keyring, the record's commit must be signed \
                by this Bulwark's signing key or a trusted signer: anyone who can push can write a record. \
                Refused while changes are paused (`bulwark pause`). Every refusal once the arguments are read (an \
                unknown or untrusted id, a record that is no verified fix, a pause, a guard) leaves a refused record \
                on the audit branch, once per id and reason. \
                Exit codes: 0 restored and verified, 1 refused (nothing changed) or not verified.
                """)

        // Ids are ULIDs, whose letters are read in either case (waiver files name them in lowercase).
        @Argument(help: "The Bulwark-Id of the verified fix to undo (the last field of its line in `bulwark log`).", transform: { $0.uppercased() })
        var id: String

        @OptionGroup var repository: RepositoryOptions

        @Option(help: "Why the fix is undone (recorded in the waiver and the audit record).")
        var reason: String

        @Option(help: "The last day the waiver keeps the restored values (YYYY-MM-DD, at most a year ahead).")
        var expires: String

        func validate() throws {
            guard id.count == 26, id.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber) }) else {
                throw ValidationError("'\(id)' is not a Bulwark-Id (26 characters, such as 01JD3M...)")
            }
            // The reason goes into a YAML manifest: a control character there would make the loader
            // refuse the whole revision.
            try checkReason(reason)
            try checkDay(expires, option: "--expires")
        }

        /// The waiver's last day, checked as the loader checks it (exit 1, before anything is read or written).
        func expiryDay(now: Date) throws -> String {
            guard let end = DesiredStateLoader.endOfDay(expires) else {
                throw CommandError("--expires takes a date such as 2027-01-31, got '\(expires)'; nothing was changed")
            }
            guard end > now else { throw CommandError("--expires \(expires) is in the past; nothing was changed") }
            // The loader refuses a waiver that lasts more than a year (366 days from now).
            guard end <= now.addingTimeInterval(366 * 86_400) else {
                throw CommandError("--expires \(expires) is more than a year ahead; a waiver may last at most a year; nothing was changed")
            }
            // Written back in one form, whatever the parser accepted.
            return end.addingTimeInterval(-1).formatted(Date.ISO8601FormatStyle().year().month().day())
        }

        func run() async throws {
            let console = Console()
            // The arguments alone (a date in the past or too far ahead): a usage error, before
            // anything is read; no record.
            let expires = try expiryDay(now: Date())
            let loaded = try await repository.load(console: console, writesRecords: true)
            let policy = loaded.repository
            let author = await policy.callerSignature()
            let person = author.map { "\($0.name) <\($0.email)>" } ?? "an unknown git identity"
            // From here on every refusal is of a change someone asked for on a system (the id names
            // a fix and its target): in git, as a guard's block of a fix is, once per id and reason
            // (`refusedCommand`), naming the fix's resource and target once the record is read.
            func refused(_ message: String, of original: AuditRecord? = nil, key: String? = nil,
                         changes: [AuditRecord.Change] = []) async -> CommandError {
                let record = AuditRecord.refusedCommand(
                    ["revert", id, key ?? message], controller: original?.controller ?? AuditRecord.noTarget,
                    target: original?.target ?? AuditRecord.noTarget, resource: original?.resource ?? "Revert/\(id)",
                    severity: original?.severity ?? .high, reason: "bulwark revert \(id) by \(person): \(message)",
                    changes: changes, revision: Revision(loaded.head), at: Date())
                await RevisionRefusal.record(record, in: policy, console: console)
                return CommandError(message)
            }
            let trust = await RecordTrust.of(policy, verification: repository.sourceVerification)
            let original: AuditRecord
            do {
                original = try await Self.record(id, in: policy, stateDirectory: repository.stateDirectory,
                                                 auditBranch: repository.auditBranch, trust: trust)
            } catch let error as CommandError {
                // No record with the id, one no trusted key signed, or one Bulwark did not write.
                throw await refused(error.description)
            }
            // The emergency brake holds every change Bulwark makes, an operator's undo too.
            if let pause = loaded.state.pause {
                throw await refused("changes are paused\(pause.by.map { " by \($0)" } ?? ""): \(pause.reason); nothing was changed. "
                                    + "Run `bulwark resume` first if this revert must happen now.", of: original)
            }
            guard original.decision == .applied, original.result == .verified else {
                throw await refused("\(id) is a \(original.decision.rawValue) record (result \(original.result?.rawValue ?? "none")) "
                                    + "of \(original.resource) on \(original.target); only a verified applied fix can be reverted",
                                    of: original)
            }
            if let earlier = try await Self.revertRecord(of: id, in: policy, trust: trust) {
                throw await refused("\(id) was already reverted (record \(earlier)); nothing was changed", of: original)
            }
            guard original.reason?.hasPrefix(Self.reasonPrefix) != true else {
                let reverted = original.reason?.dropFirst(Self.reasonPrefix.count).prefix(26).lowercased() ?? ""
                throw await refused("\(id) is itself a revert; to let the next pass fix \(original.resource) again, "
                                    + "remove waivers/revert-\(reverted).yaml from \(repository.branch)", of: original)
            }
            let resourceID = ResourceID(kind: original.kind, name: original.name)
            guard let resource = loaded.state.resources[resourceID], let target = loaded.state.targets[original.target],
                  let kind = Bulwark.registry().kinds[original.kind] else {
                throw await refused("\(original.resource) on \(original.target) is no longer in the desired state of "
                                    + "\(loaded.head.short); nothing was changed", of: original, key: "not in the desired state")
            }
            let restore: [(property: String, value: String)]
            do {
                restore = try Self.restorable(original, sensitive: Set(resource.spec.properties.filter(\.sensitive).map(\.name)))
            } catch let error as CommandError {
                throw await refused(error.description, of: original)
            }
            // Who asks must be known before anything is written (the waiver's owner): an error of
            // this machine's set-up, not a refusal of the change; no record.
            guard let author else {
                throw CommandError("no git identity: set user.name and user.email (git config) or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL")
            }

            // What the target's exclusive claim is now (a network namespace's device and inode),
            // before it is observed: the write checks it is still so (`PlannedTargets`), as a pass's
            // fix does, so that a name re-bound meanwhile never takes the write elsewhere.
            let identities = Reconciler.targetIdentities(of: [target])
            // Observe first: the revert changes what is there now into what was there before.
            let current = try await kind.driver.observe(resource, on: target)
            var changes: [PropertyDrift] = []
            for (property, value) in restore {
                guard let observed = current.values[property] else {
                    throw await refused("\(property) of \(original.resource) does not apply on \(original.target) any more; "
                                        + "nothing was changed", of: original)
                }
                changes.append(PropertyDrift(property: property, desired: value, observed: observed))
            }
            let toApply = changes.filter { $0.observed != $0.desired }
            // A value the driver does not write (a record's `(changed by hand)`) is refused before
            // anything is committed: the waiver went first, and stayed for a revert that never was.
            do {
                try kind.driver.checkWritable(toApply, to: resource)
            } catch {
                throw await refused("the revert of \(id) is refused, nothing was changed: \(error)", of: original,
                                    key: "a value the driver does not write",
                                    changes: toApply.map { .init(property: $0.property, desired: $0.desired, observedBefore: $0.observed, observedAfter: nil) })
            }
            // A revert must not lock anyone out either: the kind's guards judge it like a fix.
            if !toApply.isEmpty, let block = await kind.driver.assess(toApply, to: resource, on: target).blockReason {
                // Once per record reverted and block.
                throw await refused("the safety guard of \(original.kind) refuses the revert of \(id): \(block); nothing was changed",
                                    of: original, key: block,
                                    changes: toApply.map { .init(property: $0.property, desired: $0.desired, observedBefore: $0.observed, observedAfter: nil) })
            }

            // The waiver goes first, so that a pass running meanwhile does not redo the fix.
            let path = "waivers/revert-\(id.lowercased()).yaml"
            if try await policy.files(at: loaded.head).contains(where: { $0.path == path }) {
                console.warn("\(path) is already on \(repository.branch) (an earlier revert stopped before its record); using it")
            } else {
                let waiver = Self.waiver(of: original, id: id, properties: restore.map(\.property), reason: reason, owner: person,
                                         expires: expires)
                let commit = try await policy.commitPolicy(
                    [path: Array(waiver.utf8)],
                    message: "waive(\(original.resource)): \(original.target) reverted\n\n\(reason)\n\n\(AuditTrailer.reverts.rawValue): \(id)\n",
                    author: author, signer: await policy.callerSigner(), verification: repository.sourceVerification)
                console.print("Committed \(path) to \(repository.branch) (\(commit.short)), owner \(person), until \(expires).")
            }

            let reconciler = Reconciler(registry: Bulwark.registry())
            let now = reconciler.clock()
            var record = AuditRecord(
                id: AuditID.ulid(at: now), controller: original.controller, target: original.target,
                resource: original.resource, kind: original.kind, name: original.name, severity: original.severity,
                risk: original.risk, mode: original.mode, decision: .applied, result: nil,
                reason: "\(Self.reasonPrefix)\(id) by \(person): \(reason)",
                changes: changes.map { .init(property: $0.property, desired: $0.desired, observedBefore: $0.observed, observedAfter: nil) },
                detectedAt: current.observedAt, appliedAt: nil, verifiedAt: nil,
                desiredCommit: Revision(loaded.head), approver: person, error: nil)
            record.baseline = loaded.state.acceptedBaseline
            record.reverts = id
            // The intent is journaled like a fix's: a revert killed midway is recorded by the next pass.
            let journal = FileJournal(stateDirectory: repository.stateDirectory)
            try await journal.begin(record)
            try await journal.trying([record.id])
            do {
                if !toApply.isEmpty {
                    try await PlannedTargets.$identities.withValue(identities) {
                        try await kind.driver.apply(toApply, to: resource, on: target)
                    }
                }
                record.appliedAt = reconciler.clock()
                let after = try await kind.driver.observe(resource, on: target)
                var wrong: [String] = []
                for index in record.changes.indices {
                    let observed = after.values[record.changes[index].property] ?? nil
                    record.changes[index].observedAfter = observed
                    if observed != record.changes[index].desired {
                        wrong.append("\(record.changes[index].property) is \(observed ?? "(unset)")")
                    }
                }
                if wrong.isEmpty {
                    record.result = .verified
                    record.verifiedAt = reconciler.clock()
                } else {
                    record.result = .failed
                    record.error = "revert did not hold: " + wrong.joined(separator: ", ")
                }
            } catch {
                record.appliedAt = record.appliedAt ?? reconciler.clock()
                record.result = .failed
                record.error = "revert failed: \(error)"
            }
            let commit = try await policy.write(record)
            try? await journal.end(record.id)
            if case .keptLocally(_, let why, _) = try await policy.publish() {
                console.warn("the audit record is kept locally and pushed on the next run: \(why)")
            }
            for change in record.changes {
                console.print("reverted \(record.resource) on \(record.target): \(change.property) "
                              + "\(change.observedBefore ?? "(unset)") -> \(change.desired), now \(change.observedAfter ?? "(unset)")")
            }
            guard record.result == .verified else {
                throw CommandError("the revert of \(id) did not verify (record \(record.id), \(String(commit.prefix(12)))): \(record.error ?? "")")
            }
            console.print("Reverted \(id) as \(person): record \(record.id) on \(repository.auditBranch) (\(commit.prefix(12))); "
                          + "waived until \(expires).")
        }

        static let reasonPrefix = "revert of "

        /// The values a fix's record lets be put back, property by property; throws (naming the
        /// property and why) when any cannot: a sensitive value is only recorded redacted, and a
        /// property that was unset cannot be unset again by a driver that sets values.
        static func restorable(_ record: AuditRecord, sensitive: Set<String>) throws -> [(property: String, value: String)] {
            var restore: [(property: String, value: String)] = []
            for change in record.changes {
                // Redacted anywhere in the value (a token inside a mapping, `"[redacted]"` quoted
                // as a file's typed value, a URL's `<redacted>` password): putting it back would
                // write the placeholder into the system.
                let redacted = [change.observedBefore ?? "", change.desired].contains { $0.contains("[redacted]") || $0.contains(Redaction.placeholder) }
                if sensitive.contains(change.property) || redacted {
                    throw CommandError("\(change.property) of \(record.resource) is sensitive: its value before the fix was "
                                       + "never recorded (only [redacted]), so it cannot be restored; nothing was changed")
                }
                guard let before = change.observedBefore else {
                    throw CommandError("\(change.property) of \(record.resource) was unset before the fix; Bulwark sets values "
                                       + "and cannot unset one, so it cannot be restored; nothing was changed")
                }
                restore.append((change.property, before))
            }
            guard !restore.isEmpty else { throw CommandError("\(record.id) changed nothing; there is nothing to revert") }
            return restore
        }

        /// The audit record `id` as it was committed (its JSON on the audit branch, the newest commit carrying the id).
        /// With `trust`, the newest commit carrying it that a trusted key signed: the values a
        /// revert puts back come from the record, and anyone who can push can write one, with
        /// the same id too (`RecordTrust`). Newer ones passed over are named in a warning.
        static func record(_ id: String, in policy: PolicyRepository, stateDirectory: String, auditBranch: String,
                           trust: RecordTrust?) async throws -> AuditRecord {
            let carrying = try await policy.auditHistory().filter { $0.trailer(.id) == id }
            guard var commit = carrying.first else { throw CommandError("no audit record with id \(id) in \(auditBranch)") }
            if let trust {
                let (trusted, passedOver) = await trust.newest(of: carrying, in: policy)
                guard let trusted else {
                    throw CommandError("the audit record \(id) cannot be reverted: \(passedOver.first ?? "no trusted key signed it"). "
                                       + "The values it would restore are only as trustworthy as whoever pushed it; nothing was changed")
                }
                for problem in passedOver {
                    Console().warn("a newer commit with the audit record \(id) is passed over: \(problem)")
                }
                commit = trusted
            }
            guard let detected = commit.trailer(.detectedAt) else {
                throw CommandError("the audit record \(id) in \(commit.id.short) has no \(AuditTrailer.detectedAt.rawValue)")
            }
            // A read-only handle on the clone PolicyRepository holds (its lock is held by this process).
            let clone = try Repository.open(at: stateDirectory + "/repository.git")
            guard let bytes = try clone.auditRecordFile(at: commit.id, id: id, detectedAt: detected)?.bytes else {
                throw CommandError("the audit record \(id) has no \(AuditRecord.path(id: id, detectedAt: detected)) "
                                   + "(nor \(AuditRecord.legacyPath(id: id, detectedAt: detected))) in \(commit.id.short)")
            }
            let record: AuditRecord
            do {
                record = try AuditRecord(json: bytes)
            } catch {
                throw CommandError("cannot read the audit record \(id) in \(commit.id.short): \(error)")
            }
            // Its names go into the waiver and the commit messages: they must be the ones its
            // commit shows and the loader could have made, never text shaped as YAML or trailers.
            guard record.id == id, record.resource == "\(record.kind)/\(record.name)",
                  commit.trailer(.resource) == record.resource, commit.trailer(.target) == record.target else {
                throw CommandError("the audit record \(id) in \(commit.id.short) does not match its commit (its id, resource or "
                                   + "target differs from the commit's trailers, or its resource is not kind/name); "
                                   + "it is not one Bulwark wrote, and nothing was changed")
            }
            return record
        }

        /// The id of a record that already reverted `id`, if any; with `trust`, only a record a
        /// trusted key signed counts, so that a made-up one cannot stop a revert.
        static func revertRecord(of id: String, in policy: PolicyRepository, trust: RecordTrust?) async throws -> String? {
            let reverts = try await policy.auditHistory().filter {
                $0.trailer(.decision) == Decision.applied.rawValue && $0.message.contains("Reason: \(reasonPrefix)\(id) by ")
            }
            guard let trust else { return reverts.first?.trailer(.id) }
            let (trusted, passedOver) = await trust.newest(of: reverts, in: policy)
            for problem in passedOver { Console().warn("a record of a revert of \(id) is passed over: \(problem)") }
            return trusted?.trailer(.id)
        }

        /// The waiver manifest: one `Waiver` document per restored property, for that resource on that target only.
        static func waiver(of record: AuditRecord, id: String, properties: [String], reason: String, owner: String,
                           expires: String) -> String {
            let quoted = YAML.doubleQuoted
            let base = "revert-\(id.lowercased())"
            return properties.enumerated().map { index, property in
                """
                # Written by `bulwark revert \(id)`: \(YAML.commentText("\(record.resource) on \(record.target)")) keeps its value from before that fix.
                apiVersion: bulwark/v1
                kind: Waiver
                metadata: {name: \(properties.count == 1 ? base : "\(base)-\(index + 1)")}
                spec:
                  match:
                    kind: \(quoted(record.kind))
                    resource: \(quoted(record.name))
                    property: \(quoted(property))
                    targets: [\(quoted(record.target))]
                  reason: \(quoted("revert of \(id): \(reason)"))
                  owner: \(quoted(owner))
                  expires: \(expires)

                """
            }.joined(separator: "---\n")
        }
    }
}
