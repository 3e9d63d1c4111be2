internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkHost
internal import BulwarkProcess
internal import BulwarkRuntime
internal import BulwarkServer
internal import Dispatch
internal import Foundation
internal import Logging
internal import Prometheus
internal import ServiceLifecycle
internal import Synchronization
internal import UnixSignals

extension Bulwark {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "Run the daemon: reconcile on intervals and on events, serve webhooks, findings, metrics and status.",
            discussion: """
                Each controller runs on its interval (±10% jitter); a controller that fails is retried \
                sooner, the wait doubling per failure up to its interval. The source is checked every \
                --poll seconds (up to 20% sooner, at random, so that a fleet does not poll in lockstep; \
                ls-remote first, fetching only what moved) and when a verified push webhook arrives; a new revision starts a cycle \
                at once, and an invalid one is refused while the last good revision stays in force. \
                Files that host controllers manage are watched (inotify): a change re-observes just the \
                resources that file holds. Findings posted to /api/v1/findings reconcile the resources \
                they name at once, and their first-observed time starts the MTTR clock.

                HTTP: GET /healthz, /readyz, /metrics (Prometheus), /api/v1/status (JSON), / (status \
                page); POST /hooks/git (X-Hub-Signature-256, X-Gitlab-Token, or X-Bulwark-Signature-256 with X-Bulwark-Timestamp), \
                POST /api/v1/findings (generic JSON or ASFF; Authorization: Bearer with the findings token, or \
                X-Bulwark-Signature-256 with X-Bulwark-Timestamp made with the findings secret, never the webhook \
                secret, which GitLab sends in clear; at most 1,000 findings and 100 resources a finding). Errors are JSON. \
                Each signed webhook or finding is taken once, remembered in the state directory (webhook-replays) \
                across restarts.

                Limits: maxChangesPerCycle and maxTargetShare hold over each controller's interval, \
                however many cycles findings and watched files trigger. Connections that send nothing \
                for --idle-timeout seconds are closed; at most --max-connections are open at once.

                SIGTERM or SIGINT: the cycle in flight finishes, its audit commits are pushed, and the \
                process exits 0; a cycle that has not finished --shutdown-grace seconds later (a stuck \
                adapter) is abandoned: the commands it runs (a reload, sshd -t) are killed with their \
                process groups, the process exits 75, and what it committed is pushed by the next run. \
                SIGHUP: the source is checked now (as a push webhook does); the daemon goes on. Exit 1: \
                it could not start (another daemon holds the state directory, the address is in use, the \
                repository cannot be read); the listener is bound before anything else runs, so an \
                address in use changes nothing. Exit 3 (--controller): another live process already runs \
                under this replica name (a cloned VM or state directory, the same --replica twice); the \
                message names it and when its heartbeat expires.

                Under systemd (Type=notify): READY=1 once the HTTP server listens, STATUS= with what \
                /readyz says, WATCHDOG=1 at half of WatchdogSec= while the scheduler runs (a hung \
                scheduler is restarted; an unreachable source is not a hang), STOPPING=1 on SIGTERM. \
                Logs go to the journal natively (--log-format auto), each metadata key a field. Secret \
                files may be systemd credentials ($CREDENTIALS_DIRECTORY, LoadCredential=).
                """)

        /// The exit status when another live process runs under this replica name (documented above).
        static let replicaNameInUse: Int32 = 3
        /// The exit status when the shutdown watchdog abandoned a cycle in flight (EX_TEMPFAIL).
        static let cycleAbandoned: Int32 = 75

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var agent: AgentOptions
        @OptionGroup var fleetController: ControllerOptions

        @Option(help: "Address for HTTP (webhooks, findings, metrics, status). Keep it on loopback unless a proxy with TLS is in front.")
        var listen: String = "127.0.0.1:9420"

        @Option(help: "Seconds between fetches of the source.")
        var poll: Int = 30

        @Option(help: "Milliseconds to wait after a watched file changes, so that a burst of writes is one cycle.")
        var debounce: Int = 100

        @Option(help: "Environment variable holding the push webhook secret.")
        var webhookSecretEnv: String = "BULWARK_WEBHOOK_SECRET"

        @Option(help: "File holding the push webhook secret (instead of the environment).")
        var webhookSecretFile: String?

        @Option(help: ArgumentHelp("File listing agents' webhook URLs (http(s)://HOST:PORT/hooks/git, one a line): a verified push webhook is relayed to each, signed with the same secret, so that agents fetch at once. Read again for each webhook.", valueName: "path"))
        var webhookRelayFile: String?

        @Option(help: "Environment variable holding the bearer token for POST /api/v1/findings.")
        var findingsTokenEnv: String = "BULWARK_FINDINGS_TOKEN"

        @Option(help: "File holding the bearer token for POST /api/v1/findings (instead of the environment).")
        var findingsTokenFile: String?

        @Option(help: "Environment variable holding the secret that signs findings (X-Bulwark-Signature-256 on POST /api/v1/findings). It must differ from the push webhook secret, which does not sign findings.")
        var findingsSecretEnv: String = "BULWARK_FINDINGS_SECRET"

        @Option(help: "File holding the secret that signs findings (instead of the environment).")
        var findingsSecretFile: String?

        @Option(help: ArgumentHelp("A proxy in front whose X-Forwarded-For names the client (an address or a CIDR range; repeat for several). Failed authentications are limited per client address: without this, everyone behind the proxy shares its address. X-Forwarded-For from any other peer is ignored.", valueName: "address"))
        var trustedProxy: [String] = []

        @Option(help: ArgumentHelp("File of findings tokens bound to one source each, a `SOURCE TOKEN` pair a line (`garak …`, `sarif:* …` for every SARIF tool; # comments): a finding of another source posted with one of them is refused (403), so one scanner's token cannot speak for another, whose finding rules may merge policy. Under the secrets folder, as the other secret files.", valueName: "path"))
        var findingsSourceTokens: String?

        @Option(help: "Seconds a connection may stay idle (or take to send a request head) before it is closed.")
        var idleTimeout: Int = 15

        @Option(help: "Connections open at once (default: 4096, or fewer when the descriptor limit is low).")
        var maxConnections: Int?

        @Option(help: "Seconds after SIGTERM before a cycle that has not finished is abandoned.")
        var shutdownGrace: Int = 30

        @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
        var logLevel: String = "info"

        @Option(help: ArgumentHelp("Where logs go: text (standard error), journal (systemd's journal, each metadata key a field such as BULWARK_TARGET), or auto (the journal when standard error is the stream systemd gave the service, else text).", valueName: "auto|text|journal"))
        var logFormat: String = "auto"

        func validate() throws {
            guard Self.address(listen) != nil else { throw ValidationError("--listen takes HOST:PORT, such as 127.0.0.1:9420") }
            guard (1...86400).contains(poll) else { throw ValidationError("--poll takes 1 to 86400 seconds") }
            guard (0...60000).contains(debounce) else { throw ValidationError("--debounce takes 0 to 60000 milliseconds") }
            guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
            guard ["auto", "text", "journal"].contains(logFormat) else { throw ValidationError("--log-format takes auto, text or journal") }
            guard (1...3600).contains(idleTimeout) else { throw ValidationError("--idle-timeout takes 1 to 3600 seconds") }
            guard (1...3600).contains(shutdownGrace) else { throw ValidationError("--shutdown-grace takes 1 to 3600 seconds") }
            if let maxConnections, !(1...1_000_000).contains(maxConnections) {
                throw ValidationError("--max-connections takes 1 to 1000000")
            }
            do { _ = try TrustedProxies(trustedProxy) } catch { throw ValidationError("\(error)") }
            try checkNotEmpty(["--webhook-secret-file": webhookSecretFile, "--webhook-relay-file": webhookRelayFile,
                               "--findings-source-tokens": findingsSourceTokens, "--findings-secret-file": findingsSecretFile])
        }

        static func address(_ text: String) -> (host: String, port: Int)? {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
                return nil
            }
            let host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            return host.isEmpty ? nil : (host, port)
        }

        func secret() throws -> [UInt8]? {
            let value = try NotifierConfig.Secret.commandLine(file: webhookSecretFile ?? Self.credential("webhook-secret", unless: webhookSecretEnv),
                                                              environment: webhookSecretEnv, what: "webhook secret")
            OwnSecrets.register(value)
            return value.map { Array($0.utf8) }
        }

        func findingsToken() throws -> [UInt8]? {
            let value = try NotifierConfig.Secret.commandLine(file: findingsTokenFile ?? Self.credential("findings-token", unless: findingsTokenEnv),
                                                              environment: findingsTokenEnv, what: "findings token")
            OwnSecrets.register(value)
            return value.map { Array($0.utf8) }
        }

        func findingsSecret() throws -> [UInt8]? {
            let value = try NotifierConfig.Secret.commandLine(file: findingsSecretFile ?? Self.credential("findings-secret", unless: findingsSecretEnv),
                                                              environment: findingsSecretEnv, what: "findings secret")
            OwnSecrets.register(value)
            return value.map { Array($0.utf8) }
        }

        /// `--findings-source-tokens`: each line's source and token (every token registered as
        /// Bulwark's own secret, so no message or record shows it).
        func sourceTokens() throws -> [FindingsAuthenticator.SourceToken] {
            guard let findingsSourceTokens else { return [] }
            let path = findingsSourceTokens.hasPrefix("/") ? findingsSourceTokens
                : FileManager.default.currentDirectoryPath + "/" + findingsSourceTokens
            let text: String
            do { text = try NotifierConfig.Secret.file(path).value() } catch {
                throw CommandError("cannot use the findings source tokens file: \(error)")
            }
            let tokens = try Self.sourceTokens(text, file: findingsSourceTokens)
            for bound in tokens { OwnSecrets.register(String(decoding: bound.token, as: UTF8.self)) }
            return tokens
        }

        /// The `SOURCE TOKEN` lines of `text` (`file` names it in errors, which never show a token).
        static func sourceTokens(_ text: String, file: String) throws -> [FindingsAuthenticator.SourceToken] {
            var result: [FindingsAuthenticator.SourceToken] = []
            for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.trimmingCharacters(in: .whitespaces)
                guard !line.isEmpty, !line.hasPrefix("#") else { continue }
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-")
                guard words.count == 2, let source = words.first, !source.isEmpty,
                      source.dropLast(source.hasSuffix("*") ? 1 : 0).allSatisfy(allowed.contains), source != "*" else {
                    throw CommandError("\(file) line \(index + 1): expected `SOURCE TOKEN` (a source such as garak or sarif:*, then its token)")
                }
                let token = Array(words[1].utf8)
                guard !result.contains(where: { $0.token == token }) else {
                    throw CommandError("\(file) line \(index + 1): the same token is given to two sources; give each source its own")
                }
                result.append(.init(source: String(source), token: token))
            }
            guard !result.isEmpty else { throw CommandError("\(file) holds no `SOURCE TOKEN` line") }
            return result
        }

        /// A systemd credential named `name`, when the environment variable does not give the secret.
        static func credential(_ name: String, unless variable: String) -> String? {
            let environment = ProcessInfo.processInfo.environment
            guard environment[variable].map(\.isEmpty) ?? true else { return nil }
            return SystemdCredentials.path(name, environment: environment)
        }

        /// Raises the soft descriptor limit to the hard one, and returns how many connections
        /// the server may hold: at most half the descriptors, keeping 256 for git, adapters and
        /// the state directory.
        static func connectionLimit(requested: Int?) -> Int {
            var limit = rlimit()
            guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return requested ?? 256 }
            if limit.rlim_cur < limit.rlim_max {
                var raised = limit
                raised.rlim_cur = limit.rlim_max
                if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
            }
            let available = Int(clamping: limit.rlim_cur)
            let ceiling = max(16, (available - 256) / 2)
            return min(requested ?? 4096, ceiling)
        }

        func run() async throws {
            // SIGHUP (a terminal closing, `systemctl reload`, an operator's habit) must never end
            // the daemon mid-cycle: from here on it only asks for a check of the source.
            let hangups = await UnixSignalsSequence(trapping: .sighup)
            let level = Logger.Level(rawValue: logLevel) ?? .info
            let environment = ProcessInfo.processInfo.environment
            let journal = logFormat == "journal" || (logFormat == "auto" && JournalLogHandler.stderrIsJournal(environment: environment))
            let journalSocket = environment["BULWARK_JOURNAL_SOCKET"] ?? JournalLogHandler.defaultSocket
            LoggingSystem.bootstrap { label in
                if journal {
                    var handler = JournalLogHandler(label: label, socket: journalSocket)
                    handler.logLevel = level
                    return handler
                }
                var handler = OneLineLogHandler(StreamLogHandler.standardError(label: label))
                handler.logLevel = level
                return handler
            }
            let logger = Logger(label: "bulwark")
            // SIGTERM and SIGINT trapped from here on (`ShutdownWatchdog`): until the services
            // start, a signal ends the process with 0, nothing fetched or changed. Made later, a
            // `systemctl stop` in the first moments (opening the state clone, repairing it) met
            // the default action and ended the process with 143, in the middle of whatever it did.
            let watchdog = ShutdownWatchdog(grace: shutdownGrace, logger: logger)
            if let signal = FaultInjection.signalAtStart { kill(getpid(), signal) }
            let notifier: SystemdNotifier?
            do {
                notifier = try SystemdNotifier(environment: environment)
            } catch {
                logger.warning("not notifying systemd: \(error)")
                notifier = nil
            }
            // Tools Bulwark runs (sshd -t, git, apt) must not speak for it to systemd.
            for name in SystemdNotifier.variables { unsetenv(name) }
            guard let (host, port) = Self.address(listen) else { throw ExitCode.validationFailure }
            if fleetController.controller, agent.selfHost || !agent.targets.isEmpty {
                throw ValidationError("--controller does not go with --self or --target: replicas share the non-host targets")
            }
            let secret = try secret()
            let token = try findingsToken()
            let findingsSecret = try findingsSecret()
            if let findingsSecret, findingsSecret == secret {
                // GitLab sends the webhook secret in clear with every push: it must not sign findings.
                throw ValidationError("the findings secret (\(findingsSecretEnv) or --findings-secret-file) is the push webhook secret; give findings a secret of their own, such as `openssl rand -hex 32`")
            }
            let sourceTokens = try sourceTokens()
            let daemon: Daemon
            // The daemon keeps its meters here; the server emits them as /metrics.
            let metrics = PrometheusCollectorRegistry()
            var leases: LeaseKeeper?
            do {
                var repository = self.repository
                let targets = try agent.prepare(&repository)
                leases = try fleetController.keeper(&repository, logger: logger)
                var runtime = try repository.runtime()
                if targets != nil { runtime.agent = agent.selection }
                if let webhookRelayFile {
                    guard let secret else {
                        throw CommandError("--webhook-relay-file needs the webhook secret (\(webhookSecretEnv) or --webhook-secret-file): agents verify what is relayed with it")
                    }
                    runtime.webhookRelay = try WebhookRelay(file: webhookRelayFile, secret: secret,
                                                            timeout: FaultInjection.relayTimeout ?? WebhookRelay.defaultTimeout)
                }
                if let leases {
                    runtime.leases = leases
                    runtime.configuration.extraTrailers = { leases.trailer(for: $0.target) }
                }
                var settings = Daemon.Settings(poll: .seconds(poll), debounce: .milliseconds(debounce))
                settings.pollJitter = 0.2
                daemon = try Daemon(options: runtime, settings: settings, logger: logger, registry: metrics)
                if let reason = HostAdapter.keepAnswers(in: runtime.configuration.stateDirectory) { logger.warning("\(reason)") }
            } catch {
                Console().error("\(error)")
                throw ExitCode.failure
            }
            if secret == nil {
                logger.warning("no webhook secret (\(webhookSecretEnv) or --webhook-secret-file): POST /hooks/git answers 401")
            }
            // Signed webhooks and findings are taken once, also across restarts.
            let replays = WebhookReplayGuard(stateDirectory: daemon.options.stateDirectory, logger: logger)
            let webhook = secret.map { WebhookVerifier(secret: $0, replays: replays) }
            // Findings are signed with a secret of their own, never the push webhook secret: GitLab
            // sends that one in clear with every push, and in a fleet every host holds it. A
            // finding signed with it is refused with what to configure.
            let findings = FindingsAuthenticator(signer: findingsSecret.map { WebhookVerifier(secret: $0, replays: replays) },
                                                 token: token, sourceTokens: sourceTokens, webhookSecret: secret)
            // Programs Bulwark runs (reload commands, sshd -t, gpgv) do not inherit its secrets.
            unsetenv(webhookSecretEnv)
            unsetenv(findingsTokenEnv)
            unsetenv(findingsSecretEnv)
            if !findings.configured {
                let why = secret != nil ? "; the push webhook secret does not sign findings" : ""
                logger.warning("no findings token (\(findingsTokenEnv) or --findings-token-file) nor findings secret (\(findingsSecretEnv) or --findings-secret-file): POST /api/v1/findings answers 401\(why)")
            }
            for (credential, bytes) in [("webhook secret", secret), ("findings token", token), ("findings secret", findingsSecret)] + sourceTokens.map({ ("findings token of \($0.source)", $0.token) }) {
                if let bytes, bytes.count < WebhookVerifier.unguessableLength {
                    logger.warning("the \(credential) is \(bytes.count) bytes: with fewer than \(WebhookVerifier.unguessableLength), its sender gets 429 along with anyone at its address who sends wrong ones (a guessable secret must stay slow to guess); use a random one such as `openssl rand -hex 32`")
                }
            }
            let connections = Self.connectionLimit(requested: maxConnections)
            let (listening, listened) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            // The reconcile service waits for the listener: an address in use ends the process
            // before anything is fetched or changed (under Restart=on-failure, a pass every few
            // seconds with no endpoint).
            let (bound, bind) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let http = StatusServer.application(
                control: daemon,
                settings: ServerSettings(host: host, port: port, repository: daemon.options.displayURL, webhook: webhook, findings: findings,
                                         idleTimeout: .seconds(idleTimeout), maxConnections: connections,
                                         trustedProxies: try TrustedProxies(trustedProxy)),
                metrics: metrics,
                logger: logger,
                onRunning: {
                    listened.yield()
                    bind.yield()
                })
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                .init(service: http),
                .init(service: ReconcileService(daemon: daemon, bound: bound, hangups: hangups, started: watchdog.servicesStarted)),
            ]
            if let notifier {
                services.append(.init(service: SystemdService(notifier: notifier, daemon: daemon, listening: listening, logger: logger)))
            }
            // Shut down in reverse order: the cycle in flight finishes before the leases are given up.
            if let leases {
                // A name another live process holds is refused before this one takes anything.
                do {
                    try await leases.join()
                } catch {
                    Console().error("\(error)")
                    await leases.close()
                    throw ExitCode(Self.replicaNameInUse)
                }
                watchdog.leaving { await leases.leave() }
                // Another process taking the name later (this one paused past its heartbeat) stops
                // this one after the cycle in flight, which its lost leases keep from changing anything.
                services.insert(.init(service: LeaseService(daemon: daemon, leases: leases), failureTerminationBehavior: .gracefullyShutdownGroup), at: 0)
            }
            let group = ServiceGroup(configuration: .init(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            logger.info("bulwark run", metadata: ["repo": .string(repository.displayURL), "listen": .string(listen),
                                                  "stateDir": .string(repository.stateDirectory),
                                                  "maxConnections": .stringConvertible(connections)])
            if !ServerSettings.isLoopback(host) {
                let warning = "the status server listens on \(listen), not on loopback: anyone who can reach it reads the status, "
                    + "the open drift, readiness and metrics (no authentication, no TLS; any Host header is taken). "
                    + "Listen on 127.0.0.1 and put a TLS proxy with access control in front of it"
                logger.warning("\(warning)")
            }
            defer { withExtendedLifetime(watchdog) {} }
            if let pause = FaultInjection.pauseBeforeServices { try? await Task.sleep(for: pause) }
            do {
                try await group.run()
            } catch {
                Console().error(Self.listenFailure(error, listen: listen) ?? "\(error)")
                // Gives up what this process holds, if the lease service could not (cancelled).
                await leases?.leave()
                throw error is ReplicaNameInUse ? ExitCode(Self.replicaNameInUse) : ExitCode.failure
            }
            logger.info("stopped")
        }
    }
}

