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
}
