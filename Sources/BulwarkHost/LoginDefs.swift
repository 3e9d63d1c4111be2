internal import Foundation
internal import BulwarkCore

/// `LoginDefs`: keys of `etc/login.defs` (`KEY VALUE`; the last occurrence wins, as in
/// shadow-utils). A drifted key is changed on its line; a missing one is appended.
struct LoginDefsDriver: ResourceDriver {
    func watchedPaths(_ resource: Resource, on target: Target) -> [String] { HostAdapter.paths(target, [Self.path]) }

    static let path = "etc/login.defs"

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        spec.keyedProperties { key, reader in
            guard !key.isEmpty, key.first?.isNumber == false,
                  key.unicodeScalars.allSatisfy({ ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" }) else {
                reader.fail("'\(key)' is not a login.defs key (upper-case letters, digits and '_', such as PASS_MAX_DAYS)")
                return nil
            }
            guard let text = reader.string() else { return nil }
            if let problem = LineSafety.problem(text) {
                reader.fail("\(problem); login.defs is one setting per line")
                return nil
            }
            guard let value = normalize(key, text) else {
                reader.fail(key == "UMASK" ? "expected an octal umask such as 027, got '\(text)'"
                                           : "expected a single word or number, got '\(text)'")
                return nil
            }
            return DesiredProperty(key, value)
        }
    }

    static func normalize(_ key: String, _ value: String) -> String? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        // Per scalar: "\r\n" is one Character and would pass a Character test for "\n".
        guard !trimmed.isEmpty, LineSafety.problem(trimmed) == nil,
              !trimmed.unicodeScalars.contains(where: { $0 == " " || $0.properties.isWhitespace }) else { return nil }
        if key == "UMASK" {
            guard let mask = UInt32(trimmed, radix: 8), mask <= 0o777 else { return nil }
            let digits = String(mask, radix: 8)
            return String(repeating: "0", count: max(0, 3 - digits.count)) + digits
        }
        return trimmed
    }

    /// Each root's login.defs parsed once while it is unchanged (`ContentCache`): a host's
    /// LoginDefs resources and the guards' `HostAccounts` read the same file.
    static let cache = ContentCache<[String: (value: String, line: Int)]>()

    /// `entries` of a file as read.
    static func entries(file: HostFile) throws -> [String: (value: String, line: Int)] {
        entries(try LineFile(bytes: file.bytes, origin: file.identity, path: file.path))
    }

    /// The line index of the last assignment of each key.
    static func entries(_ lines: LineFile) -> [String: (value: String, line: Int)] {
        var result: [String: (value: String, line: Int)] = [:]
        for (index, raw) in lines.lines.enumerated() {
            let words = LineFile.content(raw).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, !words[0].hasPrefix("#") else { continue }
            result[String(words[0])] = (String(words[1]), index)
        }
        return result
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let root = try HostRoot(target: target)
        let entries = try Self.cache.value(Self.path, in: root, parse: Self.entries(file:)) ?? [:]
        var values: [String: String?] = [:]
        for property in resource.spec.properties {
            // Typed on purpose: `nil` must mean "unset", not remove the property.
            let observed: String? = entries[property.name].map { Self.normalize(property.name, $0.value) ?? $0.value }
            values[property.name] = .some(observed)
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let root = try HostRoot(target: target)
        let found = try await root.applying { try applyOnce(changes, root: root) }
        try AlreadyInSync.unless(changes, found: found)
    }

    /// One attempt: read, leave out the keys the file already holds as desired (another writer
    /// set them since the plan observed the drift), write the rest. Returns the keys found.
    func applyOnce(_ changes: [PropertyDrift], root: HostRoot) throws -> Set<String> {
        let path = try root.resolve(Self.path)
        var file = try FileIO.readLines(path, in: root) ?? LineFile("")
        let entries = Self.entries(file)
        let found = Set(changes.filter { change in
            entries[change.property].map { Self.normalize(change.property, $0.value) ?? $0.value } == change.desired
        }.map(\.property))
        guard found.count < Set(changes.map(\.property)).count else { return found }
        for change in changes where !found.contains(change.property) {
            if let line = entries[change.property]?.line {
                let raw = file.lines[line]
                let content = LineFile.content(raw)
                // The key may be indented: keep the indent and the key, replace only the value.
                let keyStart = content.firstIndex(where: { $0 != " " && $0 != "\t" }) ?? content.endIndex
                let keyEnd = content[keyStart...].firstIndex(where: { $0 == " " || $0 == "\t" }) ?? content.endIndex
                let valueStart = content[keyEnd...].firstIndex(where: { $0 != " " && $0 != "\t" }) ?? content.endIndex
                file.lines[line] = Substring("\(content[..<valueStart])\(change.desired)\(LineFile.ending(raw))")
            } else {
                file.append("\(change.property)\t\(change.desired)")
            }
        }
        try FileIO.write(file, to: path, in: root, newFileMode: 0o644)
        return found
    }
}
