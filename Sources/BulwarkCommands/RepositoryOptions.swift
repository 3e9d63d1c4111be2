internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import BulwarkHost
internal import Foundation

/// Where the policy lives and where Bulwark keeps its clone.
struct RepositoryOptions: ParsableArguments {
    @Option(name: .customLong("repo"), help: "The policy repository: a path or a URL (default: $BULWARK_REPO).")
    var repoOption: String?

    /// `--repo`, else `$BULWARK_REPO` (empty when neither is set; `validate()` refuses that).
    var repo: String {
        repoOption ?? ProcessInfo.processInfo.environment["BULWARK_REPO"] ?? ""
    }

    @Option(help: "The branch that holds the desired state.")
    var branch: String = "main"

    @Option(help: "The branch audit records are committed to.")
    var auditBranch: String = "bulwark/audit"

    @Option(help: "Where Bulwark keeps its clone and lock (default: $BULWARK_STATE_DIR, else /var/lib/bulwark/<repo>-<hash> as root, else $XDG_STATE_HOME/bulwark/<repo>-<hash> or ~/.local/state/bulwark/<repo>-<hash>; <hash> is of the repository URL without its credentials).")
    var stateDir: String?

    @Option(help: ArgumentHelp("The folder secret files must be in: notifier secretFile and urlFile, --git-password-file, --webhook-secret-file, --findings-secret-file (default: $BULWARK_SECRETS_DIR, else /run/secrets; systemd's $CREDENTIALS_DIRECTORY is allowed too). Exported to adapters as BULWARK_SECRETS_DIR.", valueName: "path"))
    var secretsDir: String?

    @Option(help: ArgumentHelp("SSH private key for an ssh:// or user@host:path repository (ed25519 or ECDSA; default: $BULWARK_SSH_KEY). Its passphrase, if any, comes from $BULWARK_SSH_PASSPHRASE.", valueName: "path"))
    var sshKey: String?

    @Flag(help: "Use the ssh-agent at $SSH_AUTH_SOCK for SSH repositories when no --ssh-key is given.")
    var sshAgent = false

    @Option(help: ArgumentHelp("The known_hosts file holding the SSH server's host key (default: $BULWARK_SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts). An SSH server whose key is not there is refused.", valueName: "path"))
    var sshKnownHosts: String?

    @Option(help: ArgumentHelp("User name for an HTTPS repository (default: the URL's, else x-access-token).", valueName: "name"))
    var gitUsername: String?

    @Option(help: ArgumentHelp("Environment variable holding the HTTPS password or access token.", valueName: "name"))
    var gitPasswordEnv: String = "BULWARK_GIT_PASSWORD"

    @Option(help: ArgumentHelp("File holding the HTTPS password or access token (instead of the environment).", valueName: "path"))
    var gitPasswordFile: String?

    @Option(help: ArgumentHelp("An ssh-keygen allowed_signers file (`principal namespaces=\"git\" key` lines): every policy commit since the last applied revision must be SSH-signed by a key in it, or the revision is refused (default: $BULWARK_TRUSTED_SIGNERS). Without it, signatures are not verified.", valueName: "path"))
    var trustedSigners: String?

    @Option(help: ArgumentHelp("Bulwark's own ed25519 SSH private key (OpenSSH format, no passphrase), under the secrets folder: every audit commit is signed with it, so that `git log --show-signature` with an allowed signers file proves Bulwark wrote each record (default: $BULWARK_SIGNING_KEY).", valueName: "path"))
    var signingKey: String?

    @Option(help: ArgumentHelp("An ssh-keygen allowed_signers file listing the signing keys of the other Bulwarks that write this audit branch (replicas, agents): their records count where a record decides what this one does (a new state directory's baseline, revert, the flap breaker), besides its own --signing-key's; the people of --trusted-signers never do (default: $BULWARK_AUDIT_SIGNERS).", valueName: "path"))
    var auditSigners: String?

    /// `--audit-signers`, else `$BULWARK_AUDIT_SIGNERS`; nil when neither is given.
    var auditSignersPath: String? {
        (auditSigners ?? ProcessInfo.processInfo.environment["BULWARK_AUDIT_SIGNERS"]).flatMap { $0.isEmpty ? nil : $0 }
    }

    @Option(help: ArgumentHelp("Which trusted signers may change which paths: lines of `path-glob principal…` (the last matching line decides; a path no line matches is refused); needs --trusted-signers (default: $BULWARK_TRUST_POLICY).", valueName: "path"))
    var trustPolicy: String?

