/// The policy revision desired state was read from, a plan was made against and a record cites:
/// a commit (its full hex id), or the working tree (`bulwark validate`, which reads files before
/// they are committed). It reads and writes as the text it always had (the commit id, or
/// `working tree`), so the `Bulwark-Desired-Commit` trailer and the records' JSON stay byte-identical.
public enum Revision: Sendable, Hashable {
    /// A commit, by its full hex id (as `ObjectID.hex`).
    case commit(String)
    /// Files not committed yet.
    case workingTree

    static let workingTreeText = "working tree"

    /// The revision a text names: `working tree`, else a commit id (read back from a record as it was written).
    public init(_ text: String) {
        self = text == Self.workingTreeText ? .workingTree : .commit(text)
    }

    /// The commit id, unless the working tree.
    public var commitID: String? {
        if case .commit(let id) = self { return id }
        return nil
    }

    /// The first 12 characters, as messages and the status page show a revision.
    public var short: String { String(description.prefix(12)) }
}

extension Revision: CustomStringConvertible {
    public var description: String {
        switch self {
        case .commit(let id): id
        case .workingTree: Self.workingTreeText
        }
    }
}

/// Tests and fixtures name revisions as literals.
extension Revision: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self.init(value) }
}

/// One string, as before the type: `"1f0c…"` or `"working tree"`.
extension Revision: Codable {
    public init(from decoder: any Decoder) throws {
        self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
