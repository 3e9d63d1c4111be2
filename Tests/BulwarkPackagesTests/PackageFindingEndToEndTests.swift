import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

/// A vulnerability scanner's finding becomes a patch, through the real `bulwark` binary
/// (BULWARK_BIN), git and apt: Grype's report about `pkg:deb/debian/dummy@1.0` (fixed in 1.1) →
/// `bulwark ingest` → a `propose` FindingRule → a proposal commit on `bulwark/proposals/<id>`
/// that raises the DebianPackage resource's `minVersion` to the fixed version, with a passing
/// plan → `bulwark accept` → `bulwark apply` upgrades the package from a local flat apt
/// repository → the root's dpkg database says 1.1 → the audit record cites the finding →
/// `bulwark report` measures the MTTR from the scanner's first sighting.
@Suite(.serialized, .timeLimit(.minutes(20))) struct PackageFindingEndToEndTests {
    /// A patch rule for any Debian package a scanner reports with a fixed version.
    static let rule = """
        # A vulnerable Debian package: propose its fixed version as the resource's minimum.
        apiVersion: bulwark/v1
        kind: FindingRule
        metadata: {name: patch-debian-packages}
        spec:
          match: {resource: "pkg:deb/debian/*", severity: medium}
          action: propose
          change:
            resource: "DebianPackage/{{package}}"
            set: {minVersion: "{{fixedVersion}}"}

        """

    /// Grype's JSON report (`grype dir:ROOT -o json`), one match: `dummy` 1.0, fixed in 1.1.
    static func grypeReport(scannedAt: Date, root: String) -> String {
        """
        {
         "matches": [{
           "vulnerability": {"id": "CVE-2099-0001", "dataSource": "https://security-tracker.debian.org/tracker/CVE-2099-0001",
                             "namespace": "debian:distro:debian:12", "severity": "High",
                             "urls": ["https://security-tracker.debian.org/tracker/CVE-2099-0001"], "cvss": [], "epss": [],
                             "knownExploited": [], "fix": {"versions": ["1.1"], "state": "fixed"}, "advisories": []},
           "relatedVulnerabilities": [],
           "matchDetails": [{"type": "exact-direct-match", "matcher": "dpkg-matcher",
                             "searchedBy": {"distro": {"type": "debian", "version": "12"}, "package": {"name": "dummy", "version": "1.0"}},
                             "found": {"vulnerabilityID": "CVE-2099-0001", "versionConstraint": "< 1.1 (deb)"}}],
           "artifact": {"id": "9f1e2d3c4b5a6978", "name": "dummy", "version": "1.0", "type": "deb",
                        "locations": [{"path": "/var/lib/dpkg/status"}], "language": "", "licenses": [], "cpes": [],
                        "purl": "pkg:deb/debian/dummy@1.0?arch=all&distro=debian-12", "upstreams": [],
                        "metadataType": "dpkg-db-entry", "metadata": {"source": "", "installedSize": 8, "files": null}}
         }],
         "source": {"type": "directory", "target": "\(root)"},
         "distro": {"name": "debian", "version": "12", "idLike": []},
         "descriptor": {"name": "grype", "version": "0.84.0", "timestamp": "\(Timestamp.format(scannedAt))"}
        }
        """
    }

    @Test func aGrypeFindingBecomesAnAcceptedPatchVerifiedInTheDpkgDatabaseWithMTTRFromFirstSeen() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0"))
            try box.build(DummyPackage(name: "dummy", version: "1.1"))
            try box.publish()

            let state = base + "/state"
            // The manifest's own name is not the package's: the rule finds it by its subject.
            let manifest = """
                # The dummy service's package, kept at the last patched version.
                apiVersion: bulwark/v1
                kind: DebianPackage
                metadata: {name: dummy-floor}
                spec:
                  name: dummy
                  minVersion: "1.0"
                """
            let (origin, _) = try box.policyOrigin(
                in: base, files: ["desired-state/dummy.yaml": manifest, "finding-rules/patch.yaml": Self.rule],
                message: "dummy at 1.0 and the patch rule")
            let bulwark = try bulwarkExecutable()
            func command(_ arguments: String...) throws -> ProcessOutput {
                try run(bulwark, [arguments[0], "--repo", origin, "--state-dir", state] + arguments.dropFirst())
            }

            // Nothing to do yet: 1.0 meets the policy's minimum.
            let quiet = try command("apply")
            #expect(quiet.status == 0, "\(quiet.stdout) \(quiet.stderr)")
            #expect(try box.status().installed("dummy")?.version?.text == "1.0")

            // The scanner saw it two hours ago.
            let firstSeen = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 7200).rounded(.down))
            try write(base + "/grype.json", Self.grypeReport(scannedAt: firstSeen, root: box.root))
            let ingested = try command("ingest", base + "/grype.json", "--output", "json")
            #expect(ingested.status == 2, "\(ingested.stdout) \(ingested.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(ingested.stdout.utf8)) as? [String: Any], "\(ingested.stderr)")
            #expect(report["format"] as? String == "grype")
            let item = try #require((report["items"] as? [[String: Any]])?.first, "\(report)")
            let id = try #require(item["id"] as? String)
            #expect(item["outcome"] as? String == "proposed", "\(item)")
            #expect(item["rule"] as? String == "patch-debian-packages")
            let branch = try #require(item["branch"] as? String)
            #expect(branch == "bulwark/proposals/\(id)")

            // The proposal: the fixed version as the minimum, the rest of the file kept, a passing plan.
            let message = try git("--git-dir", origin, "log", "-1", "--format=%B", branch)
            #expect(message.contains("Vulnerability CVE-2099-0001 in pkg:deb/debian/dummy@1.0, fixed in 1.1"), "\(message)")
            #expect(message.contains("Change: desired-state/dummy.yaml: set minVersion = 1.1"), "\(message)")
            #expect(message.contains("Plan: passed"), "\(message)")
            #expect(message.contains("- sandbox DebianPackage/dummy-floor: version: 1.0 -> >= 1.1 (applied)"), "\(message)")
            #expect(message.contains("Bulwark-Finding: \(id)") && message.contains("Bulwark-Finding-Source: grype")
                    && message.contains("Bulwark-Proposal: proposed"), "\(message)")
            let diff = try git("--git-dir", origin, "diff", "main", branch, "--", "desired-state/dummy.yaml")
            #expect(diff.contains("-  minVersion: \"1.0\"") && diff.contains("+  minVersion: \"1.1\""), "\(diff)")
            #expect(try git("--git-dir", origin, "show", "\(branch):desired-state/dummy.yaml")
                .contains("# The dummy service's package, kept at the last patched version."))
            // Proposing changed nothing on the target.
            #expect(try box.status().installed("dummy")?.version?.text == "1.0")

            // A person accepts it; apply upgrades through apt and verifies from the dpkg database.
            let accepted = try command("accept", id, "--reviewed")
            #expect(accepted.status == 0, "\(accepted.stdout) \(accepted.stderr)")
            let apply = try command("apply")
            #expect(apply.status == 0, "\(apply.stdout) \(apply.stderr)")
            let installed = try #require(try box.status().installed("dummy"))
            #expect(installed.version?.text == "1.1")
            #expect(installed.state == "installed" && installed.flag == "ok")

            func trailer(_ key: String) throws -> [String] {
                try git("--git-dir", origin, "log", "--format=%(trailers:key=\(key),valueonly)", "bulwark/audit")
                    .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            }
            #expect(try trailer("Bulwark-Result") == ["verified"])
            #expect(try trailer("Bulwark-Finding") == [id])
            #expect(try trailer("Bulwark-Finding-First-Seen") == [Timestamp.format(firstSeen)])
            let record = try git("--git-dir", origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Note: dummy 1.0 → 1.1 from file:\(box.repository) ./"), "\(record)")

            // MTTR of the finding: from the scanner's first sighting, two hours ago, to the verified fix.
            let reported = try command("report", "--output", "json")
            #expect(reported.status == 0, "\(reported.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(reported.stdout.utf8)) as? [String: Any])
            let findings = try #require(json["findings"] as? [String: Any], "\(json)")
            #expect(findings["fixed"] as? Int == 1)
            let mttr = try #require((findings["mttr"] as? [String: Any])?["maxSeconds"] as? Double)
            #expect(mttr >= 7200 && mttr < 7200 + 3600, "\(mttr)")
            #expect((findings["bySource"] as? [String: Any])?["grype"] != nil)

            // The scanner reports it open again after the fix was verified (here its old scan): a fix
            // that did not hold as far as Bulwark can tell (`reopened`, exit 2); nothing more is proposed.
            let again = try command("ingest", base + "/grype.json", "--output", "json")
            let againItem = ((try? JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])?["items"] as? [[String: Any]])?.first
            #expect(again.status == 2 && againItem?["outcome"] as? String == "reopened", "\(again.stdout) \(again.stderr)")

            #expect(!(try trailer("Bulwark-Decision")).contains("refused"), "a tightening finding leaves no refusal")
            // A report that says "fixed in" an older version (a confused or hostile scanner) would
            // lower the floor: not proposed, no branch, the policy keeps 1.1, and the refusal is
            // recorded on the audit branch, once however often the scanner reports it.
            let lower = Self.grypeReport(scannedAt: firstSeen, root: box.root)
                .replacingOccurrences(of: "CVE-2099-0001", with: "CVE-2099-0002")
                .replacingOccurrences(of: "\"versions\": [\"1.1\"]", with: "\"versions\": [\"0.9\"]")
            try write(base + "/lower.json", lower)
            let lowered = try command("ingest", base + "/lower.json", "--output", "json")
            let loweredReport = try #require(try JSONSerialization.jsonObject(with: Data(lowered.stdout.utf8)) as? [String: Any], "\(lowered.stderr)")
            let loweredItem = try #require((loweredReport["items"] as? [[String: Any]])?.first, "\(loweredReport)")
            #expect(loweredItem["outcome"] as? String == "not-proposed", "\(loweredItem)")
            #expect((loweredItem["detail"] as? String)?.contains("would weaken DebianPackage/dummy-floor") == true, "\(loweredItem)")
            _ = try command("ingest", base + "/lower.json", "--output", "json")
            #expect(try trailer("Bulwark-Decision").filter { $0 == "refused" }.count == 1)
            let refusal = try git("--git-dir", origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(refusal.contains("Bulwark-Decision: refused") && refusal.contains("would weaken DebianPackage/dummy-floor")
                    && refusal.contains("Bulwark-Finding: "), "\(refusal)")
            let branches = try git("--git-dir", origin, "branch", "--list", "bulwark/proposals/*")
            #expect(branches.split(separator: "\n").count == 1, "\(branches)")
            #expect(try git("--git-dir", origin, "show", "main:desired-state/dummy.yaml").contains("minVersion: \"1.1\""))
            #expect(try MachineFingerprint.take() == machine, "the machine's dpkg database and apt state are untouched")
        }
    }
}
