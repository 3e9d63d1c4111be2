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
        // A message, a field path or a name can quote the revision's own text (a key holding a
        // newline, a value with U+2028): each stays one bounded line, so a hostile manifest
        // cannot forge lines in `validate`'s output, a log or a refusal record.
        self.resource = resource.map { TerminalText.escapedLine($0, limit: 512) }
        self.field = field.map { TerminalText.escapedLine($0, limit: 512) }
        self.message = TerminalText.escapedLine(message, limit: 4096)
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
    /// At most this many errors are shown for one file, and at most `maxShown` in all; the rest
    /// are counted ("… and 12 more"), so a hostile revision cannot flood a terminal or a log.
    public static let maxShownPerFile = 20
    public static let maxShown = 100

    public var errors: [ManifestError]
    /// Errors found but not kept (beyond `Diagnostics.maxKept`).
    public var omitted: Int

    public init(errors: [ManifestError], omitted: Int = 0) {
        self.errors = errors.sorted { ($0.location.file, $0.location.line, $0.location.column) < ($1.location.file, $1.location.line, $1.location.column) }
        self.omitted = omitted
    }

    /// Every error found, kept or not.
    public var count: Int { errors.count + omitted }

    /// The errors that are shown: at most `maxShownPerFile` per file and `maxShown` in all.
    public var shown: [ManifestError] {
        var perFile: [String: Int] = [:]
        var result: [ManifestError] = []
        for error in errors where result.count < Self.maxShown {
            let seen = perFile[error.location.file, default: 0]
            perFile[error.location.file] = seen + 1
            if seen < Self.maxShownPerFile { result.append(error) }
        }
        return result
    }

    public var description: String {
        let shown = shown
        var lines = ["desired state is invalid (\(count) error\(count == 1 ? "" : "s")):"]
        lines += shown.map { "  " + $0.description }
        if count > shown.count { lines.append("  … and \(count - shown.count) more") }
        return lines.joined(separator: "\n")
    }
}

/// Collects problems while a revision is read, so that all of them are reported at once.
public final class Diagnostics {
    /// Problems kept in memory; beyond this they are only counted.
    public static let maxKept = 1_000

    public private(set) var errors: [ManifestError] = []
    public private(set) var warnings: [ManifestError] = []
    /// Errors and warnings counted but not kept.
    public private(set) var omittedErrors = 0
    public private(set) var omittedWarnings = 0
    public init() {}

    public func error(_ error: ManifestError) {
        if errors.count < Self.maxKept { errors.append(error) } else { omittedErrors += 1 }
    }

    public func warning(_ warning: ManifestError) {
        if warnings.count < Self.maxKept { warnings.append(warning) } else { omittedWarnings += 1 }
    }

    /// Whether any error was found, kept or not.
    public var hasErrors: Bool { !errors.isEmpty || omittedErrors > 0 }

    /// The failure that refuses the revision.
    public var failure: ValidationFailure { ValidationFailure(errors: errors, omitted: omittedErrors) }
}

/// A value from input as messages quote it: at most 64 characters, control and line-separator
/// characters escaped, so a hostile value can neither flood nor forge lines of a message.
public func quotedForMessage(_ text: some StringProtocol, limit: Int = 64) -> String {
    var result = ""
    var count = 0
    for scalar in text.unicodeScalars {
        guard count < limit else { return result + "…" }
        count += 1
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator, .format:
            result += scalar.escaped(asASCII: true)
        default:
            result.unicodeScalars.append(scalar)
        }
    }
    return result
}
