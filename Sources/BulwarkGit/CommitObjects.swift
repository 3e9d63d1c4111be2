internal import CLibGit2

extension Repository {
    /// Every commit in the object database, loose or packed, whether a reference reaches it or
    /// not (what `git fsck --lost-found` walks): how the records of a damaged clone whose
    /// branch reference is garbage are found again. Objects whose header cannot be read are
    /// skipped. Reads every object's header: for a damaged clone, not for every open.
    public func commitObjects() throws(GitError) -> [ObjectID] {
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, pointer), "git_repository_odb")
        defer { git_odb_free(odb) }
        final class Found { var ids: [git_oid] = [] }
        let found = Found()
        let payload = Unmanaged.passUnretained(found).toOpaque()
        try check(git_odb_foreach(odb, { oid, payload in
            guard let oid, let payload else { return 0 }
            Unmanaged<Found>.fromOpaque(payload).takeUnretainedValue().ids.append(oid.pointee)
            return 0
        }, payload), "git_odb_foreach")
        return withExtendedLifetime(found) {
            var commits = Set<ObjectID>()
            for var oid in found.ids {
                var size = 0
                var type = GIT_OBJECT_INVALID
                guard git_odb_read_header(&size, &type, odb, &oid) == 0, type == GIT_OBJECT_COMMIT else { continue }
                commits.insert(ObjectID(oid))
            }
            return commits.sorted()
        }
    }
}
