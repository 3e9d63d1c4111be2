internal import BulwarkCore
internal import Foundation

extension NotifierConfig.Secret {
    /// The secret's value: inline, from an environment variable (which must be set), or from a
    /// file (surrounding whitespace trimmed, so a trailing newline is not part of it).
    func value(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        switch self {
        case .inline(let value):
            return value
        case .environment(let name):
            guard let value = environment[name], !value.isEmpty else { throw CommandError("environment variable \(name) is not set") }
            return value
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else { throw CommandError("cannot read \(path)") }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// A secret a command takes as `--…-file PATH` or else an environment variable: the file's
    /// content (unreadable or empty is an error naming `what`), the variable's value, or nil
    /// when the variable is unset or empty.
    static func commandLine(file: String?, environment name: String, what: String) throws -> String? {
        guard let file else {
            return try? Self.environment(name).value()
        }
        let value: String
        do {
            value = try Self.file(file).value()
        } catch {
            throw CommandError("cannot read the \(what) file \(file)")
        }
        guard !value.isEmpty else { throw CommandError("the \(what) file \(file) is empty") }
        return value
    }
}
