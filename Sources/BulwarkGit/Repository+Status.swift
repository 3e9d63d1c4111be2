internal import CLibGit2

extension Repository {
    /// How many files of the working tree differ from the checked-out commit (modified, staged,
    /// new and not ignored, deleted); 0 for a bare repository. For the warning `plan` prints
    /// when a local repository has changes that are not committed (and so not planned).
    public func uncommittedChanges() throws(GitError) -> Int {
        guard !isBare else { return 0 }
        var options = git_status_options()
        try check(git_status_options_init(&options, UInt32(GIT_STATUS_OPTIONS_VERSION)), "git_status_options_init")
        options.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR
        options.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED.rawValue | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS.rawValue
            | GIT_STATUS_OPT_EXCLUDE_SUBMODULES.rawValue
        var list: OpaquePointer?
        try check(git_status_list_new(&list, pointer, &options), "git_status_list_new")
        guard let list else { return 0 }
        defer { git_status_list_free(list) }
        return git_status_list_entrycount(list)
    }
}
