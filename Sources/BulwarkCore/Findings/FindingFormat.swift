internal import Foundation

/// The formats a findings document may be in. `bulwark ingest` and `POST /api/v1/findings`
/// tell them apart by the content type where it is specific, else by the document's shape.
public enum FindingFormat: String, Sendable, Codable, CaseIterable {
    /// `{"resource", "control", ...}` or a list of them.
    case generic
    /// AWS Security Finding Format: `{"Findings": [...]}` or one finding.
    case asff
    /// OCSF 1.x Vulnerability (2002), Compliance (2003) or Detection (2004) Finding, one or a
    /// list (Prowler's `--output-formats json-ocsf` writes a list of them).
    case ocsf
    /// SARIF 2.1.0 (`{"version": "2.1.0", "runs": [...]}`).
    case sarif
    /// garak's report JSON Lines: its `entry_type: "eval"` lines.
    case garak
    /// OSV: osv-scanner's `{"results": [...]}`, or OSV records (`{"id", "affected"}`).
    case osv
    /// Trivy's JSON report (`{"SchemaVersion": 2, "Results": [...]}`).
    case trivy
    /// Grype's JSON report (`{"matches": [...]}`).
    case grype
    /// OpenSCAP's XCCDF or ARF results (`oscap xccdf eval --results` / `--results-arf`): XML.
    case xccdf

    /// The format a parsed JSON document is in: a specific content type first
    /// (`application/sarif+json`), else its shape.
    public static func detect(_ json: Any, contentType: String? = nil) -> FindingFormat {
        let type = contentType.map { $0.split(separator: ";").first.map(String.init)?.trimmingCharacters(in: .whitespaces).lowercased() ?? "" }
        switch type {
        case "application/sarif+json": return .sarif
        case "application/vnd.ocsf+json", "application/ocsf+json": return .ocsf
        case "application/vnd.osv+json", "application/osv+json": return .osv
        case "application/vnd.trivy+json": return .trivy
        case "application/vnd.grype+json": return .grype
        case "application/vnd.amazon.asff+json", "application/asff+json": return .asff
        default: break
        }
        let object: [String: Any]?
        if let dictionary = json as? [String: Any] {
            object = dictionary
        } else if let list = json as? [Any], let first = list.first as? [String: Any] {
            // A list: OCSF (Prowler) or OSV records or generic/ASFF findings.
            if first["class_uid"] != nil { return .ocsf }
            if first["affected"] != nil, first["id"] != nil, first["resource"] == nil { return .osv }
            return first["SchemaVersion"] != nil || first["Resources"] != nil ? .asff : .generic
        } else {
            object = nil
        }
        guard let object else { return .generic }
        if object["Findings"] != nil || (object["SchemaVersion"] is String && object["Resources"] != nil) { return .asff }
        if object["runs"] != nil, (object["version"] as? String)?.hasPrefix("2.1") == true || (object["$schema"] as? String)?.contains("sarif") == true {
            return .sarif
        }
        if object["class_uid"] != nil { return .ocsf }
        if object["Results"] != nil, object["SchemaVersion"] is NSNumber || object["ArtifactName"] != nil { return .trivy }
        if object["matches"] != nil, object["descriptor"] != nil || object["source"] != nil || object["distro"] != nil { return .grype }
        if let results = object["results"] as? [Any], (results.first as? [String: Any])?["packages"] != nil { return .osv }
        if object["affected"] != nil, object["id"] != nil, object["resource"] == nil { return .osv }
        return .generic
    }

    /// Whether the content type says JSON Lines.
    static func isJSONLines(contentType: String?, bytes: [UInt8]) -> Bool {
        guard let type = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() else { return false }
        return ["application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines"].contains(type)
    }

    /// Whether a document that is not one JSON value starts with a JSON object line carrying
    /// `entry_type` (garak's report).
    static func looksLikeJSONLines(_ bytes: [UInt8]) -> Bool {
        // Its first line that is not blank: a report may begin with an empty line.
        guard let start = bytes.firstIndex(where: { ![9, 10, 13, 32].contains($0) }) else { return false }
        let end = bytes[start...].firstIndex(of: 10) ?? bytes.endIndex
        guard let line = try? JSONSerialization.jsonObject(with: Data(bytes[start..<end])) as? [String: Any] else { return false }
        return line["entry_type"] != nil
    }
}

/// What a finding knows of a vulnerability: the advisory, the affected package, and how likely
/// it is to be exploited (which raises the finding's priority).
public struct Vulnerability: Sendable, Hashable, Codable {
    /// CVE-…, GHSA-…, DSA-…: the advisory's id.
    public var id: String
    /// Other ids of the same advisory (a CVE behind a GHSA).
    public var aliases: [String]
    public var package: PackageCoordinate?
    /// In CISA's Known Exploited Vulnerabilities catalogue (or flagged exploited by the scanner).
    public var knownExploited: Bool
    /// EPSS probability of exploitation in the next 30 days, 0...1.
    public var epss: Double?
    /// CVSS base score, 0...10.
    public var cvss: Double?

