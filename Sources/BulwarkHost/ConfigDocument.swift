internal import BulwarkCore

/// A YAML or JSON file's text and its composed tree, edited in place: a changed value replaces
/// only the characters of the old value, a missing key is inserted as new lines (or, in a flow
/// mapping such as JSON, as one more entry), and everything else — comments, order, quoting,
/// blank lines, unmanaged keys — is kept byte for byte. JSON is edited the same way: nothing is
/// re-serialized.
struct ConfigDocument {
    enum Format: String, Sendable, Hashable { case yaml, json }

    let format: Format
    /// The text as Unicode scalars, and where each line starts (libyaml's line breaks).
    private(set) var scalars: [Unicode.Scalar]
    private var lineStarts: [Int] = []
    private(set) var root: YAMLNode?

    /// Bounds for a file Bulwark edits (the host reader already caps its size).
    static let limits: YAMLLimits = {
        var limits = YAMLLimits()
        limits.maxNodes = 200_000
        return limits
    }()

    init(text: String, format: Format) throws(DocumentError) {
        self.format = format
        scalars = Array(text.unicodeScalars)
        if scalars.first == "\u{FEFF}" { throw DocumentError("starts with a byte order mark; not edited") }
        try parse()
    }

    var text: String {
        var result = String.UnicodeScalarView()
        result.append(contentsOf: scalars)
        return String(result)
    }

