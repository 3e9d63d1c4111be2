internal import Foundation

public struct ManifestEditError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Text edits of one resource's manifest that keep everything else of the file as it was
/// (comments, other documents, quoting): a scalar replaced in place, a key inserted beside its
/// siblings, an item added to a list, in block or single-line flow style. Values are written
/// double-quoted (YAML escapes), digits plain, so no finding's text can break out of its value;
/// a boolean, null or number the rule itself wrote plain stays plain (`Operation.typed`), so
/// `false` stays false rather than becoming the string "false", which Python reads as true.
/// Every edit is checked afterwards by loading the changed revision.
public enum ManifestEdit {
    /// Applies `change` (rendered) and the `annotations` to the document of `id` in `text`.
    public static func apply(_ change: ChangeTemplate, annotations: [String: String], to id: ResourceID, in text: String)
        throws(ManifestEditError) -> String {
        var text = text
        for operation in change.set { text = try set(["spec"] + operation.path, operation.value, typed: operation.typed, of: id, in: text) }
        for operation in change.add { text = try add(["spec"] + operation.path, operation.value, typed: operation.typed, of: id, in: text) }
        for (key, value) in annotations.sorted(by: { $0.key < $1.key }) {
            text = try set(["metadata", "annotations", key], value, of: id, in: text)
        }
        return text
    }

    /// A value as YAML: a typed value of the rule's own text (`Operation.typed`) plain as the
    /// rule wrote it, digits plain, anything else double-quoted.
    static func render(_ value: String, typed: Bool = false) -> String {
        written(value, typed: typed).text
    }

    /// How a value is written, and what YAML reads back from that.
    static func written(_ value: String, typed: Bool) -> (text: String, meaning: PlainScalar) {
        // Only the four kinds of scalar `PlainScalar` types are ever plain: none holds an indicator
        // (`:`, `#`, `,`, a bracket), so a plain value cannot change the document's structure.
        if typed, PlainScalar(value).isTyped { return (value, PlainScalar(value)) }
        if !value.isEmpty && value.count <= 18 && value.allSatisfy({ $0.isASCII && $0.isNumber }) && !(value.hasPrefix("0") && value.count > 1) {
            return (value, .number)
        }
        return (YAML.doubleQuoted(value), .string)
    }

    /// Whether a scalar of the file already is `value` as it would be written: the same text, read as the same type.
    static func holds(_ node: YAMLNode, _ value: String, typed: Bool) -> Bool {
        guard case .scalar(let current) = node.value, current == value else { return false }
        return (node.isPlain ? PlainScalar(current) : .string) == written(value, typed: typed).meaning
    }

    // MARK: - Operations

    static func set(_ path: [String], _ value: String, typed: Bool = false, of id: ResourceID, in text: String) throws(ManifestEditError) -> String {
        let document = try find(id, in: text)
        var buffer = Buffer(text)
        var parent = document
        for (depth, key) in path.enumerated() {
            guard case .mapping(let pairs) = parent.value else {
                throw ManifestEditError("\(path[..<depth].joined(separator: ".")) of \(id) is not a mapping")
            }
            let isLast = depth == path.count - 1
            guard let pair = pairs.first(where: { $0.key == key }) else {
                // Insert the rest as one value: `key: value`, or `key: {next: value}` for a missing mapping.
                var inserted = render(value, typed: typed)
                for inner in path[(depth + 1)...].reversed() { inserted = "{\(YAML.doubleQuoted(inner)): \(inserted)}" }
                try buffer.insertPair(key: key, value: inserted, into: parent)
                return buffer.text
            }
            if isLast {
                guard case .scalar = pair.value.value else {
                    throw ManifestEditError("\(path.joined(separator: ".")) of \(id) is \(pair.value.typeName), not a scalar")
                }
                if holds(pair.value, value, typed: typed) { return text }
                try buffer.replaceScalar(pair.value, with: render(value, typed: typed))
                return buffer.text
            }
            parent = pair.value
        }
        return text
    }

