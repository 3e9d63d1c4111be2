import Foundation

/// Resources bound to the targets their controllers select.
extension DesiredStateLoader {
    func bind(
        targets: [String: Target], controllers: [String: ControllerConfig], resources: [ResourceID: Resource],
        diagnostics: Diagnostics
    ) -> [Binding] {
        var bindings: [Binding] = []
        // Keyed by their parts and holding ids, not whole resources: a 100-target revision of 31
        // resources spent 10 ms building and copying these.
        struct Handled: Hashable { var target: String, resource: ResourceID }
        struct Claim: Hashable { var target: String, kind: String, subject: String, property: String }
        var owner: [Handled: Binding] = [:]  // target and resource -> the binding that handles it
        var claims: [Claim: ResourceID] = [:]  // target, kind, subject and property -> the resource that sets it
        // For kinds whose properties may name one value by several names (`KindDefinition.conflicts`):
        // target, kind and subject -> the resources that set it; each pair of resources judged once.
        var subjects: [Claim: [ResourceID]] = [:]
        var judged: [[ResourceID]: (String, String)?] = [:]
        // Sorted once: a revision of 20,000 resources sorted every target once per resource.
        let sortedControllers = controllers.values.sorted(by: { $0.name < $1.name })
        let sortedTargets = targets.values.sorted(by: { $0.name < $1.name })
        let adapters = Set(targets.values.map(\.adapter))
        for controller in sortedControllers {
            for name in controller.targets.names ?? [] where targets[name] == nil {
                diagnostics.error(ManifestError("controller \(controller.name) names unknown target '\(quotedForMessage(name))'",
                                                at: controller.location, resource: "Controller/\(controller.name)",
                                                field: "spec.targets.names"))
            }
        }
        for resource in resources.values.sorted(by: { $0.id < $1.id }) {
            for name in resource.targets.names ?? [] where targets[name] == nil {
                diagnostics.error(ManifestError("unknown target '\(quotedForMessage(name))'", at: resource.location,
                                                resource: resource.id.description, field: "targets.names"))
            }
            guard let kind = registry.kinds[resource.id.kind] else { continue }
            var bound = false
            // A resource that names its targets is matched against those only (in name order, as
            // all targets are): the same bindings, without a pass over every target.
            let candidates = resource.targets.names.map { names in Set(names).sorted().compactMap { targets[$0] } } ?? sortedTargets
            for controller in sortedControllers where controller.kinds.contains(kind.name) {
                for target in candidates
                where target.adapter == kind.adapter && controller.targets.matches(target) && resource.targets.matches(target) {
                    let binding = Binding(controller: controller.name, target: target.name, resource: resource.id)
                    let key = Handled(target: target.name, resource: resource.id)
                    if let other = owner[key] {
                        diagnostics.error(ManifestError(
                            "controllers \(other.controller) and \(controller.name) both handle \(resource.id) on target \(target.name)",
                            at: controller.location, resource: "Controller/\(controller.name)", field: "spec.kinds"))
                        continue
                    }
                    owner[key] = binding
                    for property in resource.spec.properties {
                        let claim = Claim(target: target.name, kind: kind.name, subject: resource.spec.subject, property: property.name)
                        if let other = claims[claim], other != resource.id, let location = resources[other]?.location {
                            diagnostics.error(ManifestError(
                                "conflicts with \(other) (\(location)): both set \(property.name)"
                                    + (resource.spec.subject.isEmpty ? "" : " of \(resource.spec.subject)")
                                    + " on target \(target.name)",
                                at: resource.location, resource: resource.id.description, field: "spec"))
                        }
                        claims[claim] = resource.id
                    }
                    if let conflicts = kind.conflicts {
                        let subject = Claim(target: target.name, kind: kind.name, subject: resource.spec.subject, property: "")
                        for other in subjects[subject] ?? [] where other != resource.id {
                            let pair = [other, resource.id]
                            if judged[pair] == nil {
                                judged[pair] = .some(Self.sameValue(resource, resources[other], conflicts))
                            }
                            guard case let (property, otherProperty)?? = judged[pair], let location = resources[other]?.location else { continue }
                            diagnostics.error(ManifestError(
                                "conflicts with \(other) (\(location)): its \(otherProperty) and this \(property) name the same value"
                                    + (resource.spec.subject.isEmpty ? "" : " of \(resource.spec.subject)")
                                    + " on target \(target.name), and want it different",
                                at: resource.location, resource: resource.id.description, field: "spec"))
                        }
                        subjects[subject, default: []].append(resource.id)
                    }
                    bindings.append(binding)
                    bound = true
                }
            }
            // Unbound is worth a warning only where the kind's adapter has targets at all: shipped
            // examples for an adapter nobody uses yet are not a mistake.
            if !bound, adapters.contains(kind.adapter) {
                diagnostics.warning(ManifestError("no controller and target handle this resource; it is not reconciled",
                                                  at: resource.location, resource: resource.id.description))
            }
        }
        return bindings.sorted()
    }

    /// The first two properties, of `resource` and of `other`, with different names that `conflicts`
    /// says name one value and want it different.
    static func sameValue(_ resource: Resource, _ other: Resource?, _ conflicts: (String, String, String, String) -> Bool) -> (String, String)? {
        guard let other else { return nil }
        for property in resource.spec.properties {
            for theirs in other.spec.properties where theirs.name != property.name {
                if conflicts(property.name, property.value, theirs.name, theirs.value) { return (property.name, theirs.name) }
            }
        }
        return nil
    }
}
