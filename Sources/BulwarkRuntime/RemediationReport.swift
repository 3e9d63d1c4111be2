package import BulwarkCore
package import BulwarkGit
package import Foundation

/// MTTR and counts from audit records, oldest first. Pure: the tests feed it entries directly.
package struct RemediationReport: Encodable {
    package struct Entry {
        package var target: String
        package var resource: String
        package var controller: String
        package var severity: Severity
        package var decision: Decision
        package var result: RemediationResult?
        package var detectedAt: Date
        package var verifiedAt: Date?
        /// The finding the resource's desired value came from (`Bulwark-Finding`), if any.
        package var finding: FindingMark?
        /// The record of that finding reported open again after its fix was verified (`Bulwark-Proposal: reopened`).
        package var reopened = false
        /// A recovery's `interrupted` record whose every change was found, after the restart, as
        /// its desired value (`foundAsDesired(_:)`): read from the record's file, which the
        /// trailers alone do not tell (`PolicyRepository.reportEntries`).
        package var foundAsDesired = false
        /// `bulwark revert`'s record (`Bulwark-Reverts`): an undoing, not a fix; it opens no drift.
        package var isRevert = false

        package init?(_ commit: CommitInfo) {
            guard let record = commit.recorded, let target = record.target, let resource = record.resource,
                  let decision = record.decision, let detected = record.detectedAt else { return nil }
            self.init(target: target, resource: resource, controller: record.controller ?? "",
                      severity: record.severity ?? .medium, decision: decision, result: record.result,
                      detectedAt: detected, verifiedAt: record.verifiedAt)
            if let id = record.finding, let firstSeen = record.findingFirstSeen {
                finding = FindingMark(id: id, source: record.findingSource ?? "unknown",
                                      priority: record.priority.flatMap(Priority.init(rawValue:)) ?? .p3, firstSeen: firstSeen)
            }
            reopened = record.proposal == "reopened"
            isRevert = record.reverts != nil
        }

        package init(target: String, resource: String, controller: String, severity: Severity, decision: Decision,
             result: RemediationResult?, detectedAt: Date, verifiedAt: Date?) {
            self.target = target
            self.resource = resource
            self.controller = controller
            self.severity = severity
            self.decision = decision
            self.result = result
            self.detectedAt = detectedAt
            self.verifiedAt = verifiedAt
        }

        package var kind: String { String(resource.split(separator: "/").first ?? "") }

        /// Whether the record is about a resource on a target: a refusal (a refused revision, a
        /// finding's refused change) names none (`AuditRecord.noTarget`). It is counted, but
        /// opens no drift: no fix will ever close it.
        package var hasTarget: Bool { target != AuditRecord.noTarget }

        /// Whether the record opens drift (or keeps it open), given when its resource's last
        /// verified fix before it was verified (`lastVerified`). A recovery's `interrupted` record
        /// of a drift detected before that fix is committed after it (a Bulwark killed between a
        /// fix and its record, restarted after another one fixed the drift): that fix closed the
        /// drift, and the late record does not open it again from its old detection. Counted
        /// open, it stayed open until some later fix, whose MTTR it stretched.
        package func opensDrift(lastVerified: Date?) -> Bool {
            guard decision.opensDrift, !closesDrift else { return false }
            if result == .interrupted, let lastVerified, detectedAt <= lastVerified { return false }
            return true
        }

        /// Whether the record ends its resource's open drift without being a fix: a recovery's
        /// `interrupted` record found as desired (`foundAsDesired`). Someone else made the system
        /// as desired (or this fix was made and its `tried` line lost), so nothing is open; but
        /// no Bulwark verified a fix of its own, so it is no fix in the MTTR figures either (a
        /// time to repair would be Bulwark's restart, not a repair). Counted open, the drift
        /// stayed open, and its age grew, until the resource's next verified fix.
        ///
        /// So does a resolution (`Decision.resolved`): a pass found the drift gone without a fix
        /// of Bulwark's.
        package var closesDrift: Bool { (foundAsDesired && decision == .applied && result == .interrupted) || decision == .resolved }

        /// Whether `record` is a recovery's `interrupted` record whose every change was found, after
        /// the restart, as its desired value, with nothing owed besides (a reload: the error says
        /// `AuditRecord.incompleteAfterRestart`). A redacted value (a sensitive property's, in
        /// the record only as "[redacted]") proves nothing: such a record stays open.
        package static func foundAsDesired(_ record: AuditRecord) -> Bool {
            guard record.decision == .applied, record.result == .interrupted, !record.changes.isEmpty,
                  !(record.error?.hasPrefix(AuditRecord.incompleteAfterRestart) ?? false) else { return false }
            return record.changes.allSatisfy { change in
                guard let after = change.observedAfter else { return false }
                return after == change.desired && !change.desired.contains(redacted)
            }
        }

        /// How a sensitive value stands in a record.
        static let redacted = "[redacted]"
    }

    /// `MTTRSummary` (in the core, shared with the status page).
    package typealias Summary = MTTRSummary

    package struct OpenItem: Encodable {
        package var target: String
        package var resource: String
        package var severity: Severity
        package var decision: Decision
        package var result: RemediationResult?
        package var openSince: Date
        package var ageSeconds: Double
    }

    package var schemaVersion = JSONSchema.version
    package var generatedAt: Date
    package var since: Date?
    package var records: Int
    package var mttr: Summary
    package var byController: [String: Summary]
    package var byKind: [String: Summary]
    package var bySeverity: [String: Summary]
    package var byTarget: [String: Summary]
    package var decisions: [String: Int]
    package var results: [String: Int]
    /// The worst open items, at most `top` of `openCount`.
    package var open: [OpenItem]
    /// How many items are open, listed in `open` or not.
    package var openCount: Int
    /// MTTR of findings, from each finding's first-seen time to its first verified fix, and SLA breaches.
    package var findings: FindingsSummary
    /// Records of an audit branch found changed behind Bulwark's back (kind `AuditBranch`, written
    /// when the trail is checked): not open items, as no fix closes them, but never silent. Nil
    /// when there are none.
    package var tamperingRecords: Int?
    /// Records left out because no key trusted for records signed them (`RecordTrust`); nil
    /// when no key is configured, and every record counts.
    package var untrustedRecords: Int?

    package init(entries: [Entry], since: Date?, now: Date, top: Int, sla: SLAPolicy = SLAPolicy()) {
        findings = FindingsSummary(entries: entries, since: since, now: now, sla: sla)
        var fixes: [(entry: Entry, seconds: Double)] = []
        var openSince: [String: Date] = [:]
        var last: [String: Entry] = [:]
        var lastVerified: [String: Date] = [:]
        var counted: [Entry] = []
        for entry in entries {
            let key = entry.target + "\u{0}" + entry.resource
            // A revert is neither a fix nor drift: it is counted among the records, no more.
            if entry.isRevert {
                if since.map({ entry.detectedAt >= $0 }) ?? true { counted.append(entry) }
                continue
            }
            last[key] = entry
            // A record dated in the future or verified before it was found (a skewed clock, a
            // forged record) counts as zero time, as `MTTRHistory` counts it, never negative.
            if entry.result == .verified, let verified = entry.verifiedAt {
                let start = min(openSince[key] ?? entry.detectedAt, entry.detectedAt)
                openSince[key] = nil
                lastVerified[key] = verified
                if since.map({ entry.detectedAt >= $0 }) ?? true { fixes.append((entry, max(0, verified.timeIntervalSince(start)))) }
            } else if entry.closesDrift {
                openSince[key] = nil
            } else if entry.opensDrift(lastVerified: lastVerified[key]), entry.hasTarget {
                openSince[key] = openSince[key] ?? entry.detectedAt
            }
            if since.map({ entry.detectedAt >= $0 }) ?? true { counted.append(entry) }
        }
        func group(_ by: (Entry) -> String) -> [String: Summary] {
            Dictionary(grouping: fixes, by: { by($0.entry) }).mapValues { Summary($0.map(\.seconds)) }
        }
        generatedAt = now
        self.since = since
        records = counted.count
        mttr = Summary(fixes.map(\.seconds))
        byController = group(\.controller)
        byKind = group(\.kind)
        bySeverity = group(\.severity.rawValue)
        byTarget = group(\.target)
        decisions = Dictionary(grouping: counted, by: \.decision.rawValue).mapValues(\.count)
        results = Dictionary(grouping: counted.compactMap(\.result), by: \.rawValue).mapValues(\.count)
        let tampering = counted.filter { $0.kind == "AuditBranch" }.count
        tamperingRecords = tampering > 0 ? tampering : nil
        let allOpen = openSince.compactMap { key, start -> OpenItem? in
            guard let entry = last[key] else { return nil }
            return OpenItem(target: entry.target, resource: entry.resource, severity: entry.severity, decision: entry.decision,
                            result: entry.result, openSince: start, ageSeconds: Self.seconds(max(0, now.timeIntervalSince(start))))
        }
        openCount = allOpen.count
        open = allOpen.sorted { ($0.severity, $0.ageSeconds) > ($1.severity, $1.ageSeconds) }.prefix(top).map { $0 }
    }

    /// Seconds to the millisecond (`MTTRSummary.seconds`).
    package static func seconds(_ value: Double) -> Double { MTTRSummary.seconds(value) }

    /// A duration for people (`MTTRSummary.duration`).
    package static func duration(_ seconds: Double?) -> String { MTTRSummary.duration(seconds) }

    private func line(_ s: Summary) -> String {
        "\(s.fixes) fix\(s.fixes == 1 ? "" : "es"), p50 \(Self.duration(s.p50Seconds)), p90 \(Self.duration(s.p90Seconds)), max \(Self.duration(s.maxSeconds))"
    }

    package func text(source: String) -> String {
        var lines = ["Remediation report for \(source): \(records) records",
                     "MTTR (detection to verified fix): " + line(mttr)]
        if let untrustedRecords, untrustedRecords > 0 {
            lines.insert("Left out: \(untrustedRecords) record\(untrustedRecords == 1 ? "" : "s") no trusted key signed "
                         + "(bulwark verify-audit --audit-signers lists them)", at: 1)
        }
        for (title, groups) in [("controller", byController), ("kind", byKind), ("severity", bySeverity), ("target", byTarget)]
        where !groups.isEmpty {
            lines.append("By \(title):")
            let width = groups.keys.map(\.count).max() ?? 0
            for (key, group) in groups.sorted(by: { $0.key < $1.key }) {
                lines.append("  " + key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + line(group))
            }
        }
        lines.append("Decisions: " + (decisions.isEmpty ? "none" : decisions.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                     + (results.isEmpty ? "" : "; results: " + results.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
        lines += findings.lines()
        if let tampering = tamperingRecords { lines.append(Self.tamperingLine(tampering)) }
        if openCount == 0 {
            lines.append("Open items: none.")
        } else if open.isEmpty {
            lines.append("Open items: \(openCount) open (not listed: --top 0).")
        } else {
            lines.append(open.count < openCount ? "Worst open items (\(open.count) of \(openCount) open):" : "Worst open items:")
            for item in open {
                lines.append("  \(item.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(item.target)  \(item.resource)  "
                             + "\(item.result == .failed ? "failed" : item.decision.rawValue), open for \(Self.duration(item.ageSeconds))")
            }
            if let more = notListed { lines.append("  … " + more) }
        }
        return lines.joined(separator: "\n")
    }

    /// "and 5 more (--top 15 lists them all)" when `top` left open items out, else nil.
    private var notListed: String? {
        open.count < openCount ? "and \(openCount - open.count) more (--top \(openCount) lists them all)" : nil
    }

    /// Text from a record (a target, a resource, a controller: the audit branch's trailers,
    /// which anyone who can push can write) as one markdown table cell that shows it as it is:
    /// `|` would end the cell and a line break the row, `<`, `>` and `&` would be read as HTML
    /// (`<script>`, `<img onerror=…>`), a `\` would escape what follows it.
    package static func markdownCell(_ text: String) -> String {
        var cell = ""
        cell.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "|": cell += "\\|"
            case "\\": cell += "\\\\"
            case "<": cell += "&lt;"
            case ">": cell += "&gt;"
            case "&": cell += "&amp;"
            case "\n", "\r", "\u{85}", "\u{2028}", "\u{2029}": cell += " "
            default: cell.unicodeScalars.append(scalar)
            }
        }
        return cell
    }

    /// What a person reads of tampering records, in text and markdown.
    static func tamperingLine(_ count: Int) -> String {
        "Tampering: \(count) record\(count == 1 ? "" : "s") of an audit branch changed behind Bulwark's back "
            + "(bulwark log --kind AuditBranch shows \(count == 1 ? "it" : "them"))."
    }

    package func markdown(source: String) -> String {
        let left = (untrustedRecords ?? 0) > 0 ? " \(untrustedRecords ?? 0) records no trusted key signed are left out." : ""
        var lines = ["# Remediation report", "", "Source: `\(source)`, \(records) records.\(left)", "",
                     "**MTTR** (detection to verified fix): " + line(mttr), "",
                     "| group | value | fixes | p50 | p90 | max |", "|---|---|---|---|---|---|"]
        for (title, groups) in [("controller", byController), ("kind", byKind), ("severity", bySeverity), ("target", byTarget)] {
            for (key, s) in groups.sorted(by: { $0.key < $1.key }) {
                lines.append("| \(title) | \(Self.markdownCell(key)) | \(s.fixes) | \(Self.duration(s.p50Seconds)) | \(Self.duration(s.p90Seconds)) | \(Self.duration(s.maxSeconds)) |")
            }
        }
        lines += ["", "| decision | count |", "|---|---|"] + decisions.sorted { $0.key < $1.key }.map { "| \(Self.markdownCell($0.key)) | \($0.value) |" }
        // The findings' lines carry record text too (a finding's id and source, a target).
        lines += ["", "## Findings", ""] + findings.lines().map(Self.markdownCell)
            .map { $0.hasPrefix("  ") ? "- " + $0.trimmingCharacters(in: .whitespaces) : $0 }
        if let tampering = tamperingRecords { lines += ["", "**" + Self.tamperingLine(tampering) + "**"] }
        lines += ["", "## Worst open items", ""]
        if openCount == 0 {
            lines.append("None.")
        } else if open.isEmpty {
            lines.append("\(openCount) open (not listed: --top 0).")
        } else {
            lines += ["| severity | target | resource | state | open for |", "|---|---|---|---|---|"]
                + open.map { "| \($0.severity.rawValue) | \(Self.markdownCell($0.target)) | \(Self.markdownCell($0.resource)) | "
                    + "\($0.result == .failed ? "failed" : $0.decision.rawValue) | \(Self.duration($0.ageSeconds)) |" }
            if let more = notListed { lines += ["", "… " + more + "."] }
        }
        return lines.joined(separator: "\n")
    }
}
