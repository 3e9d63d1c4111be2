internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "MTTR, counts and open drift, computed from the audit branch alone.",
            discussion: """
                MTTR is the time from detection to verified fix. Detection is when the drift was first \
                recorded open (held, deferred, escalated, reported or failed) after the last verified fix \
                of that resource on that target, or else when the fixing pass observed it.
                """)

        enum Format: String, ExpressibleByArgument, CaseIterable { case text, json, markdown }

        @OptionGroup var repository: RepositoryOptions

        @Option(help: "Only records detected since a date (2026-11-01) or a duration ago (24h, 7d).")
        var since: String?

        @Option(help: "Output format: text, json or markdown.")
        var output: Format = .text

        @Option(help: "How many open items to list.")
        var top: Int = 10

        func validate() throws {
            if let since { try Log.validateSince(since) }
            guard top >= 0 else { throw ValidationError("--top must not be negative") }
        }

        func run() async throws {
            let console = Console()
            let policy = try PolicyRepository(try repository.configuration())
            let (_, stale) = try await policy.sync()
            if let stale { console.warn(stale) }
            let entries = try await policy.auditHistory().reversed().compactMap(RemediationReport.Entry.init)
            let report = RemediationReport(entries: entries, since: since.flatMap { Log.parseSince($0, now: Date()) },
                                           now: Date(), top: top)
            switch output {
            case .json: console.json(report)
            case .text: console.print(report.text(source: "\(repository.displayURL) \(repository.auditBranch)"))
            case .markdown: console.print(report.markdown(source: "\(repository.displayURL) \(repository.auditBranch)"))
            }
        }
    }
}

/// MTTR and counts from audit records, oldest first. Pure: the tests feed it entries directly.
struct RemediationReport: Encodable {
    struct Entry {
        var target: String
        var resource: String
        var controller: String
        var severity: Severity
        var decision: Decision
        var result: RemediationResult?
        var detectedAt: Date
        var verifiedAt: Date?

        init?(_ commit: CommitInfo) {
            guard let target = commit.trailer("Bulwark-Target"), let resource = commit.trailer("Bulwark-Resource"),
                  let decision = commit.trailer("Bulwark-Decision").flatMap(Decision.init(rawValue:)),
                  let detected = commit.trailer("Bulwark-Detected-At").flatMap(Timestamp.parse) else { return nil }
            self.init(target: target, resource: resource, controller: commit.trailer("Bulwark-Controller") ?? "",
                      severity: commit.trailer("Bulwark-Severity").flatMap(Severity.init(rawValue:)) ?? .medium,
                      decision: decision, result: commit.trailer("Bulwark-Result").flatMap(RemediationResult.init(rawValue:)),
                      detectedAt: detected, verifiedAt: commit.trailer("Bulwark-Verified-At").flatMap(Timestamp.parse))
        }

        init(target: String, resource: String, controller: String, severity: Severity, decision: Decision,
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

        var kind: String { String(resource.split(separator: "/").first ?? "") }
    }

    struct Summary: Encodable {
        var fixes: Int
        var p50Seconds: Double?
        var p90Seconds: Double?
        var maxSeconds: Double?

        init(_ durations: [Double]) {
            let sorted = durations.map(RemediationReport.seconds).sorted()
            fixes = sorted.count
            func rank(_ p: Double) -> Double? {
                sorted.isEmpty ? nil : sorted[min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
            }
            p50Seconds = rank(0.5)
            p90Seconds = rank(0.9)
            maxSeconds = sorted.last
        }
    }

    struct OpenItem: Encodable {
        var target: String
        var resource: String
        var severity: Severity
        var decision: Decision
        var result: RemediationResult?
        var openSince: Date
        var ageSeconds: Double
    }

    var schemaVersion = JSONSchema.version
    var generatedAt: Date
    var since: Date?
    var records: Int
    var mttr: Summary
    var byController: [String: Summary]
    var byKind: [String: Summary]
    var bySeverity: [String: Summary]
    var byTarget: [String: Summary]
    var decisions: [String: Int]
    var results: [String: Int]
    var open: [OpenItem]

