extension ManifestEdit {
    /// Where a proposal puts the manifest of a resource it creates: one file per resource, in a
    /// folder of its own, named after kind and name (`DesiredStateLoader.isValidName` names
    /// only, so it is a plain file name).
    public static func createdPath(for id: ResourceID) -> String {
        "desired-state/proposed/\(id.kind.lowercased())-\(id.name).yaml"
    }

    /// The comment at the top of a created manifest: which finding and rule proposed it.
    public static func createdComment(finding: String, source: String, rule: String) -> String {
        "Proposed by Bulwark for finding \(finding) from \(source) (rule \(rule)):\n"
            + "a resource the policy did not have. Review it before merging."
    }

    /// A new manifest for `id` whose spec is `change`'s `set` (scalars at their paths) and `add`
    /// (one-item lists at theirs), with `annotations`, bound to `targets` only, every value written as `render` writes it
    /// (double-quoted, digits plain, the rule's own typed values plain) so that no finding's text can break out of its value.
    /// Throws for a name that is not a resource name and for two operations on one path.
    public static func create(_ change: ChangeTemplate, annotations: [String: String], for id: ResourceID,
                              targets: [String], comment: String) throws(ManifestEditError) -> String {
        guard !targets.isEmpty, targets.allSatisfy(DesiredStateLoader.isValidName) else {
            throw ManifestEditError("a new resource is bound to the targets its finding names, and this one names none")
        }
        guard DesiredStateLoader.isValidName(id.name) else {
            throw ManifestEditError("'\(quotedForMessage(id.name))' is not a resource name (lowercase letters, digits, '-' and '.')")
        }
        var spec = Node.mapping([])
        for operation in change.set { try spec.insert(operation.path[...], .scalar(render(operation.value, typed: operation.typed))) }
        for operation in change.add { try spec.insert(operation.path[...], .list([render(operation.value, typed: operation.typed)])) }
        // The comment's lines, with any other line break or control character as a space.
        var lines = comment.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            "# " + String(String.UnicodeScalarView(line.unicodeScalars.map {
                $0.properties.generalCategory == .control || $0 == "\u{2028}" || $0 == "\u{2029}" || $0 == "\u{85}" ? " " : $0
            }))
        }
        lines += ["apiVersion: bulwark/v1", "kind: \(id.kind)", "metadata:", "  name: \(id.name)"]
        if !annotations.isEmpty {
            lines.append("  annotations:")
            lines += annotations.sorted { $0.key < $1.key }.map { "    \(Buffer.key($0.key)): \(render($0.value))" }
        }
        // Bound to the targets the finding is about, never to every target its kind's controllers select.
        lines.append("targets: {names: [\(targets.map { YAML.doubleQuoted($0) }.joined(separator: ", "))]}")
        lines.append("spec:")
        lines += spec.lines(indent: "  ")
        return lines.joined(separator: "\n") + "\n"
    }

    /// A spec being built: nested mappings (in the order first written), scalars and lists, values as written (`render`).
    private enum Node {
        case scalar(String)
        case list([String])
        case mapping([(String, Node)])

        mutating func insert(_ path: ArraySlice<String>, _ value: Node) throws(ManifestEditError) {
            guard case .mapping(var entries) = self, let first = path.first else {
                throw ManifestEditError("two changes of the rule write the same path")
            }
            let index = entries.firstIndex { $0.0 == first }
            if path.count == 1 {
                guard index == nil else { throw ManifestEditError("two changes of the rule write '\(quotedForMessage(first))'") }
                entries.append((first, value))
            } else {
                var child = index.map { entries[$0].1 } ?? .mapping([])
                try child.insert(path.dropFirst(), value)
                if let index { entries[index].1 = child } else { entries.append((first, child)) }
            }
            self = .mapping(entries)
        }

        func lines(indent: String) -> [String] {
            guard case .mapping(let entries) = self else { return [] }
            return entries.flatMap { key, node -> [String] in
                let key = Buffer.key(key)
                switch node {
                case .scalar(let value): return ["\(indent)\(key): \(value)"]
                case .list(let values): return ["\(indent)\(key):"] + values.map { "\(indent)  - \($0)" }
                case .mapping: return ["\(indent)\(key):"] + node.lines(indent: indent + "  ")
                }
            }
        }
    }
}
