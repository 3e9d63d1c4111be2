internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkGit
internal import Foundation

/// Where the policy lives and where Bulwark keeps its clone.
struct RepositoryOptions: ParsableArguments {
    @Option(help: "The policy repository: a path or a URL.")
    var repo: String

    @Option(help: "The branch that holds the desired state.")
    var branch: String = "main"

    @Option(help: "The branch audit records are committed to.")
    var auditBranch: String = "bulwark/audit"

    @Option(help: "Where Bulwark keeps its clone and lock (default: $BULWARK_STATE_DIR or ~/.local/state/bulwark/<repo>).")
    var stateDir: String?

    func validate() throws {
        guard !repo.isEmpty else { throw ValidationError("--repo must not be empty") }
        for name in [branch, auditBranch] where name.isEmpty || name.contains("..") || name.hasPrefix("/") || name.contains(" ") {
            throw ValidationError("'\(name)' is not a valid branch name")
        }
    }

    /// A local path made absolute (libgit2 resolves relative paths against its own cwd rules).
    var url: String {
        if repo.contains("://") || (repo.contains("@") && repo.contains(":")) { return repo }
        let absolute = repo.hasPrefix("/") ? repo : FileManager.default.currentDirectoryPath + "/" + repo
        return URL(fileURLWithPath: absolute).standardizedFileURL.path
    }

    var stateDirectory: String {
        if let stateDir { return stateDir }
        let env = ProcessInfo.processInfo.environment
        if let dir = env["BULWARK_STATE_DIR"], !dir.isEmpty { return dir }
        let base = env["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (env["HOME"] ?? NSTemporaryDirectory()) + "/.local/state"
        let name = (url as NSString).lastPathComponent.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        return "\(base)/bulwark/\(name.isEmpty ? "repo" : name)-\(AuditID.stable(url).prefix(8).lowercased())"
    }

    var configuration: PolicyRepository.Configuration {
        var author = Signature(name: "Bulwark", email: "bulwark@localhost")
        let env = ProcessInfo.processInfo.environment
        if let name = env["BULWARK_AUTHOR_NAME"], !name.isEmpty { author.name = name }
        if let email = env["BULWARK_AUTHOR_EMAIL"], !email.isEmpty { author.email = email }
        return .init(url: url, branch: branch, auditBranch: auditBranch, stateDirectory: stateDirectory, author: author)
    }
}

/// A revision loaded and validated from the policy repository.
struct LoadedRevision {
    var repository: PolicyRepository
    var state: DesiredState
    var head: ObjectID

    /// Observes and plans, with the flap breaker fed from the audit branch. Prints the problems
    /// and exits 1 when the revision turns out unsafe on a target: nothing acts on it.
    func plan(_ reconciler: Reconciler, console: Console) async throws -> Plan {
        let longest = state.controllers.values.map(\.flapPeriod).max() ?? .seconds(3600)
        let history = try await repository.recentFixes(since: reconciler.clock().addingTimeInterval(-Double(longest.components.seconds)))
        do {
            return try await reconciler.plan(state, history: history)
        } catch {
            console.error("revision \(head.short) is refused; nothing was changed.")
            console.print(error.description, to: .standardError)
            throw ExitCode.failure
        }
    }
}

extension RepositoryOptions {
    /// Opens the clone, fetches, and validates the head revision. Prints the problems and exits 1
    /// when the revision is invalid: nothing acts on it.
    func load(console: Console) async throws -> LoadedRevision {
        let repository = try PolicyRepository(configuration)
        let (head, stale) = try await repository.sync()
        if let stale { console.warn(stale) }
        let files = try await repository.files(at: head)
        do {
            let state = try DesiredStateLoader(registry: Bulwark.registry()).load(files, revision: head.hex)
            for warning in state.warnings { console.warn(warning.description) }
            return LoadedRevision(repository: repository, state: state, head: head)
        } catch {
            console.error("revision \(head.short) of \(url) \(branch) is refused; nothing was changed.")
            console.print(error.description, to: .standardError)
            throw ExitCode.failure
        }
    }
}