extension Bulwark.Run {
    /// The listener's failure said as the option that chose the address: "cannot listen on
    /// 127.0.0.1:9420 (--listen): Address already in use", rather than the service group's
    /// wrapping of NIO's bind error (which names neither). Nil for any other error.
    static func listenFailure(_ error: any Error, listen: String) -> String? {
        let text = "\(error)"
        guard text.contains("bind") else { return nil }
        for code in [EADDRINUSE, EADDRNOTAVAIL, EACCES] {
            let reason = String(cString: strerror(code))
            if text.contains(reason) { return "cannot listen on \(quotedForMessage(listen)) (--listen): \(reason)" }
        }
        return nil
    }
}

/// The reconcile loop as a service: a scheduler (intervals, polling), the file watcher, and the
/// one worker that runs cycles. On graceful shutdown the worker finishes the cycle in flight,
/// then everything left is pushed.
struct ReconcileService: Service {
    let daemon: Daemon
    /// Yields once the HTTP server listens: nothing runs before (see `Run.run`).
    let bound: AsyncStream<Void>
    /// SIGHUP, trapped before anything else started: a check of the source.
    let hangups: UnixSignalsSequence
    /// Called first: the group has trapped SIGTERM and SIGINT (`ShutdownWatchdog`).
    let started: @Sendable () -> Void

