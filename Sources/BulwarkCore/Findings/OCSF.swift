internal import Foundation

/// OCSF 1.x findings: Vulnerability Finding (2002), Compliance Finding (2003), Detection Finding
/// (2004), one object or a list. Prowler's `json-ocsf` output is a list of Detection Findings
/// whose `metadata.product.name` is Prowler; its source is then `prowler`.
extension FindingParser {
    static let ocsfClasses: Set<Int> = [2002, 2003, 2004]

    static func ocsf(_ json: Any, now: Date) throws(FindingError) -> [Finding] {
        let items: [[String: Any]]
        if let list = json as? [Any] {
            guard list.count <= maxFindings else {
                throw FindingError("the document holds \(list.count) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
            }
            items = try list.enumerated().map { (index, item) throws(FindingError) -> [String: Any] in
                guard let object = item as? [String: Any] else { throw FindingError("finding \(index): expected an object") }
                return object
            }
        } else if let object = json as? [String: Any] {
            items = [object]
        } else {
            throw FindingError("expected an OCSF finding or a list of them")
        }
        var result: [Finding] = []
        for (index, object) in items.enumerated() {
            let context = "finding \(index)"
            guard let classID = number(object["class_uid"]).map(Int.init), ocsfClasses.contains(classID) else {
                throw FindingError("\(context): class_uid: expected 2002 (Vulnerability Finding), 2003 (Compliance Finding) or 2004 (Detection Finding)")
            }
            result += try ocsfFinding(object, classID: classID, context: context, now: now)
            if result.count > maxFindings {
                throw FindingError("the document holds more than \(maxFindings) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
            }
        }
        return result
    }

    private static func ocsfFinding(_ object: [String: Any], classID: Int, context: String, now: Date) throws(FindingError) -> [Finding] {
        let info = object["finding_info"] as? [String: Any] ?? [:]
        let product = string(path(object, "metadata", "product", "name"))
        let source = product?.lowercased() == "prowler" ? "prowler" : "ocsf"
        let compliance = object["compliance"] as? [String: Any]
        let vulnerabilities = try list(object["vulnerabilities"], field: "\(context): vulnerabilities")
        let vulnerability = vulnerabilities.first.flatMap(ocsfVulnerability)
        // The control: the compliance control, the check (Prowler's event code), the advisory, the finding's type.
        let control = try key(string(compliance?["control"]) ?? string(path(object, "metadata", "event_code"))
                              ?? vulnerability?.id ?? (info["types"] as? [Any])?.first as? String ?? string(info["title"]),
                              field: "compliance.control, metadata.event_code, vulnerabilities[0].cve.uid or finding_info.types",
                              context: context)
        let first = time(info["first_seen_time_dt"] ?? info["first_seen_time"] ?? info["created_time_dt"] ?? info["created_time"]
                         ?? object["time_dt"] ?? object["time"], now: now)
        let statusCode = string(object["status_code"])?.uppercased()
        let statusID = number(object["status_id"]).map(Int.init)
        let complianceStatus = string(compliance?["status"])?.lowercased()
        // Resolved (4), or Suppressed (3: Prowler's muted findings): nothing to propose.
        let resolved = statusID == 4 || statusID == 3 || string(object["status"])?.lowercased() == "resolved" || statusCode == "PASS"
            || complianceStatus == "pass" || number(compliance?["status_id"]).map(Int.init) == 1
        let references = (path(object, "remediation", "references") as? [Any])?.compactMap { $0 as? String }
        let evidence = string(path(object, "unmapped", "related_url")) ?? string(info["src_url"]) ?? references?.first
        let evidences = try list(object["evidences"], field: "\(context): evidences")
        let address = string(path(object, "src_endpoint", "ip"))
            ?? evidences.lazy.compactMap { string(path($0, "src_endpoint", "ip")) }.first
        let target = string(path(object, "device", "hostname")) ?? string(path(object, "device", "name"))
        let severityText = string(object["severity"]) ?? number(object["severity_id"]).map { id -> String in
            switch Int(id) { case 5, 6: "critical"; case 4: "high"; case 3: "medium"; default: "low" }
        }
        let baseID = try optionalKey(string(info["uid"]), field: "finding_info.uid", context: context)
        var resources = try list(object["resources"], field: "\(context): resources")
        guard resources.count <= maxResourcesPerFinding else {
            throw FindingError("\(context): resources: \(resources.count) resources; at most \(maxResourcesPerFinding) a finding",
                               exceedsLimit: true)
        }
        if resources.isEmpty {
            // A vulnerability finding names its package; a detection its device.
            if let package = vulnerability?.package { resources = [["uid": package.purl]] }
            else if let target { resources = [["uid": target]] }
        }
        guard !resources.isEmpty else { throw FindingError("\(context): resources: expected at least one resource (or a device)") }
        return try resources.enumerated().map { (position, resource) throws(FindingError) -> Finding in
            let name = try key(string(resource["uid"]) ?? string(resource["name"]), field: "resources[\(position)].uid", context: context)
            let id = baseID.map { resources.count == 1 ? $0 : "\($0)#\(position)" }
            return Finding(resource: name, target: target, control: control, firstObservedAt: first,
                           title: string(info["title"]).map(clipped), id: id, source: source, severity: severity(severityText),
                           evidence: evidence.map(clipped), resolved: resolved, address: try optionalKey(address, field: "src_endpoint.ip", context: context),
                           vulnerability: vulnerability)
        }
    }

    /// OCSF `vulnerabilities[]`: `cve.uid`, `cve.cvss[].base_score`, `cve.epss.score`,
    /// `affected_packages[]` (`name`, `version`, `purl`, `fixed_in_version`), `is_exploit_available`.
    private static func ocsfVulnerability(_ object: [String: Any]) -> Vulnerability? {
        let cve = object["cve"] as? [String: Any]
        guard let id = string(cve?["uid"]) ?? string(path(object, "advisory", "uid")) ?? string(object["title"]) else { return nil }
        let cvss = (cve?["cvss"] as? [[String: Any]])?.compactMap { number($0["base_score"]) }.max()
        let package = (object["affected_packages"] as? [[String: Any]])?.first.flatMap { entry -> PackageCoordinate? in
            let fixed = string(entry["fixed_in_version"]) ?? string(entry["remediation"])
            if let purl = string(entry["purl"]), let coordinate = PackageCoordinate(purl: purl, fixedVersion: fixed) { return coordinate }
            guard let name = string(entry["name"]) else { return nil }
            return PackageCoordinate(ecosystem: string(entry["package_manager"]) ?? "", name: name, version: string(entry["version"]) ?? "",
                                     fixedVersion: fixed)
        }
        let exploited = object["is_exploit_available"] as? Bool == true || object["is_exploited"] as? Bool == true
        return Vulnerability(id: id, package: package, knownExploited: exploited,
                             epss: number(path(cve ?? [:], "epss", "score")), cvss: cvss)
    }
}
