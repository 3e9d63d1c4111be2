@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// The policy repository over SSH, served by a real sshd on loopback: Bulwark authenticates
/// with a key, trusts the server only through known_hosts, and pushes its audit records there.
@Suite(.enabled(if: SSHServer.available, "needs sshd, ssh-keygen and git (and the postgres user when root)"))
struct SSHRemoteTests {
    /// The foundation scenario with its origin served by `ssh`.
    func scenario(_ dir: String, _ ssh: SSHServer) throws -> Scenario {
        let s = try Scenario(in: dir)
        chmod(dir, 0o755)
        try ssh.own(s.origin)
        return s
    }

    func bulwarkOverSSH(_ s: Scenario, _ ssh: SSHServer, _ command: String, key: String? = nil, knownHosts: String? = nil,
                        environment: [String: String] = [:]) throws -> ProcessOutput {
        var arguments = [command, "--repo", ssh.url(s.origin), "--state-dir", s.state, "--ssh-key", key ?? ssh.clientKey]
        if let knownHosts { arguments += ["--ssh-known-hosts", knownHosts] }
        return try run(try bulwarkExecutable(), arguments, environment: environment)
    }

    @Test func applyOverSSHFixesTheHostAndPushesItsAuditCommitsThere() async throws {
        let ssh = try SSHServer()
        try await withTemporaryDirectory { dir in
            let s = try scenario(dir, ssh)
            let plan = try bulwarkOverSSH(s, ssh, "plan", knownHosts: ssh.knownHosts)
            #expect(plan.status == 2, "\(plan.stderr)\n\(ssh.log)")
            let apply = try bulwarkOverSSH(s, ssh, "apply", knownHosts: ssh.knownHosts)
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)\n\(ssh.log)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
            let fixed = apply.stdout.split(separator: "\n").filter { $0.hasPrefix("fixed") }.count
            let onOrigin = try s.auditCommits().count
            #expect(fixed > 20 && onOrigin == fixed, "every record reached the SSH origin")
            #expect(apply.stdout.contains(ssh.url(s.origin)))
            #expect(ssh.log.contains("Accepted publickey for \(ssh.user)"))
            #expect(try bulwarkOverSSH(s, ssh, "plan", knownHosts: ssh.knownHosts).status == 0)
            try git("--git-dir", s.origin, "fsck", "--strict")
        }
    }

    @Test func anUnknownOrChangedHostKeyOrARefusedKeyIsAClearErrorAndChangesNothing() async throws {
        let ssh = try SSHServer()
        try await withTemporaryDirectory { dir in
            let s = try scenario(dir, ssh)
            let before = try s.snapshot()
            let name = "[127.0.0.1]:\(ssh.port)"

            // Another key on file for this server: an impostor, as far as Bulwark can tell.
            let impostor = dir + "/impostor_known_hosts"
            let other = try read(ssh.strangerKey + ".pub").split(separator: " ")
            try write(impostor, "# keys\n\(name) \(other[0]) \(other[1])\n")
            let changed = try bulwarkOverSSH(s, ssh, "apply", knownHosts: impostor)
            #expect(changed.status == 1)
            #expect(changed.stderr.contains("does not match \(impostor) line 2"), "\(changed.stderr)")

            // The server is not in the file at all.
            let empty = dir + "/empty_known_hosts"
            try write(empty, "")
            let unknown = try bulwarkOverSSH(s, ssh, "apply", knownHosts: empty)
            #expect(unknown.status == 1)
            #expect(unknown.stderr.contains("\(name) is not in \(empty)") && unknown.stderr.contains("ssh-keyscan -p \(ssh.port) 127.0.0.1"),
                    "\(unknown.stderr)")

            // No known_hosts anywhere: refused rather than trusted on first use.
            let home = dir + "/home"
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            let nothing = try bulwarkOverSSH(s, ssh, "apply", environment: ["HOME": home])
            #expect(nothing.status == 1)
            #expect(nothing.stderr.contains("cannot be checked"), "\(nothing.stderr)")

            // The right server, a key it does not accept: a clear error, promptly.
            let refused = try bulwarkOverSSH(s, ssh, "apply", key: ssh.strangerKey, knownHosts: ssh.knownHosts)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("authentication to") && refused.stderr.contains("refused the credentials"), "\(refused.stderr)")

            #expect(try s.snapshot() == before, "nothing acted on the host")
            #expect(throws: SupportError.self) { try s.auditCommits() }
        }
    }
}

/// The policy repository over git's smart HTTP protocol behind Basic authentication (git
/// http-backend on loopback): the token comes from the environment or a file and is never
/// stored, printed or recorded.
@Suite(.enabled(if: GitHTTPServer.available, "needs git-http-backend and python3"))
struct HTTPRemoteTests {
    @Test func applyWithATokenFromTheEnvironmentAndNowhereElse() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try GitHTTPServer(root: dir)
            let url = server.url("origin.git")
            let environment = ["BULWARK_GIT_PASSWORD": server.token]
            let apply = try run(try bulwarkExecutable(), ["apply", "--repo", url, "--state-dir", s.state, "--git-username", server.user],
                                environment: environment)
            #expect(apply.status == 0, "\(apply.stdout)\n\(apply.stderr)\n\(server.requests)")
            let fixed = apply.stdout.split(separator: "\n").filter { $0.hasPrefix("fixed") }.count
            let onOrigin = try s.auditCommits().count
            #expect(fixed > 20 && onOrigin == fixed, "every record reached the HTTP origin")
            #expect(server.requests.contains { $0.hasPrefix("POST /origin.git/git-receive-pack 200") }, "\(server.requests)")
            #expect(server.requests.contains { $0.hasSuffix(" 401") }, "the server challenged first")

