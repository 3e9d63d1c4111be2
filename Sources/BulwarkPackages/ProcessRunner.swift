internal import BulwarkProcess

/// apt's and dpkg's runs through the one bounded runner (`BulwarkProcess.BoundedProcess`): no
/// shell, every signal back at its default and none blocked (a service a postinst starts must
/// still stop on SIGTERM), its own process group (a timeout stops apt *and* the dpkg and scripts
/// under it), the environment given, and the end of its output kept, where apt says what failed.
struct ProcessRunner: Sendable {
    struct Result: Sendable {
        var status: Int32
        /// Standard output and error together, in order, at most the last `keep` bytes.
        var output: String
        var timedOut: Bool
    }

    /// Bytes of output kept (the end, where apt and dpkg say what failed).
    static let keep = 64 << 10

    var environment: [String: String]

    /// Runs `executable` with `arguments`; never throws for a non-zero exit (the caller reads
    /// `status`), only when the program cannot be started.
    func run(_ executable: String, _ arguments: [String], timeout: Duration) async throws(PackagesError) -> Result {
        let command = BoundedProcess.Command(executable: executable, arguments: arguments, environment: environment,
                                             timeout: timeout, grace: .seconds(5), maxOutput: Self.keep, keep: .tail)
        do {
            let outcome = try await command.run()
            return Result(status: outcome.status, output: outcome.output, timedOut: outcome.timedOut)
        } catch {
            throw PackagesError(error.description, subject: executable)
        }
    }
}
