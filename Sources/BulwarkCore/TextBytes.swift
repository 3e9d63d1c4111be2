/// Text that C programs and the kernel read, split and compared as they read it: byte by byte.
///
/// Swift's `String` works in `Character`s (grapheme clusters): a separator followed by a
/// combining mark (`/\u{338}`, `:\u{301}`), or preceded by a prepend mark (`\u{600}/`), is one
/// `Character` that is not the separator, so a split by `Character` does not split there and
/// `hasPrefix("/")` is false. The kernel splits a path at every `/` byte, and glibc a passwd
/// line at every `:`: read otherwise, a path's name holds a `/` that `openat` walks through
/// (following a link on the way unjudged), and an account's line loses its fields.
/// The blanks C's `isspace` knows in the C locale: space, tab, line feed, vertical tab, form
/// feed, carriage return (ASCII only: a no-break space is no blank to glibc, sysctl or sshd).
package func isCSpace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || (9...13).contains(byte) }

extension Substring {
    /// The text without C's blanks (`isCSpace`) at either end.
    package func trimmingCSpaces() -> Substring {
        let bytes = utf8
        var start = bytes.startIndex, end = bytes.endIndex
        while start < end, isCSpace(bytes[start]) { bytes.formIndex(after: &start) }
        while end > start, isCSpace(bytes[bytes.index(before: end)]) { bytes.formIndex(before: &end) }
        return Substring(bytes[start..<end])
    }

    /// The parts between each `separator` byte (an ASCII character).
    package func splitBytes(at separator: Unicode.Scalar, omittingEmpty: Bool = false) -> [Substring] {
        utf8.split(separator: UInt8(ascii: separator), omittingEmptySubsequences: omittingEmpty).map(Substring.init)
    }
}

extension StringProtocol {
    /// Whether the text's bytes start with `prefix`'s.
    package func hasBytePrefix(_ prefix: String) -> Bool { utf8.starts(with: prefix.utf8) }

    /// Whether the text's bytes end with `suffix`'s.
    package func hasByteSuffix(_ suffix: String) -> Bool { utf8.reversed().starts(with: suffix.utf8.reversed()) }

    /// Whether the text is the same bytes as `other` (not merely canonically equivalent, as `==` says).
    package func isSameBytes(_ other: String) -> Bool { utf8.elementsEqual(other.utf8) }
}

/// Paths as the kernel reads them.
package enum PathText {
    /// `text`'s names between `/` bytes, empty ones left out.
    package static func components(_ text: some StringProtocol) -> [String] {
        Substring(text).splitBytes(at: "/", omittingEmpty: true).map(String.init)
    }

    /// Whether the path starts at `/` (its first byte).
    package static func isAbsolute(_ text: some StringProtocol) -> Bool { text.utf8.first == UInt8(ascii: "/") }

    /// Whether a name of the path is `..`.
    package static func climbs(_ text: some StringProtocol) -> Bool { components(text).contains { $0.isSameBytes("..") } }

    /// `path` without the `/` bytes at its end, `/` itself kept.
    package static func trimmingTrailingSlashes(_ path: String) -> String {
        var bytes = path.utf8[...]
        while bytes.count > 1, bytes.last == UInt8(ascii: "/") { bytes = bytes.dropLast() }
        return String(Substring(bytes))
    }

    /// Whether `path` is `folder` or inside it (`etc` holds `etc/shadow`, not `etcetera`).
    package static func isWithin(_ path: some StringProtocol, _ folder: String) -> Bool {
        path.utf8.elementsEqual(folder.utf8) || path.hasBytePrefix(folder + "/")
    }
}
