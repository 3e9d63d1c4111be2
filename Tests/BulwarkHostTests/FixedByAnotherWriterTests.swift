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
            writer.executableURL = URL(fileURLWithPath: "/bin/sh")
            // `>` truncates the file, then cat writes it: a reader between the two sees it empty.
            writer.arguments = ["-c", "while :; do cat '\(dir)/content' > '\(config)'; done"]
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