    private var trustPolicyPath: String? {
        (trustPolicy ?? ProcessInfo.processInfo.environment["BULWARK_TRUST_POLICY"]).flatMap { $0.isEmpty ? nil : $0 }
    }

    @Option(help: ArgumentHelp("An OpenPGP keyring (gpg --export KEYS > FILE): OpenPGP-signed policy commits are verified with gpgv against it alone (default: $BULWARK_TRUSTED_KEYRING). With --trusted-signers too, either kind of signature is accepted.", valueName: "path"))
    var trustedKeyring: String?

    @Option(help: ArgumentHelp("With signatures verified and no revision applied yet from the state directory (a new host or replica): the commit the policy branch must be at or descend from, every commit after it verified (default: $BULWARK_INITIAL_REVISION). Without it only the head's signature can be checked there, and an older signed revision pushed back over the branch cannot be told from the current one.", valueName: "sha"))
    var initialRevision: String?

    private var initialRevisionText: String? {
        (initialRevision ?? ProcessInfo.processInfo.environment["BULWARK_INITIAL_REVISION"]).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Signature verification of the policy, when a trusted signers file or keyring is given.
    var sourceVerification: SourceVerification? {
        let env = ProcessInfo.processInfo.environment
        let signers = (trustedSigners ?? env["BULWARK_TRUSTED_SIGNERS"]).flatMap { $0.isEmpty ? nil : $0 }
        let keyring = (trustedKeyring ?? env["BULWARK_TRUSTED_KEYRING"]).flatMap { $0.isEmpty ? nil : $0 }
        guard signers != nil || keyring != nil else { return nil }
        var verification = SourceVerification(allowedSigners: signers, trustedKeyring: keyring, trustPolicy: trustPolicyPath)
        verification.initialRevision = initialRevisionText.flatMap { ObjectID(hex: $0.lowercased()) }
        return verification
    }

    /// Checks the options (exit 64 on a mistake) and exports the secrets folder to the process
    /// environment as `BULWARK_SECRETS_DIR`, before any secret is read.
    func validate() throws {
        guard !repo.isEmpty else {
            throw ValidationError(repoOption == nil ? "pass --repo (a path or a URL) or set BULWARK_REPO" : "--repo must not be empty")
        }
        for (option, name) in [("--branch", branch), ("--audit-branch", auditBranch)] {
            try Self.checkBranch(name, option: option)
        }
        guard branch != auditBranch else {
            throw ValidationError("--audit-branch must differ from --branch (\(quotedForMessage(branch))): audit records would be committed over the desired state")
        }
        // Given empty (a variable that was not set), a signers file or key would read as not
        // given at all: signatures unverified, records unsigned; an empty --state-dir would be
        // the current folder.
        try checkNotEmpty(["--state-dir": stateDir, "--secrets-dir": secretsDir, "--ssh-key": sshKey, "--ssh-known-hosts": sshKnownHosts,
                           "--git-password-file": gitPasswordFile, "--trusted-signers": trustedSigners, "--signing-key": signingKey,
                           "--audit-signers": auditSigners, "--trust-policy": trustPolicy, "--trusted-keyring": trustedKeyring,
                           "--initial-revision": initialRevision])
        if let auditSignersPath, !FileManager.default.isReadableFile(atPath: auditSignersPath) {
            throw ValidationError("cannot read the audit signers file \(auditSignersPath)")
        }
        if let initialRevisionText {
            guard ObjectID(hex: initialRevisionText.lowercased()) != nil else {
                throw ValidationError("--initial-revision '\(quotedForMessage(initialRevisionText))' is not a full commit id (40 hex digits)")
            }
            guard sourceVerification != nil else {
                throw ValidationError("--initial-revision needs --trusted-signers or --trusted-keyring: it anchors the verification of signatures")
            }
        }
        if trustPolicyPath != nil, sourceVerification == nil {
            throw ValidationError("--trust-policy needs --trusted-signers or --trusted-keyring: rules about signers mean nothing without verified signatures")
        }
        // The folder in effect, exported so that adapters (and this process's secret reads) use the same one.
        let folder = SecretFiles.directories(environment: secretsDir.map { [SecretFiles.variable: $0] }
                                             ?? ProcessInfo.processInfo.environment)[0]
        setenv(SecretFiles.variable, folder.hasPrefix("/") ? folder : FileManager.default.currentDirectoryPath + "/" + folder, 1)
    }

    /// Refuses a branch name git would refuse (libgit2's rules, as `git check-ref-format --branch`).
    static func checkBranch(_ name: String, option: String) throws {
        guard !name.isEmpty, GitLibrary.isValidBranchName(name) else {
            throw ValidationError("\(option) '\(quotedForMessage(name))' is not a valid branch name: git refuses '..', '@{', "
                                  + "spaces, control characters and ~ ^ : ? * [ \\, a part starting with '.' or ending in "
                                  + "'.lock', a name starting with '-' or ending with '/' or '.'")
        }
    }

    /// A local path made absolute (libgit2 resolves relative paths against its own cwd rules).
    var url: String {
        if repo.contains("://") || (repo.contains("@") && repo.contains(":")) { return repo }
        let absolute = repo.hasPrefix("/") ? repo : FileManager.default.currentDirectoryPath + "/" + repo
        return URL(fileURLWithPath: absolute).standardizedFileURL.path
    }

    /// The URL as messages and logs show it: any password in it replaced.
    var displayURL: String { redactedURL(url) }

    var stateDirectory: String {
        if let stateDir { return stateDir }
        let env = ProcessInfo.processInfo.environment
        if let dir = env["BULWARK_STATE_DIR"], !dir.isEmpty { return dir }
        return Self.defaultStateDirectory(url: url, environment: env, isRoot: geteuid() == 0)
    }

    /// `/var/lib/bulwark/<repo>-<hash>` for root (a service), else under `$XDG_STATE_HOME` or
    /// `~/.local/state`; `<repo>` is the repository's name and a hash of its URL (without credentials).
    static func defaultStateDirectory(url: String, environment env: [String: String], isRoot: Bool) -> String {
        let base = isRoot ? "/var/lib" : env["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (env["HOME"] ?? NSTemporaryDirectory()) + "/.local/state"
        let name = (url as NSString).lastPathComponent.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        let safe = name.isEmpty || name.allSatisfy({ $0 == "." }) ? "repo" : name
        // The hash of the URL without its credentials: a token rotated in the URL keeps the folder.
        return "\(base)/bulwark/\(safe)-\(AuditID.stable(Redaction.withoutUserinfo(url)).prefix(8).lowercased())"
    }

    /// What the engine (the daemon) is given: the repository resolved from the flags.
    func runtime() throws -> RuntimeOptions {
        var settings = try configuration()
        settings.writesRecords = true
        return RuntimeOptions(configuration: settings, displayURL: displayURL,
                              sourceVerification: sourceVerification, registry: Bulwark.registry())
    }

    func configuration() throws -> PolicyRepository.Configuration {
        // libgit2 sends a password written in the URL before it asks Bulwark for one.
        if let password = URLComponents(string: url)?.password, !password.isEmpty, RemoteAccess.sendsInClearText(to: url) {
            throw CommandError("--repo \(displayURL) carries a password over plain http to another machine, which would send it "
                               + "in clear text; use https, and --git-password-env or --git-password-file")
        }
        var author = Signature(name: "Bulwark", email: "bulwark@localhost")
        let env = ProcessInfo.processInfo.environment
        if let name = env["BULWARK_AUTHOR_NAME"], !name.isEmpty { author.name = name }
        if let email = env["BULWARK_AUTHOR_EMAIL"], !email.isEmpty { author.email = email }
        var configuration = PolicyRepository.Configuration(url: url, branch: branch, auditBranch: auditBranch, stateDirectory: stateDirectory,
                                                           author: author, access: try access(), signer: try auditSigner())
        configuration.auditSigners = auditSignersPath.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
        return configuration
    }

    /// Credentials and host keys for the remote, read now from files and the environment; none
    /// of it is stored, logged or recorded.
    func access() throws -> RemoteAccess {
        let env = ProcessInfo.processInfo.environment
        var access = RemoteAccess(username: gitUsername, useAgent: sshAgent)
        let passwordFile = gitPasswordFile ?? (env[gitPasswordEnv] == nil ? SystemdCredentials.path("git-password", environment: env) : nil)
        access.password = try NotifierConfig.Secret.commandLine(file: passwordFile, environment: gitPasswordEnv, what: "git password")
        // Bulwark's own credentials, remembered so that no policy sends one to a target (`OwnSecrets`).
        OwnSecrets.register(access.password)
        OwnSecrets.registerEnvironment(env)
        OwnSecrets.registerURLPassword(repo)
        for credential in ["webhook-secret", "findings-token", "findings-secret"] {
            if let path = SystemdCredentials.path(credential, environment: env) {
                OwnSecrets.register(try? String(contentsOfFile: path, encoding: .utf8))
            }
        }
        if let key = sshKey ?? env["BULWARK_SSH_KEY"].flatMap({ $0.isEmpty ? nil : $0 }) ?? SystemdCredentials.path("ssh-key", environment: env) {
            guard FileManager.default.isReadableFile(atPath: key) else { throw CommandError("cannot read SSH key \(key)") }
            access.sshKey = .init(privateKey: key, passphrase: env["BULWARK_SSH_PASSPHRASE"].flatMap { $0.isEmpty ? nil : $0 })
            // libgit2 reads the key itself; its text is remembered so that no policy sends it anywhere.
            OwnSecrets.register(access.sshKey?.passphrase)
            OwnSecrets.register(try? String(contentsOfFile: key, encoding: .utf8))
        }
        if let endpoint = sshEndpoint(url) {
            let explicit = sshKnownHosts ?? env["BULWARK_SSH_KNOWN_HOSTS"].flatMap { $0.isEmpty ? nil : $0 }
            let path = explicit ?? (env["HOME"] ?? "/root") + "/.ssh/known_hosts"
            if explicit != nil || FileManager.default.fileExists(atPath: path) {
                let known = try KnownHosts(path: path)
                access.hostKeyCheck = { host, key in known.check(host: host, port: endpoint.port, key: key) }
            }
        }
        return access
    }
}

/// A revision refused before anything acted on it (invalid, untrusted, or unsafe on a target),
/// its problems already printed: exit 1, and with `plan --output json` or `apply --output json`
/// a document that says so, so that a script reading the JSON gets the errors, not nothing.
struct RevisionRefused: Error, CustomStringConvertible {
    var revision: ObjectID
    var errors: [String]
    /// The refusal's record, when this run committed it (apply; plan records nothing).
    var recorded: RevisionRefusal.Recorded? = nil
    var description: String { "revision \(revision.short) is refused" }
}

/// A revision loaded and validated from the policy repository.
struct LoadedRevision {
    var repository: PolicyRepository
    var state: DesiredState
    var head: ObjectID
    /// Approvals as git proves them, and what weakened since the last applied revision.
    var provenance = Provenance()
    /// Signature checks of the source (`--trusted-signers`, `--trusted-keyring`), nil without them.
    var verification: SourceVerification?
    /// Why the origin could not be fetched, when the last fetched revision was used instead.
    var stale: String?

    /// Observes and plans, with the flap breaker fed from the audit branch. Prints the problems
    /// and exits 1 when the revision turns out unsafe on a target: nothing acts on it. Approvals
    /// the plan refused (`Plan.refusedApprovals`) are recorded as those refused while loading
    /// are (`refusalsRecorded`), or only said where nothing is recorded.
    mutating func plan(_ reconciler: Reconciler, console: Console) async throws -> Plan {
        let since = reconciler.clock().addingTimeInterval(-state.longestFlapPeriod.timeInterval)
        let repository = self.repository
        // Read while the targets are observed (`Reconciler.plan`).
        let peers = PeerRecordVerification(verification)
        let reading = Task { try await repository.recentFixes(since: since, peers: peers) }
        // What the audit branch has open, and when drift last ended (`DriftEpisodes`).
        state.episodes = try await repository.driftEpisodes()
        let planned: Result<Plan, ValidationFailure>
        do throws(ValidationFailure) {
            planned = .success(try await reconciler.plan(state, history: { (try? await reading.value) ?? FixHistory() },
                                                         weakened: provenance.weakened,
                                                         usedApproval: { (try? await repository.usedApproval($0)) == true }))
        } catch {
            planned = .failure(error)
        }
        // A history that could not be read fails the plan, as it did before any target was read:
        // a plan made without it is thrown away.
        _ = try await reading.value
        for rejection in await repository.takePeerRejections() {
            console.warn("record \(rejection.record) on \(rejection.ref) is not counted by the flap breaker: \(rejection.detail)")
        }
        switch planned {
        case .success(let plan):
            for refusal in plan.refusedApprovals {
                console.warn(refusal.reason)
                if recordRefusal, let recorded = await RevisionRefusal.record(of: head, errors: [refusal.reason], in: repository,
                                                                             console: console) {
                    refusalsRecorded.append(recorded)
                }
            }
            return plan
        case .failure(let error):
            console.error("revision \(head.short) is refused; nothing was changed.")
            console.print(error.description, to: .standardError)
            let errors = error.errors.map(\.description)
            let recorded = recordRefusal ? await RevisionRefusal.record(of: head, errors: errors, in: repository, console: console) : nil
            throw RevisionRefused(revision: head, errors: errors, recorded: recorded)
        }
    }

    /// Whether a refusal is committed to the audit branch (apply and the daemon; plan writes nothing).
    var recordRefusal = false
    /// Refused approvals this run recorded while loading (apply): they are the pass's records too.
    var refusalsRecorded: [RevisionRefusal.Recorded] = []
}

extension ExitCode {
    /// `plan` and `apply`: done, but against the last fetched revision (the origin could not be
    /// fetched) or, for `apply`, with audit commits kept locally (not pushed). 1 and 2 win over it.
    static let staleOrUnpushed = ExitCode(3)
}

extension RepositoryOptions {
    /// Opens the clone, fetches, and validates the head revision (or the `revision` pinned by
    /// `apply --revision` / `--plan`, checked against the head). Prints the problems and exits 1
    /// when the revision is invalid: nothing acts on it.
    /// `targets`: a host agent's own targets (see `AgentOptions`); nil for every target.
    func load(console: Console, recordRefusal: Bool = false, writesRecords: Bool = false, revision pin: RevisionPin? = nil,
              reviewed: PlanFile.Reviewed? = nil, targets: Set<String>? = nil) async throws -> LoadedRevision {
        var settings = try configuration()
        settings.writesRecords = recordRefusal || writesRecords
        let repository = try PolicyRepository(settings)
        for repair in await repository.repairs { console.warn(repair) }
        if let reason = HostAdapter.keepAnswers(in: stateDirectory) { console.warn(reason) }
        let (fetched, stale) = try await repository.sync()
        if let stale { console.warn(stale) }
        let head = try await pin?.check(head: fetched, in: repository, branch: branch, stateDirectory: stateDirectory) ?? fetched
        let files = try await repository.files(at: head)
        // Before anything is verified or recorded: a wrong repository is not written to.
        guard DesiredStateLoader.holdsPolicy(files) else {
            let message = "revision \(head.short) of \(displayURL) \(branch) has no desired-state/ or controllers/ folder: "
                + "is --repo the policy repository, and --branch its branch? Nothing was changed or recorded."
            console.error(message)
            throw RevisionRefused(revision: head, errors: [message])
        }
        do {
            if let verification = sourceVerification {
                let outcome = try await verification.verify(head: head, repository: repository, stateDirectory: stateDirectory)
                if let note = outcome.note { console.warn(note) }
            }
            let loader = DesiredStateLoader(registry: Bulwark.registry())
            var state = try loader.load(files, revision: Revision(head))
            if let reviewed, head != fetched {
                try await reviewed.checkBrakes(head: fetched, reviewed: state, in: repository, branch: branch)
            }
            console.warn(state.warnings)
            let provenance = await Provenance.establish(&state, head: head, repository: repository, registry: Bulwark.registry(),
                                                        stateDirectory: stateDirectory, verification: sourceVerification, now: loader.now)
            if let note = provenance.note { console.warn(note) }
            var refusalsRecorded: [RevisionRefusal.Recorded] = []
            if recordRefusal {
                refusalsRecorded = await provenance.recordRefusals(head: head, in: repository, console: console)
            } else {
                for refusal in provenance.refusedApprovals { console.warn(refusal.reason) }
            }
            AgentSelection.restrict(&state, to: targets)
            // A target that is this machine is said, once per run: a policy written for a
            // sandbox whose root became `/` (an unset variable) must not change it unnoticed.
            for (name, target) in state.targets.sorted(by: { $0.key < $1.key }) where target.root?.isMachine == true {
                console.print("note: target `\(name)` is rooted at /: it is this machine", to: .standardError)
            }
            return LoadedRevision(repository: repository, state: state, head: head, provenance: provenance,
                                  verification: sourceVerification, stale: stale, recordRefusal: recordRefusal,
                                  refusalsRecorded: refusalsRecorded)
        } catch {
            // The revision is not at fault: the plan reviewed at it is.
            if error is PlanFile.Reviewed.Stale { throw error }
            console.error("revision \(head.short) of \(displayURL) \(branch) is refused; nothing was changed.")
            console.print("\(error)", to: .standardError)
            let errors = (error as? ValidationFailure)?.errors.map(\.description)
                ?? (error as? SourceVerification.Refusal)?.problems ?? ["\(error)"]
            let recorded = recordRefusal ? await RevisionRefusal.record(of: head, errors: errors, in: repository, console: console) : nil
            throw RevisionRefused(revision: head, errors: errors, recorded: recorded)
        }
    }
}