    static func add(_ path: [String], _ value: String, typed: Bool = false, of id: ResourceID, in text: String) throws(ManifestEditError) -> String {
        let document = try find(id, in: text)
        var buffer = Buffer(text)
        var node = document
        for (depth, key) in path.enumerated() {
            guard case .mapping(let pairs) = node.value else {
                throw ManifestEditError("\(path[..<depth].joined(separator: ".")) of \(id) is not a mapping")
            }
            guard let pair = pairs.first(where: { $0.key == key }) else {
                var inserted = "[\(render(value, typed: typed))]"
                for inner in path[(depth + 1)...].reversed() { inserted = "{\(YAML.doubleQuoted(inner)): \(inserted)}" }
                try buffer.insertPair(key: key, value: inserted, into: node)
                return buffer.text
            }
            node = pair.value
        }
        guard case .sequence(let items) = node.value else {
            throw ManifestEditError("\(path.joined(separator: ".")) of \(id) is \(node.typeName), not a list")
        }
        if items.contains(where: { holds($0, value, typed: typed) }) { return text }
        try buffer.appendItem(render(value, typed: typed), to: node, items: items)
        return buffer.text
    }

    /// The document of `id` in the file.
    public static func find(_ id: ResourceID, in text: String) throws(ManifestEditError) -> YAMLNode {
        let documents: [YAMLNode?]
        do { documents = try YAML.compose(Array(text.utf8)) } catch { throw ManifestEditError("the manifest does not parse: \(error.message)") }
        for case let document? in documents {
            guard case .mapping(let pairs) = document.value,
                  case .scalar(let kind)? = pairs.first(where: { $0.key == "kind" })?.value.value, kind == id.kind,
                  case .mapping(let metadata)? = pairs.first(where: { $0.key == "metadata" })?.value.value,
                  case .scalar(let name)? = metadata.first(where: { $0.key == "name" })?.value.value, name == id.name else { continue }
            return document
        }
        throw ManifestEditError("\(id) is not in the file")
    }

    /// The file as Unicode scalars with line starts, edited by offsets (libyaml's columns count characters).
    struct Buffer {
        var scalars: [Unicode.Scalar]
        init(_ text: String) { scalars = Array(text.unicodeScalars) }
        var text: String { var s = String.UnicodeScalarView(); s.append(contentsOf: scalars); return String(s) }

        func offset(line: Int, column: Int) -> Int? {
            var current = 1, index = 0
            while current < line {
                guard let newline = scalars[index...].firstIndex(of: "\n") else { return nil }
                index = newline + 1
                current += 1
            }
            let result = index + column - 1
            return result <= scalars.count ? result : nil
        }

        func lineStart(of offset: Int) -> Int {
            var index = offset
            while index > 0, scalars[index - 1] != "\n" { index -= 1 }
            return index
        }

        /// The end of the scalar that starts at `start` (past a closing quote; before ` #`, a flow
        /// indicator in flow context, or the line's end for a plain scalar).
        func scalarEnd(from start: Int, inFlow: Bool) -> Int {
            guard start < scalars.count else { return start }
            let first = scalars[start]
            var index = start + 1
            if first == "\"" {
                while index < scalars.count, scalars[index] != "\"" {
                    index += scalars[index] == "\\" ? 2 : 1
                }
                return min(index + 1, scalars.count)
            }
            if first == "'" {
                while index < scalars.count {
                    if scalars[index] == "'" {
                        if index + 1 < scalars.count, scalars[index + 1] == "'" { index += 2; continue }
                        return index + 1
                    }
                    index += 1
                }
                return index
            }
            index = start
            while index < scalars.count, scalars[index] != "\n" {
                if scalars[index] == "#", index > start, scalars[index - 1] == " " || scalars[index - 1] == "\t" { break }
                if inFlow, scalars[index] == "," || scalars[index] == "}" || scalars[index] == "]" { break }
                index += 1
            }
            while index > start, scalars[index - 1] == " " || scalars[index - 1] == "\t" { index -= 1 }
            return index
        }

