internal import Foundation
internal import BulwarkCore
internal import CLinux

/// `Sysctl`: kernel parameters, persisted in Bulwark's own file in `etc/sysctl.d/` and set at
/// runtime under `proc/sys/` when that file exists.
///
/// Observation follows `sysctl --system`: `*.conf` from `etc/sysctl.d`, `run/sysctl.d`,
/// `usr/local/lib/sysctl.d`, `usr/lib/sysctl.d` and `lib/sysctl.d` (a name in an earlier folder
/// hides the same name in a later one), in order of file name, then `etc/sysctl.conf`; the last
/// assignment wins. Bulwark's file is named to sort last; an assignment in `etc/` that would
/// still override it is commented out, with a note saying why.
struct SysctlDriver: ResourceDriver {
    /// Every change passes `ChangeGate.current` first, after the checks it follows: the renames
    /// of the sysctl.d files and the folder made for Bulwark's (`FileIO.write`), and each write
    /// under `proc/sys` (`FileIO.writeInPlace`), the one change when the files hold the values
    /// already. A fix is marked tried there, not before the files are read again.
    var announcesChanges: Bool { true }

    let cache = ParseCache<[String: (value: String, file: String)]>()

    func watchedPaths(_ resource: Resource, on target: Target) -> [String] {
        HostAdapter.paths(target, ["etc/sysctl.conf"] + Self.folders.map { $0 + "/" })
    }