    func run() async throws {
        started()
        var listening = false
        for await _ in bound.cancelOnGracefulShutdown() {
            listening = true
            break
        }
        // The listener failed (or a signal came first): nothing was fetched or changed.
        guard listening else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in hangups {
                    daemon.logger.notice("SIGHUP: checking the source now")
                    await daemon.requestSource()
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    let wait = await daemon.tick()
                    try? await Task.sleep(for: wait)
                }
            }
            group.addTask {
                for await _ in daemon.notifications { await daemon.deliverNotifications() }
            }
            if let watcher = daemon.watcher {
                group.addTask {
                    for await change in watcher.changes {
                        switch change {
                        case .path(let path): await daemon.noteChanged(path)
                        case .lost: await daemon.watchedChangesLost()
                        }
                    }
                }
            }
            await withGracefulShutdownHandler {
                for await _ in daemon.wakeups.cancelOnGracefulShutdown() {
                    await daemon.runPending()
                }
            } onGracefulShutdown: {
                daemon.logger.info("shutdown requested: the cycle in flight finishes and its records are pushed")
            }
            group.cancelAll()
            daemon.watcher?.stop()
        }
        await daemon.shutdown()
    }
}

/// Makes sure SIGTERM and SIGINT end the process: the graceful path lets the cycle in flight
/// finish, but an adapter stuck in a system call (a FIFO, a peer that never answers) would hold
/// it forever, and can hold the threads Swift concurrency runs on. So the watchdog is a dispatch
/// signal source on its own queue: `grace` seconds after the signal, if the process is still
/// there, it kills the process groups of the commands still running (a reload left behind would
/// be reparented to init and outlive the daemon), logs, and exits 75: work was abandoned, which
/// a supervisor must be able to tell from a clean stop (records committed so far are pushed by
/// the next run).
///
/// Its signal sources take SIGTERM and SIGINT from the moment it exists, before the service
/// group traps them for the graceful path: a signal in between reached neither, and the daemon
/// went on to start, change systems, and exit 75 at the end of the grace. Until the services
/// have started (`servicesStarted`) a signal ends the process at once, with status 0: nothing
/// has been fetched or changed yet. A controller replica that already took its name
/// (`leaving`) gives it up first, for at most 5 s: a restart under that name is not refused
/// until the heartbeat expires.
final class ShutdownWatchdog {
    private let sources: [any DispatchSourceSignal]
    /// To call once the service group traps the signals and runs the services: a signal from
    /// then on takes the graceful path, and the watchdog only bounds it.
    let servicesStarted: @Sendable () -> Void
    /// What a signal before the services started gives up before the process ends (a replica's name).
    private final class Leave: Sendable {
        let body = Mutex<(@Sendable () async -> Void)?>(nil)
    }
    private let leave = Leave()

