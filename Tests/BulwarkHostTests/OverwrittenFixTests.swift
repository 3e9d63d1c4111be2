import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Synchronization
import Testing

/// The real host driver of a kind, except for what another writer does between Bulwark's write
/// and its verification (`afterFix`, run by the first observation after each fix while
/// `times` lasts), and optionally an observation that always reports `stale` (a fix that does
/// not take, with no other writer).
struct RacedDriver: OverwriteWitness {
    final class Counter: Sendable {
        let fixed = Atomic<Bool>(false)
        let remaining: Atomic<Int>
        init(_ times: Int) { remaining = Atomic(times) }
    }
    let inner: any ResourceDriver
    let counter: Counter
    var afterFix: @Sendable () throws -> Void = {}
    var stale: [String: String]?

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        if counter.fixed.exchange(false, ordering: .relaxed), counter.remaining.load(ordering: .relaxed) > 0 {
            counter.remaining.subtract(1, ordering: .relaxed)
            try afterFix()
        }
        if let stale { return Observation(values: stale.mapValues { .some($0) }) }
        return try await inner.observe(resource, on: target)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        try await inner.apply(changes, to: resource, on: target)
        counter.fixed.store(true, ordering: .relaxed)
    }

    func changedSinceFix(_ resource: Resource, on target: Target) async -> [String] {
        await (inner as? any OverwriteWitness)?.changedSinceFix(resource, on: target) ?? []
    }

    /// A reconciler whose `kind` is this driver around the host adapter's own.
    static func reconciler(_ kind: String, _ make: (any ResourceDriver) -> RacedDriver) -> Reconciler {
        var adapter = HostAdapter.definition()
        for index in adapter.kinds.indices where adapter.kinds[index].name == kind {
            adapter.kinds[index].driver = make(adapter.kinds[index].driver)
        }
        return Reconciler(registry: Registry([adapter]))
    }
}

/// A fix that another writer undoes between Bulwark's write and its verification (issue 11):
/// recorded `failed` naming the file the other writer changed, each time with its own record
/// (it was a change made), and fixed again by the next pass, not held back as a repeated
/// failure. A fix that does not take with no other writer is still recorded once.
@Suite struct OverwrittenFixTests {
    @Test func aFixUndoneByAnotherWriterBeforeItsVerificationIsRecordedAsSuchAndMadeAgainByTheNextPass() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/login.defs"
            try write(path, "PASS_MAX_DAYS 99999\n")
            let counter = RacedDriver.Counter(2)
            // Twice, another tool puts its value back right after Bulwark's write.
            let reconciler = RacedDriver.reconciler("LoginDefs") {
                RacedDriver(inner: $0, counter: counter, afterFix: { try write(path, "PASS_MAX_DAYS 99999\n") })
            }
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 365"))
            let audit = RecordingSink()
            for pass in 1...3 {
                let plan = try await reconciler.plan(state)
                #expect(plan.remediations.map(\.decision) == [.applied], "pass \(pass) plans the fix again")
                _ = await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal())
            }
            let records = audit.records
            #expect(records.map(\.result) == [.failed, .failed, .verified], "\(records.map(\.error))")
            #expect(Set(records.map(\.id)).count == 3, "each change made has its own record")
            for record in records.prefix(2) {
                #expect(record.overwrittenAfterFix)
                #expect(record.error?.contains("/etc/login.defs changed since Bulwark wrote it") == true, "\(record.error ?? "")")
                #expect(record.error?.contains("PASS_MAX_DAYS is 99999") == true)
            }
            #expect(try read(path) == "PASS_MAX_DAYS 365\n")
        }
    }

    @Test func aFixThatDoesNotTakeWithNoOtherWriterIsRecordedOnceAsBefore() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/login.defs"
            try write(path, "PASS_MAX_DAYS 99999\n")
            // The file is fixed, but what is observed never changes (a value the system does not take).
            let reconciler = RacedDriver.reconciler("LoginDefs") {
                RacedDriver(inner: $0, counter: RacedDriver.Counter(0), stale: ["PASS_MAX_DAYS": "99999"])
            }
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 365"))
            let audit = RecordingSink()
            var outcomes: [CycleOutcome] = []
            for _ in 1...2 {
                let plan = try await reconciler.plan(state)
                outcomes.append(await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal()))
            }
            #expect(audit.records.count == 1, "one record per distinct failure")
            let record = try #require(audit.records.first)
            #expect(record.result == .failed && !record.overwrittenAfterFix)
            #expect(record.error?.hasPrefix("fix did not hold") == true, "\(record.error ?? "")")
            // The next pass writes nothing new: the file already holds the value (found in sync
            // under the lock), so no second record either way.
            #expect(outcomes.last?.entries.filter { !$0.alreadyRecorded }.isEmpty == true)
        }
    }

    /// sshd_config, coalesced: two resources written in one file, then the other writer changes
    /// one keyword back; both are verified against that file, the one undone is named.
    @Test func anSSHDFixUndoneBeforeVerificationNamesTheFile() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root"
            try makeAdminHost(root)
            let config = root + "/etc/ssh/sshd_config"
            try write(config, "PermitRootLogin yes\nX11Forwarding yes\n", mode: 0o600)
            let reconciler = RacedDriver.reconciler("SSHDConfig") {
                RacedDriver(inner: $0, counter: RacedDriver.Counter(1), afterFix: {
                    try write(config, "PermitRootLogin yes\nX11Forwarding no\n", mode: 0o600)
                })
            }
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            let audit = RecordingSink()
            _ = await reconciler.apply(try await reconciler.plan(state), state: state, audit: audit, journal: MemoryJournal())
            let record = try #require(audit.records.first)
            #expect(record.overwrittenAfterFix, "\(record.error ?? "")")
            #expect(record.error?.contains("/etc/ssh/sshd_config changed since Bulwark wrote it") == true)
            _ = await reconciler.apply(try await reconciler.plan(state), state: state, audit: audit, journal: MemoryJournal())
            #expect(audit.records.map(\.result) == [.failed, .verified])
            #expect(try read(config) == "PermitRootLogin no\nX11Forwarding no\n")
        }
    }
}

