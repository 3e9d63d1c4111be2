internal import CLibGit2

/// Facts about the libgit2 this process runs with, and its rules for names.
public enum GitLibrary {
    /// The libgit2 version linked at run time, such as `1.5.1`.
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        guard git_libgit2_version(&major, &minor, &revision) == 0 else { return "unknown" }
        return "\(major).\(minor).\(revision)"
    }

    /// Whether `name` is a valid branch name by libgit2's rules (those of `git check-ref-format
    /// --branch`): no `..`, `@{`, control characters, space, `~^:?*[\`, no component starting
    /// with `.` or ending with `.lock`, no leading `-`, not `HEAD`.
    public static func isValidBranchName(_ name: String) -> Bool {
        LibGit2.ensureInitialized()
        // A NUL would cut the C string short and let libgit2 judge a different name.
        guard !name.utf8.contains(0) else { return false }
        var valid: Int32 = 0
        guard git_branch_name_is_valid(&valid, name) == 0 else { return false }
        return valid != 0
    }

    /// Bytes of parsed objects in libgit2's object cache, all repositories of this process
    /// together: 0, since Bulwark turns the cache off (see `LibGit2`).
    public static var cachedObjectBytes: Int {
        LibGit2.ensureInitialized()
        return bulwark_git_cached_memory()
    }

    /// How many bytes of pack files libgit2 keeps mapped at most (see `LibGit2`).
    public static var mappedPackLimit: Int {
        LibGit2.ensureInitialized()
        return bulwark_git_mwindow_mapped_limit()
    }
}
