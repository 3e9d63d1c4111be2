internal import Foundation

/// OpenSCAP's results: XCCDF 1.1/1.2 (`oscap xccdf eval --results FILE`, the benchmark with a
/// `TestResult` appended) and ARF 1.1 (`--results-arf FILE`, an asset report collection whose
/// reports hold the `TestResult`). One finding per `rule-result`: fail, error and unknown are
/// open findings; pass and fixed are resolved findings (they close a proposal, as a passing
/// check does in the other formats); notapplicable, notchecked, notselected and informational
/// are not findings. The source is `openscap` (or `xccdf` for another scanner), the control the
/// rule's id, the resource the scanned target (its name, else its identifier fact such as
/// `chroot:///srv/root`), the title the benchmark's title for the rule, the first-seen time the
/// rule-result's time, and the evidence names the benchmark, the profile and the result.
///
/// The XML is read with no DTD at all: a document that declares one (`<!DOCTYPE`, `<!ENTITY`)
/// is refused before it is parsed, so there are no external entities and no entity expansion
/// (oscap writes none); only UTF-8 is accepted, so that this check sees what the parser reads.
extension FindingParser {
    /// Bytes of an XML results document: oscap's `--results` holds the whole benchmark (3.6 MB
    /// for SSG's Debian 11 content), `--results-arf` the data stream and OVAL results too (8 MB).
    public static let maxXMLSize = 32 << 20
    /// Element nesting: XCCDF results nest about 10 deep; ARF's OVAL and XHTML parts a few dozen.
    static let maxXMLDepth = 128
    /// `rule-result` elements of a document (findings are bounded by `maxFindings` besides).
    static let maxRuleResults = 100_000
    /// `Rule` elements whose titles are kept.
    static let maxRuleTitles = 100_000

    public static let xccdfRulePrefix = "xccdf_org.ssgproject.content_rule_"

    /// Whether the document is XML (by content type, else by its first non-blank byte).
    /// Whether a content type names XML (`application/xml`, `text/xml`, `…+xml`).
    public static func isXMLContentType(_ contentType: String?) -> Bool {
        guard let type = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() else { return false }
        return type.hasSuffix("/xml") || type.hasSuffix("+xml")
    }