    static let ownedFile = "etc/sysctl.d/zz-bulwark.conf"
    static let folders = ["etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d"]

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        spec.keyedProperties { key, reader in
            // `-key = value` is the line of `key` to sysctl and systemd-sysctl (the dash only
            // says to ignore its errors): accepted, it would be judged by no guard, floor,
            // weakening or conflict, which know the key without it, and still be set at boot.
            if key.hasPrefix("-") {
                reader.fail("'\(quotedForMessage(key))' starts with '-', which sysctl reads as the line of "
                            + "'\(quotedForMessage(String(key.dropFirst())))' with its errors ignored; write the key without it")
                return nil
            }
            guard isValidKey(key) else {
                reader.fail("'\(quotedForMessage(key))' is not a kernel parameter name such as net.ipv4.ip_forward")
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

    /// A key as sysctl writes it: dotted, with a `/` standing for a dot inside one name
    /// (`net.ipv4.conf.eth0/100.rp_filter` is `proc/sys/net/ipv4/conf/eth0.100/rp_filter`). Each
    /// name is letters, digits, `_`, `-`, `:`, and `/` between them; never `.` or `..` as a folder.
    /// The key never starts with `-`: sysctl reads `-key` as `key` (see `parse`).
    static func isValidKey(_ key: String) -> Bool {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2 && !parts[0].contains("/") && !key.hasPrefix("-") && parts.allSatisfy { part in
            !part.isEmpty && !part.hasPrefix("/") && !part.hasSuffix("/") && !part.contains("//") && part.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-" || $0 == ":" || $0 == "/")
            }
        }
    }

    /// `key` with dots and slashes swapped, as systemd-sysctl and sysctl turn one form into the
    /// other (`sysctl_normalize`): a dotted key's path, and a path's dotted key.
    static func swapped(_ key: some StringProtocol) -> String {
        String(key.map { $0 == "." ? "/" : $0 == "/" ? "." : $0 })
    }

    /// `value` with its runs of spaces and tabs folded to one space and none at either end, as
    /// values compare; nil when that leaves nothing or it holds a line feed. Byte by byte: a
    /// drifted 100-root plan folds 1,400 values, and a value is nearly always one word.
    static func normalize(_ value: String) -> String? {
        func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        let bytes = value.utf8
        guard !bytes.contains(UInt8(ascii: "\n")) else { return nil }
        guard bytes.contains(where: isBlank) else { return value.isEmpty ? nil : value }
        let words = bytes.split(whereSeparator: isBlank)
        guard !words.isEmpty else { return nil }
        return String(decoding: Array(words.joined(separator: [UInt8(ascii: " ")])), as: UTF8.self)
    }

    /// A value as `/proc/sys` shows it (`0\n`, `32768\t60999\n`), in the form values compare
    /// in: the blanks C's `isspace` knows dropped at either end (the trailing newline first of
    /// all) and the spaces and tabs between words folded, as sysctl reads it.
    static func runtimeValue(_ text: String) -> String? {
        normalize(String(text[...].trimmingCSpaces()))
    }

    /// Configuration files in the order sysctl applies them, as real paths: a link such as
    /// Debian's `etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf` is read where it points, and a
    /// file reached twice counts at its last place (`etc/sysctl.conf` is applied last).
    /// Names are compared and sorted by their bytes, as systemd-sysctl does (`strcmp`): two names
    /// Swift finds equal (the same letters, composed and decomposed) are two files to it.
    func files(_ root: HostRoot) throws -> [String] {
        var byName: [[UInt8]: String] = [:]
        for folder in Self.folders {
            for name in try FileIO.list(folder, in: root, mayMatter: { $0.reversed().starts(with: ".conf".utf8.reversed()) })
            where name.hasByteSuffix(".conf") && byName[Array(name.utf8)] == nil {
                byName[Array(name.utf8)] = folder + "/" + name
            }
        }
        var ordered: [String] = []
        for path in byName.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }).map(\.value) + ["etc/sysctl.conf"] {
            // Masked, as systemd-sysctl masks a name: it hides the same name in the folders after
            // its own (`byName` keeps the first), and is read as nothing.
            if Self.isMasked(path, root) { continue }
            let real = try root.resolve(path)
            ordered.removeAll { $0.isSameBytes(real) }
            ordered.append(real)
        }
        return ordered
    }

    /// Whether `path` is masked the way systemd masks a configuration file, and the way
    /// Bulwark's own message says to: a link to `/dev/null` (`ln -s /dev/null`), or a name
    /// that reaches that device. Read, it would be a character device, and fail every
    /// parameter of the target.
    /// The link's own text is read (`readlink`, never followed); the device is looked for where
    /// the name really leads inside the root (`HostRoot.resolve`), never out of it.
    static func isMasked(_ path: String, _ root: HostRoot) -> Bool {
        let components = root.components(of: path)
        guard let name = components.last, let folder = try? root.resolve(root.full(Array(components.dropLast()))) else { return false }
        var target = [CChar](repeating: 0, count: 16)
        let count = readlink(folder + "/" + name, &target, target.count)
        if count == 9, target[..<9].map({ UInt8(bitPattern: $0) }).elementsEqual("/dev/null".utf8) { return true }
        guard let real = try? root.resolve(path) else { return false }
        var info = stat()
        // /dev/null is device 1:3 (Linux's dev_t for a major and minor below 256: major << 8 | minor).
        return lstat(real, &info) == 0 && info.st_mode & FileType.mask == FileType.characterDevice && info.st_rdev == dev_t(1 << 8 | 3)
    }

    /// Assignments in one file: key (dotted) to value and line index. Blanks around a line, a
    /// key and a value are those sysctl trims (C's `isspace`: ASCII only), found byte by byte:
    /// a key with a no-break space after it is another key to sysctl, and Foundation's trimming
    /// (every Unicode space, through NSString) was a third of the time a plan spent on sysctls.
    static func assignments(_ text: String) -> [(key: String, value: String, line: Int)] {
        LineFile(text).lines.enumerated().compactMap { index, raw in
            var line = LineFile.content(raw).trimmingCSpaces()
            guard let first = line.utf8.first, first != UInt8(ascii: "#"), first != UInt8(ascii: ";") else { return nil }
            if first == UInt8(ascii: "-") { line = Substring(line.utf8.dropFirst()) }
            guard let equals = line.utf8.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            // A key whose first separator is `/` is a path (`net/ipv4/conf/eth0.100/rp_filter`):
            // its dotted form swaps dots and slashes. A dotted key is kept as written.
            let written = line[..<equals].trimmingCSpaces()
            let key = written.first(where: { $0 == "." || $0 == "/" }) == "/" ? swapped(written) : String(written)
            let value = String(line[line.utf8.index(after: equals)...].trimmingCSpaces())
            return (key, normalize(value) ?? "", index)
        }
    }


    /// The assignment that wins for each key, and its file. Reused (see `ParseCache`) while
    /// every folder listed and every file read is unchanged, so the resources of one target
    /// (seven sysctls of a fleet host) list the folders and read the files once, not each;
    /// never under the target's lock, where a fix is built from fresh (settled) reads.
    func persisted(_ root: HostRoot) throws -> [String: (value: String, file: String)] {
        let cacheable = !HostLock.isHeld(root)
        if cacheable, let cached = cache.lookup(root.path) { return cached }
        var snapshot = FileSnapshot()
        // Before the listings and reads: a change after this is seen at the next lookup.
        for folder in Self.folders { snapshot.take(try root.resolve(folder)) }
        var result: [String: (value: String, file: String)] = [:]
        for file in try files(root) {
            snapshot.take(file)
            guard let text = try FileIO.readText(file, in: root) else { continue }
            for assignment in Self.assignments(text) { result[assignment.key] = (assignment.value, file) }
        }
        // A parse of a file changed a moment ago serves only the plan that read it (`ParseCache`).
        if cacheable { cache.store(result, for: root.path, readAt: snapshot, unlessRecent: true) }
        return result
    }

    func runtimePath(_ key: String, _ root: HostRoot) throws -> String {
        try root.resolve(Self.runtimeFile(key))
    }

    /// `proc/sys/net/ipv4/ip_forward` for `net.ipv4.ip_forward`, under the root.
    static func runtimeFile(_ key: String) -> String {
        "proc/sys/" + swapped(key)
    }

    /// The parameter's runtime value, nil when `proc/sys` does not have it: one walk from the
    /// root, following links inside it as a read does (resolving the path first and then
    /// reading it walked it twice; under `proc/sys` that was a tenth of an in-sync `plan`).
    ///
    /// A file that is there but holds no value (empty, or more than one line: torn, or written
    /// by hand) is not a missing parameter: its text is the value, line feeds as spaces, and
    /// `(empty)` for nothing, which no policy value equals. Read as missing, the persisted value
    /// was taken for it, and the parameter was in sync however it stood.
    func runtime(_ key: String, _ root: HostRoot) throws -> String? {
        guard let text = try FileIO.readText(Self.runtimeFile(key), in: root) else { return nil }
        if let value = Self.runtimeValue(text) { return value }
        return Self.normalize(text.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")) ?? "(empty)"
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let root = try HostRoot(target: target)
        let persisted = try persisted(root)
        var values: [String: String?] = [:]
        for property in resource.spec.properties {
            let stored = persisted[property.name]?.value
            // `proc/sys` shows a number in decimal however it was written (`0x2` reads back `2`).
            if let runtime = try runtime(property.name, root), !Self.kernelReadsSame(runtime, property.value) {
                values[property.name] = runtime
            } else {
                values[property.name] = .some(stored)
            }
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let root = try HostRoot(target: target)
        let found = try await root.applying(fixing: "Sysctl") { try applyOnce(changes, root: root) }
        try AlreadyInSync.unless(changes, found: found)
    }

    /// The parameters among `changes` that already hold their desired value, both as persisted
    /// (the assignment that wins) and at runtime (where `proc/sys` has the parameter): what
    /// `observe` would find in sync.
    func alreadySet(_ changes: [PropertyDrift], root: HostRoot) throws -> Set<String> {
        let persisted = try persisted(root)
        var found: Set<String> = []
        for change in changes where persisted[change.property]?.value == change.desired {
            let runtime = try runtime(change.property, root)
            if runtime.map({ Self.kernelReadsSame($0, change.desired) }) ?? true { found.insert(change.property) }
        }
        return found
    }

    /// One attempt: read the files and runtime values again, leave out the parameters that
    /// already hold their desired value both persisted and at runtime (another writer set them
    /// since the plan observed the drift), fix the rest. Returns the parameters found.
    func applyOnce(_ allChanges: [PropertyDrift], root: HostRoot) throws -> Set<String> {
        let found = try alreadySet(allChanges, root: root)
        let changes = allChanges.filter { !found.contains($0.property) }
        guard !changes.isEmpty else { return found }
        // Bulwark's own file, by its literal path: never reached through a link.
        let owned = root.full(root.components(of: Self.ownedFile))
        // Before any change: a fix a vendor file would undo at the next boot is refused whole,
        // not written and then reported (its runtime value and Bulwark's file were changed, and
        // the record said failed).
        let later = try filesAfter(owned, root: root)
        try refuseVendorOverrides(changes, later: later, owned: owned, root: root)
        var file = try FileIO.readLines(owned, in: root)
            ?? LineFile("# Managed by Bulwark: kernel parameters from the desired state.\n# Edits here are overwritten.\n")
        let existing = Self.assignments(file.text)
        for change in changes {
            // The last assignment of a key is the one that holds: it is changed, any before it
            // commented out (edited, the first left the last one winning, every pass).
            if let line = existing.last(where: { $0.key == change.property })?.line {
                file.lines[line] = Substring("\(change.property) = \(change.desired)\n")
                for earlier in existing where earlier.key == change.property && earlier.line != line {
                    let original = LineFile.content(file.lines[earlier.line])
                    file.lines[earlier.line] = Substring("# bulwark: superseded by line \(line + 1): \(original)\(LineFile.ending(file.lines[earlier.line]))")
                }
            } else {
                file.append("\(change.property) = \(change.desired)")
            }
        }
        try FileIO.write(file, to: owned, in: root, newFileMode: 0o644, createFolders: 0o755)

        // Files applied after Bulwark's that still set another value, where an administrator
        // keeps configuration (etc/, run/), get that line commented out. The list read before
        // the write: the folders listed once per fix, not twice.
        for path in later where !isVendor(path, root) {
            guard var lines = try FileIO.readLines(path, in: root) else { continue }
            var changed = false
            for assignment in Self.assignments(lines.text) {
                guard let change = changes.first(where: { $0.property == assignment.key }),
                      assignment.value != change.desired else { continue }
                let original = LineFile.content(lines.lines[assignment.line])
                lines.lines[assignment.line] = Substring("# bulwark: superseded by \(Self.ownedFile): \(original)\(LineFile.ending(lines.lines[assignment.line]))")
                changed = true
            }
            if changed { try FileIO.write(lines, to: path, in: root) }
        }
        for change in changes {
            try FileIO.writeInPlace(try runtimePath(change.property, root), change.desired + "\n", in: root)
        }
        HostFaults.change(at: "after", of: "Sysctl")
        // A vendor file that came to win while the fix was written (checked before, too):
        // say which, rather than "did not hold".
        let now = try persisted(root)
        for change in changes {
            guard let winner = now[change.property], winner.value != change.desired else { continue }
            throw Self.overridden(change.property, winner, owned: owned, root: root)
        }
        return found
    }

    /// The files applied after Bulwark's own (`owned`), in order, once it is written: where it
    /// is, or will be, sorted by its name among the others; a file of its name in a later
    /// folder (run/, usr/lib/) is hidden by it.
    func filesAfter(_ owned: String, root: HostRoot) throws -> [String] {
        let ordered = try files(root)
        // Where Bulwark's file is, or will be once written: sorted by its name among the others.
        let position: Int
        if let index = ordered.firstIndex(of: owned) {
            position = index + 1
        } else {
            let name = Array((Self.ownedFile as NSString).lastPathComponent.utf8)
            let sysctlConf = try root.resolve("etc/sysctl.conf")
            position = ordered.firstIndex { path in
                path.isSameBytes(sysctlConf) || Array((path as NSString).lastPathComponent.utf8).lexicographicallyPrecedes(name) == false
            } ?? ordered.count
        }
        let ownName = (Self.ownedFile as NSString).lastPathComponent
        return ordered[position...].filter { !(($0 as NSString).lastPathComponent == ownName && $0 != owned) }
    }

    /// Refuses `changes` when a file Bulwark does not edit (a vendor file in usr/lib) among
    /// `later` (`filesAfter`) would still set another value at the next boot, once the files in
    /// `etc/` and `run/` among them have their other values commented out as a fix does.
    func refuseVendorOverrides(_ changes: [PropertyDrift], later: [String], owned: String, root: HostRoot) throws {
        var winners: [String: (value: String, file: String)] = [:]
        let wanted = Dictionary(changes.map { ($0.property, $0.desired) }, uniquingKeysWith: { _, last in last })
        for path in later {
            let vendor = isVendor(path, root)
            guard let text = try FileIO.readText(path, in: root) else { continue }
            for assignment in Self.assignments(text) {
                guard let desired = wanted[assignment.key], vendor || assignment.value == desired else { continue }
                winners[assignment.key] = (assignment.value, path)
            }
        }
        for change in changes {
            guard let winner = winners[change.property], winner.value != change.desired else { continue }
            throw Self.overridden(change.property, winner, owned: owned, root: root)
        }
    }

    /// The refusal of a fix that `winner`, a file Bulwark does not edit, would undo.
    static func overridden(_ key: String, _ winner: (value: String, file: String), owned: String, root: HostRoot) -> HostError {
        HostError("\(key) = \(quotedForMessage(winner.value)) in \(quotedForMessage(root.hostPath(root.components(of: winner.file)), limit: 256)) is applied after "
                  + "\(root.hostPath(root.components(of: owned))) and overrides it; Bulwark does not edit files under "
                  + "/usr or /lib: mask it with a file of the same name in /etc/sysctl.d")
    }

    /// A package's file (under usr/ or lib/), which Bulwark does not edit.
    private func isVendor(_ path: String, _ root: HostRoot) -> Bool {
        let first = root.components(of: path).first
        return first == "usr" || first == "lib"
    }
}
