public import BulwarkCore

/// A host target's settings, checked once when the target is read (`spec: {adapter: host, root: PATH}`).
struct HostTargetSettings: TypedTargetSettings {
    /// The absolute folder that stands for `/` (`/` for the machine itself), with no `..`.
    var root: String

    var strings: [String: String] { ["root": root] }

    /// Reads `root`; nil after recording the error.
    @Sendable static func parse(_ spec: SpecReader) -> HostTargetSettings? {
        spec.allowOnly(["adapter", "root"])
        guard let reader = spec.field("root", required: true), let root = reader.string() else { return nil }
        let parts = root.split(separator: "/")
        guard root.hasPrefix("/"), !parts.contains("..") else {
            reader.fail("expected an absolute path (the folder that stands for /; / for the machine itself), got '\(root)'")
            return nil
        }
        return HostTargetSettings(root: root)
    }
}

extension Target {
    /// The host target's root as its adapter read it; nil for a target the host adapter did not read.
    var hostRoot: String? {
        (try? typedSettings(HostTargetSettings.self))?.root
    }
}
