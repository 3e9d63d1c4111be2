/// A command's failure that is not a git, manifest or adapter error: said plainly on the terminal.
struct CommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
