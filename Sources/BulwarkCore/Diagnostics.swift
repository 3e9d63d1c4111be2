/// A place in a desired-state file.
public struct SourceLocation: Sendable, Hashable, Codable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int = 1) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// One problem in the desired state: where, which field, and what is allowed.
public struct ManifestError: Error, Sendable, Hashable, CustomStringConvertible {
    public var location: SourceLocation
    /// The resource the problem belongs to (`Kind/name`), when known.
    public var resource: String?
    /// The field, as a dotted path (`spec.MaxAuthTries`), when the problem is in one.
    public var field: String?
    public var message: String

    public init(_ message: String, at location: SourceLocation, resource: String? = nil, field: String? = nil) {
        self.location = location
        self.resource = resource
        self.field = field
        self.message = message
    }

    public var description: String {
        var text = "\(location): "
        if let resource { text += "\(resource) " }
        if let field { text += "\(field): " }
        return text + message
    }
}

/// A revision refused whole: every problem found in it.
public struct ValidationFailure: Error, Sendable, CustomStringConvertible {
    public var errors: [ManifestError]
    public init(errors: [ManifestError]) { self.errors = errors.sorted { ($0.location.file, $0.location.line, $0.location.column) < ($1.location.file, $1.location.line, $1.location.column) } }
    public var description: String {
        "desired state is invalid (\(errors.count) error\(errors.count == 1 ? "" : "s")):\n"
            + errors.map { "  " + $0.description }.joined(separator: "\n")
    }
}

/// Collects problems while a revision is read, so that all of them are reported at once.
public final class Diagnostics {
    public private(set) var errors: [ManifestError] = []
    public private(set) var warnings: [ManifestError] = []
    public init() {}
    public func error(_ error: ManifestError) { errors.append(error) }
    public func warning(_ warning: ManifestError) { warnings.append(warning) }
}
