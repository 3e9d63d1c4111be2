@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// Bulwark pushes audit records while the git CLI, in another process, pushes its own commits to
/// the same branch of the same origin: no commit the origin ever accepted from either may vanish.
@Suite struct AuditPushRaceTests {
    static let records = 40
    static let cliCommits = 30

    @Test func aConcurrentPusherOnALocalPathOriginLosesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let origin = dir + "/origin.git"
            try Self.makeOrigin(origin, dir: dir)
            try await Self.race(bulwarkURL: origin, access: RemoteAccess(), cliURL: origin, origin: origin, dir: dir)
        }
    }

    @Test(.enabled(if: GitHTTPServer.available))
    func aConcurrentPusherOnAnHTTPOriginLosesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let origin = dir + "/origin.git"
            try Self.makeOrigin(origin, dir: dir)
            let server = try GitHTTPServer(root: dir)
            let cliURL = "http://\(server.user):\(server.token)@127.0.0.1:\(server.port)/origin.git"
            try await Self.race(bulwarkURL: server.url("origin.git"),
                                access: RemoteAccess(username: server.user, password: server.token),
                                cliURL: cliURL, origin: origin, dir: dir)
            withExtendedLifetime(server) {}
        }
    }

    /// Both writers over SSH to a real sshd on loopback (the CLI with the same key, through
    /// `GIT_SSH_COMMAND`), so every push goes through git-receive-pack's own locking.
    @Test(.enabled(if: SSHServer.available, "needs sshd, ssh-keygen and git"))
    func aConcurrentPusherOnAnSSHOriginLosesNothing() async throws {
        let ssh = try SSHServer()
        try await withTemporaryDirectory { dir in
            chmod(dir, 0o755)
            let origin = dir + "/origin.git"
            try Self.makeOrigin(origin, dir: dir)
            try ssh.own(origin)
            let known = try KnownHosts(path: ssh.knownHosts)
            let port = ssh.port
            let access = RemoteAccess(sshKey: .init(privateKey: ssh.clientKey),
                                      hostKeyCheck: { host, key in known.check(host: host, port: port, key: key) })
            let cliSSH = "ssh -i \(ssh.clientKey) -o IdentitiesOnly=yes -o UserKnownHostsFile=\(ssh.knownHosts) -o StrictHostKeyChecking=yes"
            try await Self.race(bulwarkURL: ssh.url(origin), access: access, cliURL: ssh.url(origin), origin: origin, dir: dir,
                                cliEnvironment: ["GIT_SSH_COMMAND": cliSSH])
        }
    }

    /// A bare origin with a policy branch and an audit branch that already has one commit.
    static func makeOrigin(_ origin: String, dir: String) throws {
        try git("init", "-q", "--bare", "-b", "main", origin)
        let seed = dir + "/seed"
        try git("clone", "-q", origin, seed)
        try write(seed + "/README.md", "policy\n")
        try git("add", "-A", in: seed)
        try git("commit", "-qm", "policy", in: seed)
        try git("push", "-q", "origin", "main", in: seed)
        try git("checkout", "-q", "--orphan", "bulwark/audit", in: seed)
        try git("rm", "-rq", "--cached", ".", in: seed)
        try git("commit", "-q", "--allow-empty", "-m", "audit branch", in: seed)
        try git("push", "-q", "origin", "bulwark/audit", in: seed)
    }

    static func race(bulwarkURL: String, access: RemoteAccess, cliURL: String, origin: String, dir: String,
                     cliEnvironment: [String: String] = [:]) async throws {
        let repo = try PolicyRepository(.init(url: bulwarkURL, stateDirectory: dir + "/state", access: access))
        _ = try await repo.sync()

        // The other writer: the git CLI committing its own files and pushing them, rebasing on
        // rejection like a person would, writing down every commit the origin accepted. It clones
        // through git's transport (`--no-local`): a local clone hard-links the origin's objects
        // folder file by file, and fails when a push's temporary file vanishes under it.
        let accepted = dir + "/cli-accepted"
        let log = dir + "/pusher.log"
        let script = """
        set -u
        git clone -q --no-local -b bulwark/audit "$1" pusher || exit 3
        cd pusher
        for i in $(seq 1 \(cliCommits)); do
          mkdir -p other && echo "$i" > other/$i.txt && git add other/$i.txt && git commit -qm "other $i" || exit 4
          tries=0
          until git push -q origin HEAD:refs/heads/bulwark/audit 2>/dev/null; do
            tries=$((tries + 1)); [ $tries -gt 500 ] && exit 5
            git pull -q --rebase origin bulwark/audit 2>/dev/null || git rebase --abort 2>/dev/null
          done
          git rev-parse HEAD >> "$2"
        done
        """
        let pusher = Process()
        pusher.executableURL = URL(fileURLWithPath: "/bin/bash")
        pusher.arguments = ["-c", script, "pusher", cliURL, accepted]
        pusher.currentDirectoryURL = URL(fileURLWithPath: dir)
        var env = ProcessInfo.processInfo.environment
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        for key in ["GIT_AUTHOR", "GIT_COMMITTER"] {
            env[key + "_NAME"] = "Other Writer"
            env[key + "_EMAIL"] = "other@example.org"
        }
        env.merge(cliEnvironment) { $1 }
        pusher.environment = env
        pusher.standardOutput = FileHandle.nullDevice
        guard FileManager.default.createFile(atPath: log, contents: nil),
              let logHandle = FileHandle(forWritingAtPath: log) else { throw SupportError("cannot create \(log)") }
        defer { try? logHandle.close() }
        pusher.standardError = logHandle
        pusher.standardInput = FileHandle.nullDevice
        try pusher.run()
        defer {
            if pusher.isRunning { kill(pusher.processIdentifier, SIGKILL); pusher.waitUntilExit() }
        }

        var ids: [String] = []
        var bulwarkAccepted: [String] = []
        for index in 0..<records {
            let id = "01RACE" + String(repeating: "0", count: 20 - String(index).count) + String(index)
            ids.append(id)
            _ = try await repo.write(PolicyRepositoryTests().record(id))
            // Every third record waits for the next push: pushes of several commits, like a
            // pass that fixed several things.
            if index % 3 == 0 { continue }
            let result = try await repo.publish(deadline: .seconds(30))
            if case .pushed = result, let head = try await repo.auditHistory(limit: 1).first {
                bulwarkAccepted.append(head.id.hex)
            }
        }
        while pusher.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(pusher.terminationStatus == 0, "the git CLI pusher failed: \((try? read(log)) ?? "")")
        // Whatever waited locally goes out now that the other writer is done.
        if case .keptLocally(let count, let reason) = try await repo.publish(deadline: .seconds(30)) {
            Issue.record("\(count) records stayed local: \(reason)")
        }
        let final = try await repo.publish(deadline: .seconds(30))
        #expect(final == .upToDate)

        let cliAccepted = try read(accepted).split(separator: "\n").map(String.init)
        #expect(cliAccepted.count == cliCommits)
        for commit in cliAccepted + bulwarkAccepted {
            let reachable = try run("/usr/bin/git", ["--git-dir", origin, "merge-base", "--is-ancestor", commit, "bulwark/audit"])
            #expect(reachable.status == 0, "commit \(commit) was accepted by the origin and is gone")
        }
        let recorded = try git("--git-dir", origin, "log", "--format=%(trailers:key=Bulwark-Id,valueonly)", "bulwark/audit")
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        #expect(Set(recorded) == Set(ids))
        #expect(recorded.count == ids.count, "each record is on the branch once")
        let files = try git("--git-dir", origin, "ls-tree", "-r", "--name-only", "bulwark/audit", "other/")
        #expect(files.split(separator: "\n").count == cliCommits)
        try git("--git-dir", origin, "fsck", "--strict")
    }
}
