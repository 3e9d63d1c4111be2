internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

extension Bulwark {
    struct Demo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "demo",
            abstract: "Run the whole loop on a sandbox: plan, fix, verify, commit, then show git history and MTTR.",
            discussion: """
                Builds, under --dir (default: a new temporary folder), a host tree with insecure defaults \
                (host/), a bare origin seeded from the shipped baseline (origin.git) and Bulwark's state \
                (state/). Nothing outside that folder is touched.
                """)

        @Option(help: "The folder to build the sandbox in (must not exist, or be empty).")
        var dir: String?

        func validate() throws { try checkNotEmpty(["--dir": dir]) }

        func run() async throws {
            let console = Console()
            let fm = FileManager.default
            let base: String
            if let dir {
                try checkNewFolder(dir)
                try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
                base = URL(fileURLWithPath: dir).standardizedFileURL.path
            } else {
                var template = Array((NSTemporaryDirectory() + "/bulwark-demo-XXXXXX").utf8CString)
                guard mkdtemp(&template) != nil else { throw CommandError("cannot create a temporary folder") }
                base = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            let host = base + "/host"
            let origin = base + "/origin.git"
            try DemoHost.create(at: host)
            // Verification on, with throwaway keys: the platform team signs the policy, Bulwark
            // signs its audit records; both public keys go into one allowed signers file.
            let secrets = base + "/secrets"
            try fm.createDirectory(atPath: secrets, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let teamKey = try Self.makeKey(at: secrets + "/platform-team", comment: "platform@example.org")
            let bulwarkKey = try Self.makeKey(at: secrets + "/bulwark-signing-key", comment: "bulwark@localhost")
            let signers = base + "/allowed_signers"
            try Data(("platform@example.org namespaces=\"git\" \(teamKey.publicKeyLine)\n"
                      + "bulwark@localhost namespaces=\"git\" \(bulwarkKey.publicKeyLine)\n").utf8)
                .write(to: URL(fileURLWithPath: signers))
            let seed = try Repository.create(at: origin, bare: true)
            // One policy mistake on purpose: locking the host's only administrator. The account
            // guard blocks it, and the demo shows the refusal beside the fixes.
            var files = Baseline.files(hostRoot: host)
            files[Self.lockoutPath] = Array(Self.lockout.utf8)
            let commit = try seed.writeCommit(adding: files, parent: nil,
                                              message: "Bulwark baseline: CIS-style Debian 12 host hardening\n",
                                              author: Signature(name: "Platform Team", email: "platform@example.org"),
                                              signer: teamKey)
            try seed.updateReference("refs/heads/main", to: commit, expected: nil, message: "seed")
            try seed.setHead("refs/heads/main")
            console.print(console.paint("Bulwark demo", .bold) + " in \(base)")
            console.print("  host tree  \(host)   (stands for /, with insecure defaults)")
            console.print("  origin     \(origin)   (policy repository, main at \(commit.short), signed by the platform team)")
            console.print("  signers    \(signers)   (throwaway keys: the platform team's, which the policy must be signed with, and Bulwark's, which signs each audit record)")
            console.print("")

            let options = try RepositoryOptions.parse(["--repo", origin, "--state-dir", base + "/state", "--secrets-dir", secrets,
                                                       "--trusted-signers", signers, "--signing-key", secrets + "/bulwark-signing-key"])
            console.print(console.paint("== bulwark plan", .bold))
            let before = try await Self.plan(options, console)
            PlanReport(plan: before.plan, state: before.state).print(console)
            console.print("")

            console.print(console.paint("== bulwark apply", .bold))
            let run = try await ApplyRun.run(repository: options, console: console, text: true)
            if run.interrupted { throw ExitCode(130) }
            console.print("")

            console.print(console.paint("== bulwark plan (again)", .bold))
            let after = try await Self.plan(options, console)
            PlanReport(plan: after.plan, state: after.state).print(console)
            console.print("")

            console.print(console.paint("== git log bulwark/audit (origin)", .bold))
            let history = try seed.resolve("refs/heads/bulwark/audit").map { try seed.history(from: $0) } ?? []
            var times: [Double] = []
            // Newest first, as `git log` shows it.
            for entry in history {
                let record = entry.recorded
                let mttr = record.flatMap(Log.mttr)
                if let mttr { times.append(mttr * 1000) }
                let result = record?.result?.rawValue ?? record?.decision?.rawValue ?? ""
                console.print("\(console.paint(entry.id.short, .yellow)) \(result.padding(toLength: 9, withPad: " ", startingAt: 0)) "
                              + (mttr.map { String(format: "%6.1f ms  ", $0 * 1000) } ?? "           ") + entry.summary)
            }
            console.print("")
            if !times.isEmpty {
                let sorted = times.sorted()
                console.print(console.paint("MTTR", .bold) + String(
                    format: " (detection to verified fix) over %d remediations: median %.1f ms, max %.1f ms",
                    sorted.count, sorted[sorted.count / 2], sorted.last ?? 0))
            }
            console.print("Read it with git: git --git-dir \(origin) log --format='%h %s%n%(trailers)' bulwark/audit")
            let verification = try AuditVerification(repository: seed, trustedSigners: signers)
                .check(head: try seed.resolve("refs/heads/bulwark/audit") ?? commit)
            console.print(console.paint("== bulwark verify-audit", .bold))
            for problem in verification.problems { console.error(problem) }
            console.print(verification.summary(branch: "bulwark/audit", head: try seed.resolve("refs/heads/bulwark/audit") ?? commit))
            console.print("Check each signature with git: git --git-dir \(origin) -c gpg.ssh.allowedSignersFile=\(signers) "
                          + "log --show-signature bulwark/audit")
            let blocked = run.records.filter { $0.decision == .blocked }
            if let lockout = blocked.first {
                console.print(console.paint("Blocked", .bold) + " \(lockout.resource) on \(lockout.target): \(lockout.reason ?? "")")
            }
            // In sync apart from the lockout the guard refused: that drift stays, blocked, by design.
            let remaining = after.plan.remediations.filter { $0.decision != .blocked }
            guard run.succeeded, remaining.isEmpty, blocked.count == 1, run.pushed > 0, verification.problems.isEmpty else {
                console.error("the demo did not end in sync with every fix verified and pushed")
                throw ExitCode.failure
            }
        }

        /// A new ed25519 key made by ssh-keygen at `path` (no passphrase: a throwaway).
        static func makeKey(at path: String, comment: String) throws -> SSHSigningKey {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: SourceVerification.executable)
            process.arguments = ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            do { try process.run() } catch {
                throw CommandError("cannot run \(SourceVerification.executable) to make the demo's keys: \(error.localizedDescription)")
            }
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw CommandError("ssh-keygen could not make the key \(path)") }
            do {
                return try SSHSigningKey(openSSH: String(contentsOfFile: path, encoding: .utf8))
            } catch {
                throw CommandError("cannot read the demo key \(path): \(error)")
            }
        }

        static let lockoutPath = "desired-state/hosts/demo-lockout.yaml"
        static let lockout = """
            # A policy mistake the demo makes on purpose: admin is the only account in sudo that can
            # log in, so taking its login shell away would lock every administrator out. The account
            # guard blocks it (decision blocked, recorded once); `bulwark approve ID` would let it through.
            apiVersion: bulwark/v1
            kind: UserAccount
            metadata:
              name: demo-lock-admin
              annotations: {severity: medium}
            spec:
              name: admin
              shell: /usr/sbin/nologin

            """

        static func plan(_ options: RepositoryOptions, _ console: Console) async throws -> (plan: Plan, state: DesiredState) {
            var loaded = try await options.load(console: console)
            return (try await loaded.plan(Reconciler(registry: Bulwark.registry()), console: console), loaded.state)
        }
    }
}
