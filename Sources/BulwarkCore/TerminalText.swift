/// Text from outside Bulwark (a scanner's finding, a target's file, a commit on the audit
/// branch) reaches terminals, logs and commit messages. Some scalars in it act instead of
/// showing: C0 and C1 controls and DEL drive the terminal (an escape sequence can retitle the
/// window, move the cursor, hide or rewrite what was printed), line and paragraph separators
/// break lines, and the bidirectional controls (embeddings, overrides, isolates, marks) reorder
/// what follows them, so `log` could show a record other than the one on the branch.
///
/// Those scalars, and only those: Unicode's category Cc (U+0000–U+001F, U+007F–U+009F), U+2028
/// and U+2029, and the property Bidi_Control (U+061C, U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069). Judged on the UTF-8 bytes, so text without them costs one scan and no copy.
package enum TerminalText {
    /// `text` on one line: every such scalar made a space. For a value that goes into a commit
    /// message's line or a finding's field.
    package static func oneLine(_ text: String) -> String {
        var text = text
        return text.withUTF8 { bytes in
            guard let first = firstUnsafe(in: bytes, from: 0, keepingLines: false) else { return nil }
            var result = [UInt8]()
            result.reserveCapacity(bytes.count)
            var start = 0
            var found: (offset: Int, length: Int)? = first
            while let (offset, length) = found {
                result += bytes[start..<offset]
                result.append(0x20)
                start = offset + length
                found = firstUnsafe(in: bytes, from: start, keepingLines: false)
            }
            result += bytes[start...]
            return String(decoding: result, as: UTF8.self)
        } ?? text
    }

    /// `text` as a terminal or a JSON reader should get it: every such scalar but the line feed
    /// and the tab written as a JSON escape (`\u001B`, `\u202E`), which shows what was there and,
    /// inside a JSON string, reads back as the same scalar. Then each colour mark (`painted`)
    /// becomes its escape sequence with `colour`, and goes without it. An escape sequence in
    /// the text itself is shown, never sent, even one that copies a colour exactly: only marks
    /// become sequences, and text from outside cannot make one without this process's token.
    package static func printable(_ text: String, colour: Bool) -> String {
        var text = text
        let escaped = text.withUTF8 { bytes in
            guard var (offset, length) = firstUnsafe(in: bytes, from: 0, keepingLines: true) else { return nil }
            var result: [UInt8] = []
            result.reserveCapacity(bytes.count + 16)
            // Bytes before `start` are in `result`.
            var start = 0
            while true {
                result += bytes[start..<offset]
                result += escape(scalar(in: bytes, at: offset, length: length))
                start = offset + length
                guard let next = firstUnsafe(in: bytes, from: start, keepingLines: true) else { break }
                (offset, length) = next
            }
            result += bytes[start...]
            return String(decoding: result, as: UTF8.self)
        } ?? text
        return colourMarks(in: escaped, colour: colour)
    }

    /// `text` between colour marks: `printable` makes them `ESC [ code m` (`code` one of
    /// `Console.Colour`'s), then `ESC [ 0 m` after it. For `Console.paint` only.
    package static func painted(_ text: String, code: String) -> String {
        mark + code + "m" + text + mark + "0m"
    }

    /// What starts a colour mark: a private-use scalar around 26 random letters, drawn once per
    /// process. Text from a file, a commit or a finding cannot hold it without reading this
    /// process's memory, so it cannot make `printable` send an escape sequence.
    static let mark: String = {
        var generator = SystemRandomNumberGenerator()
        let letters = Array("abcdefghijklmnopqrstuvwxyz".unicodeScalars)
        var token = String.UnicodeScalarView()
        for _ in 0..<26 { token.append(letters[Int(generator.next(upperBound: UInt32(letters.count)))]) }
        return "\u{10FFFD}" + String(token) + "\u{10FFFD}"
    }()

    static let markBytes = Array(mark.utf8)

    /// Each mark followed by digits and `m` made `ESC [ digits m` (with `colour`) or removed
    /// (without); a mark followed by anything else (text cut inside a painted part) is removed,
    /// so the token is never shown. On the UTF-8 bytes: a mark is found whatever the scalars
    /// around it.
    static func colourMarks(in text: String, colour: Bool) -> String {
        guard let lead = markBytes.first, text.utf8.contains(lead) else { return text }
        let bytes = Array(text.utf8), mark = markBytes
        func markAt(_ from: Int) -> Int? {
            var index = from
            while index + mark.count <= bytes.count {
                if bytes[index] == lead, bytes[index..<index + mark.count].elementsEqual(mark) { return index }
                index += 1
            }
            return nil
        }
        guard var found = markAt(0) else { return text }
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        var start = 0
        while true {
            result += bytes[start..<found]
            start = found + mark.count
            var end = start
            while end < bytes.count, (0x30...0x39).contains(bytes[end]) { end += 1 }
            if end > start, end < bytes.count, bytes[end] == UInt8(ascii: "m") {
                if colour { result += [0x1b, UInt8(ascii: "[")] + bytes[start...end] }
                start = end + 1
            }
            // Otherwise the mark alone goes: what follows it is text.
            guard let next = markAt(start) else { break }
            found = next
        }
        result += bytes[start...]
        return String(decoding: result, as: UTF8.self)
    }

    /// `text` on one line of at most `limit` scalars (then `…`), every such scalar escaped as
    /// Swift writes it (`\n`, `\u{1B}`): for errors, which quote a file's or a request's text.
    package static func escapedLine(_ text: String, limit: Int) -> String {
        guard text.unicodeScalars.count > limit || text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var result = ""
        for (index, scalar) in text.unicodeScalars.enumerated() {
            guard index < limit else { return result + "…" }
            if isUnsafe(scalar) { result += scalar.escaped(asASCII: true) } else { result.unicodeScalars.append(scalar) }
        }
        return result
    }

    /// Whether a scalar is one of those (the same set as the byte scan's, for callers that walk scalars).
    package static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7f...0x9f, 0x61c, 0x200e, 0x200f, 0x2028...0x202e, 0x2066...0x2069: true
        default: false
        }
    }

    /// The offset and length in bytes of the first such scalar at or after `start` (the line
    /// feed and the tab skipped when `keepingLines`). `bytes` is valid UTF-8 (a String's).
    static func firstUnsafe(in bytes: UnsafeBufferPointer<UInt8>, from start: Int, keepingLines: Bool) -> (Int, Int)? {
        var index = start
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            switch byte {
            case 0x09, 0x0a:
                if !keepingLines { return (index, 1) }
            case 0..<0x20, 0x7f:
                return (index, 1)
            case 0xc2:
                // U+0080–U+009F: C2 80–9F.
                if index + 1 < count, bytes[index + 1] < 0xa0 { return (index, 2) }
            case 0xd8:
                // U+061C ARABIC LETTER MARK: D8 9C.
                if index + 1 < count, bytes[index + 1] == 0x9c { return (index, 2) }
            case 0xe2:
                // U+200E, U+200F, U+2028–U+202E: E2 80 8E/8F/A8–AE; U+2066–U+2069: E2 81 A6–A9.
                if index + 2 < count {
                    let second = bytes[index + 1], third = bytes[index + 2]
                    if second == 0x80, third == 0x8e || third == 0x8f || (0xa8...0xae).contains(third) { return (index, 3) }
                    if second == 0x81, (0xa6...0xa9).contains(third) { return (index, 3) }
                }
            default:
                break
            }
            index += 1
        }
        return nil
    }

    static func scalar(in bytes: UnsafeBufferPointer<UInt8>, at offset: Int, length: Int) -> UInt32 {
        switch length {
        case 1: UInt32(bytes[offset])
        case 2: (UInt32(bytes[offset] & 0x1f) << 6) | UInt32(bytes[offset + 1] & 0x3f)
        default: (UInt32(bytes[offset] & 0x0f) << 12) | (UInt32(bytes[offset + 1] & 0x3f) << 6) | UInt32(bytes[offset + 2] & 0x3f)
        }
    }

    /// `\u` and four upper-case hex digits.
    static func escape(_ value: UInt32) -> [UInt8] {
        [0x5c, 0x75] + [12, 8, 4, 0].map { hexDigits[Int((value >> UInt32($0)) & 0xf)] }
    }

    static let hexDigits = Array("0123456789ABCDEF".utf8)
}
