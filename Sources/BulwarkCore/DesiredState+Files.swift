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
        do {
            return try YAML.compose(bytes, limits: limits).compactMap { $0 }
        } catch {
            diagnostics.error(ManifestError("YAML: \(error.message)",
                                            at: SourceLocation(file: file.path, line: error.line, column: error.column)))
            return []
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
