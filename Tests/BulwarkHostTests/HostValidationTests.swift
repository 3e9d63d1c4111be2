import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// Values are checked by the grammar of the file they go into, at validation: nothing that
/// could end a line, split a passwd field or name one sshd setting twice reaches a host.
@Suite struct HostValidationTests {
    /// The desired state's error text, or nil when it validated.
    func refusal(_ manifests: String) -> String? {
        do {
            _ = try hostState(root: "/nonexistent", manifests)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test(arguments: [
        ("\"/bin/sh\\nroot2::0:0::/root:/bin/sh\"", "U+000A"),  // LF: a new UID-0 line with no password
        ("\"/bin/sh\\r\\nroot2::0:0::/root:/bin/sh\"", "U+000D"),  // CRLF: one Swift Character
        ("\"/bin/sh\\rx\"", "U+000D"),
        ("\"/bin/sh\\vx\"", "U+000B"),
        ("\"/bin/sh\\fx\"", "U+000C"),
        ("\"/bin/sh\\Nx\"", "U+0085"),  // NEL
        ("\"/bin/sh\\Lx\"", "U+2028"),  // LINE SEPARATOR
        ("\"/bin/sh\\Px\"", "U+2029"),  // PARAGRAPH SEPARATOR
        ("\"/bin/sh\\tx\"", "U+0009"),
        ("\"/bin/sh\\u0001x\"", "U+0001"),
    ])
    func shellWithALineBreakIsRefused(shell: String, scalar: String) throws {
        let text = try #require(refusal(resource("UserAccount", "u", "name: guest\nshell: \(shell)")))
        #expect(text.contains("desired-state/r.yaml:"), "names the file and line: \(text)")
        #expect(text.contains("UserAccount/u spec.shell:") && text.contains(scalar), "\(text)")
    }

    @Test func colonInAPasswdFieldAndARelativeShellAreRefused() throws {
        let colon = try #require(refusal(resource("UserAccount", "u", "name: guest\nshell: \"/bin/sh:0:0\"")))
        #expect(colon.contains("spec.shell: a shell in etc/passwd cannot contain ':'"), "\(colon)")
        let relative = try #require(refusal(resource("UserAccount", "u", "name: guest\nshell: bin/sh")))
        #expect(relative.contains("spec.shell: expected an absolute path"), "\(relative)")
        #expect(refusal(resource("UserAccount", "u", "name: \"gu:est\"\nlocked: true")) != nil)
        // The legitimate value still validates.
        #expect(refusal(resource("UserAccount", "u", "name: guest\nshell: /usr/sbin/nologin")) == nil)
    }

    @Test(arguments: ["\"365\\r\\nUID_MIN 0\"", "\"365\\nUID_MIN 0\"", "\"365\\u2028x\"", "\"365\\u0085x\"", "\"365\\vx\""])
    func loginDefsValueWithALineBreakIsRefused(value: String) throws {
        let text = try #require(refusal(resource("LoginDefs", "l", "PASS_MAX_DAYS: \(value)")))
        #expect(text.contains("LoginDefs/l spec.PASS_MAX_DAYS:") && text.contains("U+"), "\(text)")
        #expect(refusal(resource("LoginDefs", "l", "PASS_MAX_DAYS: 365")) == nil)
    }

    @Test func sshdAndSysctlValuesWithALineBreakAreRefused() throws {
        let sshd = try #require(refusal(resource("SSHDConfig", "s", "Banner: \"/etc/issue\\r\\nPermitRootLogin yes\"")))
        #expect(sshd.contains("SSHDConfig/s spec.Banner:") && sshd.contains("U+000D"), "\(sshd)")
        let sysctl = try #require(refusal(resource("Sysctl", "k", "net.ipv4.ip_forward: \"0\\r\\nkernel.modules_disabled = 1\"")))
        #expect(sysctl.contains("Sysctl/k spec.net.ipv4.ip_forward:") && sysctl.contains("U+000D"), "\(sysctl)")
        let path = try #require(refusal(resource("FileMode", "f", "path: \"/etc/sha\\ndow\"\nmode: \"0640\"")))
        #expect(path.contains("spec.path:") && path.contains("U+000A"), "\(path)")
    }

    @Test func caseVariantDuplicateKeywordsAreRefused() throws {
        let text = try #require(refusal(resource("SSHDConfig", "s", "PermitRootLogin: \"no\"\npermitrootlogin: \"yes\"")))
        #expect(text.contains("SSHDConfig/s spec.permitrootlogin: 'permitrootlogin' is the same sshd setting as 'PermitRootLogin' (line"),
                "\(text)")
    }

    @Test func anAliasAndItsKeywordInOneResourceOrTwoAreRefused() throws {
        let one = try #require(refusal(resource("SSHDConfig", "s",
                                                "KbdInteractiveAuthentication: \"no\"\nChallengeResponseAuthentication: \"yes\"")))
        #expect(one.contains("'ChallengeResponseAuthentication' is the same sshd setting as 'KbdInteractiveAuthentication'"), "\(one)")
        // Across resources the alias is claimed under its keyword, so the two conflict.
        let two = try #require(refusal(resource("SSHDConfig", "a", "KbdInteractiveAuthentication: \"no\"")
                                       + resource("SSHDConfig", "b", "ChallengeResponseAuthentication: \"yes\"")))
        #expect(two.contains("both set KbdInteractiveAuthentication"), "\(two)")
    }

    @Test func anAliasLineCountsForItsKeyword() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            let path = root + "/etc/ssh/sshd_config"
            try write(path, "ChallengeResponseAuthentication yes\nKbdInteractiveAuthentication no\n")
            // sshd reads the first of either spelling: kbd-interactive is on, and that line is fixed.
            let state = try hostState(root: root, resource("SSHDConfig", "s", "ChallengeResponseAuthentication: \"no\""))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.map(\.property) == ["KbdInteractiveAuthentication"])
            #expect(plan.remediations.first?.changes.first?.observed == "yes")
            #expect(outcome.verified.count == 1)
            #expect(try read(path) == "ChallengeResponseAuthentication no\nKbdInteractiveAuthentication no\n")
        }
    }

    @Test func withoutPasswordIsProhibitPassword() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            try write(root + "/etc/ssh/sshd_config", "PermitRootLogin without-password\n")
            let state = try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: prohibit-password"))
            let (plan, _) = try await reconcile(state)
            #expect(!plan.hasDrift)
        }
    }

    @Test func aDecoyLineForTheSameAccountIsRefusedNotGuessed() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            let passwd = "guest:x:1002:1002::/tmp:/usr/sbin/nologin\n" + (try read(root + "/etc/passwd"))
                + "guest:x:1001:1001::/home/guest:/bin/bash\n"
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", (try read(root + "/etc/shadow")) + "guest:$y$hash:19700:0:99999:7:::\n", mode: 0o640)
            let before = try snapshot(root)
            let state = try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true\nshell: /usr/sbin/nologin"))
            let (plan, outcome) = try await reconcile(state)
            #expect(!plan.hasDrift && outcome.entries.map(\.record.decision) == [.unobserved])
            let failure = try #require(plan.failures.first)
            #expect(failure.message.contains("account guest appears twice (lines 1 and 4)"), "\(failure.message)")
            #expect(try snapshot(root) == before)
        }
    }
}
