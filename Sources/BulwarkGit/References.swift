internal import CLibGit2

extension Repository {
    /// The references whose names match `glob` (fnmatch, as `git for-each-ref`: `refs/remotes/origin/bulwark/audit-targets/*`),
    /// with the commit each points at, sorted by name. Symbolic references are peeled; a reference
    /// that cannot be resolved is left out.
    public func references(matching glob: String) throws(GitError) -> [(name: String, target: ObjectID)] {
        var iterator: OpaquePointer?
        try check(git_reference_iterator_glob_new(&iterator, pointer, glob), "git_reference_iterator_glob_new(\(glob))")
        defer { git_reference_iterator_free(iterator) }
        var names: [String] = []
        while true {
            var name: UnsafePointer<CChar>?
            let code = git_reference_next_name(&name, iterator)
            if code == GIT_ITEROVER.rawValue { break }
            try check(code, "git_reference_next_name")
            if let name { names.append(String(cString: name)) }
        }
        var result: [(name: String, target: ObjectID)] = []
        for name in names.sorted() {
            if let id = try resolve(name) { result.append((name, id)) }
        }
        return result
    }
}