            // A token file works the same; the second apply has nothing to do.
            try write(dir + "/token", server.token + "\n", mode: 0o600)
            let again = try run(try bulwarkExecutable(), ["apply", "--repo", url, "--state-dir", s.state, "--git-username", server.user,
                                                          "--git-password-file", dir + "/token", "--secrets-dir", dir])
            #expect(again.status == 0 && again.stdout.contains("Fixed and verified: 0."), "\(again.stdout)\n\(again.stderr)")

            // The token is in no output, no audit record, and not in Bulwark's clone.
            let stored = try run("/usr/bin/grep", ["-r", "-l", server.token, s.state])
            #expect(stored.status == 1, "token found in \(stored.stdout)")
            #expect(!(try git("--git-dir", s.origin, "log", "-p", "--all")).contains(server.token))
            #expect(![apply.stdout, apply.stderr, again.stdout, again.stderr].contains { $0.contains(server.token) })
        }
    }

    /// Harmful: a token kept in `--repo` and rotated (or moved out of the URL into
    /// `--git-password-file`) made the state directory "another repository" (64), the message
    /// showing the same redacted URL twice. Now the clone takes the new URL, and the old token
    /// leaves its configuration. Legitimate twin: another repository on the same server is still refused.
    @Test func aTokenRotatedInTheURLIsTheSameRepository() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try GitHTTPServer(root: dir)
            let plain = server.url("origin.git")
            let withToken = plain.replacingOccurrences(of: "http://", with: "http://\(server.user):\(server.token)@")
            let first = try run(try bulwarkExecutable(), ["plan", "--repo", withToken, "--state-dir", s.state])
            #expect(first.status == 2, "\(first.stderr)\n\(server.requests)")

            // The token no longer in the URL: given from a file instead.
            try write(dir + "/token", server.token + "\n", mode: 0o600)
            let moved = try run(try bulwarkExecutable(), ["plan", "--repo", plain, "--state-dir", s.state, "--git-username", server.user,
                                                          "--git-password-file", dir + "/token", "--secrets-dir", dir])
            #expect(moved.status == 2, "\(moved.stderr)")
            #expect(!moved.stderr.contains("another repository"), "\(moved.stderr)")
            let stored = try run("/usr/bin/grep", ["-r", "-l", server.token, s.state])
            #expect(stored.status == 1, "the old URL's token is gone from the clone: \(stored.stdout)")

            // Another token in the URL (a rotated one the server does not know yet): the origin
            // refuses it, not the state directory.
            let rotated = withToken.replacingOccurrences(of: server.token, with: "tok-rotated")
            let refused = try run(try bulwarkExecutable(), ["plan", "--repo", rotated, "--state-dir", s.state])
            #expect(refused.status != 64 && !refused.stderr.contains("another repository"), "\(refused.status) \(refused.stderr)")
            #expect(refused.stderr.contains("cannot fetch http://bulwark-bot:<redacted>@127.0.0.1:"), "\(refused.stderr)")
            #expect(!refused.stderr.contains("tok-rotated"), "\(refused.stderr)")

            // Another repository on the same server, same credentials: still another repository.
            let other = try run(try bulwarkExecutable(), ["plan", "--repo", withToken.replacingOccurrences(of: "/origin.git", with: "/other.git"),
                                                          "--state-dir", s.state])
            #expect(other.status == 64 && other.stderr.contains("belongs to another repository"), "\(other.stderr)")
            #expect(!other.stderr.contains(server.token), "\(other.stderr)")
        }
    }

    /// A `--git-password-file` of two lines was sent whole, the newline and second line in it:
    /// refused, naming the file (and not its content). One line with its newline is fine.
    @Test func aPasswordFileOfTwoLinesIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try GitHTTPServer(root: dir)
            try write(dir + "/two-lines", server.token + "\nsecond-line-secret\n", mode: 0o600)
            let refused = try run(try bulwarkExecutable(), ["plan", "--repo", server.url("origin.git"), "--state-dir", s.state,
                                                            "--git-username", server.user, "--git-password-file", dir + "/two-lines",
                                                            "--secrets-dir", dir])
            #expect(refused.status != 0 && refused.status != 2, "\(refused.stderr)")
            #expect(refused.stderr.contains("the git password file \(dir)/two-lines holds more than one line"), "\(refused.stderr)")
            #expect(!refused.stderr.contains("second-line-secret") && !refused.stderr.contains(server.token))
            #expect(server.requests.isEmpty, "nothing was sent: \(server.requests)")

            try write(dir + "/one-line", server.token + "\n", mode: 0o600)
            let taken = try run(try bulwarkExecutable(), ["plan", "--repo", server.url("origin.git"), "--state-dir", s.state,
                                                          "--git-username", server.user, "--git-password-file", dir + "/one-line",
                                                          "--secrets-dir", dir])
            #expect(taken.status == 2, "\(taken.stderr)")
        }
    }

    @Test func aWrongOrMissingTokenIsAClearErrorAndChangesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let server = try GitHTTPServer(root: dir)
            let before = try s.snapshot()
            let wrong = try run(try bulwarkExecutable(), ["apply", "--repo", server.url("origin.git"), "--state-dir", s.state],
                                environment: ["BULWARK_GIT_PASSWORD": "not-the-token"])
            #expect(wrong.status == 1)
            #expect(wrong.stderr.contains("refused the credentials") && !wrong.stderr.contains("not-the-token"), "\(wrong.stderr)")
            let missing = try run(try bulwarkExecutable(), ["apply", "--repo", server.url("origin.git"), "--state-dir", s.state],
                                  environment: ["BULWARK_GIT_PASSWORD": ""])
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("asks for credentials and none were given"), "\(missing.stderr)")
            #expect(try s.snapshot() == before)
            #expect(throws: SupportError.self) { try s.auditCommits() }
        }
    }
}

