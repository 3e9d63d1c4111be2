internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    /// The emergency brake: commits `controllers/pause.yaml`, which every pass and every daemon
    /// honours at its next cycle: drift is recorded as deferred and nothing is changed.
    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pause",
            abstract: "Stop every pass and daemon from changing systems, by committing controllers/pause.yaml.",
            discussion: """
                Drift is still observed and recorded (as deferred, once), so the audit branch shows what \
                waits. `bulwark resume` lifts the pause. The commit carries your git identity, which the \
                deferral records name.
                """)

        @OptionGroup var repository: RepositoryOptions

        @Option(help: "Why (recorded in the pause and in every deferral).")
        var reason: String

        func validate() throws { try checkReason(reason) }

        func run() async throws {
            try await PauseFile.commit(paused: true, reason: reason, repository: repository)
        }
    }

    /// Lifts the pause by committing `controllers/pause.yaml` with `paused: false`.
    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "resume",
            abstract: "Let passes change systems again, by committing controllers/pause.yaml with paused: false.")

        @OptionGroup var repository: RepositoryOptions

        @Option(help: "Why the pause can end.")
        var reason: String = "resumed"

        func validate() throws { try checkReason(reason) }

        func run() async throws {
            try await PauseFile.commit(paused: false, reason: reason, repository: repository)
        }
    }
}

enum PauseFile {
    static let path = "controllers/pause.yaml"

    static func commit(paused: Bool, reason: String, repository: RepositoryOptions) async throws {
        let console = Console()
        let policy = try PolicyRepository(try repository.configuration())
        let (head, stale) = try await policy.sync()
        if let stale { throw CommandError(stale) }
        let text = """
            # \(paused ? "Paused" : "Resumed") with bulwark \(paused ? "pause" : "resume"); while paused, no pass changes any system.
            apiVersion: bulwark/v1
            kind: Pause
            metadata: {name: pause}
            spec:
              paused: \(paused)
              reason: \(YAML.doubleQuoted(reason))

            """
        // Already so, for the same reason: the commit would change nothing (an empty commit).
        if try await policy.file(at: head, path: path) == Array(text.utf8) {
            console.print("Already \(paused ? "paused" : "resumed") with this reason: \(path) on \(repository.branch) (\(head.short)) "
                          + "says so; nothing was committed.")
            return
        }
        guard let author = await policy.callerSignature() else {
            throw CommandError("no git identity: set user.name and user.email (git config) or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL")
        }
        let commit = try await policy.commitPolicy(
            [path: Array(text.utf8)],
            message: "\(paused ? "pause" : "resume"): \(reason)\n\nBulwark-\(paused ? "Pause" : "Resume"): \(author.name) <\(author.email)>\n",
            author: author, signer: await policy.callerSigner(), verification: repository.sourceVerification)
        console.print(paused
            ? "Paused as \(author.name) <\(author.email)>: \(path) committed to \(repository.branch) (\(commit.short)). Every pass and daemon stops changing systems at its next cycle."
            : "Resumed as \(author.name) <\(author.email)>: \(path) committed to \(repository.branch) (\(commit.short)).")
    }
}
