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
        /// `steps` (the first a key) are missing below `parent` (`parentKey` holds `parent` when it
        /// is a null value).
        case missing(parent: YAMLNode?, parentKey: YAMLNode?, steps: [ConfigPath.Step])
        /// No element of `list` matches `steps`' first step (`[key=value]`): a new element is appended.
        case missingElement(list: YAMLNode, steps: [ConfigPath.Step])
        /// A value on the way is not what the path expects (a scalar where a mapping was wanted).
        case blocked(String)
    }

    /// Every place `path` names; none when a list step matches no element.
    func places(_ path: ConfigPath) -> [Place] {
        guard let root else {
            let creatable = !path.steps.contains { if case .index = $0 { true } else if case .every = $0 { true } else { false } }
            return creatable ? [.missing(parent: nil, parentKey: nil, steps: path.steps)] : []
        }
        var result: [Place] = []
        walk(node: root, key: nil, steps: path.steps[...], into: &result)
        return result
    }

    private func walk(node: YAMLNode, key: YAMLNode?, steps: ArraySlice<ConfigPath.Step>, into result: inout [Place]) {
        // An alias (`*defaults`) stands for a value written elsewhere: the parts of it keep the
        // anchor's positions, and an edit through it changed the anchor, so every other alias
        // too, or (a block list) spanned from the alias back to the anchor, a range that ends
        // before it starts. An anchored value (`&defaults`) is every alias's value. Neither is
        // edited: the path is blocked, naming the line.
        if node.sharing != .none {
            let what = node.sharing == .alias ? "an alias of a value written elsewhere" : "an anchored value that aliases repeat"
            result.append(.blocked("the value at line \(node.line) is \(what); Bulwark does not edit through YAML anchors "
                                   + "and aliases: write the value out"))
            return
        }
        guard let step = steps.first else {
            result.append(.found(node: node, key: key))
            return
        }
        // Missing values below here that a path reaches through [N] or [*] do not exist: nothing applies.
        let creatable = !steps.contains { if case .index = $0 { true } else if case .every = $0 { true } else { false } }
        let rest = steps.dropFirst()
        switch step {
        case .key(let name):
            if node.isNull {
                if creatable { result.append(.missing(parent: node, parentKey: key, steps: Array(steps))) }
                return
            }
            guard case .mapping(let pairs) = node.value else {
                result.append(.blocked("the value at line \(node.line) is \(node.typeName), not a mapping with '\(name)'"))
                return
            }
            guard let pair = pairs.first(where: { $0.key == name }) else {
                if creatable { result.append(.missing(parent: node, parentKey: key, steps: Array(steps))) }
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
                if node.isNull {
                    if creatable { result.append(.missing(parent: node, parentKey: key, steps: Array(steps))) }
                } else {
                    result.append(.blocked("the value at line \(node.line) is \(node.typeName), not a list"))
                }
                return
            }
            var matched = false
            for item in items {
                guard case .mapping(let pairs) = item.value, let pair = pairs.first(where: { $0.key == field }),
                      case .scalar(let text) = pair.value.value, text == wanted else { continue }
                matched = true
                walk(node: item, key: nil, steps: rest, into: &result)
            }
            if !matched, creatable { result.append(.missingElement(list: node, steps: Array(steps))) }
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
            case .missing(let parent, let parentKey, let steps):
                edits.append(try insertion(steps, value, under: parent, parentKey: parentKey))
            case .missingElement(let list, let steps):
                edits.append(try appending(steps, value, to: list))
            }
        }
        // Places are disjoint: apply from the end, so earlier offsets stay valid.
        for edit in edits where edit.start > edit.end {
            throw DocumentError("cannot set \(path): the text to replace ends before it starts (\(edit.start), \(edit.end))")
        }
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

    /// The value that `steps` create around `value`: keys become mappings, a `[key=value]`
    /// step a list of one mapping holding that key. Nil when a step cannot be created (`[N]`, `[*]`).
    static func build(_ steps: ArraySlice<ConfigPath.Step>, _ value: ConfigValue) -> ConfigValue? {
        guard let step = steps.first else { return value }
        guard let inner = build(steps.dropFirst(), value) else { return nil }
        switch step {
        case .key(let key):
            return .map([key: inner])
        case .match(let key, let wanted):
            guard steps.count > 1, case .map(var map) = inner else { return nil }
            map[key] = .string(wanted)
            return .list([.map(map)])
        case .index, .every:
            return nil
        }
    }

    private func created(_ steps: [ConfigPath.Step], _ value: ConfigValue) throws(DocumentError) -> ConfigValue {
        guard let built = Self.build(steps[...], value) else {
            throw DocumentError("cannot create a list element addressed by [N] or [*]; address it by [key=value]")
        }
        return built
    }

    private static func name(_ key: String) -> String { ConfigValue.plainSafe(key) ? key : ConfigValue.jsonString(key) }

    /// Keys in the order they are written: scalar values first, so a created element reads
    /// `- guardrail_name: x` before its nested settings; then by name.
    private static func ordered(_ map: [String: ConfigValue]) -> [String] {
        func nested(_ value: ConfigValue?) -> Bool {
            switch value { case .map(let m): !m.isEmpty; case .list(let l): !l.isEmpty; default: false }
        }
        return map.keys.sorted { (nested(map[$0]) ? 1 : 0, $0) < (nested(map[$1]) ? 1 : 0, $1) }
    }

    /// `key: value` as block YAML lines at `indent` (without a final line break).
    static func blockEntry(_ key: String, _ value: ConfigValue, _ indent: String) -> String {
        switch value {
        case .map(let map) where !map.isEmpty:
            return indent + name(key) + ":\n" + ordered(map).map { blockEntry($0, map[$0] ?? .null, indent + "  ") }.joined(separator: "\n")
        case .list(let items) where items.contains(where: { if case .map(let m) = $0 { !m.isEmpty } else { false } }):
            return indent + name(key) + ":\n" + items.map { blockItem($0, indent + "  ") }.joined(separator: "\n")
        default:
            return indent + name(key) + ": " + value.yaml
        }
    }

    /// A list item as block YAML at `indent` (`- ` then the item).
    static func blockItem(_ value: ConfigValue, _ indent: String) -> String {
        guard case .map(let map) = value, !map.isEmpty else { return indent + "- " + value.yaml }
        let body = ordered(map).map { blockEntry($0, map[$0] ?? .null, indent + "  ") }.joined(separator: "\n")
        return indent + "- " + body.dropFirst(indent.count + 2)
    }

    /// `steps` (the first a key; the property set to `value`) as a new entry of `parent`.
    private func insertion(_ steps: [ConfigPath.Step], _ value: ConfigValue, under parent: YAMLNode?, parentKey: YAMLNode?)
        throws(DocumentError) -> (start: Int, end: Int, text: String) {
        guard case .key(let first) = steps.first else {
            // A null value where a list is wanted: the whole list is written.
            guard let parent else { throw DocumentError("nothing to insert") }
            let list = try created(steps, value)
            if let parentKey, try isEmptyNull(parent), format == .yaml, case .list(let items) = list {
                let at = try afterColon(parentKey)
                return (at, at, "\n" + items.map { Self.blockItem($0, indent(of: parentKey) + "  ") }.joined(separator: "\n"))
            }
            return (try start(parent), try contentEnd(parent), render(list))
        }
        let nested = try created(Array(steps.dropFirst()), value)
        var flowParent = false
        if let parent { flowParent = try isFlow(parent) }
        if format == .json || flowParent {
            let entry = (format == .json ? ConfigValue.jsonString(first) : Self.name(first)) + ": " + render(nested)
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
        guard let parent else {
            // An empty document: the keys go at the end.
            let needsBreak = !scalars.isEmpty && scalars.last != "\n"
            return (scalars.count, scalars.count, (needsBreak ? "\n" : "") + Self.blockEntry(first, nested, "") + "\n")
        }
        if parent.isNull {
            guard let parentKey else {
                return (scalars.count, scalars.count, Self.blockEntry(first, nested, "") + "\n")
            }
            let empty = try isEmptyNull(parent)
            let at = empty ? try afterColon(parentKey) : try start(parent)
            let end = empty ? at : try contentEnd(parent)
            return (at, end, "\n" + Self.blockEntry(first, nested, indent(of: parentKey) + "  "))
        }
        // After the end of the line that holds the mapping's last value (keeping its comment).
        return (try endOfLine(contentEnd(parent)), try endOfLine(contentEnd(parent)), "\n" + Self.blockEntry(first, nested, indent(of: parent)))
    }

    private func endOfLine(_ offset: Int) -> Int {
        var at = offset
        while at < scalars.count, scalars[at] != "\n", scalars[at] != "\r" { at += 1 }
        return at
    }

    /// A new element of `list` (matched by `steps`' first step) holding the property.
    private func appending(_ steps: [ConfigPath.Step], _ value: ConfigValue, to list: YAMLNode)
        throws(DocumentError) -> (start: Int, end: Int, text: String) {
        guard case .list(let built) = try created(steps, value), let element = built.first else {
            throw DocumentError("cannot create the list element")
        }
        guard case .sequence(let items) = list.value else { throw DocumentError("not a list") }
        if format == .yaml, try !isFlow(list), !items.isEmpty {
            let at = endOfLine(try contentEnd(list))
            return (at, at, "\n" + Self.blockItem(element, indent(of: list)))
        }
        guard let last = items.last else {
            let open = try start(list)
            return (open + 1, open + 1, render(element))
        }
        let at = try contentEnd(last)
        let separator = last.line != list.line ? ",\n" + indent(of: last) : ", "
        return (at, at, separator + render(element))
    }

    struct DocumentError: Error, Sendable {
        var message: String
        init(_ message: String) { self.message = message }
    }
}
