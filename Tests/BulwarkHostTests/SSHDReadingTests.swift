import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// sshd_config read as sshd reads it where "the first line outside Match wins" is not the whole
/// story: Match blocks that override the global value, access lists that add up across lines,
/// keyword aliases, and (in the guard) the host key algorithms a client and the host's keys
/// share. What each harmful configuration really does is asked of the real `sshd -T`.
@Suite(.enabled(if: sshdInstalled)) struct SSHDReadingTests {
    let guest = FixtureAccount(name: "guest", uid: 1001, key: true)

    /// What the real `sshd -T` holds for `keyword` (lower-case) for a connection by `user`, under
    /// the root's configuration and its drop-ins (the guard's own probe of the root).
    func sshdSays(_ root: String, _ keyword: String, user: String = "admin") throws -> [String] {
        let host = try HostRoot(root)
        let driver = SSHDConfigDriver(validator: .system)
        let probe = try SSHDProbe(executable: "/usr/sbin/sshd", config: try driver.read(host), root: host, driver: driver)
        defer { probe.remove() }
        return try probe.effective(user: user)[keyword] ?? []
    }

    // MARK: - Aliases

    /// `DSAAuthentication` is sshd's other name for PubkeyAuthentication: first, it turns keys
    /// off, and the administrator's key with them. Bulwark reads it so and fixes that line.
    @Test func dsaAuthenticationIsPubkeyAuthentication() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            let path = root + "/etc/ssh/sshd_config"
            try write(path, "DSAAuthentication no\nPubkeyAuthentication yes\n")
            #expect(try sshdSays(root, "pubkeyauthentication") == ["no"])
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PubkeyAuthentication: \"yes\""))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.first?.observed == "no")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(path) == "DSAAuthentication yes\nPubkeyAuthentication yes\n")
            #expect(try sshdSays(root, "pubkeyauthentication") == ["yes"])
        }
    }

    /// `KeepAlive` is TCPKeepAlive: a host that sets it is in sync, nothing added; and one
    /// resource cannot set both names.
    @Test func keepAliveIsTCPKeepAlive() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            let path = root + "/etc/ssh/sshd_config"
            try write(path, "KeepAlive no\n")
            #expect(try sshdSays(root, "tcpkeepalive") == ["no"])
            let (plan, outcome) = try await reconcile(try hostState(root: root, resource("SSHDConfig", "s", "TCPKeepAlive: \"no\"")))
            #expect(!plan.hasDrift && outcome.entries.isEmpty)
            #expect(try read(path) == "KeepAlive no\n")
        }
        #expect {
            _ = try hostState(root: "/nonexistent", resource("SSHDConfig", "s", "TCPKeepAlive: \"yes\"\nKeepAlive: \"no\""))
        } throws: { "\($0)".contains("'KeepAlive' is the same sshd setting as 'TCPKeepAlive'") }
    }
}
