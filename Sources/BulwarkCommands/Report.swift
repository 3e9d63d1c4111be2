internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "report",
            abstract: "MTTR, counts and open drift, computed from the audit branch alone.",
            discussion: """
                MTTR is the time from detection to verified fix. Detection is when the drift was first \
                recorded open (held, deferred, escalated, reported or failed) after the last verified fix \
                of that resource on that target, or else when the fixing pass observed it.

                With --signing-key or --audit-signers, only records a key trusted for records signed are \
                counted (anyone who can push to the origin can write a record claiming a fast fix); how \
                many were left out is said, and `bulwark verify-audit` lists them.
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
            var history = try await policy.auditHistory()
            let start = since.flatMap { Log.parseSince($0, now: Date()) }
            var untrusted: Int?
            if let split = await RecordTrust.split(history, in: policy, verification: nil) {
                history = split.trusted
                // Only what would have counted: records (not any commit), in the window asked for.
                untrusted = split.untrusted.compactMap(RemediationReport.Entry.init)
                    .filter { entry in start.map { entry.detectedAt >= $0 } ?? true }.count
            }
            let entries = await policy.reportEntries(history.reversed())
            var report = RemediationReport(entries: entries, since: start, now: Date(), top: top)
            report.untrustedRecords = untrusted
            switch output {
            case .json: console.json(report)
            case .text: console.print(report.text(source: "\(repository.displayURL) \(repository.auditBranch)"))
            case .markdown: console.print(report.markdown(source: "\(repository.displayURL) \(repository.auditBranch)"))
            }
            // As plan's: figures from the last fetched branch, which may lack the newest records.
            if stale != nil { throw ExitCode.staleOrUnpushed }
        }
    }
}
