internal import BulwarkCore

// MARK: - Addressing a value in a structured file

/// A property's address in a YAML or JSON document: keys separated by `.`, list elements in
/// brackets.
///
/// - `general_settings.master_key`: the key `master_key` of the mapping at `general_settings`.
/// - `model_list[0].litellm_params.model`: the first element of the list.
/// - `model_list[*].litellm_params.guardrails`: every element of the list (the property holds when
///   it holds for each; a list with no element has nothing to hold, and the property does not
///   apply).
/// - `model_list[model_name=gpt-4].litellm_params.api_key`: every element that is a mapping whose
///   `model_name` is the scalar `gpt-4`.
///
/// A key cannot contain `.`, `[`, `]`, `=` or `*`; such a key cannot be addressed. Missing keys are
/// created when the property is set; list elements never are.
struct ConfigPath: Sendable, Hashable, CustomStringConvertible {
    enum Step: Sendable, Hashable {
        case key(String)
        case index(Int)
        case every
        case match(key: String, value: String)
    }

    static let maxLength = 512
    static let maxSteps = 32

    let steps: [Step]
    let description: String

    /// The last key of the path (`master_key`), which the guards judge by.
    var leafKey: String? {
        for step in steps.reversed() { if case .key(let key) = step { return key } }
        return nil
    }

    /// Parses `text`; returns why it is not a path.
    static func parse(_ text: String) -> Result<ConfigPath, PathError> {
        guard !text.isEmpty, text.utf8.count <= maxLength else {
            return .failure(PathError("a path of 1 to \(maxLength) bytes"))
        }
        if let problem = LineSafety.problem(text) { return .failure(PathError(problem)) }
        var steps: [Step] = []
        var rest = Substring(text)
        var expectKey = true
        while !rest.isEmpty {
            if rest.first == "[" {
                guard let close = rest.firstIndex(of: "]") else { return .failure(PathError("'[' without ']'")) }
                let inside = rest[rest.index(after: rest.startIndex)..<close]
                rest = rest[rest.index(after: close)...]
                if inside == "*" {
                    steps.append(.every)
                } else if let number = Int(inside), number >= 0, number < 1_000_000 {
                    steps.append(.index(number))
                } else if let equals = inside.firstIndex(of: "="), equals != inside.startIndex {
                    let key = String(inside[..<equals])
                    let value = String(inside[inside.index(after: equals)...])
                    guard validKey(key), !value.contains("[") else { return .failure(PathError("bad element match '[\(inside)]'")) }
                    steps.append(.match(key: key, value: value))
                } else {
                    return .failure(PathError("'[\(inside)]' is not [N], [*] or [key=value]"))
                }
                if rest.first == "." {
                    rest = rest.dropFirst()
                    guard !rest.isEmpty else { return .failure(PathError("ends with '.'")) }
                }
                expectKey = rest.first != "["
                continue
            }
            guard expectKey else { return .failure(PathError("expected '.' or '[' after ']'")) }
            let end = rest.firstIndex(where: { $0 == "." || $0 == "[" }) ?? rest.endIndex
            let key = String(rest[..<end])
            guard validKey(key) else { return .failure(PathError("'\(key)' is not a key (empty, or has ']' or '=')")) }
            steps.append(.key(key))
            rest = rest[end...]
            if rest.first == "." {
                rest = rest.dropFirst()
                guard !rest.isEmpty else { return .failure(PathError("ends with '.'")) }
            }
        }
        guard case .key = steps.first else { return .failure(PathError("must start with a key")) }
        guard steps.count <= maxSteps else { return .failure(PathError("more than \(maxSteps) steps")) }
        return .success(ConfigPath(steps: steps, description: text))
    }

    private static func validKey(_ key: String) -> Bool {
        !key.isEmpty && !key.contains("]") && !key.contains("=") && !key.contains("[") && !key.contains(".") && !key.contains("*")
    }

    struct PathError: Error, Sendable {
        var message: String
        init(_ message: String) { self.message = message }
    }
}

// MARK: - Values, typed as the application reads them

