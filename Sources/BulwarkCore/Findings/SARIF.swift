internal import Foundation

/// SARIF 2.1.0 (`{"version": "2.1.0", "runs": [{"tool": {"driver": {...}}, "results": [...]}]}`), as
/// code scanners, Trivy, Grype and semgrep write it. One finding per result and location; the
/// source is `sarif:<tool>`, the control the rule id, the severity the rule's `security-severity`
/// (a CVSS-like score) where present, else the result's level.
extension FindingParser {
    static let maxRuns = 100

    static func sarif(_ json: Any, now: Date) throws(FindingError) -> [Finding] {
        guard let document = json as? [String: Any] else { throw FindingError("expected a SARIF log object") }
        if let version = document["version"] as? String, !version.hasPrefix("2.1") {
            throw FindingError("SARIF version \(oneLine(String(version.prefix(20)))) is not supported; expected 2.1.0")
        }
        let runs = try list(document["runs"], field: "runs")
        guard runs.count <= maxRuns else { throw FindingError("runs: \(runs.count) runs; at most \(maxRuns)", exceedsLimit: true) }
        var result: [Finding] = []
        for (runIndex, run) in runs.enumerated() {
            let driver = path(run, "tool", "driver") as? [String: Any] ?? [:]
            let tool = string(driver["name"]) ?? "unknown"
            let source = "sarif:" + String(tool.lowercased().filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }.prefix(64))
            let rules = try list(driver["rules"], field: "runs[\(runIndex)].tool.driver.rules")
            var rulesByID: [String: [String: Any]] = [:]
            for rule in rules { if let id = string(rule["id"]) { rulesByID[id] = rule } }
            let started = (run["invocations"] as? [[String: Any]])?.first.flatMap { string($0["startTimeUtc"]) }
            for (index, entry) in try list(run["results"], field: "runs[\(runIndex)].results").enumerated() {
                let context = "runs[\(runIndex)].results[\(index)]"
                let ruleIndex = number(entry["ruleIndex"]).map(Int.init)
                let rule = string(entry["ruleId"]).flatMap { rulesByID[$0] }
                    ?? ruleIndex.flatMap { $0 >= 0 && $0 < rules.count ? rules[$0] : nil }
                let control = try key(string(entry["ruleId"]) ?? rule.flatMap { string($0["id"]) }, field: "ruleId", context: context)
                let score = number(path(rule ?? [:], "properties", "security-severity"))
                let level = string(entry["level"]) ?? string(path(rule ?? [:], "defaultConfiguration", "level"))
                let severity: Severity = score.map { $0 >= 9 ? .critical : $0 >= 7 ? .high : $0 >= 4 ? .medium : .low } ?? severity(level ?? "warning")
                let message = string(path(entry, "message", "text")) ?? ""
                let resolved = string(entry["kind"]) == "pass" || string(entry["baselineState"]) == "absent"
                    || !((entry["suppressions"] as? [Any])?.isEmpty ?? true)
                let first = time(path(entry, "provenance", "firstDetectionTimeUtc") ?? started, now: now)
                let fingerprint = string(entry["guid"]) ?? (entry["fingerprints"] as? [String: Any])?.sorted { $0.key < $1.key }.first.flatMap { string($0.value) }
                let package = trivyMessagePackage(message)
                var locations = try list(entry["locations"], field: "\(context).locations")
                guard locations.count <= maxResourcesPerFinding else {
                    throw FindingError("\(context).locations: \(locations.count) locations; at most \(maxResourcesPerFinding) a result", exceedsLimit: true)
                }
                if locations.isEmpty { locations = [[:]] }
                for (position, location) in locations.enumerated() {
                    let uri = string(path(location, "physicalLocation", "artifactLocation", "uri"))
                    let line = number(path(location, "physicalLocation", "region", "startLine")).map(Int.init)
                    let resource = try key(package?.purl ?? uri ?? string(path(location, "logicalLocations")) ?? tool, field: "locations[\(position)].physicalLocation.artifactLocation.uri",
                                           context: context)
                    let locator = uri.map { u in line.map { "\(u):\($0)" } ?? u }
                    let evidence = rule.flatMap { string($0["helpUri"]) } ?? locator
                    let id = fingerprint.map { locations.count == 1 ? $0 : "\($0)#\(position)" }
                        ?? AuditID.stable([source, control, resource, locator ?? ""].joined(separator: "\u{1}"))
                    let vulnerability = control.hasPrefix("CVE-") || control.hasPrefix("GHSA-") || package != nil
                        ? Vulnerability(id: control, package: package, cvss: score) : nil
                    result.append(Finding(resource: resource, control: control, firstObservedAt: first,
                                          title: (string(path(rule ?? [:], "shortDescription", "text")) ?? message.split(separator: "\n").first.map(String.init)).map(clipped),
                                          id: try key(id, field: "guid or fingerprints", context: context), source: source, severity: severity,
                                          evidence: evidence.map(clipped), resolved: resolved, vulnerability: vulnerability))
                    if result.count > maxFindings {
                        throw FindingError("the document holds more than \(maxFindings) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
                    }
                }
            }
        }
        return result
    }

    /// Trivy's SARIF message names the package: `Package: openssh-server\nInstalled Version: 1:9.2p1-2\n…\nFixed Version: …`.
    static func trivyMessagePackage(_ message: String) -> PackageCoordinate? {
        var fields: [String: String] = [:]
        for line in message.split(separator: "\n").prefix(20) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].trimmingCharacters(in: .whitespaces)] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let name = fields["Package"], !name.isEmpty, name.count <= 256, let installed = fields["Installed Version"] else { return nil }
        let fixed = fields["Fixed Version"].flatMap { $0.isEmpty ? nil : $0.split(separator: ",").first.map { $0.trimmingCharacters(in: .whitespaces) } }
        return PackageCoordinate(ecosystem: "generic", name: name, version: installed, fixedVersion: fixed)
    }
}
