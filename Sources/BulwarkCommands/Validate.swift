internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import Foundation

extension Bulwark {
    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "validate",
            abstract: "Check the manifests of a policy repository's working tree (for its CI or a pre-commit hook).",
            discussion: "Reads desired-state/, controllers/, waivers/ and approvals/ under PATH. Exit codes: 0 valid (warnings are printed), 1 invalid, with every error listed (at most 20 per file and 100 in all, then a count of the rest), 64 a usage mistake (PATH does not exist or is not a folder).")

        @Argument(help: "The policy repository's folder.")
        var path: String = "."

        @OptionGroup var output: OutputOptions

        /// `validate --output json`.
        struct Result: Encodable {
            struct Problem: Encodable {
                var file: String
                var line: Int
                var column: Int
                var resource: String?
                var field: String?
                var message: String
                init(file: String, message: String) {
                    self.file = file
                    line = 0
                    column = 0
                    self.message = message
                }
                init(_ error: ManifestError) {
                    file = error.location.file
                    line = error.location.line
                    column = error.location.column
                    resource = error.resource
                    field = error.field
                    message = error.message
                }
            }
            var schemaVersion = JSONSchema.version
            var valid: Bool
            var resources = 0
            var targets = 0
            var controllers = 0
            var bindings = 0
            /// The errors shown (at most `ValidationFailure.maxShown`), and how many more were found.
            var errors: [Problem] = []
            var moreErrors = 0
            var warnings: [Problem] = []
        }

        func run() async throws {
            let console = Console()
            let files: [SourceFile]
            do {
                files = try Self.readFiles(under: path)
            } catch {
                // A script reading the JSON gets a document that says why, as for an invalid tree.
                guard output.output == .json else { throw error }
                console.json(Result(valid: false, errors: [Result.Problem(file: path, message: error.message)]))
                throw ExitCode.validationFailure
            }
            guard DesiredStateLoader.holdsPolicy(files) else {
                let message = "\(path) has no desired-state/ or controllers/ folder: is it a policy repository's working tree?"
                switch output.output {
                case .json: console.json(Result(valid: false, errors: [Result.Problem(file: path, message: message)]))
                case .text: console.error(message)
                }
                throw ExitCode.failure
            }
            do {
                let state = try DesiredStateLoader(registry: Bulwark.registry()).load(files, revision: .workingTree)
                switch output.output {
                case .json:
                    console.json(Result(valid: true, resources: state.resources.count, targets: state.targets.count,
                                        controllers: state.controllers.count, bindings: state.bindings.count,
                                        warnings: state.warnings.prefix(ValidationFailure.maxShown).map(Result.Problem.init)))
                case .text:
                    console.warn(state.warnings)
                    func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
                    console.print("valid: \(count(state.resources.count, "resource")), \(count(state.targets.count, "target")), "
                                  + "\(count(state.controllers.count, "controller")), \(count(state.bindings.count, "binding"))")
                }
            } catch {
                switch output.output {
                case .json:
                    let shown = error.shown
                    console.json(Result(valid: false, errors: shown.map(Result.Problem.init), moreErrors: error.count - shown.count))
                case .text:
                    console.print(error.description, to: .standardError)
                }
                throw ExitCode.failure
            }
        }

        /// Manifest files under `root` as the loader reads them from git: relative paths,
        /// symlinks flagged, oversized files not read.
        /// - Throws: `ValidationError` (exit 64) when `root` does not exist or is not a folder.
        static func readFiles(under root: String) throws(ValidationError) -> [SourceFile] {
            try checkNotEmpty(["<path>": root])
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory) else {
                throw ValidationError("\(root) does not exist")
            }
            guard isDirectory.boolValue else { throw ValidationError("\(root) is not a folder") }
            var files: [SourceFile] = []
            for folder in DesiredStateLoader.folders {
                let base = root + "/" + folder
                guard let walker = FileManager.default.enumerator(atPath: base) else { continue }
                while let relative = walker.nextObject() as? String {
                    let full = base + "/" + relative
                    let path = folder + "/" + relative
                    var info = stat()
                    guard lstat(full, &info) == 0 else { continue }
                    switch info.st_mode & 0o170000 {
                    case 0o040000:
                        continue
                    case 0o120000:
                        files.append(SourceFile(path: path, kind: .symlink, size: 0, contents: nil))
                    case 0o100000:
                        let size = Int(info.st_size)
                        let contents = size <= DesiredStateLoader.maxFileSize
                            ? FileManager.default.contents(atPath: full).map { Array($0) } : nil
                        files.append(SourceFile(path: path, kind: .regular, size: size, contents: contents))
                    default:
                        files.append(SourceFile(path: path, kind: .other, size: 0, contents: nil))
                    }
                }
            }
            return files
        }
    }
}
