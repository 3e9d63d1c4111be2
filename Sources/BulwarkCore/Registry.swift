/// A resource kind an adapter provides: how to read its spec and how to reconcile it.
public struct KindDefinition: Sendable {
    public var name: String
    public var adapter: String
    /// Reads `spec`; returns nil after recording errors through the reader.
    public var parse: @Sendable (SpecReader) -> ResourceSpec?
    public var driver: any ResourceDriver
    /// Whether changing a desired property from one value to another moves it in the less secure
    /// direction; returns why (`PermitRootLogin no → yes turns root login on`), or nil. A kind
    /// without it never holds a change as weakening.
    public var weakens: @Sendable (_ property: String, _ from: String, _ to: String) -> String?
    /// Whether the kind was given a `weakens` judgement. Without one, nil from `weakens` means
    /// "not known", not "as strict": a finding's change to such a kind's existing value has an
    /// unknown direction, and is never merged without a person (`ProposalEngine`).
    public var judgesDirection: Bool
    /// Whether a property of a resource new in a revision is weak on its own (a command the
    /// resource would run as root): returns why, or nil. A resource renamed is a new resource,
    /// so what `weakens` holds would otherwise pass under a new name. The host kinds judge each
    /// value by `weakens` from the property as if it had been off (`HostWeakening.judgedNew`).
    /// Nil: a new resource of the kind is not a weakening of anything.
    public var weakensNew: (@Sendable (_ property: String, _ value: String) -> String?)? = nil
    /// Whether a property set to `value` weakens what another property of the same subject
    /// (`governed`, set to `was` by an earlier revision) names under another name: returns why,
    /// or nil (also where the two can never name the same value). A ConfigFile's
    /// `guardrails[0].litellm_params.mode` may be the value `guardrails[guardrail_name=pii].litellm_params.mode`
    /// names, and `litellm_settings.callbacks[0]` a part of `litellm_settings.callbacks`'s.
    /// Nil: distinct property names of the kind name distinct things.
    public var weakensThrough: (@Sendable (_ property: String, _ value: String, _ governed: String, _ was: String) -> String?)? = nil
    /// Whether two properties of one subject with different names surely name the same value
    /// and want it different (a ConfigFile's `guardrails[*].litellm_params.mode: logging_only` and
    /// `guardrails[guardrail_name=pii].litellm_params.mode: pre_call`): two resources that set
    /// them conflict, as two that set one property do. Nil: only equal names conflict.
    public var conflicts: (@Sendable (_ property: String, _ value: String, _ other: String, _ otherValue: String) -> Bool)? = nil

    public init(name: String, adapter: String,
                parse: @escaping @Sendable (SpecReader) -> ResourceSpec?, driver: any ResourceDriver,
                weakens: (@Sendable (_ property: String, _ from: String, _ to: String) -> String?)? = nil) {
        self.name = name
        self.adapter = adapter
        self.parse = parse
        self.driver = driver
        self.weakens = weakens ?? { _, _, _ in nil }
        self.judgesDirection = weakens != nil
    }
}

/// An adapter: the settings its targets take and the kinds it reconciles.
public struct AdapterDefinition: Sendable {
    public var name: String
    /// Reads a `Target`'s `spec` (without `adapter`); returns nil after recording errors.
    public var parseTarget: @Sendable (SpecReader) -> [String: String]?
    /// Reads a `Target`'s `spec` into the adapter's typed settings, erased here; nil for an
    /// adapter whose targets carry text settings only.
    public var parseTypedTarget: (@Sendable (SpecReader) -> AnyTypedSpec?)?
    public var kinds: [KindDefinition]

    public init(name: String, parseTarget: @escaping @Sendable (SpecReader) -> [String: String]?,
                kinds: [KindDefinition]) {
        self.name = name
        self.parseTarget = parseTarget
        self.kinds = kinds
    }

    /// An adapter whose targets' settings are typed: `settings` reads them once, and drivers read
    /// them back with `Target.typedSettings`.
    public init<Settings: TypedTargetSettings>(name: String, settings: @escaping @Sendable (SpecReader) -> Settings?,
                                               kinds: [KindDefinition]) {
        self.name = name
        self.parseTarget = { settings($0)?.strings }
        self.parseTypedTarget = { settings($0).map(AnyTypedSpec.init) }
        self.kinds = kinds
    }

    /// A target read with this adapter: typed settings when the adapter has them, else text.
    func readTarget(_ spec: SpecReader, name: String, labels: [String: String], location: SourceLocation) -> Target? {
        if let parseTypedTarget {
            guard let typed = parseTypedTarget(spec), let settings = typed.base as? any TypedTargetSettings else { return nil }
            var target = Target(name: name, adapter: self.name, labels: labels, settings: settings.strings, location: location)
            target.typed = typed
            return target
        }
        guard let settings = parseTarget(spec) else { return nil }
        return Target(name: name, adapter: self.name, labels: labels, settings: settings, location: location)
    }
}

/// Every adapter and kind this build of Bulwark knows.
public struct Registry: Sendable {
    public let adapters: [String: AdapterDefinition]
    public let kinds: [String: KindDefinition]

    public init(_ adapters: [AdapterDefinition]) {
        var byName: [String: AdapterDefinition] = [:]
        var kinds: [String: KindDefinition] = [:]
        for adapter in adapters {
            byName[adapter.name] = adapter
            for kind in adapter.kinds { kinds[kind.name] = kind }
        }
        self.adapters = byName
        self.kinds = kinds
    }

    public var kindNames: [String] { kinds.keys.sorted() }
}
