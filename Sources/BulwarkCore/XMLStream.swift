/// What a streamed XML document tells its reader, element by element (`XMLStream.parse`).
public protocol XMLStreamHandler {
    /// An element opens: its local name (the qualified name when namespaces are not processed),
    /// its namespace, its attributes (by qualified name; `xmlns` ones are left out when
    /// namespaces are processed). False stops the parse; the handler keeps why.
    mutating func start(_ name: String, namespace: String?, attributes: [String: String]) -> Bool
    /// Text inside an element (character data, CDATA sections and references decoded), in one
    /// or more pieces between two tags; line ends as `\n`.
    mutating func text(_ text: String)
    /// The element opened last closes. False stops the parse.
    mutating func end(_ name: String, namespace: String?) -> Bool
}

/// XML read from bytes by Bulwark itself, not by libxml2 (Foundation's `XMLParser` loaded
/// libxml2, the system's ICU and liblzma into every process for two small readers, about
/// 1.3 MiB resident, and brought a parser with a long record of memory-safety bugs to input
/// from scanners and the network).
///
/// Only what those readers need, and strict where XML is: UTF-8 only; no DTD (`<!DOCTYPE`, or
/// any `<!` other than a comment or CDATA, is refused), so no entity but the five predefined
/// ones and character references; one root element, closed; tags that match; attributes
/// quoted, unique, without `<`; no control characters; namespace prefixes declared. Iterative,
/// with the depth bounded: no input makes it recurse or allocate beyond its size.
public enum XMLStream {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// The line (from 1) where the document stops being well-formed.
        public let line: Int
        public let message: String
        public var description: String { "line \(line): \(message)" }
    }

    static let xmlNamespace = "http://www.w3.org/XML/1998/namespace"

    /// Reads `bytes` into `handler`. Returns false when the handler stopped the parse, true when
    /// the whole document was read; throws when it is not well-formed (or nests deeper than
    /// `maxDepth`).
    @discardableResult
    public static func parse<Handler: XMLStreamHandler>(_ bytes: [UInt8], namespaces: Bool, maxDepth: Int = 256,
                                                        into handler: inout Handler) throws(Failure) -> Bool {
        var reader = Reader(bytes: bytes, namespaces: namespaces, maxDepth: maxDepth)
        return try reader.run(&handler)
    }

    private struct Open {
        var qualified: ArraySlice<UInt8>
        var local: String
        var namespace: String?
        /// How many namespace bindings were in scope before this element's own.
        var bindings: Int
    }

    private struct Reader {
        let bytes: [UInt8]
        let namespaces: Bool
        let maxDepth: Int
        var index = 0
        var open: [Open] = []
        var bindings: [(prefix: String, uri: String)] = [("xml", XMLStream.xmlNamespace)]
        var text: [UInt8] = []
        var rootClosed = false

        init(bytes: [UInt8], namespaces: Bool, maxDepth: Int) {
            self.bytes = bytes
            self.namespaces = namespaces
            self.maxDepth = maxDepth
        }

        func failure(_ message: String, at position: Int? = nil) -> Failure {
            let end = min(position ?? index, bytes.count)
            var line = 1
            for byte in bytes[..<end] where byte == 10 { line += 1 }
            return Failure(line: line, message: message)
        }

        func starts(with literal: String, at position: Int) -> Bool {
            var at = position
            for byte in literal.utf8 {
                guard at < bytes.count, bytes[at] == byte else { return false }
                at += 1
            }
            return true
        }

        /// The position of `literal` at or after `from`, or nil.
        func find(_ literal: String, from: Int) -> Int? {
            let needle = Array(literal.utf8)
            guard let first = needle.first, needle.count <= bytes.count else { return nil }
            var at = from
            while at + needle.count <= bytes.count {
                if bytes[at] == first, bytes[at..<(at + needle.count)].elementsEqual(needle) { return at }
                at += 1
            }
            return nil
        }

        static let maxBindings = 256

        static func isSpace(_ byte: UInt8) -> Bool { byte == 32 || byte == 9 || byte == 10 || byte == 13 }

        static func isNameStart(_ byte: UInt8) -> Bool {
            (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || byte == 95 || byte == 58 || byte >= 0x80
        }

        static func isName(_ byte: UInt8) -> Bool {
            isNameStart(byte) || (byte >= 48 && byte <= 57) || byte == 45 || byte == 46
        }

        mutating func skipSpace() {
            while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
        }

        mutating func name() throws(Failure) -> ArraySlice<UInt8> {
            let start = index
            guard index < bytes.count, Self.isNameStart(bytes[index]) else { throw failure("a name was expected") }
            while index < bytes.count, Self.isName(bytes[index]) { index += 1 }
            return bytes[start..<index]
        }

        /// A byte of character data or of an attribute value: no control character other than
        /// tab, line feed and carriage return; no U+FFFE or U+FFFF (`EF BF BE`, `EF BF BF`).
        func checkCharacter(at position: Int) throws(Failure) {
            let byte = bytes[position]
            if byte < 32 && byte != 9 && byte != 10 && byte != 13 {
                throw failure("control character \(byte) is not allowed in XML", at: position)
            }
            if byte == 0xEF, position + 2 < bytes.count, bytes[position + 1] == 0xBF, bytes[position + 2] >= 0xBE {
                throw failure("U+FFFE and U+FFFF are not allowed in XML", at: position)
            }
        }

        /// Decodes the reference at `index` (just past `&`) into its UTF-8 bytes; `index` ends past `;`.
        mutating func reference() throws(Failure) -> [UInt8] {
            let start = index
            guard let semicolon = bytes[index...].prefix(32).firstIndex(of: 59) else {
                throw failure("'&' not followed by a reference ending in ';' (write &amp;)")
            }
            let body = bytes[start..<semicolon]
            index = semicolon + 1
            switch String(decoding: body, as: UTF8.self) {
            case "lt": return [60]
            case "gt": return [62]
            case "amp": return [38]
            case "quot": return [34]
            case "apos": return [39]
            case let reference where reference.hasPrefix("#"):
                let hex = reference.hasPrefix("#x")
                let digits = reference.dropFirst(hex ? 2 : 1)
                guard !digits.isEmpty, digits.count <= 8, let value = UInt32(digits, radix: hex ? 16 : 10),
                      value == 9 || value == 10 || value == 13 || (value >= 0x20 && value <= 0xD7FF)
                        || (value >= 0xE000 && value <= 0xFFFD) || (value >= 0x10000 && value <= 0x10FFFF),
                      let scalar = Unicode.Scalar(value) else {
                    throw failure("&\(reference); is not a character XML allows", at: start)
                }
                return Array(String(Character(scalar)).utf8)
            case let other:
                throw failure("undeclared entity &\(other.prefix(12)); (no DTD, so only &lt; &gt; &amp; &quot; &apos; and character references)",
                              at: start)
            }
        }

        /// Character data up to the next `<`, into `text`: references decoded, line ends as `\n`.
        mutating func characters() throws(Failure) {
            while index < bytes.count, bytes[index] != 60 {
                let byte = bytes[index]
                if byte == 38 {
                    index += 1
                    text += try reference()
                    continue
                }
                try checkCharacter(at: index)
                if byte == 93, starts(with: "]]>", at: index) { throw failure("']]>' is not allowed in text") }
                if byte == 13 {
                    text.append(10)
                    index += index + 1 < bytes.count && bytes[index + 1] == 10 ? 2 : 1
                    continue
                }
                text.append(byte)
                index += 1
            }
        }

        /// Hands the text read since the last tag to the handler; outside the root element only
        /// blanks may stand.
        mutating func flush(_ handler: inout some XMLStreamHandler) throws(Failure) {
            guard !text.isEmpty else { return }
            defer { text.removeAll(keepingCapacity: true) }
            if open.isEmpty {
                guard text.allSatisfy(Self.isSpace) else { throw failure("text outside the root element") }
                return
            }
            handler.text(String(decoding: text, as: UTF8.self))
        }

        /// An attribute value after its opening quote; `index` ends past the closing quote.
        mutating func attributeValue(quote: UInt8) throws(Failure) -> String {
            var value: [UInt8] = []
            while true {
                guard index < bytes.count else { throw failure("an attribute value is not closed") }
                let byte = bytes[index]
                if byte == quote {
                    index += 1
                    return String(decoding: value, as: UTF8.self)
                }
                switch byte {
                case 60: throw failure("'<' in an attribute value")
                case 38:
                    index += 1
                    value += try reference()
                case 13:
                    // A line end, as any blank, is one space in an attribute value.
                    value.append(32)
                    index += index + 1 < bytes.count && bytes[index + 1] == 10 ? 2 : 1
                case 9, 10:
                    value.append(32)
                    index += 1
                default:
                    try checkCharacter(at: index)
                    value.append(byte)
                    index += 1
                }
            }
        }

        /// The namespace bound to `prefix` ("" for the default), or nil.
        func namespace(of prefix: String) -> String? {
            bindings.last { $0.prefix == prefix }.map(\.uri)
        }

        /// Local name and namespace of a qualified name (the name itself, nil, without namespaces).
        func resolve(_ qualified: ArraySlice<UInt8>, isAttribute: Bool) throws(Failure) -> (local: String, namespace: String?) {
            let name = String(decoding: qualified, as: UTF8.self)
            guard namespaces else { return (name, nil) }
            let parts = name.split(separator: ":", omittingEmptySubsequences: false)
            switch parts.count {
            case 1:
                if isAttribute { return (name, nil) }
                return (name, namespace(of: "").flatMap { $0.isEmpty ? nil : $0 })
            case 2 where !parts[0].isEmpty && !parts[1].isEmpty:
                guard let uri = namespace(of: String(parts[0])), !uri.isEmpty else {
                    throw failure("namespace prefix '\(parts[0].prefix(64))' is not declared")
                }
                return (String(parts[1]), uri)
            default:
                throw failure("'\(name.prefix(64))' is not a qualified name")
            }
        }

        mutating func startTag(_ handler: inout some XMLStreamHandler) throws(Failure) -> Bool {
            let qualified = try name()
            if rootClosed { throw failure("a second root element") }
            guard open.count < maxDepth else { throw failure("elements nest deeper than \(maxDepth)") }
            var raw: [(name: ArraySlice<UInt8>, value: String)] = []
            var selfClosing = false
            while true {
                let before = index
                skipSpace()
                guard index < bytes.count else { throw failure("a tag is not closed") }
                if bytes[index] == 62 {
                    index += 1
                    break
                }
                if bytes[index] == 47 {
                    guard index + 1 < bytes.count, bytes[index + 1] == 62 else { throw failure("'/' not followed by '>' in a tag") }
                    index += 2
                    selfClosing = true
                    break
                }
                guard index > before else { throw failure("attributes must be separated by blanks") }
                let attribute = try name()
                skipSpace()
                guard index < bytes.count, bytes[index] == 61 else { throw failure("'=' expected after an attribute name") }
                index += 1
                skipSpace()
                guard index < bytes.count, bytes[index] == 34 || bytes[index] == 39 else { throw failure("an attribute value must be quoted") }
                let quote = bytes[index]
                index += 1
                raw.append((attribute, try attributeValue(quote: quote)))
            }
            let scope = bindings.count
            var attributes: [String: String] = [:]
            var declared: Set<String> = []
            for (attribute, value) in raw {
                let key = String(decoding: attribute, as: UTF8.self)
                if namespaces && (key == "xmlns" || key.hasPrefix("xmlns:")) {
                    let prefix = key == "xmlns" ? "" : String(key.dropFirst(6))
                    guard declared.insert(prefix).inserted else { throw failure("attribute '\(key.prefix(64))' given twice") }
                    if !prefix.isEmpty && value.isEmpty { throw failure("namespace prefix '\(prefix.prefix(64))' bound to nothing") }
                    // Each name looks its prefix up among those in scope: bounded, so that a
                    // document cannot make every lookup long.
                    guard bindings.count < Self.maxBindings else { throw failure("more than \(Self.maxBindings) namespace declarations in scope") }
                    bindings.append((prefix, value))
                    continue
                }
                guard attributes.updateValue(value, forKey: key) == nil else { throw failure("attribute '\(key.prefix(64))' given twice") }
            }
            // Prefixed attributes need their prefix declared, here or above.
            if namespaces {
                for key in attributes.keys where key.contains(":") { _ = try resolve(Array(key.utf8)[...], isAttribute: true) }
            }
            let (local, namespace) = try resolve(qualified, isAttribute: false)
            guard handler.start(local, namespace: namespace, attributes: attributes) else { return false }
            if selfClosing {
                bindings.removeSubrange(scope...)
                if open.isEmpty { rootClosed = true }
                return handler.end(local, namespace: namespace)
            }
            open.append(Open(qualified: qualified, local: local, namespace: namespace, bindings: scope))
            return true
        }

        mutating func endTag(_ handler: inout some XMLStreamHandler) throws(Failure) -> Bool {
            let qualified = try name()
            skipSpace()
            guard index < bytes.count, bytes[index] == 62 else { throw failure("an end tag is not closed") }
            index += 1
            guard let element = open.popLast() else { throw failure("an end tag without an open element") }
            guard element.qualified.elementsEqual(qualified) else {
                throw failure("</\(String(decoding: qualified, as: UTF8.self).prefix(64))> closes <\(String(decoding: element.qualified, as: UTF8.self).prefix(64))>")
            }
            bindings.removeSubrange(element.bindings...)
            if open.isEmpty { rootClosed = true }
            return handler.end(element.local, namespace: element.namespace)
        }

        mutating func run(_ handler: inout some XMLStreamHandler) throws(Failure) -> Bool {
            guard String(validating: bytes, as: UTF8.self) != nil else { throw Failure(line: 1, message: "the document is not UTF-8") }
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
            let documentStart = index
            var sawRoot = false
            while index < bytes.count {
                guard bytes[index] == 60 else {
                    try characters()
                    continue
                }
                try flush(&handler)
                if starts(with: "<?", at: index) {
                    let target = index
                    guard let end = find("?>", from: index + 2) else { throw failure("a processing instruction is not closed") }
                    index += 2
                    let name = try name()
                    if String(decoding: name, as: UTF8.self).lowercased() == "xml" && target != documentStart {
                        throw failure("the XML declaration is not at the start of the document", at: target)
                    }
                    index = end + 2
                } else if starts(with: "<!--", at: index) {
                    guard let end = find("--", from: index + 4) else { throw failure("a comment is not closed") }
                    guard end + 2 < bytes.count, bytes[end + 2] == 62 else { throw failure("'--' inside a comment", at: end) }
                    index = end + 3
                } else if starts(with: "<![CDATA[", at: index) {
                    guard !open.isEmpty else { throw failure("CDATA outside the root element") }
                    guard let end = find("]]>", from: index + 9) else { throw failure("a CDATA section is not closed") }
                    var at = index + 9
                    while at < end {
                        try checkCharacter(at: at)
                        if bytes[at] == 13 {
                            text.append(10)
                            at += at + 1 < end && bytes[at + 1] == 10 ? 2 : 1
                        } else {
                            text.append(bytes[at])
                            at += 1
                        }
                    }
                    index = end + 3
                } else if starts(with: "<!", at: index) {
                    throw failure("declarations (<!DOCTYPE, <!ENTITY) are not accepted: no DTD is read")
                } else if starts(with: "</", at: index) {
                    index += 2
                    guard try endTag(&handler) else { return false }
                } else {
                    index += 1
                    sawRoot = true
                    guard try startTag(&handler) else { return false }
                }
            }
            try flush(&handler)
            guard sawRoot else { throw failure("no root element") }
            guard open.isEmpty else { throw failure("the document ends before its root element does") }
            return true
        }
    }
}
