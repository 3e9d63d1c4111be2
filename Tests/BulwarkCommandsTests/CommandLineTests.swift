@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkServer
import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do (without it, a build failed now and then with
// "missing import of defining module 'CDispatch'" as files were added).
internal import CDispatch
import Foundation
import Testing

/// The command line facing hostile input and tired operators: every refusal exits with the
/// documented code, says why, and writes nothing; the legitimate form still works.
@Suite struct CommandLineTests {
    /// Runs the binary with standard output a pipe whose reader has already gone.
    func runIntoClosedPipe(_ arguments: [String]) throws -> (status: Int32, reason: Process.TerminationReason, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try bulwarkExecutable())
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        process.environment = env
        let out = Pipe()
        try out.fileHandleForReading.close()
        let errPath = NSTemporaryDirectory() + "/bulwark-test-stderr-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        process.standardOutput = out
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try out.fileHandleForWriting.close()
        process.waitUntilExit()
        return (process.terminationStatus, process.terminationReason, try read(errPath))
    }

    // MARK: - Closed pipes

    /// `--findings-source-tokens`: one `SOURCE TOKEN` pair a line, comments and blank lines
    /// skipped; a malformed line, a lone `*` or one token for two sources is an error naming
    /// the file and line, never the token.
    @Test func findingsSourceTokensAreReadAndAMistakeNamesItsLine() throws {
        let tokens = try Bulwark.Run.sourceTokens("# scanners\ngarak gtok-1234567890abcdef\n\n  sarif:* stok-1234567890abcdef\n", file: "t")
        #expect(tokens.map(\.source) == ["garak", "sarif:*"])
        #expect(tokens.first?.allows("garak") == true && tokens.first?.allows("garak2") == false)
        #expect(tokens.last?.allows("sarif:semgrep") == true && tokens.last?.allows("garak") == false)
        for (text, line) in [("garak\n", 1), ("# c\ngarak a b\n", 2), ("* tok-secret-1\n", 1), ("sar*if tok-secret-1\n", 1),
                             ("garak tok-secret-1\nprowler tok-secret-1\n", 2), ("gar/ak tok-secret-1\n", 1)] {
            #expect {
                try Bulwark.Run.sourceTokens(text, file: "tokens")
            } throws: { error in
                "\(error)".contains("tokens line \(line):") && !"\(error)".contains("tok-secret-1")
            }
        }
        #expect(throws: (any Error).self) { try Bulwark.Run.sourceTokens("# nothing\n", file: "tokens") }
    }

    @Test func writingToAClosedPipeEndsPrintingNotThePass() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = try s.snapshot()
            // plan: exit 2 (drift) even though nobody reads what it prints.
            let plan = try runIntoClosedPipe(["plan", "--repo", s.origin, "--state-dir", s.state])
            #expect(plan.reason == .exit && plan.status == 2, "\(plan.status) \(plan.stderr)")
            #expect(!plan.stderr.contains("Fatal error"))
            #expect(try s.snapshot() == before)
            // apply: the whole pass runs and is recorded; exit 0.
            let apply = try runIntoClosedPipe(["apply", "--repo", s.origin, "--state-dir", s.state])
            #expect(apply.reason == .exit && apply.status == 0, "\(apply.status) \(apply.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
            #expect(try s.auditCommits().count > 20)
            // The real pipeline, `| head -1`: head gets its line, bulwark's status is kept.
            let shell = try run("/bin/bash", ["-c", "\"$0\" log --repo \"$1\" --state-dir \"$2\" | head -1; exit ${PIPESTATUS[0]}",
                                              try bulwarkExecutable(), s.origin, s.state])
            #expect(shell.status == 0, "\(shell.stderr)")
            #expect(shell.stdout.split(separator: "\n").count == 1)
            #expect(!shell.stderr.contains("Fatal error"))
            let planHead = try run("/bin/bash", ["-c", "\"$0\" plan --repo \"$1\" --state-dir \"$2\" | head -1; exit ${PIPESTATUS[0]}",
                                                 try bulwarkExecutable(), s.origin, s.state])
            #expect(planHead.status == 0, "in sync after the apply: \(planHead.stderr)")
            #expect(planHead.stdout.hasPrefix("Desired state"))
        }
    }

    // MARK: - Durations and numbers

    @Test func anOverflowingDurationIsRefusedByValidatePlanAndLog() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let controller = try read(s.policy + "/controllers/host-hardening.yaml")
                .replacingOccurrences(of: "interval: 5m", with: "interval: 9223372036854775807w")
            try write(s.policy + "/controllers/host-hardening.yaml", controller)
            let validate = try bulwark(["validate", s.policy])
            #expect(validate.status == 1)
            #expect(validate.stderr.contains("spec.interval: duration too large; at most 3650d"), "\(validate.stderr)")

            try s.commitPolicy("controllers/host-hardening.yaml", controller)
            let before = try s.snapshot()
            let plan = try s.run("plan")
            #expect(plan.status == 1)
            #expect(plan.stderr.contains("duration too large"))
            let apply = try s.run("apply")
            #expect(apply.status == 1)
            #expect(try s.snapshot() == before)
            #expect(try s.trailers("Bulwark-Decision") == ["refused"], "the refusal is recorded, nothing else")

            let log = try s.run("log", "--since", "9223372036854775807w")
            #expect(log.status == 64)
            #expect(log.stderr.contains("duration too large"), "\(log.stderr)")
            #expect(try s.run("report", "--since", "99999999999999999999999h").status == 64)
            #expect(try s.run("log", "--since", "7d").status == 0)
        }
    }

    @Test func anAliasBombIsOneErrorAndLittleOutput() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let anchor = String(repeating: "x", count: 50_000)
            var text = "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: bomb}\nspec:\n  Banner: &big \(anchor)\n  list:\n"
            text += String(repeating: "    - *big\n", count: 10_000)
            try write(s.policy + "/desired-state/bomb.yaml", text)
            let validate = try bulwark(["validate", s.policy])
            #expect(validate.status == 1)
            #expect(validate.stderr.contains("desired-state/bomb.yaml:"))
            #expect(validate.stderr.contains("alias expansion too large"))
            #expect(validate.stderr.contains("(1 error)"), "\(validate.stderr.prefix(500))")
            #expect(validate.stderr.utf8.count < 2_000)
        }
    }

    @Test func warningsAreCappedLikeErrors() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            // The shipped baseline's own warnings (its ai-gateway resources bind no target here).
            let shipped = try bulwark(["validate", s.policy]).stderr.split(separator: "\n").count
            // 150 resources no controller handles: one warning each.
            let documents = (0..<150).map { n in
                "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: unbound-\(n)}\ntargets: {selector: {role: nowhere}}\nspec: {kernel.x\(n): \"1\"}\n"
            }
            try write(s.policy + "/desired-state/unbound.yaml", documents.joined(separator: "---\n"))
            let validate = try bulwark(["validate", s.policy])
            #expect(validate.status == 0, "\(validate.stderr.prefix(500))")
            let lines = validate.stderr.split(separator: "\n")
            #expect(lines.count == ValidationFailure.maxShown + 1)
            #expect(lines.last == "warning: … and \(50 + shipped) more warnings")
            // A few warnings are all shown.
            try write(s.policy + "/desired-state/unbound.yaml", documents.prefix(3).joined(separator: "---\n"))
            #expect(try bulwark(["validate", s.policy]).stderr.split(separator: "\n").count == 3 + shipped)
        }
    }

    @Test func accessKeyAgesStartAtOneDay() throws {
        func load(_ spec: String) -> [String] {
            let file = SourceFile(path: "desired-state/keys.yaml", contents: Array("""
                apiVersion: bulwark/v1
                kind: IAMAccessKey
                metadata: {name: keys}
                spec: \(spec)

                """.utf8))
            do {
                _ = try DesiredStateLoader(registry: Bulwark.registry()).load([file], revision: "r")
                return []
            } catch {
                return error.errors.map(\.description)
            }
        }
        #expect(load("{maxAgeDays: 0}").contains { $0.contains("spec.maxAgeDays: expected an integer from 1 to 3650") })
        #expect(load("{maxUnusedDays: 0}").contains { $0.contains("spec.maxUnusedDays: expected an integer from 1 to 3650") })
        #expect(load("{maxAgeDays: 3651}").count == 2)
        #expect(load("{maxAgeDays: 1, maxUnusedDays: 90}") == [])
        #expect(load("{maxAgeDays: 3650}") == [])
    }

    // MARK: - Branches

    @Test func invalidBranchNamesAndAnAuditBranchOnTheDesiredStateExit64() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            for (option, name) in [("--branch", "a~b"), ("--branch", "x..y"), ("--audit-branch", "audit.lock"),
                                   ("--audit-branch", "-audit"), ("--branch", "a b"), ("--audit-branch", "a/"),
                                   ("--branch", "@{u}"), ("--audit-branch", ".hidden/x"), ("--branch", "a\u{7}b")] {
                let result = try s.run("plan", "\(option)=\(name)")
                #expect(result.status == 64, "\(option) \(name): \(result.stderr)")
                #expect(result.stderr.contains("is not a valid branch name"), "\(result.stderr)")
            }
            let same = try s.run("apply", "--audit-branch", "main")
            #expect(same.status == 64)
            #expect(same.stderr.contains("--audit-branch must differ from --branch"))
            #expect(!FileManager.default.fileExists(atPath: s.state), "nothing was written")
            #expect((try? s.auditCommits()) == nil)
            #expect(try git("--git-dir", s.origin, "branch", "--list").split(separator: "\n").count == 1)

            // A legitimate audit branch name with a slash still works.
            let apply = try s.run("apply", "--audit-branch", "records/host-1")
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "--verify", "-q", "records/host-1").count == 41)

            let badInit = try bulwark(["init", dir + "/other", "--branch", "main..x"])
            #expect(badInit.status == 64)
            #expect(!FileManager.default.fileExists(atPath: dir + "/other"))
        }
    }

    // MARK: - init, plan, version, repository and state defaults

    @Test func initRefusesAHostRootWithoutAHostTree() async throws {
        try await withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
            let result = try bulwark(["init", dir + "/policy", "--host-root", dir + "/empty"])
            #expect(result.status == 64)
            #expect(result.stderr.contains("holds no host tree"))
            #expect(result.stderr.contains("must be `/`"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/policy"))
            // A folder holding a host tree is taken (the Scenario's own init proves the rest).
            try DemoHost.create(at: dir + "/host")
            #expect(try bulwark(["init", dir + "/policy", "--host-root", dir + "/host"]).status == 0)
        }
    }

    /// Harmful: a host root that is this machine's `/` by accident (`--host-root $SANDBOX/` with
    /// the variable unset, `../../..` from a shallow folder, a link to `/`) wrote a policy whose
    /// next `apply` changes the real sshd_config, shadow and accounts: refused (64) saying how to
    /// do it on purpose, nothing created; `--host-root /` alone asks for the confirmation, and the
    /// confirmation goes with `/` only. Legitimate: `--host-root / --this-machine` writes `root: "/"`.
    @Test func initRefusesARootThatIsThisMachineUnlessConfirmed() async throws {
        try await withTemporaryDirectory { dir in
            try DemoHost.create(at: dir + "/host")
            try FileManager.default.createSymbolicLink(atPath: dir + "/to-root", withDestinationPath: "/")
            let climbs = String(repeating: "../", count: dir.split(separator: "/").count + 2)
            for (root, says) in [("/", "add --this-machine"), (climbs, "is `/`, this machine itself"),
                                 (dir + "/to-root", "is `/`, this machine itself"), (dir + "/host/..//../../../../../../../..", "is `/`")] {
                let refused = try run(try bulwarkExecutable(), ["init", dir + "/policy", "--host-root", root], in: dir)
                #expect(refused.status == 64, "\(root): \(refused.stdout)\(refused.stderr)")
                #expect(refused.stderr.contains(says) && refused.stderr.contains("--this-machine"), "\(root): \(refused.stderr)")
                #expect(!FileManager.default.fileExists(atPath: dir + "/policy"), "\(root)")
            }
            // The confirmation goes with `/` itself, not with a root that only resolves to it, nor a sandbox.
            for root in [climbs, dir + "/host"] {
                let refused = try run(try bulwarkExecutable(), ["init", dir + "/policy", "--host-root", root, "--this-machine"], in: dir)
                #expect(refused.status == 64, "\(root): \(refused.stderr)")
                #expect(!FileManager.default.fileExists(atPath: dir + "/policy"))
            }

            let machine = try bulwark(["init", dir + "/policy", "--host-root", "/", "--this-machine"])
            #expect(machine.status == 0, "\(machine.stderr)")
            #expect(machine.stdout.contains("Host target `local` is rooted at /."), "\(machine.stdout)")
            #expect(try read(dir + "/policy/controllers/targets.yaml").contains("  root: \"/\"\n"))
            // A sandbox root is still taken without it.
            #expect(try bulwark(["init", dir + "/sandbox-policy", "--host-root", dir + "/host"]).status == 0)
        }
    }

    /// A target rooted at `/` is this machine: `plan` says so in one line naming the target (a
    /// policy meant for a sandbox whose root became `/` is seen before `apply`); a sandbox target
    /// is not mentioned. The machine's target here is bound to no controller: nothing of `/` is read.
    @Test func planNamesATargetThatIsThisMachine() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let sandbox = try s.run("plan")
            #expect(sandbox.status == 2, "\(sandbox.stderr)")
            #expect(!sandbox.stderr.contains("this machine"), "\(sandbox.stderr)")
            try s.commitPolicy("controllers/machine.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: the-machine, labels: {role: none-of-the-controllers}}
                spec: {adapter: host, root: /}

                """)
            let machine = try s.run("plan")
            #expect(machine.status == 2, "\(machine.stderr)")
            #expect(machine.stderr.contains("note: target `the-machine` is rooted at /: it is this machine"), "\(machine.stderr)")
            #expect(!machine.stderr.contains("target `local`"), "\(machine.stderr)")
        }
    }

    /// A root whose name YAML would read otherwise (` #` starts a comment) is written quoted:
    /// the target is that folder, not the part before the `#`.
    @Test func initQuotesTheHostRoot() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/sb #1"
            try DemoHost.create(at: root)
            #expect(try bulwark(["init", dir + "/policy", "--host-root", root]).status == 0)
            let targets = try read(dir + "/policy/controllers/targets.yaml")
            #expect(targets.contains("root: \"/") && targets.contains("/sb #1\"\n"), "\(targets)")
            let plan = try bulwark(["plan", "--repo", dir + "/policy", "--state-dir", dir + "/state"])
            #expect(plan.status == 2, "\(plan.stdout)\n\(plan.stderr)")
            #expect(plan.stdout.contains("PermitRootLogin"), "\(plan.stdout)")
        }
    }

    /// The state directory holds the clone, whose configuration keeps the origin's URL as given
    /// (a token in it too): made 0700 when created, and tightened (and said so) when found open.
    @Test func theStateDirectoryIsPrivate() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            func mode(_ path: String) throws -> Int {
                (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
            }
            let created = try s.run("plan", stateDir: dir + "/new-state")
            #expect(created.status == 2, "\(created.stderr)")
            #expect(try mode(dir + "/new-state") == 0o700)
            #expect(!created.stderr.contains("is now 0700"), "\(created.stderr)")

            try FileManager.default.createDirectory(atPath: dir + "/open-state", withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
            // A folder that does not hold the clone yet is said, not changed; once it holds it, it is tightened.
            let open = try s.run("plan", stateDir: dir + "/open-state")
            #expect(open.status == 2, "\(open.stderr)")
            #expect(try mode(dir + "/open-state") == 0o755)
            #expect(open.stderr.contains("can be read by other users"), "\(open.stderr)")
            let tightened = try s.run("plan", stateDir: dir + "/open-state")
            #expect(try mode(dir + "/open-state") == 0o700)
            #expect(tightened.stderr.contains("was mode 755; it is now 0700"), "\(tightened.stderr)")
            let again = try s.run("plan", stateDir: dir + "/open-state")
            #expect(!again.stderr.contains("0700"), "\(again.stderr)")

            // A sticky folder only Bulwark may write in is never closed, even holding the clone.
            try FileManager.default.createDirectory(atPath: dir + "/shared", withIntermediateDirectories: true)
            #expect(chmod(dir + "/shared", 0o1755) == 0)
            _ = try s.run("plan", stateDir: dir + "/shared")
            let shared = try s.run("plan", stateDir: dir + "/shared")
            #expect(try mode(dir + "/shared") == 0o1755)
            #expect(shared.stderr.contains("is shared (mode 1755)"), "\(shared.stderr)")
        }
    }

    /// A state directory someone else may write in is refused before anything in it is read or
    /// made: its owner could swap the intent journal and have Bulwark record, sign and push a
    /// fix that never happened (outside review: a folder another user made in /tmp was used
    /// without a word). Refused: a folder writable by all (as /tmp itself), another user's
    /// folder, one under a folder anyone may write in without the sticky bit. Used: Bulwark's
    /// own folder under a sticky shared one (as /tmp/x), and under a folder that is its own.
    @Test(.enabled(if: isRoot, "chowns to another uid")) func aStateDirectoryOthersCanWriteInIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            func folder(_ path: String, _ mode: mode_t, owner: uid_t = 0) throws {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                #expect(chmod(path, mode) == 0 && chown(path, owner, 0) == 0)
            }
            try folder(dir + "/everyone", 0o1777)
            try folder(dir + "/theirs", 0o700, owner: 4242)
            try folder(dir + "/open", 0o777)
            try folder(dir + "/open/state", 0o700)
            try folder(dir + "/mine-behind-link", 0o700)
            #expect(symlink(dir + "/mine-behind-link", dir + "/open/link") == 0)
            for (path, cause) in [(dir + "/everyone", "group or others may write in it (mode 1777)"),
                                  (dir + "/theirs", "it belongs to uid 4242, not to this user (uid 0)"),
                                  (dir + "/open/state", "\(URL(fileURLWithPath: dir).resolvingSymlinksInPath().path)/open on the way to it may be written by group or others without the sticky bit"),
                                  // A link in a folder anyone may write in: its target is Bulwark's own, but
                                  // whoever writes there could point it elsewhere (third review).
                                  (dir + "/open/link", "\(URL(fileURLWithPath: dir).resolvingSymlinksInPath().path)/open on the way to it may be written")] {
                for command in ["plan", "apply"] {
                    let refused = try s.run(command, stateDir: path)
                    #expect(refused.status == 1, "\(command) \(path): \(refused.stderr)")
                    #expect(refused.stderr.contains("cannot use the state directory '\(path)': \(cause)"), "\(refused.stderr)")
                    #expect(!FileManager.default.fileExists(atPath: path + "/repository.git"), "nothing made in it")
                    #expect(!FileManager.default.fileExists(atPath: path + "/intents.log"), "nothing made in it")
                }
            }
            try folder(dir + "/sticky", 0o1777)
            try folder(dir + "/sticky/state", 0o700)
            // A link in a folder only root may write in is followed; `..` is taken lexically.
            #expect(symlink(dir + "/mine-behind-link", dir + "/trusted-link") == 0)
            for path in [dir + "/sticky/state", dir + "/sticky/../mine/state", dir + "/trusted-link"] {
                let used = try s.run("plan", stateDir: path)
                #expect(used.status == 2, "\(path): \(used.stderr)")
            }
            // Folders it makes are 0700 whatever the umask (run through a shell to set one): made
            // 0775 under umask 002, the new state directory was refused as writable by its group.
            let umask002 = try run("/bin/sh", ["-c", "umask 002; exec \"$0\" plan --repo \"$1\" --state-dir \"$2\"",
                                               try bulwarkExecutable(), s.origin, dir + "/made/under/umask"])
            #expect(umask002.status == 2, "\(umask002.stderr)")
            for made in ["/made", "/made/under", "/made/under/umask"] {
                var info = stat()
                #expect(stat(dir + made, &info) == 0 && info.st_mode & 0o777 == 0o700, "\(made)")
            }
        }
    }

    /// A state directory that is a file or under a file is named with its cause, not as
    /// Foundation's error domain and code; a folder that can be made still is. (An empty one is
    /// a usage mistake: `emptyPathOptionsAreRefusedBeforeAnythingRuns`.)
    @Test func aStateDirectoryThatCannotBeUsedIsNamedWithItsCause() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try write(dir + "/afile", "")
            for (path, cause) in [(dir + "/afile", "it is a file, not a folder"),
                                  (dir + "/afile/sub", "it cannot be created: ")] {
                let refused = try s.run("plan", stateDir: path)
                #expect(refused.status == 1, "\(refused.stderr)")
                #expect(refused.stderr.contains("cannot use the state directory '\(path)': \(cause)"), "\(refused.stderr)")
                #expect(!refused.stderr.contains("NSCocoaErrorDomain"), "\(refused.stderr)")
                if path.hasSuffix("/sub") { #expect(refused.stderr.contains("afile is a file, not a folder"), "\(refused.stderr)") }
            }
            let made = try s.run("plan", stateDir: dir + "/a/b/state")
            #expect(made.status == 2, "\(made.stderr)")
        }
    }

    /// A branch or repository with no policy in it (a README only) is refused by plan, apply and
    /// validate (1), and nothing is written to it; the policy branch of the same repository still plans.
    @Test func aRepositoryWithoutPolicyIsRefusedAndNotWrittenTo() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let work = dir + "/readme-only"
            try git("clone", "-q", s.origin, work)
            try git("checkout", "-q", "--orphan", "docs", in: work)
            try git("rm", "-rfq", ".", in: work)
            try write(work + "/README.md", "docs\n")
            try git("add", "README.md", in: work)
            try git("-c", "user.name=T", "-c", "user.email=t@x", "-c", "commit.gpgsign=false", "commit", "-qm", "docs", in: work)
            try git("push", "-q", "origin", "docs", in: work)
            for command in ["plan", "apply"] {
                let refused = try s.run(command, "--branch", "docs", stateDir: dir + "/state-\(command)")
                #expect(refused.status == 1, "\(command): \(refused.status) \(refused.stdout) \(refused.stderr)")
                #expect(refused.stderr.contains("has no desired-state/ or controllers/ folder"), "\(refused.stderr)")
            }
            #expect(try git("--git-dir", s.origin, "for-each-ref", "refs/heads/bulwark/").isEmpty, "nothing recorded on the origin")
            let validated = try bulwark(["validate", work])
            #expect(validated.status == 1 && validated.stderr.contains("has no desired-state/ or controllers/ folder"), "\(validated.stderr)")
            let json = try bulwark(["validate", work, "--output", "json"])
            #expect(json.status == 1 && json.stdout.contains("\"valid\":false") || json.stdout.contains("\"valid\" : false"), "\(json.stdout)")
            #expect(try s.run("plan").status == 2, "the policy branch still plans")
        }
    }

    /// `log --kind` with a kind no record can have is refused (64), naming the kind it was
    /// probably meant to be; a known kind filters. `log` and `report` from the last fetched
    /// audit branch (the origin moved away) print it and exit 3, as `plan` does.
    @Test func logRefusesAnUnknownKindAndStaleHistoryExits3() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            let typo = try s.run("log", "--kind", "sshdconfig")
            #expect(typo.status == 64, "\(typo.stderr)")
            #expect(typo.stderr.contains("did you mean SSHDConfig?"), "\(typo.stderr)")
            let unknown = try s.run("log", "--kind", "Firewal")
            #expect(unknown.status == 64 && unknown.stderr.contains("known kinds: "), "\(unknown.stderr)")
            let known = try s.run("log", "--kind", "SSHDConfig")
            #expect(known.status == 0, "\(known.stderr)")
            #expect(known.stdout.contains("SSHDConfig/") && !known.stdout.contains("FileMode/"), "\(known.stdout)")
            // Each line ends with the record's id, what `revert` takes.
            let ids = try s.trailers("Bulwark-Id")
            let lines = known.stdout.split(separator: "\n")
            #expect(!lines.isEmpty && lines.allSatisfy { line in ids.contains { line.hasSuffix("  " + $0) } }, "\(known.stdout)")
            try FileManager.default.moveItem(atPath: s.origin, toPath: dir + "/moved.git")
            for command in ["log", "report"] {
                let stale = try s.run(command)
                #expect(stale.status == 3, "\(command): \(stale.status) \(stale.stderr)")
                #expect(stale.stderr.contains("using the last fetched revision"), "\(stale.stderr)")
                #expect(!stale.stdout.isEmpty)
            }
        }
    }

    /// A state directory another process holds: plan and apply exit 75 (busy, try again),
    /// naming the holder's pid; once it lets go, the same command goes through.
    @Test func aBusyStateDirectoryExits75NamingTheHolder() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("plan").status == 2)
            do {
                let held = try StateLock(s.state + "/lock", directory: s.state)
                for command in ["plan", "apply"] {
                    let busy = try s.run(command)
                    #expect(busy.status == 75, "\(command): \(busy.status) \(busy.stderr)")
                    #expect(busy.stderr.contains("another bulwark process (pid \(getpid())) is using the state directory"), "\(busy.stderr)")
                }
                _ = held
            }
            #expect(try s.run("apply").status == 0)
        }
    }

    /// A target whose root is gone fails every resource alike: plan and apply say it in one line
    /// (how many, the first few, the message), while the JSON keeps one error per resource.
    @Test func alikeObservationFailuresOfATargetAreOneLine() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try FileManager.default.moveItem(atPath: s.host, toPath: dir + "/host-moved")
            let json = try s.run("plan", "--output", "json")
            #expect(json.status == 1, "\(json.stderr)")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            let errors = try #require(document["errors"] as? [String])
            #expect(errors.count > 3, "\(errors)")
            for command in ["plan", "apply"] {
                let text = try s.run(command)
                #expect(text.status == 1, "\(text.stderr)")
                let lines = text.stderr.split(separator: "\n").filter { $0.contains("could not be observed") || $0.contains("local ") && $0.hasPrefix("Error:") }
                #expect(lines.count == 1, "\(command): \(text.stderr)")
                #expect(lines.first?.contains("local: \(errors.count) resources could not be observed (") == true, "\(lines)")
                #expect(lines.first?.contains("and \(errors.count - 3) more") == true, "\(lines)")
            }
        }
    }

    /// A record with no change (a refused revision) shows why in `log`, from its body's
    /// `Reason:` line, in the text and in the JSON.
    @Test func logShowsWhyARevisionWasRefused() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("desired-state/broken.yaml", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: Bad_Name}\nspec: {}\n")
            #expect(try s.run("apply").status == 1)
            let text = try s.run("log")
            let lines = text.stdout.split(separator: "\n")
            let index = try #require(lines.firstIndex { $0.contains("refuse(Revision/") }, "\(text.stdout)")
            #expect(lines.count > index + 1 && lines[index + 1].contains("Bad_Name"), "\(text.stdout)")
            let json = try s.run("log", "--output", "json")
            let entries = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
            let refused = try #require(entries.first { ($0["summary"] as? String)?.hasPrefix("refuse(Revision/") == true })
            #expect((refused["reason"] as? String)?.contains("Bad_Name") == true, "\(refused)")
        }
    }

    @Test func planWarnsThatUncommittedChangesAreNotPlanned() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let clean = try s.run("plan", stateDir: dir + "/state-a").stderr
            #expect(!clean.contains("uncommitted"))
            let local = try bulwark(["plan", "--repo", s.policy, "--state-dir", dir + "/state-b"])
            #expect(local.status == 2)
            #expect(!local.stderr.contains("uncommitted"), "\(local.stderr)")
            try write(s.policy + "/desired-state/new.yaml", "# not committed\n")
            let dirty = try bulwark(["plan", "--repo", s.policy, "--state-dir", dir + "/state-b"])
            #expect(dirty.status == 2)
            #expect(dirty.stderr.contains("1 uncommitted change in its working tree; plan reads only commits on main"), "\(dirty.stderr)")
        }
    }

    @Test func versionNamesBulwarkAndLibgit2() throws {
        let text = try bulwark(["version"])
        #expect(text.status == 0)
        #expect(text.stdout == "bulwark \(Bulwark.version)\nlibgit2 \(GitLibrary.version)\n")
        #expect(GitLibrary.version.split(separator: ".").count == 3)
        let json = try bulwark(["version", "--output", "json"])
        let info = try JSONDecoder().decode([String: AnyDecodable].self, from: Data(json.stdout.utf8))
        #expect(info["schemaVersion"] != nil && info["libgit2"] != nil)
    }

    @Test func theRepositoryComesFromBULWARK_REPOWhenNotGiven() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let fromEnvironment = try run(try bulwarkExecutable(), ["plan", "--state-dir", s.state], environment: ["BULWARK_REPO": s.origin])
            #expect(fromEnvironment.status == 2, "\(fromEnvironment.stderr)")
            let process = try run("/usr/bin/env", ["-u", "BULWARK_REPO", try bulwarkExecutable(), "plan", "--state-dir", s.state])
            #expect(process.status == 64)
            #expect(process.stderr.contains("pass --repo (a path or a URL) or set BULWARK_REPO"))
        }
    }

    @Test func rootKeepsItsStateUnderVarLib() {
        let url = "/srv/git/policy.git"
        let root = RepositoryOptions.defaultStateDirectory(url: url, environment: ["HOME": "/root"], isRoot: true)
        #expect(root.hasPrefix("/var/lib/bulwark/policy.git-"))
        let user = RepositoryOptions.defaultStateDirectory(url: url, environment: ["HOME": "/home/ann"], isRoot: false)
        #expect(user.hasPrefix("/home/ann/.local/state/bulwark/policy.git-"))
        #expect(root.dropFirst("/var/lib".count) == user.dropFirst("/home/ann/.local/state".count), "same name either way")
        let xdg = RepositoryOptions.defaultStateDirectory(url: url, environment: ["XDG_STATE_HOME": "/x"], isRoot: false)
        #expect(xdg.hasPrefix("/x/bulwark/"))
    }

    // MARK: - detailed exit code

    @Test func detailedExitcodeSaysWhenHeldDriftRemains() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let held = try read(s.policy + "/controllers/host-hardening.yaml")
                .replacingOccurrences(of: "mode: enforce", with: "mode: approve")
            try s.commitPolicy("controllers/host-hardening.yaml", held)
            let first = try s.run("apply", "--detailed-exitcode")
            #expect(first.status == 2, "\(first.stderr)")
            // Recorded before, still open: still 2. Without the flag: 0.
            #expect(try s.run("apply", "--detailed-exitcode").status == 2)
            #expect(try s.run("apply").status == 0)
            let enforce = held.replacingOccurrences(of: "mode: approve", with: "mode: enforce")
            try s.commitPolicy("controllers/host-hardening.yaml", enforce)
            let fixed = try s.run("apply", "--detailed-exitcode")
            #expect(fixed.status == 0, "\(fixed.stderr)")
            #expect(try s.run("apply", "--help").stdout.contains("--detailed-exitcode"))
        }
    }

    // MARK: - approve

    @Test func approveWritesAFileThatLoadsWhateverTheValuesHold() throws {
        let hostile = "Eve\u{2028}kind: Waiver\u{2029}\u{85}\"quoted\" \\ back\u{1B}[31m\u{FEFF}\u{7F}\t😀"
        let id = "01ABCDEFGHJKMNPQRSTVWXYZ01"
        let text = Bulwark.Approve.document(id: id, summary: "fix(SSHDConfig/x): Banner \u{2028}apiVersion: evil\n# done",
                                             approver: hostile, reason: "ok \"fine\"", expires: "2099-01-31")
        let state = try DesiredStateLoader(registry: Bulwark.registry())
            .load([SourceFile(path: "approvals/\(id).yaml", contents: Array(text.utf8))], revision: "r")
        let approval = try #require(state.approvals[id])
        #expect(approval.approver == hostile)
        #expect(approval.reason == "ok \"fine\"")
        #expect(!text.unicodeScalars.contains { $0 == "\u{2028}" || $0 == "\u{2029}" || $0 == "\u{85}" || $0 == "\u{1B}" })
        #expect(text.split(separator: "\n").count == 9)
        #expect(YAML.doubleQuoted("plain text") == "\"plain text\"")
    }

    @Test func anApprovalByAnIdentityWithALineSeparatorKeepsLaterRevisionsValid() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.editPolicy("controllers/host-hardening.yaml", replacing: "mode: enforce", with: "mode: approve")
            #expect(try s.run("apply").status == 0)
            let log = try git("--git-dir", s.origin, "log", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Id,valueonly,separator=)", "bulwark/audit")
            let line = try #require(log.split(separator: "\n").first { $0.hasPrefix("SSHDConfig/cis-5.1.20-permit-root-login|") })
            let id = String(line.split(separator: "|")[1])

            let refused = try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state,
                                                            "--reason", "a\u{2028}b"])
            #expect(refused.status == 64)
            let before = try git("--git-dir", s.origin, "rev-parse", "main")

            let approve = try run(try bulwarkExecutable(), ["approve", id, "--repo", s.origin, "--state-dir", s.state,
                                                            "--reason", "CHG-7 \"night\""],
                                  environment: ["GIT_AUTHOR_NAME": "Alice\u{2028}Admin", "GIT_AUTHOR_EMAIL": "alice@example.org"])
            #expect(approve.status == 0, "\(approve.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") != before)
            let file = try git("--git-dir", s.origin, "show", "main:approvals/\(id).yaml")
            #expect(file.contains("approver: \"Alice\\u2028Admin <alice@example.org>\""), "\(file)")
            // The next revision loads and the approved fix goes through.
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"))
        }
    }

    // MARK: - JSON outputs

    @Test func jsonOutputsCarryASchemaVersionRFC3339TimesAndSeconds() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            func object(_ output: ProcessOutput) throws -> [String: Any] {
                try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any], "\(output.stdout.prefix(300))")
            }
            func isRFC3339(_ value: Any?) -> Bool {
                guard let text = value as? String else { return false }
                return (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)) != nil
            }
            let plan = try object(try s.run("plan", "--output", "json"))
            #expect(plan["schemaVersion"] as? Int == 2)
            #expect(isRFC3339(plan["generatedAt"]))

            let held = try read(s.policy + "/controllers/host-hardening.yaml").replacingOccurrences(of: "mode: enforce", with: "mode: approve")
            try s.commitPolicy("controllers/host-hardening.yaml", held)
            #expect(try s.run("apply").status == 0)
            try s.commitPolicy("controllers/host-hardening.yaml", held.replacingOccurrences(of: "mode: approve", with: "mode: enforce"))
            #expect(try s.run("apply").status == 0)

            let logOutput = try s.run("log", "--output", "json")
            let entries = try #require(try JSONSerialization.jsonObject(with: Data(logOutput.stdout.utf8)) as? [[String: Any]])
            #expect(!entries.isEmpty)
            #expect(entries.allSatisfy { $0["schemaVersion"] as? Int == 2 && isRFC3339($0["detectedAt"]) })
            #expect(entries.contains { $0["mttrSeconds"] is Double || $0["mttrSeconds"] is Int })

            let report = try object(try s.run("report", "--output", "json"))
            #expect(report["schemaVersion"] as? Int == 2)
            #expect(isRFC3339(report["generatedAt"]))
            let mttr = try #require(report["mttr"] as? [String: Any])
            #expect(mttr["p50Seconds"] is Double || mttr["p50Seconds"] is Int)

            let valid = try bulwark(["validate", s.policy, "--output", "json"])
            #expect(valid.status == 0)
            let validObject = try object(valid)
            #expect(validObject["schemaVersion"] as? Int == 2 && validObject["valid"] as? Bool == true)
            try write(s.policy + "/desired-state/bad.yaml", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: bad}\nspec: {MaxAuthTries: many}\n")
            let invalid = try bulwark(["validate", s.policy, "--output", "json"])
            #expect(invalid.status == 1)
            let invalidObject = try object(invalid)
            #expect(invalidObject["valid"] as? Bool == false)
            let errors = try #require(invalidObject["errors"] as? [[String: Any]])
            #expect(errors.first?["file"] as? String == "desired-state/bad.yaml")
            #expect(errors.first?["line"] as? Int == 4)
            #expect(errors.first?["field"] as? String == "spec.MaxAuthTries")
        }
    }
}
