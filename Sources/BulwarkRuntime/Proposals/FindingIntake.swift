package import BulwarkCore
package import BulwarkGit
package import Foundation

/// What became of each finding of a document: the one code path of `bulwark ingest` and of
/// `POST /api/v1/findings` (the daemon), so both answer alike.
package struct IntakeReport: Codable, Sendable, Equatable {
    package struct Item: Codable, Sendable, Equatable {
        package var id: String
        package var source: String
        package var control: String
        package var resource: String
        package var severity: Severity
        package var priority: Priority
        package var score: Int
        package var firstSeen: String
        package var slaDeadline: String
        /// The rule that decided, nil when none matched (the finding is reconciled).
        package var rule: String?
        package var action: String
        /// `reconcile`, `proposed`, `merged`, `already-proposed`, `already-in-policy`, `closed`, `not-proposed`, `nothing`,
        /// or `reopened`: open again after its accepted fix was verified (see `ReopenedFindings`).
        package var outcome: String
        package var detail: String?
        package var branch: String?
        package var commit: String?
        /// The managed resources reconciled now (`target Kind/name`).
        package var reconciled: [String]
        /// The scanner reports the finding resolved (absent when it is open).
        package var resolved: Bool? = nil
    }

    package var schemaVersion = JSONSchema.version
    package var format: String
    package var findings: Int
    package var items: [Item]

    /// Whether anything is to be done or was done, or a rule's change was not proposed (a
    /// refusal or a failure a person reads): exit code 2 of `ingest`.
    package var hasActions: Bool { items.contains { !["nothing", "already-proposed", "already-in-policy"].contains($0.outcome) } }

    package init(format: String, findings: Int, items: [Item]) {
        self.format = format
        self.findings = findings
        self.items = items
    }

    /// The report as people read it.
    package func text() -> String {
        var lines = ["\(findings) finding\(findings == 1 ? "" : "s") (\(format))"]
        for item in items.sorted(by: { ($0.priority, $0.id) < ($1.priority, $1.id) }) {
            var line = "\(item.priority.rawValue)  \(item.source)  \(item.control)  \(item.resource)  [\(item.severity.rawValue)]  \(item.outcome)"
            if let branch = item.branch { line += " \(branch)" }
            if let commit = item.commit { line += " (\(commit.prefix(12)))" }
            if !item.reconciled.isEmpty { line += ": " + item.reconciled.joined(separator: ", ") }
            if let detail = item.detail { line += " — " + detail }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

/// Decides, per finding, what the policy's finding rules say (`FindingRule`): reconcile the
/// resources it names, propose a change (see `ProposalEngine`), close a proposal whose finding
/// is resolved, or nothing.
package struct FindingIntake: Sendable {
    package let registry: Registry
    package let repository: PolicyRepository
    /// Observes the live targets for a proposal's plan.
    package let reconciler: Reconciler
    package let now: Date

    package init(registry: Registry, repository: PolicyRepository, reconciler: Reconciler, now: Date = Date()) {
        self.registry = registry
        self.repository = repository
        self.reconciler = reconciler
        self.now = now
    }

    /// Runs the findings against the revision `head` (validated as `state`). Returns the report
    /// and the resources to reconcile now, with the earliest first-seen time of each.
    package func run(_ findings: [Finding], format: FindingFormat, state: DesiredState, head: ObjectID)
        async -> (report: IntakeReport, reconcile: [Binding: Date]) {
        let index = FindingIndex(state: state)
        var reconcile: [Binding: Date] = [:]
        var items: [IntakeReport.Item] = []
        let engine = ProposalEngine(registry: registry, repository: repository, reconciler: reconciler, now: now)
        var made: [ChangeTemplate: String] = [:]
        var refusals = 0
        var files: [SourceFile]?
        // The verified fixes citing findings, read once, only when a finding the policy cites is reported open.
        var verified: ReopenedFindings?
        var recorded: [AuditRecord] = []
        // The same finding twice in one document is decided once.
        var seen = Set<String>()
        for finding in findings where seen.insert(finding.id).inserted {
            let matched = index.match([finding])
            let rule = FindingRule.first(for: finding, in: state.findingRules)
            let priority = FindingPriority(finding, exposure: FindingPriority.exposure(of: finding, in: state,
                                                                                        matched: Self.related(finding, matched: Array(matched.keys), rule: rule, in: state)))
            let sla = (rule?.sla ?? SLAPolicy()).deadline(priority.priority, firstSeen: finding.firstObservedAt)
            var item = IntakeReport.Item(id: finding.id, source: finding.source, control: finding.control, resource: finding.resource,
                                         severity: finding.severity, priority: priority.priority, score: priority.score,
                                         firstSeen: Timestamp.format(finding.firstObservedAt), slaDeadline: Timestamp.format(sla),
                                         rule: rule?.name, action: (rule?.action ?? .reconcile).rawValue, outcome: "nothing", detail: nil,
                                         branch: nil, commit: nil, reconciled: [], resolved: finding.resolved ? true : nil)
            switch rule?.action ?? .reconcile {
            case .ignore:
                item.detail = "ignored by rule \(rule?.name ?? "")"
            case .reconcile:
                if finding.resolved {
                    item.detail = "resolved"
                } else if matched.isEmpty {
                    item.detail = "names no managed resource"
                } else {
                    item.outcome = "reconcile"
                    item.reconciled = matched.keys.sorted().map(\.description)
                    for (binding, first) in matched { reconcile[binding] = min(reconcile[binding] ?? first, first) }
                }
            case .propose:
                guard let rule else { break }
                // Accepted, and its fix verified, yet reported open: the fix did not hold. Not proposed again.
                let citing = finding.resolved ? [] : state.bindings.filter { state.resources[$0.resource]?.annotations[FindingCitation.idKey] == finding.id }
                if !citing.isEmpty {
                    if verified == nil { verified = await ReopenedFindings.read(repository) }
                    let reopened = verified?.reopened(finding, citing: citing) ?? []
                    if !reopened.isEmpty {
                        item.outcome = "reopened"
                        item.detail = "open again after its accepted fix was verified at "
                            + Timestamp.format(reopened.map(\.fix.verifiedAt).max() ?? now) + ": the fix did not hold"
                        item.branch = ProposalEngine.branch(for: finding.id)
                        item.reconciled = reopened.map(\.binding.description)
                        for (binding, fix) in reopened {
                            let first = max(finding.firstObservedAt, fix.verifiedAt)
                            reconcile[binding] = min(reconcile[binding] ?? first, first)
                            guard let resource = state.resources[binding.resource] else { continue }
                            let mode = state.controllers[binding.controller]?.mode ?? .enforce
                            recorded.append(ReopenedFindings.record(finding, binding: binding, fix: fix, resource: resource, mode: mode,
                                                                    head: head, now: now))
                        }
                        break
                    }
                }
                if files == nil { files = (try? await repository.files(at: head)) ?? [] }
                let outcome = await engine.handle(finding, rule: rule, priority: priority, state: state, files: files ?? [], head: head,
                                                  made: &made)
                item.outcome = outcome.outcome
                item.detail = outcome.detail
                item.branch = outcome.branch
                item.commit = outcome.commit
                if let refusal = outcome.refusal {
                    // A report may hold a thousand findings: at most `refusalsPerReport` refusals
                    // of one are recorded, the rest counted in a warning (each is still in the answer).
                    refusals += 1
                    if refusals <= Self.refusalsPerReport { recorded.append(refusal) }
                }
            }
            items.append(item)
        }
        if refusals > Self.refusalsPerReport {
            Console().warn("\(refusals) findings of this report were refused; the first \(Self.refusalsPerReport) are recorded on the audit branch")
        }
        if !recorded.isEmpty { await record(recorded) }
        return (IntakeReport(format: format.rawValue, findings: findings.count, items: items), reconcile)
    }

    /// How many refused changes of one report are recorded on the audit branch.
    static let refusalsPerReport = 20

    /// Commits the records of reopened findings and of refused changes (each once) and pushes
    /// them; a failure is logged, the intake's answer stands (the next report of the finding
    /// records it again).
    func record(_ records: [AuditRecord]) async {
        let console = Console()
        do {
            var wrote = false
            for record in records where try await !repository.contains(recordID: record.id) {
                _ = try await repository.write(record)
                wrote = true
            }
            if wrote, case .keptLocally(_, let reason, _) = try await repository.publish() {
                console.warn("the record of a reopened or refused finding is kept locally and pushed on the next run: \(reason)")
            }
        } catch {
            console.warn("cannot record a reopened or refused finding on the audit branch: \(error)")
        }
    }

    /// The bindings whose targets give a finding its exposure: those it names, else, for a finding
    /// that names neither a target nor a managed resource (garak's finding is about a model), those
    /// of the resource its `propose` rule would change (the gateway in front of that model).
    static func related(_ finding: Finding, matched: [Binding], rule: FindingRule?, in state: DesiredState) -> [Binding] {
        guard matched.isEmpty, finding.target == nil, state.targets[finding.resource] == nil, let rule, rule.action == .propose,
              let change = try? rule.change?.render(for: finding),
              case .success(let resource) = ProposalEngine.resolve(change.resource, in: state) else { return matched }
        return state.bindings.filter { $0.resource == resource.id }
    }
}
