internal import Foundation
internal import BulwarkCore

/// An element of an AWS XML answer: its name without namespace, its text, its children.
struct XMLElement: Sendable {
    var name: String
    var text: String = ""
    var children: [XMLElement] = []

    func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }
    func children(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }
    /// The text of the element at a path of child names.
    func value(_ path: String...) -> String? {
        var node: XMLElement? = self
        for name in path { node = node?.child(name) }
        return node?.text
    }
    /// The first element of that name anywhere below (depth first).
    func find(_ name: String) -> XMLElement? {
        for child in children {
            if child.name == name { return child }
            if let found = child.find(name) { return found }
        }
        return nil
    }

    /// The document's root element; nil when it is not well-formed XML (`XMLStream`).
    static func parse(_ bytes: [UInt8]) -> XMLElement? {
        var builder = Builder()
        guard (try? XMLStream.parse(bytes, namespaces: false, into: &builder)) == true else { return nil }
        return builder.root
    }

    private struct Builder: XMLStreamHandler {
        var stack: [XMLElement] = []
        var root: XMLElement?

        mutating func start(_ name: String, namespace: String?, attributes: [String: String]) -> Bool {
            let local = name.split(separator: ":").last.map(String.init) ?? name
            stack.append(XMLElement(name: local))
            return true
        }

        mutating func text(_ string: String) {
            guard !stack.isEmpty else { return }
            stack[stack.count - 1].text += string
        }

        mutating func end(_ name: String, namespace: String?) -> Bool {
            guard var element = stack.popLast() else { return true }
            element.text = element.text.trimmingCharacters(in: .whitespacesAndNewlines)
            if stack.isEmpty { root = element } else { stack[stack.count - 1].children.append(element) }
            return true
        }
    }
}

/// Escapes text for an XML body.
func xmlEscape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
