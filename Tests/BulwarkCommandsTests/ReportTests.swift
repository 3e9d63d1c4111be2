@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

@Suite struct ReportTests {
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)

    func entry(_ resource: String, _ decision: Decision, _ result: RemediationResult? = nil, at: Double,
               verified: Double? = nil, severity: Severity = .high) -> RemediationReport.Entry {
        .init(target: "web-1", resource: resource, controller: "c", severity: severity, decision: decision, result: result,
              detectedAt: t0.addingTimeInterval(at), verifiedAt: verified.map { t0.addingTimeInterval($0) })
    }

    @Test func mttrCountsFromTheFirstOpenRecord() {
        let report = RemediationReport(entries: [
            entry("SSHDConfig/a", .deferred, at: 0),
            entry("SSHDConfig/a", .deferred, at: 300),
            entry("SSHDConfig/a", .applied, .verified, at: 600, verified: 601),  // open since 0: 601 s
            entry("Sysctl/b", .applied, .verified, at: 10, verified: 10.5),
            entry("Sysctl/c", .held, at: 20, severity: .critical),
            entry("Sysctl/d", .applied, .failed, at: 30, severity: .low),
        ], since: nil, now: t0.addingTimeInterval(3600), top: 10)
        #expect(report.mttr.fixes == 2)
        #expect(report.mttr.maxSeconds == 601)
        #expect(report.mttr.p50Seconds == 0.5)
        #expect(report.byKind["SSHDConfig"]?.p50Seconds == 601)
        #expect(report.decisions == ["deferred": 2, "applied": 3, "held": 1])
        #expect(report.open.map(\.resource) == ["Sysctl/c", "Sysctl/d"])
        #expect(report.open.first?.ageSeconds == 3580)
        #expect(report.text(source: "x").contains("MTTR (detection to verified fix): 2 fixes, p50 500 ms, p90 10.0 min, max 10.0 min"))
    }

    /// A record verified before it was detected, or detected after now (a skewed clock, a forged
    /// record), counts as zero time, never a negative MTTR or age; the others keep theirs.
    @Test func recordsFromASkewedClockCountAsZeroTime() {
        let report = RemediationReport(entries: [
            entry("SSHDConfig/a", .applied, .verified, at: 600, verified: -1_000_000),
            entry("Sysctl/b", .applied, .verified, at: 10, verified: 12),
            entry("Sysctl/c", .held, at: 7200),
        ], since: nil, now: t0.addingTimeInterval(3600), top: 10)
        #expect(report.mttr.fixes == 2)
        #expect(report.mttr.p50Seconds == 0 && report.mttr.maxSeconds == 2)
        #expect(report.open.first?.ageSeconds == 0)
        #expect(!report.text(source: "x").contains(" -"), "\(report.text(source: "x"))")
    }

    /// A recovery's `interrupted` record committed after another Bulwark's verified fix of the
    /// same drift (detected before that fix) does not open the drift again: the next fix of the
    /// resource counts from its own detection, and nothing is left open. Before, the drift was
    /// open from the old detection until that next fix (p90 162 s where each fix took 0.7 s).
    /// The twin: an `interrupted` record of a drift detected after the last verified fix still
    /// opens it; so does any record detected before it that is not `interrupted`.
    @Test func aLateInterruptedRecordOfADriftAnotherFixClosedOpensNothing() {
        let entries = [
            entry("SSHDConfig/a", .applied, .verified, at: 100, verified: 100.7),     // the other Bulwark's fix
            entry("SSHDConfig/a", .applied, .interrupted, at: 90),                    // the killed one's, recorded late
            entry("SSHDConfig/a", .applied, .verified, at: 250, verified: 250.5),     // a later drift, fixed
            entry("Sysctl/b", .applied, .verified, at: 100, verified: 100.5),
            entry("Sysctl/b", .applied, .interrupted, at: 200),                       // detected after: open
            entry("Sysctl/c", .applied, .verified, at: 100, verified: 100.5),
            entry("Sysctl/c", .held, at: 90),                                         // not interrupted: open
        ]
        let report = RemediationReport(entries: entries, since: nil, now: t0.addingTimeInterval(3600), top: 10)
        #expect(report.byKind["SSHDConfig"]?.maxSeconds == 0.7, "\(String(describing: report.byKind["SSHDConfig"]))")
        #expect(report.open.map(\.resource).sorted() == ["Sysctl/b", "Sysctl/c"], "\(report.open)")
        // The daemon's history counts the same.
        var history = MTTRHistory()
        for item in entries { history.add(item) }
        #expect(history.summary(since: t0).maxSeconds == 0.7)
        #expect(history.summary(since: t0) == report.mttr)
    }

    /// A recovery's record of a fix never tried, found as desired after the restart.
    func recovered(_ resource: String, at: Double, changes: [AuditRecord.Change],
                   error: String = AuditRecord.untriedAfterRestart) -> RemediationReport.Entry? {
        let record = AuditRecord(
            id: AuditID.ulid(at: t0.addingTimeInterval(at)), controller: "c", target: "web-1", resource: resource, kind: String(resource.split(separator: "/")[0]),
            name: String(resource.split(separator: "/")[1]), severity: .high, risk: 50, mode: .enforce, decision: .applied,
            result: .interrupted, reason: nil, changes: changes, detectedAt: t0.addingTimeInterval(at), appliedAt: nil,
            verifiedAt: nil, desiredCommit: Revision("0000000000000000000000000000000000000001"), approver: nil, error: error)
        return RemediationReport.Entry(record)
    }

    /// An `interrupted` record whose every change was found, after the restart, as its desired
    /// value closes the drift (someone else made the system as desired): no open item, and no fix
    /// in the MTTR figures (no Bulwark verified one; its "time to repair" would be the restart's).
    /// Before, it stayed open until the resource's next verified fix. The twins stay open: a
    /// value found other than desired, a redacted value (which proves nothing), and a fix found
    /// as desired that still owes a reload (`AuditRecord.incompleteAfterRestart`).
    @Test func anInterruptedRecordFoundAsDesiredClosesTheDrift() throws {
        let change = { (after: String?) in AuditRecord.Change(property: "PermitRootLogin", desired: "no", observedBefore: "yes",
                                                              observedAfter: after) }
        let entries = try [
            entry("SSHDConfig/a", .held, at: 0),                                              // open since 0 …
            #require(recovered("SSHDConfig/a", at: 50, changes: [change("no")])),            // … closed, found as desired
            #require(recovered("Sysctl/b", at: 60, changes: [change("no"), change("yes")])), // one not as desired: open
            #require(recovered("Sysctl/c", at: 70, changes: [                                // redacted: open
                AuditRecord.Change(property: "password", desired: "[redacted]", observedBefore: nil, observedAfter: "[redacted]")])),
            #require(recovered("Sysctl/d", at: 80, changes: [change("no")],                  // a reload owed: open
                               error: AuditRecord.incompleteAfterRestart + ": ssh: reload failed; the next pass completes it")),
            #require(recovered("Sysctl/e", at: 90, changes: [change(nil)])),                 // found unset: open
        ]
        #expect(entries.map(\.foundAsDesired) == [false, true, false, false, false, false])
        let report = RemediationReport(entries: entries, since: nil, now: t0.addingTimeInterval(3600), top: 10)
        #expect(report.open.map(\.resource).sorted() == ["Sysctl/b", "Sysctl/c", "Sysctl/d", "Sysctl/e"], "\(report.open)")
        #expect(report.mttr.fixes == 0, "not counted as a fix")
        // A later drift of the closed resource counts from its own detection.
        let later = entries + [entry("SSHDConfig/a", .applied, .verified, at: 200, verified: 201)]
        let after = RemediationReport(entries: later, since: nil, now: t0.addingTimeInterval(3600), top: 10)
        #expect(after.mttr.fixes == 1 && after.mttr.maxSeconds == 1, "\(after.mttr)")
        // The daemon's history counts the same.
        let history = MTTRHistory(later)
        #expect(history.summary(since: t0) == after.mttr)
    }

    @Test func percentilesUseNearestRank() {
        let summary = RemediationReport.Summary((1...10).map(Double.init))
        #expect(summary.p50Seconds == 5 && summary.p90Seconds == 9 && summary.maxSeconds == 10)
        #expect(RemediationReport.Summary([]).p50Seconds == nil)
    }

    @Test func reportsFromARealAuditBranch() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fixes = try s.planned().fixes
            #expect(try s.run("apply").status == 0)
            let text = try s.run("report")
            #expect(text.status == 0)
            #expect(text.stdout.contains("MTTR (detection to verified fix): \(fixes) fixes"))
            #expect(text.stdout.contains("By severity:"))
            #expect(text.stdout.contains("Open items: none."))
            let json = try s.run("report", "--output", "json")
            let decoded = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect((decoded["mttr"] as? [String: Any])?["fixes"] as? Int == fixes)
            let markdown = try s.run("report", "--output", "markdown")
            #expect(markdown.stdout.hasPrefix("# Remediation report"))
            #expect(markdown.stdout.contains("| severity | critical | 3 |"))
        }
    }

    /// The table rows of a markdown document whose cells differ in number from their table's
    /// header: `|` that no `\` escapes ends a cell.
    static func brokenRows(_ markdown: String) -> [String] {
        func cells(_ line: Substring) -> Int {
            var count = 0
            var escaped = false
            for character in line {
                if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "|" { count += 1 }
            }
            return count
        }
        var broken: [String] = []
        var header: Int?
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("|") else { header = nil; continue }
            if let header { if cells(line) != header { broken.append(String(line)) } } else { header = cells(line) }
        }
        return broken
    }

    /// Record text in a markdown cell shows as it is: `|` escaped (it ended the cell), `<`, `>`
    /// and `&` as entities (read as HTML), `\` escaped, a line break a space.
    @Test func markdownCellsEscapeWhatWouldBreakTheTable() {
        #expect(RemediationReport.markdownCell("web|<script>alert(1)</script> & \\|x\nrow") ==
                "web\\|&lt;script&gt;alert(1)&lt;/script&gt; &amp; \\\\\\|x row")
        #expect(RemediationReport.markdownCell("SSHDConfig/cis-5.1.20") == "SSHDConfig/cis-5.1.20")
    }

    /// Records a person with push access forged (a target, a resource, a controller holding `|`,
    /// HTML and `&`) stay inside their cells in `report --output markdown`: every row keeps its
    /// table's number of cells, and no tag reaches the document.
    @Test func forgedRecordTextCannotBreakTheMarkdownReport() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let target = "web|<script>alert(1)</script>"
            let resource = "SSHDConfig/x|<img src=x onerror=alert(1)>&amp;"
            let controller = "ctl|</td><b>bold</b>"
            let detected = Date().addingTimeInterval(-3600)
            for (id, decision, verified) in [("01FQRGEDHE1D0000000000000A", "held", false), ("01FQRGEDF1XED000000000000B", "applied", true)] {
                _ = try ForgedRecordTests.forge(s, subject: "remediate(\(resource)): \(target)", trailers: [
                    ("Bulwark-Id", id), ("Bulwark-Controller", controller), ("Bulwark-Target", verified ? target + "2" : target),
                    ("Bulwark-Resource", resource), ("Bulwark-Severity", "high"), ("Bulwark-Mode", "enforce"), ("Bulwark-Decision", decision),
                    ("Bulwark-Desired-Commit", String(repeating: "0", count: 40)), ("Bulwark-Detected-At", Timestamp.format(detected))]
                    + (verified ? [("Bulwark-Result", "verified"), ("Bulwark-Verified-At", Timestamp.format(detected.addingTimeInterval(5)))] : []))
            }
            let report = try s.run("report", "--output", "markdown")
            #expect(report.status == 0, "\(report.stderr)")
            let markdown = report.stdout
            #expect(markdown.contains("| high | web\\|&lt;script&gt;alert(1)&lt;/script&gt; | SSHDConfig/x\\|&lt;img src=x onerror=alert(1)&gt;&amp;amp; | held |"),
                    "\(markdown)")
            #expect(markdown.contains("| controller | ctl\\|&lt;/td&gt;&lt;b&gt;bold&lt;/b&gt; | 1 |"), "\(markdown)")
            for tag in ["<script", "<img", "<b>", "</td>"] { #expect(!markdown.contains(tag), "\(tag) in \(markdown)") }
            #expect(Self.brokenRows(markdown) == [], "\(markdown)")
        }
    }

    /// A refusal (a refused revision, a finding's refused change) names no target: it is counted
    /// with the decisions but is never an open item, which no fix could ever close. The refused
    /// finding's record carries its resource's severity (medium), not the finding's (critical).
    @Test func refusalsAreCountedButNeverOpen() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            // A finding rule that would loosen MaxAuthTries (4 to 6): the change is refused and recorded.
            let rule = FindingProposalEndToEndTests.rule.replacingOccurrences(of: "set: {MaxAuthTries: \"3\"}", with: "set: {MaxAuthTries: \"6\"}")
                .replacingOccurrences(of: ", severity: medium}", with: "}")
            try s.commitPolicy("finding-rules/sshd.yaml", rule, message: "a loosening finding rule")
            try write(dir + "/finding.json", FindingProposalEndToEndTests.finding(id: "loosen-1", firstSeen: Date())
                .replacingOccurrences(of: "\"severity_id\": 3, \"severity\": \"Medium\"", with: "\"severity_id\": 5, \"severity\": \"Critical\""))
            let ingested = try s.run("ingest", dir + "/finding.json", "--output", "json")
            #expect(ingested.stdout.contains("never lowers policy"), "\(ingested.stdout) \(ingested.stderr)")
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Bulwark-Decision: refused") && record.contains("Bulwark-Finding: loosen-1"), "\(record)")
            #expect(record.contains("Bulwark-Severity: medium"), "the resource's severity: \(record)")
            // A refused revision.
            try s.commitPolicy("desired-state/broken.yaml", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: Bad_Name}\nspec: {}\n")
            #expect(try s.run("apply").status == 1)
            #expect(try s.trailers("Bulwark-Decision").filter { $0 == "refused" }.count == 2)

            let text = try s.run("report")
            #expect(text.stdout.contains("Open items: none."), "\(text.stdout)")
            #expect(text.stdout.contains("refused 2"), "\(text.stdout)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(try s.run("report", "--output", "json").stdout.utf8)) as? [String: Any])
            #expect((json["open"] as? [Any])?.isEmpty == true && json["openCount"] as? Int == 0, "\(json)")
            #expect((json["decisions"] as? [String: Int])?["refused"] == 2, "\(json)")
            let markdown = try s.run("report", "--output", "markdown").stdout
            #expect(markdown.contains("## Worst open items\n\nNone."), "\(markdown)")
            #expect(markdown.contains("| refused | 2 |"), "\(markdown)")
        }
    }

    /// `--top` lists the worst open items and says how many more there are; `--top 0` says how
    /// many are open instead of "none", in text, markdown and JSON (`openCount`, in the schema).
    @Test func topSaysHowManyItemsAreOpenAndNotListed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let all = try #require(try JSONSerialization.jsonObject(with: Data(try s.run("report", "--output", "json").stdout.utf8)) as? [String: Any])
            let count = try #require(all["openCount"] as? Int)
            try #require(count > 10, "\(all)")
            #expect((all["open"] as? [Any])?.count == 10)

            let cut = try s.run("report").stdout
            #expect(cut.contains("Worst open items (10 of \(count) open):"), "\(cut)")
            #expect(cut.contains("  … and \(count - 10) more (--top \(count) lists them all)"), "\(cut)")
            let whole = try s.run("report", "--top", String(count)).stdout
            #expect(whole.contains("Worst open items:") && !whole.contains("more (--top"), "\(whole)")

            let none = try s.run("report", "--top", "0")
            #expect(none.stdout.contains("Open items: \(count) open (not listed: --top 0)."), "\(none.stdout)")
            #expect(!none.stdout.contains("Open items: none."))
            let markdown = try s.run("report", "--top", "0", "--output", "markdown").stdout
            #expect(markdown.contains("## Worst open items\n\n\(count) open (not listed: --top 0)."), "\(markdown)")
            #expect(try s.run("report", "--top", "3", "--output", "markdown").stdout.contains("… and \(count - 3) more (--top \(count) lists them all)."))
            let json = try s.run("report", "--top", "0", "--output", "json")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect((document["open"] as? [Any])?.isEmpty == true && document["openCount"] as? Int == count, "\(document)")
            if SchemaValidator.available { try JSONSchemaTests().check("report.schema.json", json.stdout, in: dir) }
        }
    }
}
