import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

// MARK: - The YAML reader

/// What a composed document must satisfy whatever the input: the limits hold (nodes, depth,
/// expanded bytes by the file's size), an error has a place and one bounded line, and what was
/// composed survives writing every scalar with `YAML.doubleQuoted` and reading it back.
enum YAMLFuzz {
    static let limits = YAMLLimits()

    static func check(_ bytes: [UInt8]) throws -> String {
        let documents: [YAMLNode?]
        do {
            documents = try YAML.compose(bytes, limits: limits)
        } catch {
            try fuzzRequire(error.line >= 1 && error.column >= 1, "error at \(error.line):\(error.column)")
            try fuzzRequire(error.message.utf8.count <= 1024, "a \(error.message.utf8.count)-byte error message")
            try fuzzRequire(!error.message.unicodeScalars.contains(where: isLineBreaking),
                            "the error message holds a line break or control: \(error.message.debugDescription)")
            return "error " + signature(error.message)
        }
        try fuzzRequire(documents.count <= limits.maxDocuments, "\(documents.count) documents")
        var scalarBytes = 0
        for document in documents.compactMap({ $0 }) {
            var nodes = 0
            var depth = 0
            measure(document, level: 0, nodes: &nodes, bytes: &scalarBytes, depth: &depth)
            try fuzzRequire(nodes <= limits.maxNodes, "a document of \(nodes) nodes")
            try fuzzRequire(depth <= limits.maxDepth, "a document nested \(depth) deep")
        }
        let budget = limits.expandedByteBudget(forFileOf: bytes.count)
        try fuzzRequire(scalarBytes <= budget, "\(scalarBytes) bytes of scalars from a \(bytes.count)-byte file (budget \(budget))")

        // Round trip: written out with every scalar double-quoted, read back, written again: the same text.
        let rendered = render(documents)
        let again: [YAMLNode?]
        do {
            again = try YAML.compose(Array(rendered.utf8), limits: limits)
        } catch {
            throw FuzzPropertyFailure("the rendered documents do not read back: \(error.message) in \(rendered.prefix(300).debugDescription)")
        }
        try fuzzRequire(render(again) == rendered, "render → compose → render differs: \(rendered.prefix(300).debugDescription)")
        return "ok \(documents.count) \(min(scalarBytes, 1) )"
    }

    static func measure(_ node: YAMLNode, level: Int, nodes: inout Int, bytes: inout Int, depth: inout Int) {
        nodes += 1
        switch node.value {
        case .scalar(let text):
            bytes += text.utf8.count
        case .sequence(let items):
            depth = max(depth, level + 1)
            for item in items { measure(item, level: level + 1, nodes: &nodes, bytes: &bytes, depth: &depth) }
        case .mapping(let pairs):
            depth = max(depth, level + 1)
            for pair in pairs {
                bytes += pair.key.utf8.count
                nodes += 1
                measure(pair.value, level: level + 1, nodes: &nodes, bytes: &bytes, depth: &depth)
            }
        }
    }

    /// Flow style, every scalar double-quoted (a plain null stays a plain `~`).
    static func render(_ documents: [YAMLNode?]) -> String {
        documents.map { "--- " + ($0.map(render) ?? "~") + "\n" }.joined()
    }

    static func render(_ node: YAMLNode) -> String {
        switch node.value {
        case .scalar(let text): node.isNull ? "~" : YAML.doubleQuoted(text)
        case .sequence(let items): "[" + items.map(render).joined(separator: ", ") + "]"
        case .mapping(let pairs): "{" + pairs.map { YAML.doubleQuoted($0.key) + ": " + render($0.value) }.joined(separator: ", ") + "}"
        }
    }

