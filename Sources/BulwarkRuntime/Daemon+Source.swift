import BulwarkCore
import BulwarkGit
import BulwarkServer
import Foundation
import Logging
import Metrics
import Prometheus
import Synchronization

/// The revision in force: fetched, verified, loaded and bound; a refused one is recorded and the
/// last good one stays. The audit history the status page and the budget start from.
extension Daemon {
    /// Fetches and loads the head revision; returns whether a new good revision is in force. An
    /// invalid revision is refused and reported; the last good one stays.
    func sync() async -> Bool {
        sourceChecking()
        defer {
            scheduler.sourceChecked(at: clock.now())
            sourceChecked()
        }
        if !synced {
            for repair in await repository.repairs { logger.warning("state directory repaired", metadata: ["repair": .string(repair)]) }
            for held in await repository.heldAside { logger.error("audit records not carried over", metadata: ["aside": .string(held)]) }
        }
        // A revision whose desired values change with time (a quarantine that ends) is read
        // again when they do, though no commit came.
        let changesAt = self.changesAt
        let due = changesAt.map { clock.wall() >= $0 && reloadedFor != $0 } ?? false
        // Polling asks where the branches are first, and fetches only when one moved.
        // Audit commits kept locally: the origin is asked again at every poll, and they are
        // pushed as soon as it answers (not at the next cycle, up to a controller's interval later).
        if synced, sourceError == nil, health.unpushed == nil, !due, !(await repository.remoteMoved()) { return false }
        do {
            let newHead: ObjectID
            do {
                let (fetched, stale) = try await repository.sync()
                newHead = fetched
                if let stale {
                    logger.warning("source", metadata: ["problem": .string(stale)])
                    fetchFailed(stale)
                } else {
                    health.fetched()
                    sourceError = refusal
                }
            } catch {
                fetchFailed("\(error)")
                throw error
            }
            for foreign in await repository.takeForeignCommits() {
                logger.warning("foreign commits on the audit branch", metadata: ["problem": .string(foreign)])
            }
            let tampering = await repository.takeTampering()
            for problem in tampering {
                logger.error("the audit branch on the origin was tampered with", metadata: ["problem": .string(problem)])
                meters.auditTampered()
            }
            await trailChecked()
            // The record of it, and the records the origin lost, go out now rather than after the
            // next cycle; so do records kept locally, once the origin could be fetched again.
            if !tampering.isEmpty || (health.fetchFailing == nil && health.unpushed != nil) {
                do {
                    await published(try await repository.publish())
                } catch {
                    logger.warning("audit commits kept locally; pushed on a later poll", metadata: ["reason": .string("\(error)")])
                }
            }
            synced = true
            guard newHead != head || due else {
                if refusal != nil { refusedRevisionGone() }
                return false
            }
            // The same revision read again at an expiry: verified when it came, not again (a
            // signer whose validity ended since would refuse the revision in force every poll).
            let again = newHead == head
            if again { reloadedFor = changesAt }
            let files = try await repository.files(at: newHead)
            do {
                if !again, let verification = options.sourceVerification {
                    let outcome = try await verification.verify(head: newHead, repository: repository, stateDirectory: options.stateDirectory)
                    if let note = outcome.note { logger.warning("source", metadata: ["signatures": .string(note)]) }
                }
                let now = clock.wall()
                var loaded = try DesiredStateLoader(registry: registry, now: now).load(files, revision: Revision(newHead))
                for warning in loaded.warnings { logger.warning("manifest", metadata: ["warning": .string(warning.description)]) }
                let provenance = await Provenance.establish(&loaded, head: newHead, repository: repository, registry: registry,
                                                            stateDirectory: options.stateDirectory,
                                                            verification: options.sourceVerification, now: now)
                if let note = provenance.note { logger.warning("weakening", metadata: ["baseline": .string(note)]) }
                await provenance.recordRefusals(head: newHead, in: repository, console: Console())
                // A host agent's targets, for this revision: one it newly binds to the host is taken at once.
                if let owned = options.agent.select(&loaded) {
                    if owned.isEmpty {
                        logger.warning("no target of this revision is bound to this agent: it reconciles nothing until one is",
                                       metadata: ["revision": .string(newHead.short)])
                    } else {
                        logger.info("agent targets", metadata: ["targets": .string(owned.sorted().joined(separator: ","))])
                    }
                }
                // A controller replica shares the targets no host agent owns.
                options.leases?.setCandidates(Set(loaded.targets.values.filter { !$0.isMachineLocal }.map(\.name)))
                // Intents a killed process left open are resolved and recorded before anything acts.
                if !recovered {
                    do {
                        if let leases = options.leases {
                            let shared = Set(loaded.targets.values.filter { !$0.isMachineLocal }.map(\.name))
                            _ = try await LeaseRecovery.resolve(journal: journal, shared: shared, audit: repository, replica: leases.replica)
                        }
                        let log = logger
                        let untried: (AuditRecord) -> Void = { record in
                            log.notice("closed an intent of an earlier run that was never carried out (found as it was)",
                                       metadata: ["target": .string(record.target), "resource": .string(record.resource)])
                        }
                        let registry = reconciler.registry
                        let earlier: (Revision) async -> DesiredState? = { [repository] in await repository.desiredState(at: $0, registry: registry) }
                        for entry in try await reconciler.recover(journal: journal, state: loaded, audit: repository, earlier: earlier,
                                                                  onUntried: untried) {
                            logger.warning("recorded an interrupted fix of an earlier run",
                                           metadata: ["target": .string(entry.record.target), "resource": .string(entry.record.resource),
                                                      "result": .string(entry.record.result?.rawValue ?? "-")])
                        }
                        if let damage = await journal.damage {
                            logger.error("the intent journal could not be read whole", metadata: ["error": .string(damage)])
                        }
                        recovered = true
                    } catch {
                        sourceError = "cannot resolve the open intents in \(options.stateDirectory)/intents.log: \(error); nothing is changed until it can"
                        logger.error("open intents cannot be resolved; nothing is changed", metadata: ["error": .string("\(error)")])
                        return false
                    }
                }
                self.provenance = provenance
                meters.revision(newHead.hex, state: loaded)
                state = loaded
                self.changesAt = loaded.changesAt
                head = newHead
                health.keep(only: Set(loaded.bindings))
                flapHistory.invalidate()
                sourceError = nil
                refusal = nil
                loggedRefusal = nil
                pausedFromRefused = false
                failedFixes = [:]
                findings.withLock { $0 = FindingIndex(state: loaded) }
                notifiers = loaded.notifiers
                do {
                    outbox = notifiers.isEmpty ? nil : try Outbox(stateDirectory: options.stateDirectory, notifiers: notifiers)
                } catch {
                    outbox = nil
                    logger.error("notifications disabled: the outbox cannot be created", metadata: ["error": .string("\(error)")])
                }
                scheduler.restart(at: clock.now(), intervals: loaded.controllers.mapValues(\.interval))
                watchIndex = index(loaded)
                watcher?.watch(watchIndex.paths)
                logger.info("revision in force", metadata: ["revision": .string(newHead.short),
                                                            "bindings": .stringConvertible(loaded.bindings.count),
                                                            "watchedFolders": .stringConvertible(watcher?.watchedFolders ?? 0)])
                if history.isEmpty { await loadHistory() }
                return true
            } catch {
                sourceError = "revision \(newHead.short) refused: \(error)"
                refusal = "revision \(newHead.short) refused: \(error)"
                let errors = (error as? ValidationFailure)?.errors.map(\.description)
                    ?? (error as? SourceVerification.Refusal)?.problems ?? ["\(error)"]
                await RevisionRefusal.record(of: newHead, errors: errors, in: repository, console: Console())
                // Checked again at every poll (a signers file put right lets it in), logged once.
                if loggedRefusal != refusal {
                    logger.error("revision refused; the last good revision stays in force",
                                 metadata: ["revision": .string(newHead.short), "errors": .string("\(error)")])
                    loggedRefusal = refusal
                }
                await brake(fromRefused: newHead)
                return false
            }
        } catch {
            sourceError = Redaction.urls(in: "\(error)")
            logger.error("source sync failed", metadata: ["error": .string(Redaction.urls(in: "\(error)"))])
            return false
        }
    }

