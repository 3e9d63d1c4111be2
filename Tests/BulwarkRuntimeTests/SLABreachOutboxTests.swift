@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// SLA-breach notifications go through the outbox's own `enqueue`, and the finding's marker is
/// written only once they are in the outbox; a resolved finding's marker is removed.
@Suite struct SLABreachOutboxTests {
    static let notifiers = [NotifierConfig(name: "chat", url: .inline("http://127.0.0.1:9/hook"), format: .slack, events: ["sla-breach"],
                                           location: SourceLocation(file: "notifiers/chat.yaml", line: 1)),
                            NotifierConfig(name: "siem", url: .inline("http://127.0.0.1:9/siem"), format: .json, events: ["sla-breach"],
                                           location: SourceLocation(file: "notifiers/siem.yaml", line: 1))]
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    func report(_ id: String, resolved: Bool = false) -> IntakeReport {
        IntakeReport(format: "ocsf", findings: 1, items: [IntakeReport.Item(
            id: id, source: "ocsf", control: "c", resource: "local", severity: .high, priority: .p2, score: 8,
            firstSeen: "2026-01-01T00:00:00Z", slaDeadline: "2026-01-08T00:00:00Z", rule: "r", action: "propose",
            outcome: resolved ? "closed" : "already-proposed", detail: nil, branch: nil, commit: nil, reconciled: [],
            resolved: resolved ? true : nil)])
    }

    func names(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
    }

    /// Guard: when the notifications cannot be written (here the outbox folder is gone), the
    /// breach is not marked as announced, so the next report announces it; before, the marker
    /// came first and such a breach was never announced. Nothing is left half-written.
    @Test func aBreachWhoseNotificationsCannotBeWrittenIsNotMarkedAndIsAnnouncedNextTime() async throws {
        try await withTemporaryDirectory { dir in
            let outbox = dir + "/outbox"
            #expect(Outbox.enqueueBreaches(report("late-1"), now: Self.now, notifiers: Self.notifiers, folder: outbox) == 0)
            #expect(names(dir + "/sla-breaches").isEmpty, "no marker without the notifications")
            #expect(!FileManager.default.fileExists(atPath: outbox))

            // The outbox is back: the next report of the same finding announces it, to both notifiers, once.
            try FileManager.default.createDirectory(atPath: outbox, withIntermediateDirectories: true)
            #expect(Outbox.enqueueBreaches(report("late-1"), now: Self.now, notifiers: Self.notifiers, folder: outbox) == 2)
            let entries = names(outbox)
            #expect(entries.count == 2 && entries.allSatisfy { $0.hasSuffix(".json") }, "\(entries): no temporary file left")
            #expect(names(dir + "/sla-breaches").count == 1)
            let entry = try JSONDecoder().decode(Outbox.Entry.self, from: Data(contentsOf: URL(fileURLWithPath: outbox + "/" + entries[0])))
            #expect(entry.attempts == 0 && entry.recordID.hasPrefix("sla-"))
            #expect(Outbox.enqueueBreaches(report("late-1"), now: Self.now, notifiers: Self.notifiers, folder: outbox) == 0, "once")
            #expect(names(outbox) == entries)
        }
    }

    /// A resolved finding's marker is removed (the folder does not grow with every finding ever
    /// late); the same finding open past its SLA again is announced again. A finding still open
    /// keeps its marker and is not announced twice.
    @Test func aResolvedFindingsMarkerIsPrunedAndAnOpenOneIsKept() async throws {
        try await withTemporaryDirectory { dir in
            let outbox = dir + "/outbox"
            try FileManager.default.createDirectory(atPath: outbox, withIntermediateDirectories: true)
            #expect(Outbox.enqueueBreaches(report("late-1"), now: Self.now, notifiers: Self.notifiers, folder: outbox) == 2)
            #expect(Outbox.enqueueBreaches(report("late-2"), now: Self.now, notifiers: Self.notifiers, folder: outbox) == 2)
            #expect(names(dir + "/sla-breaches").count == 2)
            // The entries were delivered.
            for name in names(outbox) { try FileManager.default.removeItem(atPath: outbox + "/" + name) }

            #expect(Outbox.enqueueBreaches(report("late-1", resolved: true), now: Self.now, notifiers: Self.notifiers, folder: outbox) == 0)
            #expect(names(dir + "/sla-breaches").count == 1, "late-1's marker is gone, late-2's kept")
            #expect(Outbox.enqueueBreaches(report("late-2"), now: Self.now, notifiers: Self.notifiers, folder: outbox) == 0, "still announced once")
            #expect(Outbox.enqueueBreaches(report("late-1"), now: Self.now, notifiers: Self.notifiers, folder: outbox) == 2,
                    "open again past its SLA: announced again")
            // Pruning needs no notifier that announces breaches.
            #expect(Outbox.enqueueBreaches(report("late-2", resolved: true), now: Self.now, notifiers: [], folder: outbox) == 0)
            #expect(names(dir + "/sla-breaches").count == 1)
        }
    }

    /// A report of many late findings (a scanner's first run, or a token holder's flood) is not a
    /// message per finding: the first nine are announced one by one and the rest in one summary
    /// per notifier; every one is marked, so none is announced again. Ten or fewer are each
    /// announced on their own (the test above).
    @Test func manyLateFindingsInOneReportAreAnnouncedInOneSummary() async throws {
        try await withTemporaryDirectory { dir in
            let outbox = dir + "/outbox"
            try FileManager.default.createDirectory(atPath: outbox, withIntermediateDirectories: true)
            let items = (0..<500).flatMap { report("late-\($0)").items }
            let many = IntakeReport(format: "ocsf", findings: items.count, items: items)
            #expect(Outbox.enqueueBreaches(many, now: Self.now, notifiers: Self.notifiers, folder: outbox) == 2 * 10)
            #expect(names(outbox).count == 20)
            #expect(names(dir + "/sla-breaches").count == 500)
            let bodies = try names(outbox).map { name in
                String(decoding: try JSONDecoder().decode(Outbox.Entry.self, from: Data(contentsOf: URL(fileURLWithPath: outbox + "/" + name))).body,
                       as: UTF8.self)
            }
            #expect(bodies.filter { $0.contains("bulwark.sla-breach-summary") && $0.contains("\"count\":491") }.count == 1, "\(bodies)")
            #expect(bodies.filter { $0.contains("491 more findings are open past their SLA (491 P2)") }.count == 1)
            #expect(bodies.filter { $0.contains("\"event\":\"bulwark.sla-breach\"") }.count == 9)
            #expect(Outbox.enqueueBreaches(many, now: Self.now, notifiers: Self.notifiers, folder: outbox) == 0, "once")
        }
    }
}
