internal import ArgumentParser
internal import BulwarkGit
internal import BulwarkRuntime
internal import Foundation

extension Bulwark {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create a policy repository holding the shipped baseline, in one commit.",
            discussion: """
                Without --host-root the host target `local` keeps the shipped sandbox root \
                (\(Baseline.shippedRoot)); edit controllers/targets.yaml to point it at `/` for the machine itself.
                """)

        @Argument(help: "The folder to create (must not exist, or be empty).")
        var directory: String

        @Option(help: "The folder that stands for `/` of the host target `local`.")
        var hostRoot: String?

        @Option(help: "The branch to create.")
        var branch: String = "main"

        func validate() throws {
            try checkNotEmpty(["<directory>": directory, "--host-root": hostRoot])
            try RepositoryOptions.checkBranch(branch, option: "--branch")
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
                // `/` is the machine itself; any other folder stands for it and must hold a copy of its tree.
                if absolute != "/", !fm.fileExists(atPath: absolute + "/etc", isDirectory: &isDirectory) || !isDirectory.boolValue {
                    throw ValidationError("--host-root \(hostRoot) holds no host tree (no etc/ folder): it must be `/` for this "
                                          + "machine, or a folder holding a copy of a host's tree (etc/ssh/sshd_config, etc/login.defs, "
                                          + "etc/passwd, …) for a sandbox")
                }
                root = absolute
            }
            let commit = try Self.create(at: directory, branch: branch, files: Baseline.files(hostRoot: root))
            console.print("Created policy repository \(directory) (\(branch) at \(commit.short)) with the shipped baseline.")
            console.print("Host target `local` is rooted at \(root ?? Baseline.shippedRoot).")
            console.print("Next: bulwark validate \(directory) && bulwark plan --repo \(directory)")
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
