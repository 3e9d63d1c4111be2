internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "log",
            abstract: "Show remediation history from the audit branch.",
            discussion: "The same history `git log bulwark/audit` shows, filtered and readable.")

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var output: OutputOptions

        @Option(help: "Only this target.") var target: String?
        @Option(help: "Only this kind (e.g. SSHDConfig).") var kind: String?
        @Option(help: "Only this decision (applied, held, waived, deferred, escalated, reported).") var decision: String?
        @Option(help: "Only records detected since a date (2026-11-01) or a duration ago (24h, 7d).") var since: String?
        @Option(help: "At most this many records.") var limit: Int = 100

        func validate() throws {
            if let since { try Self.validateSince(since) }
            if let decision, Decision(rawValue: decision) == nil {
                throw ValidationError("--decision takes one of \(Decision.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard limit > 0 else { throw ValidationError("--limit must be positive") }
            if let kind { try Self.validateKind(kind) }
        }

        /// The kinds a record can name: the adapters' kinds, and the records of a refused revision
        /// and of a tampered audit branch.
        static var recordKinds: [String] { (Bulwark.registry().kindNames + ["AuditBranch", "Revision"]).sorted() }

        /// Refuses a `--kind` no record can have (exit 64), as a manifest's unknown kind is
        /// refused: a typo otherwise reads as "no records match".
        static func validateKind(_ kind: String) throws {
            let kinds = recordKinds
            guard !kinds.contains(kind) else { return }
            let quoted = quotedForMessage(kind)
            if let match = kinds.first(where: { $0.lowercased() == kind.lowercased() }) {
                throw ValidationError("--kind: unknown kind '\(quoted)'; kinds are case-sensitive: did you mean \(match)?")
            }
            throw ValidationError("--kind: unknown kind '\(quoted)'; known kinds: \(kinds.joined(separator: ", "))")
        }

        /// `--since` as a date, a time, or a duration before `now` (read by `DurationParser`).
        static func since(_ text: String, now: Date) throws(DurationError) -> Date {
            if let date = Timestamp.parse(text) { return date }
            if let day = Timestamp.day(text) { return day }
            return now.addingTimeInterval(-Double(try DurationParser.seconds(text)))
        }

        static func parseSince(_ text: String, now: Date) -> Date? { try? since(text, now: now) }

        /// Refuses a `--since` that is neither a date nor a duration, saying why (exit 64).
        static func validateSince(_ text: String) throws {
            do {
                _ = try since(text, now: Date())
            } catch {
                throw ValidationError("--since takes a date (2026-11-01), a time (2026-11-01T10:00:00Z) or a duration (30m, 24h, 7d): \(error.message)")
            }
        }

        func run() async throws {
            let console = Console()
            let policy = try PolicyRepository(try repository.configuration())
            let (_, stale) = try await policy.sync()
            if let stale { console.warn(stale) }
            let cutoff = since.flatMap { Self.parseSince($0, now: Date()) }
            var entries: [DecisionJSON] = []
            // With a signing key or audit signers, each record shown says whether a trusted key
            // signed it, as `report` counts only those: a forged record must not read as Bulwark's.
            let trust = await RecordTrust.of(policy, verification: nil)
            var folder: String?
            var trustedKeys: [[UInt8]: String] = [:]
            defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
            // Records the origin does not hold yet are marked: read elsewhere, they are not there.
            let keptLocally = try await policy.auditCommitsKeptLocally()
            for commit in try await policy.auditHistory() {
                guard entries.count < limit else { break }
                guard let record = commit.recorded else { continue }
                if let target, record.target != target { continue }
                if let kind, record.resource?.hasPrefix(kind + "/") != true { continue }
                if let decision, record.decision?.rawValue != decision { continue }
                if let cutoff, let detected = record.detectedAt, detected < cutoff { continue }
                var entry = DecisionJSON(record, commit: commit)
                entry.schemaVersion = JSONSchema.version
                if let trust {
                    let signed = try? await policy.signature(of: commit.id)
                    entry.untrusted = trust.problem(signed, commit: commit.id, folder: &folder, trustedKeys: &trustedKeys) != nil
                }
                if keptLocally.contains(commit.id) { entry.keptLocally = true }
                entries.append(entry)
            }
            switch output.output {
            case .json:
                console.json(entries)
            case .text:
                if entries.isEmpty { console.print("No audit records match.") }
                for entry in entries {
                    let outcome = [entry.decision?.rawValue, entry.result?.rawValue].compactMap { $0 }.joined(separator: "/")
                    let mttr = entry.mttrSeconds.map { String(format: " %.0fms", $0 * 1000) } ?? ""
                    let detected = entry.detectedAt.map(Timestamp.format) ?? ""
                    let mark = (entry.untrusted == true ? console.paint("UNTRUSTED ", .red) : "")
                        + (entry.keptLocally == true ? console.paint("LOCAL ", .yellow) : "")
                    // A record of no target (a refused revision, a tampered branch) has no change to
                    // show: it says why on a line of its own.
                    let why = entry.target == "-"
                        // One line, whatever the record holds (its reason is anyone's who can push).
                        ? (entry.reason ?? entry.error).map { "\n           " + console.paint(quotedForMessage($0, limit: 2000), .dim) } ?? ""
                        : ""
                    // The record's id last: what `revert` and `approve` take.
                    // Bulwark's ids are 26 characters; a forged one is cut.
                    let shownID = entry.id.count > 40 ? entry.id.prefix(40) + "…" : entry.id
                    let id = shownID.isEmpty ? "" : "  " + console.paint(TerminalText.printable(shownID, colour: false), .dim)
                    console.print("\(console.paint(String((entry.commit ?? "").prefix(10)), .yellow)) \(mark)\(detected)  \(outcome)\(mttr)  \(entry.summary ?? "")\(id)\(why)")
                }
                let local = entries.filter { $0.keptLocally == true }.count
                if local > 0 {
                    console.warn("\(local) record\(local == 1 ? " is" : "s are") marked LOCAL: kept in \(repository.stateDirectory), "
                                 + "not on the origin yet (the next apply or run pushes \(local == 1 ? "it" : "them")); "
                                 + "no one reading the origin sees \(local == 1 ? "it" : "them")")
                }
                let untrusted = entries.filter { $0.untrusted == true }.count
                if untrusted > 0 {
                    console.warn("\(untrusted) record\(untrusted == 1 ? " is" : "s are") marked UNTRUSTED: no trusted key signed "
                                 + "\(untrusted == 1 ? "its commit" : "their commits") (anyone with push access can write one); report leaves them out")
                }
            }
            // As plan's: history from the last fetched branch, which may lack the newest records.
            if stale != nil { throw ExitCode.staleOrUnpushed }
        }

        /// Detection to verified fix, in seconds.
        static func mttr(_ record: RecordedDecision) -> Double? {
            guard let detected = record.detectedAt, let verified = record.verifiedAt else { return nil }
            return RemediationReport.seconds(max(0, verified.timeIntervalSince(detected)))
        }
    }
}
