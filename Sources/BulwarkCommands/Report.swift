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
            var untrusted: Int?
            if let trust = await RecordTrust.of(policy, verification: nil) {
                var kept: [CommitInfo] = []
                var folder: String?
                var keys: [[UInt8]: String] = [:]
                defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
                for commit in history {
                    let signed = try? await policy.signature(of: commit.id)
                    if trust.problem(signed ?? nil, commit: commit.id, folder: &folder, trustedKeys: &keys) == nil { kept.append(commit) }
                }
                untrusted = history.count - kept.count
                history = kept
            }
            let entries = history.reversed().compactMap(RemediationReport.Entry.init)
            var report = RemediationReport(entries: entries, since: since.flatMap { Log.parseSince($0, now: Date()) },
                                           now: Date(), top: top)
            report.untrustedRecords = untrusted
            switch output {
            case .json: console.json(report)
            case .text: console.print(report.text(source: "\(repository.displayURL) \(repository.auditBranch)"))
            case .markdown: console.print(report.markdown(source: "\(repository.displayURL) \(repository.auditBranch)"))
            }
        }
    }
}
