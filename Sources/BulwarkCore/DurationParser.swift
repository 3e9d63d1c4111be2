/// A duration that could not be read: said so a person can fix it.
public struct DurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Bulwark's one parser for durations written by people: manifests (`interval: 5m`), the command
/// line (`log --since 7d`) and configuration files that use sshd's form (`LoginGraceTime 1m30s`).
///
/// The arithmetic is checked: a number of any length is refused with a clear error, never a trap,
/// so a revision that says `9223372036854775807w` is refused like any other invalid value.
public enum DurationParser {
    /// The longest duration read anywhere: ten years. Every caller narrows it further.
    public static let maximumSeconds = 3650 * 86_400
    /// Units and their length in seconds.
    static let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800]

    /// Parses `30s`, `5m`, `1h30m`, `7d`, `2w` into seconds.
    ///
    /// - Parameters:
    ///   - bareNumberIsSeconds: also accept a number without a unit as seconds, alone (`90`) or
    ///     after other parts (`1m30`), as sshd does.
    ///   - caseInsensitive: accept upper-case units (`1H`), as sshd does.
    /// - Throws: `DurationError` for an empty or malformed text, or a total above `maximumSeconds`
    ///   ("duration too large; at most 3650d").
    public static func seconds(_ text: String, bareNumberIsSeconds: Bool = false,
                               caseInsensitive: Bool = false) throws(DurationError) -> Int {
        let tooLarge = DurationError("duration too large; at most \(maximumSeconds / 86_400)d (\(maximumSeconds)s)")
        let form = "expected a duration such as 30s, 5m, 1h30m, 7d or 2w, got '\(text.prefix(64))'"
        guard !text.isEmpty else { throw DurationError(form) }
        var total = 0
        var sawPart = false

        /// Adds `digits` × `unit` to the total, refusing anything above the maximum.
        func add(_ digits: Substring, _ unit: Int) throws(DurationError) {
            // Leading zeros cannot overflow; anything longer than the maximum's digits is too large.
            let significant = digits.drop { $0 == "0" }
            guard significant.count <= 18, let value = Int(significant.isEmpty ? "0" : significant) else { throw tooLarge }
            let (product, overflow) = value.multipliedReportingOverflow(by: unit)
            guard !overflow else { throw tooLarge }
            let (sum, overflowSum) = total.addingReportingOverflow(product)
            guard !overflowSum, sum <= maximumSeconds else { throw tooLarge }
            total = sum
        }

        var index = text.startIndex
        var start = index
        while index < text.endIndex {
            let char = text[index]
            if char.isASCII, char.isNumber {
                index = text.index(after: index)
                continue
            }
            let digits = text[start..<index]
            let key = caseInsensitive ? Character(char.lowercased()) : char
            guard !digits.isEmpty, let unit = units[key] else { throw DurationError(form) }
            try add(digits, unit)
            sawPart = true
            index = text.index(after: index)
            start = index
        }
        let rest = text[start...]
        if !rest.isEmpty {
            guard bareNumberIsSeconds else { throw DurationError(form) }
            try add(rest, 1)
            sawPart = true
        }
        guard sawPart else { throw DurationError(form) }
        return total
    }

    /// Seconds as the shortest text this parser reads back (`90` → `1m30s`, `0` → `0s`).
    public static func text(_ seconds: Int) -> String {
        guard seconds > 0 else { return "0s" }
        var rest = seconds
        var text = ""
        for (unit, length) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] where rest >= length {
            text += "\(rest / length)\(unit)"
            rest %= length
        }
        return text
    }
}
