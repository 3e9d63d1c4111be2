/// A kind's typed reading of a resource's `spec`, or an adapter's of a target's settings: made
/// once, when the desired state is read (where an error can name file, line and field), and
/// carried with the resource or target, so that observe, assess and apply never parse text again.
public protocol TypedSpec: Sendable, Hashable {}

/// A typed spec with its type erased, once, at the registry, so that `ResourceSpec` and `Target`
/// stay plain values whatever adapter made them. An adapter reads its own type back with `as`.
public struct AnyTypedSpec: Sendable, Hashable, CustomStringConvertible {
    public let base: any TypedSpec

    public init(_ base: some TypedSpec) { self.base = base }

    /// The value, if it is a `T`.
    public func `as`<T: TypedSpec>(_ type: T.Type) -> T? { base as? T }

    public static func == (a: AnyTypedSpec, b: AnyTypedSpec) -> Bool { a.base.isEqual(to: b.base) }
    public func hash(into hasher: inout Hasher) { base.hash(into: &hasher) }
    public var description: String { String(describing: base) }
}

extension TypedSpec {
    fileprivate func isEqual(to other: any TypedSpec) -> Bool {
        guard let other = other as? Self else { return false }
        return self == other
    }
}

/// A target's settings typed by its adapter. `strings` is their text form, which `Target.settings`
/// keeps for what prints or compares targets without knowing the adapter.
public protocol TypedTargetSettings: TypedSpec {
    var strings: [String: String] { get }
    /// What the target must be the only one of its adapter to manage (an nftables ruleset), so
    /// that the loader refuses a second target that names it too; nil (the default): nothing.
    var exclusive: ExclusiveClaim? { get }
    /// What `exclusive` is on the machine this process runs on, read now (a network namespace's
    /// device and inode), for a pass to compare: two claims that differ by name can be one thing
    /// (two namespace names bound to one namespace, or a name bound to the namespace Bulwark runs
    /// in). Nil where it cannot be read: the claim is then compared by its key alone, and the
    /// target's own observation says what is wrong. Only reads.
    func exclusiveIdentity() -> String?
}

extension TypedTargetSettings {
    public var exclusive: ExclusiveClaim? { nil }
    public func exclusiveIdentity() -> String? { nil }
}

/// Something one target manages alone. Two targets of one adapter that claim the same thing
/// make a revision invalid: each would judge its changes against its own settings only, while
/// both write the same thing, so one target's guard could block a change the other applies.
public struct ExclusiveClaim: Sendable, Hashable {
    /// What is claimed, compared between the targets of one adapter (`netns lab-1`).
    public var key: String
    /// The spec field that names it (`netns`); nil where leaving a field out claims it (the
    /// host's own namespace): the error is then on `spec`.
    public var field: String?
    /// What it is, as the error names it ("the nftables ruleset of network namespace lab-1").
    public var what: String
    /// Why two targets cannot share it, and what to do instead.
    public var why: String

    public init(key: String, field: String?, what: String, why: String) {
        self.key = key
        self.field = field
        self.what = what
        self.why = why
    }
}

/// A resource or target carries no typed value of the type its adapter expects: it was not made
/// by the adapter's own parser (a programming error, never a policy's).
public struct MissingTypedSpec: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension ResourceSpec {
    public init(subject: String = "", properties: [DesiredProperty], typed: some TypedSpec) {
        self.init(subject: subject, properties: properties)
        self.typed = AnyTypedSpec(typed)
    }
}

extension Resource {
    /// The resource's spec as its kind's parser typed it.
    public func typedSpec<T: TypedSpec>(_ type: T.Type) throws(MissingTypedSpec) -> T {
        guard let value = spec.typed?.as(type) else {
            throw MissingTypedSpec("\(id) (\(location)) has no \(T.self) spec: it was not read by its kind's parser")
        }
        return value
    }
}

extension Target {
    /// The target's settings as its adapter typed them.
    public func typedSettings<T: TypedTargetSettings>(_ type: T.Type) throws(MissingTypedSpec) -> T {
        guard let value = typed?.as(type) else {
            throw MissingTypedSpec("target \(name) (\(location)) has no \(T.self) settings: it was not read by its adapter")
        }
        return value
    }
}