        /// Whether the offset sits inside a flow collection (an unclosed `{` or `[` before it on its line).
        func inFlow(_ offset: Int) -> Bool {
            var depth = 0
            var index = lineStart(of: offset)
            var quote: Unicode.Scalar?
            while index < offset {
                let c = scalars[index]
                if let q = quote { if c == q { quote = nil } } else if c == "\"" || c == "'" { quote = c }
                else if c == "{" || c == "[" { depth += 1 } else if c == "}" || c == "]" { depth -= 1 }
                index += 1
            }
            return depth > 0
        }

        mutating func replaceScalar(_ node: YAMLNode, with value: String) throws(ManifestEditError) {
            guard let start = offset(line: node.line, column: node.column) else { throw ManifestEditError("cannot locate the value") }
            if node.isNull, start < scalars.count, scalars[start] == "\n" {
                scalars.insert(contentsOf: (" " + value).unicodeScalars, at: start)
                return
            }
            let end = scalarEnd(from: start, inFlow: inFlow(start))
            scalars.replaceSubrange(start..<end, with: value.unicodeScalars)
        }

        /// The offset of the bracket closing the flow collection opened at `start`.
        func closing(from start: Int) -> Int? {
            var depth = 0
            var quote: Unicode.Scalar?
            var index = start
            while index < scalars.count {
                let c = scalars[index]
                if let q = quote {
                    if c == "\\", q == "\"" { index += 2; continue }
                    if c == q { quote = nil }
                } else if c == "\"" || c == "'" {
                    quote = c
                } else if c == "{" || c == "[" {
                    depth += 1
                } else if c == "}" || c == "]" {
                    depth -= 1
                    if depth == 0 { return index }
                }
                index += 1
            }
            return nil
        }

        mutating func insertPair(key: String, value: String, into mapping: YAMLNode) throws(ManifestEditError) {
            guard let start = offset(line: mapping.line, column: mapping.column) else { throw ManifestEditError("cannot locate the mapping") }
            let entry = "\(Self.key(key)): \(value)"
            if start < scalars.count, scalars[start] == "{" {
                guard let close = closing(from: start) else { throw ManifestEditError("unclosed flow mapping") }
                let empty = scalars[(start + 1)..<close].allSatisfy { $0 == " " }
                scalars.insert(contentsOf: ((empty ? "" : ", ") + entry).unicodeScalars, at: close)
                return
            }
            let lineStart = lineStart(of: start)
            guard scalars[lineStart..<start].allSatisfy({ $0 == " " }) else {
                throw ManifestEditError("cannot add \(key) next to a mapping that shares its line with a list item")
            }
            let indent = String(repeating: " ", count: start - lineStart)
            scalars.insert(contentsOf: (indent + entry + "\n").unicodeScalars, at: lineStart)
        }

        mutating func appendItem(_ value: String, to sequence: YAMLNode, items: [YAMLNode]) throws(ManifestEditError) {
            guard let start = offset(line: sequence.line, column: sequence.column) else { throw ManifestEditError("cannot locate the list") }
            if start < scalars.count, scalars[start] == "[" {
                guard let close = closing(from: start) else { throw ManifestEditError("unclosed flow list") }
                scalars.insert(contentsOf: ((items.isEmpty ? "" : ", ") + value).unicodeScalars, at: close)
                return
            }
            // A block list: `- item` lines; the new item goes first, at the same indentation.
            let lineStart = lineStart(of: start)
            guard let dash = scalars[lineStart..<start].lastIndex(of: "-"),
                  scalars[lineStart..<dash].allSatisfy({ $0 == " " }) else {
                throw ManifestEditError("cannot add to a list written in this style")
            }
            let indent = String(repeating: " ", count: dash - lineStart)
            scalars.insert(contentsOf: (indent + "- " + value + "\n").unicodeScalars, at: lineStart)
        }

        static func key(_ key: String) -> String {
            key.unicodeScalars.allSatisfy({ ($0.properties.isAlphabetic && $0.isASCII) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" || $0 == "." || $0 == "/" })
                && key.first?.isLetter == true ? key : YAML.doubleQuoted(key)
        }
    }
}
