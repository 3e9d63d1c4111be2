package import BulwarkCore
package import Foundation

/// The finding a record's resource cites (`Bulwark-Finding` and its trailers).
package struct FindingMark: Sendable, Hashable {
    package var id: String
    package var source: String
    package var priority: Priority
    package var firstSeen: Date

    package init(id: String, source: String, priority: Priority, firstSeen: Date) {
        self.id = id
        self.source = source
        self.priority = priority
        self.firstSeen = firstSeen
    }
}

/// MTTR of scanner findings, from the finding's first-seen time (not Bulwark's detection) to
/// the first verified fix of a resource citing it, per source and priority; and the findings
/// fixed after, or still open past, their priority's SLA.
package struct FindingsSummary: Encodable {
    package struct Breach: Encodable {
        package var finding: String
        package var source: String
        package var priority: Priority
        package var firstSeen: Date
        package var slaSeconds: Double
        /// Time to the fix, or the age of a finding still open.
        package var seconds: Double
        package var fixed: Bool
    }

    /// A finding reported open again after its accepted fix was verified: the fix did not hold.
    package struct Reopening: Encodable {
        package var finding: String
        package var source: String
        package var priority: Priority
        package var target: String
        package var resource: String
        package var reopenedAt: Date
        /// When a later verified fix citing the finding closed it again; nil while it is open.
        package var fixedAgainAt: Date?
    }

    package var fixed: Int
    /// Findings reopened (within `since`), newest first.
    package var reopened: [Reopening]
    package var mttr: RemediationReport.Summary
    package var bySource: [String: RemediationReport.Summary]
    package var byPriority: [String: RemediationReport.Summary]
    package var slaBreaches: [Breach]

    package init(entries: [RemediationReport.Entry], since: Date?, now: Date, sla: SLAPolicy) {
        var first: [String: (mark: FindingMark, seconds: Double)] = [:]
        var open: [String: FindingMark] = [:]
        var reopenings: [Reopening] = []
        for entry in entries {
            guard let mark = entry.finding else { continue }
            if entry.reopened {
                if since.map({ entry.detectedAt >= $0 }) ?? true {
                    reopenings.append(Reopening(finding: mark.id, source: mark.source, priority: mark.priority, target: entry.target,
                                                resource: entry.resource, reopenedAt: entry.detectedAt, fixedAgainAt: nil))
                }
                continue
            }
            if entry.result == .verified, let verified = entry.verifiedAt {
                for index in reopenings.indices where reopenings[index].finding == mark.id && reopenings[index].fixedAgainAt == nil
                    && reopenings[index].target == entry.target && reopenings[index].resource == entry.resource {
                    reopenings[index].fixedAgainAt = verified
                }
                open[mark.id] = nil
                if first[mark.id] == nil { first[mark.id] = (mark, max(0, verified.timeIntervalSince(mark.firstSeen))) }
            } else if first[mark.id] == nil, entry.decision != .waived {
                open[mark.id] = mark
            }
        }
        reopened = reopenings.sorted { $0.reopenedAt > $1.reopenedAt }
        let counted: [(mark: FindingMark, seconds: Double)] = first.values.filter { item in since.map { item.mark.firstSeen >= $0 } ?? true }
        fixed = counted.count
        mttr = RemediationReport.Summary(counted.map { $0.seconds })
        bySource = Dictionary(grouping: counted, by: { $0.mark.source }).mapValues { RemediationReport.Summary($0.map { $0.seconds }) }
        byPriority = Dictionary(grouping: counted, by: { $0.mark.priority.rawValue }).mapValues { RemediationReport.Summary($0.map { $0.seconds }) }
        var breaches: [Breach] = []
        for (mark, seconds) in counted {
            let limit = sla.limit(mark.priority).timeInterval
            if seconds > limit {
                breaches.append(Breach(finding: mark.id, source: mark.source, priority: mark.priority, firstSeen: mark.firstSeen,
                                       slaSeconds: limit, seconds: RemediationReport.seconds(seconds), fixed: true))
            }
        }
        for mark in open.values {
            let limit = sla.limit(mark.priority).timeInterval
            let age = now.timeIntervalSince(mark.firstSeen)
            if age > limit {
                breaches.append(Breach(finding: mark.id, source: mark.source, priority: mark.priority, firstSeen: mark.firstSeen,
                                       slaSeconds: limit, seconds: RemediationReport.seconds(age), fixed: false))
            }
        }
        slaBreaches = breaches.sorted { ($0.priority, -$0.seconds) < ($1.priority, -$1.seconds) }
    }

    func line(_ s: RemediationReport.Summary) -> String {
        "\(s.fixes) fix\(s.fixes == 1 ? "" : "es"), p50 \(RemediationReport.duration(s.p50Seconds)), p90 \(RemediationReport.duration(s.p90Seconds)), max \(RemediationReport.duration(s.maxSeconds))"
    }

    /// The report's lines about findings (none when no record cites a finding).
    package func lines() -> [String] {
        guard fixed > 0 || !slaBreaches.isEmpty || !reopened.isEmpty else { return [] }
        var lines = ["Findings MTTR (first seen by the scanner to verified fix): " + line(mttr)]
        for (title, groups) in [("source", bySource), ("priority", byPriority)] where !groups.isEmpty {
            lines.append("Findings by \(title):")
            for key in groups.keys.sorted() { lines.append("  \(key)  " + line(groups[key]!)) }
        }
        lines.append(slaBreaches.isEmpty ? "SLA breaches: none." : "SLA breaches:")
        for breach in slaBreaches {
            lines.append("  \(breach.priority.rawValue)  \(breach.source)  \(breach.finding)  "
                         + (breach.fixed ? "fixed after \(RemediationReport.duration(breach.seconds))" : "open for \(RemediationReport.duration(breach.seconds))")
                         + " (SLA \(RemediationReport.duration(breach.slaSeconds)))")
        }
        if !reopened.isEmpty {
            lines.append("Reopened after a verified fix (the fix did not hold):")
            for item in reopened {
                lines.append("  \(item.priority.rawValue)  \(item.source)  \(item.finding)  \(item.target) \(item.resource)  reopened \(Timestamp.format(item.reopenedAt))"
                             + (item.fixedAgainAt.map { ", fixed again \(Timestamp.format($0))" } ?? ", open"))
            }
        }
        return lines
    }
}
