internal import BulwarkRuntime
internal import ArgumentParser
internal import BulwarkGit

extension Bulwark {
    struct Version: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "version",
            abstract: "Print Bulwark's version and the libgit2 version it runs with.")

        @OptionGroup var output: OutputOptions

        struct Info: Encodable {
            var schemaVersion = JSONSchema.version
            var bulwark: String
            var libgit2: String
        }

        func run() throws {
            let console = Console()
            let info = Info(bulwark: Bulwark.version, libgit2: GitLibrary.version)
            switch output.output {
            case .text: console.print("bulwark \(info.bulwark)\nlibgit2 \(info.libgit2)")
            case .json: console.json(info)
            }
        }
    }
}