    static let seeds: [String] = [
        "a: 1\nb: [x, y]\nc: {d: e}\n",
        "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: base}\nspec:\n  PermitRootLogin: \"no\"\n  MaxAuthTries: 3\n---\nkind: Target\n",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n",
        "k: \"line\\u2028sep\\N\\x85\\0\\t\"\nquoted: 'it''s'\nfolded: >\n  one\n  two\nliteral: |\n  a\n  b\n",
        "- &anchor {x: 1}\n- *anchor\n- ? complex\n  : value\n",
        "key: value\nKey: value\nKEY: value\n",
        "%YAML 1.1\n---\n!!str a: !!int 1\n...\n---\n~\n",
        "interval: 9223372036854775807w\nexpires: 2026-13-45\nsize: 99999999999999999999999999\n",
    ]
    static let dictionary = ["\n  ", ": ", "- ", "&x ", "*x", "? ", "!!str ", "|\n  ", ">\n  ", "\"\\u", "'", "---\n"]

    static func signature(_ message: String) -> String {
        String(message.unicodeScalars.filter { !("0"..."9").contains($0) }.prefix(32))
    }
}

// MARK: - Findings

/// What a findings document must satisfy: a refusal is one bounded line; what is accepted holds
/// the limits (findings per document, resources per finding, field lengths) and never dates a
/// finding after now; and findings written back as generic findings read back the same.
enum FindingsFuzz {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func check(_ bytes: [UInt8]) throws -> String {
        let findings: [Finding]
        do {
            findings = try FindingParser.parse(bytes, now: now)
        } catch {
            try fuzzRequire(error.description.utf8.count <= 1024, "a \(error.description.utf8.count)-byte error message")
            try fuzzRequire(!error.description.unicodeScalars.contains(where: isLineBreaking),
                            "the error message holds a line break or control: \(error.description.debugDescription)")
            return "error " + YAMLFuzz.signature(error.description)
        }
        try fuzzRequire(!findings.isEmpty, "no findings accepted without an error")
        try fuzzRequire(findings.count <= FindingParser.maxFindings * FindingParser.maxResourcesPerFinding, "\(findings.count) findings")
        for finding in findings {
            try fuzzRequire(!finding.resource.isEmpty && finding.resource.count <= FindingParser.maxFieldLength,
                            "resource of \(finding.resource.count) characters")
            try fuzzRequire(!finding.control.isEmpty && finding.control.count <= FindingParser.maxFieldLength,
                            "control of \(finding.control.count) characters")
            try fuzzRequire((finding.target?.count ?? 0) <= FindingParser.maxFieldLength, "target too long")
            try fuzzRequire(finding.firstObservedAt <= now, "first observed after now: \(finding.firstObservedAt)")
        }
        // Round trip through the generic format, in documents of at most maxFindings.
        var again: [Finding] = []
        for start in stride(from: 0, to: findings.count, by: FindingParser.maxFindings) {
            let chunk = findings[start..<min(start + FindingParser.maxFindings, findings.count)]
            let document = try render(Array(chunk))
            do {
                again += try FindingParser.parse(document, now: now)
            } catch {
                throw FuzzPropertyFailure("accepted findings, written as generic findings, are refused: \(error)")
            }
        }
        try fuzzRequire(again.count == findings.count, "\(again.count) findings read back from \(findings.count)")
        for (a, b) in zip(findings, again) {
            try fuzzRequire(a.resource == b.resource && a.target == b.target && a.control == b.control && a.title == b.title,
                            "read back differently: \(a) vs \(b)")
            try fuzzRequire(abs(a.firstObservedAt.timeIntervalSince(b.firstObservedAt)) < 0.001,
                            "time read back as \(b.firstObservedAt), was \(a.firstObservedAt)")
        }
        return "ok \(min(findings.count, 3))"
    }

    static func render(_ findings: [Finding]) throws -> [UInt8] {
        let objects: [[String: Any]] = findings.map { finding in
            var object: [String: Any] = ["resource": finding.resource, "control": finding.control,
                                         "firstObservedAt": Timestamp.format(finding.firstObservedAt)]
            if let target = finding.target { object["target"] = target }
            if let title = finding.title { object["title"] = title }
            return object
        }
        return Array(try JSONSerialization.data(withJSONObject: objects))
    }

