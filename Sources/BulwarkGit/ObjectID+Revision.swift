public import BulwarkCore

extension Revision {
    /// The revision of a commit.
    public init(_ commit: ObjectID) {
        self = .commit(commit.hex)
    }

    /// The commit, when this is one with a well-formed id.
    public var objectID: ObjectID? {
        commitID.flatMap { ObjectID(hex: $0) }
    }
}
