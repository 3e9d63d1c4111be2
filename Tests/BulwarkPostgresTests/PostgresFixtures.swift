import BulwarkCore
import BulwarkPostgres
import BulwarkTestSupport
import Foundation

/// The adapter with the server's folder as the only secrets directory (its password file is `pw`).
func postgresRegistry(_ server: PostgresServer) -> Registry {
    Registry([PostgresAdapter.definition(secretsDirectories: [server.directory])])
}

/// A target `db-1` for the server (loopback, no TLS: the test server offers none) and a
/// controller for every PostgreSQL kind; `target` replaces the target's spec.
func postgresState(_ server: PostgresServer, target: String? = nil, _ manifests: String) throws -> DesiredState {
    let spec = target ?? """
        {adapter: postgres, host: 127.0.0.1, port: \(server.port), user: postgres, database: postgres,
               passwordFile: \(server.passwordFile("db-1")), sslmode: disable}
        """
    let inventory = """
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: db-1}
        spec: \(spec)
        ---
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: postgres}
        spec: {kinds: [PostgresSetting, PostgresRole, PostgresPrivilege, PostgresSuperusers]}
        """
    return try DesiredStateLoader(registry: postgresRegistry(server)).load([
        SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
        SourceFile(path: "desired-state/p.yaml", contents: Array(manifests.utf8)),
    ], revision: "test")
}

func reconcilePostgres(_ state: DesiredState, _ server: PostgresServer, audit: RecordingSink = RecordingSink()) async throws -> (Plan, CycleOutcome) {
    let reconciler = Reconciler(registry: postgresRegistry(server))
    let plan = try await reconciler.plan(state)
    return (plan, await reconciler.apply(plan, state: state, audit: audit))
}
