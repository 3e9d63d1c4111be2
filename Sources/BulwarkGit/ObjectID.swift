internal import CLibGit2

/// A git object id as a Swift value (40 hex digits).
public struct ObjectID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let hex: String

    public init?(hex: String) {
        guard hex.utf8.count == 40, hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) })
        else { return nil }
        self.hex = hex
    }

    init(_ oid: git_oid) {
        var copy = oid
        self.hex = String(cString: git_oid_tostr_s(&copy))
    }

    var raw: git_oid {
        var oid = git_oid()
        // The initializer guarantees 40 valid hex digits, so this cannot fail.
        _ = git_oid_fromstrn(&oid, hex, 40)
        return oid
    }

    public var short: String { String(hex.prefix(12)) }
    public var description: String { hex }
    public static func < (a: ObjectID, b: ObjectID) -> Bool { a.hex < b.hex }
}
