public import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkHost
internal import BulwarkFirewall
internal import BulwarkPackages
internal import BulwarkPostgres
internal import BulwarkAWS
internal import BulwarkHTTP

/// `bulwark`: a GitOps reconciler for security configuration.
public struct Bulwark: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bulwark",
        abstract: "Reconcile security configuration from a git repository, verify each fix, and record it in git.",
        discussion: """
            Exit codes: 0 success (plan: in sync), 1 error, 2 (plan, and apply --detailed-exitcode) drift found or \
            remaining, 64 a usage mistake (an unknown option, an invalid branch name).
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
    /// Parses the process's arguments and runs the command (for the executable's entry point).
    public static func runFromCommandLine() async {
        // `bulwark apply | head`: a closed pipe ends printing, not the process (see Console).
        Console.ignoreBrokenPipes()
        await main()
        // The one HTTP client (AWS, notifications) closes its pooled connections before the
        // process ends; a command that failed has already exited with its code.
        try? await HTTP.shutdown()
    }
}
