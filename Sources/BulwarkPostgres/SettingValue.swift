internal import Foundation

/// A setting's value as PostgreSQL reads it, so that two spellings of one value compare equal:
/// `60s` and `1min` (and `60000` for a setting in milliseconds), `1GB` and `1024MB`, `TRUE` and
/// `on`, `ALL` and `all`. Without this, a desired `statement_timeout: 60s` was never in sync (the
/// server shows `1min`), and each pass wrote it again and failed to verify.
///
/// The reading follows PostgreSQL 15's `parse_int`, `parse_real`, `parse_bool` and enum lookup
/// (guc.c): a number (`0x` hex and a leading-zero octal for integers, as `strtol` reads them),
/// optional blanks, then a unit from the tables below, case as written; integers are rounded.
enum SettingValue: Equatable, Sendable {
    case number(Double)
    case text(String)

    /// What `pg_settings` says of a setting: `vartype` and `unit` (the base unit, `8kB`, `ms`).
    struct Kind: Sendable, Equatable {
        var vartype: String
        var unit: String?
        /// A list whose items the server quotes one by one (`listQuoted`).
        var list = false
    }

    /// The settings PostgreSQL keeps as a list of names, quoting each (guc.c's GUC_LIST_QUOTE):
    /// written as one literal, `'a,b'` is one item named `a,b`, and for the preload libraries
    /// that item is a library no session can load, so every new connection fails.
    static let listQuoted: Set<String> = [
        "search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries", "shared_preload_libraries",
        "unix_socket_directories",
    ]

    /// The items of a list setting as people and the server write them (`"$user", public`,
    /// `auto_explain,pg_stat_statements`): split at commas outside double quotes, blanks around
    /// each trimmed, a double-quoted item unquoted (`""` inside it is one `"`); empty items dropped.
    static func items(_ text: String) -> [String] {
        var items: [String] = []
        var current = ""
        var quoted = false
        var wasQuoted = false
        var characters = Array(text)[...]
        while let character = characters.popFirst() {
            if quoted {
                if character == "\"" {
                    if characters.first == "\"" {
                        current.append("\"")
                        characters.removeFirst()
                    } else {
                        quoted = false
                    }
                } else {
                    current.append(character)
                }
            } else if character == "\"" {
                quoted = true
                wasQuoted = true
            } else if character == "," {
                let item = wasQuoted ? current : current.trimmingCharacters(in: .whitespaces)
                if !item.isEmpty { items.append(item) }
                (current, wasQuoted) = ("", false)
            } else if !(character == " " || character == "\t") || !current.isEmpty && !wasQuoted {
                current.append(character)
            }
        }
        let last = wasQuoted ? current : current.trimmingCharacters(in: .whitespaces)
        if !last.isEmpty { items.append(last) }
        return items
    }

