internal import BulwarkCore
internal import Foundation

/// One package's entry in the dpkg database (`var/lib/dpkg/status`).
public struct InstalledPackage: Sendable, Hashable {
    public var name: String
    /// The source package it was built from (`Source: openssh (1:9.2p1-2)` → `openssh`); its own
    /// name when the entry has no `Source` field, as dpkg and apt read it.
    public var source: String
    public var architecture: String?
    /// `install`, `hold`, `deinstall`, `purge`, `unknown`: what was asked of dpkg.
    public var want: String
    /// `ok` or `reinstreq`.
    public var flag: String
    /// `installed`, `config-files`, `half-configured`, `unpacked`, `half-installed`,
    /// `triggers-awaited`, `triggers-pending`, `not-installed`.
    public var state: String
    /// Nil when the entry has no version (a package not installed) or one dpkg would refuse.
    public var version: DebianVersion?
    public var essential: Bool
    public var priority: String?
    /// Each dependency a list of alternatives (`a | b`), names only.
    public var depends: [[String]]
    public var preDepends: [[String]]
    public var provides: [String]

    /// Installed and configured, as far as a dependency or a person is concerned: triggers still
    /// to run do not make a package absent.
    public var isInstalled: Bool { ["installed", "triggers-pending", "triggers-awaited"].contains(state) && flag == "ok" }
    /// Removed (perhaps with its configuration files left) or never installed.
    public var isAbsent: Bool { state == "not-installed" || state == "config-files" }
    /// Held (`apt-mark hold`, `dpkg --set-selections`): someone fixed its version.
    public var isHeld: Bool { want == "hold" }
}

/// The dpkg database's `status` file: deb822 paragraphs, read with bounds so that a hostile or
/// corrupt file costs bounded memory and time and fails with a message naming the line.
public struct DpkgStatus: Sendable {
    public var packages: [String: [InstalledPackage]]

    /// Larger files are refused (a real one with 5,000 packages is about 8 MiB).
    public static let maximumSize = 128 << 20
    public static let maximumPackages = 200_000
    /// Longest paragraph (a package's entry with its description and conffiles).
    public static let maximumParagraph = 4 << 20

    public init(packages: [InstalledPackage]) {
        var byName: [String: [InstalledPackage]] = [:]
        for package in packages { byName[package.name, default: []].append(package) }
        self.packages = byName
    }

    /// The entries of `name` (one per architecture).
    public func entries(_ name: String) -> [InstalledPackage] { packages[name] ?? [] }

    /// The installed entry of `name` with the lowest version (a package installed for two
    /// architectures is only as new as its older one), or nil.
    public func installed(_ name: String) -> InstalledPackage? {
        entries(name).filter(\.isInstalled).min { a, b in
            switch (a.version, b.version) {
            case let (x?, y?): x < y
            case (nil, _): true
            default: false
            }
        }
    }

    /// Reads `ROOT/var/lib/dpkg/status` (a missing file is an empty database only when the
    /// whole `var/lib/dpkg` folder is missing: a root that manages no packages).
    public static func read(root: String) throws(PackagesError) -> DpkgStatus {
        let path = DpkgPaths.status(root)
        let bytes = try DpkgPaths.readBounded(path, limit: maximumSize)
        return try parse(bytes, file: path)
    }