    public init(id: String, aliases: [String] = [], package: PackageCoordinate? = nil, knownExploited: Bool = false,
                epss: Double? = nil, cvss: Double? = nil) {
        self.id = id
        self.aliases = aliases
        self.package = package
        self.knownExploited = knownExploited
        self.epss = epss.flatMap { $0.isFinite && (0...1).contains($0) ? $0 : nil }
        self.cvss = cvss.flatMap { $0.isFinite && (0...10).contains($0) ? $0 : nil }
    }

    /// The CVE among the id and aliases, if any.
    public var cve: String? { ([id] + aliases).first { $0.hasPrefix("CVE-") } }

    /// From an ASFF `Vulnerabilities[]` entry.
    init?(asff object: [String: Any]) {
        guard let id = FindingParser.string(object["Id"]) else { return nil }
        let package = (object["VulnerablePackages"] as? [[String: Any]])?.first.flatMap { entry -> PackageCoordinate? in
            guard let name = FindingParser.string(entry["Name"]) else { return nil }
            return PackageCoordinate(ecosystem: FindingParser.string(entry["PackageManager"]) ?? "", name: name,
                                     version: FindingParser.string(entry["Version"]).map { version in
                                         FindingParser.string(entry["Epoch"]).map { $0 == "0" ? version : "\($0):\(version)" } ?? version
                                     } ?? "",
                                     fixedVersion: FindingParser.string(entry["FixedInVersion"]))
        }
        let cvss = (object["Cvss"] as? [[String: Any]])?.compactMap { FindingParser.number($0["BaseScore"]) }.max()
        self.init(id: id, package: package, knownExploited: FindingParser.string(object["ExploitAvailable"])?.uppercased() == "YES",
                  epss: FindingParser.number(object["EpssScore"]), cvss: cvss)
    }
}

/// An installed package, as a package URL names it (`pkg:deb/debian/openssh-server@1:9.2p1-2?arch=amd64`).
public struct PackageCoordinate: Sendable, Hashable, Codable {
    /// `deb`, `npm`, `pypi`, … (the purl type), or the scanner's ecosystem name.
    public var ecosystem: String
    /// The purl namespace (`debian`), when known.
    public var namespace: String?
    public var name: String
    /// The installed version ("" when the document names none).
    public var version: String
    /// The first version that fixes it, when there is one.
    public var fixedVersion: String?

    public init(ecosystem: String, namespace: String? = nil, name: String, version: String, fixedVersion: String? = nil) {
        self.ecosystem = ecosystem
        self.namespace = namespace
        self.name = name
        self.version = version
        self.fixedVersion = fixedVersion
    }

    /// The package URL, `pkg:type/namespace/name@version` (percent-encoded where purl says so).
    public var purl: String {
        func encode(_ text: String) -> String {
            text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn:
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~")) ?? text
        }
        let type = Self.purlType(ecosystem)
        var text = "pkg:\(type)/"
        if let namespace, !namespace.isEmpty { text += encode(namespace) + "/" }
        text += encode(name)
        if !version.isEmpty { text += "@" + encode(version) }
        return text
    }

    /// A purl (`pkg:deb/debian/openssh-server@1%3A9.2p1-2?arch=amd64`) read back; nil when it is not one.
    public init?(purl: String, fixedVersion: String? = nil) {
        guard purl.hasPrefix("pkg:"), purl.count <= FindingParser.maxFieldLength else { return nil }
        var rest = Substring(purl.dropFirst(4))
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        if let question = rest.firstIndex(of: "?") { rest = rest[..<question] }
        var version = ""
        if let at = rest.lastIndex(of: "@") {
            version = String(rest[rest.index(after: at)...]).removingPercentEncoding ?? ""
            rest = rest[..<at]
        }
        let parts = rest.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        guard parts.count >= 2, !parts[0].isEmpty, let name = parts.last, !name.isEmpty else { return nil }
        self.init(ecosystem: parts[0].lowercased(), namespace: parts.count > 2 ? parts[1..<(parts.count - 1)].joined(separator: "/") : nil,
                  name: name, version: version, fixedVersion: fixedVersion)
    }

    /// The purl type for a scanner's ecosystem name (`Debian` → `deb`, `PyPI` → `pypi`).
    static func purlType(_ ecosystem: String) -> String {
        let lower = ecosystem.lowercased()
        if lower.hasPrefix("debian") || lower.hasPrefix("ubuntu") || lower == "dpkg" || lower == "os" { return "deb" }
        if lower.hasPrefix("alpine") { return "apk" }
        switch lower {
        case "python-pkg", "python", "pip": return "pypi"
        case "node-pkg", "npm", "yarn": return "npm"
        case "go", "gomod", "gobinary", "go-module": return "golang"
        case "crates.io", "cargo": return "cargo"
        case "rubygems", "gemspec", "bundler": return "gem"
        default: return lower
        }
    }
}

