internal import CLibYAML

/// A YAML node with the place it was written, composed by Bulwark over libyaml's events.
///
/// Bulwark composes YAML itself rather than through a general YAML library so that it can
/// bound what an untrusted document costs: nesting depth, node count *after* alias expansion
/// (a "billion laughs" document is refused, not expanded), scalar keys only, no duplicate keys.
public struct YAMLNode: Sendable, Hashable {
    public enum Value: Sendable, Hashable {
        case scalar(String)
        case mapping([YAMLPair])
        case sequence([YAMLNode])
    }

    public var value: Value
    /// 1-based line and column where the node starts.
    public var line: Int
    public var column: Int
    /// Whether a scalar was written without quotes (so `null`, `~` and `` mean nothing).
    public var isPlain: Bool
    /// 1-based line and column just past the node's last character (for a block collection, where
    /// the next token starts); for editing a file's text in place. 0 when unknown.
    public var endLine = 0
    public var endColumn = 0
    /// Whether the node is shared: `anchored` (`&name`: every alias of it is this value) or an
    /// `alias` (`*name`: a copy of a value written elsewhere, whose parts keep the anchor's
    /// positions). Set by the composer, which sees the anchors and aliases; a tag before an
    /// anchor (`!!map &name`) hides it from a look at the text.
    public var sharing: Sharing = .none

    public enum Sharing: Sendable, Hashable {
        case none, anchored, alias
    }

    public var isNull: Bool {
        if case .scalar(let s) = value, isPlain { return s.isEmpty || s == "~" || s == "null" || s == "Null" || s == "NULL" }
        return false
    }

    public var typeName: String {
        switch value {
        case .scalar: isNull ? "null" : "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }
}

public struct YAMLPair: Sendable, Hashable {
    public var key: String
    public var keyNode: YAMLNode
    public var value: YAMLNode
}

/// A YAML document that could not be composed.
public struct YAMLError: Error, Sendable, Hashable {
    public var line: Int
    public var column: Int
    public var message: String
}

/// Limits that keep a hostile document from costing more than a normal one.
public struct YAMLLimits: Sendable {
    /// Nodes per document, counting every alias as the nodes it stands for.
    public var maxNodes = 100_000
    public var maxDepth = 64
    public var maxDocuments = 1_000
    /// Bytes of scalar content (keys and values) a file may expand to, counting every alias as
    /// the bytes it stands for: `expansionFactor` times the file's size, at least
    /// `minExpandedBytes` (so a small file may still reuse an anchor) and at most
    /// `maxExpandedBytes`. A file without aliases never reaches it: its scalars are at most its
    /// own bytes. Counting bytes, not nodes, is what bounds a 50 KB anchor used 10,000 times.
    public var expansionFactor = 4
    public var minExpandedBytes = 64 << 10
    public var maxExpandedBytes = 10 << 20
    public init() {}

    /// The expansion budget for a file of `size` bytes.
    public func expandedByteBudget(forFileOf size: Int) -> Int {
        let (scaled, overflow) = size.multipliedReportingOverflow(by: max(expansionFactor, 1))
        return min(max(overflow ? Int.max : scaled, minExpandedBytes), maxExpandedBytes)
    }
}

public enum YAML {
    /// Composes every document of a UTF-8 YAML stream. Empty documents are returned as nil.
    public static func compose(_ bytes: [UInt8], limits: YAMLLimits = .init()) throws(YAMLError) -> [YAMLNode?] {
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) == 1 else {
            throw YAMLError(line: 1, column: 1, message: "could not initialise the YAML parser")
        }
        defer { yaml_parser_delete(parser) }
        let storage = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(bytes.count, 1))
        defer { storage.deallocate() }
        _ = storage.initialize(from: bytes)
        yaml_parser_set_input_string(parser, storage.baseAddress, bytes.count)
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
        var composer = Composer(parser: parser, limits: limits, byteBudget: limits.expandedByteBudget(forFileOf: bytes.count))
        return try composer.documents()
    }
}

