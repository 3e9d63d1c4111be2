import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// No record for a change that did not happen (issue 11): a drift another writer corrected
/// after the plan observed it is found in sync under the target's lock, nothing is written and
/// nothing is recorded; a drift still there when the lock is taken is fixed and recorded.
@Suite struct FixedByAnotherWriterTests {
    let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))

    func host(_ dir: String) throws -> String {
        let root = dir + "/root"
        try makeAdminHost(root)
        try write(root + "/etc/ssh/sshd_config", "PermitRootLogin yes\nX11Forwarding yes\nMaxAuthTries 10\n", mode: 0o600)
        try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
        return root
    }

    let manifests = resource("SSHDConfig", "s1", "PermitRootLogin: \"no\"")
        + resource("SSHDConfig", "s2", "X11Forwarding: \"no\"")
        + resource("LoginDefs", "l1", "PASS_MAX_DAYS: \"365\"")

    @Test func driftsFixedByAnotherWriterAfterThePlanAreNeitherWrittenNorRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let root = try host(dir)
            let state = try hostState(root: root, manifests)
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.filter { $0.decision == .applied }.count == 3)
            // Another Bulwark (or a person) fixes every drift, in its own words, before this one applies.
            let theirs = "# fixed by hand\nPermitRootLogin no\nX11Forwarding  no\nMaxAuthTries 10\n"
            try write(root + "/etc/ssh/sshd_config", theirs, mode: 0o600)
            try write(root + "/etc/login.defs", "PASS_MAX_DAYS\t365\n")
            let before = try fingerprint(root + "/etc/ssh/sshd_config") + fingerprint(root + "/etc/login.defs")
            let audit = RecordingSink()
            let journal = MemoryJournal()
            let outcome = await reconciler.apply(plan, state: state, audit: audit, journal: journal)
            #expect(outcome.entries.isEmpty, "\(outcome.entries.map(\.record.result))")
            #expect(audit.records.isEmpty)
            #expect(Set(outcome.inSync.map(\.binding.resource.name)) == ["s1", "s2", "l1"])
            #expect(await journal.open.isEmpty, "nothing left to recover")
            #expect(try fingerprint(root + "/etc/ssh/sshd_config") + fingerprint(root + "/etc/login.defs") == before,
                    "the other writer's files, byte for byte")
        }
    }

    @Test func aDriftStillThereUnderTheLockIsFixedAndRecordedNextToOneFoundFixed() async throws {
        try await withTemporaryDirectory { dir in
            let root = try host(dir)
            let state = try hostState(root: root, manifests)
            let plan = try await reconciler.plan(state)
            // Only root login was fixed by the other writer; X11 forwarding and the password age are still wrong.
            try write(root + "/etc/ssh/sshd_config", "PermitRootLogin no\nX11Forwarding yes\nMaxAuthTries 10\n", mode: 0o600)
            let audit = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal())
            #expect(outcome.inSync.map(\.binding.resource.name) == ["s1"], "\(outcome.entries.map { "\($0.record.name) \($0.record.error ?? "")" })")
            #expect(Set(outcome.verified.map(\.record.name)) == ["s2", "l1"], "\(outcome.entries.map(\.record.error))")
            #expect(Set(audit.records.map(\.name)) == ["s2", "l1"])
            #expect(try read(root + "/etc/ssh/sshd_config") == "PermitRootLogin no\nX11Forwarding no\nMaxAuthTries 10\n")
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 365\n")
        }
    }

    @Test func withNoOtherWriterEveryDriftIsFixedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let root = try host(dir)
            let state = try hostState(root: root, manifests)
            let plan = try await reconciler.plan(state)
            let audit = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal())
            #expect(outcome.inSync.isEmpty)
            #expect(outcome.verified.count == 3, "\(outcome.entries.map(\.record.error))")
            #expect(audit.records.count == 3)
        }
    }

    // MARK: - Sysctl: the persisted file and the runtime value

    func sysctlHost(_ dir: String) throws -> (root: String, state: DesiredState) {
        let root = dir + "/root"
        try write(root + "/etc/sysctl.d/zz-bulwark.conf", "kernel.randomize_va_space = 0\nnet.ipv4.ip_forward = 1\n")
        try write(root + "/proc/sys/kernel/randomize_va_space", "0\n")
        try write(root + "/proc/sys/net/ipv4/ip_forward", "1\n")
        let state = try hostState(root: root, resource("Sysctl", "aslr", "kernel.randomize_va_space: 2")
                                  + resource("Sysctl", "forward", "net.ipv4.ip_forward: 0"))
        return (root, state)
    }

    /// Another Bulwark fixed both parameters, persisted and at runtime, after this one planned:
    /// nothing is written and nothing recorded.
    @Test func sysctlFixedByAnotherWriterPersistedAndAtRuntimeIsNeitherWrittenNorRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let (root, state) = try sysctlHost(dir)
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.filter { $0.decision == .applied }.count == 2)
            try write(root + "/etc/sysctl.d/zz-bulwark.conf", "# theirs\nkernel.randomize_va_space = 2\nnet.ipv4.ip_forward = 0\n")
            try write(root + "/proc/sys/kernel/randomize_va_space", "2\n")
            try write(root + "/proc/sys/net/ipv4/ip_forward", "0\n")
            let files = ["/etc/sysctl.d/zz-bulwark.conf", "/proc/sys/kernel/randomize_va_space", "/proc/sys/net/ipv4/ip_forward"]
            let before = try files.map { try fingerprint(root + $0) }
            let audit = RecordingSink()
            let journal = MemoryJournal()
            let outcome = await reconciler.apply(plan, state: state, audit: audit, journal: journal)
            #expect(outcome.entries.isEmpty, "\(outcome.entries.map { "\($0.record.name) \($0.record.result.map(\.rawValue) ?? "") \($0.record.error ?? "")" })")
            #expect(audit.records.isEmpty)
            #expect(Set(outcome.inSync.map(\.binding.resource.name)) == ["aslr", "forward"])
            #expect(await journal.open.isEmpty)
            #expect(try files.map { try fingerprint(root + $0) } == before, "the other writer's files, byte for byte")
        }
    }

    /// The other writer set the file but not the kernel's runtime value (or only the runtime
    /// value): the parameter is still wrong where it counts, so it is fixed and recorded.
    @Test func sysctlSetOnlyInTheFileOrOnlyAtRuntimeByAnotherWriterIsStillFixedAndRecorded() async throws {
        try await withTemporaryDirectory { dir in
            let (root, state) = try sysctlHost(dir)
            let plan = try await reconciler.plan(state)
            try write(root + "/etc/sysctl.d/zz-bulwark.conf", "kernel.randomize_va_space = 2\nnet.ipv4.ip_forward = 1\n")
            try write(root + "/proc/sys/net/ipv4/ip_forward", "0\n")
            let audit = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal())
            #expect(outcome.inSync.isEmpty)
            #expect(Set(outcome.verified.map(\.record.name)) == ["aslr", "forward"], "\(outcome.entries.map(\.record.error))")
            #expect(Set(audit.records.map(\.name)) == ["aslr", "forward"])
            #expect(try read(root + "/proc/sys/kernel/randomize_va_space") == "2\n")
            #expect(try read(root + "/etc/sysctl.d/zz-bulwark.conf") == "kernel.randomize_va_space = 2\nnet.ipv4.ip_forward = 0\n")
        }
    }

    /// One parameter fixed by the other writer, the other not: one in sync, one fixed and
    /// recorded; on their own (not coalesced) the same holds.
    @Test func sysctlOneFixedByAnotherWriterOneStillWrong() async throws {
        try await withTemporaryDirectory { dir in
            let (root, state) = try sysctlHost(dir)
            let plan = try await reconciler.plan(state)
            try write(root + "/etc/sysctl.d/zz-bulwark.conf", "kernel.randomize_va_space = 2\nnet.ipv4.ip_forward = 1\n")
            try write(root + "/proc/sys/kernel/randomize_va_space", "2\n")
            let audit = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal())
            #expect(outcome.inSync.map(\.binding.resource.name) == ["aslr"])
            #expect(outcome.verified.map(\.record.name) == ["forward"], "\(outcome.entries.map(\.record.error))")
            #expect(audit.records.map(\.name) == ["forward"])
            #expect(try read(root + "/proc/sys/net/ipv4/ip_forward") == "0\n")
        }
        try await withTemporaryDirectory { dir in
            let (root, state) = try sysctlHost(dir)
            let plan = try await reconciler.plan(state)
            try write(root + "/etc/sysctl.d/zz-bulwark.conf", "kernel.randomize_va_space = 2\nnet.ipv4.ip_forward = 1\n")
            try write(root + "/proc/sys/kernel/randomize_va_space", "2\n")
            // The driver on its own, as the reconciler uses it when a coalesced write fails.
            let driver = try #require(HostAdapter.definition().kinds.first { $0.name == "Sysctl" }?.driver)
            let aslr = try #require(state.resources[ResourceID(kind: "Sysctl", name: "aslr")])
            let target = try #require(state.targets["sandbox"])
            let changes = try #require(plan.remediations.first { $0.binding.resource.name == "aslr" }?.changes)
            await #expect(throws: AlreadyInSync.self) { try await driver.apply(changes, to: aslr, on: target) }
        }
    }

    // MARK: - FileMode and UserAccount

    /// A file's mode and an account's lock set by another writer after the plan: nothing
    /// changed, nothing recorded; a property still wrong next to them is fixed and recorded.
    @Test func fileModesAndAccountsFixedByAnotherWriterAreNotRecordedAndTheRestIs() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root"
            try makeHost(root, [FixtureAccount(name: "root", uid: 0), FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true),
                                FixtureAccount(name: "guest", uid: 1001, hash: "$y$guest-hash")])
            try write(root + "/etc/shadow", try read(root + "/etc/shadow"), mode: 0o644)
            try write(root + "/etc/gshadow", "root:*::\n", mode: 0o644)
            let state = try hostState(root: root, resource("FileMode", "shadow", "path: /etc/shadow\nmode: \"0640\"")
                                      + resource("FileMode", "gshadow", "path: /etc/gshadow\nmode: \"0640\"")
                                      + resource("UserAccount", "guest", "name: guest\nlocked: true"))
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.filter { $0.decision == .applied }.count == 3, "\(plan.remediations.map { "\($0.binding.resource) \($0.decision) \($0.reason ?? "")" })")
            // Another writer: shadow to 0640, and the guest account locked; gshadow left as it was.
            #expect(chmod(root + "/etc/shadow", 0o640) == 0)
            let locked = try read(root + "/etc/shadow").replacingOccurrences(of: "guest:", with: "guest:!")
            try write(root + "/etc/shadow", locked, mode: 0o640)
            let audit = RecordingSink()
            let outcome = await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal())
            #expect(Set(outcome.inSync.map(\.binding.resource.name)) == ["shadow", "guest"], "\(outcome.entries.map(\.record.error))")
            #expect(audit.records.map(\.name) == ["gshadow"])
            #expect(outcome.verified.map(\.record.name) == ["gshadow"])
            #expect(try read(root + "/etc/shadow") == locked, "the other writer's shadow, byte for byte")
            #expect(modeAndOwner(root + "/etc/gshadow").mode == 0o640)
        }
    }

    /// Another process rewrites sshd_config in place (truncate, then write) in a loop while
    /// passes run; its content already holds every desired value. A pass that read the file
    /// between the truncate and the write saw every keyword unset: no verified fix may come of it.
    @Test func aFileRewrittenInPlaceWhilePassesReadItGetsNoRecordOfAFixNeverMade() async throws {
        try await withTemporaryDirectory { dir in
            let root = try host(dir)
            let config = root + "/etc/ssh/sshd_config"
            let content = "# site\nPort 22\nPermitRootLogin no\nX11Forwarding no\nUsePAM yes\n"
            try write(dir + "/content", content)
            try write(config, content, mode: 0o600)
            let state = try hostState(root: root, resource("SSHDConfig", "s1", "PermitRootLogin: \"no\"")
                                      + resource("SSHDConfig", "s2", "X11Forwarding: \"no\""))
            let writer = Process()
            // `>` truncates the file, then cat writes it: a reader between the two sees it empty.
            // At the highest priority (the tests run as root), so that on a loaded machine the
            // loop is not left waiting longer than the settle window, which would make the
            // file look still while it is empty: a test of the settle rule, not of the scheduler.
            writer.executableURL = URL(fileURLWithPath: "/usr/bin/nice")
            writer.arguments = ["-n", "-20", "/bin/sh", "-c", "while :; do cat '\(dir)/content' > '\(config)'; done"]
            try writer.run()
            let audit = RecordingSink()
            var planned = 0
            for _ in 0..<30 {
                guard let plan = try? await reconciler.plan(state) else { continue }
                planned += plan.remediations.filter { $0.decision == .applied }.count
                _ = await reconciler.apply(plan, state: state, audit: audit, journal: MemoryJournal())
            }
            kill(writer.processIdentifier, SIGKILL)
            writer.waitUntilExit()
            let verified = audit.records.filter { $0.result == .verified }
            #expect(verified.isEmpty, "\(planned) fixes planned from torn reads; verified: \(verified.map { "\($0.name) \($0.changes)" })")
            try write(config, try read(dir + "/content"), mode: 0o600)
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/etc/ssh") == ["sshd_config"], "no temporary left")
        }
    }
}
