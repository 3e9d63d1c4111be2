internal import Foundation

internal import BulwarkProcess
internal import BulwarkCore

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
        var command = BoundedProcess.Command(executable: executable, arguments: Array(argv.dropFirst()), timeout: timeout,
                                             grace: .zero, maxOutput: 4096, keep: .tail)
        // In `/`, not where Bulwark was started: a program that looks in its working folder first
        // (`python3 -c` puts it on sys.path) must not find a `yaml.py` someone left where an
        // operator ran `bulwark apply`, and run it as root.
        command.workingDirectory = "/"
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

    /// One bounded line: the candidate's path shown as `<candidate>`, and redacted: every word
    /// that could be a key (16 or more characters mixing letters and digits, a path excepted, or
    /// starting `sk-`), credentials in URLs (`https://user:secret@host`), and the value after a
    /// word that names a secret (`password: …`, `token=…`, `api_key …`).
    static func redacted(_ text: String, file: String?) -> String {
        var text = text
        if let file { text = text.replacingOccurrences(of: file, with: "<candidate>") }
        let words = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "'" || $0 == "\"" })
        var result = ""
        var index = text.startIndex
        var secretNext = false
        for word in words {
            result += text[index..<word.startIndex]
            index = word.endIndex
            if word.isEmpty {
                result += word
                continue
            }
            let letters = word.contains(where: \.isLetter)
            let digits = word.contains(where: \.isNumber)
            let (name, value) = Self.assignment(word)
            // Between a secret's name and its value: a separator (`password = x`, `"password": "x"`),
            // an authorization scheme (`Authorization: Bearer x`), or YAML's mark of a block or a
            // list (`api_key: |`, `>-`, `- x`: the value is on the next line) is kept, and the
            // value still waits.
            if secretNext, word.allSatisfy({ ":=,{[>|-+".contains($0) }) || ["bearer", "basic", "token"].contains(word.lowercased()) {
                result += word
                continue
            }
            if secretNext || word.hasPrefix("sk-") {
                result += "<redacted>"
                secretNext = false
            } else if word.contains("://") {
                // Bulwark's one URL redaction: user-info passwords, token users, query tokens.
                result += Redaction.urls(in: String(word))
            } else if let value, !value.isEmpty, Self.namesSecret(name) {
                result += word.dropLast(value.count) + "<redacted>"
            } else if word.count >= 16 && letters && digits && !word.hasPrefix("/") {
                result += "<redacted>"
            } else {
                result += word
                secretNext = value?.isEmpty != false && Self.namesSecret(name)
            }
        }
        result += text[index...]
        let line = TerminalText.escapedLine(result.trimmingCharacters(in: .whitespacesAndNewlines), limit: outputLimit)
        return line
    }

    /// A word as `name=value` or `name:value` (value empty for `name:` or `name=`; nil when the
    /// word has neither).
    private static func assignment(_ word: Substring) -> (name: Substring, value: Substring?) {
        guard let separator = word.firstIndex(where: { $0 == "=" || $0 == ":" }), !word.contains("://") else { return (word, nil) }
        return (word[..<separator], word[word.index(after: separator)...])
    }

    /// Whether a word names a secret: a credential's key as `ConfigFileDriver.isSecretKey` judges
    /// one, `Bearer`, or the short names programs print (`DB_PASS`, `pwd`, `auth`).
    private static func namesSecret(_ name: Substring) -> Bool {
        let lower = name.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "-$\"'"))
        return ConfigFileDriver.isSecretKey(lower) || lower == "bearer"
            || ["pass", "pwd", "pw", "auth", "passcode"].contains { lower == $0 || lower.hasSuffix("_" + $0) || lower.hasSuffix("-" + $0) }
    }
}
