internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkPostgres
internal import BulwarkRuntime
internal import Foundation
internal import Logging
internal import ServiceLifecycle

/// A controller replica (`run --controller`): shares the non-host targets with other replicas
/// through leases in PostgreSQL.
struct ControllerOptions: ParsableArguments {
    @Flag(help: ArgumentHelp("Run as one of several controller replicas: reconcile the non-host targets (AWS, PostgreSQL, firewalls) this replica holds a lease on (needs --lease-dsn). Records go to bulwark/audit-replicas/<replica>."))
    var controller = false

    @Option(help: ArgumentHelp("The PostgreSQL holding the leases: postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full|require|disable (disable only on loopback). No password in it.", valueName: "url"))
    var leaseDsn: String?

    @Option(help: ArgumentHelp("File holding the lease database's password (default: $BULWARK_LEASE_PASSWORD).", valueName: "path"))
    var leasePasswordFile: String?

    @Option(help: "Seconds a lease lasts without renewal: a dead replica's targets move after at most this plus two renewals (a third of it each).")
    var leaseTtl: Int = 15

    @Option(help: ArgumentHelp("This replica's name, unique among the replicas (default: the state directory's instance name, the host name and a random suffix made once). A second process under a name whose heartbeat is live is refused (exit 3).", valueName: "name"))
    var replica: String?

    func validate() throws {
        try checkNotEmpty(["--lease-password-file": leasePasswordFile])
        guard controller else {
            if leaseDsn != nil { throw ValidationError("--lease-dsn goes with --controller") }
            return
        }
        guard leaseDsn != nil else { throw ValidationError("--controller needs --lease-dsn: leases are what keep two replicas off one target") }
        guard (3...3600).contains(leaseTtl) else { throw ValidationError("--lease-ttl takes 3 to 3600 seconds") }
        if let replica, !AuditTrail.isValidInstance(replica) {
            throw ValidationError("--replica takes letters, digits, '-' and '.' (at most 64)")
        }
    }

    /// The lease keeper of this replica, nil without --controller; points `repository` at the
    /// replica's own audit ref.
    func keeper(_ repository: inout RepositoryOptions, logger: Logger) throws -> LeaseKeeper? {
        guard controller, let leaseDsn else { return nil }
        let password = try NotifierConfig.Secret.commandLine(file: leasePasswordFile, environment: "BULWARK_LEASE_PASSWORD",
                                                              what: "lease database password")
        let settings = try PostgresLeaseStore.Settings(dsn: leaseDsn, password: password)
        // The lease database's password may go to that server only (it may be a managed target too).
        OwnSecrets.register(password, destination: "\(settings.host):\(settings.port)")
        let store = PostgresLeaseStore(settings)
        // The default is the state directory's instance name: stable across restarts, so a
        // restarted replica writes to the same ref.
        let name: String
        if let replica {
            name = replica
        } else {
            try FileManager.default.createDirectory(atPath: repository.stateDirectory, withIntermediateDirectories: true)
            name = try AuditTrail.load(stateDirectory: repository.stateDirectory).trail.instance
        }
        repository.auditBranch = try AuditRef.replica(name).branch
        return LeaseKeeper(replica: name, ttl: .seconds(leaseTtl), store: store, logger: logger)
    }
}

extension PostgresLeaseStore: LeaseStore {}

/// The lease rounds of a controller replica: every third of the TTL (±10 %), and a cycle at once
/// for targets newly taken. On graceful shutdown the leases are given up, after the cycle in
/// flight (the reconcile service stops first). Throws `ReplicaNameInUse` when another process
/// took this replica's name (this one was paused past its heartbeat): the process then stops.
struct LeaseService: Service {
    let daemon: Daemon
    let leases: LeaseKeeper

    func run() async throws {
        let period = Double(leases.ttl.components.seconds) / 3
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let taken = await leases.round()
            if let displaced = leases.displaced {
                await leases.leave()
                throw displaced
            }
            if !taken.isEmpty { await daemon.requestAll() }
            let pause = period * Double.random(in: 0.9...1.1)
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(pause)) }
        }
        await leases.leave()
    }
}
