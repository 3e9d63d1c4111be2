internal import Foundation
internal import BulwarkCore

/// `LoginDefs`: keys of `etc/login.defs` (`KEY VALUE`), read as both of its readers read them:
/// shadow-utils (the last line of a key, as written) and PAM (the first, in any case, `KEY=VALUE`
/// too, up to a `#`). A key is in sync only where one line sets it and both read the desired
/// value there. A drifted key is changed on its line, and other lines setting it commented out;
/// a missing one is appended.
struct LoginDefsDriver: ResourceDriver {
    /// Its one change is `FileIO.write`'s rename, which passes `ChangeGate.current` first: a fix
    /// is marked tried once the file is read again and the new one written aside, not before.
    var announcesChanges: Bool { true }

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

    /// Keys whose value is a mode: shadow-utils reads them with `strtol(…, 0)` (`27` is
    /// decimal, 033) and pam_umask with base 8, so they are written with a leading 0, which
    /// both read alike.
    static let octalKeys: Set<String> = ["UMASK", "HOME_MODE"]

    static func normalize(_ key: String, _ value: String) -> String? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        // Per scalar: "\r\n" is one Character and would pass a Character test for "\n".
        guard !trimmed.isEmpty, LineSafety.problem(trimmed) == nil,
              !trimmed.unicodeScalars.contains(where: { $0 == " " || $0.properties.isWhitespace }) else { return nil }
        if octalKeys.contains(key) {
            guard trimmed.utf8.count <= 4, let mask = UInt32(trimmed, radix: 8), mask <= 0o777 else { return nil }
            return octal(mask)
        }
        return trimmed
    }

    /// A mode as written: a leading 0, at least three digits (`027`, `0227`).
    static func octal(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return "0" + String(repeating: "0", count: max(0, 2 - digits.count)) + digits
    }

    /// What a line sets, as each of login.defs' readers takes it.
    struct Reading: Equatable {
        var key: Substring
        var value: Substring
    }

    /// shadow-utils' reading (getdef.c, `def_load`): trailing blanks dropped, a line whose first
    /// word starts with `#` or that has one word skipped, the key up to a space or tab (looked
    /// up exactly: `umask` is no key of its), the value after spaces, tabs and double quotes, up
    /// to the next double quote. The last line of a key wins.
    static func shadowReading(_ content: Substring) -> Reading? {
        let bytes = content.utf8
        var end = bytes.endIndex
        while end > bytes.startIndex, isCSpace(bytes[bytes.index(before: end)]) { end = bytes.index(before: end) }
        let line = bytes[..<end]
        guard let name = line.firstIndex(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }),
              line[name] != UInt8(ascii: "#"),
              let gap = line[name...].firstIndex(where: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) else { return nil }
        let after = line[line.index(after: gap)...]
        let start = after.firstIndex { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\"") } ?? after.endIndex
        let stop = after[start...].firstIndex(of: UInt8(ascii: "\"")) ?? after.endIndex
        return Reading(key: Substring(line[name..<gap]), value: Substring(after[start..<stop]))
    }

    /// Linux-PAM's reading (`pam_modutil_search_key`, how pam_umask reads UMASK): everything
    /// from the first `#` dropped, leading blanks skipped, the key up to a space, tab or `=`
    /// (matched ignoring case), the value after the blanks and `=`s that follow it. The first
    /// line of a key wins.
    static func pamReading(_ content: Substring) -> Reading? {
        let bytes = content.utf8
        let line = bytes[..<(bytes.firstIndex(of: UInt8(ascii: "#")) ?? bytes.endIndex)]
        guard let name = line.firstIndex(where: { !isCSpace($0) }) else { return nil }
        let gap = line[name...].firstIndex { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "=") } ?? line.endIndex
        let rest = gap == line.endIndex ? line[gap...] : line[line.index(after: gap)...]
        let start = rest.firstIndex { !isCSpace($0) && $0 != UInt8(ascii: "=") } ?? rest.endIndex
        return Reading(key: Substring(line[name..<gap]), value: Substring(rest[start...]))
    }

    /// What login.defs says of one key: every line a reader takes as it, and the line and value
    /// each reader ends up with.
    struct Entry {
        var lines: [Int] = []
        /// shadow-utils' value (useradd, login, passwd): its last line with the key as written.
        var shadow: (value: String, line: Int)?
        /// PAM's value: its first line with the key in any case.
        var pam: (value: String, line: Int)?

        /// shadow-utils' value, as Bulwark's own readers (`UID_MIN`) take it.
        var value: String? { shadow?.value }
    }

    /// Each root's login.defs parsed once while it is unchanged (`ContentCache`): a host's
    /// LoginDefs resources and the guards' `HostAccounts` read the same file.
    static let cache = ContentCache<[String: Entry]>()

    /// `entries` of a file as read.
    static func entries(file: HostFile) throws -> [String: Entry] {
        entries(try LineFile(bytes: file.bytes, origin: file.identity, path: file.path))
    }

    /// Each key's entry, by the key in upper case (policy keys are).
    static func entries(_ lines: LineFile) -> [String: Entry] {
        var result: [String: Entry] = [:]
        for (index, raw) in lines.lines.enumerated() {
            let content = LineFile.content(raw)
            // Most lines are comments or blank to both readers.
            let shadow = shadowReading(content), pam = pamReading(content)
            guard shadow != nil || pam != nil else { continue }
            var keys: [String] = []
            if let shadow { keys.append(String(shadow.key)) }
            // strcasecmp in the C locale: ASCII letters only.
            let upper = pam.map { String(decoding: $0.key.utf8.map { (97...122).contains($0) ? $0 - 32 : $0 }, as: UTF8.self) }
            if let upper, !keys.contains(upper) { keys.append(upper) }
            for key in keys {
                var entry = result[key, default: Entry()]
                entry.lines.append(index)
                if let shadow, shadow.key == key { entry.shadow = (String(shadow.value), index) }
                if let pam, entry.pam == nil, upper == key { entry.pam = (String(pam.value), index) }
                result[key] = entry
            }
        }
        return result
    }

    /// The value of `key` where every reader reads the same one from one line, normalized;
    /// otherwise what each reads, which is no desired value (drift). Nil where no line sets it.
    static func observed(_ key: String, _ entry: Entry?) -> String? {
        guard let entry else { return nil }
        let shadow = entry.shadow.flatMap { octalKeys.contains(key) ? shadowMode($0.value) : normalize(key, $0.value) }
        let pam = entry.pam.flatMap { normalize(key, $0.value) }
        if entry.lines.count == 1, let shadow, shadow == pam { return shadow }
        func shown(_ reading: (value: String, line: Int)?) -> String {
            reading.map { "'\(TerminalText.escapedLine($0.value, limit: 64))' (line \($0.line + 1))" } ?? "nothing"
        }
        return "\(shown(entry.shadow)) to shadow-utils, \(shown(entry.pam)) to PAM"
            + (entry.lines.count > 1 ? "; \(entry.lines.count) lines set \(key)" : "")
    }

    /// A mode as shadow-utils reads it (`strtol(value, 0)`, the whole value: `027` octal,
    /// `0x17` hex, `27` decimal), written as `octal`. Nil where it reads none.
    static func shadowMode(_ value: String) -> String? {
        let text = Substring(value)
        let (digits, radix): (Substring, Int) =
            text.hasPrefix("0x") || text.hasPrefix("0X") ? (text.dropFirst(2), 16) : text.hasPrefix("0") && text.count > 1 ? (text.dropFirst(), 8) : (text, 10)
        guard !digits.isEmpty, digits.count <= 8, digits.allSatisfy(\.isASCII), let mode = UInt32(digits, radix: radix), mode <= 0o777 else {
            return nil
        }
        return octal(mode)
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let root = try HostRoot(target: target)
        let entries = try Self.cache.value(Self.path, in: root, parse: Self.entries(file:)) ?? [:]
        var values: [String: String?] = [:]
        for property in resource.spec.properties {
            // Typed on purpose: `nil` must mean "unset", not remove the property.
            values[property.name] = .some(Self.observed(property.name, entries[property.name]))
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let root = try HostRoot(target: target)
        let found = try await root.applying(fixing: "LoginDefs") { try applyOnce(changes, root: root) }
        try AlreadyInSync.unless(changes, found: found)
    }

    /// One attempt: read, leave out the keys the file already holds as desired (another writer
    /// set them since the plan observed the drift), write the rest: on the line shadow-utils
    /// reads (else the one PAM reads; else a new line), every other line a reader takes as the
    /// key commented out, so that both read the one value. Returns the keys found.
    func applyOnce(_ changes: [PropertyDrift], root: HostRoot) throws -> Set<String> {
        let path = try root.resolve(Self.path)
        var file = try FileIO.readLines(path, in: root) ?? LineFile("")
        let entries = Self.entries(file)
        let found = Set(changes.filter { change in
            Self.observed(change.property, entries[change.property]) == change.desired
        }.map(\.property))
        guard found.count < Set(changes.map(\.property)).count else { return found }
        for change in changes where !found.contains(change.property) {
            guard let entry = entries[change.property], let line = entry.shadow?.line ?? entry.lines.first else {
                file.append("\(change.property)\t\(change.desired)")
                continue
            }
            let raw = file.lines[line]
            let content = LineFile.content(raw)
            let keyStart = content.firstIndex(where: { $0 != " " && $0 != "\t" }) ?? content.endIndex
            if entry.shadow?.line == line {
                // The key as shadow-utils reads it, maybe indented: keep the indent, the key and
                // the blanks after it, replace the rest of the line.
                let keyEnd = content[keyStart...].firstIndex(where: { $0 == " " || $0 == "\t" }) ?? content.endIndex
                let valueStart = content[keyEnd...].firstIndex(where: { $0 != " " && $0 != "\t" }) ?? content.endIndex
                file.lines[line] = Substring("\(content[..<valueStart])\(change.desired)\(LineFile.ending(raw))")
            } else {
                file.lines[line] = Substring("\(content[..<keyStart])\(change.property)\t\(change.desired)\(LineFile.ending(raw))")
            }
            for other in entry.lines where other != line {
                let original = LineFile.content(file.lines[other])
                file.lines[other] = Substring("# bulwark: \(change.property) is set once, on line \(line + 1): \(original)"
                                              + LineFile.ending(file.lines[other]))
            }
        }
        try FileIO.write(file, to: path, in: root, newFileMode: 0o644)
        HostFaults.change(at: "after", of: "LoginDefs")
        return found
    }
}