/// known_hosts as OpenSSH writes it, checked against real `ssh-keygen` output.
struct KnownHostsTests {
    func key(_ dir: String, _ name: String) throws -> (type: String, base64: String, bytes: [UInt8]) {
        #expect(try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", dir + "/" + name]).status == 0)
        let parts = try read(dir + "/" + name + ".pub").split(separator: " ")
        return (String(parts[0]), String(parts[1]), [UInt8](Data(base64Encoded: String(parts[1]))!))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")))
    func hashedPlainWildcardNegatedAndRevokedEntries() async throws {
        try await withTemporaryDirectory { dir in
            let a = try key(dir, "a"), b = try key(dir, "b"), c = try key(dir, "c")
            // ssh-keygen -H hashes the names, as Debian's ssh does by default.
            try write(dir + "/hashed", "git.example.org \(a.type) \(a.base64)\n[git.example.org]:2222 \(b.type) \(b.base64)\n")
            #expect(try run("/usr/bin/ssh-keygen", ["-H", "-f", dir + "/hashed"]).status == 0)
            let hashed = try KnownHosts(path: dir + "/hashed")
            #expect(try read(dir + "/hashed").hasPrefix("|1|"))
            #expect(hashed.check(host: "git.example.org", port: 22, key: a.bytes) == nil)
            #expect(hashed.check(host: "GIT.example.org", port: 22, key: a.bytes) == nil)
            #expect(hashed.check(host: "git.example.org", port: 2222, key: b.bytes) == nil)
            #expect(hashed.check(host: "git.example.org", port: 2222, key: a.bytes)?.contains("does not match") == true)
            #expect(hashed.check(host: "other.example.org", port: 22, key: a.bytes)?.contains("is not in") == true)

            let patterns = KnownHosts(path: "patterns", text: """
                *.example.org,!evil.example.org \(a.type) \(a.base64) comment
                @revoked * \(c.type) \(c.base64)
                @cert-authority *.example.org \(b.type) \(b.base64)
                git?.internal \(b.type) \(b.base64)
                """)
            #expect(patterns.check(host: "git.example.org", port: 22, key: a.bytes) == nil)
            #expect(patterns.check(host: "evil.example.org", port: 22, key: a.bytes)?.contains("is not in") == true)
            #expect(patterns.check(host: "git.example.org", port: 22, key: b.bytes)?.contains("does not match patterns line 1") == true,
                    "a certificate authority line is not a host key")
            #expect(patterns.check(host: "git1.internal", port: 22, key: b.bytes) == nil)
            #expect(patterns.check(host: "git12.internal", port: 22, key: b.bytes) != nil)
            #expect(patterns.check(host: "git.example.org", port: 22, key: c.bytes)?.contains("@revoked") == true)
        }
    }

    @Test func sshEndpointsAndRedactedURLs() {
        #expect(sshEndpoint("ssh://git@example.org:2222/srv/policy.git")! == ("example.org", 2222))
        #expect(sshEndpoint("ssh://example.org/policy.git")! == ("example.org", 22))
        #expect(sshEndpoint("git@example.org:team/policy.git")! == ("example.org", 22))
        #expect(sshEndpoint("https://example.org/policy.git") == nil)
        #expect(sshEndpoint("/srv/policy.git") == nil)
        #expect(sshEndpoint("policy/dir:with-colon") == nil)
        #expect(redactedURL("https://bot:ghp_secret@example.org/a@b.git") == "https://bot:<redacted>@example.org/a@b.git")
        #expect(redactedURL("https://bot@example.org/p.git") == "https://bot@example.org/p.git")
        #expect(redactedURL("/srv/policy.git") == "/srv/policy.git")
        #expect(!RemoteAccess(username: "bot", password: "ghp_secret").description.contains("ghp_secret"))
    }
}
