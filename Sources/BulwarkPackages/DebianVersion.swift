/// A Debian package version, `[epoch:]upstream[-revision]`, ordered exactly as dpkg orders
/// them (`dpkg --compare-versions`; Debian Policy 5.6.12): epochs numerically, then upstream and
/// revision by `verrevcmp`, where `~` sorts before anything (even the end), letters before
/// other characters, and runs of digits compare as numbers.
public struct DebianVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let epoch: Int
    public let upstream: String
    /// Empty when the version has none (which compares equal to `0`).
    public let revision: String
    /// As written (trimmed).
    public let text: String

    /// Longer versions are refused: no real one comes close.
    public static let maximumLength = 256

    /// Parses a version with dpkg's rules (`parseversion`), refusing what dpkg refuses.
    public init(_ raw: String) throws(PackagesError) {
        let text = raw.trimmingSpaces()
        guard !text.isEmpty else { throw PackagesError("version string is empty") }
        guard text.utf8.count <= Self.maximumLength else {
            throw PackagesError("version string is longer than \(Self.maximumLength) characters")
        }
        guard !text.unicodeScalars.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }) else {
            throw PackagesError("version string '\(text)' has embedded spaces")
        }
        var rest = Substring(text)
        var epoch = 0
        if let colon = rest.firstIndex(of: ":") {
            let digits = rest[..<colon]
            guard !digits.isEmpty else { throw PackagesError("epoch in version '\(text)' is empty") }
            guard digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int32(digits) else {
                throw PackagesError("epoch in version '\(text)' is not a number below 2^31")
            }
            epoch = Int(value)
            rest = rest[rest.index(after: colon)...]
        }
        var upstream = rest
        var revision: Substring = ""
        if let hyphen = rest.lastIndex(of: "-") {
            upstream = rest[..<hyphen]
            revision = rest[rest.index(after: hyphen)...]
            guard !revision.isEmpty else { throw PackagesError("revision in version '\(text)' is empty") }
        }
        guard let first = upstream.utf8.first else { throw PackagesError("version '\(text)' has an empty upstream part") }
        guard Self.isDigit(first) else { throw PackagesError("version '\(text)' does not start with a digit") }
        for byte in upstream.utf8 where !(Self.isDigit(byte) || Self.isLetter(byte) || ".-+~:".utf8.contains(byte)) {
            throw PackagesError("invalid character '\(Character(Unicode.Scalar(byte)))' in version '\(text)'")
        }
        for byte in revision.utf8 where !(Self.isDigit(byte) || Self.isLetter(byte) || ".+~".utf8.contains(byte)) {
            throw PackagesError("invalid character '\(Character(Unicode.Scalar(byte)))' in the revision of '\(text)'")
        }
        self.epoch = epoch
        self.upstream = String(upstream)
        self.revision = String(revision)
        self.text = text
    }

    public var description: String { text }

    /// Equal as dpkg compares (`1.0` and `0:1.0-0` are the same version).
    public static func == (a: DebianVersion, b: DebianVersion) -> Bool { compare(a, b) == 0 }
    public func hash(into hasher: inout Hasher) {
        // Equal versions may be written differently: hash only what they must share.
        hasher.combine(epoch)
    }

    public static func < (a: DebianVersion, b: DebianVersion) -> Bool { compare(a, b) < 0 }

    /// Negative, zero or positive as `a` sorts before, with or after `b`.
    public static func compare(_ a: DebianVersion, _ b: DebianVersion) -> Int {
        if a.epoch != b.epoch { return a.epoch < b.epoch ? -1 : 1 }
        let upstream = verrevcmp(Array(a.upstream.utf8), Array(b.upstream.utf8))
        if upstream != 0 { return upstream }
        return verrevcmp(Array(a.revision.utf8), Array(b.revision.utf8))
    }

    /// dpkg's `verrevcmp` (lib/dpkg/version.c), on bytes; the end of a string reads as 0.
    static func verrevcmp(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var i = 0
        var j = 0
        func at(_ s: [UInt8], _ k: Int) -> UInt8 { k < s.count ? s[k] : 0 }
        while i < a.count || j < b.count {
            var firstDiff = 0
            while (i < a.count && !isDigit(a[i])) || (j < b.count && !isDigit(b[j])) {
                let ac = order(at(a, i))
                let bc = order(at(b, j))
                if ac != bc { return ac - bc }
                i += 1
                j += 1
            }
            while at(a, i) == 0x30 { i += 1 }
            while at(b, j) == 0x30 { j += 1 }
            while isDigit(at(a, i)) && isDigit(at(b, j)) {
                if firstDiff == 0 { firstDiff = Int(at(a, i)) - Int(at(b, j)) }
                i += 1
                j += 1
            }
            if isDigit(at(a, i)) { return 1 }
            if isDigit(at(b, j)) { return -1 }
            if firstDiff != 0 { return firstDiff }
        }
        return 0
    }

    /// dpkg's `order`: digits 0, letters their code, `~` −1, others their code + 256, the end 0.
    static func order(_ c: UInt8) -> Int {
        if isDigit(c) { return 0 }
        if isLetter(c) { return Int(c) }
        if c == 0x7E { return -1 }
        if c != 0 { return Int(c) + 256 }
        return 0
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isLetter(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }
}

extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" || first == "\n" || first == "\r" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" || last == "\n" || last == "\r" { scalars.removeLast() }
        return String(scalars)
    }
}
