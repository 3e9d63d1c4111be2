import Foundation

/// A command's failure that is not a git, manifest or adapter error: said plainly on the terminal.
package struct CommandError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