    init(entries: [Entry], since: Date?, now: Date, top: Int) {
        var fixes: [(entry: Entry, seconds: Double)] = []
        var openSince: [String: Date] = [:]
        var last: [String: Entry] = [:]
        var counted: [Entry] = []
        for entry in entries {
            let key = entry.target + "\u{0}" + entry.resource
            last[key] = entry
            if entry.result == .verified, let verified = entry.verifiedAt {
                let start = min(openSince[key] ?? entry.detectedAt, entry.detectedAt)
                openSince[key] = nil
                if since.map({ entry.detectedAt >= $0 }) ?? true { fixes.append((entry, verified.timeIntervalSince(start))) }
            } else if entry.decision != .waived {
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
        open = openSince.compactMap { key, start -> OpenItem? in
            guard let entry = last[key] else { return nil }
            return OpenItem(target: entry.target, resource: entry.resource, severity: entry.severity, decision: entry.decision,
                            result: entry.result, openSince: start, ageSeconds: Self.seconds(now.timeIntervalSince(start)))
        }
        .sorted { ($0.severity, $0.ageSeconds) > ($1.severity, $1.ageSeconds) }
        .prefix(top).map { $0 }
    }

    /// Seconds as JSON shows them: to the millisecond, so 2.216 and not 2.215999960899353 (times
    /// are stored to the millisecond; their difference in `Double` is not).
    static func seconds(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

    static func duration(_ seconds: Double?) -> String {
        guard let seconds else { return "-" }
        switch seconds {
        case ..<1: return String(format: "%.0f ms", seconds * 1000)
        case ..<60: return String(format: "%.1f s", seconds)
        case ..<3600: return String(format: "%.1f min", seconds / 60)
        case ..<86400: return String(format: "%.1f h", seconds / 3600)
        default: return String(format: "%.1f d", seconds / 86400)
        }
    }

    private func line(_ s: Summary) -> String {
        "\(s.fixes) fix\(s.fixes == 1 ? "" : "es"), p50 \(Self.duration(s.p50Seconds)), p90 \(Self.duration(s.p90Seconds)), max \(Self.duration(s.maxSeconds))"
    }

    func text(source: String) -> String {
        var lines = ["Remediation report for \(source): \(records) records",
                     "MTTR (detection to verified fix): " + line(mttr)]
        for (title, groups) in [("controller", byController), ("kind", byKind), ("severity", bySeverity), ("target", byTarget)]
        where !groups.isEmpty {
            lines.append("By \(title):")
            let width = groups.keys.map(\.count).max() ?? 0
            for key in groups.keys.sorted() {
                lines.append("  " + key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + line(groups[key]!))
            }
        }
        lines.append("Decisions: " + decisions.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                     + (results.isEmpty ? "" : "; results: " + results.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
        lines.append(open.isEmpty ? "Open items: none." : "Worst open items:")
        for item in open {
            lines.append("  \(item.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(item.target)  \(item.resource)  "
                         + "\(item.result == .failed ? "failed" : item.decision.rawValue), open for \(Self.duration(item.ageSeconds))")
        }
        return lines.joined(separator: "\n")
    }

    func markdown(source: String) -> String {
        var lines = ["# Remediation report", "", "Source: `\(source)`, \(records) records.", "",
                     "**MTTR** (detection to verified fix): " + line(mttr), "",
                     "| group | value | fixes | p50 | p90 | max |", "|---|---|---|---|---|---|"]
        for (title, groups) in [("controller", byController), ("kind", byKind), ("severity", bySeverity), ("target", byTarget)] {
            for key in groups.keys.sorted() {
                let s = groups[key]!
                lines.append("| \(title) | \(key) | \(s.fixes) | \(Self.duration(s.p50Seconds)) | \(Self.duration(s.p90Seconds)) | \(Self.duration(s.maxSeconds)) |")
            }
        }
        lines += ["", "| decision | count |", "|---|---|"] + decisions.sorted { $0.key < $1.key }.map { "| \($0.key) | \($0.value) |" }
        lines += ["", "## Worst open items", ""]
        lines += open.isEmpty ? ["None."] : ["| severity | target | resource | state | open for |", "|---|---|---|---|---|"]
            + open.map { "| \($0.severity.rawValue) | \($0.target) | \($0.resource) | \($0.result == .failed ? "failed" : $0.decision.rawValue) | \(Self.duration($0.ageSeconds)) |" }
        return lines.joined(separator: "\n")
    }
}