    /// Parses the text of a status file. Continuation lines (starting with a space or tab) belong
    /// to the field above; field names are case-insensitive, as dpkg reads them.
    public static func parse(_ bytes: [UInt8], file: String = "status") throws(PackagesError) -> DpkgStatus {
        guard bytes.count <= maximumSize else { throw PackagesError("larger than \(maximumSize) bytes", subject: file) }
        var result: [InstalledPackage] = []
        var fields: [String: String] = [:]
        var current: String?
        var paragraphStart = 1
        var paragraphBytes = 0
        var lineNumber = 0

        func finish() throws(PackagesError) {
            defer {
                fields = [:]
                current = nil
                paragraphBytes = 0
            }
            guard !fields.isEmpty else { return }
            guard result.count < maximumPackages else {
                throw PackagesError("more than \(maximumPackages) entries", subject: file)
            }
            result.append(try package(fields, file: file, line: paragraphStart))
        }

        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            lineNumber += 1
            var line = bytes[start..<end]
            if line.last == 0x0D { line = line.dropLast() }
            start = end + 1
            paragraphBytes += line.count + 1
            guard paragraphBytes <= maximumParagraph else {
                throw PackagesError("line \(lineNumber): an entry longer than \(maximumParagraph) bytes", subject: file)
            }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                try finish()
                paragraphStart = lineNumber + 1
                continue
            }
            if line.first == 0x20 || line.first == 0x09 {
                guard let name = current else {
                    throw PackagesError("line \(lineNumber): a continuation line with no field above it", subject: file)
                }
                // Only the fields Bulwark reads keep their text; a long description costs nothing.
                fields[name]?.append("\n" + String(decoding: line.dropFirst(), as: UTF8.self))
                continue
            }
            guard line.first != 0x23 else { continue }  // `#` comment (deb822; dpkg never writes one)
            guard let colon = line.firstIndex(of: 0x3A) else {
                throw PackagesError("line \(lineNumber): expected 'Field: value'", subject: file)
            }
            let name = String(decoding: bytes[line.startIndex..<colon], as: UTF8.self).lowercased()
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw PackagesError("line \(lineNumber): invalid field name", subject: file)
            }
            current = name
            guard Self.kept.contains(name) else { continue }
            guard fields[name] == nil else {
                throw PackagesError("line \(lineNumber): field '\(name)' appears twice in one entry", subject: file)
            }
            fields[name] = String(decoding: bytes[(colon + 1)..<line.endIndex], as: UTF8.self).trimmingSpaces()
        }
        try finish()
        return DpkgStatus(packages: result)
    }

    static let kept: Set<String> = ["package", "source", "status", "version", "architecture", "essential", "priority", "depends",
                                    "pre-depends", "provides"]

    static func package(_ fields: [String: String], file: String, line: Int) throws(PackagesError) -> InstalledPackage {
        guard let name = fields["package"], isPackageName(name) else {
            throw PackagesError("entry at line \(line): missing or invalid 'Package'", subject: file)
        }
        let status = (fields["status"] ?? "").split(separator: " ").map(String.init)
        guard status.count == 3 else {
            throw PackagesError("entry '\(name)' at line \(line): 'Status' is not 'want flag state'", subject: file)
        }
        return InstalledPackage(
            name: name, source: sourceName(fields["source"]) ?? name, architecture: fields["architecture"], want: status[0], flag: status[1], state: status[2],
            version: fields["version"].flatMap { try? DebianVersion($0) },
            essential: fields["essential"]?.lowercased() == "yes", priority: fields["priority"]?.lowercased(),
            depends: dependencies(fields["depends"]), preDepends: dependencies(fields["pre-depends"]),
            provides: (dependencies(fields["provides"])).flatMap { $0 })
    }

    /// `Source: name` or `Source: name (version)` → `name`; nil when absent or not a package name.
    static func sourceName(_ text: String?) -> String? {
        guard let word = text?.split(whereSeparator: { " \t\n(".contains($0) }).first.map(String.init), isPackageName(word) else { return nil }
        return word
    }

    /// `a (>= 1) | b:any [amd64], c` → `[[a, b], [c]]`: names only, architecture qualifiers dropped.
    static func dependencies(_ text: String?) -> [[String]] {
        guard let text else { return [] }
        return text.split(separator: ",").compactMap { group in
            let names = group.split(separator: "|").compactMap { alternative -> String? in
                let word = alternative.split(whereSeparator: { " \t\n(<[".contains($0) }).first.map(String.init) ?? ""
                let name = word.split(separator: ":").first.map(String.init) ?? ""
                return isPackageName(name) ? name : nil
            }
            return names.isEmpty ? nil : names
        }
    }

    /// Debian Policy 5.6.1: lower-case letters, digits, `+ - .`, at least two, starting with a
    /// letter or digit.
    public static func isPackageName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard bytes.count >= 2, bytes.count <= 128, let first = bytes.first,
              (first >= 0x61 && first <= 0x7A) || DebianVersion.isDigit(first) else { return false }
        return bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || DebianVersion.isDigit($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E }
    }
}

/// Where the dpkg database and apt's files are under a target's root, and a bounded reader.
enum DpkgPaths {
    static func under(_ root: String, _ relative: String) -> String {
        (root == "/" ? "" : (root.hasSuffix("/") ? String(root.dropLast()) : root)) + "/" + relative
    }

    static func status(_ root: String) -> String { under(root, "var/lib/dpkg/status") }

    /// Reads a regular file of at most `limit` bytes; the last component is not followed when it
    /// is a symbolic link (dpkg writes its database as regular files).
    static func readBounded(_ path: String, limit: Int) throws(PackagesError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw PackagesError("cannot open: \(Shortage.errnoText())", subject: path)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw PackagesError("not a regular file", subject: path)
        }
        guard info.st_size <= limit else { throw PackagesError("larger than \(limit) bytes", subject: path) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw PackagesError("read failed: \(Shortage.errnoText())", subject: path)
            }
            if count == 0 { break }
            result.append(contentsOf: buffer[0..<count])
            // The file may grow between fstat and read.
            guard result.count <= limit else { throw PackagesError("larger than \(limit) bytes", subject: path) }
        }
        return result
    }
}
