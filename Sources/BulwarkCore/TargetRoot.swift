/// The folder that stands for `/` on a target whose adapter reaches a tree of files (`/` for
/// the machine itself): an absolute path with no `..` component, checked once when the target
/// is read. Adapters that act on the same targets (the host's files, its Debian packages) read
/// it typed from the target's settings (`Target.root`), never from the settings' text, so none
/// of them can be handed a root the target's own adapter refused.
public struct TargetRoot: Sendable, Hashable, CustomStringConvertible {
    /// The path as the target names it.
    public let path: String

    /// Nil for a relative path or one with a `..` component (which could climb out of the folder).
    public init?(_ path: String) {
        guard PathText.isAbsolute(path), !PathText.climbs(path) else { return nil }
        self.path = path
    }

    public var description: String { path }

    /// Whether the root is `/` itself (`//` and `/.` too): the machine, not a sandbox.
    public var isMachine: Bool { path.split(separator: "/").allSatisfy { $0 == "." } }

    /// Reads a target's `root` field: nil after recording the error, which names the field.
    /// `meaning` says what the folder is, for the message (`the folder that stands for /; / for
    /// the machine itself`).
    public static func read(_ spec: SpecReader, meaning: String) -> TargetRoot? {
        guard let reader = spec.field("root", required: true), let text = reader.string() else { return nil }
        guard let root = TargetRoot(text) else {
            reader.fail("expected an absolute path (\(meaning)), got '\(text)'")
            return nil
        }
        return root
    }
}

/// Typed settings of a target with a root (`TargetRoot`).
public protocol RootedTargetSettings: TypedTargetSettings {
    var root: TargetRoot { get }
}

extension Target {
    /// The root its adapter read, typed; nil for a target no rooted adapter read (settings made
    /// by hand as text carry none: nothing is observed or changed on them).
    public var root: TargetRoot? {
        (typed?.base as? any RootedTargetSettings)?.root
    }
}
