import BulwarkCore
import Foundation

/// Which verified signers may change which paths of the policy repository (`--trust-policy`).
///
/// A file outside the repository, one rule a line: a path pattern, then the principals of the
/// trusted signers file that may change paths it matches (`*`: any trusted signer). `#` starts
/// a comment. As in CODEOWNERS, the **last** matching line decides; a path no line matches may
/// be changed by nobody, so a policy starts with `** *` to allow the rest:
///
///     **                 *
///     controllers/**     admin@example.org
///     approvals/**       security@example.org carol@example.org
///     waivers/**         security@example.org
///
/// `*` matches within one path segment, `**` any number of segments, `?` one character.
package struct TrustPolicy: Sendable, Equatable {
    package struct Rule: Sendable, Equatable {
        package var pattern: String
        /// Who may change what the pattern matches; "*" is anyone trusted.
        package var principals: [String]
        package var line: Int
    }

    package var rules: [Rule]
    /// The file, for messages.
    package var file: String

    /// Reads and parses the file at `path`.
    /// - Throws: `CommandError` naming the file (and line) when it cannot be read or is malformed.
    package static func load(_ path: String) throws -> TrustPolicy {
        guard let data = FileManager.default.contents(atPath: path), data.count <= 1 << 20 else {
            throw CommandError("cannot read the trust policy \(path) (at most 1 MiB): no commit can be checked against it")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    package static func parse(_ text: String, file: String) throws -> TrustPolicy {
        var rules: [Rule] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let pattern = fields.first else { continue }
            let number = index + 1
            guard fields.count >= 2 else {
                throw CommandError("\(file):\(number): '\(quotedForMessage(pattern))' names no principal (use * for anyone trusted)")
            }
            guard !pattern.hasPrefix("/"), !pattern.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
                throw CommandError("\(file):\(number): '\(quotedForMessage(pattern))' must be a path inside the repository, without . or ..")
            }
            rules.append(Rule(pattern: pattern, principals: Array(fields.dropFirst()), line: number))
        }
        guard !rules.isEmpty else { throw CommandError("\(file) has no rules: every change would be refused") }
        return TrustPolicy(rules: rules, file: file)
    }

    /// Why `principal` may not change `path`, or nil when it may.
    package func refusal(of principal: String, changing path: String) -> String? {
        guard let rule = rules.last(where: { Self.matches($0.pattern, path) }) else {
            return "\(quotedForMessage(path)) is matched by no rule of the trust policy \(file), so nobody may change it"
        }
        if rule.principals.contains("*") || rule.principals.contains(principal) { return nil }
        return "\(quotedForMessage(principal)) may not change \(quotedForMessage(path)) (trust policy \(file):\(rule.line): "
            + "\(rule.pattern) only by \(rule.principals.joined(separator: ", ")))"
    }

    /// Whether `path` matches `pattern` (`*` within a segment, `**` across segments, `?` one character).
    package static func matches(_ pattern: String, _ path: String) -> Bool {
        segments(Array(pattern.split(separator: "/").map(String.init))[...], Array(path.split(separator: "/").map(String.init))[...])
    }

    private static func segments(_ pattern: ArraySlice<String>, _ path: ArraySlice<String>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == "**" {
            let rest = pattern.dropFirst()
            // `**` takes zero or more whole segments.
            var remaining = path
            while true {
                if segments(rest, remaining) { return true }
                guard !remaining.isEmpty else { return false }
                remaining = remaining.dropFirst()
            }
        }
        guard let segment = path.first, segmentMatches(Array(first)[...], Array(segment)[...]) else { return false }
        return segments(pattern.dropFirst(), path.dropFirst())
    }

    private static func segmentMatches(_ pattern: ArraySlice<Character>, _ text: ArraySlice<Character>) -> Bool {
        guard let first = pattern.first else { return text.isEmpty }
        switch first {
        case "*":
            var remaining = text
            while true {
                if segmentMatches(pattern.dropFirst(), remaining) { return true }
                guard !remaining.isEmpty else { return false }
                remaining = remaining.dropFirst()
            }
        case "?":
            return !text.isEmpty && segmentMatches(pattern.dropFirst(), text.dropFirst())
        default:
            return text.first == first && segmentMatches(pattern.dropFirst(), text.dropFirst())
        }
    }
}
