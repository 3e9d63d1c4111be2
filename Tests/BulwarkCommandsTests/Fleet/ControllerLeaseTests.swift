@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Logging
import Testing

/// Controller replicas sharing PostgreSQL targets through leases held in a real PostgreSQL.
@Suite(.serialized) struct ControllerLeaseTests {
    static let quiet: Logger = {
        var logger = Logger(label: "test.leases")
        logger.logLevel = .critical
        return logger
    }()

    static func store(_ server: PostgresServer) throws -> PostgresLeaseStore {
        PostgresLeaseStore(try .init(dsn: "postgres://postgres@127.0.0.1:\(server.port)/postgres?sslmode=disable",
                                     password: server.password))
    }

    @Test(.enabled(if: PostgresServer.available))
    func oneHolderPerTargetAndLargerTokensOnTakeover() async throws {
        let server = try PostgresServer()
        let a = try Self.store(server)
        let b = try Self.store(server)
        // An hour: the full suite on a loaded 2-core machine once took more than a minute between two
        // of these queries, and a lease that ran out meanwhile is not what this test is about.
        let first = try #require(try await a.acquire("db-1", holder: "a", ttl: .seconds(3600)))
        #expect(try await b.acquire("db-1", holder: "b", ttl: .seconds(3600)) == nil, "a live lease is not taken")
        #expect(try await a.acquire("db-1", holder: "a", ttl: .seconds(3600)) == first, "renewal keeps the token")
        #expect(try await a.holds("db-1", holder: "a", token: first))
        // The lease runs out (a dead replica): the next taker gets a larger token, the old one is void.
        try server.psql("UPDATE bulwark_leases SET expires_at = now() - interval '1 second' WHERE target = 'db-1'")
        let second = try #require(try await b.acquire("db-1", holder: "b", ttl: .seconds(3600)))
        #expect(second > first)
        #expect(try await !a.holds("db-1", holder: "a", token: first))
        #expect(try await a.acquire("db-1", holder: "a", ttl: .seconds(3600)) == nil)
        #expect(try server.psql("SELECT holder || ' ' || token FROM bulwark_leases") == "b \(second)")
        await a.close()
        await b.close()
    }

    @Test func aPasswordInTheDSNAndCleartextToARemoteHostAreRefused() throws {
        #expect(throws: LeaseStoreError.self) { try PostgresLeaseStore.Settings(dsn: "postgres://u:secret@127.0.0.1/db", password: nil) }
        #expect(throws: LeaseStoreError.self) { try PostgresLeaseStore.Settings(dsn: "postgres://u@db.example/db?sslmode=disable", password: nil) }
        let fine = try PostgresLeaseStore.Settings(dsn: "postgres://u@127.0.0.1:5433/leases?sslmode=disable", password: nil)
        #expect(fine.port == 5433 && fine.database == "leases" && fine.sslmode == "disable")
        #expect(try PostgresLeaseStore.Settings(dsn: "postgres://u@db.example/db", password: nil).sslmode == "verify-full")
    }

    @Test func rendezvousOwnersAreStableAndMoveOnlyFromTheDeadReplica() {
        let targets = (0..<60).map { "db-\($0)" }
        let three = ["r1", "r2", "r3"]
        let owners = Dictionary(uniqueKeysWithValues: targets.map { ($0, LeaseKeeper.owner(of: $0, among: three)!) })
        #expect(Set(owners.values) == Set(three), "every replica gets a share")
        let survivors = ["r1", "r3"]
        for target in targets {
            let now = LeaseKeeper.owner(of: target, among: survivors)!
            if owners[target] != "r2" { #expect(now == owners[target], "a target of a live replica stays where it is") }
        }
    }

    /// Guard: a replica whose lease was taken over between planning and changing stops before the
    /// change; nothing is begun. The same replica, still holding its lease, goes through.
    @Test(.enabled(if: PostgresServer.available))
    func aReplicaThatLostItsLeaseStopsBeforeActing() async throws {
        let server = try PostgresServer()
        let store = try Self.store(server)
        let keeper = LeaseKeeper(replica: "r1", ttl: .seconds(60), store: store, logger: Self.quiet)
        keeper.setCandidates(["db-1", "db-2"])
        await keeper.round()
        #expect(Set(keeper.beginPass().keys) == ["db-1", "db-2"])
        #expect(keeper.trailer(for: "db-1") == "Bulwark-Lease: db-1 \(keeper.held()["db-1"]!)\n")
        let base = MemoryJournal(intentsAhead: 32)
        let journal = LeaseFencedJournal(base: base, leases: keeper)
        #expect(journal.intentsAhead == 1, "with leases, each change's lease is checked right before it")
        #expect(LeaseFencedJournal(base: base, leases: nil).intentsAhead == 32)
        func record(_ target: String) -> AuditRecord {
            AuditRecord(id: "r-\(target)", controller: "postgres", target: target, resource: "PostgresRole/x", kind: "PostgresRole",
                        name: "x", severity: .high, risk: 1, mode: .enforce, decision: .applied, result: nil, reason: nil, changes: [],
                        detectedAt: Date(), appliedAt: nil, verifiedAt: nil, desiredCommit: "0", approver: nil, error: nil)
        }
        try await journal.begin([record("db-2")])
        #expect(await base.open.keys.contains("r-db-2"), "the lease holds: the change goes ahead")
        // Another replica takes db-1 over (its lease had run out, as far as the store knows).
        try server.psql("UPDATE bulwark_leases SET holder = 'r2', token = nextval('bulwark_lease_token') WHERE target = 'db-1'")
        await #expect(throws: LeaseLost.self) { try await journal.begin([record("db-1")]) }
        #expect(await !base.open.keys.contains("r-db-1"), "nothing begun for the lost target")
        #expect(keeper.held()["db-1"] == nil)
        // Taken again by this replica: a new token, and a pass planned under the old one still stops.
        try server.psql("DELETE FROM bulwark_leases WHERE target = 'db-1'")
        await keeper.round()
        #expect(keeper.held()["db-1"] != nil)
        await #expect(throws: LeaseLost.self) { try await journal.begin([record("db-1")]) }
        _ = keeper.beginPass()
        do {
            try await journal.begin([record("db-1")])
        } catch {
            Issue.record("a new pass under the new token was refused: \(error)")
        }
        #expect(await base.open.keys.contains("r-db-1"), "a new pass, under the new token, goes ahead")
        // The store unreachable: nothing is confirmed, nothing is begun.
        try server.stop(mode: "immediate")
        await #expect(throws: LeaseLost.self) { try await journal.begin([record("db-2")]) }
        try server.start()
        // postgres-nio requires a connection closed before it is released (it asserts in debug builds).
        await store.close()
    }
}
