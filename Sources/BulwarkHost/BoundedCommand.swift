internal import Foundation

internal import BulwarkProcess

/// Runs an operator's command (a `ConfigFile`'s validation or reload) through the one bounded
/// runner (`BulwarkProcess.BoundedProcess`): no shell, its own process group killed at the
/// deadline, its output kept to a bounded tail read from a private file (never a pipe a
/// grandchild could hold open), and anything in it that looks like a key redacted before it
/// reaches a message or a record. A reload command that starts a daemon is not waited for
/// beyond its own exit.
struct BoundedCommand: Sendable {
    var arguments: [String]
    var timeout: Duration

    static let outputLimit = 600

    struct Outcome: Sendable {
        var status: Int32
        var timedOut: Bool
        var output: String
    }

    /// Runs the command with `{file}` in any argument replaced by `file`; at the deadline its
    /// process group is killed at once (SIGKILL: a validation has no state to save).
    func run(file: String? = nil) throws -> Outcome {
        guard let executable = arguments.first else { throw HostError("empty command") }
        let argv = arguments.map { argument in file.map { argument.replacingOccurrences(of: "{file}", with: $0) } ?? argument }
        let command = BoundedProcess.Command(executable: executable, arguments: Array(argv.dropFirst()), timeout: timeout,
                                             grace: .zero, maxOutput: 4096, keep: .tail)
        let outcome: BoundedProcess.Outcome
        do {
            outcome = try command.runBlocking()
        } catch {
            switch error.reason {
            case .cannotCreateOutput: throw HostError("cannot create a file for the command's output: \(error)")
            case .cannotStart, .timedOut: throw HostError(error.description)
            }
        }
        return Outcome(status: outcome.status, timedOut: outcome.timedOut, output: Self.redacted(outcome.output, file: file))
    }

    /// One bounded line: the candidate's path shown as `<candidate>`, and every word that could be
    /// a key (16 or more characters mixing letters and digits, or starting `sk-`) redacted.
    static func redacted(_ text: String, file: String?) -> String {
        var text = text
        if let file { text = text.replacingOccurrences(of: file, with: "<candidate>") }
        let words = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "'" || $0 == "\"" })
        var result = ""
        var index = text.startIndex
        for word in words {
            result += text[index..<word.startIndex]
            let letters = word.contains(where: \.isLetter)
            let digits = word.contains(where: \.isNumber)
            if word.hasPrefix("sk-") || (word.count >= 16 && letters && digits && !word.contains("/")) {
                result += "<redacted>"
            } else {
                result += word
            }
            index = word.endIndex
        }
        result += text[index...]
        let line = HostError.oneLine(result.trimmingCharacters(in: .whitespacesAndNewlines), limit: outputLimit)
        return line
    }
}