    static func isXML(contentType: String?, bytes: [UInt8]) -> Bool {
        if let type = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() {
            if type.hasSuffix("/xml") || type.hasSuffix("+xml") { return true }
            if type.hasSuffix("json") || type.contains("ndjson") || type.contains("jsonl") { return false }
        }
        // UTF-16 and UTF-32 XML starts with a byte-order mark or has a zero byte next to its `<`:
        // taken as XML here, so that it is refused for its encoding rather than read as JSON.
        if bytes.starts(with: [0xFE, 0xFF]) || bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0, 0x3C])
            || bytes.starts(with: [0x3C, 0]) || bytes.starts(with: [0, 0, 0xFE, 0xFF]) { return true }
        var index = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        while index < bytes.count, [9, 10, 13, 32].contains(bytes[index]) { index += 1 }
        return index < bytes.count && bytes[index] == UInt8(ascii: "<")
    }

    /// The findings of an XML results document; one with none is refused, as in the other formats.
    static func xccdfDocument(_ bytes: [UInt8], now: Date) throws(FindingError) -> [Finding] {
        let findings = try xccdf(bytes, now: now)
        guard !findings.isEmpty else {
            throw FindingError("no rule results in the document (expected oscap's --results or --results-arf output)")
        }
        return findings
    }

    static func xccdf(_ bytes: [UInt8], now: Date) throws(FindingError) -> [Finding] {
        if let problem = xmlProblem(bytes) { throw problem }
        var reader = XCCDFReader(now: now)
        do {
            try XMLStream.parse(bytes, namespaces: true, into: &reader)
        } catch {
            throw FindingError("not well-formed XML at \(oneLine(error.description))")
        }
        if let refusal = reader.refusal { throw refusal }
        guard reader.sawTestResult else {
            throw FindingError("no XCCDF TestResult in the document (expected oscap's --results or --results-arf output)")
        }
        return reader.findings()
    }

    /// Why the bytes are refused before parsing, if they are: too large, not UTF-8, or with a DTD.
    static func xmlProblem(_ bytes: [UInt8]) -> FindingError? {
        guard bytes.count <= maxXMLSize else {
            return FindingError("the XML document is larger than \(maxXMLSize) bytes", exceedsLimit: true)
        }
        if bytes.starts(with: [0xFE, 0xFF]) || bytes.starts(with: [0xFF, 0xFE]) || bytes.contains(0) {
            return FindingError("the XML document is not UTF-8 (UTF-16 and UTF-32 are not accepted)")
        }
        let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes[3...] : bytes[...]
        // The bytes must be UTF-8 and start, after blanks, with `<`: a document in another
        // encoding that libxml2 would detect by itself (EBCDIC has no zero byte, no ASCII `<?xml`
        // and no ASCII `<!`) would otherwise pass the byte scan for a DTD below unseen.
        guard String(validating: body, as: UTF8.self) != nil else {
            return FindingError("the XML document is not UTF-8")
        }
        guard let first = body.first(where: { ![9, 10, 13, 32].contains($0) }), first == UInt8(ascii: "<") else {
            return FindingError("the XML document does not start with '<' (only UTF-8 XML is accepted)")
        }
        // The declaration's encoding, if any, must be UTF-8 (or its ASCII subset).
        if body.starts(with: Array("<?xml".utf8)) {
            guard let end = firstIndex(of: Array("?>".utf8), in: body, limit: 512) else {
                return FindingError("the XML declaration does not end within 512 bytes")
            }
            let declaration = String(decoding: body[body.startIndex..<end], as: UTF8.self).lowercased()
            if let range = declaration.range(of: "encoding") {
                let value = declaration[range.upperBound...].drop { $0 == " " || $0 == "=" || $0 == "\"" || $0 == "'" }
                    .prefix { $0 != "\"" && $0 != "'" && $0 != " " }
                guard ["utf-8", "utf8", "us-ascii", "ascii"].contains(String(value)) else {
                    return FindingError("the XML declaration names encoding '\(oneLine(String(value.prefix(20))))'; only UTF-8 is accepted")
                }
            }
        }
        // `<!DOCTYPE` and `<!ENTITY`, in any case: no DTD, so no entity can be declared or fetched.
        var index = body.startIndex
        while let at = body[index...].firstIndex(of: UInt8(ascii: "<")) {
            let next = body.index(after: at)
            if next < body.endIndex, body[next] == UInt8(ascii: "!") {
                let word = String(decoding: body[body.index(after: next)..<min(body.endIndex, next + 8)], as: UTF8.self).uppercased()
                if word.hasPrefix("DOCTYPE") || word.hasPrefix("ENTITY") {
                    return FindingError("the XML document declares a DTD (<!\(word.hasPrefix("DOCTYPE") ? "DOCTYPE" : "ENTITY")): "
                        + "refused, as DTDs carry external entities and entity expansion and oscap writes none")
                }
            }
            index = next
        }
        return nil
    }

    private static func firstIndex(of needle: [UInt8], in haystack: ArraySlice<UInt8>, limit: Int) -> Int? {
        let end = min(haystack.endIndex, haystack.startIndex + limit)
        var index = haystack.startIndex
        while index + needle.count <= end {
            if haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}

/// Streams the document and keeps only what findings need: rule titles, each TestResult's
/// target, benchmark and profile, and its rule-results. Text is kept only where it is needed and
/// clipped at `maxFieldLength`. Used on one thread, by one parse.
private struct XCCDFReader: XMLStreamHandler {
    struct RuleResult {
        var rule: String
        var severity: String?
        var time: String?
        var result = ""
        var testResult: Int
    }

    struct TestResult {
        var id: String
        var startTime: String?
        var testSystem: String?
        var benchmark: String?
        var profile: String?
        var target = ""
        var identifier = ""
        var address = ""
    }

    let now: Date
    var refusal: FindingError?
    var sawTestResult = false
    private var depth = 0
    private var ruleResultCount = 0
    private var benchmarkID: String?
    private var titles: [String: String] = [:]
    private var testResults: [TestResult] = []
    private var results: [RuleResult] = []
    // Where the parser is: the element whose text is being kept, and the open Rule/TestResult/rule-result.
    private var openRule: (id: String, depth: Int)?
    private var openTestResult: Int?
    private var testResultDepth = 0
    private var openRuleResult: RuleResult?
    private var capture: (field: Field, depth: Int)?
    private var text = ""
    /// `text`'s length in characters, kept as it grows: counting it at every piece of text made
    /// a document of many pieces in one long field quadratic (a reviewer's 8 MB took 242 s).
    private var textLength = 0

    enum Field { case title, result, target, identifier, address }

    init(now: Date) { self.now = now }

    /// Stops the parse for `error`.
    private mutating func refuse(_ error: FindingError) -> Bool {
        if refusal == nil { refusal = error }
        return false
    }

    private static func isXCCDF(_ namespace: String?) -> Bool {
        guard let namespace else { return false }
        return namespace.hasPrefix("http://checklists.nist.gov/xccdf/")
    }

    mutating func start(_ name: String, namespace namespaceURI: String?, attributes: [String: String]) -> Bool {
        depth += 1
        guard depth <= FindingParser.maxXMLDepth else {
            return refuse(FindingError("elements nest deeper than \(FindingParser.maxXMLDepth)", exceedsLimit: true))
        }
        guard Self.isXCCDF(namespaceURI) else { return true }
        switch name {
        case "Benchmark":
            if benchmarkID == nil { benchmarkID = attributes["id"].map(FindingParser.clipped) }
        case "Rule" where openTestResult == nil:
            if let id = attributes["id"], titles.count < FindingParser.maxRuleTitles { openRule = (id, depth) }
        case "title" where openRule != nil && depth == (openRule?.depth ?? 0) + 1 && capture == nil:
            start(.title)
        case "TestResult":
            sawTestResult = true
            testResults.append(TestResult(id: FindingParser.clipped(attributes["id"] ?? "TestResult"), startTime: attributes["start-time"],
                                          testSystem: attributes["test-system"].map(FindingParser.clipped)))
            openTestResult = testResults.count - 1
            testResultDepth = depth
        case "benchmark" where openTestResult != nil:
            testResults[testResults.count - 1].benchmark = (attributes["id"] ?? attributes["href"]).map(FindingParser.clipped)
        case "profile" where openTestResult != nil:
            testResults[testResults.count - 1].profile = attributes["idref"].map(FindingParser.clipped)
        case "target" where openTestResult != nil && depth == testResultDepth + 1:
            start(.target)
        case "target-address" where openTestResult != nil && depth == testResultDepth + 1:
            start(.address)
        case "fact" where openTestResult != nil && attributes["name"] == "urn:xccdf:fact:identifier":
            start(.identifier)
        case "rule-result" where openTestResult != nil:
            ruleResultCount += 1
            guard ruleResultCount <= FindingParser.maxRuleResults else {
                return refuse(FindingError("more than \(FindingParser.maxRuleResults) rule-result elements", exceedsLimit: true))
            }
            guard let rule = attributes["idref"], !rule.isEmpty else {
                return refuse(FindingError("rule-result \(ruleResultCount): idref: expected a non-empty rule id"))
            }
            guard rule.count <= FindingParser.maxFieldLength else {
                return refuse(FindingError("rule-result \(ruleResultCount): idref: longer than \(FindingParser.maxFieldLength) characters",
                                                   exceedsLimit: true))
            }
            openRuleResult = RuleResult(rule: rule, severity: attributes["severity"], time: attributes["time"], testResult: testResults.count - 1)
        case "result" where openRuleResult != nil:
            start(.result)
        default:
            break
        }
        return true
    }

    private mutating func start(_ field: Field) {
        capture = (field, depth)
        text = ""
        textLength = 0
    }

    /// Keeps at most `maxFieldLength` characters of a field's text.
    mutating func text(_ string: String) {
        guard capture != nil, textLength < FindingParser.maxFieldLength else { return }
        let piece = string.prefix(FindingParser.maxFieldLength - textLength)
        text += piece
        textLength += piece.count
    }

    mutating func end(_ name: String, namespace namespaceURI: String?) -> Bool {
        defer { depth -= 1 }
        if let (field, at) = capture, at == depth {
            let value = FindingParser.clipped(text.trimmingCharacters(in: .whitespacesAndNewlines))
            capture = nil
            switch field {
            case .title:
                if let rule = openRule, titles[rule.id] == nil { titles[rule.id] = value.split(whereSeparator: \.isNewline).joined(separator: " ") }
            case .result: openRuleResult?.result = value.lowercased()
            case .target: testResults[testResults.count - 1].target = value
            case .identifier: testResults[testResults.count - 1].identifier = value
            case .address: if testResults[testResults.count - 1].address.isEmpty { testResults[testResults.count - 1].address = value }
            }
            return true
        }
        guard Self.isXCCDF(namespaceURI) else { return true }
        switch name {
        case "Rule" where openRule?.depth == depth:
            openRule = nil
        case "rule-result":
            guard let result = openRuleResult else { break }
            openRuleResult = nil
            guard Self.isFinding(result.result) else { break }
            results.append(result)
            if results.count > FindingParser.maxFindings {
                return refuse(FindingError("the document holds more than \(FindingParser.maxFindings) findings; at most \(FindingParser.maxFindings) findings a request",
                                            exceedsLimit: true))
            }
        case "TestResult" where depth == testResultDepth:
            openTestResult = nil
        default:
            break
        }
        return true
    }

    /// Results that become findings (open or resolved); the others are dropped as they are read.
    static func isFinding(_ result: String) -> Bool { ["fail", "error", "unknown", "pass", "fixed"].contains(result) }

    /// The findings, once the document is read: rule titles are resolved wherever the rule was.
    func findings() -> [Finding] {
        results.compactMap { entry -> Finding? in
            let resolved: Bool
            switch entry.result {
            case "fail", "error", "unknown": resolved = false
            case "pass", "fixed": resolved = true
            default: return nil
            }
            let run = testResults[entry.testResult]
            let scanned = [run.target, run.identifier, run.address].first { !$0.isEmpty && $0.lowercased() != "unknown" } ?? "unknown"
            let source = (run.testSystem ?? "").lowercased().contains("openscap") || run.testSystem == nil ? "openscap" : "xccdf"
            let benchmark = run.benchmark ?? benchmarkID ?? "benchmark"
            let profile = run.profile ?? "(no profile)"
            let first = FindingParser.time(entry.time ?? run.startTime, now: now)
            let title = titles[entry.rule].map { entry.result == "fail" ? $0 : "\($0) (\(entry.result))" }
            return Finding(resource: scanned, control: entry.rule, firstObservedAt: first, title: title,
                           id: AuditID.stable(["xccdf", scanned, benchmark, entry.rule].joined(separator: "\u{1}")),
                           source: source, severity: FindingParser.severity(entry.severity),
                           evidence: FindingParser.clipped("\(benchmark) profile \(profile) \(run.id): \(entry.result)"),
                           resolved: resolved)
        }
    }
}
