import BulwarkCore
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

/// Bulwark's own XML reader (`XMLStream`): the events it gives are libxml2's (through
/// Foundation's `XMLParser`, kept here only as the reference) on real documents, and what is
/// not well-formed, or would need a DTD, is refused with the line where it stops.
@Suite struct XMLStreamTests {
    /// Events as text, adjacent text pieces merged: `S name {ns} k=v…`, `T text`, `E name {ns}`.
    struct Recorder: XMLStreamHandler {
        var events: [String] = []
        var stopAt: String?

        mutating func start(_ name: String, namespace: String?, attributes: [String: String]) -> Bool {
            let shown = attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            events.append("S \(name) {\(namespace ?? "")} \(shown)")
            return name != stopAt
        }

        mutating func text(_ text: String) {
            if let last = events.last, last.hasPrefix("T ") { events[events.count - 1] += text } else { events.append("T " + text) }
        }

        mutating func end(_ name: String, namespace: String?) -> Bool {
            events.append("E \(name) {\(namespace ?? "")}")
            return true
        }
    }

    static func events(_ text: String, namespaces: Bool = true) throws -> [String] {
        var recorder = Recorder()
        try XMLStream.parse(Array(text.utf8), namespaces: namespaces, into: &recorder)
        return recorder.events
    }

    static func refusal(_ text: String) -> XMLStream.Failure? {
        refusal(Array(text.utf8))
    }

    static func refusal(_ bytes: [UInt8]) -> XMLStream.Failure? {
        var recorder = Recorder()
        do {
            try XMLStream.parse(bytes, namespaces: true, into: &recorder)
            return nil
        } catch {
            return error
        }
    }

    #if canImport(FoundationXML)
    /// The same events from Foundation's `XMLParser` (libxml2), namespaces processed.
    final class Reference: NSObject, XMLParserDelegate {
        var events: [String] = []

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            let shown = attributes.filter { !$0.key.hasPrefix("xmlns") }.sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            events.append("S \(name) {\(namespaceURI ?? "")} \(shown)")
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text(string) }

        func parser(_ parser: XMLParser, foundCDATA block: Data) { text(String(decoding: block, as: UTF8.self)) }

        func text(_ piece: String) {
            // libxml2 leaves a CR LF as it is in text after a reference (xlink.xsd's `&lt;`
            // examples); XML says every line end is read as LF, as XMLStream reads it.
            let string = piece.replacingOccurrences(of: "\r\n", with: "\n")
            if let last = events.last, last.hasPrefix("T ") { events[events.count - 1] += string } else { events.append("T " + string) }
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            events.append("E \(name) {\(namespaceURI ?? "")}")
        }

