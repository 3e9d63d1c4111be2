internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkServer
internal import Foundation
internal import Logging
internal import Prometheus
internal import ServiceLifecycle
internal import UnixSignals

extension Bulwark {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the daemon: reconcile on intervals and on events, serve webhooks, findings, metrics and status.",
            discussion: """
                Each controller runs on its interval (±10% jitter); a controller that fails is retried \
                sooner, the wait doubling per failure up to its interval. The source is fetched every \
                --poll seconds and when a verified push webhook arrives; a new revision starts a cycle \
                at once, and an invalid one is refused while the last good revision stays in force. \
                Files that host controllers manage are watched (inotify): a change re-observes just the \
                resources that file holds. Findings posted to /api/v1/findings reconcile the resources \
                they name at once, and their first-observed time starts the MTTR clock.

                HTTP: GET /healthz, /readyz, /metrics (Prometheus), /api/v1/status (JSON), / (status \
                page); POST /hooks/git (X-Hub-Signature-256, X-Gitlab-Token or X-Bulwark-Signature-256), \
                POST /api/v1/findings (generic JSON or ASFF).

                SIGTERM or SIGINT: the cycle in flight finishes, its audit commits are pushed, and the \
                process exits 0. Exit 1: it could not start (another daemon holds the state directory, \
                the address is in use, the repository cannot be read).
                """)

        @OptionGroup var repository: RepositoryOptions

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

        @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
        var logLevel: String = "info"

        func validate() throws {
            guard Self.address(listen) != nil else { throw ValidationError("--listen takes HOST:PORT, such as 127.0.0.1:9420") }
            guard (1...86400).contains(poll) else { throw ValidationError("--poll takes 1 to 86400 seconds") }
            guard (0...60000).contains(debounce) else { throw ValidationError("--debounce takes 0 to 60000 milliseconds") }
            guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        }

        static func address(_ text: String) -> (host: String, port: Int)? {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
                return nil
            }
            let host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            return host.isEmpty ? nil : (host, port)
        }

        func secret() throws -> [UInt8]? {
            try NotifierConfig.Secret.commandLine(file: webhookSecretFile, environment: webhookSecretEnv, what: "webhook secret")
                .map { Array($0.utf8) }
        }

        func run() async throws {
            let level = Logger.Level(rawValue: logLevel) ?? .info
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            let logger = Logger(label: "bulwark")
            guard let (host, port) = Self.address(listen) else { throw ExitCode.validationFailure }
            let secret = try secret()
            let daemon: Daemon
            do {
                daemon = try Daemon(options: repository,
                                    settings: .init(poll: .seconds(poll), debounce: .milliseconds(debounce)),
                                    logger: logger, registry: PrometheusCollectorRegistry())
            } catch {
                Console().error("\(error)")
                throw ExitCode.failure
            }
            if secret == nil {
                logger.warning("no webhook secret (\(webhookSecretEnv) or --webhook-secret-file): POST /hooks/git answers 401")
            }
            let http = StatusServer.application(control: daemon, host: host, port: port,
                                                verifier: secret.map(WebhookVerifier.init(secret:)), logger: logger)
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: http), .init(service: ReconcileService(daemon: daemon))],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            logger.info("bulwark run", metadata: ["repo": .string(repository.displayURL), "listen": .string(listen),
                                                  "stateDir": .string(repository.stateDirectory)])
            do {
                try await group.run()
            } catch {
                Console().error("\(error)")
                throw ExitCode.failure
            }
            logger.info("stopped")
        }
    }
}

/// The reconcile loop as a service: a scheduler (intervals, polling), the file watcher, and the
/// one worker that runs cycles. On graceful shutdown the worker finishes the cycle in flight,
/// then everything left is pushed.
struct ReconcileService: Service {
    let daemon: Daemon

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    let wait = await daemon.tick()
                    try? await Task.sleep(for: wait)
                }
            }
            if let watcher = daemon.watcher {
                group.addTask {
                    for await path in watcher.paths { await daemon.noteChanged(path) }
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
