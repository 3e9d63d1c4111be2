@testable import BulwarkCore
import Foundation
import Testing

/// Each scanner format, read from documents as the tools write them (Tests/Fixtures/findings,
/// built from Prowler 5.46's and garak 0.17's writers and the published OCSF 1.3, SARIF 2.1.0,
/// OSV, Trivy and Grype schemas), keeps the finding's id, source, control, resource, severity,
/// first-seen time and evidence.
@Suite struct FindingFormatsTests {
    static let now = Timestamp.parse("2026-12-01T00:00:00Z")!

    static func fixture(_ name: String) throws -> [UInt8] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/findings/\(name)")
        return Array(try Data(contentsOf: url))
    }

    static func parse(_ name: String, contentType: String? = nil) throws -> (FindingFormat, [Finding]) {
        let document = try FindingParser.document(try fixture(name), contentType: contentType, now: now)
        return (document.format, document.findings)
    }

    @Test func prowlerOCSFFailIsAFindingAndPassIsResolved() throws {
        let (format, findings) = try Self.parse("prowler-ocsf.json")
        #expect(format == .ocsf)
        #expect(findings.count == 2)
        let open = try #require(findings.first { !$0.resolved })
        #expect(open.source == "prowler")
        #expect(open.control == "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22")
        #expect(open.resource == "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0a1b2c3d4e5f60718")
        #expect(open.id.hasPrefix("prowler-aws-ec2_securitygroup"))
        #expect(open.severity == .high)
        // Prowler writes created_time in seconds, not OCSF's milliseconds.
        #expect(open.firstObservedAt == Date(timeIntervalSince1970: 1_764_576_000))
        #expect(open.evidence == "https://docs.aws.amazon.com/vpc/latest/userguide/VPC_SecurityGroups.html")
        let passed = try #require(findings.first { $0.resolved })
        #expect(passed.control == "s3_bucket_default_encryption")
    }

    @Test func ocsfDetectionCarriesTheAttackersAddressAndDevice() throws {
        let (format, findings) = try Self.parse("ocsf-detection-2004.json")
        #expect(format == .ocsf)
        let finding = try #require(findings.first)
        #expect(finding.source == "ocsf" && finding.control == "5712" && finding.target == "edge-1" && finding.resource == "edge-1")
        #expect(finding.address == "198.51.100.23")
        #expect(finding.firstObservedAt == Date(timeIntervalSince1970: 1_764_579_700))
        #expect(finding.evidence == "https://wazuh.example.com/app/threat-hunting#/alerts/5712")
        #expect(finding.id == "wazuh-5712-edge-1-1764580000")
    }

    @Test func ocsfComplianceUsesTheControl() throws {
        let (_, findings) = try Self.parse("ocsf-compliance-2003.json")
        let finding = try #require(findings.first)
        #expect(finding.control == "CIS-5.1.20" && finding.severity == .critical && !finding.resolved)
        #expect(finding.resource == "SSHDConfig/cis-5.1.20-permit-root-login" && finding.target == "web-1")
        #expect(finding.firstObservedAt == Timestamp.parse("2025-12-01T09:00:00Z"))
    }

    @Test func ocsfVulnerabilityCarriesPackageEPSSAndCVSS() throws {
        let (_, findings) = try Self.parse("ocsf-vulnerability-2002.json")
        let finding = try #require(findings.first)
        let vulnerability = try #require(finding.vulnerability)
        #expect(finding.control == "CVE-2024-6387" && vulnerability.cve == "CVE-2024-6387")
        #expect(vulnerability.knownExploited && vulnerability.epss == 0.58 && vulnerability.cvss == 8.1)
        #expect(vulnerability.package?.name == "openssh-server" && vulnerability.package?.fixedVersion == "1:9.2p1-2+deb12u3")
        #expect(vulnerability.package?.version == "1:9.2p1-2+deb12u2")
    }

    @Test func asffInspectorKeepsTheVulnerablePackage() throws {
        let (format, findings) = try Self.parse("asff-inspector.json")
        #expect(format == .asff)
        let finding = try #require(findings.first)
        #expect(finding.source == "asff" && finding.severity == .critical && finding.control == "AWSInspector")
        #expect(finding.id == "arn:aws:inspector2:eu-west-1:123456789012:finding/7d3e9a1f2b4c5d6e7f8091a2b3c4d5e6")
        #expect(finding.evidence == "https://security-tracker.debian.org/tracker/CVE-2024-6387")
        let package = try #require(finding.vulnerability?.package)
        #expect(package.name == "openssh-server" && package.version == "1:9.2p1-2+deb12u2" && package.fixedVersion == "1:9.2p1-2+deb12u3")
        #expect(finding.vulnerability?.knownExploited == true && finding.vulnerability?.epss == 0.58)
    }

    @Test func trivySARIFNamesThePackageAsAPurl() throws {
        let (format, findings) = try Self.parse("trivy.sarif")
        #expect(format == .sarif)
        #expect(findings.count == 2)
        let server = try #require(findings.first { $0.control == "CVE-2024-6387" })
        #expect(server.source == "sarif:trivy" && server.severity == .high)
        // The SARIF does not say which package manager: a generic purl.
        #expect(server.resource == "pkg:generic/openssh-server@1%3A9.2p1-2%2Bdeb12u2")
        #expect(server.vulnerability?.package?.fixedVersion == "1:9.2p1-2+deb12u3")
        #expect(server.evidence == "https://avd.aquasec.com/nvd/cve-2024-6387")
        #expect(findings.first { $0.control == "CVE-2023-48795" }?.severity == .medium)
    }

    @Test func semgrepSARIFIsAboutAFileAndLine() throws {
        let (format, findings) = try Self.parse("semgrep.sarif", contentType: "application/sarif+json; charset=utf-8")
        #expect(format == .sarif)
        let finding = try #require(findings.first)
        #expect(finding.source == "sarif:semgreposs" && finding.resource == "app/db.py" && finding.severity == .medium)
        #expect(finding.firstObservedAt == Timestamp.parse("2025-12-01T11:00:00Z"))
        #expect(finding.vulnerability == nil)
        #expect(finding.evidence?.hasPrefix("https://semgrep.dev/r/") == true)
    }

    @Test func garakEvalLinesBecomeFindingsAboutTheModel() throws {
        let (format, findings) = try Self.parse("garak.report.jsonl")
        #expect(format == .garak)
        #expect(findings.count == 3)
        let hijack = try #require(findings.first { $0.control == "promptinject.HijackHateHumans" })
        #expect(hijack.source == "garak" && hijack.resource == "openai.OpenAICompatible:gpt-4o-mini-route")
        #expect(hijack.severity == .high && !hijack.resolved)
        #expect(hijack.title?.contains("59 of 100") == true)
        #expect(hijack.evidence?.contains("6f1d2c3b-4a5e-4f60-8a71-9b8c7d6e5f40") == true)
        #expect(hijack.firstObservedAt == Timestamp.parse("2025-12-01T12:00:00.123Z"))
        let dan = findings.filter { $0.control == "dan.Dan_11_0" }
        #expect(dan.count == 2 && dan.contains { $0.resolved } && dan.contains { !$0.resolved && $0.severity == .medium })
        // The same document by content type.
        let typed = try FindingParser.document(try Self.fixture("garak.report.jsonl"), contentType: "application/x-ndjson", now: Self.now)
        #expect(typed.findings.map(\.id) == findings.map(\.id))
    }

    @Test func osvScannerOutputGivesFixedVersions() throws {
        let (format, findings) = try Self.parse("osv-scanner.json")
        #expect(format == .osv)
        let debian = try #require(findings.first { $0.control == "DSA-5724-1" })
        #expect(debian.resource == "pkg:deb/debian/openssh-server@1%3A9.2p1-2%2Bdeb12u2")
        #expect(debian.vulnerability?.package?.fixedVersion == "1:9.2p1-2+deb12u3" && debian.severity == .high)
        #expect(debian.evidence == "https://www.debian.org/security/2024/dsa-5724")
        let python = try #require(findings.first { $0.control == "GHSA-h5c8-rqwp-cp95" })
        #expect(python.vulnerability?.cve == "CVE-2024-22195" && python.resource == "pkg:pypi/jinja2@3.1.2" && python.severity == .medium)
    }

    @Test func trivyJSONReadsPurlAndFixedVersion() throws {
        let (format, findings) = try Self.parse("trivy.json")
        #expect(format == .trivy)
        #expect(findings.count == 2)
        let server = try #require(findings.first { $0.control == "CVE-2024-6387" })
        let package = try #require(server.vulnerability?.package)
        #expect(package.ecosystem == "deb" && package.namespace == "debian" && package.name == "openssh-server")
        #expect(package.version == "1:9.2p1-2+deb12u2" && package.fixedVersion == "1:9.2p1-2+deb12u3")
        #expect(server.resource == "pkg:deb/debian/openssh-server@1%3A9.2p1-2%2Bdeb12u2")
        #expect(server.vulnerability?.cvss == 8.1 && server.severity == .high)
        // Nanosecond timestamps (Go) are read to the millisecond.
        #expect(abs(server.firstObservedAt.timeIntervalSince(Timestamp.parse("2025-12-01T13:00:00.412Z")!)) < 0.001)
        #expect(findings.first { $0.control == "CVE-2023-51385" }?.vulnerability?.package?.fixedVersion == nil)
    }

    @Test func grypeJSONReadsEPSSAndRelatedCVSS() throws {
        let (format, findings) = try Self.parse("grype.json")
        #expect(format == .grype)
        let finding = try #require(findings.first)
        #expect(finding.source == "grype" && finding.control == "CVE-2024-6387" && finding.severity == .high)
        #expect(finding.vulnerability?.epss == 0.58231 && finding.vulnerability?.cvss == 8.1)
        #expect(finding.vulnerability?.package?.purl == "pkg:deb/debian/openssh-server@1%3A9.2p1-2%2Bdeb12u2")
        #expect(finding.vulnerability?.package?.fixedVersion == "1:9.2p1-2+deb12u3")
        #expect(finding.evidence == "https://security-tracker.debian.org/tracker/CVE-2024-6387")
    }

    @Test func everyFixtureIsDetectedByShapeAlone() throws {
        let expected: [String: FindingFormat] = [
            "prowler-ocsf.json": .ocsf, "ocsf-detection-2004.json": .ocsf, "ocsf-compliance-2003.json": .ocsf,
            "ocsf-vulnerability-2002.json": .ocsf, "asff-inspector.json": .asff, "trivy.sarif": .sarif, "semgrep.sarif": .sarif,
            "garak.report.jsonl": .garak, "osv-scanner.json": .osv, "trivy.json": .trivy, "grype.json": .grype,
        ]
        for (name, format) in expected {
            #expect(try Self.parse(name).0 == format, "\(name)")
        }
    }

    /// A file written with a UTF-8 byte-order mark, or with blank lines before its first
    /// value, is read as the same document without them, in every format (review: the format
    /// was told by the first byte).
    @Test func aByteOrderMarkAndLeadingBlanksDoNotChangeTheFormat() throws {
        for (name, format) in ["garak.report.jsonl": FindingFormat.garak, "trivy.json": .trivy, "semgrep.sarif": .sarif, "asff-inspector.json": .asff] {
            let plain = try FindingParser.document(try Self.fixture(name), now: Self.now)
            let marked = try FindingParser.document([0xEF, 0xBB, 0xBF] + Array(" \r\n\t".utf8) + (try Self.fixture(name)), now: Self.now)
            #expect(plain.format == format && marked.format == format, "\(name)")
            #expect(marked.findings == plain.findings, "\(name)")
        }
        for (text, kind) in [("null", "null"), ("\"hello\"", "a string"), ("true", "a boolean"), ("-4", "a number")] {
            #expect(throws: FindingError.self, "\(text)") { try FindingParser.parse(Array(("\u{FEFF}\n  " + text).utf8), now: Self.now) }
            do {
                _ = try FindingParser.parse(Array(("\u{FEFF}\n  " + text).utf8), now: Self.now)
            } catch {
                #expect(error.description.contains("the document is \(kind), not an object or a list"), "\(text): \(error.description)")
            }
        }
    }

    // MARK: - Priority

    @Test func priorityIsSeverityTimesExposureTimesExploitability() {
        let base = Finding(resource: "r", control: "c", firstObservedAt: Self.now, severity: .high)
        #expect(FindingPriority(base, exposure: 2).score == 6 && FindingPriority(base, exposure: 2).priority == .p3)
        var exploited = base
        exploited.vulnerability = Vulnerability(id: "CVE-1", knownExploited: true)
        #expect(FindingPriority(exploited, exposure: 3).score == 27 && FindingPriority(exploited, exposure: 3).priority == .p1)
        var likely = base
        likely.vulnerability = Vulnerability(id: "CVE-2", epss: 0.4)
        #expect(FindingPriority(likely, exposure: 1).exploitability == 2 && FindingPriority(likely, exposure: 1).priority == .p3)
        let low = Finding(resource: "r", control: "c", firstObservedAt: Self.now, severity: .low)
        #expect(FindingPriority(low, exposure: 1).priority == .p4)
        #expect(SLAPolicy().deadline(.p1, firstSeen: Self.now) == Self.now.addingTimeInterval(86_400))
        // Out-of-range scores from a document are dropped, not trusted.
        #expect(Vulnerability(id: "x", epss: 7, cvss: -1).epss == nil && Vulnerability(id: "x", cvss: .infinity).cvss == nil)
    }
}