    /// A fetch of the origin failed: counted, shown in the status, and past `Settings.staleAfter`
    /// on `/readyz` (the last fetched revision stays in force meanwhile).
    func fetchFailed(_ reason: String) {
        let shown = Redaction.urls(in: reason)
        meters.sourceFetchFailed()
        health.fetchFailed(shown, at: clock.now(), wall: clock.wall())
        sourceError = shown
    }

    func loadHistory() async {
        guard var commits = try? await repository.auditHistory(limit: 10_000) else { return }
        // With a key to check against, only records a trusted key signed count: a forged record
        // claiming a fast fix, or many applied ones that use up a controller's change budget.
        if let split = await RecordTrust.split(commits, in: repository, verification: options.sourceVerification) {
            if !split.untrusted.isEmpty {
                logger.warning("audit records no trusted key signed are left out of MTTR and the change budget",
                               metadata: ["records": .stringConvertible(split.untrusted.count)])
            }
            commits = split.trusted
        }
        let entries = await repository.reportEntries(commits.reversed())
        history = MTTRHistory(entries)
        // A restart does not renew the controllers' budgets: fixes of the last interval count.
        for entry in entries where entry.decision == .applied {
            budget.record(controller: entry.controller, target: entry.target, at: clock.instant(ofWall: entry.verifiedAt ?? entry.detectedAt))
        }
    }
}

