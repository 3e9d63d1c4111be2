package import BulwarkCore
package import Foundation

extension IntakeReport.Item {
    /// Outcomes of a finding that is still open (to be reconciled, or waiting on its proposal).
    package static let openOutcomes: Set<String> = ["reconcile", "proposed", "already-proposed", "not-proposed"]

    /// Whether the finding is still open past its priority's remediation SLA at `now`.
    package func isOpenPastSLA(now: Date) -> Bool {
        guard Self.openOutcomes.contains(outcome), let deadline = Timestamp.parse(slaDeadline) else { return false }
        return deadline < now
    }
}

extension Outbox {
    /// The notifier event for a finding still open past its SLA (`on: [sla-breach]`).
    package static let slaBreachEvent = "sla-breach"

    /// Writes, for each finding of `report` still open past its SLA, one notification per notifier
    /// that announces `sla-breach`, once per finding: a marker in `<state>/sla-breaches` remembers
    /// that it was announced, so the scanner's next report of the same finding is not announced
    /// again. The notifications go through the outbox's own `enqueue` (synced, never replacing an
    /// entry), and the marker is written (synced) only after them: a process killed in between
    /// announces the breach again at the next report rather than never. A finding reported
    /// resolved has its marker removed: the folder holds the open breaches, not every finding
    /// ever late, and a finding that opens again later is announced again. Returns how many
    /// notifications were written.
    package nonisolated static func enqueueBreaches(_ report: IntakeReport, now: Date, notifiers: [NotifierConfig], folder: String) -> Int {
        let markers = (folder as NSString).deletingLastPathComponent + "/sla-breaches"
        func marker(_ item: IntakeReport.Item) -> String { "sla-" + AuditID.stable("sla-breach\u{1}" + item.id).lowercased() }
        var pruned = false
        for item in report.items where item.resolved == true {
            if unlink(markers + "/" + marker(item)) == 0 { pruned = true }
        }
        if pruned { syncFolder(markers) }
        let announcing = notifiers.filter { $0.events.contains(slaBreachEvent) }
        guard !announcing.isEmpty else { return 0 }
        try? FileManager.default.createDirectory(atPath: markers, withIntermediateDirectories: true)
        var count = 0
        // Not announced before (a marker, or anything else by that name: never twice).
        let fresh = report.items.filter { item in
            guard item.isOpenPastSLA(now: now) else { return false }
            let path = markers + "/" + marker(item)
            return !FileManager.default.fileExists(atPath: path) && (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == nil
        }
        // One report announces at most `breachesAnnouncedOneByOne` one by one, and the rest in one
        // summary per notifier: a report of a thousand late findings is not a thousand messages.
        let single = fresh.count <= breachesAnnouncedOneByOne ? fresh : Array(fresh.prefix(breachesAnnouncedOneByOne - 1))
        let summarized = Array(fresh.dropFirst(single.count))
        func announce(_ id: String, body: (NotifierConfig) -> [UInt8], marking items: [IntakeReport.Item]) {
            var written = 0
            for notifier in announcing {
                let entry = Entry(notifier: notifier.name, recordID: id, body: Data(body(notifier)), createdAt: now, attempts: 0)
                if enqueue(entry, folder: folder) { written += 1 }
            }
            count += written
            // Remembered once every notifier's entry is in the outbox (written now, or still there from before).
            let queued = announcing.allSatisfy { FileManager.default.fileExists(atPath: "\(folder)/\(id).\($0.name).json") }
            guard written == announcing.count || queued else { return }
            var marked = false
            for item in items where writeSynced(markers + "/" + marker(item), [], exclusive: true) { marked = true }
            if marked { syncFolder(markers) }
        }
        for item in single {
            announce(marker(item), body: { breachBody(item, format: $0.format, now: now) }, marking: [item])
        }
        if !summarized.isEmpty {
            let id = "sla-" + AuditID.stable("sla-breach-summary\u{1}" + summarized.map(\.id).joined(separator: "\u{1}")).lowercased()
            announce(id, body: { summaryBody(summarized, format: $0.format, now: now) }, marking: summarized)
        }
        return count
    }

    /// How many breaches one report announces one by one (the rest go in one summary).
    package static let breachesAnnouncedOneByOne = 10

    /// The request body announcing many breaches at once: how many, by priority, and the first
    /// few ids (escaped as in `breachBody`).
    static func summaryBody(_ items: [IntakeReport.Item], format: NotifierConfig.Format, now: Date) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var byPriority: [String: Int] = [:]
        for item in items { byPriority[item.priority.rawValue, default: 0] += 1 }
        let counts = byPriority.keys.sorted().map { "\(byPriority[$0] ?? 0) \($0)" }.joined(separator: ", ")
        switch format {
        case .slack:
            func chat(_ text: String) -> String {
                TerminalText.oneLine(text).replacingOccurrences(of: "&", with: "&amp;")
                    .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            }
            let text = "*SLA breach* \(items.count) more findings are open past their SLA (\(counts)), among them "
                + items.prefix(5).map { chat($0.id) }.joined(separator: ", ") + "; see `bulwark report`"
            return Array((try? encoder.encode(["text": text])) ?? Data())
        case .json:
            struct Event: Encodable {
                var event = "bulwark.sla-breach-summary"
                var at: String
                var count: Int
                var byPriority: [String: Int]
                var findings: [String]
            }
            return Array((try? encoder.encode(Event(at: Timestamp.format(now), count: items.count, byPriority: byPriority,
                                                    findings: items.prefix(100).map(\.id)))) ?? Data())
        }
    }

    /// The request body announcing a breach. The finding's fields are the scanner's text: JSON
    /// escapes them, and for chat webhooks `&`, `<` and `>` are escaped so that no finding can
    /// mention a channel or make a link (`<!channel>`, `<https://…|…>`).
    static func breachBody(_ item: IntakeReport.Item, format: NotifierConfig.Format, now: Date) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        switch format {
        case .slack:
            func chat(_ text: String) -> String {
                TerminalText.oneLine(text).replacingOccurrences(of: "&", with: "&amp;")
                    .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            }
            let text = "*SLA breach* \(item.priority.rawValue) finding \(chat(item.id)) from \(chat(item.source)): \(chat(item.control)) on "
                + "\(chat(item.resource)) [\(item.severity.rawValue)], first seen \(item.firstSeen), due \(item.slaDeadline); still open "
                + "(\(item.outcome)\(item.branch.map { " \(chat($0))" } ?? ""))"
            return Array((try? encoder.encode(["text": text])) ?? Data())
        case .json:
            struct Event: Encodable {
                var event = "bulwark.sla-breach"
                var at: String
                var finding: IntakeReport.Item
            }
            return Array((try? encoder.encode(Event(at: Timestamp.format(now), finding: item))) ?? Data())
        }
    }
}