    private mutating func parse() throws(DocumentError) {
        lineStarts = [0]
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            index += 1
            if scalar == "\r", index < scalars.count, scalars[index] == "\n" { index += 1 }
            if scalar == "\n" || scalar == "\r" || scalar == "\u{85}" || scalar == "\u{2028}" || scalar == "\u{2029}" {
                lineStarts.append(index)
            }
        }
        let documents: [YAMLNode?]
        do {
            documents = try YAML.compose(Array(text.utf8), limits: Self.limits)
        } catch {
            throw DocumentError("is not valid \(format == .json ? "JSON" : "YAML") at line \(error.line), column \(error.column): \(error.message)")
        }
        guard documents.count <= 1 else { throw DocumentError("holds \(documents.count) YAML documents; only a single document is managed") }
        root = documents.first ?? nil
        if let root, case .mapping = root.value {} else if root != nil {
            throw DocumentError("top level is \(root?.typeName ?? "empty"), not a mapping")
        }
    }

    // MARK: - Finding values

    /// Where a path leads in the document: a value that exists (with the key that holds it, for a
    /// mapping entry), or the deepest mapping (or null value) the missing keys go under.
    enum Place {
        case found(node: YAMLNode, key: YAMLNode?)
        /// `keys` are missing below `parent` (`parentKey` holds `parent` when it is a null value).
        case missing(parent: YAMLNode?, parentKey: YAMLNode?, keys: [String])
        /// A value on the way is not what the path expects (a scalar where a mapping was wanted).
        case blocked(String)
    }

    /// Every place `path` names; none when a list step matches no element.
    func places(_ path: ConfigPath) -> [Place] {
        guard let root else {
            let keys = path.steps.compactMap { step -> String? in if case .key(let k) = step { return k } else { return nil } }
            guard keys.count == path.steps.count else { return [.blocked("the document is empty; list elements are never created")] }
            return [.missing(parent: nil, parentKey: nil, keys: keys)]
        }
        var result: [Place] = []
        walk(node: root, key: nil, steps: path.steps[...], into: &result)
        return result
    }

    private func walk(node: YAMLNode, key: YAMLNode?, steps: ArraySlice<ConfigPath.Step>, into result: inout [Place]) {
        guard let step = steps.first else {
            result.append(.found(node: node, key: key))
            return
        }
        let rest = steps.dropFirst()
        switch step {
        case .key(let name):
            if node.isNull {
                let keys = steps.compactMap { step -> String? in if case .key(let k) = step { return k } else { return nil } }
                guard keys.count == steps.count else {
                    result.append(.blocked("'\(name)' leads to a list that does not exist; list elements are never created"))
                    return
                }
                result.append(.missing(parent: node, parentKey: key, keys: keys))
                return
            }
            guard case .mapping(let pairs) = node.value else {
                result.append(.blocked("the value at line \(node.line) is \(node.typeName), not a mapping with '\(name)'"))
                return
            }
            guard let pair = pairs.first(where: { $0.key == name }) else {
                let keys = steps.compactMap { step -> String? in if case .key(let k) = step { return k } else { return nil } }
                guard keys.count == steps.count else {
                    result.append(.blocked("'\(name)' does not exist and leads to list elements, which are never created"))
                    return
                }
                result.append(.missing(parent: node, parentKey: key, keys: keys))
                return
            }
            walk(node: pair.value, key: pair.keyNode, steps: rest, into: &result)
        case .index(let index):
            guard case .sequence(let items) = node.value else {
                result.append(.blocked("the value at line \(node.line) is \(node.typeName), not a list"))
                return
            }
            if index < items.count { walk(node: items[index], key: nil, steps: rest, into: &result) }
        case .every:
            guard case .sequence(let items) = node.value else {
                if !node.isNull { result.append(.blocked("the value at line \(node.line) is \(node.typeName), not a list")) }
                return
            }
            for item in items { walk(node: item, key: nil, steps: rest, into: &result) }
        case .match(let field, let wanted):
            guard case .sequence(let items) = node.value else {
                if !node.isNull { result.append(.blocked("the value at line \(node.line) is \(node.typeName), not a list")) }
                return
            }
            for item in items {
                guard case .mapping(let pairs) = item.value, let pair = pairs.first(where: { $0.key == field }),
                      case .scalar(let text) = pair.value.value, text == wanted else { continue }
                walk(node: item, key: nil, steps: rest, into: &result)
            }
        }
    }

    /// The values `path` names now (nil for a missing one), or why they cannot be read.
    func values(_ path: ConfigPath) -> [ConfigValue?] {
        places(path).map { place in
            if case .found(let node, _) = place { return ConfigValue(node) }
            return nil
        }
    }

    // MARK: - Editing

    /// Sets every place `path` names to `value`. Throws when a place cannot be written.
    mutating func set(_ path: ConfigPath, to value: ConfigValue) throws(DocumentError) {
        var edits: [(start: Int, end: Int, text: String)] = []
        for place in places(path) {
            switch place {
            case .blocked(let why):
                throw DocumentError("cannot set \(path): \(why)")
            case .found(let node, let key):
                if ConfigValue(node) == value { continue }
                edits.append(try replacement(of: node, key: key, with: value))
            case .missing(let parent, let parentKey, let keys):
                edits.append(try insertion(keys, value, under: parent, parentKey: parentKey))
            }
        }
        // Places are disjoint: apply from the end, so earlier offsets stay valid.
        for edit in edits.sorted(by: { $0.start > $1.start }) {
            scalars.replaceSubrange(edit.start..<edit.end, with: Array(edit.text.unicodeScalars))
        }
        guard !edits.isEmpty else { return }
        try parse()
        for now in values(path) where now != value {
            throw DocumentError("cannot set \(path): the edited text reads back as \(now?.canonical ?? "(unset)")")
        }
    }

    private func offset(_ line: Int, _ column: Int) throws(DocumentError) -> Int {
        guard line >= 1, line <= lineStarts.count, column >= 1 else { throw DocumentError("position \(line):\(column) outside the text") }
        let (sum, overflow) = lineStarts[line - 1].addingReportingOverflow(column - 1)
        guard !overflow, sum <= scalars.count else { throw DocumentError("position \(line):\(column) outside the text") }
        return sum
    }

    private func start(_ node: YAMLNode) throws(DocumentError) -> Int { try offset(node.line, node.column) }

    private func isFlow(_ node: YAMLNode) throws(DocumentError) -> Bool {
        let at = try start(node)
        return at < scalars.count && (scalars[at] == "[" || scalars[at] == "{")
    }

    /// Just past the node's last character: for a block collection, past its last value (its own
    /// end mark is where the next token starts, after any comment lines); trailing spaces and
    /// line breaks (of a block scalar) are left out.
    private func contentEnd(_ node: YAMLNode) throws(DocumentError) -> Int {
        var end: Int
        switch node.value {
        case .mapping(let pairs) where try !isFlow(node):
            guard let last = pairs.last else { return try start(node) }
            end = try isEmptyNull(last.value) ? try afterColon(last.keyNode) : try contentEnd(last.value)
        case .sequence(let items) where try !isFlow(node):
            guard let last = items.last else { return try start(node) }
            end = try contentEnd(last)
        default:
            end = try offset(node.endLine, node.endColumn)
        }
        let begin = try start(node)
        while end > begin, let previous = Optional(scalars[end - 1]),
              previous == " " || previous == "\t" || previous == "\n" || previous == "\r" {
            end -= 1
        }
        return end
    }

    /// A value written as nothing at all (`key:` and the end of the line).
    private func isEmptyNull(_ node: YAMLNode) throws(DocumentError) -> Bool {
        guard node.isNull, case .scalar(let text) = node.value, text.isEmpty else { return false }
        return true
    }

    /// Just past the `:` that follows a mapping key.
    private func afterColon(_ key: YAMLNode) throws(DocumentError) -> Int {
        var index = try offset(key.endLine, key.endColumn)
        while index < scalars.count, scalars[index] == " " || scalars[index] == "\t" { index += 1 }
        guard index < scalars.count, scalars[index] == ":" else { throw DocumentError("no ':' after the key at line \(key.line)") }
        return index + 1
    }

    private func indent(of node: YAMLNode) -> String { String(repeating: " ", count: max(0, node.column - 1)) }

    private func replacement(of node: YAMLNode, key: YAMLNode?, with value: ConfigValue) throws(DocumentError)
        -> (start: Int, end: Int, text: String) {
        if let key, try isEmptyNull(node) {
            // `key:` with nothing after it.
            let at = try afterColon(key)
            return (at, at, " " + render(value))
        }
        let begin = try start(node)
        let end = try contentEnd(node)
        if format == .yaml, case .sequence = node.value, try !isFlow(node), case .list(let items) = value, !items.isEmpty {
            // A block list stays a block list, one item per line at the same indent.
            let text = items.map { "- " + $0.yaml }.joined(separator: "\n" + indent(of: node))
            return (begin, end, text)
        }
        return (begin, end, render(value))
    }

    private func render(_ value: ConfigValue) -> String {
        format == .json ? value.json(pretty: true) : value.yaml
    }

    /// `keys` (the last one set to `value`) as new entries of `parent`.
    private func insertion(_ keys: [String], _ value: ConfigValue, under parent: YAMLNode?, parentKey: YAMLNode?)
        throws(DocumentError) -> (start: Int, end: Int, text: String) {
        guard let first = keys.first else { throw DocumentError("nothing to insert") }
        var nested = value
        for key in keys.dropFirst().reversed() { nested = .map([key: nested]) }
        var flowParent = false
        if let parent { flowParent = try isFlow(parent) }
        if format == .json || flowParent {
            let entry = (format == .json ? ConfigValue.jsonString(first) : (ConfigValue.plainSafe(first) ? first : ConfigValue.jsonString(first)))
                + ": " + render(nested)
            guard let parent else { throw DocumentError("an empty JSON document; write {} first") }
            if parent.isNull {
                return (try start(parent), try contentEnd(parent), "{" + entry + "}")
            }
            guard case .mapping(let pairs) = parent.value, let last = pairs.last else {
                let open = try start(parent)
                return (open + 1, open + 1, entry)
            }
            let at = try contentEnd(last.value)
            let separator = last.keyNode.line != parent.line ? ",\n" + indent(of: last.keyNode) : ", "
            return (at, at, separator + entry)
        }
        // Block style: one line per key, two more spaces per level.
        func lines(_ keys: ArraySlice<String>, _ indent: String) -> String {
            guard let key = keys.first else { return "" }
            let name = ConfigValue.plainSafe(key) ? key : ConfigValue.jsonString(key)
            if keys.count == 1 { return indent + name + ": " + value.yaml }
            return indent + name + ":\n" + lines(keys.dropFirst(), indent + "  ")
        }
        guard let parent else {
            // An empty document: the keys go at the end.
            let needsBreak = !scalars.isEmpty && scalars.last != "\n"
            return (scalars.count, scalars.count, (needsBreak ? "\n" : "") + lines(keys[...], "") + "\n")
        }
        if parent.isNull {
            guard let parentKey else {
                return (scalars.count, scalars.count, lines(keys[...], "") + "\n")
            }
            let empty = try isEmptyNull(parent)
            let at = empty ? try afterColon(parentKey) : try start(parent)
            let end = empty ? at : try contentEnd(parent)
            return (at, end, "\n" + lines(keys[...], indent(of: parentKey) + "  "))
        }
        // After the end of the line that holds the mapping's last value (keeping its comment).
        var at = try contentEnd(parent)
        while at < scalars.count, scalars[at] != "\n", scalars[at] != "\r" { at += 1 }
        return (at, at, "\n" + lines(keys[...], indent(of: parent)))
    }

    struct DocumentError: Error, Sendable {
        var message: String
        init(_ message: String) { self.message = message }
    }
}