extension Daemon {
    /// The branch is back at the revision in force (the refused commits were pushed away): the
    /// refusal no longer stands, and `/readyz` stopped saying so only when another commit came.
    func refusedRevisionGone() {
        logger.notice("the refused revision is no longer on the branch; the revision in force is its head again",
                      metadata: ["revision": .string(head?.short ?? "-")])
        if sourceError == refusal { sourceError = nil }
        refusal = nil
        loggedRefusal = nil
        if pausedFromRefused {
            state?.pause = nil
            pausedFromRefused = false
            pendingAll = true
        }
    }

    /// The emergency brake works while the branch is refused. A refused revision (an unsigned
    /// commit below it, an invalid manifest) held back every commit after it, `bulwark pause`'s
    /// among them: the daemon went on changing systems under the revision in force while `pause`
    /// had said that every daemon stops. A refused revision may add a pause and nothing else: its
    /// `controllers/pause.yaml` is honoured as written by the newest commit that wrote it and is
    /// trusted on its own (signed by a trusted key the trust policy lets change it, when
    /// signatures are verified), and that the revision in force does not already hold. It never
    /// lifts the revision in force's own pause; a later refused revision without a trusted pause
    /// lifts only the one it added.
    func brake(fromRefused refused: ObjectID) async {
        guard state?.pause == nil || pausedFromRefused else { return }
        if let pause = await trustedPause(at: refused) {
            if !pausedFromRefused {
                logger.warning("paused by a trusted commit of a refused revision: nothing is changed until it is resumed or a revision comes into force",
                               metadata: ["revision": .string(refused.short),
                                                                         "by": .string(pause.by ?? "-"),
                                                                         "reason": .string(pause.reason)])
            }
            state?.pause = pause
            pausedFromRefused = true
        } else if pausedFromRefused {
            logger.notice("the pause of a refused revision is no longer there; the revision in force applies again",
                          metadata: ["revision": .string(refused.short)])
            state?.pause = nil
            pausedFromRefused = false
            // What waited is observed again now, not at each controller's next interval.
            pendingAll = true
        }
    }

    /// The pause `controllers/pause.yaml` holds as the newest trusted commit from `head` that
    /// wrote it left it, when it pauses and the revision in force does not hold that commit.
    private func trustedPause(at head: ObjectID) async -> Pause? {
        let path = "controllers/pause.yaml"
        var from = head
        // At most a few untrusted writers are passed over: each is a signature check.
        for _ in 0..<8 {
            guard let writer = try? await repository.commitWriting(path, from: from) else { return nil }
            let problem = await options.sourceVerification?.problem(with: writer, repository: repository)
            guard problem != nil else {
                if let inForce = self.head, await repository.isAncestorOrEqual(writer.id, of: inForce) { return nil }
                guard let bytes = try? await repository.file(at: writer.id, path: path),
                      let loaded = try? DesiredStateLoader(registry: registry, now: clock.wall())
                          .load([SourceFile(path: path, contents: bytes)], revision: Revision(writer.id)),
                      var pause = loaded.pause else { return nil }
                pause.by = "\(writer.author.name) <\(writer.author.email)>"
                return pause
            }
            guard let parent = writer.parents.first else { return nil }
            from = parent
        }
        return nil
    }
}
