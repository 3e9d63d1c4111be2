/// JSON written as `JSONEncoder` writes it with `[.sortedKeys, .withoutEscapingSlashes]`, and
/// `.prettyPrinted` when asked, byte for byte, without the `Encodable` machinery: an audit
/// record's file and its intent line are written for every fix (a tenth of a 20,000-fix pass
/// went to the encoder). The tests hold it to `JSONEncoder` for every kind of value a record has.
package enum PrettyJSON {
    package indirect enum Value {
        case string(String)
        case integer(Int)
        case array([Value])
        /// Members in any order: written sorted by key.
        case object([(String, Value)])
    }

    package static func bytes(_ value: Value, pretty: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(1024)
        write(value, indent: pretty ? 0 : nil, into: &out)
        return out
    }

    /// Pretty (`indent`: the enclosing level's spaces; `"key" : value`, one item a line, an
    /// empty list as `[` and `]` two lines apart), or compact without any space (`indent` nil).
    private static func write(_ value: Value, indent: Int?, into out: inout [UInt8]) {
        /// Opens a list; `items` writes each item after the separator and the item's indent.
        func list(_ open: Character, _ close: Character, count: Int, _ item: (Int, Int?, inout [UInt8]) -> Void) {
            out.append(UInt8(ascii: open.unicodeScalars.first!))
            if indent != nil { out.append(0x0a) }
            let inner = indent.map { $0 + 2 }
            for index in 0..<count {
                if index > 0 { out.append(UInt8(ascii: ",")); if indent != nil { out.append(0x0a) } }
                if let inner { spaces(inner, into: &out) }
                item(index, inner, &out)
            }
            if let indent { out.append(0x0a); spaces(indent, into: &out) }
            out.append(UInt8(ascii: close.unicodeScalars.first!))
        }
        switch value {
        case .string(let text):
            string(text, into: &out)
        case .integer(let number):
            out += String(number).utf8
        case .array(let items):
            list("[", "]", count: items.count) { index, inner, out in write(items[index], indent: inner, into: &out) }
        case .object(let members):
            let sorted = members.sorted(by: { $0.0 < $1.0 })
            list("{", "}", count: sorted.count) { index, inner, out in
                string(sorted[index].0, into: &out)
                out += inner == nil ? [UInt8(ascii: ":")] : [0x20, UInt8(ascii: ":"), 0x20]
                write(sorted[index].1, indent: inner, into: &out)
            }
        }
    }

    private static func spaces(_ count: Int, into out: inout [UInt8]) {
        for _ in 0..<count { out.append(0x20) }
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// A JSON string: `"` and `\` escaped, control characters as `\n`-style or `\u00XX`
    /// escapes, everything else (slashes, DEL, any other character) as its UTF-8 bytes.
    static func string(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0a: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0d: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0c: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0x00..<0x20:
                out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0x0f)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
