import Foundation

/// Resources bound to the targets their controllers select.
extension DesiredStateLoader {
    func bind(
        targets: [String: Target], controllers: [String: ControllerConfig], resources: [ResourceID: Resource],
        diagnostics: Diagnostics
    ) -> [Binding] {
        var bindings: [Binding] = []
        var owner: [String: Binding] = [:]  // "target kind/name" -> the binding that handles it
        var claims: [String: Resource] = [:]  // "target kind subject property" -> resource
        for controller in controllers.values.sorted(by: { $0.name < $1.name }) {
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
            for controller in controllers.values.sorted(by: { $0.name < $1.name }) where controller.kinds.contains(kind.name) {
                for target in targets.values.sorted(by: { $0.name < $1.name })
                where target.adapter == kind.adapter && controller.targets.matches(target) && resource.targets.matches(target) {
                    let binding = Binding(controller: controller.name, target: target.name, resource: resource.id)
                    let key = "\(target.name) \(resource.id)"
                    if let other = owner[key] {
                        diagnostics.error(ManifestError(
                            "controllers \(other.controller) and \(controller.name) both handle \(resource.id) on target \(target.name)",
                            at: controller.location, resource: "Controller/\(controller.name)", field: "spec.kinds"))
                        continue
                    }
                    owner[key] = binding
                    for property in resource.spec.properties {
                        let claim = "\(target.name)\u{0}\(kind.name)\u{0}\(resource.spec.subject)\u{0}\(property.name)"
                        if let other = claims[claim], other.id != resource.id {
                            diagnostics.error(ManifestError(
                                "conflicts with \(other.id) (\(other.location)): both set \(property.name)"
                                    + (resource.spec.subject.isEmpty ? "" : " of \(resource.spec.subject)")
                                    + " on target \(target.name)",
                                at: resource.location, resource: resource.id.description, field: "spec"))
                        }
                        claims[claim] = resource
                    }
                    bindings.append(binding)
                    bound = true
                }
            }
            // Unbound is worth a warning only where the kind's adapter has targets at all: shipped
            // examples for an adapter nobody uses yet are not a mistake.
            if !bound, targets.values.contains(where: { $0.adapter == kind.adapter }) {
                diagnostics.warning(ManifestError("no controller and target handle this resource; it is not reconciled",
                                                  at: resource.location, resource: resource.id.description))
            }
        }
        return bindings.sorted()
    }
}