    init(grace: Int, logger: Logger) {
        let queue = DispatchQueue(label: "bulwark-shutdown-watchdog")
        let started = Mutex(false)
        servicesStarted = { started.withLock { $0 = true } }
        let leave = self.leave
        sources = [SIGTERM, SIGINT].map { signal in
            let source = DispatchSource.makeSignalSource(signal: signal, queue: queue)
            source.setEventHandler {
                guard started.withLock({ $0 }) else {
                    logger.notice("stopped by a signal before the daemon started; nothing was fetched or changed")
                    // Taken once: a second signal, or the 5 s bound, ends the process at once.
                    guard let leaving = leave.body.withLock({ $0.take() }) else { exit(0) }
                    queue.asyncAfter(deadline: .now() + .seconds(5)) { exit(0) }
                    Task {
                        await leaving()
                        queue.async { exit(0) }
                    }
                    return
                }
                queue.asyncAfter(deadline: .now() + .seconds(grace)) {
                    let killed = BoundedProcess.killRunning()
                    logger.error("the cycle in flight did not finish within \(grace) s of the signal (a stuck adapter?); exiting without it",
                                 metadata: ["killedCommands": .stringConvertible(killed)])
                    exit(Bulwark.Run.cycleAbandoned)
                }
            }
            // Registered (with the kernel) on the queue after `resume`, not at once: a signal in
            // between met the default action and ended the process with 143. Waited for here, so
            // that from the moment this returns a signal takes the path above.
            let registered = DispatchSemaphore(value: 0)
            source.setRegistrationHandler { registered.signal() }
            source.resume()
            if registered.wait(timeout: .now() + .seconds(2)) == .timedOut {
                logger.warning("the handler of signal \(signal) took more than 2 s to be registered")
            }
            return source
        }
    }

    /// Gives `body` the last word when a signal comes before the services started.
    func leaving(_ body: @escaping @Sendable () async -> Void) {
        leave.body.withLock { $0 = body }
    }
}
