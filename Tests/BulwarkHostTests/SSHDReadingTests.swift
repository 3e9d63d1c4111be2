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

    // MARK: - Match blocks

    /// A Match block that turns passwords back on: sshd accepts passwords for every login it
    /// matches. Bulwark shows the block's value as drift and does not call a fix verified: the
    /// fix fails, naming the line, and nothing is written (not even a global line before it).
    @Test func aMatchBlockThatSetsAnotherValueIsDriftAndTheFixFailsNamingIt() async throws {
        let cases: [(main: String, others: [String: String], observed: String?, location: String)] = [
            ("PasswordAuthentication no\nMatch all\n\tPasswordAuthentication yes\n", [:],
             "no (a Match block sets yes at /etc/ssh/sshd_config line 3)", "/etc/ssh/sshd_config line 3"),
            ("Match all\n\tPasswordAuthentication yes\n", [:],
             "not set (a Match block sets yes at /etc/ssh/sshd_config line 2)", "/etc/ssh/sshd_config line 2"),
            ("Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n",
             ["etc/ssh/sshd_config.d/50-site.conf": "Match User *\n\tPasswordAuthentication yes\n"],
             "no (a Match block sets yes at /etc/ssh/sshd_config.d/50-site.conf line 2)", "/etc/ssh/sshd_config.d/50-site.conf line 2"),
            ("PasswordAuthentication no\nMatch Address *\n\tInclude /etc/ssh/extra.conf\n",
             ["etc/ssh/extra.conf": "PasswordAuthentication yes\n"],
             "no (a Match block sets yes at /etc/ssh/extra.conf line 1)", "/etc/ssh/extra.conf line 1"),
        ]
        for example in cases {
            try await withTemporaryDirectory { root in
                try makeAdminHost(root)
                try write(root + "/etc/ssh/sshd_config", example.main)
                for (path, text) in example.others { try write(root + "/" + path, text) }
                #expect(try sshdSays(root, "passwordauthentication") == ["yes"], "sshd lets admin in by password: \(example.main)")
                let before = try snapshot(root)
                let state = try hostState(root: root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\""))
                let (plan, outcome) = try await reconcile(state)
                #expect(plan.remediations.first?.changes.first?.observed == example.observed,
                        "\(plan.remediations.map(\.changes)) failures: \(plan.failures)")
                let record = outcome.entries.first?.record
                #expect(record?.result == .failed, "\(String(describing: record?.result))")
                #expect(record?.error?.contains("PasswordAuthentication is set again in a Match block at \(example.location) (yes); "
                                                + "Bulwark does not change Match blocks") == true, "\(record?.error ?? "")")
                #expect(try snapshot(root) == before, "nothing is written")
                #expect(try await reconcile(state).0.hasDrift, "still drift on the next pass")
            }
        }
    }

    /// The fixes of one pass are written together: the one a Match block refuses fails alone,
    /// and the others are still made and verified.
    @Test func aFixAMatchBlockRefusesLeavesTheOthersOfThePassToGoThrough() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            let path = root + "/etc/ssh/sshd_config"
            try write(path, "PasswordAuthentication no\nMaxAuthTries 6\nMatch all\n\tPasswordAuthentication yes\n")
            let state = try hostState(root: root, resource("SSHDConfig", "a", "PasswordAuthentication: \"no\"")
                                      + resource("SSHDConfig", "b", "MaxAuthTries: 4"))
            let (_, outcome) = try await reconcile(state)
            let results = Dictionary(uniqueKeysWithValues: outcome.entries.map { ($0.record.name, $0.record.result) })
            #expect(results == ["a": .failed, "b": .verified], "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(path) == "PasswordAuthentication no\nMaxAuthTries 4\nMatch all\n\tPasswordAuthentication yes\n")
        }
    }

    /// A Match block that sets the desired value, or another keyword, does not stand in the way:
    /// the global line is fixed and verified, the block left as it is.
    @Test func aMatchBlockThatAgreesLeavesTheFixToGoThrough() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            let path = root + "/etc/ssh/sshd_config"
            let config = "PasswordAuthentication yes\nMatch User backup\n\tPasswordAuthentication no\n\tX11Forwarding yes\n"
            try write(path, config)
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PasswordAuthentication: \"no\""))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.first?.observed == "yes")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(path) == config.replacingOccurrences(of: "PasswordAuthentication yes\nMatch", with: "PasswordAuthentication no\nMatch"))
            #expect(try sshdSays(root, "passwordauthentication") == ["no"])
            #expect(try await !reconcile(state).0.hasDrift)
        }
    }

    // MARK: - Lists that add up

    /// `AllowUsers admin` in a drop-in and `AllowUsers *` in the main file: sshd appends both,
    /// so everyone is let in. Bulwark shows both as drift and leaves one line in force.
    @Test func allowUsersLinesAddUpAndTheFixLeavesOne() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [FixtureAccount(name: "root", uid: 0), FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true), guest])
            let main = root + "/etc/ssh/sshd_config", dropIn = root + "/etc/ssh/sshd_config.d/10-ops.conf"
            try write(main, "Include /etc/ssh/sshd_config.d/*.conf\nAllowUsers *\n")
            try write(dropIn, "AllowUsers admin\n")
            #expect(try sshdSays(root, "allowusers", user: "guest") == ["admin", "*"])
            let state = try hostState(root: root, resource("SSHDConfig", "s", "AllowUsers: admin"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.first?.observed == "admin *")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(dropIn) == "AllowUsers admin\n")
            #expect(try read(main) == "Include /etc/ssh/sshd_config.d/*.conf\n"
                    + "# bulwark: sshd adds up every AllowUsers line; Bulwark keeps the first: AllowUsers *\n")
            #expect(try sshdSays(root, "allowusers", user: "guest") == ["admin"])
            #expect(try await !reconcile(state).0.hasDrift)
        }
    }

    /// A line Bulwark would have to comment out in a package's file (under usr/): the fix fails,
    /// naming it, and nothing is written.
    @Test func anAllowUsersLineInAFileBulwarkDoesNotEditFailsTheFix() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            try write(root + "/etc/ssh/sshd_config", "AllowUsers admin\nInclude /usr/share/ssh/site.conf\n")
            try write(root + "/usr/share/ssh/site.conf", "AllowUsers *\n")
            #expect(try sshdSays(root, "allowusers") == ["admin", "*"])
            let before = try snapshot(root)
            let state = try hostState(root: root, resource("SSHDConfig", "s", "AllowUsers: admin"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.first?.observed == "admin *")
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            #expect(record.error?.contains("AllowUsers is also set at /usr/share/ssh/site.conf line 1") == true, "\(record.error ?? "")")
            #expect(try snapshot(root) == before)
        }
    }

    /// One line changed where it is, and lines that together hold the desired list are in sync.
    @Test func aSingleListLineIsChangedInPlaceAndLinesThatAddUpToTheListAreInSync() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [FixtureAccount(name: "root", uid: 0), FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true), guest])
            let path = root + "/etc/ssh/sshd_config"
            try write(path, "AllowUsers admin\nDenyUsers backup\nDenyUsers nobody\n")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "AllowUsers: \"admin guest\"\nDenyUsers: \"backup nobody\""))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.map(\.property) == ["AllowUsers"])
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(path) == "AllowUsers admin guest\nDenyUsers backup\nDenyUsers nobody\n")
            #expect(try sshdSays(root, "denyusers") == ["backup", "nobody"])
        }
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

    // MARK: - Host key algorithms

    /// Host keys of `types` at sshd's default paths under the root, made by ssh-keygen.
    func hostKeys(_ root: String, _ types: [String], at paths: [String]? = nil) throws {
        try FileManager.default.createDirectory(atPath: root + "/etc/ssh/keys", withIntermediateDirectories: true)
        for (index, type) in types.enumerated() {
            let path = root + (paths?[index] ?? "/etc/ssh/ssh_host_\(type)_key")
            let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", type, "-N", "", "-C", "fixture", "-f", path])
            #expect(made.status == 0, "\(made.stderr)")
        }
    }

    /// `HostKeyAlgorithms ssh-rsa` is offered by no OpenSSH 8.8 or later client; `ssh-ed25519` on
    /// a host with only RSA and ECDSA keys has no key behind it: either locks every client out.
    @Test(.enabled(if: SSHClientDefaults.offer != nil, "needs ssh (openssh-client)"))
    func hostKeyAlgorithmsNoClientAndKeyShareAreBlocked() async throws {
        for (harmful, reason) in [
            ("HostKeyAlgorithms: ssh-ed25519", "HostKeyAlgorithms ssh-ed25519 has no algorithm that both an OpenSSH client offers by "
                + "default and one of this host's keys (ecdsa-sha2-nistp256, ssh-rsa) signs with"),
            ("HostKeyAlgorithms: ssh-rsa", "HostKeyAlgorithms ssh-rsa shares nothing with what an OpenSSH client offers by default"),
        ] {
            try await withTemporaryDirectory { root in
                try makeAdminHost(root)
                try write(root + "/etc/ssh/sshd_config", "PasswordAuthentication no\n")
                try hostKeys(root, ["rsa", "ecdsa"])
                try await expectBlocked(root, resource("SSHDConfig", "s", harmful), reason: reason)
            }
        }
    }

    /// Algorithms the client offers and the host's keys sign with go through, the keys found
    /// where the configuration's `HostKey` lines name them.
    @Test(.enabled(if: SSHClientDefaults.offer != nil, "needs ssh (openssh-client)"))
    func hostKeyAlgorithmsAClientAndAKeyShareAreApplied() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            try write(root + "/etc/ssh/sshd_config", "PasswordAuthentication no\n")
            try hostKeys(root, ["rsa", "ecdsa"])
            try await expectApplied(root, resource("SSHDConfig", "s", "HostKeyAlgorithms: \"rsa-sha2-512,rsa-sha2-256\""))
        }
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            try write(root + "/etc/ssh/sshd_config", "HostKey /etc/ssh/keys/host_ed25519\nPasswordAuthentication no\n")
            try hostKeys(root, ["rsa", "ed25519"], at: ["/etc/ssh/ssh_host_rsa_key", "/etc/ssh/keys/host_ed25519"])
            try await expectApplied(root, resource("SSHDConfig", "s", "HostKeyAlgorithms: ssh-ed25519"))
        }
    }
}