// MARK: - Shared helpers of the parsers

extension FindingParser {
    /// A string field: nil when absent, empty or not a string.
    static func string(_ value: Any?) -> String? {
        guard let text = value as? String, !text.isEmpty else { return nil }
        return text
    }

    /// A number field (JSON number, or a number in a string as some scanners write EPSS).
    static func number(_ value: Any?) -> Double? {
        // A JSON `true` is an NSNumber too (objCType "c"); 0 and 1 also cast to Bool, so ask the type.
        if let number = value as? NSNumber, String(cString: number.objCType) != "c" {
            return number.doubleValue.isFinite ? number.doubleValue : nil
        }
        if let text = value as? String, text.count <= 32, let number = Double(text), number.isFinite { return number }
        return nil
    }

    /// Follows keys through nested objects.
    static func path(_ object: [String: Any], _ keys: String...) -> Any? {
        var current: Any? = object
        for key in keys {
            guard let dictionary = current as? [String: Any] else { return nil }
            current = dictionary[key]
        }
        return current
    }

    /// A key field (resource, control, target, id): present, non-empty, at most `maxFieldLength`.
    static func key(_ value: String?, field: String, context: String) throws(FindingError) -> String {
        guard let value, !value.isEmpty else { throw FindingError("\(context): \(field): expected a non-empty string") }
        guard value.count <= maxFieldLength else {
            throw FindingError("\(context): \(field): longer than \(maxFieldLength) characters", exceedsLimit: true)
        }
        return value
    }

    /// An optional key field, refused when longer than `maxFieldLength`.
    static func optionalKey(_ value: String?, field: String, context: String) throws(FindingError) -> String? {
        guard let value else { return nil }
        return try key(value, field: field, context: context)
    }

    /// Free text (a title, an evidence locator): cut at `maxFieldLength` characters.
    static func clipped(_ text: String) -> String {
        text.count <= maxFieldLength ? text : String(text.prefix(maxFieldLength))
    }

    /// A time in ISO 8601, or a number since the epoch: milliseconds as OCSF says, or seconds as
    /// Prowler writes them (a number below 10^11 is read as seconds: milliseconds that small are
    /// in 1973); `now` when absent or unreadable.
    static func time(_ value: Any?, now: Date) -> Date {
        if let text = value as? String, let date = isoTime(text) { return min(date, now) }
        if let number = number(value), number > 0, number < 1e15 {
            return min(Date(timeIntervalSince1970: number < 1e11 ? number : number / 1000), now)
        }
        return now
    }

    /// ISO 8601 with any number of fractional digits (Go writes nanoseconds) or, as Python's
    /// `isoformat()` writes it, without a zone (read as UTC).
    static func isoTime(_ text: String) -> Date? {
        guard text.count <= 64 else { return nil }
        if let date = Timestamp.parse(text) { return date }
        var scalars = Array(text.unicodeScalars)
        if let dot = scalars.firstIndex(of: "."), dot > 10 {
            var end = dot + 1
            while end < scalars.count, ("0"..."9").contains(scalars[end]) { end += 1 }
            if end - dot - 1 > 3 { scalars.removeSubrange((dot + 4)..<end) }
        }
        var trimmed = String(String.UnicodeScalarView(scalars))
        if let date = Timestamp.parse(trimmed) { return date }
        if !trimmed.hasSuffix("Z"), !trimmed.dropFirst(19).contains("+"), !trimmed.dropFirst(19).contains("-") { trimmed += "Z" }
        return Timestamp.parse(trimmed)
    }

    /// A scanner's severity word (or SARIF level, OCSF severity) as Bulwark's.
    static func severity(_ text: String?) -> Severity {
        switch text?.lowercased() {
        case "critical", "fatal": .critical
        case "high", "error", "important": .high
        case "medium", "moderate", "warning": .medium
        case nil: .medium
        default: .low
        }
    }

    /// A message on one line, for errors that are logged.
    static func oneLine(_ text: String) -> String {
        String(TerminalText.oneLine(text).prefix(300))
    }

    /// Takes at most `maxFindings` items of a list field, refusing more.
    static func list(_ value: Any?, field: String) throws(FindingError) -> [[String: Any]] {
        guard let value else { return [] }
        guard let list = value as? [Any] else { throw FindingError("\(field): expected a list") }
        guard list.count <= maxFindings else {
            throw FindingError("\(field): \(list.count) entries; at most \(maxFindings) a document", exceedsLimit: true)
        }
        return list.compactMap { $0 as? [String: Any] }
    }
}
