/// The policy kinds (those that are not resources), registered in a table the way adapter kinds
/// are in the `Registry`: each names the folder its manifests belong in and the reader that adds
/// what it reads to the revision. Adding a policy kind adds one entry here.
struct PolicyKind: Sendable {
    /// What a reader is given of one manifest: its name, labels and location, its `spec`, the whole
    /// document (for the fields beside `spec`), and how to report a second object of the same name.
    struct Document {
        var name: String
        var labels: [String: String]
        var file: String
        var location: SourceLocation
        var top: SpecReader
        var spec: SpecReader
        var duplicate: (SourceLocation) -> Void
    }

    typealias Reader = @Sendable (
        _ loader: DesiredStateLoader, _ document: Document,
        _ targets: inout [String: Target], _ controllers: inout [String: ControllerConfig], _ policy: inout PolicyObjects
    ) -> Void

    var name: String
    /// The folder (`controllers/`) the kind's manifests must be under.
    var folder: String
    var read: Reader
}

extension DesiredStateLoader {
    /// Every policy kind, by name.
    static let policyKindTable: [String: PolicyKind] = Dictionary(uniqueKeysWithValues: [
        PolicyKind(name: "GlobalLimits", folder: "controllers/") { _, document, _, _, policy in
            if let existing = policy.globalLimit { document.duplicate(existing.location); return }
            let spec = document.spec
            guard spec.entries() != nil else { return }
            spec.allowOnly(["maxChangesPerCycle"])
            if let value = spec.field("maxChangesPerCycle", required: true)?.int(in: 0...10_000_000) {
                policy.globalLimit = (value, document.location)
            }
        },
        PolicyKind(name: "Notifier", folder: "controllers/") { loader, document, _, _, policy in
            if let existing = policy.notifiers.first(where: { $0.name == document.name }) { document.duplicate(existing.location); return }
            if let notifier = loader.readNotifier(document.spec, name: document.name, location: document.location) {
                policy.notifiers.append(notifier)
            }
        },
        PolicyKind(name: "Waiver", folder: "waivers/") { loader, document, _, _, policy in
            if let existing = policy.waivers.first(where: { $0.name == document.name }) { document.duplicate(existing.location); return }
            if let waiver = loader.readWaiver(document.spec, name: document.name, location: document.location) {
                policy.waivers.append(waiver)
            }
        },
        PolicyKind(name: "Pause", folder: "controllers/") { _, document, _, _, policy in
            if let existing = policy.pause { document.duplicate(existing.location); return }
            let spec = document.spec
            guard spec.entries() != nil else { return }
            spec.allowOnly(["paused", "reason"])
            let paused = spec.field("paused")?.bool() ?? true
            guard let reason = spec.field("reason", required: true)?.string() else { return }
            if paused { policy.pause = Pause(reason: reason, location: document.location) }
        },
        PolicyKind(name: "Approval", folder: "approvals/") { loader, document, _, _, policy in
            if let approval = loader.readApproval(document.spec, file: document.file, location: document.location) {
                if let existing = policy.approvals[approval.id] { document.duplicate(existing.location); return }
                policy.approvals[approval.id] = approval
            }
        },
        PolicyKind(name: "Target", folder: "controllers/") { loader, document, targets, _, policy in
            if let existing = targets[document.name] { document.duplicate(existing.location); return }
            if document.top.field("targets") != nil { document.top.field("targets")?.fail("a Target has no 'targets' field") }
            if let target = loader.readTarget(document.spec, name: document.name, labels: document.labels, location: document.location) {
                // Refused rather than judged together (as host targets sharing a root are, by
                // `GuardDomain.scope`): such targets write one thing from two sets of settings.
                // Machine-local targets whose labels bind them to different hosts of a fleet
                // (`placedApart`) each name their own machine's, and do not clash.
                if let (key, claim) = target.exclusiveClaim {
                    let reader = claim.field.flatMap { document.spec.field($0) } ?? document.spec
                    if let first = policy.claims[key, default: []].first(where: { !(target.isMachineLocal && target.placedApart(from: $0.target)) }) {
                        reader.fail("\(claim.what) is already managed by Target '\(first.target.name)' "
                                    + "(\(first.location.file):\(first.location.line), \(first.field)): \(claim.why)")
                    } else {
                        policy.claims[key, default: []].append((target, reader.location, reader.field))
                    }
                }
                targets[document.name] = target
            }
        },
        PolicyKind(name: "Controller", folder: "controllers/") { loader, document, _, controllers, _ in
            if let existing = controllers[document.name] { document.duplicate(existing.location); return }
            if let controller = loader.readController(document.spec, name: document.name, location: document.location) {
                controllers[document.name] = controller
            }
        },
        PolicyKind(name: "FindingRule", folder: "finding-rules/") { loader, document, _, _, policy in
            if let existing = policy.findingRules.first(where: { $0.name == document.name }) { document.duplicate(existing.location); return }
            if let rule = loader.readFindingRule(document.spec, name: document.name, location: document.location) {
                policy.findingRules.append(rule)
            }
        },
    ].map { ($0.name, $0) })

    /// Kinds that are not resources, and the folder each belongs in.
    static var policyKinds: [String: String] { policyKindTable.mapValues(\.folder) }
}
