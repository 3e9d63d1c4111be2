import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

@Suite struct SSHDConfigTests {
    let original = """
        # sshd_config with comments, odd spacing and CRLF-free text
        Include /etc/ssh/sshd_config.d/*.conf

        permitrootlogin   yes
        PermitRootLogin no
        MaxAuthTries=6
        AcceptEnv LANG LC_*
        # trailing comment kept

        Match User backup
        \tPermitRootLogin no
        \tAllowTcpForwarding no

        """

    @Test func editsOnlyTheEffectiveLinesAndAddsBeforeMatch() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            let path = root + "/etc/ssh/sshd_config"
            try write(path, original, mode: 0o600)
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\"\nMaxAuthTries: 4\nX11Forwarding: no"))
            let (plan, outcome) = try await reconcile(state)
            // First occurrence wins, case-insensitively: "permitrootlogin yes" is in force.
            #expect(plan.remediations.first?.changes.map(\.property) == ["PermitRootLogin", "MaxAuthTries", "X11Forwarding"])
            #expect(plan.remediations.first?.changes.map(\.observed) == ["yes", "6", nil])
            #expect(outcome.verified.count == 1)
            let expected = original
                .replacingOccurrences(of: "permitrootlogin   yes", with: "permitrootlogin   no")
                .replacingOccurrences(of: "MaxAuthTries=6", with: "MaxAuthTries=4")
                .replacingOccurrences(of: "\nMatch User backup", with: "\n# Added by Bulwark\nX11Forwarding no\n\nMatch User backup")
            #expect(try read(path) == expected)
            #expect(modeAndOwner(path).mode == 0o600)
            #expect(try sshdRejects(path) == nil)

            // Idempotent: nothing drifts, nothing is written.
            let before = inode(path)
            let (again, second) = try await reconcile(state)
            #expect(!again.hasDrift && second.entries.isEmpty)
            #expect(inode(path) == before)
        }
    }

    @Test func followsIncludeAndFixesTheValueWhereItIs() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            try write(root + "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n")
            try write(root + "/etc/ssh/sshd_config.d/50-cloud.conf", "PermitRootLogin yes\nPasswordAuthentication yes\n")
            try write(root + "/etc/ssh/sshd_config.d/ignored.txt", "PermitRootLogin yes\n")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.first?.observed == "yes")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { "\($0.record.decision) \($0.record.reason ?? "") \($0.record.error ?? "")" })")
            #expect(try read(root + "/etc/ssh/sshd_config.d/50-cloud.conf") == "PermitRootLogin no\nPasswordAuthentication yes\n")
            #expect(try read(root + "/etc/ssh/sshd_config") == "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n")
        }
    }

    @Test func seesChangesAfterAPassWithTheSameDriver() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n")
            try FileManager.default.createDirectory(atPath: root + "/etc/ssh/sshd_config.d", withIntermediateDirectories: true)
            let registry = Registry([HostAdapter.definition()])
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\""))
            let reconciler = Reconciler(registry: registry)
            #expect(try await !reconciler.plan(state).hasDrift)
            // A drop-in appears: the parsed configuration must not be reused.
            try write(root + "/etc/ssh/sshd_config.d/10-override.conf", "PermitRootLogin yes\n")
            #expect(try await reconciler.plan(state).remediations.first?.changes.first?.observed == "yes")
            // A later edit is seen too.
            try write(root + "/etc/ssh/sshd_config.d/10-override.conf", "PermitRootLogin no!\n")
            try write(root + "/etc/ssh/sshd_config.d/10-override.conf", "PermitRootLogin no\n")
            #expect(try await !reconciler.plan(state).hasDrift)
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")))
    func aConfigSshdRejectsIsNeverWritten() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            let path = root + "/etc/ssh/sshd_config"
            try write(path, "PermitRootLogin no\n")
            // The sshd guard runs sshd -T on the candidate first: a config sshd rejects is blocked.
            try await expectBlocked(root, resource("SSHDConfig", "s", "Ciphers: not-a-cipher"), reason: "sshd -T rejected")
            #expect(try read(path) == "PermitRootLogin no\n")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: root + "/etc/ssh")
            #expect(leftovers == ["sshd_config"], "no temporary file is left behind")
        }
    }

    @Test func refusesUnknownKeywordsAndBadValues() throws {
        #expect {
            _ = try hostState(root: "/nonexistent", resource("SSHDConfig", "s", "PermitRootLogin: maybe\nMaxAuthTries: lots\nNoSuchThing: 1"))
        } throws: { error in
            let text = "\(error)"
            return text.contains("spec.PermitRootLogin: expected one of yes, no") && text.contains("spec.MaxAuthTries: expected an integer")
                && text.contains("unknown or unsupported sshd keyword 'NoSuchThing'")
        }
        // A keyword of one argument with a second one in its value (review: a proposal's Banner
        // "/etc/issue.net PermitRootLogin yes" planned, then sshd -t refused it at the fix).
        #expect {
            _ = try hostState(root: "/nonexistent", resource("SSHDConfig", "s", "Banner: /etc/issue.net PermitRootLogin yes"))
        } throws: { error in
            "\(error)".contains("spec.Banner: expected one argument without blanks")
        }
        // A list keyword takes several; one argument keywords take theirs.
        _ = try hostState(root: "/nonexistent", resource("SSHDConfig", "s", "AllowUsers: alice  bob\nBanner: /etc/issue.net\nCiphers: aes256-ctr,aes128-ctr"))
    }
}
