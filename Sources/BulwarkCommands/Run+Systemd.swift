internal import BulwarkRuntime
internal import Foundation
internal import Logging
internal import ServiceLifecycle

/// systemd supervision of `bulwark run` under `Type=notify`: `READY=1` once the HTTP server
/// listens (the state directory is owned by then), `STATUS=` with what `/readyz` says,
/// `WATCHDOG=1` at half of `WatchdogSec=` for as long as the scheduler runs, and `STOPPING=1`
/// when a graceful shutdown starts. A scheduler that stops ticking stops the watchdog, so
/// systemd restarts a hung daemon; a source that cannot be reached does not (a restart would
/// not help, and `/readyz` already says so).
struct SystemdService: Service {
    let notifier: SystemdNotifier
    let daemon: Daemon
    let listening: AsyncStream<Void>
    let logger: Logger

    func run() async throws {
        var started = false
        await withGracefulShutdownHandler {
            for await _ in listening.cancelOnGracefulShutdown() {
                started = true
                break
            }
            guard started else { return }
            let (ready, reason) = await daemon.readiness()
            notify(["READY": "1", "MAINPID": String(getpid()), "STATUS": ready ? reason : "starting: \(reason)"])
            let period = notifier.watchdog.map { $0 / 2 } ?? .seconds(5)
            var reportedStall = false
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                try? await Task.sleep(for: period)
                guard !Task.isCancelled && !Task.isShuttingDownGracefully else { break }
                if let stalled = await daemon.stalled() {
                    // No WATCHDOG=1: systemd restarts the service once WatchdogSec= passes.
                    if !reportedStall { logger.error("watchdog not fed: \(stalled)") }
                    reportedStall = true
                    notify(["STATUS": "stalled: \(stalled)"])
                    continue
                }
                reportedStall = false
                let (_, reason) = await daemon.readiness()
                var message = ["STATUS": reason]
                if notifier.watchdog != nil { message["WATCHDOG"] = "1" }
                notify(message)
            }
        } onGracefulShutdown: {
            notify(["STOPPING": "1", "STATUS": "stopping: the cycle in flight finishes and its records are pushed"])
        }
    }

    private func notify(_ fields: [String: String]) {
        do {
            try notifier.send(fields)
        } catch {
            logger.warning("\(error)")
        }
    }
}