        static func events(_ bytes: [UInt8]) -> [String]? {
            let reference = Reference()
            let parser = XMLParser(data: Data(bytes))
            parser.delegate = reference
            parser.shouldProcessNamespaces = true
            parser.shouldReportNamespacePrefixes = false
            parser.shouldResolveExternalEntities = false
            return parser.parse() ? reference.events : nil
        }
    }

    /// OpenSCAP's own schemas and examples (hundreds of namespaced documents with comments,
    /// CDATA, references and line ends of every kind): the same events as libxml2's, file by file.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/openscap/schemas")))
    func realDocumentsGiveLibxml2sEvents() throws {
        var compared = 0
        let folder = "/usr/share/openscap"
        let files = FileManager.default.enumerator(atPath: folder)?.compactMap { $0 as? String } ?? []
        for file in files.sorted() where file.hasSuffix(".xml") || file.hasSuffix(".xsd") {
            guard let data = FileManager.default.contents(atPath: folder + "/" + file), data.count < 4 << 20 else { continue }
            let bytes = [UInt8](data)
            // Documents with a DTD are refused by design; libxml2 reads them.
            if String(decoding: bytes.prefix(4096), as: UTF8.self).contains("<!DOCTYPE") {
                #expect(Self.refusal(bytes) != nil, "\(file)")
                continue
            }
            guard let expected = Reference.events(bytes) else { continue }
            var recorder = Recorder()
            do {
                try XMLStream.parse(bytes, namespaces: true, into: &recorder)
            } catch {
                Issue.record("\(file): \(error)")
                continue
            }
            if recorder.events != expected {
                let at = zip(recorder.events, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(recorder.events.count, expected.count)
                let mine = Array(recorder.events.dropFirst(at).first ?? "none"), theirs = Array(expected.dropFirst(at).first ?? "none")
                let from = zip(mine, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(mine.count, theirs.count)
                Issue.record("\(file): event \(at), from character \(from): \(String(mine.dropFirst(from).prefix(60)).debugDescription) against libxml2's \(String(theirs.dropFirst(from).prefix(60)).debugDescription)")
            }
            compared += 1
        }
        #expect(compared > 100, "documents compared: \(compared)")
    }
    #endif

    @Test func whatWellFormedDocumentsHoldIsRead() throws {
        let document = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<!-- a comment -->\n<?pi data?>\n"
            + "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\" a=\"1 &amp; 2\" p:b='&lt;x&gt;'>\r\n"
            + "  <p:c d=\"line\r\nend\ttab\">&#65;&#x42;&quot;&apos;<![CDATA[<not a tag> & ]]></p:c>"
            + "<e xmlns=\"\"/><f xmlns:p=\"urn:q\"><p:g/></f>\u{E9}</r>\n<!-- after -->\n"
        #expect(try Self.events(document) == [
            "S r {urn:d} a=1 & 2 p:b=<x>", "T \n  ",
            "S c {urn:p} d=line end tab", "T AB\"'<not a tag> & ", "E c {urn:p}",
            "S e {} ", "E e {}",
            "S f {urn:d} ", "S g {urn:q} ", "E g {urn:q}", "E f {urn:d}",
            "T \u{E9}", "E r {urn:d}",
        ])
        // What libxml2 accepts of the same kinds is read.
        #expect(try Self.events("<?xml version='1.1' encoding=\"utf-8\" standalone=\"yes\" ?><r><?p?><?p data?></r>") == ["S r {} ", "E r {}"])
        #expect(try Self.events("<?xml\r\nversion=\"1.0\"\r\n?><r/>") == ["S r {} ", "E r {}"])
        #expect(try Self.events("<\u{E9}t\u{E9} xml:lang=\"fr\" xmlns:xml=\"http://www.w3.org/XML/1998/namespace\" x\u{B7}y=\"1\"/>")
                == ["S \u{E9}t\u{E9} {} xml:lang=fr x\u{B7}y=1", "E \u{E9}t\u{E9} {}"])
        #expect(try Self.events("<r xmlns:p=\"u\" xmlns:q=\"v\" p:x=\"1\" q:x=\"2\"/>") == ["S r {} p:x=1 q:x=2", "E r {}"])
        // Without namespaces: qualified names, xmlns attributes kept.
        #expect(try Self.events("<a:x xmlns:a=\"urn:a\"><y/></a:x>", namespaces: false)
                == ["S a:x {} xmlns:a=urn:a", "S y {} ", "E y {}", "E a:x {}"])
    }

    @Test func aDTDOrAnEntityItWouldDeclareIsRefused() throws {
        var entities = "<!ENTITY lol0 \"lol\">"
        for level in 1...9 { entities += "<!ENTITY lol\(level) \"" + String(repeating: "&lol\(level - 1);", count: 10) + "\">" }
        let laughs = Self.refusal("<?xml version=\"1.0\"?>\n<!DOCTYPE r [\(entities)]>\n<r>&lol9;</r>")
        #expect(laughs?.description == "line 2: declarations (<!DOCTYPE, <!ENTITY) are not accepted: no DTD is read")
        #expect(Self.refusal("<r><!ENTITY a \"b\"></r>")?.message.contains("no DTD") == true)
        #expect(Self.refusal("<r>&xxe;</r>")?.message.contains("undeclared entity &xxe;") == true)
        #expect(Self.refusal("<r a=\"&xxe;\"/>")?.message.contains("undeclared entity") == true)
        // The five predefined entities and character references still read.
        #expect(try Self.events("<r>&lt;&gt;&amp;&quot;&apos;&#x263A;</r>") == ["S r {} ", "T <>&\"'\u{263A}", "E r {}"])
    }

    @Test func documentsThatAreNotWellFormedAreRefusedWithTheirLine() {
        let cases: [(String, String)] = [
            ("<r><a></r>", "</r> closes <a>"),
            ("<r></r><r></r>", "a second root element"),
            ("text<r/>", "text outside the root element"),
            ("<r/>text", "text outside the root element"),
            ("<r>", "ends before its root element does"),
            ("", "no root element"),
            ("<!-- only a comment -->", "no root element"),
            ("<r a=\"1\" a=\"2\"/>", "given twice"),
            ("<r a=\"<\"/>", "'<' in an attribute value"),
            ("<r a=1/>", "must be quoted"),
            ("<r a=\"1\"b=\"2\"/>", "separated by blanks"),
            ("<r a=\"1/>", "not closed"),
            ("<p:r/>", "prefix 'p' is not declared"),
            ("<r p:a=\"1\"/>", "prefix 'p' is not declared"),
            ("<r xmlns:p=\"\"/>", "bound to nothing"),
            ("<r>]]></r>", "']]>' is not allowed"),
            ("<r><!-- a -- b --></r>", "'--' inside a comment"),
            ("<r>&#0;</r>", "not a character XML allows"),
            ("<r>&#xD800;</r>", "not a character XML allows"),
            ("<r>&#99999999999;</r>", "not a character XML allows"),
            ("<r>&amp</r>", "ending in ';'"),
            ("<r>\u{1}</r>", "control character 1"),
            ("<r a=\"\u{1B}[31m\"/>", "control character 27"),
            ("<r>\u{FFFF}</r>", "U+FFFE and U+FFFF"),
            ("<r/>\n<?xml version=\"1.0\"?>", "not at the start"),
            ("<![CDATA[x]]><r/>", "CDATA outside the root element"),
            ("<r><![CDATA[x</r>", "CDATA section is not closed"),
            ("< r/>", "a name was expected"),
            ("<r></ r>", "a name was expected"),
            ("<a:b:c xmlns:a=\"u\"/>", "is not a qualified name"),
            // Found by a reviewer's fuzzing against libxml2 (which refuses each of these too).
            ("<r>&#+65;</r>", "not a character XML allows"),
            ("&#32;<r/>", "a reference outside the root element"),
            ("<\u{D7}/>", "a name was expected"),
            ("<r><!--\u{1}--></r>", "control character 1"),
            ("<r><?p \u{1}?></r>", "control character 1"),
            ("<?xml garbage?><r/>", "the XML declaration is malformed"),
            ("<?xml encoding=\"UTF-8\"?><r/>", "malformed"),
            ("<?xml version=\"2.0\"?><r/>", "is not 1.x"),
            ("<?XML version=\"1.0\"?><r/>", "is reserved"),
            ("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r>\u{E9}</r>", "only UTF-8 is read"),
            ("<r><?x\"y?></r>", "a blank must follow"),
            ("<r><?p:q x?></r>", "has a colon"),
            ("<r xmlns:a=\"u\" a:5=\"\"/>", "is not a qualified name"),
            ("<r xmlns::=\"u\"/>", "not a name without a colon"),
            ("<?xml version=\"1.\"?><r/>", "is not 1.x"),
            ("<r xmlns:=\"urn:x\"><b/></r>", "declares no prefix"),
            ("<r xmlns:xml=\"urn:evil\"/>", "bound to its own namespace only"),
            ("<r xmlns:xmlns=\"urn:x\"/>", "the prefix xmlns cannot be declared"),
            ("<r xmlns:p=\"http://www.w3.org/2000/xmlns/\"/>", "reserved for xml or xmlns"),
            ("<r xmlns:p=\"u\" xmlns:q=\"u\" p:x=\"1\" q:x=\"2\"/>", "names the namespace and name of another"),
            // Prefixes are compared as bytes: a Kelvin sign is not K, nor é its decomposed spelling.
            ("<r xmlns:\u{212A}=\"urn:x\"><K:b/></r>", "prefix 'K' is not declared"),
            ("<r xmlns:\u{E9}=\"urn:x\"><e\u{301}:b/></r>", "is not declared"),
        ]
        for (text, expected) in cases {
            let failure = Self.refusal(text)
            #expect(failure?.message.contains(expected) == true, "\(text): \(String(describing: failure))")
        }
        #expect(Self.refusal("<r>\n\n<a>\n</b></r>")?.line == 4)
        #expect(Self.refusal([0x3C, 0x72, 0x3E, 0xC3, 0x28, 0x3C, 0x2F, 0x72, 0x3E])?.message == "the document is not UTF-8")
    }

    @Test func depthAndNamespaceDeclarationsAreBounded() throws {
        let deep = String(repeating: "<a>", count: 300) + String(repeating: "</a>", count: 300)
        #expect(Self.refusal(deep)?.message == "elements nest deeper than 256")
        let allowed = String(repeating: "<a>", count: 256) + String(repeating: "</a>", count: 256)
        #expect(Self.refusal(allowed) == nil)
        let many = "<r " + (0..<300).map { "xmlns:p\($0)=\"urn:\($0)\"" }.joined(separator: " ") + "/>"
        #expect(Self.refusal(many)?.message.contains("more than 256 namespace declarations") == true)
        // Declarations go out of scope with their element: siblings may each declare many.
        let siblings = "<r>" + String(repeating: "<s " + (0..<200).map { "xmlns:p\($0)=\"urn:\($0)\"" }.joined(separator: " ") + "/>", count: 3) + "</r>"
        #expect(Self.refusal(siblings) == nil)
    }

    @Test func theHandlerStopsTheParse() throws {
        var recorder = Recorder(stopAt: "b")
        let finished = try XMLStream.parse(Array("<r><a/><b/><c/></r>".utf8), namespaces: true, into: &recorder)
        #expect(!finished)
        #expect(recorder.events == ["S r {} ", "S a {} ", "E a {}", "S b {} "])
    }
}
