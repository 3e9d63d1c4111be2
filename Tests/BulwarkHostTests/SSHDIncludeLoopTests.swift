import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// sshd_config read as sshd cannot: an `Include` loop, which sshd follows until it gives up
/// ("Too many recursive configuration includes") and refuses to start, and a NUL byte, up to
/// which sshd reads a line before joining the next to it. Each is refused naming the file and
/// line, with nothing written; the same files without them go through.
@Suite struct SSHDIncludeLoopTests {
    let main = "/etc/ssh/sshd_config"

    /// What a pass of `PermitRootLogin: "no"` on `files` says went wrong; nothing is written.
    private func failures(_ files: [String: String]) async throws -> [String] {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            for (path, text) in files { try write(root + path, text, mode: 0o600) }
            let before = try snapshot(root)
            let (plan, outcome) = try await reconcile(try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\"")))
            #expect(try snapshot(root) == before)
            return (plan.failures.map(\.message) + outcome.failed.compactMap(\.record.error))
                .map { $0.replacingOccurrences(of: root, with: "") }
        }
    }

    @Test func anIncludeLoopIsRefusedNamingTheLine() async throws {
        let cases: [([String: String], String)] = [
            // The main file includes itself.
            ([main: "PermitRootLogin yes\nInclude /etc/ssh/sshd_config\n"],
             "/etc/ssh/sshd_config: Include at line 2 makes a loop (/etc/ssh/sshd_config -> /etc/ssh/sshd_config)"),
            // Through another file.
            ([main: "Include /etc/ssh/a.conf\nPermitRootLogin yes\n", "/etc/ssh/a.conf": "\n\nInclude sshd_config\n"],
             "/etc/ssh/a.conf: Include at line 3 makes a loop (/etc/ssh/sshd_config -> /etc/ssh/a.conf -> /etc/ssh/sshd_config)"),
            // A drop-in whose pattern matches itself, inside a Match block.
            ([main: "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n",
              "/etc/ssh/sshd_config.d/10-a.conf": "X11Forwarding no\n",
              "/etc/ssh/sshd_config.d/20-b.conf": "Match User x\n  Include /etc/ssh/sshd_config.d/2*.conf\n"],
             "/etc/ssh/sshd_config.d/20-b.conf: Include at line 2 makes a loop "
                + "(/etc/ssh/sshd_config.d/20-b.conf -> /etc/ssh/sshd_config.d/20-b.conf)"),
        ]
        for (files, expected) in cases {
            let found = try await failures(files)
            #expect(found.count == 1 && found.allSatisfy { $0.contains(expected) && $0.contains("Too many recursive") }, "\(found)")
        }
    }

    @Test func aNULByteIsRefusedNamingTheLine() async throws {
        // sshd 9.2 read `# note` here and not the PermitRootLogin after it (`sshd -T`: without-password).
        let found = try await failures([main: "Include /etc/ssh/extra.conf\n# note\u{0} more\nPermitRootLogin yes\n",
                                        "/etc/ssh/extra.conf": "X11Forwarding no\n"])
        #expect(found.count == 1 && found.allSatisfy { $0.contains("/etc/ssh/sshd_config: line 2 has a NUL byte") }, "\(found)")
        let included = try await failures([main: "Include /etc/ssh/extra.conf\nPermitRootLogin yes\n",
                                           "/etc/ssh/extra.conf": "X11Forwarding no\nMaxAuthTries 3\u{0}\n"])
        #expect(included.count == 1 && included.allSatisfy { $0.contains("/etc/ssh/extra.conf: line 2 has a NUL byte") }, "\(included)")
    }

    /// A file included twice, one reached two ways and a pattern that matches the main file's
    /// folder but not the main file: no loop, and the fix goes through.
    @Test func includesWithoutALoopOrANULGoThrough() async throws {
        try await withTemporaryDirectory { root in
            try makeAdminHost(root)
            try write(root + main, "Include /etc/ssh/a.conf /etc/ssh/b.conf\nInclude /etc/ssh/*.conf\nPermitRootLogin yes\n", mode: 0o600)
            try write(root + "/etc/ssh/a.conf", "Include /etc/ssh/c.conf\n")
            try write(root + "/etc/ssh/b.conf", "Include /etc/ssh/c.conf\n")
            try write(root + "/etc/ssh/c.conf", "X11Forwarding no\n")
            let (plan, outcome) = try await reconcile(try hostState(root: root, resource("SSHDConfig", "s", "PermitRootLogin: \"no\"")))
            #expect(plan.failures.isEmpty, "\(plan.failures.map(\.message))")
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try read(root + main).contains("\nPermitRootLogin no\n"))
        }
    }
}
