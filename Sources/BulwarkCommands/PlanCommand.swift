internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct PlanCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan",
            abstract: "Show drift and what Bulwark would do about each. Changes nothing.",
            discussion: """
                Exit codes: 0 in sync (or only drift a waiver covers), 2 drift found, 1 error (invalid revision, a resource \
                that could not be observed), 3 in sync but planned against the last fetched revision: the origin could \
                not be fetched (1 and 2 win over 3). \
                With --out FILE the plan is also saved (the JSON of --output json, mode 0600) for `bulwark apply --plan FILE`.
                """)

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var agent: AgentOptions

        @Option(help: ArgumentHelp("Also save the plan to this file (JSON, mode 0600, written atomically), for `bulwark apply --plan FILE`.",
                                   valueName: "file"))
        var out: String?

        func validate() throws {
            // Refused before the plan runs: "" names no file (its temporary file would land in the parent folder).
            try checkNotEmpty(["--out": out])
        }

        func run() async throws {
            let console = Console()
            var repository = self.repository
            let targets = try agent.prepare(&repository)
            var loaded: LoadedRevision
            let plan: Plan
            do {
                loaded = try await repository.load(console: console, targets: targets)
                warnAboutUncommittedChanges(console)
                plan = try await loaded.plan(Reconciler(registry: Bulwark.registry()), console: console)
            } catch let refused as RevisionRefused {
                if output.output == .json { console.json(PlanReport.Refused(refused)) }
                throw refused
            }
            let report = PlanReport(plan: plan, state: loaded.state)
            switch output.output {
            case .text: report.print(console)
            case .json: console.json(report)
            }
            if let out {
                try PlanFile.write(report, to: out)
                if output.output == .text { console.print("Saved the plan to \(out); apply exactly it with: bulwark apply --plan \(out)") }
            }
            if !plan.failures.isEmpty { throw ExitCode.failure }
            if plan.hasUnwaivedDrift { throw ExitCode(2) }
            if loaded.stale != nil { throw ExitCode.staleOrUnpushed }
        }

        /// `plan` reads commits; a local repository's working tree with changes is not what is planned.
        func warnAboutUncommittedChanges(_ console: Console) {
            let url = repository.url
            guard url.hasPrefix("/"), let local = try? Repository.open(at: url),
                  let changes = try? local.uncommittedChanges(), changes > 0 else { return }
            console.warn("\(url) has \(changes) uncommitted change\(changes == 1 ? "" : "s") in its working tree; "
                         + "plan reads only commits on \(repository.branch): commit them to plan them")
        }
    }
}

extension PlanReport {
    /// `plan --output json` of a refused revision: nothing planned, the errors, `refused`.
    struct Refused: Encodable {
        var schemaVersion = JSONSchema.version
        var generatedAt = Date()
        var revision: Revision
        var resources = 0
        var targets = 0
        var inSync = 0
        var drift: [Item] = []
        var errors: [String]
        var refused = true

        init(_ refused: RevisionRefused) {
            revision = Revision(refused.revision)
            errors = refused.errors
        }
    }
}

/// A plan as shown to people and to scripts.
struct PlanReport: Encodable {
    struct Item: Encodable {
        var target: String
        var resource: String
        var controller: String
        var severity: Severity
        var risk: Int
        var decision: Decision
        var reason: String?
        var changes: [Change]
    }

    struct Change: Codable, Hashable {
        var property: String
        var observed: String?
        var desired: String

        init(property: String, observed: String?, desired: String) {
            self.property = property
            self.observed = observed
            self.desired = desired
        }

        /// A drift as plans show it: sensitive values redacted (also what `apply --plan` compares).
        init(_ drift: PropertyDrift) {
            self.init(property: drift.property, observed: drift.sensitive ? "[redacted]" : drift.observed, desired: drift.shownDesired)
        }
    }

    var schemaVersion = JSONSchema.version
    var generatedAt = Date()
    var revision: Revision
    var resources: Int
    var targets: Int
    var inSync: Int
    var drift: [Item]
    var errors: [String]
    /// What each target's exclusive claim was as the plan began (a network namespace's device
    /// and inode), by target name: `apply --plan` writes only where these still hold.
    var targetIdentities: [String: String]?

    init(plan: Plan, state: DesiredState) {
        revision = state.revision
        resources = state.resources.count
        targets = state.targets.count
        inSync = plan.inSync.count
        drift = plan.remediations.map { r in
            Item(target: r.binding.target, resource: r.binding.resource.description, controller: r.binding.controller,
                 severity: r.severity, risk: r.risk, decision: r.decision, reason: r.reason,
                 changes: r.changes.map(Change.init))
        }
        errors = plan.failures.map(\.line)
        targetIdentities = plan.targetIdentities.isEmpty ? nil : plan.targetIdentities
        shownErrors = ObservationFailure.lines(plan.failures)
    }

    /// `errors` as the text output shows them (alike failures of one target as one line).
    private var shownErrors: [String] = []

    private enum CodingKeys: String, CodingKey {
        case schemaVersion, generatedAt, revision, resources, targets, inSync, drift, errors, targetIdentities
    }

    func print(_ console: Console) {
        var out = console.buffered()
        out.print(console.paint("Desired state \(revision.short)", .bold)
                  + ": \(resources) resources on \(targets) target\(targets == 1 ? "" : "s")")
        for item in drift {
            let verb = switch item.decision {
            case .applied: console.paint("will fix", .green)
            case .deferred: console.paint("deferred", .yellow)
            case .escalated: console.paint("escalated", .red)
            case .blocked: console.paint("blocked", .red)
            case .reported: console.paint("report only", .blue)
            default: console.paint(item.decision.rawValue, .yellow)
            }
            var line = "\(item.target)  \(item.resource)  [\(item.severity.rawValue)]  \(verb)"
            if let reason = item.reason { line += console.paint(" (\(reason))", .dim) }
            out.print(line)
            for change in item.changes {
                out.print("    \(change.property): \(change.observed ?? "(unset)") -> \(change.desired)")
            }
        }
        out.flush()
        for error in shownErrors { console.error(error) }
        let properties = drift.reduce(0) { $0 + $1.changes.count }
        console.print(drift.isEmpty && errors.isEmpty
                      ? console.paint("In sync: \(inSync) resource\(inSync == 1 ? "" : "s").", .green)
                      : "Drift: \(drift.count) resource\(drift.count == 1 ? "" : "s") (\(properties) propert\(properties == 1 ? "y" : "ies")). "
                        + "In sync: \(inSync). Errors: \(errors.count).")
    }
}
