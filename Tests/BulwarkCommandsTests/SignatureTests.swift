@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// Trusted source through the binary, with real `ssh-keygen` keys and commits signed by the real
/// `git`: with `--trusted-signers`, every policy commit since the last applied revision must be
/// SSH-signed by a key in the allowed_signers file, or nothing acts on the revision.
@Suite struct SignatureTests {
    /// A signing key made by ssh-keygen, and its allowed_signers line.
    struct Key {
        let privateKey: String
        let allowedLine: String
    }

    func makeKey(_ dir: String, _ principal: String) throws -> Key {
        let path = dir + "/key-\(UUID().uuidString.prefix(8))"
        let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", path])
        guard made.status == 0 else { throw SupportError("ssh-keygen failed: \(made.stderr)") }
        let publicKey = try read(path + ".pub").split(separator: " ").prefix(2).joined(separator: " ")
        return Key(privateKey: path, allowedLine: "\(principal) namespaces=\"git\" \(publicKey)\n")
    }

    func allowedSigners(_ dir: String, _ keys: Key...) throws -> String {
        let path = dir + "/allowed_signers"
        try write(path, keys.map(\.allowedLine).joined())
        return path
    }

    /// Commits files through a clone, each commit signed with its key (nil: unsigned), and pushes
    /// them (forced when `onto` rewinds the branch). Returns the commits' 12-character ids.
    @discardableResult
    func commit(_ s: Scenario, _ commits: [(path: String, text: String, key: Key?)], onto base: String? = nil) throws -> [String] {
        let work = s.dir + "/work-\(UUID().uuidString.prefix(8))"
        try git("clone", "-q", s.origin, work)
        if let base { try git("reset", "-q", "--hard", base, in: work) }
        var ids: [String] = []
        for change in commits {
            try write(work + "/" + change.path, change.text)
            try git("add", "-A", in: work)
            if let key = change.key {
                try git("-c", "gpg.format=ssh", "-c", "user.signingkey=\(key.privateKey)", "commit", "-S", "-qm", "change \(change.path)", in: work)
            } else {
                try git("-c", "commit.gpgsign=false", "commit", "-qm", "change \(change.path)", in: work)
            }
            ids.append(try git("rev-parse", "--short=12", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if base == nil {
            try git("push", "-q", "origin", "main", in: work)
        } else {
            try git("push", "-q", "--force", "origin", "HEAD:main", in: work)
        }
        return ids
    }

    /// Puts root login back on the host, a drift the policy fixes.
    func drift(_ s: Scenario) throws {
        let path = s.host + "/etc/ssh/sshd_config"
        let text = try read(path)
        #expect(text.contains("\nPermitRootLogin no\n"))
        try Data(text.replacingOccurrences(of: "\nPermitRootLogin no\n", with: "\nPermitRootLogin yes\n").utf8)
            .write(to: URL(fileURLWithPath: path))
    }

    func isFixed(_ s: Scenario) throws -> Bool { try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n") }

    func refusals(_ s: Scenario) throws -> [String] {
        let log = try git("--git-dir", s.origin, "log", "--format=%H %(trailers:key=Bulwark-Decision,valueonly,separator=)", "bulwark/audit")
        return try log.split(separator: "\n").filter { $0.hasSuffix(" refused") }.map {
            try git("--git-dir", s.origin, "show", "--format=%B", String($0.prefix(40)))
        }
    }

    /// The scenario applied once without verification (its initial commit is unsigned), then drifted.
    func applied(_ dir: String) throws -> Scenario {
        let s = try Scenario(in: dir)
        #expect(try s.run("apply").status == 0)
        try drift(s)
        return s
    }

    @Test func aSignedChainApplies() async throws {
        try await withTemporaryDirectory { dir in
            let s = try applied(dir)
            let alice = try makeKey(dir, "alice@example.org")
            let bob = try makeKey(dir, "bob@example.org")
            let signers = try allowedSigners(dir, alice, bob)
            try commit(s, [("notes/a.txt", "one\n", alice), ("notes/b.txt", "two\n", bob), ("notes/c.txt", "three\n", alice)])
            let result = try s.run("apply", "--trusted-signers", signers)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try isFixed(s))
            #expect(try refusals(s).isEmpty)
        }
    }

    @Test func anUnsignedCommitInTheRangeRefusesTheRevision() async throws {
        try await withTemporaryDirectory { dir in
            let s = try applied(dir)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            let ids = try commit(s, [("notes/a.txt", "one\n", alice), ("notes/b.txt", "two\n", nil), ("notes/c.txt", "three\n", alice)])
            let before = try s.snapshot()
            let audit = try s.auditCommits()

            let plan = try s.run("plan", "--trusted-signers", signers)
            #expect(plan.status == 1)
            #expect(plan.stderr.contains("commit \(ids[1]) (Test Person <person@example.org>, \"change notes/b.txt\"): the commit is not signed"))
            #expect(try s.auditCommits() == audit, "plan writes nothing")

            let apply = try s.run("apply", "--trusted-signers", signers)
            #expect(apply.status == 1)
            #expect(apply.stderr.contains("\(ids[1])"))
            #expect(!apply.stderr.contains("commit \(ids[0])") && !apply.stderr.contains("commit \(ids[2])"), "only the unsigned commit is named")
            #expect(try s.snapshot() == before, "nothing acted on the revision")
            // Applying again records nothing new: the refusal is on the audit branch once.
            #expect(try s.run("apply", "--trusted-signers", signers).status == 1)
            let refused = try refusals(s)
            #expect(refused.count == 1)
            #expect(refused.first?.contains(ids[1]) == true)
        }
    }

    @Test func aKeyNotInTheTrustedSignersIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try applied(dir)
            let alice = try makeKey(dir, "alice@example.org")
            let mallory = try makeKey(dir, "mallory@example.org")
            let signers = try allowedSigners(dir, alice)
            let ids = try commit(s, [("notes/a.txt", "one\n", alice), ("notes/b.txt", "two\n", mallory)])
            let before = try s.snapshot()
            let apply = try s.run("apply", "--trusted-signers", signers)
            #expect(apply.status == 1)
            #expect(apply.stderr.contains("commit \(ids[1])"))
            #expect(apply.stderr.contains("signed by a key that is not in the trusted signers file"))
            #expect(try s.snapshot() == before)
            #expect(try refusals(s).count == 1)

            // Once the team trusts the key, the same revision applies.
            let trusted = try allowedSigners(dir, alice, mallory)
            #expect(try s.run("apply", "--trusted-signers", trusted).status == 0)
            #expect(try isFixed(s))
        }
    }

    @Test func aForcePushThatRewritesAppliedHistoryIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try applied(dir)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            let first = try commit(s, [("notes/a.txt", "one\n", alice)])
            #expect(try s.run("apply", "--trusted-signers", signers).status == 0)
            #expect(try isFixed(s))
            let applied = try #require(first.first)

            // History is rewritten: the applied commit is replaced by another, signed one.
            try drift(s)
            let before = try s.snapshot()
            let rewritten = try commit(s, [("notes/a.txt", "other\n", alice)], onto: applied + "~1")
            let apply = try s.run("apply", "--trusted-signers", signers)
            #expect(apply.status == 1)
            #expect(apply.stderr.contains("the policy branch was rewritten: \(applied) is not an ancestor of \(rewritten[0])"))
            #expect(try s.snapshot() == before)
            #expect(try refusals(s).count == 1)
        }
    }

    @Test func anUnsignedCommitBehindASignedMergeIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try applied(dir)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            let work = dir + "/merge-work"
            try git("clone", "-q", s.origin, work)
            try git("checkout", "-qb", "side", in: work)
            try write(work + "/notes/side.txt", "side\n")
            try git("add", "-A", in: work)
            try git("-c", "commit.gpgsign=false", "commit", "-qm", "unsigned side change", in: work)
            let side = try git("rev-parse", "--short=12", "HEAD", in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            try git("checkout", "-q", "main", in: work)
            try write(work + "/notes/main.txt", "main\n")
            try git("add", "-A", in: work)
            try git("-c", "gpg.format=ssh", "-c", "user.signingkey=\(alice.privateKey)", "commit", "-S", "-qm", "signed main change", in: work)
            try git("-c", "gpg.format=ssh", "-c", "user.signingkey=\(alice.privateKey)", "merge", "-S", "--no-ff", "-qm", "signed merge", "side", in: work)
            try git("push", "-q", "origin", "main", in: work)
            let before = try s.snapshot()

            let apply = try s.run("apply", "--trusted-signers", signers)
            #expect(apply.status == 1)
            #expect(apply.stderr.contains("commit \(side) (Test Person <person@example.org>, \"unsigned side change\"): the commit is not signed"))
            #expect(try s.snapshot() == before)
            #expect(try refusals(s).count == 1)
        }
    }

    /// A daemon polling every second that verifies against `signers`, once it is ready.
    func verifyingDaemon(_ s: Scenario, signers: String) throws -> DaemonProcess {
        let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "1", "--trusted-signers", signers],
                                       environment: ["BULWARK_WEBHOOK_SECRET": "webhook-secret-for-tests",
                                                     "BULWARK_FINDINGS_TOKEN": "findings-token-for-tests"],
                                       logPath: s.dir + "/daemon.log")
        #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
        return daemon
    }

    func sshdResource(_ name: String, _ setting: String) -> String {
        """
        apiVersion: bulwark/v1
        kind: SSHDConfig
        metadata: {name: \(name), annotations: {severity: medium}}
        spec: {\(setting): "no"}
        """
    }

    @Test func theDaemonAppliesASignedRevisionAndRefusesAnUnsignedOne() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            let daemon = try verifyingDaemon(s, signers: signers)
            let sshd = s.host + "/etc/ssh/sshd_config"

            try commit(s, [("desired-state/hosts/agent.yaml", sshdResource("no-agent-forwarding", "AllowAgentForwarding"), alice)])
            #expect(try daemon.wait(seconds: 30) { try read(sshd).contains("\nAllowAgentForwarding no\n") }, "\(daemon.log)")

            let ids = try commit(s, [("desired-state/hosts/tcp.yaml", sshdResource("no-tcp-forwarding", "AllowTcpForwarding"), nil)])
            #expect(try daemon.wait(seconds: 30) { try refusals(s).count == 1 }, "\(daemon.log)")
            #expect(try refusals(s).first?.contains("commit \(ids[0])") == true)
            #expect(!(try read(sshd).contains("AllowTcpForwarding")), "the unsigned revision changed nothing")
            #expect(daemon.terminate() == 0)
            #expect(try refusals(s).count == 1, "recorded once, however often the daemon polled")
        }
    }

    func pauseFile(paused: Bool, _ reason: String) -> String {
        "apiVersion: bulwark/v1\nkind: Pause\nmetadata: {name: pause}\nspec:\n  paused: \(paused)\n  reason: \"\(reason)\"\n"
    }

    /// Each audit record's decision and summary line, newest first.
    func decisions(_ s: Scenario) throws -> [String] {
        try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Decision,valueonly,separator=) %s", "bulwark/audit")
            .split(separator: "\n").map(String.init)
    }

    /// An unsigned commit refuses the branch, and every commit after it: `bulwark pause` on top
    /// said every daemon stops, while the daemon went on fixing under the revision in force. Now
    /// a refused revision's pause is honoured when the commit that wrote it is trusted, and
    /// lifted by a trusted resume; an unsigned pause is not (it would let anyone with push access
    /// stop the fixes).
    @Test func aTrustedPauseOnARefusedRevisionStopsTheDaemonAndAnUnsignedOneDoesNot() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            let daemon = try verifyingDaemon(s, signers: signers)
            try commit(s, [("notes/x.txt", "pushed unsigned\n", nil)])
            #expect(try daemon.wait(seconds: 30) { try refusals(s).count == 1 }, "\(daemon.log)")

            // An unsigned pause is not honoured: drift is still fixed.
            try commit(s, [("controllers/pause.yaml", pauseFile(paused: true, "unsigned pause"), nil)])
            #expect(try daemon.wait(seconds: 30) { try refusals(s).count == 2 }, "\(daemon.log)")
            try drift(s)
            #expect(try daemon.wait(seconds: 30) { try isFixed(s) }, "\(daemon.log)")

            // A pause alice signed, on the refused branch: drift is recorded as deferred, not fixed.
            try commit(s, [("controllers/pause.yaml", pauseFile(paused: true, "incident 7"), alice)])
            #expect(daemon.wait(seconds: 30) { daemon.log.contains("paused by a trusted commit of a refused revision") }, "\(daemon.log)")
            try drift(s)
            #expect(try daemon.wait(seconds: 30) { try decisions(s).contains { $0.hasPrefix("deferred") } }, "\(daemon.log)")
            let deferral = try #require(try decisions(s).first { $0.hasPrefix("deferred") })
            #expect(deferral.contains("PermitRootLogin"), "\(deferral)")
            let show = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "--grep=paused by", "bulwark/audit")
            #expect(show.contains("paused by Test Person <person@example.org>: incident 7"), "\(show)")
            try await Task.sleep(for: .seconds(3))
            #expect(!(try isFixed(s)), "paused: the drift waits")

            // Alice's signed resume lifts it: the drift is fixed.
            try commit(s, [("controllers/pause.yaml", pauseFile(paused: false, "incident 7 over"), alice)])
            #expect(try daemon.wait(seconds: 30) { try isFixed(s) }, "\(daemon.log)")
            #expect(daemon.terminate() == 0)
        }
    }

    /// An operator pushes the branch back to the revision in force over a refused commit:
    /// `/readyz` said "refused" until another commit came; now it is ready again at the next poll,
    /// and the refusal, checked at every poll, was logged once.
    @Test func aRefusedRevisionPushedAwayMakesTheDaemonReadyAgain() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            let good = try git("--git-dir", s.origin, "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines)
            let daemon = try verifyingDaemon(s, signers: signers)
            try commit(s, [("notes/x.txt", "pushed unsigned\n", nil)])
            #expect(daemon.wait(seconds: 30) { (try? daemon.get("/readyz").status) == 503 }, "\(daemon.log)")
            try await Task.sleep(for: .seconds(3))
            let logged = daemon.log.components(separatedBy: "revision refused; the last good revision stays in force").count - 1
            #expect(logged == 1, "refused at every poll, logged once: \(logged)")

            try commit(s, [], onto: good)
            #expect(daemon.wait(seconds: 30) { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            #expect(daemon.log.contains("the refused revision is no longer on the branch"), "\(daemon.log)")
            #expect(daemon.terminate() == 0)
        }
    }

    /// Review: a trusted signers file any local user could write (mode 0666, or in a folder
    /// others can write) was read as it was: whoever adds a key to it is trusted. Now the
    /// revision is refused, recorded, and nothing changes; the same file made 0644 verifies.
    @Test func aTrustedSignersFileOthersCanWriteVerifiesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try applied(dir)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            try commit(s, [("notes/a.txt", "signed\n", alice)])
            chmod(signers, 0o666)
            let refused = try s.run("apply", "--trusted-signers", signers)
            #expect(refused.status == 1, "\(refused.stdout)\n\(refused.stderr)")
            #expect(refused.stderr.contains("the trusted signers file \(signers) is writable by group or others (mode 666)"), "\(refused.stderr)")
            #expect(!(try isFixed(s)), "nothing acted on the revision")
            #expect(try refusals(s).count == 1)

            chmod(signers, 0o644)
            let open = dir + "/open"
            try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
            chmod(open, 0o777)
            try write(open + "/allowed_signers", try read(signers))
            let inOpenFolder = try s.run("apply", "--trusted-signers", open + "/allowed_signers")
            #expect(inOpenFolder.status == 1)
            #expect(inOpenFolder.stderr.contains("open, which is writable by group or others (mode 777)"), "\(inOpenFolder.stderr)")

            let applied = try s.run("apply", "--trusted-signers", signers)
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try isFixed(s))
        }
    }

    @Test func withoutTrustedSignersNothingChanges() async throws {
        try await withTemporaryDirectory { dir in
            let s = try applied(dir)
            try commit(s, [("notes/a.txt", "one\n", nil)])
            let result = try s.run("apply")
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try isFixed(s))
            #expect(try refusals(s).isEmpty)
        }
    }

    /// A new state directory has no applied revision to start from: `--initial-revision` is
    /// where it starts trusting the branch. An older signed revision pushed back over the branch
    /// is refused; a head that descends from the anchor applies, every commit after it verified,
    /// so an unsigned one among them refuses it.
    @Test func theInitialRevisionAnchorsANewStateDirectory() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            let ids = try commit(s, [("notes/a.txt", "one\n", alice), ("notes/b.txt", "two\n", alice)])
            let anchor = try git("--git-dir", s.origin, "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines)

            // The older signed revision pushed back: refused with the anchor, taken without it.
            try commit(s, [], onto: ids[0])
            let before = try s.snapshot()
            let refused = try s.run("apply", "--trusted-signers", signers, "--initial-revision", anchor, stateDir: dir + "/new-a")
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("does not descend from --initial-revision \(anchor.prefix(12))"), "\(refused.stderr)")
            #expect(try s.snapshot() == before)
            let unanchored = try s.run("plan", "--trusted-signers", signers, stateDir: dir + "/new-b")
            #expect(unanchored.stderr.contains("give --initial-revision"), "\(unanchored.stderr)")

            // Back at the anchor, and a signed commit after it: applies.
            try commit(s, [], onto: anchor)
            try commit(s, [("notes/c.txt", "three\n", alice)])
            let applied = try s.run("apply", "--trusted-signers", signers, "--initial-revision", anchor, stateDir: dir + "/new-c")
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try isFixed(s))
            #expect(!applied.stderr.contains("only the signature of"), "\(applied.stderr)")
            // An unsigned commit after the anchor, seen by another new state directory: refused.
            try commit(s, [("notes/d.txt", "four\n", nil), ("notes/e.txt", "five\n", alice)])
            let unsigned = try s.run("plan", "--trusted-signers", signers, "--initial-revision", anchor, stateDir: dir + "/new-d")
            #expect(unsigned.status == 1)
            #expect(unsigned.stderr.contains("the commit is not signed"), "\(unsigned.stderr)")
            // Usage: not a commit id, or without signatures to anchor.
            #expect(try s.run("plan", "--trusted-signers", signers, "--initial-revision", "abc").status == 64)
            #expect(try s.run("plan", "--initial-revision", anchor).status == 64)
        }
    }

    @Test func withNoAppliedRevisionOnlyTheHeadIsVerified() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let alice = try makeKey(dir, "alice@example.org")
            let signers = try allowedSigners(dir, alice)
            // The initial commit is unsigned; only the head's signature can be checked.
            try commit(s, [("notes/a.txt", "one\n", alice)])
            let result = try s.run("apply", "--trusted-signers", signers)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("only the signature of"))
            #expect(try isFixed(s))

            try commit(s, [("notes/b.txt", "two\n", nil)])
            #expect(try s.run("apply", "--trusted-signers", signers).status == 1)
        }
    }
}
