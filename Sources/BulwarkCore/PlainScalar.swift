/// How YAML 1.1 (PyYAML, which LiteLLM uses) types a scalar written without quotes: `null`,
/// `~` and the empty scalar are null, `true`/`yes`/`on` (and their `false` twins, in the three
/// spellings PyYAML knows) are booleans, JSON's number grammar is a number, anything else is a
/// string. One table for the config files Bulwark edits and the finding rules it reads.
public enum PlainScalar: Sendable, Hashable {
    case null
    case bool(Bool)
    case number
    case string

    public init(_ text: String) {
        switch text {
        case "", "~", "null", "Null", "NULL": self = .null
        case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON": self = .bool(true)
        case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF": self = .bool(false)
        default: self = Self.isNumber(text) ? .number : .string
        }
    }

    /// Whether the text, written plain, means something other than a string.
    public var isTyped: Bool { self != .string }

    /// JSON's number grammar.
    public static func isNumber(_ text: String) -> Bool {
        var s = Substring(text)
        if s.first == "-" { s = s.dropFirst() }
        let digits = s.prefix(while: { $0.isASCII && $0.isNumber })
        guard !digits.isEmpty, digits == "0" || digits.first != "0" else { return false }
        s = s.dropFirst(digits.count)
        if s.first == "." {
            s = s.dropFirst()
            let fraction = s.prefix(while: { $0.isASCII && $0.isNumber })
            guard !fraction.isEmpty else { return false }
            s = s.dropFirst(fraction.count)
        }
        if s.first == "e" || s.first == "E" {
            s = s.dropFirst()
            if s.first == "+" || s.first == "-" { s = s.dropFirst() }
            let exponent = s.prefix(while: { $0.isASCII && $0.isNumber })
            guard !exponent.isEmpty else { return false }
            s = s.dropFirst(exponent.count)
        }
        return s.isEmpty
    }
}
