import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// The resources of one file on one target are written together: one candidate, one check of
/// it, one atomic write; each resource is still verified and recorded on its own. A value the
/// check refuses fails only its own resource.
@Suite struct CoalescedWriteTests {
    /// The check of the exact bytes about to be renamed: counts its runs, refuses a candidate
    /// holding `refusing` (as sshd refuses a bad value), and otherwise runs the real `sshd -t`.
    func countingCheck(_ dir: String, refusing: String?) throws -> SSHDValidator {
        let script = dir + "/check"
        let sshd = SSHDValidator.system.executable
        try write(script, """
            #!/bin/sh
            echo run >> \(dir)/runs
            \(refusing.map { "if grep -q '^\($0)$' \"$3\"; then echo 'refused by the test' >&2; exit 255; fi" } ?? "")
            \(sshd.map { "exec \($0) \"$@\"" } ?? "exit 0")
            """, mode: 0o755)
        return SSHDValidator(executable: sshd, candidateCheck: script)
    }

    func runs(_ dir: String) -> Int {
        ((try? read(dir + "/runs")) ?? "").split(separator: "\n").count
    }

    let manifests = resource("SSHDConfig", "s1", "PermitRootLogin: \"no\"")
        + resource("SSHDConfig", "s2", "X11Forwarding: \"no\"")
        + resource("SSHDConfig", "s3", "MaxAuthTries: \"4\"")
        + resource("LoginDefs", "l1", "PASS_MAX_DAYS: \"365\"")
        + resource("LoginDefs", "l2", "PASS_MIN_DAYS: \"1\"")

    func host(_ dir: String) throws -> String {
        let root = dir + "/root"
        try makeAdminHost(root)
        try write(root + "/etc/ssh/sshd_config", "PermitRootLogin yes\nX11Forwarding yes\nMaxAuthTries 10\n", mode: 0o600)
        try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\n")
        return root
    }

    @Test func theResourcesOfOneFileAreWrittenAndCheckedOnceAndEachIsRecordedOnItsOwn() async throws {
        try await withTemporaryDirectory { dir in
            let root = try host(dir)
            let state = try hostState(root: root, manifests)
            let (_, outcome) = try await reconcile(state, sshd: try countingCheck(dir, refusing: nil))
            #expect(outcome.verified.count == 5, "\(outcome.entries.map(\.record.error))")
            #expect(runs(dir) == 1, "one check of one candidate for three SSHDConfig resources")
            #expect(try read(root + "/etc/ssh/sshd_config") == "PermitRootLogin no\nX11Forwarding no\nMaxAuthTries 4\n")
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 365\nPASS_MIN_DAYS 1\n")
            // One record per resource, each with its own id and only its own change.
            #expect(Set(outcome.entries.map(\.record.id)).count == 5)
            for entry in outcome.entries {
                #expect(entry.record.changes.count == 1)
                #expect(entry.record.commitMessage.contains("Bulwark-Resource: \(entry.record.resource)"))
                #expect(entry.record.commitMessage.contains("Bulwark-Result: verified"))
            }
            #expect(try sshdRejects(root + "/etc/ssh/sshd_config") == nil)
        }
    }

    @Test func aValueTheCheckRefusesFailsOnlyItsOwnResourceAndTheOthersAreFixed() async throws {
        try await withTemporaryDirectory { dir in
            let root = try host(dir)
            let state = try hostState(root: root, manifests)
            let (_, outcome) = try await reconcile(state, sshd: try countingCheck(dir, refusing: "X11Forwarding no"))
            let byName = Dictionary(uniqueKeysWithValues: outcome.entries.map { ($0.record.name, $0.record) })
            #expect(byName["s2"]?.result == .failed)
            #expect(byName["s2"]?.error?.contains("refused by the test") == true)
            #expect(["s1", "s3", "l1", "l2"].allSatisfy { byName[$0]?.result == .verified })
            // The refused value never reached the file; the others did, each on its own.
            #expect(try read(root + "/etc/ssh/sshd_config") == "PermitRootLogin no\nX11Forwarding yes\nMaxAuthTries 4\n")
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 365\nPASS_MIN_DAYS 1\n")
        }
    }