/// A value in a structured file, typed as YAML 1.1 (PyYAML, which LiteLLM uses) reads a plain
/// scalar, or as JSON reads it. Its `canonical` text (JSON, keys sorted) is what Bulwark compares
/// and records, so `"4000"` and `4000` differ and `yes` equals `true`.
indirect enum ConfigValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case list([ConfigValue])
    case map([String: ConfigValue])

    /// Whether this is a mapping, or a list with one somewhere inside.
    var holdsMapping: Bool {
        switch self {
        case .map: true
        case .list(let items): items.contains { $0.holdsMapping }
        default: false
        }
    }

    init(_ node: YAMLNode) {
        switch node.value {
        case .scalar(let text):
            guard node.isPlain else { self = .string(text); return }
            self = Self.plain(text)
        case .sequence(let items):
            self = .list(items.map(ConfigValue.init))
        case .mapping(let pairs):
            var map: [String: ConfigValue] = [:]
            for pair in pairs { map[pair.key] = ConfigValue(pair.value) }
            self = .map(map)
        }
    }

    static func plain(_ text: String) -> ConfigValue {
        switch PlainScalar(text) {
        case .null: return .null
        case .bool(let value): return .bool(value)
        case .number: return .number(text)
        case .string: return .string(text)
        }
    }

    /// Reads a canonical text back (it is JSON, which YAML reads as flow).
    static func fromCanonical(_ text: String) -> ConfigValue? {
        guard let documents = try? YAML.compose(Array(text.utf8)), documents.count == 1 else { return nil }
        guard let node = documents[0] else { return .null }
        return ConfigValue(node)
    }

    var canonical: String { json(pretty: false) }

    func json(pretty: Bool) -> String {
        switch self {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .number(let n): n
        case .string(let s): Self.jsonString(s)
        case .list(let items): "[" + items.map { $0.json(pretty: pretty) }.joined(separator: pretty ? ", " : ",") + "]"
        case .map(let map):
            "{" + map.keys.sorted().map { Self.jsonString($0) + (pretty ? ": " : ":") + (map[$0] ?? .null).json(pretty: pretty) }
                .joined(separator: pretty ? ", " : ",") + "}"
        }
    }

    /// The value as YAML flow text: plain where that reads back as the same value, else JSON.
    var yaml: String {
        switch self {
        case .string(let s) where Self.plainSafe(s): s
        case .list(let items): "[" + items.map(\.yaml).joined(separator: ", ") + "]"
        case .map(let map): "{" + map.keys.sorted().map { (Self.plainSafe($0) ? $0 : Self.jsonString($0)) + ": " + (map[$0] ?? .null).yaml }
            .joined(separator: ", ") + "}"
        default: json(pretty: true)
        }
    }

    /// A string YAML reads back unchanged without quotes, in block and flow context alike.
    static func plainSafe(_ s: String) -> Bool {
        // An address such as 127.0.0.1: digits and at least two dots never read as a number.
        if s.allSatisfy({ $0 == "." || ($0.isASCII && $0.isNumber) }), s.filter({ $0 == "." }).count >= 2,
           s.first != ".", s.last != "." { return true }
        guard let first = s.unicodeScalars.first, first.properties.isAlphabetic || first == "_" || first == "/",
              first.isASCII else { return false }
        guard s.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)
                                           || "_./@+-".unicodeScalars.contains($0)) }) else { return false }
        return plain(s) == .string(s)
    }

    /// `s` as a JSON string that YAML reads back the same: every character that could end a line
    /// or that YAML would not keep is escaped as `\uXXXX`.
    static func jsonString(_ s: String) -> String {
        var result = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.value > 0xFFFF, YAML.isPlainPrintableScalar(scalar) {
                    result.unicodeScalars.append(scalar)
                } else if scalar.value <= 0xFFFF, YAML.isPlainPrintableScalar(scalar) {
                    result.unicodeScalars.append(scalar)
                } else {
                    // Above the BMP and not printable: a surrogate pair, which JSON and YAML both read.
                    let units = Array(String(scalar).utf16)
                    for unit in units {
                        let hex = String(unit, radix: 16, uppercase: true)
                        result += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                    }
                }
            }
        }
        return result + "\""
    }
}

extension YAML {
    static func isPlainPrintableScalar(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        let printable = (0x20...0x7E).contains(v) || (0xA0...0xD7FF).contains(v) || (0xE000...0xFFFD).contains(v)
            || (0x10000...0x10FFFF).contains(v)
        guard printable else { return false }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: return false
        default: return true
        }
    }
}
