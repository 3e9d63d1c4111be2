public import struct Foundation.Date

/// Reads one YAML node as a typed field, recording a precise error (file, line, field, what is
/// allowed) instead of throwing, so one pass reports every problem in a revision.
public struct SpecReader {
    public let node: YAMLNode
    /// Dotted path of the field (`spec.MaxAuthTries`).
    public let field: String
    public let file: String
    public let resource: String?
    let diagnostics: Diagnostics
    /// The loader's "now" (`DesiredStateLoader.now`): what a spec that changes with time (an
    /// expiry) is judged against, never the clock read again by a kind.
    public let now: Date

    public init(node: YAMLNode, field: String, file: String, resource: String?, diagnostics: Diagnostics, now: Date = Date()) {
        self.node = node
        self.field = field
        self.file = file
        self.resource = resource
        self.diagnostics = diagnostics
        self.now = now
    }

    public var location: SourceLocation { SourceLocation(file: file, line: node.line, column: node.column) }

    /// The `metadata.name` of the document this spec belongs to (`resource` is `Kind/name`, and
    /// neither holds a `/`); nil for a spec read on its own.
    public var documentName: String? {
        guard let resource, let slash = resource.firstIndex(of: "/") else { return nil }
        return String(resource[resource.index(after: slash)...])
    }

    /// Records an error on this field.
    public func fail(_ message: String) {
        diagnostics.error(ManifestError(message, at: location, resource: resource, field: field))
    }

    public func warn(_ message: String) {
        diagnostics.warning(ManifestError(message, at: location, resource: resource, field: field))
    }

    func child(_ node: YAMLNode, _ name: String) -> SpecReader {
        SpecReader(node: node, field: field.isEmpty ? name : "\(field).\(name)", file: file, resource: resource,
                   diagnostics: diagnostics, now: now)
    }

    // MARK: - Structure

    /// The entries of a mapping, in order; records an error when the node is not a mapping.
    public func entries() -> [(key: String, value: SpecReader)]? {
        guard case .mapping(let pairs) = node.value else {
            fail("expected a mapping, got \(node.typeName)")
            return nil
        }
        return pairs.map { pair in
            (pair.key, SpecReader(node: pair.value, field: field.isEmpty ? pair.key : "\(field).\(pair.key)",
                                  file: file, resource: resource, diagnostics: diagnostics, now: now))
        }
    }

    /// The value of `key` in a mapping, or nil (recording an error when `required`).
    public func field(_ key: String, required: Bool = false) -> SpecReader? {
        guard case .mapping(let pairs) = node.value else {
            fail("expected a mapping, got \(node.typeName)")
            return nil
        }
        guard let pair = pairs.first(where: { $0.key == key }), !pair.value.isNull else {
            if required { fail("missing required field '\(key)'") }
            return nil
        }
        return child(pair.value, key)
    }

    /// Records an error for every key not in `allowed`.
    public func allowOnly(_ allowed: [String]) {
        guard case .mapping(let pairs) = node.value else { return }
        for pair in pairs where !allowed.contains(pair.key) {
            diagnostics.error(ManifestError(
                "unknown field '\(quotedForMessage(pair.key))'; allowed: \(allowed.joined(separator: ", "))",
                at: SourceLocation(file: file, line: pair.keyNode.line, column: pair.keyNode.column),
                resource: resource, field: field.isEmpty ? pair.key : "\(field).\(pair.key)"))
        }
    }

    /// The items of a list; records an error when the node is not a list.
    public func items() -> [SpecReader]? {
        guard case .sequence(let nodes) = node.value else {
            fail("expected a list, got \(node.typeName)")
            return nil
        }
        return nodes.enumerated().map { index, node in
            SpecReader(node: node, field: "\(field)[\(index)]", file: file, resource: resource, diagnostics: diagnostics, now: now)
        }
    }

    // MARK: - Scalars

    /// The scalar's text, whatever its YAML type (`no`, `4` and `"no"` all read as text).
    public func string() -> String? {
        guard case .scalar(let text) = node.value, !node.isNull else {
            fail("expected a string, got \(node.typeName)")
            return nil
        }
        return text
    }

    public func int(in range: ClosedRange<Int>) -> Int? {
        guard let text = string() else { return nil }
        guard let value = Int(text), range.contains(value) else {
            fail("expected an integer from \(range.lowerBound) to \(range.upperBound), got '\(quotedForMessage(text))'")
            return nil
        }
        return value
    }

    public func bool() -> Bool? {
        guard let text = string() else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            fail("expected true or false, got '\(quotedForMessage(text))'")
            return nil
        }
    }

    public func oneOf(_ allowed: [String]) -> String? {
        guard let text = string() else { return nil }
        guard allowed.contains(text) else {
            fail("expected one of \(allowed.joined(separator: ", ")), got '\(quotedForMessage(text))'")
            return nil
        }
        return text
    }

    public func strings() -> [String]? {
        guard let items = items() else { return nil }
        let values = items.compactMap { $0.string() }
        return values.count == items.count ? values : nil
    }

    public func stringMap() -> [String: String]? {
        guard let entries = entries() else { return nil }
        var result: [String: String] = [:]
        for (key, value) in entries {
            guard let text = value.string() else { continue }
            result[key] = text
        }
        return result
    }

    // MARK: - Kinds that are maps of names to values

    /// A mapping of names to single values (sshd keywords, kernel parameters, login.defs keys):
    /// `property` checks one entry, records its own errors and returns nil for a bad one.
    /// Returns nil when any entry was bad, so one pass still reports every bad entry.
    public func keyedProperties(_ property: (String, SpecReader) -> DesiredProperty?) -> ResourceSpec? {
        guard let entries = entries() else { return nil }
        var properties: [DesiredProperty] = []
        var ok = true
        for (key, reader) in entries {
            if let value = property(key, reader) { properties.append(value) } else { ok = false }
        }
        return ok ? ResourceSpec(properties: properties) : nil
    }
}
