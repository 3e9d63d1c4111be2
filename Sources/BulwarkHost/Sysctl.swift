internal import Foundation
internal import BulwarkCore

/// `Sysctl`: kernel parameters, persisted in Bulwark's own file in `etc/sysctl.d/` and set at
/// runtime under `proc/sys/` when that file exists.
///
/// Observation follows `sysctl --system`: `*.conf` from `etc/sysctl.d`, `run/sysctl.d`,
/// `usr/local/lib/sysctl.d`, `usr/lib/sysctl.d` and `lib/sysctl.d` (a name in an earlier folder
/// hides the same name in a later one), in order of file name, then `etc/sysctl.conf`; the last
/// assignment wins. Bulwark's file is named to sort last; an assignment in `etc/` that would
/// still override it is commented out, with a note saying why.
struct SysctlDriver: ResourceDriver {
    func watchedPaths(_ resource: Resource, on target: Target) -> [String] {
        HostAdapter.paths(target, ["etc/sysctl.conf"] + Self.folders.map { $0 + "/" })
    }

    static let ownedFile = "etc/sysctl.d/zz-bulwark.conf"
    static let folders = ["etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d"]

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        spec.keyedProperties { key, reader in
            guard isValidKey(key) else {
                reader.fail("'\(key)' is not a kernel parameter name such as net.ipv4.ip_forward")
                return nil
            }
            guard let text = reader.string() else { return nil }
            if let problem = LineSafety.problem(text) {
                reader.fail("\(problem); sysctl.d files are one setting per line")
                return nil
            }
            guard let value = normalize(text) else {
                reader.fail("expected a non-empty single-line value")
                return nil
            }
            return DesiredProperty(key, value)
        }
    }

    static func isValidKey(_ key: String) -> Bool {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2 && !key.contains("/") && parts.allSatisfy { part in
            !part.isEmpty && part != ".." && part.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-" || $0 == ":")
            }
        }
    }

    static func normalize(_ value: String) -> String? {
        guard !value.contains("\n") else { return nil }
        let folded = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
        return folded.isEmpty ? nil : folded
    }

    /// Configuration files in the order sysctl applies them.
    func files(_ root: HostRoot) throws -> [String] {
        var byName: [String: String] = [:]
        for folder in Self.folders {
            let directory = try root.resolve(folder)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for name in names where name.hasSuffix(".conf") && byName[name] == nil {
                byName[name] = directory + "/" + name
            }
        }
        var ordered = byName.sorted { $0.key < $1.key }.map(\.value)
        let conf = try root.resolve("etc/sysctl.conf")
        if !ordered.contains(conf) { ordered.append(conf) }
        return ordered
    }

    /// Assignments in one file: key (dotted) to value and line index.
    static func assignments(_ text: String) -> [(key: String, value: String, line: Int)] {
        LineFile(text).lines.enumerated().compactMap { index, raw in
            var line = LineFile.content(raw).trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#"), !line.hasPrefix(";") else { return nil }
            if line.hasPrefix("-") { line.removeFirst() }
            guard let equals = line.firstIndex(of: "=") else { return nil }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "/", with: ".")
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            return (key, normalize(value) ?? "", index)
        }
    }

    func persisted(_ root: HostRoot) throws -> [String: (value: String, file: String)] {
        var result: [String: (value: String, file: String)] = [:]
        for file in try files(root) {
            guard let text = try FileIO.readText(file) else { continue }
            for assignment in Self.assignments(text) { result[assignment.key] = (assignment.value, file) }
        }
        return result
    }

    func runtimePath(_ key: String, _ root: HostRoot) throws -> String {
        try root.resolve("proc/sys/" + key.replacingOccurrences(of: ".", with: "/"))
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let root = try HostRoot(target: target)
        let persisted = try persisted(root)
        var values: [String: String?] = [:]
        for property in resource.spec.properties {
            let stored = persisted[property.name]?.value
            if let runtime = try FileIO.readText(try runtimePath(property.name, root)).flatMap(Self.normalize),
               runtime != property.value {
                values[property.name] = runtime
            } else {
                values[property.name] = .some(stored)
            }
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let root = try HostRoot(target: target)
        let owned = try root.resolve(Self.ownedFile)
        try FileManager.default.createDirectory(atPath: (owned as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        var file = LineFile(try FileIO.readText(owned) ?? "# Managed by Bulwark: kernel parameters from the desired state.\n# Edits here are overwritten.\n")
        let existing = Self.assignments(file.text)
        for change in changes {
            if let line = existing.first(where: { $0.key == change.property })?.line {
                file.lines[line] = Substring("\(change.property) = \(change.desired)\n")
            } else {
                file.append("\(change.property) = \(change.desired)")
            }
        }
        try FileIO.write(owned, file.bytes, newFileMode: 0o644)

        // Files applied after Bulwark's that still set another value, where an administrator
        // keeps configuration (etc/, run/), get that line commented out.
        let ordered = try files(root)
        if let position = ordered.firstIndex(of: owned) {
            for path in ordered[(position + 1)...] where !path.hasPrefix(root.path + "/usr/") && !path.hasPrefix(root.path + "/lib/") {
                guard let text = try FileIO.readText(path) else { continue }
                var lines = LineFile(text)
                var changed = false
                for assignment in Self.assignments(text) {
                    guard let change = changes.first(where: { $0.property == assignment.key }),
                          assignment.value != change.desired else { continue }
                    let original = LineFile.content(lines.lines[assignment.line])
                    lines.lines[assignment.line] = Substring("# bulwark: superseded by \(Self.ownedFile): \(original)\(LineFile.ending(lines.lines[assignment.line]))")
                    changed = true
                }
                if changed { try FileIO.write(path, lines.bytes) }
            }
        }
        for change in changes {
            let runtime = try runtimePath(change.property, root)
            if FileManager.default.fileExists(atPath: runtime) {
                try FileIO.writeInPlace(runtime, change.desired + "\n")
            }
        }
    }
}