    /// Bytes in each memory unit, milliseconds in each time unit (guc.c's conversion tables).
    private static let memory: [String: Double] = ["B": 1, "kB": 1024, "MB": 1_048_576, "GB": 1_073_741_824, "TB": 1_099_511_627_776]
    private static let time: [String: Double] = ["us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000]
    /// Each table's units, largest first, as guc.c lists them.
    private static let memoryOrder = ["TB", "GB", "MB", "kB", "B"]
    private static let timeOrder = ["d", "h", "min", "s", "ms", "us"]

    /// The value `text` stands for in a setting of `kind`; nil when the server would refuse it.
    static func read(_ text: String, _ kind: Kind) -> SettingValue? {
        if kind.list { return .text(items(text).joined(separator: "\u{0}")) }
        switch kind.vartype {
        case "bool": return bool(text).map { .text($0 ? "on" : "off") }
        case "enum": return .text(text.lowercased())
        case "integer", "real": return number(text, kind).map(SettingValue.number)
        default: return .text(text)
        }
    }

    /// A value given in the setting's base unit (`pg_settings.reset_val`: `60000` for a setting
    /// in milliseconds) as SHOW prints it (`1min`): a positive whole number of time in the
    /// largest unit that divides it, as guc.c's `_ShowOption`; anything else as given.
    static func shown(_ text: String, _ kind: Kind) -> String {
        guard kind.vartype == "integer", let value = Int(text), value > 0,
              let base = kind.unit.flatMap(unitSize), base.table == .time else { return text }
        let total = Double(value) * base.size
        for unit in timeOrder {
            guard let size = time[unit], size >= base.size else { continue }
            if total.truncatingRemainder(dividingBy: size) == 0 { return "\(Int(total / size))\(unit)" }
        }
        return text
    }

    /// What C's `isspace` takes for a blank in the "C" locale the server parses in.
    static let cSpaces = CharacterSet(charactersIn: " \t\n\u{0B}\u{0C}\r")

    /// `parse_bool`: on, off, 1, 0, and any prefix of true, false, yes, no; `of` and `off` but not `o`.
    static func bool(_ text: String) -> Bool? {
        let value = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !value.isEmpty else { return nil }
        switch value {
        case "on", "1": return true
        case "of", "off", "0": return false
        default:
            if "true".hasPrefix(value) || "yes".hasPrefix(value) { return true }
            if "false".hasPrefix(value) || "no".hasPrefix(value) { return false }
            return nil
        }
    }

    /// The number in the setting's base unit, rounded for integers; nil for what the server
    /// refuses (no number, a unit the setting does not take, out of range).
    static func number(_ text: String, _ kind: Kind) -> Double? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count < 256, !bytes.contains(0) else { return nil }
        return text.withCString { start -> Double? in
            var end: UnsafeMutablePointer<CChar>?
            if kind.vartype == "integer" {
                errno = 0
                let integer = strtol(start, &end, 0)
                let next = end?.pointee ?? 0
                let fractional = next == CChar(UInt8(ascii: ".")) || next == CChar(UInt8(ascii: "e")) || next == CChar(UInt8(ascii: "E"))
                if !fractional && errno != ERANGE { return finish(Double(integer), start, end, kind) }
            }
            errno = 0
            let real = strtod(start, &end)
            return finish(real, start, end, kind)
        }
    }

    private static func finish(_ parsed: Double, _ start: UnsafePointer<CChar>, _ end: UnsafeMutablePointer<CChar>?,
                               _ kind: Kind) -> Double? {
        guard let end, UnsafePointer(end) != start, errno != ERANGE, !parsed.isNaN else { return nil }
        // Blanks as C's isspace counts them, as `parse_int` and `parse_real` skip them: Swift's
        // `.whitespaces` leaves a vertical tab, a form feed and a carriage return, and `5ms\f`,
        // read as an unknown unit, passed the guard while the server set 5 ms.
        let rest = String(cString: end).trimmingCharacters(in: cSpaces)
        var value = parsed
        if !rest.isEmpty {
            guard let base = kind.unit.flatMap(unitSize), let given = unitSize(rest, like: base.table) else { return nil }
            value = value * given.size / base.size
            // `convert_to_base_unit`: the amount is rounded to a whole number of the next smaller
            // unit (`1.0001min` is 60006 ms, 60.006 s: 60 s, stored as 60000).
            let order = base.table == .memory ? memoryOrder : timeOrder
            if let at = order.firstIndex(of: rest), at + 1 < order.count,
               let next = unitSize(order[at + 1], like: base.table) {
                let step = next.size / base.size
                value = (value / step).rounded(.toNearestOrEven) * step
            }
        }
        guard value.isFinite else { return nil }
        if kind.vartype == "integer" {
            value = value.rounded(.toNearestOrEven)
            guard value >= Double(Int32.min), value <= Double(Int32.max) else { return nil }
        }
        return value
    }

    private enum Table { case memory, time }

    /// A base unit as pg_settings names it (`8kB`: eight kilobytes), in bytes or milliseconds.
    private static func unitSize(_ unit: String) -> (size: Double, table: Table)? {
        let digits = unit.prefix { $0.isASCII && $0.isNumber }
        let name = String(unit.dropFirst(digits.count))
        let multiple = digits.isEmpty ? 1 : Double(digits) ?? 0
        guard multiple > 0 else { return nil }
        if let size = memory[name] { return (multiple * size, .memory) }
        if let size = time[name] { return (multiple * size, .time) }
        return nil
    }

    /// A unit a value is written with, from the same table as the setting's base unit.
    private static func unitSize(_ unit: String, like table: Table) -> (size: Double, table: Table)? {
        switch table {
        case .memory: memory[unit].map { ($0, .memory) }
        case .time: time[unit].map { ($0, .time) }
        }
    }
}
