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
        for item in report.items where item.isOpenPastSLA(now: now) {
            let id = marker(item)
            let path = markers + "/" + id
            // Announced before (a marker, or anything else by that name: never twice).
            if FileManager.default.fileExists(atPath: path) || (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil {
                continue
            }
            var written = 0
            for notifier in announcing {
                let entry = Entry(notifier: notifier.name, recordID: id, body: Data(breachBody(item, format: notifier.format, now: now)),
                                  createdAt: now, attempts: 0)
                if enqueue(entry, folder: folder) { written += 1 }
            }
            count += written
            // Remembered once every notifier's entry is in the outbox (written now, or still there from before).
            let queued = announcing.allSatisfy { FileManager.default.fileExists(atPath: "\(folder)/\(id).\($0.name).json") }
            if written == announcing.count || queued, writeSynced(path, [], exclusive: true) { syncFolder(markers) }
        }
        return count
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
                AuditRecord.oneLineText(text).replacingOccurrences(of: "&", with: "&amp;")
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
