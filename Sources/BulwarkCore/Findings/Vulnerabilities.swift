internal import Foundation

/// Vulnerability scanners: OSV (osv-scanner's output, or OSV records), Trivy's and Grype's JSON
/// reports. Each finding is about a package, named by its package URL
/// (`pkg:deb/debian/openssh-server@1:9.2p1-2`), with the advisory as the control and the fixed
/// version, when there is one, in `vulnerability.package.fixedVersion`.
extension FindingParser {
    /// A CVSS-like score as a severity.
    static func severity(score: Double?) -> Severity? {
        guard let score else { return nil }
        return score >= 9 ? .critical : score >= 7 ? .high : score >= 4 ? .medium : .low
    }

    // MARK: - OSV

    static func osv(_ json: Any, now: Date) throws(FindingError) -> [Finding] {
        if let object = json as? [String: Any], object["results"] != nil {
            var result: [Finding] = []
            for (index, entry) in try list(object["results"], field: "results").enumerated() {
                let sourcePath = string(path(entry, "source", "path"))
                for package in try list(entry["packages"], field: "results[\(index)].packages") {
                    let info = package["package"] as? [String: Any] ?? [:]
                    let groups = try list(package["groups"], field: "results[\(index)].packages[].groups")
                    for vulnerability in try list(package["vulnerabilities"], field: "results[\(index)].packages[].vulnerabilities") {
                        let group = groups.first { (($0["ids"] as? [Any]) ?? []).contains { ($0 as? String) == string(vulnerability["id"]) } }
                        result.append(try osvFinding(vulnerability, package: info, maxSeverity: number(group?["max_severity"]),
                                                     evidencePath: sourcePath, context: "results[\(index)]", now: now))
                        if result.count > maxFindings {
                            throw FindingError("the document holds more than \(maxFindings) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
                        }
                    }
                }
            }
            return result
        }
        let records: [[String: Any]]
        if let list = json as? [Any] {
            guard list.count <= maxFindings else {
                throw FindingError("the document holds \(list.count) records; at most \(maxFindings) a request", exceedsLimit: true)
            }
            records = list.compactMap { $0 as? [String: Any] }
        } else if let object = json as? [String: Any] {
            records = [object]
        } else {
            throw FindingError("expected OSV records or osv-scanner output")
        }
        var result: [Finding] = []
        for (index, record) in records.enumerated() {
            let affected = try list(record["affected"], field: "[\(index)].affected")
            guard affected.count <= maxResourcesPerFinding else {
                throw FindingError("[\(index)].affected: \(affected.count) packages; at most \(maxResourcesPerFinding)", exceedsLimit: true)
            }
            for entry in affected {
                result.append(try osvFinding(record, package: entry["package"] as? [String: Any] ?? [:], maxSeverity: nil, evidencePath: nil,
                                             context: "[\(index)]", now: now))
            }
            if result.count > maxFindings {
                throw FindingError("the document holds more than \(maxFindings) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
            }
        }
        return result
    }

    private static func osvFinding(_ record: [String: Any], package info: [String: Any], maxSeverity: Double?, evidencePath: String?,
                                   context: String, now: Date) throws(FindingError) -> Finding {
        let id = try key(string(record["id"]), field: "id", context: context)
        let name = try key(string(info["name"]), field: "package.name", context: context)
        let ecosystem = string(info["ecosystem"]) ?? ""
        let installed = string(info["version"]) ?? ""
        // The first `fixed` event of this package's ranges.
        var fixed: String?
        for affected in (record["affected"] as? [[String: Any]] ?? []).prefix(maxResourcesPerFinding)
        where string(path(affected, "package", "name")) == name {
            for range in (affected["ranges"] as? [[String: Any]] ?? []).prefix(100) {
                for event in (range["events"] as? [[String: Any]] ?? []).prefix(100) {
                    if fixed == nil, let version = string(event["fixed"]) { fixed = version }
                }
            }
        }
        var coordinate = string(info["purl"]).flatMap { PackageCoordinate(purl: $0, fixedVersion: fixed) }
            ?? PackageCoordinate(ecosystem: PackageCoordinate.purlType(ecosystem),
                                 namespace: ecosystem.lowercased().hasPrefix("debian") ? "debian" : nil,
                                 name: name, version: installed, fixedVersion: fixed)
        if coordinate.version.isEmpty { coordinate.version = installed }
        let aliases = ((record["aliases"] as? [Any]) ?? []).prefix(50).compactMap { $0 as? String }
        let databaseSeverity = string(path(record, "database_specific", "severity"))
        let level = severity(score: maxSeverity) ?? databaseSeverity.map { severity($0) } ?? .medium
        let references = (record["references"] as? [[String: Any]] ?? []).prefix(50)
        let evidence = references.first { string($0["type"]) == "ADVISORY" }.flatMap { string($0["url"]) }
            ?? references.first.flatMap { string($0["url"]) } ?? "https://osv.dev/vulnerability/\(id)"
        let resource = try key(coordinate.purl, field: "package", context: context)
        return Finding(resource: resource, control: id, firstObservedAt: now, title: clipped(string(record["summary"]) ?? id),
                       id: AuditID.stable(["osv", id, resource, evidencePath ?? ""].joined(separator: "\u{1}")), source: "osv",
                       severity: level, evidence: clipped(evidence), resolved: false,
                       vulnerability: Vulnerability(id: id, aliases: aliases, package: coordinate, cvss: maxSeverity))
    }

    // MARK: - Trivy

    static func trivy(_ json: Any, now: Date) throws(FindingError) -> [Finding] {
        guard let report = json as? [String: Any] else { throw FindingError("expected a Trivy report object") }
        let created = time(report["CreatedAt"], now: now)
        let artifact = string(report["ArtifactName"])
        let distro = string(path(report, "Metadata", "OS", "Family"))
        var result: [Finding] = []
        for (index, entry) in try list(report["Results"], field: "Results").enumerated() {
            let context = "Results[\(index)]"
            let target = string(entry["Target"]) ?? artifact ?? "unknown"
            let type = string(entry["Type"]) ?? ""
            for (position, item) in try list(entry["Vulnerabilities"], field: "\(context).Vulnerabilities").enumerated() {
                let itemContext = "\(context).Vulnerabilities[\(position)]"
                let id = try key(string(item["VulnerabilityID"]), field: "VulnerabilityID", context: itemContext)
                let name = try key(string(item["PkgName"]), field: "PkgName", context: itemContext)
                let installed = string(item["InstalledVersion"]) ?? ""
                // Trivy lists several fixed versions (one per branch) comma-separated: the first fixes this one.
                let fixed = string(item["FixedVersion"])?.split(separator: ",").first.map { $0.trimmingCharacters(in: .whitespaces) }
                let coordinate = string(path(item, "PkgIdentifier", "PURL")).flatMap { PackageCoordinate(purl: $0, fixedVersion: fixed) }
                    ?? PackageCoordinate(ecosystem: PackageCoordinate.purlType(type), namespace: type == "debian" ? "debian" : distro,
                                         name: name, version: installed, fixedVersion: fixed)
                let scores = ((item["CVSS"] as? [String: Any]) ?? [:]).values.compactMap { ($0 as? [String: Any]).flatMap { number($0["V3Score"]) ?? number($0["V2Score"]) } }
                let resource = try key(coordinate.purl, field: "PkgIdentifier.PURL", context: itemContext)
                result.append(Finding(resource: resource, target: nil, control: id,
                                      firstObservedAt: created, title: clipped(string(item["Title"]) ?? id),
                                      id: AuditID.stable(["trivy", target, id, resource].joined(separator: "\u{1}")), source: "trivy",
                                      severity: severity(string(item["Severity"])),
                                      evidence: string(item["PrimaryURL"]).map(clipped), resolved: false,
                                      vulnerability: Vulnerability(id: id, package: coordinate, epss: nil, cvss: scores.max())))
                if result.count > maxFindings {
                    throw FindingError("the document holds more than \(maxFindings) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
                }
            }
            for (position, item) in try list(entry["Misconfigurations"], field: "\(context).Misconfigurations").enumerated() {
                let itemContext = "\(context).Misconfigurations[\(position)]"
                let id = try key(string(item["ID"]) ?? string(item["AVDID"]), field: "ID", context: itemContext)
                let resource = try key(target, field: "Target", context: context)
                result.append(Finding(resource: resource, control: id, firstObservedAt: created, title: string(item["Title"]).map(clipped),
                                      id: AuditID.stable(["trivy", target, id].joined(separator: "\u{1}")), source: "trivy",
                                      severity: severity(string(item["Severity"])), evidence: string(item["PrimaryURL"]).map(clipped),
                                      resolved: string(item["Status"])?.uppercased() == "PASS"))
                if result.count > maxFindings {
                    throw FindingError("the document holds more than \(maxFindings) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
                }
            }
        }
        return result
    }

    // MARK: - Grype

    static func grype(_ json: Any, now: Date) throws(FindingError) -> [Finding] {
        guard let report = json as? [String: Any] else { throw FindingError("expected a Grype report object") }
        let scanned = time(path(report, "descriptor", "timestamp"), now: now)
        let input = string(path(report, "source", "target", "userInput")) ?? string(path(report, "source", "target")) ?? ""
        var result: [Finding] = []
        for (index, match) in try list(report["matches"], field: "matches").enumerated() {
            let context = "matches[\(index)]"
            let vulnerability = match["vulnerability"] as? [String: Any] ?? [:]
            let artifact = match["artifact"] as? [String: Any] ?? [:]
            let id = try key(string(vulnerability["id"]), field: "vulnerability.id", context: context)
            let name = try key(string(artifact["name"]), field: "artifact.name", context: context)
            let fixed = (path(vulnerability, "fix", "versions") as? [Any])?.first as? String
            let coordinate = string(artifact["purl"]).flatMap { PackageCoordinate(purl: $0, fixedVersion: fixed) }
                ?? PackageCoordinate(ecosystem: PackageCoordinate.purlType(string(artifact["type"]) ?? ""), name: name,
                                     version: string(artifact["version"]) ?? "", fixedVersion: fixed)
            let related = (match["relatedVulnerabilities"] as? [[String: Any]] ?? []).prefix(20)
            let aliases = related.compactMap { string($0["id"]) }.filter { $0 != id }
            var scores: [Double] = []
            for entry in [vulnerability] + related {
                for cvss in ((entry["cvss"] as? [[String: Any]]) ?? []).prefix(20) {
                    if let score = number(path(cvss, "metrics", "baseScore")) { scores.append(score) }
                }
            }
            let epss = ((vulnerability["epss"] as? [[String: Any]]) ?? []).prefix(20).compactMap { number($0["epss"]) }.max()
            let exploited = !(((vulnerability["knownExploited"] as? [Any]) ?? []).isEmpty)
            let resource = try key(coordinate.purl, field: "artifact.purl", context: context)
            let urls = (vulnerability["urls"] as? [Any])?.compactMap { $0 as? String }
            result.append(Finding(resource: resource, control: id, firstObservedAt: scanned, title: "\(id) in \(name)",
                                  id: AuditID.stable(["grype", input, id, resource].joined(separator: "\u{1}")), source: "grype",
                                  severity: severity(string(vulnerability["severity"])),
                                  evidence: (string(vulnerability["dataSource"]) ?? urls?.first).map(clipped), resolved: false,
                                  vulnerability: Vulnerability(id: id, aliases: aliases, package: coordinate, knownExploited: exploited,
                                                               epss: epss, cvss: scores.max())))
        }
        return result
    }
}
