@testable import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// OpenSCAP's XCCDF and ARF results as findings, read from documents the real scanner writes
/// here: each test runs `oscap-chroot` (openscap-scanner 1.3.7) with the SCAP Security Guide's
/// Debian 11 content (ssg-debian 0.1.65) on a small tree it lays out, so there is no fixture to
/// go stale. Hostile documents are built by hand.
@Suite struct XCCDFFindingsTests {
    static let content = "/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml"
    static let rule = FindingParser.xccdfRulePrefix

    /// A Debian 11 tree with sshd installed and root logins allowed, a world-readable shadow file
    /// and an empty password refused: scanned for five rules of the standard profile.
    static func scan(in dir: String) throws -> (results: [UInt8], arf: [UInt8], root: String, started: Date, ended: Date) {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/oscap-chroot"), "openscap-scanner is not installed: run scripts/setup")
        try #require(FileManager.default.fileExists(atPath: content), "ssg-debian is not installed: run scripts/setup")
        let root = dir + "/root"
        try write(root + "/etc/debian_version", "11.7\n")
        try write(root + "/etc/ssh/sshd_config", "PermitRootLogin yes\nPermitEmptyPasswords no\n")
        try write(root + "/etc/shadow", "root:*:19700:0:99999:7:::\n", mode: 0o644)
        try write(root + "/var/lib/dpkg/status",
                  "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2+deb12u7\nDescription: sshd\n\n")
        for table in ["cputable", "tupletable"] { try write(root + "/usr/share/dpkg/" + table, try read("/usr/share/dpkg/" + table)) }
        try FileManager.default.createDirectory(atPath: dir + "/apt.conf.d", withIntermediateDirectories: true)
        try write(dir + "/apt.conf", """
            Dir::Etc::parts "\(dir)/apt.conf.d";
            Dir::Cache "\(dir)/apt-cache-not-under-the-root";
            Dir::Cache::pkgcache "pkgcache.bin";
            Dir::Cache::srcpkgcache "srcpkgcache.bin";

            """)
        let rules = ["sshd_disable_root_login", "sshd_disable_empty_passwords", "file_permissions_etc_shadow", "partition_for_home",
                     "service_auditd_enabled"]
        let started = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let out = try run("/usr/bin/oscap-chroot", [root, "xccdf", "eval", "--profile", "xccdf_org.ssgproject.content_profile_standard"]
                          + rules.flatMap { ["--rule", rule + $0] }
                          + ["--results", dir + "/results.xml", "--results-arf", dir + "/arf.xml", content],
                          in: dir, environment: ["APT_CONFIG": dir + "/apt.conf"])
        let ended = Date().addingTimeInterval(1)
        try #require(out.status == 2, "oscap: \(out.status) \(out.stderr)")
        return (Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/results.xml"))),
                Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/arf.xml"))), root, started, ended)
    }

    @Test(.timeLimit(.minutes(20)))
    func resultsAndARFFromTheRealScannerBecomeFindings() async throws {
        try await withTemporaryDirectory { dir in
            let scan = try Self.scan(in: dir)
            let now = Date().addingTimeInterval(60)
            let document = try FindingParser.document(scan.results, now: now)
            #expect(document.format == .xccdf)
            let byRule = Dictionary(document.findings.map { ($0.control, $0) }, uniquingKeysWith: { a, _ in a })
            // fail → open finding; pass → resolved; notapplicable (auditd is not installed) and
            // the 350 notselected rules → no finding.
            #expect(Set(byRule.keys) == Set(["sshd_disable_root_login", "sshd_disable_empty_passwords", "file_permissions_etc_shadow",
                                             "partition_for_home"].map { Self.rule + $0 }))
            let root = try #require(byRule[Self.rule + "sshd_disable_root_login"])
            #expect(!root.resolved && root.severity == .medium && root.source == "openscap")
            #expect(root.title == "Disable SSH Root Login")
            #expect(root.resource == "chroot://" + scan.root.replacingOccurrences(of: "//", with: "/"))
            #expect(root.evidence == "xccdf_org.ssgproject.content_benchmark_DEBIAN-11 profile xccdf_org.ssgproject.content_profile_standard "
                    + "xccdf_org.open-scap_testresult_xccdf_org.ssgproject.content_profile_standard: fail")
            #expect(root.firstObservedAt >= scan.started && root.firstObservedAt <= scan.ended, "the rule-result's time")
            #expect(byRule[Self.rule + "sshd_disable_empty_passwords"]?.resolved == true)
            #expect(byRule[Self.rule + "file_permissions_etc_shadow"]?.resolved == false)
            #expect(byRule[Self.rule + "partition_for_home"]?.severity == .low)

            // The ARF of the same run says the same, by shape and by content type.
            let arf = try FindingParser.document(scan.arf, now: now)
            #expect(arf.format == .xccdf)
            #expect(Set(arf.findings.map(\.id)) == Set(document.findings.map(\.id)), "a finding's id is stable across both documents")
            #expect(Set(arf.findings.map { "\($0.control) \($0.resolved)" }) == Set(document.findings.map { "\($0.control) \($0.resolved)" }))
            #expect(try FindingParser.document(scan.arf, contentType: "application/xml; charset=utf-8", now: now).findings.count == 4)
            // The same finding from a later scan keeps its id (so a pass closes what a fail opened).
            #expect(root.id == AuditID.stable(["xccdf", root.resource, "xccdf_org.ssgproject.content_benchmark_DEBIAN-11",
                                               root.control].joined(separator: "\u{1}")))
        }
    }

    // MARK: - Hand-written documents

    static func testResult(_ ruleResults: String, prolog: String = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n") -> String {
        prolog + """
            <TestResult xmlns="http://checklists.nist.gov/xccdf/1.2" id="xccdf_t_testresult_1" start-time="2026-11-30T10:00:00+00:00" test-system="cpe:/a:redhat:openscap:1.3.7">
              <benchmark href="b.xml" id="xccdf_t_benchmark_B"/>
              <profile idref="xccdf_t_profile_P"/>
              <target>web-1</target>
            \(ruleResults)
            </TestResult>
            """
    }

    static func refusal(_ text: String) -> FindingError? {
        refusal(Array(text.utf8))
    }

    static func refusal(_ bytes: [UInt8]) -> FindingError? {
        do {
            _ = try FindingParser.document(bytes, now: FindingFormatsTests.now)
            return nil
        } catch {
            return error
        }
    }

    @Test func aPlainDocumentWithEscapesAndCDATAIsRead() throws {
        let text = Self.testResult("""
              <rule-result idref="xccdf_t_rule_a" time="2026-11-30T10:00:01+00:00" severity="high"><result>fail</result></rule-result>
              <rule-result idref="xccdf_t_rule_b" severity="low"><result><![CDATA[error]]></result></rule-result>
              <rule-result idref="xccdf_t_rule_c"><result>notchecked</result></rule-result>
            """).replacingOccurrences(of: "<target>web-1</target>", with: "<target>web-1 &amp; co</target>")
        let findings = try FindingParser.parse(Array(text.utf8), now: FindingFormatsTests.now)
        #expect(findings.map(\.control) == ["xccdf_t_rule_a", "xccdf_t_rule_b"])
        #expect(findings[0].severity == .high && findings[0].resource == "web-1 & co" && !findings[0].resolved)
        #expect(findings[0].firstObservedAt == Timestamp.parse("2026-11-30T10:00:01Z"))
        #expect(findings[1].firstObservedAt == Timestamp.parse("2026-11-30T10:00:00Z"), "the TestResult's start time")
        #expect(findings[1].evidence?.hasSuffix(": error") == true)
    }

    @Test func aDTDIsRefusedBeforeParsingWhateverItDeclares() {
        // Billion laughs: ten levels of ten entity references.
        var entities = "<!ENTITY lol0 \"lol\">"
        for level in 1...9 { entities += "<!ENTITY lol\(level) \"" + String(repeating: "&lol\(level - 1);", count: 10) + "\">" }
        let laughs = Self.testResult("<rule-result idref=\"r\"><result>&lol9;</result></rule-result>",
                                     prolog: "<?xml version=\"1.0\"?>\n<!DOCTYPE TestResult [\(entities)]>\n")
        #expect(Self.refusal(laughs)?.description.contains("declares a DTD (<!DOCTYPE)") == true)
        // An external entity that would read a file of this machine.
        let external = Self.testResult("<rule-result idref=\"r\"><result>fail</result></rule-result>",
                                       prolog: "<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n")
            .replacingOccurrences(of: "<target>web-1</target>", with: "<target>&xxe;</target>")
        let refused = Self.refusal(external)
        #expect(refused?.description.contains("DTD") == true)
        #expect(refused?.description.contains("root:") == false)
        // In any case, and as a lone entity declaration.
        #expect(Self.refusal(Self.testResult("", prolog: "<!doctype x>\n")) != nil)
        #expect(Self.refusal("<TestResult xmlns=\"http://checklists.nist.gov/xccdf/1.2\"><!ENTITY a \"b\"></TestResult>")?.description
            .contains("(<!ENTITY)") == true)
        // An undeclared entity is not expanded from anywhere: the document is not well formed.
        let undeclared = Self.testResult("<rule-result idref=\"r\"><result>fail</result></rule-result>")
            .replacingOccurrences(of: "<target>web-1</target>", with: "<target>&xxe;</target>")
        #expect(Self.refusal(undeclared)?.description.contains("not well-formed XML") == true)
    }

    @Test func onlyUTF8IsAccepted() {
        // The same DTD in UTF-16 would be invisible to a byte scan: refused for its encoding.
        let text = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><!DOCTYPE x [<!ENTITY a \"b\">]><TestResult/>"
        var utf16: [UInt8] = [0xFF, 0xFE]
        for unit in text.utf16 { utf16 += [UInt8(unit & 0xFF), UInt8(unit >> 8)] }
        #expect(Self.refusal(utf16)?.description.contains("not UTF-8") == true)
        #expect(Self.refusal(Array(text.utf16).flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })?.description.contains("not UTF-8") == true)
        let latin = Self.testResult("<rule-result idref=\"r\"><result>fail</result></rule-result>",
                                    prolog: "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n")
        #expect(Self.refusal(latin)?.description.contains("only UTF-8 is accepted") == true)
        // UTF-8 with a byte-order mark, and declared in capitals, is read.
        let bom = [0xEF, 0xBB, 0xBF] + Array(Self.testResult("<rule-result idref=\"r\"><result>fail</result></rule-result>",
                                                             prolog: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n").utf8)
        #expect(Self.refusal(bom) == nil)
    }

    @Test func xmlInAnEncodingWithoutZeroBytesIsRefusedWhateverTheContentTypeSays() {
        // `<?xml version="1.0" encoding="IBM037"?><!DOCTYPE x [<!ENTITY a "b">]><TestResult/>` in
        // EBCDIC (Python's cp037 codec): no zero byte, no ASCII `<?xml`, no ASCII `<!`, and libxml2
        // would detect the encoding itself and read the DTD.
        let ebcdic: [UInt8] = [
            0x4C, 0x6F, 0xA7, 0x94, 0x93, 0x40, 0xA5, 0x85, 0x99, 0xA2, 0x89, 0x96, 0x95, 0x7E, 0x7F, 0xF1, 0x4B, 0xF0, 0x7F, 0x40,
            0x85, 0x95, 0x83, 0x96, 0x84, 0x89, 0x95, 0x87, 0x7E, 0x7F, 0xC9, 0xC2, 0xD4, 0xF0, 0xF3, 0xF7, 0x7F, 0x6F, 0x6E, 0x4C,
            0x5A, 0xC4, 0xD6, 0xC3, 0xE3, 0xE8, 0xD7, 0xC5, 0x40, 0xA7, 0x40, 0xBA, 0x4C, 0x5A, 0xC5, 0xD5, 0xE3, 0xC9, 0xE3, 0xE8,
            0x40, 0x81, 0x40, 0x7F, 0x82, 0x7F, 0x6E, 0xBB, 0x6E, 0x4C, 0xE3, 0x85, 0xA2, 0xA3, 0xD9, 0x85, 0xA2, 0xA4, 0x93, 0xA3,
            0x61, 0x6E,
        ]
        for type in ["application/xml", "text/xml; charset=IBM037"] {
            #expect(throws: FindingError.self, "\(type)") {
                try FindingParser.document(ebcdic, contentType: type, now: FindingFormatsTests.now)
            }
        }
        // Text that is not XML at all, sent as XML, is refused as such; UTF-8 XML still goes through.
        #expect(throws: FindingError.self) { try FindingParser.document(Array("rule,result\nr,fail\n".utf8), contentType: "application/xml") }
        let plain = Self.testResult("<rule-result idref=\"r\"><result>fail</result></rule-result>")
        #expect((try? FindingParser.document(Array(plain.utf8), contentType: "application/xml", now: FindingFormatsTests.now))?.findings.count == 1)
    }

    /// A field's text kept up to the field bound however many pieces it comes in (elements of
    /// another namespace inside it split it): the count is kept, not taken again per piece,
    /// which made a 2 MB document of that shape take 17 s.
    @Test func aFieldInManyPiecesIsClippedAtTheBound() throws {
        let pieces = String(repeating: "ab<x:i xmlns:x=\"urn:other\"/>", count: 3_000)
        let text = Self.testResult("<rule-result idref=\"r\"><result>fail</result></rule-result>")
            .replacingOccurrences(of: "<target>web-1</target>", with: "<target>" + pieces + "</target>")
        let findings = try FindingParser.parse(Array(text.utf8), now: FindingFormatsTests.now)
        #expect(findings.first?.resource == String(repeating: "ab", count: FindingParser.maxFieldLength / 2))
    }

    @Test func limitsAreHeld() {
        // Too large to read at all (and the larger XML bound is not a larger JSON bound).
        let huge = Array(Self.testResult("<rule-result idref=\"r\"><result>fail</result></rule-result><!--"
                                         + String(repeating: "x", count: FindingParser.maxXMLSize) + "-->").utf8)
        #expect(Self.refusal(huge)?.exceedsLimit == true)
        let json = Array(("[" + String(repeating: "{\"resource\": \"r\", \"control\": \"c\"},", count: 40_000) + "{}]").utf8)
        #expect(json.count > FindingParser.maxSize && json.count < FindingParser.maxXMLSize)
        #expect(Self.refusal(json)?.description.contains("larger than \(FindingParser.maxSize) bytes") == true)
        // Nested deeper than the bound.
        let deep = String(repeating: "<a>", count: 5_000) + String(repeating: "</a>", count: 5_000)
        #expect(Self.refusal(Self.testResult(deep)) != nil)
        // More findings than a document may hold; as many as it may hold are read.
        func failing(_ count: Int) -> String {
            (0..<count).map { "<rule-result idref=\"xccdf_t_rule_\($0)\"><result>fail</result></rule-result>" }.joined(separator: "\n")
        }
        #expect(Self.refusal(Self.testResult(failing(FindingParser.maxFindings + 1)))?.exceedsLimit == true)
        #expect(Self.refusal(Self.testResult(failing(FindingParser.maxFindings))) == nil)
        // A rule id past the field bound.
        let long = "<rule-result idref=\"" + String(repeating: "r", count: FindingParser.maxFieldLength + 1) + "\"><result>fail</result></rule-result>"
        #expect(Self.refusal(Self.testResult(long))?.exceedsLimit == true)
    }

    @Test func documentsThatAreNotResultsAreRefused() {
        let truncated = Self.refusal("<TestResult xmlns=\"http://checklists.nist.gov/xccdf/1.2\"><rule-result idref=\"r\"><result>fail</result>")
        #expect(truncated?.description.contains("not well-formed XML") == true, "\(String(describing: truncated))")
        #expect(Self.refusal("<Benchmark xmlns=\"http://checklists.nist.gov/xccdf/1.2\" id=\"b\"/>")?.description
            .contains("no XCCDF TestResult") == true)
        // A TestResult in another namespace is not XCCDF's.
        #expect(Self.refusal(Self.testResult("<rule-result idref=\"r\"><result>fail</result></rule-result>")
            .replacingOccurrences(of: "checklists.nist.gov/xccdf/1.2", with: "example.org/not-xccdf"))?.description
            .contains("no XCCDF TestResult") == true)
        // Only notselected and notapplicable: nothing to report.
        #expect(Self.refusal(Self.testResult("<rule-result idref=\"r\"><result>notselected</result></rule-result>"))?.description
            .contains("no rule results") == true)
        // A rule-result without a rule.
        #expect(Self.refusal(Self.testResult("<rule-result><result>fail</result></rule-result>"))?.description
            .contains("idref: expected a non-empty rule id") == true)
    }

    // MARK: - Mapping to the resources that carry a rule out

    @Test func aRuleFindingNamesTheResourcesAnnotatedWithTheRule() throws {
        let state = try DesiredStateLoader(registry: memoryRegistry(MemoryDriver())).load([
            file("controllers/c.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: web-1}
                spec: {adapter: memory}
                ---
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: web-2}
                spec: {adapter: memory}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: c}
                spec: {kinds: [Setting]}
                """),
            file("desired-state/r.yaml", """
                apiVersion: bulwark/v1
                kind: Setting
                metadata: {name: root-login, annotations: {cis: "5.1.20", ssg: sshd_disable_root_login}}
                spec: {PermitRootLogin: "no"}
                ---
                apiVersion: bulwark/v1
                kind: Setting
                metadata: {name: shadow, annotations: {ssg: "file_permissions_etc_shadow, file_owner_etc_shadow"}}
                spec: {mode: "0640"}
                """),
        ], revision: "r")
        let index = FindingIndex(state: state)
        func matched(_ control: String, on host: String) -> [String] {
            index.match([Finding(resource: host, control: control, firstObservedAt: FindingFormatsTests.now, source: "openscap")]).keys.sorted()
                .map(\.description)
        }
        // The scanned host is a target Bulwark knows: that target only.
        #expect(matched(Self.rule + "sshd_disable_root_login", on: "web-2") == ["web-2 Setting/root-login"])
        #expect(matched(Self.rule + "file_owner_etc_shadow", on: "ssh://web-1") == ["web-1 Setting/shadow"])
        // A host by a name Bulwark does not know (a chroot scan says `unknown`): every target the resource is bound to.
        #expect(matched(Self.rule + "file_permissions_etc_shadow", on: "chroot:///srv/root") == ["web-1 Setting/shadow", "web-2 Setting/shadow"])
        // A rule no resource names maps to nothing, not to everything on the host it names; nor does a rule without the annotation.
        #expect(matched(Self.rule + "partition_for_home", on: "web-1").isEmpty)
        #expect(FindingIndex(bindings: state.bindings).match([Finding(resource: "web-9", control: Self.rule + "sshd_disable_root_login",
                                                                      firstObservedAt: FindingFormatsTests.now, source: "openscap")]).isEmpty)
    }
}
