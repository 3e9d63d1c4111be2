public import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkHost
internal import BulwarkFirewall
internal import BulwarkPackages
internal import BulwarkPostgres
internal import BulwarkAWS
internal import BulwarkHTTP
internal import Foundation

/// `bulwark`: a GitOps reconciler for security configuration.
public struct Bulwark: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bulwark",
        abstract: "Reconcile security configuration from a git repository, verify each fix, and record it in git.",
        discussion: """
            Exit codes: 0 success (plan: in sync), 1 error, 2 (plan, and apply --detailed-exitcode) drift found or \
            remaining, 3 (plan, apply) done against the last fetched revision or with audit commits kept locally \
            (1 and 2 win over 3), 64 a usage mistake (an unknown command or option, an invalid branch name), 75 \
            the state directory is in use by another bulwark process (every command but run, which exits 1 \
            then; 75 from run: a cycle abandoned at shutdown), 130 (apply) interrupted: the fixes in flight \
            finished and were recorded.
            Set NO_COLOR to turn colour off.
            """,
        version: Bulwark.version,
        subcommands: [Demo.self, Init.self, Validate.self, PlanCommand.self, Apply.self, Run.self, Approve.self, Ingest.self, Accept.self, Revert.self, Pause.self, Resume.self, Log.self, Report.self,
                      VerifyAudit.self, Version.self])

    /// This build's version.
    static let version = "0.1.0"

    public init() {}

    /// Every adapter this build knows.
    static func registry() -> Registry {
        var host = HostAdapter.definition()
        host.kinds += PackagesAdapter.kinds()
        return Registry([host, FirewallAdapter.definition(), PostgresAdapter.definition(), AWSAdapter.definition()])
    }
}

/// Output formats shared by the commands.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, json
}

struct OutputOptions: ParsableArguments {
    @Option(help: "Output format: text or json.")
    var output: OutputFormat = .text
}

extension Bulwark {
    /// What the process sets before any other thread runs, so from the entry point's first line,
    /// on the main thread (an async function of this module already runs on another): how many
    /// malloc arenas there can be, which binds only threads that have not allocated yet.
    public static func prepareProcess() {
        if let arenas = MemoryTrimmer.arenaLimit(arguments: CommandLine.arguments) { MemoryTrimmer.limitArenas(to: arenas) }
    }

    /// Parses the process's arguments and runs the command (for the executable's entry point).
    public static func runFromCommandLine() async {
        // `bulwark apply | head`: a closed pipe ends printing, not the process (see Console).
        Console.ignoreBrokenPipes()
        // As `main()` does, but a command's error reaches the terminal as `Console.print` would
        // show it: its message can quote text from outside (a proposal branch's commit, a
        // target's file), and argument-parser writes it to standard error as it is.
        if let unknown = unknownCommand(Array(CommandLine.arguments.dropFirst())) { fail(unknown, code: 64) }
        let command: any ParsableCommand
        do {
            command = try await asyncParseAsRoot()
        } catch {
            // The arguments' own words: argument-parser's usage messages, as they are.
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var command = command
                try command.run()
            }
        } catch is RevisionRefused {
            // Its problems are printed where it was refused.
            exit(withError: ExitCode.failure)
        } catch let failure as PolicyRepository.Failure where failure.isBusy && !(command is Run) {
            // Busy, nothing done: 75 (EX_TEMPFAIL), which a script or a timer can retry, apart
            // from the errors (1). The daemon keeps its documented 1 for "could not start".
            fail(failure.description, code: 75)
        } catch let failure as PolicyRepository.Failure where failure.isUsage {
            // Arguments that do not go with the state directory, or name no repository: a usage
            // error (64), as the README says, without the root command's usage lines.
            fail(failure.description, code: 64)
        } catch {
            let shown = ShownError.shown(error)
            // A usage mistake found as the command ran: its own usage line, as argument-parser
            // gives for one found while parsing (not the root command's `bulwark <subcommand>`).
            if let validation = shown as? ValidationError, !(command is Bulwark) {
                let name = type(of: command)._commandName
                FileHandle.standardError.write(Data(("\(Console.errorPrefix) \(validation.message)\nUsage: " + usageString(for: type(of: command))
                    + "\n  See 'bulwark \(name) --help' for more information.\n").utf8))
                exit(withError: ExitCode.validationFailure)
            }
            exit(withError: shown)
        }
        // The one HTTP client (AWS, notifications) closes its pooled connections before the
        // process ends; a command that failed has already exited with its code.
        try? await HTTP.shutdown()
    }
}

extension Bulwark {
    /// Ends the process with `Error: message` (`Console.errorPrefix`, control characters escaped) and `code`, without
    /// argument-parser's usage lines.
    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data((Console.errorPrefix + " " + TerminalText.printable(message, colour: false) + "\n").utf8))
        exit(withError: ExitCode(code))
    }

    /// Why `arguments` name no command (`bulwark plna --repo R`, which argument-parser calls an
    /// unknown option '--repo'), with the command probably meant; nil when they name one.
    static func unknownCommand(_ arguments: [String]) -> String? {
        let words = arguments.first == "help" ? Array(arguments.dropFirst()) : arguments
        guard let first = words.first, !first.hasPrefix("-"), first != "help" else { return nil }
        let names = configuration.subcommands.map { $0._commandName }
        guard !names.contains(first) else { return nil }
        let quoted = TerminalText.printable(quotedForMessage(first), colour: false)
        let near = names.map { (name: $0, distance: editDistance($0, first.lowercased())) }.min { $0.distance < $1.distance }
        let hint = near.flatMap { $0.distance <= 2 ? " did you mean '\($0.name)'?" : nil } ?? ""
        return "unknown command '\(quoted)';\(hint) commands: \(names.joined(separator: ", "))"
    }

    /// Levenshtein distance, for the command names (a dozen short words).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1] + Array(repeating: 0, count: b.count)
            for (j, y) in b.enumerated() {
                current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// A command's error as it is shown: control and bidirectional characters in its message written
/// as escapes (`TerminalText.printable`). Errors argument-parser reads itself (an exit code, a
/// request for help, a validation message) keep their meaning.
struct ShownError: Error, CustomStringConvertible {
    let description: String

    static func shown(_ error: any Error) -> any Error {
        switch error {
        case is ExitCode, is CleanExit: return error
        case let validation as ValidationError: return ValidationError(TerminalText.printable(validation.message, colour: false))
        default:
            let message = (error as? any LocalizedError)?.errorDescription ?? String(describing: error)
            let shown = TerminalText.printable(message, colour: false)
            return shown == message ? error : ShownError(description: shown)
        }
    }
}
