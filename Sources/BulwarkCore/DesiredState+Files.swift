import Foundation

/// A policy file as bytes: UTF-8 checked, size-bounded, split into YAML documents.
extension DesiredStateLoader {
    func documents(of file: SourceFile, diagnostics: Diagnostics) -> [YAMLNode] {
        guard file.path.hasSuffix(".yaml") || file.path.hasSuffix(".yml") else { return [] }
        let start = SourceLocation(file: file.path, line: 1)
        switch file.kind {
        case .symlink:
            diagnostics.error(ManifestError("manifests may not be symbolic links", at: start))
            return []
        case .other:
            diagnostics.error(ManifestError("not a regular file", at: start))
            return []
        case .regular:
            break
        }
        guard file.size <= Self.maxFileSize, let bytes = file.contents else {
            diagnostics.error(ManifestError(
                "file is \(file.size) bytes; manifests may be at most \(Self.maxFileSize) bytes", at: start))
            return []
        }
        if bytes.contains(0) {
            diagnostics.error(ManifestError("binary file (contains NUL bytes); manifests are UTF-8 YAML", at: start))
            return []
        }
        if String(validating: bytes, as: UTF8.self) == nil {
            let (line, column) = firstInvalidUTF8(bytes)
            diagnostics.error(ManifestError("not valid UTF-8 text",
                                            at: SourceLocation(file: file.path, line: line, column: column)))
            return []
        }
        if let (line, column, name) = Self.hiddenLineBreak(bytes) {
            diagnostics.error(ManifestError("a \(name), which YAML reads as a line break but git, editors and reviews show "
                                            + "within the line; end lines with \\n (or \\r\\n) only",
                                            at: SourceLocation(file: file.path, line: line, column: column)))
            return []
        }
        do {
            return try YAML.compose(bytes, limits: limits).compactMap { $0 }
        } catch {
            diagnostics.error(ManifestError("YAML: \(error.message)",
                                            at: SourceLocation(file: file.path, line: error.line, column: error.column)))
            return []
        }
    }

    /// The first line break YAML reads where a line-based tool sees none, with its line and
    /// column as those tools count (lines end at `\n`): a carriage return not followed by a line
    /// feed, NEL (U+0085), or the line and paragraph separators (U+2028, U+2029). libyaml ends a
    /// line at each, so text a review shows inside a comment or a value would be read as keys of
    /// the manifest, and a finding's edit, placed by libyaml's line numbers, would land in
    /// another resource. `bytes` is valid UTF-8.
    static func hiddenLineBreak(_ bytes: [UInt8]) -> (line: Int, column: Int, name: String)? {
        bytes.withUnsafeBufferPointer { bytes -> (Int, Int, String)? in
            var line = 1, lineStart = 0, index = 0
            let count = bytes.count
            while index < count {
                let byte = bytes[index]
                if byte >= 0x0D {
                    if byte == 0x0D, index + 1 == count || bytes[index + 1] != 0x0A {
                        return (line, index - lineStart + 1, "carriage return not followed by a line feed")
                    }
                    if byte == 0xC2, index + 1 < count, bytes[index + 1] == 0x85 {
                        return (line, index - lineStart + 1, "next-line character (U+0085)")
                    }
                    if byte == 0xE2, index + 2 < count, bytes[index + 1] == 0x80, bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9 {
                        return (line, index - lineStart + 1, bytes[index + 2] == 0xA8 ? "line separator (U+2028)" : "paragraph separator (U+2029)")
                    }
                } else if byte == 0x0A {
                    line += 1
                    lineStart = index + 1
                }
                index += 1
            }
            return nil
        }
    }

    func firstInvalidUTF8(_ bytes: [UInt8]) -> (Int, Int) {
        var line = 1
        var lineStart = 0
        var index = 0
        while index < bytes.count {
            if bytes[index] == 10 { line += 1; lineStart = index + 1 }
            let end = min(bytes.count, index + 4)
            var valid = false
            for length in 1...4 where index + length <= end {
                if String(validating: bytes[index..<index + length], as: UTF8.self) != nil {
                    index += length
                    valid = true
                    break
                }
            }
            if !valid { return (line, index - lineStart + 1) }
        }
        return (line, 1)
    }
}
