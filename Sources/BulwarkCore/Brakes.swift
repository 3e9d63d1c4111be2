/// What a desired state says, per binding, about changing it without a person: its mode (an
/// annotation can only make a resource stricter than its controller: enforce → approve → audit)
/// and its protection (a `protected` resource, or one whose subject, such as an account, a path
/// or a role, a protected resource names on the same target). The plan decides with it, and
/// `apply --plan` asks the branch head with it whether a brake came since the reviewed commit.
/// Built once per state: the protected subjects are indexed, not searched per binding.
public struct Brakes: Sendable {
    private let state: DesiredState
    /// target NUL subject → the protected resource that names it.
    private let protectedObjects: [String: ResourceID]

    public init(_ state: DesiredState) {
        self.state = state
        var protectedObjects: [String: ResourceID] = [:]
        for binding in state.bindings {
            guard let resource = state.resources[binding.resource], resource.labels[Planner.protectedLabel] == "true",
                  !resource.spec.subject.isEmpty else { continue }
            protectedObjects[binding.target + "\u{0}" + resource.spec.subject] = resource.id
        }
        self.protectedObjects = protectedObjects
    }

    /// The mode `resource` is planned in under `controller`.
    public static func mode(of resource: Resource, under controller: ControllerConfig) -> Mode {
        max(controller.mode, resource.annotations["mode"].flatMap(Mode.init(rawValue:)) ?? controller.mode)
    }

    /// The mode `binding` is planned in; nil when the state does not bind it so.
    public func mode(of binding: Binding) -> Mode? {
        guard let resource = state.resources[binding.resource], let controller = state.controllers[binding.controller] else { return nil }
        return Self.mode(of: resource, under: controller)
    }

    /// Why `resource` on `target` is never changed automatically, or nil.
    public func protection(of resource: Resource, on target: String) -> String? {
        if resource.labels[Planner.protectedLabel] == "true" { return "protected resource: never changed automatically" }
        if !resource.spec.subject.isEmpty, let owner = protectedObjects[target + "\u{0}" + resource.spec.subject] {
            return "\(resource.spec.subject) is protected by \(owner): never changed automatically"
        }
        return nil
    }
}