/// The read a fix is built from, under the target's lock, is taken from a file that has been
/// still for a moment (issue 11): a file another process has just truncated and is writing
/// again is waited for, so that the fix is made on the whole file and the other writer's lines
/// are all kept.
@Suite struct SettledReadTests {
    @Test func aFileTruncatedByAnotherWriterJustBeforeTheFixIsFixedOnceItIsWhole() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/login.defs"
            let full = "# site\nMAIL_DIR /var/mail\nPASS_MAX_DAYS 99999\nUMASK 022\nENCRYPT_METHOD SHA512\n"
            try write(path, full)
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 365"))
            let plan = try await reconciler.plan(state)
            // Another writer opens the file for writing (truncating it: a reader now sees it
            // empty) and writes it whole a moment later, through the descriptor it holds.
            let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
            try #require(fd >= 0)
            let writer = Thread {
                usleep(20_000)
                let bytes = Array(full.utf8)
                _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            writer.start()
            let audit = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal())
            while !writer.isFinished { usleep(1_000) }
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            #expect(try read(path) == full.replacingOccurrences(of: "PASS_MAX_DAYS 99999", with: "PASS_MAX_DAYS 365"),
                    "every line of the other writer kept")
        }
    }

    /// A writer that holds the file open and pauses longer than any stillness window (a slow
    /// generator writing through one descriptor) is waited for: a fix built from the first half
    /// would be renamed over the file, and the writer's second half would go to the replaced
    /// file and be lost.
    @Test func aWriterHoldingTheFileOpenIsWaitedForHoweverLongItPauses() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/login.defs"
            let first = "# site\nMAIL_DIR /var/mail\nPASS_MAX_DAYS 99999\n"
            let rest = "UMASK 022\nENCRYPT_METHOD SHA512\n"
            try write(path, first + rest)
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 365"))
            let plan = try await reconciler.plan(state)
            let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
            try #require(fd >= 0)
            _ = Array(first.utf8).withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            let writer = Thread {
                usleep(250_000)
                _ = Array(rest.utf8).withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            writer.start()
            let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink(), journal: MemoryJournal())
            while !writer.isFinished { usleep(1_000) }
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            #expect(try read(path) == "# site\nMAIL_DIR /var/mail\nPASS_MAX_DAYS 365\n" + rest, "the writer's second half kept")
        }
    }

    /// A process that keeps the file open for writing and never writes (a service holding its
    /// configuration open) does not stop the fix for good: after the looks a writer is waited
    /// for, the file still for the whole wait is fixed, and the holder's descriptor is harmless.
    @Test func aFileHeldOpenButNeverWrittenIsFixedAfterTheWait() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/login.defs"
            try write(path, "# site\nPASS_MAX_DAYS 99999\n")
            let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            try #require(fd >= 0)
            defer { close(fd) }
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 365"))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            #expect(try read(path) == "# site\nPASS_MAX_DAYS 365\n")
        }
    }

    /// A still file is fixed at once, and a writer's later step (`echo … >> f`) goes into the
    /// file the fix put in place.
    @Test func aStillFileIsFixedAtOnceAndAWritersNextStepGoesIntoTheFixedFile() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/etc/login.defs"
            try write(path, "# site\nPASS_MAX_DAYS 99999\n")
            let state = try hostState(root: root, resource("LoginDefs", "l", "PASS_MAX_DAYS: 365"))
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            #expect(try read(path) == "# site\nPASS_MAX_DAYS 365\n")
            let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            try #require(fd >= 0)
            _ = Array("UMASK 027\n".utf8).withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            close(fd)
            #expect(try read(path) == "# site\nPASS_MAX_DAYS 365\nUMASK 027\n")
        }
    }
}