private enum Event {
    case streamStart, streamEnd, documentStart, documentEnd
    case alias(anchor: String, line: Int, column: Int, end: (Int, Int))
    case scalar(value: String, anchor: String?, plain: Bool, line: Int, column: Int, end: (Int, Int))
    case sequenceStart(anchor: String?, line: Int, column: Int)
    case sequenceEnd(end: (Int, Int))
    case mappingStart(anchor: String?, line: Int, column: Int)
    case mappingEnd(end: (Int, Int))
}

private struct Composer {
    let parser: UnsafeMutablePointer<yaml_parser_t>
    let limits: YAMLLimits
    /// Each anchor's node, its expanded node count and its expanded scalar bytes.
    var anchors: [String: (node: YAMLNode, size: Int, bytes: Int)] = [:]
    var nodes = 0
    /// Expanded scalar bytes so far in the whole file, and the most allowed.
    var bytes = 0
    let byteBudget: Int

    init(parser: UnsafeMutablePointer<yaml_parser_t>, limits: YAMLLimits, byteBudget: Int) {
        self.parser = parser
        self.limits = limits
        self.byteBudget = byteBudget
    }

    mutating func documents() throws(YAMLError) -> [YAMLNode?] {
        guard case .streamStart = try next() else { throw YAMLError(line: 1, column: 1, message: "expected a YAML stream") }
        var result: [YAMLNode?] = []
        while true {
            switch try next() {
            case .streamEnd:
                return result
            case .documentStart:
                guard result.count < limits.maxDocuments else {
                    throw YAMLError(line: 1, column: 1, message: "more than \(limits.maxDocuments) documents in one file")
                }
                anchors = [:]
                nodes = 0
                let event = try next()
                if case .documentEnd = event { result.append(nil); continue }
                let (root, _, _) = try node(from: event, depth: 0)
                guard case .documentEnd = try next() else {
                    throw YAMLError(line: root.line, column: root.column, message: "expected the end of the document")
                }
                result.append(root.isNull ? nil : root)
            default:
                throw YAMLError(line: 1, column: 1, message: "unexpected YAML event")
            }
        }
    }

    /// Composes one node; returns it with its expanded node count and scalar bytes.
    mutating func node(from event: Event, depth: Int) throws(YAMLError) -> (YAMLNode, Int, Int) {
        switch event {
        case let .alias(anchor, line, column, end):
            guard let target = anchors[anchor] else {
                // The alias's text is not shown: in a target's file it may be a password typed
                // without quotes (`password: *Secret`), and the message reaches records and logs.
                throw YAMLError(line: line, column: column,
                                message: "an alias (a value starting with '*') refers to no anchor; quote the value if it is text")
            }
            try count(target.size, line: line, column: column)
            try spend(target.bytes, line: line, column: column)
            var node = target.node
            node.sharing = .alias
            node.line = line
            node.column = column
            (node.endLine, node.endColumn) = end
            return (node, target.size, target.bytes)
        case let .scalar(value, anchor, plain, line, column, end):
            try count(1, line: line, column: column)
            let size = value.utf8.count
            try spend(size, line: line, column: column)
            var node = YAMLNode(value: .scalar(value), line: line, column: column, isPlain: plain, endLine: end.0, endColumn: end.1)
            if let anchor { node.sharing = .anchored; anchors[anchor] = (node, 1, size) }
            return (node, 1, size)
        case let .sequenceStart(anchor, line, column):
            try checkDepth(depth, line: line, column: column)
            try count(1, line: line, column: column)
            var items: [YAMLNode] = []
            var size = 1
            var content = 0
            var end = (0, 0)
            while true {
                let next = try next()
                if case .sequenceEnd(let mark) = next { end = mark; break }
                let (child, childSize, childBytes) = try node(from: next, depth: depth + 1)
                items.append(child)
                // Both totals are bounded by the limits checked as they grew: no overflow.
                size += childSize
                content += childBytes
            }
            var node = YAMLNode(value: .sequence(items), line: line, column: column, isPlain: false, endLine: end.0, endColumn: end.1)
            if let anchor { node.sharing = .anchored; anchors[anchor] = (node, size, content) }
            return (node, size, content)
        case let .mappingStart(anchor, line, column):
            try checkDepth(depth, line: line, column: column)
            try count(1, line: line, column: column)
            var pairs: [YAMLPair] = []
            var seen: [String: Int] = [:]
            var size = 1
            var content = 0
            var end = (0, 0)
            while true {
                let keyEvent = try next()
                if case .mappingEnd(let mark) = keyEvent { end = mark; break }
                let (keyNode, keySize, keyBytes) = try node(from: keyEvent, depth: depth + 1)
                guard case .scalar(let key) = keyNode.value else {
                    throw YAMLError(line: keyNode.line, column: keyNode.column, message: "mapping keys must be plain strings")
                }
                if key == "<<" && keyNode.isPlain {
                    throw YAMLError(line: keyNode.line, column: keyNode.column, message: "merge keys (<<) are not supported")
                }
                if let first = seen[key] {
                    throw YAMLError(line: keyNode.line, column: keyNode.column,
                                    message: "duplicate key (first at line \(first))")
                }
                seen[key] = keyNode.line
                let (value, valueSize, valueBytes) = try node(from: try next(), depth: depth + 1)
                pairs.append(YAMLPair(key: key, keyNode: keyNode, value: value))
                size += keySize + valueSize
                content += keyBytes + valueBytes
            }
            var node = YAMLNode(value: .mapping(pairs), line: line, column: column, isPlain: false, endLine: end.0, endColumn: end.1)
            if let anchor { node.sharing = .anchored; anchors[anchor] = (node, size, content) }
            return (node, size, content)
        default:
            throw YAMLError(line: 1, column: 1, message: "unexpected YAML event")
        }
    }

