internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct PlanCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan",
            abstract: "Show drift and what Bulwark would do about each. Changes nothing.",
            discussion: "Exit codes: 0 in sync, 2 drift found, 1 error (invalid revision, a resource that could not be observed).")

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let console = Console()
            let loaded = try await repository.load(console: console)
            warnAboutUncommittedChanges(console)
            let plan = try await loaded.plan(Reconciler(registry: Bulwark.registry()), console: console)
            switch output.output {
            case .text: PlanReport(plan: plan, state: loaded.state).print(console)
            case .json: console.json(PlanReport(plan: plan, state: loaded.state))
            }
            if !plan.failures.isEmpty { throw ExitCode.failure }
            if plan.hasDrift { throw ExitCode(2) }
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

    struct Change: Encodable {
        var property: String
        var observed: String?
        var desired: String
    }

    var schemaVersion = JSONSchema.version
    var generatedAt = Date()
    var revision: String
    var resources: Int
    var targets: Int
    var inSync: Int
    var drift: [Item]
    var errors: [String]

    init(plan: Plan, state: DesiredState) {
        revision = state.revision
        resources = state.resources.count
        targets = state.targets.count
        inSync = plan.inSync.count
        drift = plan.remediations.map { r in
            Item(target: r.binding.target, resource: r.binding.resource.description, controller: r.binding.controller,
                 severity: r.severity, risk: r.risk, decision: r.decision, reason: r.reason,
                 changes: r.changes.map { Change(property: $0.property, observed: $0.sensitive ? "[redacted]" : $0.observed,
                                                 desired: $0.shownDesired) })
        }
        errors = plan.failures.map { "\($0.binding.target) \($0.binding.resource): \($0.message)" }
    }

    func print(_ console: Console) {
        console.print(console.paint("Desired state \(revision.prefix(12))", .bold)
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
            console.print(line)
            for change in item.changes {
                console.print("    \(change.property): \(change.observed ?? "(unset)") -> \(change.desired)")
            }
        }
        for error in errors { console.error(error) }
        let properties = drift.reduce(0) { $0 + $1.changes.count }
        console.print(drift.isEmpty && errors.isEmpty
                      ? console.paint("In sync: \(inSync) resources.", .green)
                      : "Drift: \(drift.count) resources (\(properties) properties). In sync: \(inSync). Errors: \(errors.count).")
    }
}
