internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkGit
internal import BulwarkRuntime
internal import Foundation
internal import Glibc
internal import CDispatch

extension Bulwark {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create a policy repository holding the shipped baseline, in one commit.",
            discussion: """
                Without --host-root the host target `local` keeps the shipped sandbox root \
                (\(Baseline.shippedRoot)). For the machine itself, give `--host-root / --this-machine` (or edit \
                controllers/targets.yaml later): a host root that is `/` any other way (`$UNSET/`, `../..`, a link to `/`) \
                is refused, so that a mistyped sandbox never becomes the machine.
                """)

        @Argument(help: "The folder to create (must not exist, or be empty).")
        var directory: String

        @Option(help: "The folder that stands for `/` of the host target `local`.")
        var hostRoot: String?

        @Flag(help: "Confirms `--host-root /`: the policy manages this machine itself (its sshd_config, accounts, …).")
        var thisMachine = false

        @Option(help: "The branch to create.")
        var branch: String = "main"

        func validate() throws {
            try checkNotEmpty(["<directory>": directory, "--host-root": hostRoot])
            try RepositoryOptions.checkBranch(branch, option: "--branch")
            if thisMachine, hostRoot != "/" {
                throw ValidationError("--this-machine goes with --host-root /: it confirms that the policy manages this machine itself")
            }
        }

        func run() async throws {
            let console = Console()
            let fm = FileManager.default
            try checkNewFolder(directory)
            var root: String?
            if let hostRoot {
                let absolute = URL(fileURLWithPath: hostRoot, relativeTo: URL(fileURLWithPath: fm.currentDirectoryPath))
                    .standardizedFileURL.path
                var isDirectory: ObjCBool = false
                guard fm.fileExists(atPath: absolute, isDirectory: &isDirectory), isDirectory.boolValue else {
                    throw ValidationError("--host-root \(hostRoot) is not an existing folder")
                }
                // The machine itself only on purpose: `$SANDBOX/` with the variable unset, `../../..`
                // or a link to `/` would otherwise write a policy whose next `apply` changes this
                // machine's sshd_config, shadow and accounts.
                if Self.isMachineRoot(absolute) {
                    guard hostRoot == "/" else {
                        throw ValidationError("--host-root '\(quotedForMessage(hostRoot))' is `/`, this machine itself; for a sandbox, "
                                              + "give the folder that holds its tree (is a variable unset?); to manage this machine "
                                              + "on purpose, give --host-root / --this-machine")
                    }
                    guard thisMachine else {
                        throw ValidationError("--host-root / is this machine itself: its next `apply` changes this machine's "
                                              + "sshd_config, accounts and the rest; to do that on purpose, add --this-machine")
                    }
                }
                // `/` is the machine itself; any other folder stands for it and must hold a copy of its tree.
                if !Self.isMachineRoot(absolute), !fm.fileExists(atPath: absolute + "/etc", isDirectory: &isDirectory) || !isDirectory.boolValue {
                    throw ValidationError("--host-root \(hostRoot) holds no host tree (no etc/ folder): it must be `/` (with "
                                          + "--this-machine) for this machine, or a folder holding a copy of a host's tree (etc/ssh/sshd_config, etc/login.defs, "
                                          + "etc/passwd, …) for a sandbox")
                }
                root = Self.isMachineRoot(absolute) ? "/" : absolute
            }
            let commit = try Self.create(at: directory, branch: branch, files: Baseline.files(hostRoot: root))
            console.print("Created policy repository \(directory) (\(branch) at \(commit.short)) with the shipped baseline.")
            console.print("Host target `local` is rooted at \(root ?? Baseline.shippedRoot).")
            console.print("Next: bulwark validate \(directory) && bulwark plan --repo \(directory)")
        }

        /// Whether `path` is the machine's `/`: by name, or the same folder by device and inode
        /// (a link to `/`, a bind mount of it).
        static func isMachineRoot(_ path: String) -> Bool {
            if path == "/" { return true }
            var folder = stat(), root = stat()
            guard stat(path, &folder) == 0, stat("/", &root) == 0 else { return false }
            return folder.st_dev == root.st_dev && folder.st_ino == root.st_ino
        }

        /// A non-bare repository whose branch holds `files` in one commit, checked out.
        static func create(at directory: String, branch: String, files: [String: [UInt8]]) throws -> ObjectID {
            let repository = try Repository.create(at: directory, bare: false)
            let env = ProcessInfo.processInfo.environment
            let author = Signature(name: env["GIT_AUTHOR_NAME"] ?? "Bulwark", email: env["GIT_AUTHOR_EMAIL"] ?? "bulwark@localhost")
            let commit = try repository.writeCommit(adding: files, parent: nil,
                                                    message: "Bulwark baseline: CIS-style Debian 12 host hardening\n",
                                                    author: author)
            try repository.updateReference("refs/heads/\(branch)", to: commit, expected: nil, message: "bulwark init")
            try repository.setHead("refs/heads/\(branch)")
            try repository.checkoutHead()
            return commit
        }
    }
}