    mutating func count(_ n: Int, line: Int, column: Int) throws(YAMLError) {
        nodes += n
        if nodes > limits.maxNodes {
            throw YAMLError(line: line, column: column,
                            message: "document expands to more than \(limits.maxNodes) nodes (alias expansion bomb?)")
        }
    }

    /// Counts `n` bytes of expanded scalar content against the file's budget.
    mutating func spend(_ n: Int, line: Int, column: Int) throws(YAMLError) {
        let (sum, overflow) = bytes.addingReportingOverflow(n)
        guard !overflow, sum <= byteBudget else {
            throw YAMLError(line: line, column: column,
                            message: "alias expansion too large: aliases expand the file to more than \(byteBudget) bytes of text (the limit is \(limits.expansionFactor) times the file's size, at least \(limits.minExpandedBytes) and at most \(limits.maxExpandedBytes) bytes); write the values out or use fewer aliases")
        }
        bytes = sum
    }

    func checkDepth(_ depth: Int, line: Int, column: Int) throws(YAMLError) {
        if depth >= limits.maxDepth {
            throw YAMLError(line: line, column: column, message: "nested deeper than \(limits.maxDepth) levels")
        }
    }

    mutating func next() throws(YAMLError) -> Event {
        var event = yaml_event_t()
        guard yaml_parser_parse(parser, &event) == 1 else {
            let p = parser.pointee
            let problem = p.problem.map { String(cString: $0) } ?? "invalid YAML"
            let context = p.context.map { String(cString: $0) + ": " } ?? ""
            throw YAMLError(line: Int(p.problem_mark.line) + 1, column: Int(p.problem_mark.column) + 1,
                            message: context + problem)
        }
        defer { yaml_event_delete(&event) }
        let line = Int(event.start_mark.line) + 1
        let column = Int(event.start_mark.column) + 1
        let end = (Int(event.end_mark.line) + 1, Int(event.end_mark.column) + 1)
        func text(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            pointer.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        }
        func unreadTag(_ tag: String) -> YAMLError {
            let shown: String = YAML.coreTag(tag).map { "!!" + $0 + " " } ?? ""
            return YAMLError(line: line, column: column,
                             message: "explicit tag " + shown
                                + "(a value starting with '!'; quote it if it is text): Bulwark reads untagged values and !!str only, "
                                + "so as not to read a value otherwise than its program does")
        }
        switch event.type {
        case YAML_STREAM_START_EVENT: return .streamStart
        case YAML_STREAM_END_EVENT: return .streamEnd
        case YAML_DOCUMENT_START_EVENT: return .documentStart
        case YAML_DOCUMENT_END_EVENT: return .documentEnd
        case YAML_ALIAS_EVENT:
            return .alias(anchor: text(event.data.alias.anchor) ?? "", line: line, column: column, end: end)
        case YAML_SCALAR_EVENT:
            let s = event.data.scalar
            let value = s.value.map {
                String(decoding: UnsafeBufferPointer(start: $0, count: s.length), as: UTF8.self)
            } ?? ""
            var plain = s.style == YAML_PLAIN_SCALAR_STYLE
            if let tag = text(s.tag) {
                // An explicit tag decides the type, as PyYAML (LiteLLM's reader) takes it:
                // `!!str false` is the string "false", true to Python, where plain `false` is
                // false: read as a string. PyYAML resolves the non-specific `!` as it would an
                // untagged plain scalar, quoted or not (`! "false"` is False): read as plain.
                // Any other tag is refused, not read as something else.
                switch tag {
                case "tag:yaml.org,2002:str": plain = false
                case "!": plain = true
                default: throw unreadTag(tag)
                }
            }
            return .scalar(value: value, anchor: text(s.anchor), plain: plain, line: line, column: column, end: end)
        case YAML_SEQUENCE_START_EVENT:
            if let tag = text(event.data.sequence_start.tag), tag != "tag:yaml.org,2002:seq" { throw unreadTag(tag) }
            return .sequenceStart(anchor: text(event.data.sequence_start.anchor), line: line, column: column)
        case YAML_SEQUENCE_END_EVENT: return .sequenceEnd(end: end)
        case YAML_MAPPING_START_EVENT:
            if let tag = text(event.data.mapping_start.tag), tag != "tag:yaml.org,2002:map" { throw unreadTag(tag) }
            return .mappingStart(anchor: text(event.data.mapping_start.anchor), line: line, column: column)
        case YAML_MAPPING_END_EVENT: return .mappingEnd(end: end)
        default:
            throw YAMLError(line: line, column: column, message: "unexpected YAML event")
        }
    }
}

