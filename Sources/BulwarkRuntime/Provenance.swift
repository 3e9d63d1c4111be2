package import BulwarkCore
package import BulwarkGit
package import Foundation

/// What git says about a revision beyond its files: who really approved each approval, which
/// approvals were already used, and which resources were weakened since the last applied
/// revision, by whom. Established once per loaded revision, before planning.
package struct Provenance: Sendable {
    package init() {}

    /// Resources moved in the less secure direction since the baseline, with their authors.
    package var weakened: [ResourceID: Weakening] = [:]
    /// Approvals dropped because they cannot be trusted, with the reason (recorded as `refused`).
    package var refusedApprovals: [(id: String, reason: String)] = []
    /// Approvals dropped because a fix already used them.
    package var consumedApprovals: [String] = []
    /// The revision the weakening check compared with; nil when it compared with nothing (see `note`).
    package var baseline: ObjectID?
    /// Said to the operator when no applied revision was found and the revision was judged
    /// against `--initial-revision` or as all new.
    package var note: String?
    /// The retired claims to keep once this revision becomes the baseline (`Weakening.Claim.retiring`);
    /// nil when they stay as they are (no baseline, or this revision is it).
    package var retiredNext: [Weakening.Claim: Set<String>]?

    /// The file in the state directory that holds the last revision applied without a pending weakening.
    package static func baselineFile(_ stateDirectory: String) -> String { stateDirectory + "/applied-revision" }

    /// The file in the state directory that holds what earlier applied revisions gave properties
    /// no resource of the baseline sets any more (`Weakening.Claim.retiring`), as JSON.
    package static func retiredClaimsFile(_ stateDirectory: String) -> String { stateDirectory + "/retired-claims.json" }

    /// One retired claim as the file holds it.
    struct RetiredClaim: Codable {
        var claim: Weakening.Claim
        var values: [String]
    }

    /// The retired claims the state directory holds; none when it holds no file. A file that
    /// cannot be read is an error: comparing with nothing would let a removed and re-added
    /// resource weaken without a second person.
    package static func retiredClaims(_ stateDirectory: String) throws -> [Weakening.Claim: Set<String>] {
        let path = retiredClaimsFile(stateDirectory)
        guard let data = FileManager.default.contents(atPath: path) else {
            if access(path, F_OK) == 0 { throw CommandError("cannot read \(path)") }
            return [:]
        }
        do {
            let entries = try JSONDecoder().decode([RetiredClaim].self, from: data)
            return Dictionary(entries.map { ($0.claim, Set($0.values)) }, uniquingKeysWith: { $0.union($1) })
        } catch {
            throw CommandError("\(path) is not a list of retired claims (\(error)); move it away to start the memory of removed "
                               + "resources again")
        }
    }

    /// Establishes provenance for `state` at `head` and rewrites its approvals to what git proves:
    /// an approval's approver is the author of the commit that wrote its file as it is at `head`
    /// (`Repository.commitWriting`; a file naming someone else is refused); an approval a fix
    /// already used is dropped. With `verification`, the approver is the verified signer of that
    /// commit (its principal in the trusted signers file), and an approval committed without a
    /// trusted signature is refused. An approval whose writer is older than the last applied
    /// revision counts only as that revision had it (the same writer found from there): one it
    /// did not have (deleted, or changed since) was brought back by a rollback or by a merge of
    /// an old commit, and is refused.
    ///
    /// A weakening's authors are named as approvers are: with `verification`, the verified
    /// signers of every commit since the last applied revision that changed the resource's file
    /// (a merge that did not take it cleanly from a parent included); one without a trusted
    /// signature makes its author unknown, and then no approval can come from a second person.
    /// With `verification` and an approval to compare, each signer is also read as a person
    /// (`SignerIdentity`, from the trusted signers file and keyring: `Approval.signer`,
    /// `Weakening.authorIdentities`), so that one person's two kinds of key are one author.
    /// Without `verification`, git's author fields, which whoever commits writes as they like.
    package static func establish(
        _ state: inout DesiredState, head: ObjectID, repository: PolicyRepository, registry: Registry, stateDirectory: String,
        verification: SourceVerification? = nil, now: Date = Date()
    ) async -> Provenance {
        var result = Provenance()
        let last = await lastApplied(repository: repository, stateDirectory: stateDirectory, verification: verification)
        var baseline: ObjectID? = if let applied = last?.id, await repository.has(applied) { applied } else { nil }
        var judgedAsNew = true
        // No applied revision: a new repository, or an audit branch deleted, rewritten or
        // flooded with records no trusted key signed. Skipping the check would let a weakening
        // through whoever removed the records: the revision is compared with `--initial-revision`,
        // else with the policy branch's first revision (a kind without `weakensNew` cannot judge
        // a value on its own), and a revision with no history of its own is judged as all new.
        if baseline == nil {
            let found = if let missing = last?.id {
                "the last applied revision \(missing.short) is not in the policy repository"
            } else if last?.noneAccepted == true {
                "the newest applied record on the audit branch says no revision was accepted yet"
            } else if let last, !last.untrusted.isEmpty {
                "no applied record on the audit branch is signed by a trusted key (\(last.untrusted.count) passed over)"
            } else {
                "no applied revision found in the state directory or on the audit branch (new, deleted or rewritten)"
            }
            if let anchor = verification?.initialRevision, anchor != head, await repository.has(anchor),
               await repository.isAncestorOrEqual(anchor, of: head) {
                baseline = anchor
                result.note = "\(found): weakenings are judged against --initial-revision \(anchor.short)"
            } else if let root = try? await repository.commits(from: head, since: nil).last(where: { $0.parents.isEmpty })?.id,
                      root != head {
                baseline = root
                result.note = "\(found): weakenings are judged against the policy branch's first revision \(root.short) "
                    + "(give --initial-revision to name another)"
            } else if last == nil {
                // A new repository's first revision (`bulwark init`, the quick start): nothing to compare with.
                judgedAsNew = false
            } else {
                result.note = "\(found): the revision is judged as all new, and each value that weakens as new is held for a "
                    + "second person"
            }
        }
        // Who each signer is as a person, read once: needed only where an approval may be compared.
        let people = state.approvals.isEmpty ? nil : verification?.identities()
        // Which record commits count: with this Bulwark's signing key or --audit-signers, the
        // approval's `record:` must be one a Bulwark signed (as `approve` takes it; the people of
        // --trusted-signers do not sign Bulwark's records, so alone they check nothing here).
        let trust = state.approvals.isEmpty ? nil
            : RecordTrust(ownKey: await repository.auditKey, auditSigners: await repository.auditSigners, verification: nil)
        for (id, approval) in state.approvals.sorted(by: { $0.key < $1.key }) {
            if (try? await repository.usedApproval(id)) == true {
                state.approvals[id] = nil
                state.consumedApprovals.insert(id)
                result.consumedApprovals.append(id)
                continue
            }
            let path = approval.location.file
            if let record = approval.record {
                let here = if let commit = ObjectID(hex: record) { (try? await repository.isAuditRecord(commit, id: id)) == true } else { false }
                guard here else {
                    state.approvals[id] = nil
                    result.refusedApprovals.append((id, "approval \(id) in \(path) approves the record \(record.prefix(12)), which is not "
                                                    + "on this repository's audit branch: an approval given in another repository (where the same "
                                                    + "drift has the same id) does not count here; approve the record held here"))
                    continue
                }
                // Anyone who can push can put a record with the id on the branch, showing the
                // approver another change ("LoginGraceTime 120 -> 60" for a held "PermitRootLogin
                // no -> yes"): with keys to check records against, the approved one must be a
                // Bulwark's, or the approval was given for something else.
                if let trust, let commit = ObjectID(hex: record), let problem = await trust.problem(with: commit, in: repository) {
                    state.approvals[id] = nil
                    result.refusedApprovals.append((id, "approval \(id) in \(path) approves the record \(record.prefix(12)), which no "
                                                    + "Bulwark signed (\(problem)): what the approver was shown may not be what was held; "
                                                    + "approve the record a Bulwark signed"))
                    continue
                }
            }
            guard let commit = try? await repository.commitWriting(path, from: head) else {
                state.approvals[id] = nil
                result.refusedApprovals.append((id, "approval \(id): the commit that wrote \(path) cannot be found in the history"))
                continue
            }
            // Written before the last applied revision: it counts only as that revision had it.
            if let baseline, await repository.isAncestorOrEqual(commit.id, of: baseline),
               (try? await repository.commitWriting(path, from: baseline))?.id != commit.id {
                state.approvals[id] = nil
                result.refusedApprovals.append((id, "approval \(id) in \(path) is as \(commit.id.short) wrote it, before the last applied "
                                                + "revision \(baseline.short), which did not have it so: a rollback or a merge of an old "
                                                + "commit brought it back, and an approval is not given again that way"))
                continue
            }
            var author = "\(commit.author.name) <\(commit.author.email)>"
            if let verification {
                switch await verification.signer(of: commit, repository: repository) {
                case .success(let principal):
                    author = principal
                    if let people {
                        state.approvals[id]?.signer = await verification.identity(of: commit, shown: principal, repository: repository,
                                                                                  people: people)
                    }
                case .failure(let problem):
                    state.approvals[id] = nil
                    result.refusedApprovals.append((id, "approval \(id) in \(path) was committed in \(commit.id.short) without a "
                                                    + "trusted signature (\(problem.description)); an approver is whoever signs the approval file"))
                    continue
                }
            }
            let named = Weakening(changes: [], authors: [approval.approver])
            guard !named.isSecondPerson(author) else {
                state.approvals[id] = nil
                result.refusedApprovals.append((id, "approval \(id) in \(path) names \(approval.approver) as approver "
                                                + "but was committed by \(author) (\(commit.id.short)); an approver is whoever commits the approval file"))
                continue
            }
            state.approvals[id]?.approver = author
        }

        if let pause = state.pause, let commit = try? await repository.commitWriting(pause.location.file, from: head) {
            state.pause?.by = "\(commit.author.name) <\(commit.author.email)>"
        }

        // Weakening: compare with the last revision applied without a pending weakening, or, on a
        // new state directory, the baseline of the newest applied record on the audit branch;
        // with none, with nothing. Read at the time `state` was (`now`): an expiry that passed
        // between them is no change of policy.
        state.acceptedBaseline = head.hex
        if baseline == head || (baseline == nil && !judgedAsNew) { return result }
        let previous: DesiredState
        if let baseline {
            guard let files = try? await repository.files(at: baseline),
                  let loaded = try? DesiredStateLoader(registry: registry, now: now).load(files, revision: Revision(baseline)) else {
                result.note = "the last applied revision \(baseline.short) cannot be read as a policy: the revision is judged as "
                    + "all new, and each value that weakens as new is held for a second person"
                return await judged(result, state: &state, previous: .empty(revision: .workingTree), since: nil, head: head,
                                    repository: repository, registry: registry, stateDirectory: stateDirectory, verification: verification,
                                    people: people)
            }
            previous = loaded
        } else {
            previous = .empty(revision: .workingTree)
        }
        result.baseline = baseline
        return await judged(result, state: &state, previous: previous, since: baseline, head: head, repository: repository,
                            registry: registry, stateDirectory: stateDirectory, verification: verification, people: people)
    }

    /// `establish`'s weakening check: `state` at `head` compared with `previous`, the revision
    /// `since` (nil: compared with nothing, every commit up to `head` counts).
    private static func judged(
        _ provenance: Provenance, state: inout DesiredState, previous: DesiredState, since baseline: ObjectID?, head: ObjectID,
        repository: PolicyRepository, registry: Registry, stateDirectory: String, verification: SourceVerification?,
        people: SignerIdentities?
    ) async -> Provenance {
        var result = provenance
        var weakened: [ResourceID: Weakening]
        do {
            let retired = try retiredClaims(stateDirectory)
            result.retiredNext = Weakening.Claim.retiring(previous: previous, current: state, retired: retired)
            weakened = Weakening.compare(previous: previous, current: state, registry: registry, retired: retired)
        } catch {
            // What a property the baseline does not set had before is unknown: each such
            // property is held as a weakening (it may be one) until a person moves the file away,
            // and the file is never written over.
            Console().warn("\(error)")
            weakened = Weakening.compare(previous: previous, current: state, registry: registry)
            let claimed = Weakening.Claim.all(in: previous)
            for (id, resource) in state.resources {
                let unknown = resource.spec.properties.filter {
                    claimed[Weakening.Claim(kind: id.kind, subject: resource.spec.subject, property: $0.name)] == nil
                }
                guard !unknown.isEmpty else { continue }
                let why = unknown.map { "\($0.name): (what it had before is unknown: \(retiredClaimsFile(stateDirectory)) cannot be read)" }
                weakened[id, default: Weakening(changes: [])].changes = ((weakened[id]?.changes ?? []) + why).sorted()
            }
        }
        // A controller's opt-out of the second person (`weakening: allow`) counts once the
        // revision that added it was applied: added in the commit that weakens or prunes, it
        // would let that very change through.
        for (name, controller) in state.controllers {
            let new = controller.weakeningAllowed.subtracting(previous.controllers[name]?.weakeningAllowed ?? [])
            if !new.isEmpty { state.controllers[name]?.weakeningAllowed.subtract(new) }
        }
        guard !weakened.isEmpty else { return result }
        // Pending: what was accepted stays the baseline (a record made now names it, not this revision).
        state.acceptedBaseline = baseline?.hex ?? AuditRecord.noBaseline
        let since = baseline.map { " since \($0.short)" } ?? ""
        let paths = Set(weakened.keys.compactMap { state.resources[$0]?.location.file })
        if let verification {
            // The range was verified whole before this: every commit in it is read again, however many.
            let changing = try? await repository.commits(changing: paths, from: head, since: baseline, limit: .max)
            var signers: [ObjectID: Result<String, SourceVerification.Untrusted>] = [:]
            var persons: [ObjectID: SignerIdentity] = [:]
            for id in Array(weakened.keys) {
                guard let file = state.resources[id]?.location.file else { continue }
                var authors: [String] = []
                var identities: [SignerIdentity] = []
                var unknown: [String] = []
                if let changing {
                    for commit in changing[file] ?? [] {
                        let signer: Result<String, SourceVerification.Untrusted>
                        if let known = signers[commit.id] {
                            signer = known
                        } else {
                            signer = await verification.signer(of: commit, repository: repository)
                            signers[commit.id] = signer
                        }
                        switch signer {
                        case .success(let principal):
                            if !authors.contains(principal) { authors.append(principal) }
                            if let people {
                                if persons[commit.id] == nil {
                                    persons[commit.id] = await verification.identity(of: commit, shown: principal, repository: repository,
                                                                                     people: people)
                                }
                                if let person = persons[commit.id], !identities.contains(person) { identities.append(person) }
                            }
                        case .failure(let problem): unknown.append("commit \(commit.id.short): \(problem.description)")
                        }
                    }
                    if authors.isEmpty, unknown.isEmpty { unknown.append("no commit\(since) is found changing \(file)") }
                } else {
                    unknown.append("the history\(since) cannot be read")
                }
                weakened[id]?.identity = .verifiedSigner
                weakened[id]?.authors = authors
                weakened[id]?.authorIdentities = identities
                weakened[id]?.unknownAuthors = unknown
            }
        } else {
            let authors = (try? await repository.authors(changing: paths, from: head, since: baseline)) ?? [:]
            for id in Array(weakened.keys) {
                guard let file = state.resources[id]?.location.file else { continue }
                weakened[id]?.authors = (authors[file] ?? []).map { "\($0.name) <\($0.email)>" }
            }
        }
        result.weakened = weakened
        return result
    }

    /// The last applied revision: the state directory's baseline file, else (a new state
    /// directory) the baseline the newest applied record on the audit branch states
    /// (`Bulwark-Baseline`: the last revision accepted with no weakening pending when it was
    /// made; its desired commit may hold a weakening still waiting for a second person), or a
    /// record's desired commit when written before that trailer. `fromAuditBranch` marks it,
    /// since anyone who can push can write that branch. With a signing key or `verification`
    /// (`RecordTrust`), only a record whose commit a trusted key signed counts: a made-up record
    /// naming the weakening revision itself would otherwise let that weakening through without
    /// a second person. The records passed over are in `untrusted`, and the search goes on past
    /// them to the branch's first commit: commits pushed over the last record do not hide it.
    package static func lastApplied(repository: PolicyRepository, stateDirectory: String,
                                    verification: SourceVerification? = nil) async -> LastApplied? {
        if let local = (try? String(contentsOfFile: baselineFile(stateDirectory), encoding: .utf8))
            .flatMap({ ObjectID(hex: $0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            return LastApplied(id: local, fromAuditBranch: false)
        }
        let trust = await RecordTrust.of(repository, verification: verification)
        var untrusted: [String] = []
        // The newest applied record is almost always the newest commit: a few are read first,
        // then more (each commit is a lookup in the packs, and many over a long history touch
        // most of a large pack's index). A window that meets a merge goes straight to 500:
        // past a merge the history is read by a walk that sorts everything reachable, whatever
        // the limit. Only a new state directory reads this, until its first pass writes the file.
        var limit = 1
        var checked = 0
        while true {
            guard let commits = try? await repository.auditHistory(limit: limit) else { return nil }
            for commit in commits.dropFirst(checked) where commit.trailer(.decision) == Decision.applied.rawValue {
                if let trust, let problem = await trust.problem(with: commit.id, in: repository) {
                    untrusted.append("record \(commit.trailer(.id) ?? commit.id.short): \(problem)")
                    continue
                }
                switch commit.trailer(.baseline) {
                case .some(AuditRecord.noBaseline):
                    return LastApplied(id: nil, fromAuditBranch: true, untrusted: untrusted, noneAccepted: true)
                case .some(let stated):
                    // A record naming no commit says nothing that can be compared with.
                    return LastApplied(id: ObjectID(hex: stated), fromAuditBranch: true, untrusted: untrusted,
                                       noneAccepted: ObjectID(hex: stated) == nil)
                case .none:
                    return commit.trailer(.desiredCommit).flatMap { ObjectID(hex: $0) }
                        .map { LastApplied(id: $0, fromAuditBranch: true, untrusted: untrusted) }
                }
            }
            checked = commits.count
            guard commits.count == limit, limit < .max else {
                return untrusted.isEmpty ? nil : LastApplied(id: nil, fromAuditBranch: true, untrusted: untrusted)
            }
            let merged = commits.contains { $0.parents.count > 1 }
            limit = limit >= 1 << 20 ? .max : merged ? max(limit, 500) * 32 : limit * 32
        }
    }

    /// The revision the last pass applied, and where that was read.
    package struct LastApplied: Sendable {
        /// Nil when the audit branch held applied records, none of them trusted, or its newest
        /// trusted one says no revision was accepted (`noneAccepted`).
        package var id: ObjectID?
        package var fromAuditBranch: Bool
        /// The applied records passed over because no trusted key signed them, each with why.
        package var untrusted: [String] = []
        /// The newest trusted applied record says no revision was accepted yet when it was made.
        package var noneAccepted = false
    }

    /// Moves the baseline to `head` once every weakening of it has reached its targets: a
    /// weakened resource has a binding in this pass (`bindings`; one bound to no target, or to
    /// targets another replica holds, would be compared with its own weaker value once bound
    /// here), and each binding of it that this pass planned was found in sync, or
    /// its fix was carried out (`outcome` holds its applied record, or found it already made),
    /// and none of its drift was left waiting. Otherwise the baseline stays, and the weakening
    /// keeps being compared with the revision before it, so it still needs a second person on a
    /// later pass: held for an approval, deferred, blocked, reported in audit mode, a target that
    /// could not be observed, a fix not tried (another Bulwark held the target, the pass halted).
    ///
    /// - Returns: why the baseline stays, naming the first weakened resource that holds it (for
    ///   the operator: every later pass compares with the older revision until it is reached),
    ///   or nil when it moved or had nothing to wait for.
    @discardableResult
    package func advanceBaseline(to head: ObjectID, after plan: Plan, outcome: CycleOutcome, bindings: [Binding],
                                 stateDirectory: String) -> String? {
        if let held = Self.heldBy(weakened, plan: plan, outcome: outcome, bindings: bindings) {
            return "the last applied revision stays \(baseline?.short ?? "unset"), and weakenings since are judged against it: \(held)"
        }
        // The retired claims first: killed between the two, the next pass compares with the old
        // baseline, whose claims the new memory holds too.
        if let retiredNext {
            let entries = retiredNext.map { RetiredClaim(claim: $0.key, values: $0.value.sorted()) }
                .sorted { ($0.claim.kind, $0.claim.subject, $0.claim.property) < ($1.claim.kind, $1.claim.subject, $1.claim.property) }
            do {
                try StateFile.replace(Self.retiredClaimsFile(stateDirectory), with: Array(try JSONEncoder().encode(entries)), durability: .synced)
            } catch {
                Console().warn("the last applied revision stays \(baseline?.short ?? "unset"): \(error)")
                return nil
            }
        }
        do {
            try StateFile.replace(Self.baselineFile(stateDirectory), with: Array((head.hex + "\n").utf8), durability: .synced)
        } catch {
            Console().warn("\(error)")
        }
        return nil
    }

    /// The first weakened resource (in order) that has not reached every target of this pass,
    /// and why, or nil when all have (see `advanceBaseline`).
    static func heldBy(_ weakened: [ResourceID: Weakening], plan: Plan, outcome: CycleOutcome, bindings: [Binding]) -> String? {
        guard !weakened.isEmpty else { return nil }
        let bound = Set(bindings.map(\.resource))
        if let unbound = weakened.keys.sorted().first(where: { !bound.contains($0) }) {
            return "weakened \(unbound) is bound to no target this pass acts on"
        }
        // In sync where a weakened property was not observed at all is not reached: the
        // weaker value is nowhere in place (a wildcard path matching nothing while the file
        // was emptied), and once the value is back it would be compared with itself.
        let unobserved = Set(plan.weakenedUnobserved)
        var reached = Set(plan.inSync).subtracting(unobserved)
        reached.formUnion(outcome.inSync.map(\.binding))
        reached.formUnion(outcome.entries.lazy.filter { $0.record.decision == .applied }.map(\.remediation.binding))
        let waiting = Dictionary(plan.remediations.lazy.filter { $0.decision != .applied }.map { ($0.binding, $0.decision) },
                                 uniquingKeysWith: { first, _ in first })
        let failed = Set(plan.failures.map(\.binding))
        for binding in bindings.sorted() where weakened[binding.resource] != nil {
            let subject = "weakened \(binding.resource) on \(binding.target)"
            if let decision = waiting[binding] { return "\(subject) is \(decision.rawValue), not applied" }
            guard !reached.contains(binding) else { continue }
            if unobserved.contains(binding) { return "\(subject) is in sync only because a weakened property was not found on it" }
            if failed.contains(binding) { return "\(subject) could not be observed" }
            return "\(subject) was not fixed in this pass"
        }
        return nil
    }

    /// Records each refused approval once on the audit branch; returns the records this call committed.
    @discardableResult
    package func recordRefusals(head: ObjectID, in repository: PolicyRepository, console: Console) async -> [RevisionRefusal.Recorded] {
        var recorded: [RevisionRefusal.Recorded] = []
        for refusal in refusedApprovals {
            console.warn(refusal.reason)
            if let one = await RevisionRefusal.record(of: head, errors: [refusal.reason], in: repository, console: console) {
                recorded.append(one)
            }
        }
        return recorded
    }
}
