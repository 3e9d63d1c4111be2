package import BulwarkCore
import BulwarkGit
import Foundation

/// Turns a finding into a tested fix for review: the rule's change template filled in with the
/// finding's fields, written into the resource's manifest (text-preserving, see `ManifestEdit`),
/// the changed revision validated, `plan` run for it against the live targets, and the commit
/// put on `bulwark/proposals/<finding-id>` (or, for an `autoMerge` rule, on the policy branch as
/// Bulwark's own, signed when a signing key is configured). The same finding never makes two
/// proposals: an existing branch, or a policy that already cites the finding, stops it.
package struct ProposalEngine: Sendable {
    package static let branchPrefix = "bulwark/proposals/"

    package struct Outcome: Sendable {
        package var outcome: String
        package var detail: String?
        package var branch: String?
        package var commit: String?
        /// The record of a refused change (`AuditRecord.refusedFinding`), for the intake to commit once.
        package var refusal: AuditRecord? = nil

        /// `detail` redacted (`Redaction.words`): it may quote the rendered change, which holds
        /// the scanner's text (a finding's evidence: a token, a password, a private key), and it
        /// is printed by `ingest` and answered by the daemon's findings endpoint.
        package init(outcome: String, detail: String?, branch: String? = nil, commit: String? = nil, refusal: AuditRecord? = nil) {
            self.outcome = outcome
            self.detail = detail.map(Redaction.words(in:))
            self.branch = branch
            self.commit = commit
            self.refusal = refusal
        }
    }

    let registry: Registry
    let repository: PolicyRepository
    let reconciler: Reconciler
    let now: Date

    /// The branch of a finding's proposal: the id itself when it is a safe branch component,
    /// else a stable hash of it (ids are the scanner's text).
    package static func branch(for findingID: String) -> String {
        let safe = findingID.count <= 100 && !findingID.isEmpty && findingID.first != "-" && findingID.first != "."
            && findingID.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "-" || $0 == "_" || $0 == "." }
            && !findingID.contains("..") && !findingID.hasSuffix(".lock") && !findingID.hasSuffix(".")
        return branchPrefix + (safe ? findingID : AuditID.stable(findingID).lowercased())
    }

    /// The resource a rendered `Kind/name` means: the resource of that name, else the one
    /// resource of that kind whose subject is the name (a package `openssh-server` for
    /// `DebianPackage/openssh-server`, an account for `UserAccount/guest`), so that rules can
    /// name what a finding names whatever the manifest's own name is.
    package static func resolve(_ reference: String, in state: DesiredState) -> Result<Resource, TemplateError> {
        let parts = reference.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return .failure(TemplateError("'\(quotedForMessage(reference))' is not Kind/name")) }
        if let resource = state.resources[ResourceID(kind: parts[0], name: parts[1])] { return .success(resource) }
        let name = parts[1]
        let candidates = state.resources.values.filter { resource in
            resource.id.kind == parts[0] && (resource.spec.subject == name || resource.spec.subject.hasSuffix(":" + name))
        }
        guard candidates.count == 1, let only = candidates.first else {
            return .failure(TemplateError(candidates.isEmpty ? "no resource \(quotedForMessage(reference)) in the policy"
                                          : "\(candidates.count) \(parts[0]) resources are about \(quotedForMessage(name)); name one"))
        }
        return .success(only)
    }

    /// The id of the resource a `create` rule would add for `reference`: a kind this build knows,
    /// a valid name, and no resource of the policy that is it or is about it.
    static func creatable(_ reference: String, in state: DesiredState) -> ResourceID? {
        let parts = reference.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2, DesiredStateLoader.isValidName(parts[1]) else { return nil }
        let id = ResourceID(kind: parts[0], name: parts[1])
        let about = state.resources.values.contains { $0.id == id || ($0.id.kind == id.kind
            && ($0.spec.subject == id.name || $0.spec.subject.hasSuffix(":" + id.name))) }
        return about ? nil : id
    }

    /// The targets of the policy a finding is about: the one it names, its resource when that is
    /// a target's name, or an identifier (an ARN) that ends in one after `/` or `:`.
    static func targetsNamed(by finding: Finding, in state: DesiredState) -> [String] {
        var names: Set<String> = []
        for candidate in [finding.target, finding.resource].compactMap(\.self) where state.targets[candidate] != nil {
            names.insert(candidate)
        }
        var rest = Substring(finding.resource)
        while let separator = rest.firstIndex(where: { $0 == "/" || $0 == ":" }) {
            rest = rest[rest.index(after: separator)...]
            if state.targets[String(rest)] != nil { names.insert(String(rest)) }
        }
        if let target = finding.target { names = names.filter { $0 == target } }
        return names.sorted()
    }

    /// `made`: the changes proposed or merged so far for this report, each with its finding.
    /// A change already made for another finding of the report is not proposed again (300
    /// probes of one garak report made 300 branches with one change, each planned against the
    /// live targets).
    func handle(_ finding: Finding, rule: FindingRule, priority: FindingPriority, state: DesiredState, files: [SourceFile],
                head: ObjectID, made: inout [ChangeTemplate: String]) async -> Outcome {
        let branch = Self.branch(for: finding.id)
        let existing = try? await repository.fetchedBranch(branch)
        if finding.resolved {
            guard let existing else { return Outcome(outcome: "nothing", detail: "resolved; no proposal to close") }
            // Accepted (the policy carries its change, citing the finding): the fix is why the scanner
            // now passes, so the proposal is not closed (a close would undo the change on its branch).
            if let cited = state.resources.values.filter({ $0.annotations[FindingCitation.idKey] == finding.id })
                .map(\.id.description).sorted().first {
                return Outcome(outcome: "nothing", detail: "resolved; fixed by its accepted proposal (\(cited) cites it)", branch: branch)
            }
            return await close(branch: branch, tip: existing, finding: finding)
        }
        // A closed proposal is proposed again when its finding is reported open again (a
        // scanner's lucky pass closed it, or the drift came back): the new proposal replaces the
        // closed one on its branch, naming it. Any other tip is a proposal still open.
        var reopens: ObjectID?
        if let existing {
            guard let tip = try? await repository.commit(existing), tip.trailer(AuditTrailer.proposal.rawValue) == "closed" else {
                return Outcome(outcome: "already-proposed", detail: "the finding's proposal exists", branch: branch)
            }
            reopens = existing
        }
        guard let template = rule.change else { return Outcome(outcome: "not-proposed", detail: "rule \(rule.name) has no change") }
        let change: ChangeTemplate
        do { change = try template.render(for: finding) } catch {
            return Outcome(outcome: "not-proposed", detail: "rule \(rule.name): \(error.description)")
        }
        if let first = made[change] {
            return Outcome(outcome: "already-proposed", detail: "the same change as finding \(TerminalText.oneLine(first))'s, made for this report")
        }
        let citation = FindingCitation(id: finding.id, source: finding.source, firstSeen: Timestamp.format(finding.firstObservedAt),
                                       priority: priority.priority.rawValue)
        // The resource the change edits, or (a `create` rule, and no such resource) the new one.
        let id: ResourceID
        let previous: Resource?
        let path: String
        let edited: String
        switch Self.resolve(change.resource, in: state) {
        case .success(let found):
            if found.annotations[FindingCitation.idKey] == finding.id {
                return Outcome(outcome: "already-in-policy", detail: "\(found.id) already cites the finding")
            }
            path = found.location.file
            guard let file = files.first(where: { $0.path == path }), let bytes = file.contents,
                  let text = String(validating: bytes, as: UTF8.self) else {
                return Outcome(outcome: "not-proposed", detail: "cannot read \(path) of the revision")
            }
            do { edited = try ManifestEdit.apply(change, annotations: citation.annotations, to: found.id, in: text) } catch {
                return Outcome(outcome: "not-proposed", detail: "cannot edit \(path): \(error.description)")
            }
            (id, previous) = (found.id, found)
        case .failure(let reason):
            guard change.create, let new = Self.creatable(change.resource, in: state) else {
                return Outcome(outcome: "not-proposed", detail: reason.description)
            }
            let targets = Self.targetsNamed(by: finding, in: state)
            guard !targets.isEmpty else {
                return Outcome(outcome: "not-proposed", detail: "\(reason.description); a new resource is bound to the targets its "
                               + "finding names, and this finding names no target of the policy")
            }
            path = ManifestEdit.createdPath(for: new)
            if files.contains(where: { $0.path == path }) {
                return Outcome(outcome: "not-proposed", detail: "\(path) exists already but holds no \(new)")
            }
            let comment = ManifestEdit.createdComment(finding: finding.id, source: finding.source, rule: rule.name)
            do {
                edited = try ManifestEdit.create(change, annotations: citation.annotations, for: new, targets: targets, comment: comment)
            } catch {
                return Outcome(outcome: "not-proposed", detail: "cannot create \(new): \(error.description)")
            }
            (id, previous) = (new, nil)
        }
        // Validate the changed revision, whole.
        let changedFiles = previous == nil ? files + [SourceFile(path: path, contents: Array(edited.utf8))]
            : files.map { $0.path == path ? SourceFile(path: path, contents: Array(edited.utf8)) : $0 }
        let changed: DesiredState
        do {
            changed = try DesiredStateLoader(registry: registry, now: now).load(changedFiles, revision: Revision(head))
        } catch {
            let detail = "the changed revision is invalid: " + error.errors.prefix(3).map(\.description).joined(separator: "; ")
            let recorded = "rule \(rule.name)'s change to \(id) leaves the revision invalid (\(error.errors.count) error\(error.errors.count == 1 ? "" : "s"))"
            // A resource the change would create has the loader's default severity.
            return Outcome(outcome: "not-proposed", detail: detail,
                           refusal: refusal(citation, resource: id.description, severity: previous?.severity ?? .medium, reason: recorded, head: head))
        }
        guard let after = changed.resources[id] else {
            return Outcome(outcome: "not-proposed", detail: "\(id) is \(previous == nil ? "not in" : "gone from") the changed revision")
        }
        // A finding's edit changes its own resource, nothing else: one that reached another
        // resource of the file (misplaced, or a manifest crafted to mislead it) would carry that
        // resource's change past every check below, which judge `id` alone.
        let others = Self.otherResourcesChanged(besides: id, previous: state, changed: changed)
        if !others.isEmpty {
            let named = others.prefix(3).map(\.description).joined(separator: ", ") + (others.count > 3 ? " and \(others.count - 3) more" : "")
            let recorded = "rule \(rule.name)'s change to \(id) would also change \(named); a finding's change edits its own resource only"
            return Outcome(outcome: "not-proposed", detail: recorded,
                           refusal: refusal(citation, resource: id.description, severity: previous?.severity ?? after.severity, reason: recorded, head: head))
        }
        if after.spec == previous?.spec {
            return Outcome(outcome: "already-in-policy", detail: "\(id) already wants it")
        }
        // A finding only ever tightens policy: a change its kind judges weaker (a lower minimum
        // version from a scanner that says "fixed in" an older one, or a hostile report) is not
        // proposed, and so never merged by itself either.
        if let weaker = Weakening.compare(previous: state, current: changed, registry: registry)[id] {
            let detail = "the change would weaken \(id): " + weaker.changes.joined(separator: "; ") + "; a finding never lowers policy"
            let recorded = "rule \(rule.name)'s change would weaken \(id) (\(weaker.properties.joined(separator: ", "))); a finding never lowers policy"
            return Outcome(outcome: "not-proposed", detail: detail,
                           refusal: refusal(citation, resource: id.description, severity: previous?.severity ?? after.severity, reason: recorded, head: head))
        }
        // A kind with no `weakens` cannot say which way a change goes: a finding's change to a
        // value the policy already sets may loosen it (`false → "true"` of a setting whose name
        // says danger), so it is proposed for a person and never merged by itself.
        let unjudged = Self.unjudgedChanges(previous: previous, after: after, registry: registry)
        // Plan the changed resource against the live targets.
        var scoped = changed
        scoped.narrow { $0.resource == id }
        let validation = "the changed revision validates (\(changed.resources.count) resources on \(changed.targets.count) targets)"
        var planned: [String] = []
        var planProblems: [String] = []
        do {
            var plan = try await reconciler.plan(scoped)
            // Leftovers of other resources on those targets are not this proposal's.
            plan.remediations.removeAll { $0.binding.resource != id }
            for remediation in plan.remediations {
                let changes = remediation.changes.map { "\($0.property): \($0.sensitive ? "[redacted]" : $0.observed ?? "(unset)") -> \($0.shownDesired)" }
                planned.append("\(remediation.binding.target) \(remediation.binding.resource): \(changes.joined(separator: ", ")) "
                               + "(\(remediation.decision.rawValue)\(remediation.reason.map { ": \($0)" } ?? ""))")
            }
            planProblems = plan.failures.map { "\($0.binding.target) \($0.binding.resource): \($0.message)" }
            // A change a safety guard blocks (or the flap breaker escalates) is for a person, never merged by itself.
            planProblems += plan.remediations.filter { [.blocked, .escalated, .refused].contains($0.decision) }
                .map { "\($0.binding.target) \($0.binding.resource) \($0.decision.rawValue)\($0.reason.map { ": \($0)" } ?? "")" }
            if plan.remediations.isEmpty && planProblems.isEmpty { planned.append("none: every target already has it") }
        } catch {
            planProblems = error.errors.prefix(3).map(\.description)
        }
        let planResult = planProblems.isEmpty ? "passed" : "failed: " + planProblems.joined(separator: "; ")
        // A new resource widens what Bulwark manages: always for a person, whatever the rule says.
        let merged = rule.autoMerge && planProblems.isEmpty && previous != nil && unjudged.isEmpty
        // What the scanner wrote goes into git: a presigned link or a token it quotes is redacted.
        var lines = ["propose(\(id)): \(TerminalText.oneLine(Redaction.words(in: finding.title ?? finding.control))) [\(priority.priority.rawValue)]", ""]
        lines.append("Finding \(finding.id) from \(finding.source): \(finding.control) on \(finding.resource) (\(finding.severity.rawValue))")
        if let vulnerability = finding.vulnerability, let package = vulnerability.package {
            lines.append("Vulnerability \(vulnerability.id) in \(package.purl)" + (package.fixedVersion.map { ", fixed in \($0)" } ?? ""))
        }
        lines.append("Evidence: \(finding.evidence.map(Redaction.words(in:)) ?? "(none given)")")
        lines.append("First seen: \(Timestamp.format(finding.firstObservedAt))")
        lines.append("Priority: \(priority.explanation); fix by \(Timestamp.format(rule.sla.deadline(priority.priority, firstSeen: finding.firstObservedAt)))")
        lines.append("Rule: \(rule.name)")
        lines.append("Change: " + change.changeLine(path: path, creating: previous == nil ? id : nil))
        lines.append("Validation: \(validation)")
        lines.append("Plan: \(planResult)")
        lines.append("Planned remediations:")
        lines += planned.map { "- " + $0 }
        let notMerged = !rule.autoMerge || merged ? nil
            : previous == nil ? "a new resource is always reviewed by a person"
            : !planProblems.isEmpty ? "the plan did not pass; review it"
            : "\(id.kind) has no rule for which way a change goes, and this one changes what the policy sets ("
                + unjudged.joined(separator: "; ") + "): it could lower policy, so a person reviews it"
        if let notMerged { lines.append("Not merged automatically: \(notMerged).") }
        if let reopens { lines.append("Proposed again: the scanner reports the finding open after its proposal was closed (\(reopens.hex)).") }
        lines.append("")
        var trailers: [(AuditTrailer, String)] = FindingCitation(id: finding.id, source: finding.source,
                                                                  firstSeen: citation.firstSeen, priority: citation.priority).trailers
        trailers.append((.proposal, merged ? "auto-merged" : "proposed"))
        lines += trailers.map { "\($0.0.rawValue): \(TerminalText.oneLine($0.1))" }
        let message = lines.map(TerminalText.oneLine).joined(separator: "\n") + "\n"
        let configuration = repository.configuration
        do {
            if merged {
                guard let commit = try await repository.pushBranch(configuration.branch, files: [path: Array(edited.utf8)], parent: head,
                                                                   expected: head, message: message, author: configuration.author,
                                                                   signer: configuration.signer) else {
                    return Outcome(outcome: "not-proposed", detail: "the policy branch moved meanwhile; the next report of the finding proposes again")
                }
                made[change] = finding.id
                return Outcome(outcome: "merged", detail: "plan \(planResult)", branch: configuration.branch, commit: commit.hex)
            }
            // Proposed again: on the policy's head, with the closed proposal as a second parent,
            // so that its branch moves forward and keeps the earlier proposal and its close.
            guard let commit = try await repository.pushBranch(branch, files: [path: Array(edited.utf8)], parent: head, merging: reopens,
                                                               expected: reopens,
                                                               message: message, author: configuration.author,
                                                               signer: configuration.signer) else {
                return Outcome(outcome: "already-proposed", detail: "the finding's proposal exists", branch: branch)
            }
            made[change] = finding.id
            return Outcome(outcome: "proposed", detail: "plan \(planResult)" + (notMerged.map { "; not merged automatically: \($0)" } ?? ""),
                           branch: branch, commit: commit.hex)
        } catch {
            return Outcome(outcome: "not-proposed", detail: "cannot commit the proposal: \(error)")
        }
    }

    /// The record that a finding's change was refused (see `AuditRecord.refusedFinding`), with
    /// the resource's severity.
    func refusal(_ citation: FindingCitation, resource: String, severity: Severity, reason: String, head: ObjectID) -> AuditRecord {
        AuditRecord.refusedFinding(citation, resource: resource, severity: severity, reason: reason, revision: Revision(head), at: now)
    }

    /// The resources besides `id` that `changed` adds, drops or reads otherwise than `previous`
    /// does (where they stand in their file aside: an edit above them moves them).
    static func otherResourcesChanged(besides id: ResourceID, previous: DesiredState, changed: DesiredState) -> [ResourceID] {
        var ids = Set(previous.resources.keys).union(changed.resources.keys)
        ids.remove(id)
        return ids.filter { other in
            guard var before = previous.resources[other], let after = changed.resources[other] else { return true }
            before.location = after.location
            return before != after
        }.sorted()
    }

    /// The properties whose value the policy already set and the change replaces, in words
    /// (sensitive ones redacted), when the resource's kind does not judge direction
    /// (`KindDefinition.judgesDirection`); none for a new resource or a kind that judges it.
    static func unjudgedChanges(previous: Resource?, after: Resource, registry: Registry) -> [String] {
        guard let previous, let kind = registry.kinds[after.id.kind], !kind.judgesDirection else { return [] }
        let old = Dictionary(previous.spec.properties.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let new = Set(after.spec.properties.map(\.name))
        // A property added or dropped has a direction too (`log_connections: off` added to a
        // setting, a port dropped from a list): without a rule for the kind, none is judged.
        let changed = after.spec.properties.compactMap { property -> String? in
            guard let was = old[property.name] else {
                return "\(property.name): (not set) → \(property.sensitive ? "[redacted]" : property.value)"
            }
            guard was.value != property.value else { return nil }
            return property.sensitive || was.sensitive ? "\(property.name): [redacted] → [redacted]"
                : "\(property.name): \(was.value) → \(property.value)"
        }
        let dropped = previous.spec.properties.filter { !new.contains($0.name) }
            .map { "\($0.name): \($0.sensitive ? "[redacted]" : $0.value) → (not set)" }
        return changed + dropped
    }

    /// A resolved finding closes its proposal: a commit on the branch that restores the files the
    /// proposal changed and says `Bulwark-Proposal: closed`; `bulwark accept` refuses it after that.
    func close(branch: String, tip: ObjectID, finding: Finding) async -> Outcome {
        do {
            let info = try await repository.commit(tip)
            if info.trailer(AuditTrailer.proposal.rawValue) == "closed" {
                return Outcome(outcome: "nothing", detail: "the proposal is closed already", branch: branch)
            }
            // Only the scanner that reported the finding open may close its proposal: finding ids
            // are not secret (garak's are hashes anyone can compute), and any source's "resolved"
            // closed another's proposal for good.
            let opener = info.trailer(AuditTrailer.findingSource.rawValue)
            guard opener == finding.source else {
                return Outcome(outcome: "nothing", detail: "reported resolved by \(TerminalText.oneLine(finding.source)), "
                               + "but the proposal was opened by \(TerminalText.oneLine(opener ?? "an unnamed source")); only that source closes it",
                               branch: branch)
            }
            guard let base = info.parents.first else { return Outcome(outcome: "nothing", detail: "the proposal has no base", branch: branch) }
            var files: [String: [UInt8]] = [:]
            for path in try await repository.pathsChanged(by: info) {
                // A manifest the proposal created is left holding no resource (commits here only
                // add or replace files): the branch's revision is the policy as it was.
                files[path] = try await repository.file(at: base, path: path)
                    ?? Array("# Proposed for finding \(TerminalText.oneLine(finding.id)); closed: the finding is resolved.\n".utf8)
            }
            let message = "close(proposal): finding \(TerminalText.oneLine(finding.id)) is resolved\n\n"
                + "The scanner (\(TerminalText.oneLine(finding.source))) reports \(TerminalText.oneLine(finding.control)) on "
                + "\(TerminalText.oneLine(finding.resource)) as resolved; this proposal is no longer needed.\n\n"
                + "\(AuditTrailer.finding.rawValue): \(TerminalText.oneLine(finding.id))\n\(AuditTrailer.proposal.rawValue): closed\n"
            let configuration = repository.configuration
            guard let commit = try await repository.pushBranch(branch, files: files, parent: tip, expected: tip, message: message,
                                                               author: configuration.author, signer: configuration.signer) else {
                return Outcome(outcome: "nothing", detail: "the proposal branch moved; not closed", branch: branch)
            }
            return Outcome(outcome: "closed", detail: "finding resolved", branch: branch, commit: commit.hex)
        } catch {
            return Outcome(outcome: "nothing", detail: "cannot close the proposal: \(error)", branch: branch)
        }
    }
}