/// Hostile documents in every format are refused in one bounded line, never accepted past a limit.
@Suite struct FindingFormatsHostileTests {
    func refusal(_ text: String, contentType: String? = nil) -> FindingError? {
        do {
            _ = try FindingParser.parse(Array(text.utf8), contentType: contentType, now: FindingFormatsTests.now)
            return nil
        } catch {
            return error
        }
    }

    @Test func tooManyFindingsAreRefusedInEveryFormat() {
        let sarifResults = (0...FindingParser.maxFindings).map { #"{"ruleId": "r\#($0)", "locations": [{"physicalLocation": {"artifactLocation": {"uri": "f"}}}]}"# }
        let sarif = #"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": ["# + sarifResults.joined(separator: ",") + "]}]}"
        let grype = #"{"descriptor": {"name": "grype"}, "matches": ["# + (0...FindingParser.maxFindings).map { _ in
            #"{"vulnerability": {"id": "CVE-1"}, "artifact": {"name": "a", "purl": "pkg:deb/debian/a@1"}}"# }.joined(separator: ",") + "]}"
        let garak = (0...FindingParser.maxFindings).map { #"{"entry_type": "eval", "probe": "p\#($0)", "detector": "d", "passed": 0, "total": 1}"# }
            .joined(separator: "\n")
        let ocsf = "[" + (0...FindingParser.maxFindings).map { #"{"class_uid": 2004, "metadata": {"event_code": "e\#($0)"}, "resources": [{"uid": "r"}]}"# }
            .joined(separator: ",") + "]"
        for document in [sarif, grype, garak, ocsf] {
            let error = refusal(document)
            #expect(error?.exceedsLimit == true, "\(error?.description ?? "accepted")")
            #expect(error?.description.contains("at most") == true)
        }
        // At the limit, accepted.
        let most = (0..<FindingParser.maxFindings).map { #"{"entry_type": "eval", "probe": "p\#($0)", "detector": "d", "passed": 0, "total": 1}"# }
        #expect(refusal(most.joined(separator: "\n")) == nil)
    }

    @Test func malformedDocumentsAreRefusedOnOneLine() {
        let cases: [(String, String?)] = [
            (#"{"version": "3.0", "runs": []}"#, "application/sarif+json"),
            (#"{"class_uid": 1001}"#, "application/vnd.ocsf+json"),
            (#"{"entry_type": "eval", "probe": "p", "detector": "d", "passed": 5, "total": 2}"# + "\nnot json", nil),
            (#"{"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"VulnerabilityID": "CVE-1"}]}]}"#, nil),
            (#"{"matches": [{"vulnerability": {"id": "x\#u{2028}y"}}], "descriptor": {}}"#, nil),
            (#"{"results": [{"packages": [{"package": {"name": ""}, "vulnerabilities": [{"id": "A"}]}]}]}"#, nil),
            ("{\"entry_type\": \"init\"}\n{\"entry_type\": \"completion\"}", nil),
        ]
        for (document, type) in cases {
            let error = refusal(document, contentType: type)
            #expect(error != nil, "accepted: \(document)")
            if let error {
                #expect(!error.description.contains("\n") && !error.description.unicodeScalars.contains("\u{2028}") && error.description.utf8.count <= 1024,
                        "\(error.description)")
            }
        }
    }

    @Test func overlongKeysAreRefusedAndTitlesClipped() {
        let long = String(repeating: "a", count: FindingParser.maxFieldLength + 1)
        #expect(refusal(#"{"descriptor": {}, "matches": [{"vulnerability": {"id": "\#(long)"}, "artifact": {"name": "a"}}]}"#)?.exceedsLimit == true)
        let titled = #"{"class_uid": 2004, "metadata": {"event_code": "e"}, "finding_info": {"title": "\#(long)\#(long)"}, "resources": [{"uid": "r"}]}"#
        let findings = try? FindingParser.parse(Array(titled.utf8), now: FindingFormatsTests.now)
        #expect(findings?.first?.title?.count == FindingParser.maxFieldLength)
    }

    @Test func timesAfterNowAreNotBelieved() throws {
        let future = #"{"class_uid": 2004, "metadata": {"event_code": "e"}, "finding_info": {"first_seen_time": 99999999999999}, "resources": [{"uid": "r"}]}"#
        let finding = try #require(try FindingParser.parse(Array(future.utf8), now: FindingFormatsTests.now).first)
        #expect(finding.firstObservedAt <= FindingFormatsTests.now)
    }
}
