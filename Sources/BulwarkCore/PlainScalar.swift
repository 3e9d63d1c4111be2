/// How YAML 1.1 (PyYAML, which LiteLLM uses) types a scalar written without quotes: `null`,
/// `~` and the empty scalar are null, `true`/`yes`/`on` (and their `false` twins, in the three
/// spellings PyYAML knows) are booleans, PyYAML's int and float patterns are numbers, anything
/// else is a string. One table for the config files Bulwark edits and the finding rules it reads.
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

    /// Whether PyYAML's resolver reads the text as an int or a float (`resolver.py`, YAML 1.1).
    /// `1e2` and `6.0e2` are strings there (a float needs a dot, an exponent its sign), while
    /// `1_000_000`, `0x1F`, `017` (octal), `+1`, `.5`, `1.`, `1:30` (sexagesimal) and `.inf` are
    /// numbers.
    public static func isNumber(_ text: String) -> Bool { isInt(text) || isFloat(text) }

    /// `[-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+ | [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`
    public static func isInt(_ text: String) -> Bool {
        var s = Substring(text)
        if s.first == "-" || s.first == "+" { s = s.dropFirst() }
        if s.hasPrefix("0b") { return some(s.dropFirst(2)) { $0 == "0" || $0 == "1" || $0 == "_" } }
        if s.hasPrefix("0x") { return some(s.dropFirst(2)) { ($0.isASCII && $0.isHexDigit) || $0 == "_" } }
        if s == "0" { return true }
        if s.first == "0" { return some(s.dropFirst()) { ("0"..."7").contains($0) || $0 == "_" } }
        guard let first = s.first, ("1"..."9").contains(first) else { return false }
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        return some(parts[0]) { isDigit($0) || $0 == "_" } && parts.dropFirst().allSatisfy(isSexagesimal)
    }

    /// `[-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9][0-9_]*([eE][-+][0-9]+)? |
    /// [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)`
    public static func isFloat(_ text: String) -> Bool {
        var s = Substring(text)
        if s == ".nan" || s == ".NaN" || s == ".NAN" { return true }
        var signed = false
        if s.first == "-" || s.first == "+" {
            s = s.dropFirst()
            signed = true
        }
        if s == ".inf" || s == ".Inf" || s == ".INF" { return true }
        if s.first == "." {
            guard !signed, let digit = s.dropFirst().first, isDigit(digit) else { return false }
            let body = s.dropFirst().prefix { isDigit($0) || $0 == "_" }
            return isExponent(s.dropFirst(1 + body.count))
        }
        guard let digit = s.first, isDigit(digit) else { return false }
        let whole = s.prefix { isDigit($0) || $0 == "_" }
        s = s.dropFirst(whole.count)
        if s.first == "." {
            let fraction = s.dropFirst().prefix { isDigit($0) || $0 == "_" }
            return isExponent(s.dropFirst(1 + fraction.count))
        }
        guard s.first == ":", let dot = s.firstIndex(of: ".") else { return false }
        let parts = s[..<dot].split(separator: ":", omittingEmptySubsequences: false).dropFirst()
        return !parts.isEmpty && parts.allSatisfy(isSexagesimal) && s[s.index(after: dot)...].allSatisfy { isDigit($0) || $0 == "_" }
    }

    /// JSON's number grammar (what a JSON reader, and YAML 1.2's core schema, read as a number).
    public static func isJSONNumber(_ text: String) -> Bool {
        var s = Substring(text)
        if s.first == "-" { s = s.dropFirst() }
        let digits = s.prefix(while: isDigit)
        guard !digits.isEmpty, digits == "0" || digits.first != "0" else { return false }
        s = s.dropFirst(digits.count)
        if s.first == "." {
            s = s.dropFirst()
            let fraction = s.prefix(while: isDigit)
            guard !fraction.isEmpty else { return false }
            s = s.dropFirst(fraction.count)
        }
        if s.first == "e" || s.first == "E" {
            s = s.dropFirst()
            if s.first == "+" || s.first == "-" { s = s.dropFirst() }
            let exponent = s.prefix(while: isDigit)
            guard !exponent.isEmpty else { return false }
            s = s.dropFirst(exponent.count)
        }
        return s.isEmpty
    }

    private static func isDigit(_ c: Character) -> Bool { c.isASCII && c.isNumber }

    /// Not empty, and every character passes.
    private static func some(_ s: Substring, _ ok: (Character) -> Bool) -> Bool { !s.isEmpty && s.allSatisfy(ok) }

    /// `[0-5]?[0-9]`
    private static func isSexagesimal(_ part: Substring) -> Bool {
        guard (1...2).contains(part.count), part.allSatisfy(isDigit) else { return false }
        return part.count == 1 || ("0"..."5").contains(part.first ?? "9")
    }

    /// Empty, or `[eE][-+][0-9]+`: PyYAML's exponent needs its sign.
    private static func isExponent(_ s: Substring) -> Bool {
        guard let e = s.first else { return true }
        guard e == "e" || e == "E", let sign = s.dropFirst().first, sign == "+" || sign == "-" else { return false }
        return some(s.dropFirst(2), isDigit)
    }
}
