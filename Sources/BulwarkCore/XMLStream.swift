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
    static let xmlnsNamespace = "http://www.w3.org/2000/xmlns/"

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
        /// How many namespace declarations were in scope before this element's own.
        var bindings: Int
    }

    private struct Reader {
        let bytes: [UInt8]
        let namespaces: Bool
        let maxDepth: Int
        var index = 0
        var open: [Open] = []
        /// The namespaces in scope by prefix (its bytes: names are compared as bytes, never as
        /// Unicode-equivalent text), innermost last; `declared` lists the prefixes declared, in
        /// order, so that an element's end takes its own declarations out of scope.
        var scopes: [[UInt8]: [String]] = [Array("xml".utf8): [XMLStream.xmlNamespace]]
        var declared: [[UInt8]] = []
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

        /// XML 1.0's NameStartChar.
        static func isNameStart(_ c: UInt32) -> Bool {
            (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 || c == 58
                || (c >= 0xC0 && c <= 0xD6) || (c >= 0xD8 && c <= 0xF6) || (c >= 0xF8 && c <= 0x2FF)
                || (c >= 0x370 && c <= 0x37D) || (c >= 0x37F && c <= 0x1FFF) || (c >= 0x200C && c <= 0x200D)
                || (c >= 0x2070 && c <= 0x218F) || (c >= 0x2C00 && c <= 0x2FEF) || (c >= 0x3001 && c <= 0xD7FF)
                || (c >= 0xF900 && c <= 0xFDCF) || (c >= 0xFDF0 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0xEFFFF)
        }

        /// XML 1.0's NameChar.
        static func isName(_ c: UInt32) -> Bool {
            isNameStart(c) || (c >= 48 && c <= 57) || c == 45 || c == 46 || c == 0xB7
                || (c >= 0x300 && c <= 0x36F) || (c >= 0x203F && c <= 0x2040)
        }

        /// The scalar at `position` and its length in bytes (the document is valid UTF-8).
        func scalar(at position: Int) -> (value: UInt32, length: Int) { Self.scalar(bytes[...], at: position) }

        /// The scalar at `position` of valid UTF-8 `bytes`, and its length in bytes.
        static func scalar(_ bytes: ArraySlice<UInt8>, at position: Int) -> (value: UInt32, length: Int) {
            let lead = UInt32(bytes[position])
            if lead < 0x80 { return (lead, 1) }
            let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
            var value = lead & (length == 4 ? 0x07 : length == 3 ? 0x0F : 0x1F)
            for offset in 1..<length { value = value << 6 | (UInt32(bytes[position + offset]) & 0x3F) }
            return (value, length)
        }

        mutating func skipSpace() {
            while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
        }

        mutating func name() throws(Failure) -> ArraySlice<UInt8> {
            let start = index
            guard index < bytes.count, case let first = scalar(at: index), Self.isNameStart(first.value) else {
                throw failure("a name was expected")
            }
            index += first.length
            while index < bytes.count {
                let next = scalar(at: index)
                guard Self.isName(next.value) else { break }
                index += next.length
            }
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
                // Digits only: `UInt32(_:radix:)` would also take a sign (`&#+65;`).
                guard !digits.isEmpty, digits.count <= 8, digits.allSatisfy({ hex ? $0.isHexDigit : ("0"..."9").contains($0) }),
                      let value = UInt32(digits, radix: hex ? 16 : 10),
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
                    guard !open.isEmpty else { throw failure("a reference outside the root element") }
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

        /// The namespace bound to `prefix` (empty for the default), or nil.
        func namespace(of prefix: some Collection<UInt8>) -> String? {
            scopes[Array(prefix)]?.last
        }

        /// Local name and namespace of a qualified name (the name itself, nil, without namespaces).
        func resolve(_ qualified: ArraySlice<UInt8>, isAttribute: Bool) throws(Failure) -> (local: String, namespace: String?) {
            let name = String(decoding: qualified, as: UTF8.self)
            guard namespaces else { return (name, nil) }
            let parts = qualified.split(separator: 58, omittingEmptySubsequences: false)
            switch parts.count {
            case 1:
                if isAttribute { return (name, nil) }
                return (name, namespace(of: []).flatMap { $0.isEmpty ? nil : $0 })
            // Prefix and local name are names of their own: neither starts with a digit, `-` or `.`.
            case 2 where !parts[0].isEmpty && !parts[1].isEmpty && Self.isNameStart(Self.scalar(parts[0], at: parts[0].startIndex).value)
                && Self.isNameStart(Self.scalar(parts[1], at: parts[1].startIndex).value):
                guard let uri = namespace(of: parts[0]), !uri.isEmpty else {
                    throw failure("namespace prefix '\(String(decoding: parts[0], as: UTF8.self).prefix(64))' is not declared")
                }
                return (String(decoding: parts[1], as: UTF8.self), uri)
            default:
                throw failure("'\(name.prefix(64))' is not a qualified name")
            }
        }

        /// Brings `prefix` (empty: the default namespace) into scope as `uri`, as an `xmlns`
        /// attribute named `name` declares it, after the checks Namespaces in XML makes: `xml`
        /// only for its own namespace, `xmlns` never, neither namespace for another prefix, no
        /// empty value for a prefix, and no prefix declared twice on one element.
        mutating func declare(_ prefix: [UInt8], _ uri: String, named name: String, seen: inout Set<[UInt8]>) throws(Failure) {
            let shown = "'\(name.prefix(64))'"
            if name.utf8.count == 6 { throw failure("\(shown) declares no prefix") }
            if !prefix.isEmpty && (prefix.contains(58) || !Self.isNameStart(Self.scalar(prefix[...], at: 0).value)) {
                throw failure("\(shown) declares a prefix that is not a name without a colon")
            }
            guard seen.insert(prefix).inserted else { throw failure("attribute \(shown) given twice") }
            if prefix.elementsEqual("xmlns".utf8) { throw failure("the prefix xmlns cannot be declared") }
            if prefix.elementsEqual("xml".utf8) {
                guard uri == XMLStream.xmlNamespace else { throw failure("the prefix xml is bound to its own namespace only") }
            } else if uri == XMLStream.xmlNamespace || uri == XMLStream.xmlnsNamespace {
                throw failure("\(shown) binds a namespace reserved for xml or xmlns")
            }
            if !prefix.isEmpty && uri.isEmpty { throw failure("namespace prefix '\(String(decoding: prefix, as: UTF8.self).prefix(64))' bound to nothing") }
            // Each element's declarations are bounded in all: a document cannot make the scopes large.
            guard declared.count < Self.maxBindings else { throw failure("more than \(Self.maxBindings) namespace declarations in scope") }
            scopes[prefix, default: []].append(uri)
            declared.append(prefix)
        }

        /// Takes the declarations made since `mark` out of scope.
        mutating func leaveScope(_ mark: Int) {
            while declared.count > mark, let prefix = declared.popLast() {
                scopes[prefix]?.removeLast()
                if scopes[prefix]?.isEmpty == true { scopes[prefix] = nil }
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
            let scope = declared.count
            var attributes: [String: String] = [:]
            var prefixes: Set<[UInt8]> = []
            for (attribute, value) in raw {
                let key = String(decoding: attribute, as: UTF8.self)
                if namespaces && (attribute.elementsEqual("xmlns".utf8) || attribute.starts(with: "xmlns:".utf8)) {
                    try declare(Array(attribute.dropFirst(attribute.count == 5 ? 5 : 6)), value, named: key, seen: &prefixes)
                    continue
                }
                // Two names that differ only as Unicode-equivalent spellings are one key here:
                // refused as a repetition rather than one of them silently dropped.
                guard attributes.updateValue(value, forKey: key) == nil else { throw failure("attribute '\(key.prefix(64))' given twice") }
            }
            // Prefixed attributes need their prefix declared, and two may not name one
            // namespace and local name (`p:x` and `q:x` with p and q bound to one namespace).
            if namespaces {
                var expanded: Set<String> = []
                for key in attributes.keys where key.utf8.contains(58) {
                    let (local, uri) = try resolve(Array(key.utf8)[...], isAttribute: true)
                    guard expanded.insert((uri ?? "") + " " + local).inserted else {
                        throw failure("attribute '\(key.prefix(64))' names the namespace and name of another")
                    }
                }
            }
            let (local, namespace) = try resolve(qualified, isAttribute: false)
            guard handler.start(local, namespace: namespace, attributes: attributes) else { return false }
            if selfClosing {
                leaveScope(scope)
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
            leaveScope(element.bindings)
            if open.isEmpty { rootClosed = true }
            return handler.end(element.local, namespace: element.namespace)
        }

        /// A processing instruction at `index` (`<?`): skipped, after its target (a name, no
        /// colon, not `xml` in any case but for the declaration) and its characters are checked.
        /// The declaration (`<?xml`, only at the start) is read: version 1.x, UTF-8 (or ASCII)
        /// if it names an encoding, standalone yes or no.
        mutating func instruction(atStart: Bool) throws(Failure) {
            let start = index
            guard let end = find("?>", from: index + 2) else { throw failure("a processing instruction is not closed") }
            index += 2
            let target = try name()
            for at in index..<end { try checkCharacter(at: at) }
            if target.elementsEqual("xml".utf8) {
                guard atStart else { throw failure("the XML declaration is not at the start of the document", at: start) }
                try declaration(String(decoding: bytes[index..<end], as: UTF8.self))
            } else if String(decoding: target, as: UTF8.self).lowercased() == "xml" {
                throw failure("'\(String(decoding: target, as: UTF8.self))' is reserved and not a processing instruction's name", at: start)
            } else if namespaces && target.contains(58) {
                throw failure("a processing instruction's name has a colon", at: start)
            } else if index < end && !Self.isSpace(bytes[index]) {
                throw failure("a blank must follow a processing instruction's name", at: start)
            }
            index = end + 2
        }

        /// The XML declaration's pseudo-attributes, after `<?xml`.
        func declaration(_ body: String) throws(Failure) {
            var rest = Substring(body)
            // The position in `order` of the last pseudo-attribute read; -1 before the first.
            var last = -1
            while true {
                let blanks = rest.prefix { $0.isXMLBlank }
                rest = rest.dropFirst(blanks.count)
                if rest.isEmpty { break }
                guard !blanks.isEmpty, let equals = rest.firstIndex(of: "=") else { throw failure("the XML declaration is malformed") }
                let key = String(rest[..<equals]).trimmingBlanks
                rest = rest[rest.index(after: equals)...].drop { $0.isXMLBlank }
                guard let quote = rest.first, quote == "\"" || quote == "'",
                      let close = rest.dropFirst().firstIndex(of: quote) else { throw failure("the XML declaration is malformed") }
                let value = String(rest[rest.index(after: rest.startIndex)..<close])
                rest = rest[rest.index(after: close)...]
                let order = ["version", "encoding", "standalone"]
                // version, then encoding, then standalone, each at most once.
                guard let position = order.firstIndex(of: key), position > last, (key == "version") == (last < 0) else {
                    throw failure("the XML declaration is malformed")
                }
                last = position
                switch key {
                case "version":
                    guard value.hasPrefix("1."), value.count > 2, value.dropFirst(2).allSatisfy({ ("0"..."9").contains($0) }) else {
                        throw failure("XML version '\(value.prefix(16))' is not 1.x")
                    }
                case "encoding":
                    guard ["utf-8", "utf8", "us-ascii", "ascii"].contains(value.lowercased()) else {
                        throw failure("the XML declaration names encoding '\(value.prefix(20))'; only UTF-8 is read")
                    }
                default:
                    guard value == "yes" || value == "no" else { throw failure("standalone is yes or no") }
                }
            }
            guard last >= 0 else { throw failure("the XML declaration has no version") }
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
                    try instruction(atStart: index == documentStart)
                } else if starts(with: "<!--", at: index) {
                    guard let end = find("--", from: index + 4) else { throw failure("a comment is not closed") }
                    guard end + 2 < bytes.count, bytes[end + 2] == 62 else { throw failure("'--' inside a comment", at: end) }
                    for at in (index + 4)..<end { try checkCharacter(at: at) }
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

private extension Character {
    /// A blank of XML (space, tab, line feed, carriage return; CR LF is one Character).
    var isXMLBlank: Bool { self == " " || self == "\t" || self == "\n" || self == "\r" || self == "\r\n" }
}

private extension String {
    var trimmingBlanks: String {
        String(drop { $0.isXMLBlank }.reversed().drop { $0.isXMLBlank }.reversed())
    }
}