    static let seeds: [String] = [
        #"{"resource": "SSHDConfig/base", "control": "CIS-5.2.8", "target": "web-1", "firstObservedAt": "2026-11-22T10:00:00Z", "title": "root login"}"#,
        #"[{"resource": "web-1", "control": "x"}, {"resource": "arn:aws:ec2:eu-west-1:1:instance/web-1", "control": "y", "severity": "HIGH"}]"#,
        #"{"Findings": [{"SchemaVersion": "2018-10-08", "Id": "f1", "GeneratorId": "aws-foundational", "Title": "S3", "#
            + #""FirstObservedAt": "2026-11-20T08:00:00.123Z", "Compliance": {"SecurityControlId": "S3.1"}, "#
            + #""Resources": [{"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::logs"}, {"Type": "Other", "Id": "i-1"}]}]}"#,
        #"{"SchemaVersion": "2018-10-08", "CreatedAt": "2026-11-20T08:00:00Z", "GeneratorId": "g", "Resources": [{"Id": "r"}]}"#,
        #"{"resource": "a\u2028b\n", "control": "c\u0000", "firstObservedAt": "9999-12-31T23:59:59Z"}"#,
        #"{"resource": "x", "control": "y", "unknown\nfield": 1}"#,
    ]
    static let dictionary = [#"{"resource": "r", "control": "c"}"#, #""Resources": [{"Id": "x"}]"#, #""SchemaVersion": "1""#,
                             #""firstObservedAt": "2026-01-01T00:00:00Z""#, ",", #"\u2028"#, #"\ud800"#, "[", "{", "\"", "1e999"]
}

// MARK: - The tests

@Suite struct ParserFuzzTests {
    func expectClean(_ summary: Fuzzer.Summary) {
        #expect(summary.failures == 0, "\(summary)\n\(summary.messages.joined(separator: "\n"))")
        #expect(summary.inputs > 0)
    }

    @Test func yamlReaderHoldsItsLimitsAndRoundTripsUnderMutation() async {
        let fuzzer = Fuzzer(target: "yaml", ciIterations: 3_000, dictionary: YAMLFuzz.dictionary)
        let summary = await fuzzer.run(seeds: YAMLFuzz.seeds.map { Array($0.utf8) }, check: YAMLFuzz.check)
        expectClean(summary)
        #expect(summary.outcomes > 20, "the mutations reach many different errors: \(summary)")
    }

    @Test func findingsParserHoldsItsLimitsAndRoundTripsUnderMutation() async {
        let fuzzer = Fuzzer(target: "findings", ciIterations: 3_000, dictionary: FindingsFuzz.dictionary)
        let summary = await fuzzer.run(seeds: FindingsFuzz.seeds.map { Array($0.utf8) }, check: FindingsFuzz.check)
        expectClean(summary)
        #expect(summary.outcomes > 10, "the mutations reach many different errors: \(summary)")
    }

    @Test(arguments: ["yaml", "findings"])
    func theCorpusOfEarlierFindingsStillHolds(target: String) async throws {
        let (count, failures) = try await Fuzzer.replayCorpus(target, check: target == "yaml" ? YAMLFuzz.check : FindingsFuzz.check)
        #expect(count > 0, "Tests/Corpus/\(target) holds inputs")
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    @Test func theGeneratorIsDeterministic() {
        let fuzzer = Fuzzer(target: "determinism", ciIterations: 0)
        var a = SeededGenerator(seed: 42)
        var b = SeededGenerator(seed: 42)
        var one: [[UInt8]] = []
        var two: [[UInt8]] = []
        var input = Array("key: value\n".utf8)
        var other = input
        for _ in 0..<200 {
            input = fuzzer.mutate(input, pool: [input], using: &a)
            other = fuzzer.mutate(other, pool: [other], using: &b)
            one.append(input)
            two.append(other)
        }
        #expect(one == two)
        #expect(Set(one).count > 100, "the mutations differ")
    }
}