    /// An intent journal that notes, at each `trying`, how many times the check had run and what
    /// sshd_config held; its `trying` throws when `failing` (a state directory gone read-only).
    actor WatchingJournal: IntentJournal {
        let base = MemoryJournal(intentsAhead: 32)
        let dir: String, root: String, failing: Bool
        var tries: [(ids: [String], checks: Int, config: String)] = []
        nonisolated var intentsAhead: Int { 32 }
        init(dir: String, root: String, failing: Bool) {
            self.dir = dir
            self.root = root
            self.failing = failing
        }
        func begin(_ record: AuditRecord) async throws { try await begin([record]) }
        func begin(_ records: [AuditRecord]) async throws { try await base.begin(records) }
        func end(_ id: String) async throws { await base.end(id) }
        func openIntents() async throws -> [AuditRecord] { await base.openIntents() }
        func untriedIntents() async throws -> Set<String> { await base.untriedIntents() }
        func trying(_ ids: [String]) async throws {
            let checks = ((try? read(dir + "/runs")) ?? "").split(separator: "\n").count
            tries.append((ids, checks, (try? read(root + "/etc/ssh/sshd_config")) ?? ""))
            if failing { throw JournalError("read-only file system") }
            await base.trying(ids)
        }
    }

    let sshdOnly = resource("SSHDConfig", "s1", "PermitRootLogin: \"no\"")
        + resource("SSHDConfig", "s2", "X11Forwarding: \"no\"")
        + resource("SSHDConfig", "s3", "MaxAuthTries: \"4\"")

