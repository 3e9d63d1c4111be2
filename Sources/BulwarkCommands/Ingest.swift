internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Ingest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ingest",
            abstract: "Read scanners' findings and do what the policy's finding rules say: propose a fix, or name the resources to reconcile.",
            discussion: """
                Formats: ASFF, OCSF 1.x (Prowler's json-ocsf), SARIF 2.1.0, garak report JSONL, OSV (osv-scanner), \
                Trivy and Grype JSON, OpenSCAP XCCDF or ARF results (XML), and Bulwark's generic findings; --content-type or the document's shape decides. \
                The same code path as POST /api/v1/findings. A `propose` rule's change is validated, planned against \
                the live targets and committed on bulwark/proposals/<finding-id> (or, with autoMerge, on the policy branch). \
                Resources a finding names are not fixed here: the next `bulwark apply` or the daemon does that. \
                Exit codes: 0 nothing to do, 2 something was proposed, merged, closed, reopened or is to be reconciled, \
                or a rule's change was not proposed (refused, or it could not be made: a person reads why in the report), 1 error \
                (a document that cannot be read as findings), 64 a usage mistake (the file does not exist or is not a regular file).
                """)

        @Argument(help: "The findings document, or - for standard input.")
        var file: String

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var output: OutputOptions

        @Option(help: "The document's content type (application/sarif+json, application/x-ndjson, …) when its shape is not enough.")
        var contentType: String?

        func validate() throws { try checkNotEmpty(["<file>": file]) }

        func run() async throws {
            let console = Console()
            let bytes = try Self.read(file)
            let document: (format: FindingFormat, findings: [Finding])
            do {
                document = try FindingParser.document(bytes, contentType: contentType)
            } catch {
                throw CommandError("\(file == "-" ? "standard input" : file): \(error.description)")
            }
            let loaded = try await repository.load(console: console, writesRecords: true)
            let intake = FindingIntake(registry: Bulwark.registry(), repository: loaded.repository,
                                       reconciler: Reconciler(registry: Bulwark.registry()))
            let (report, _) = await intake.run(document.findings, format: document.format, state: loaded.state, head: loaded.head)
            // Findings still open past their SLA are announced (once each) to notifiers with `sla-breach`;
            // what cannot be delivered now stays in the outbox for the next apply or the daemon.
            let notifiers = loaded.state.notifiers
            if !notifiers.isEmpty, let outbox = try? Outbox(stateDirectory: repository.stateDirectory, notifiers: notifiers),
               Outbox.enqueueBreaches(report, now: Date(), notifiers: notifiers, folder: outbox.folder) > 0 {
                let delivery = await outbox.deliver(until: .now + .seconds(5))
                if let last = delivery.errors.last {
                    console.warn("\(delivery.pending) notification(s) kept in the outbox for a later run: \(last)")
                }
            }
            switch output.output {
            case .text: console.print(report.text())
            case .json: console.json(report)
            }
            if report.hasActions { throw ExitCode(2) }
        }

        /// The document, at most `FindingParser.maxXMLSize` bytes (one more is read to tell): XML
        /// results may be that large; the parser holds JSON documents to `FindingParser.maxSize`.
        /// A file is read as `apply --plan` reads its plan (`NamedFile`): a path that does not
        /// exist or is not a regular file (a folder, a FIFO) is a usage mistake (exit 64).
        static func read(_ path: String) throws -> [UInt8] {
            let limit = max(FindingParser.maxSize, FindingParser.maxXMLSize)
            guard path == "-" else {
                do {
                    return try NamedFile.read(path, maxSize: limit)
                } catch {
                    switch error {
                    case .cannotOpen: throw ValidationError("\(path) \(error.cause)")
                    case .notRegularFile(let what): throw ValidationError("\(path) is \(what), not a findings file")
                    case .tooLarge: throw CommandError("\(path) is larger than \(limit) bytes; split it")
                    case .cannotRead: throw CommandError("\(path) \(error.cause)")
                    }
                }
            }
            var bytes: [UInt8] = []
            while bytes.count <= limit {
                guard let chunk = try FileHandle.standardInput.read(upToCount: 65_536), !chunk.isEmpty else { break }
                bytes += chunk
            }
            guard bytes.count <= limit else { throw CommandError("standard input is larger than \(limit) bytes; split it") }
            return bytes
        }
    }
}
