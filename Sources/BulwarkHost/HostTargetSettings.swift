import BulwarkCore

/// A host target's settings, checked once when the target is read (`spec: {adapter: host, root: PATH}`).
/// Its root is the core's `TargetRoot`, which the packages adapter reads on the same targets.
struct HostTargetSettings: RootedTargetSettings {
    /// The absolute folder that stands for `/` (`/` for the machine itself), with no `..`.
    var root: TargetRoot

    var strings: [String: String] { ["root": root.path] }

    /// Reads `root`; nil after recording the error.
    @Sendable static func parse(_ spec: SpecReader) -> HostTargetSettings? {
        spec.allowOnly(["adapter", "root"])
        return TargetRoot.read(spec, meaning: "the folder that stands for /; / for the machine itself").map(HostTargetSettings.init)
    }
}

extension Target {
    /// The host target's root as its adapter read it; nil for a target the host adapter did not read.
    var hostRoot: String? {
        (try? typedSettings(HostTargetSettings.self))?.root.path
    }
}