    /// The coalesced sshd fix is marked tried once, for its three intents, after `sshd -t`
    /// accepted the candidate and before the file is renamed into place: a kill during the
    /// check leaves intents never tried, which recovery closes without a record. Before, the
    /// line was written before the check.
    @Test func aCoalescedSSHDFixIsMarkedTriedOnceAfterTheCheckAndBeforeTheRename() async throws {
        try await withTemporaryDirectory { dir in
            let root = try host(dir)
            let state = try hostState(root: root, sshdOnly)
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition(sshd: try countingCheck(dir, refusing: nil))]))
            let journal = WatchingJournal(dir: dir, root: root, failing: false)
            let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: RecordingSink(), journal: journal)
            #expect(outcome.verified.count == 3, "\(outcome.entries.map(\.record.error))")
            let tries = await journal.tries
            #expect(tries.count == 1 && tries.first?.ids.count == 3, "one tried line for the batch: \(tries.map(\.ids))")
            #expect(tries.first.map { $0.checks >= 1 } == true, "after the check: \(tries.map(\.checks))")
            #expect(tries.first?.config == "PermitRootLogin yes\nX11Forwarding yes\nMaxAuthTries 10\n", "before the rename")
            #expect(try read(root + "/etc/ssh/sshd_config") == "PermitRootLogin no\nX11Forwarding no\nMaxAuthTries 4\n")
            #expect(try await journal.openIntents().isEmpty)
        }
    }

    /// The harmful twin: the tried line cannot be written at the rename (the state directory
    /// went read-only after the intents were made durable). The file is not renamed into place,
    /// nothing is recorded, the intents are closed and the pass stops changing systems, as when
    /// the line cannot be written before a driver that does not announce its changes.
    @Test func aTriedLineThatCannotBeWrittenAtTheRenameLeavesTheFileAndStopsThePass() async throws {
        try await withTemporaryDirectory { dir in
            let root = try host(dir)
            let state = try hostState(root: root, sshdOnly)
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition(sshd: try countingCheck(dir, refusing: nil))]))
            let journal = WatchingJournal(dir: dir, root: root, failing: true)
            let sink = RecordingSink()
            let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
            #expect(outcome.halted?.contains("intent journal cannot be written") == true, "\(String(describing: outcome.halted))")
            #expect(sink.records.isEmpty, "no record of a change that was not made: \(sink.records.map(\.error))")
            #expect(try read(root + "/etc/ssh/sshd_config") == "PermitRootLogin yes\nX11Forwarding yes\nMaxAuthTries 10\n")
            #expect(try await journal.openIntents().isEmpty, "the intents are closed")
            let tries = await journal.tries
            #expect(tries.count == 1 && tries.first.map { $0.checks >= 1 } == true, "refused at the rename, after the check: \(tries.map(\.checks))")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: root + "/etc/ssh").filter { $0.contains(".bulwark-") }
            #expect(leftovers.isEmpty, "no temporary left: \(leftovers)")
        }
    }

    /// An intent journal that notes, at each `trying`, whether the root's etc/sysctl.d existed
    /// and what its runtime values held; its `trying` throws when `failing`.
    actor SysctlWatchingJournal: IntentJournal {
        let base = MemoryJournal(intentsAhead: 32)
        let root: String, failing: Bool
        var tries: [(ids: [String], folder: Bool, runtime: String)] = []
        nonisolated var intentsAhead: Int { 32 }
        init(root: String, failing: Bool) {
            self.root = root
            self.failing = failing
        }
        func begin(_ record: AuditRecord) async throws { try await begin([record]) }
        func begin(_ records: [AuditRecord]) async throws { try await base.begin(records) }
        func end(_ id: String) async throws { await base.end(id) }
        func openIntents() async throws -> [AuditRecord] { await base.openIntents() }
        func untriedIntents() async throws -> Set<String> { await base.untriedIntents() }
        func trying(_ ids: [String]) async throws {
            let runtime = ["kernel/randomize_va_space", "net/ipv4/ip_forward"].map { (try? read(root + "/proc/sys/" + $0)) ?? "" }.joined()
            tries.append((ids, FileManager.default.fileExists(atPath: root + "/etc/sysctl.d"), runtime))
            if failing { throw JournalError("read-only file system") }
            await base.trying(ids)
        }
    }

    /// Two sysctls on a host with no etc/sysctl.d: one step, marked tried once for both intents,
    /// before the folder is made (its first change) and before any runtime value is written.
    /// The harmful twin (`failing`): the tried line cannot be written there, so no folder is
    /// made and no runtime value written, nothing is recorded and the pass stops.
    @Test(arguments: [false, true])
    func aCoalescedSysctlFixIsMarkedTriedOnceBeforeItsFolderIsMade(failing: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root"
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try write(root + "/proc/sys/kernel/randomize_va_space", "0\n")
            try write(root + "/proc/sys/net/ipv4/ip_forward", "1\n")
            let state = try hostState(root: root, resource("Sysctl", "aslr", "kernel.randomize_va_space: 2")
                                      + resource("Sysctl", "forward", "net.ipv4.ip_forward: 0"))
            #expect(!FileManager.default.fileExists(atPath: root + "/etc/sysctl.d"))
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let journal = SysctlWatchingJournal(root: root, failing: failing)
            let sink = RecordingSink()
            let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink, journal: journal)
            let tries = await journal.tries
            #expect(tries.count == 1 && tries.first?.ids.count == 2, "one tried line for the batch: \(tries.map(\.ids))")
            #expect(tries.first?.folder == false, "before the folder is made")
            #expect(tries.first?.runtime == "0\n1\n", "before any runtime value is written")
            if failing {
                #expect(outcome.halted?.contains("intent journal cannot be written") == true, "\(String(describing: outcome.halted))")
                #expect(!FileManager.default.fileExists(atPath: root + "/etc/sysctl.d"), "no folder made")
                #expect(try read(root + "/proc/sys/net/ipv4/ip_forward") == "1\n")
                #expect(sink.records.isEmpty)
            } else {
                #expect(outcome.verified.count == 2, "\(outcome.entries.map { "\($0.record.result.map(\.rawValue) ?? "-") \($0.record.error ?? "")" })")
                #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf").contains("net.ipv4.ip_forward = 0"))
                #expect(try read(root + "/proc/sys/net/ipv4/ip_forward") == "0\n")
            }
            #expect(try await journal.openIntents().isEmpty)
        }
    }
}