// MARK: - Writing

extension YAML {
    /// `text` as a YAML double-quoted scalar that reads back as exactly `text`: `\` and `"`
    /// escaped, and every character YAML would not keep as it is — control characters, the line
    /// and paragraph separators (U+2028, U+2029) and NEL (U+0085) that YAML reads as line breaks,
    /// format characters such as U+FEFF, and anything outside YAML's printable set — written as
    /// an escape. A value written this way can never end the line or the document early.
    public static func doubleQuoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if isPlainPrintable(scalar) {
                    result.unicodeScalars.append(scalar)
                } else if scalar.value <= 0xFFFF {
                    result += "\\u" + hex(scalar.value, width: 4)
                } else {
                    result += "\\U" + hex(scalar.value, width: 8)
                }
            }
        }
        return result + "\""
    }

    /// `text` made safe for a `#` comment: every character `doubleQuoted` would escape is shown
    /// as its escape, so the comment stays on its line.
    public static func commentText(_ text: String) -> String {
        String(doubleQuoted(text).dropFirst().dropLast())
    }

    /// The name of a YAML core tag (`!!int`, `tag:yaml.org,2002:bool`), which an error may show;
    /// nil for any other tag, whose text may be a value typed without quotes (`!!Tr0ub4dor`, a
    /// `%TAG` directive turning `!x` into the core prefix): never shown.
    static func coreTag(_ tag: String) -> String? {
        let name: Substring
        if tag.hasPrefix("tag:yaml.org,2002:") { name = tag.dropFirst("tag:yaml.org,2002:".count) }
        else if tag.hasPrefix("!!") { name = tag.dropFirst(2) } else { return nil }
        let core: Set<Substring> = ["str", "int", "float", "bool", "null", "map", "seq", "binary", "timestamp", "set", "omap",
                                    "pairs", "merge", "value", "yaml"]
        return core.contains(name) ? String(name) : nil
    }

    /// Printable in YAML 1.1's sense and not a line break or format character.
    static func isPlainPrintable(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        let printable = (0x20...0x7E).contains(v) || (0xA0...0xD7FF).contains(v) || (0xE000...0xFFFD).contains(v)
            || (0x10000...0x10FFFF).contains(v)
        guard printable else { return false }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned: return false
        default: return true
        }
    }

    private static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
