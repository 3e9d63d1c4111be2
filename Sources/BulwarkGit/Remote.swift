internal import CLibGit2
internal import Foundation

/// Why a reference was not updated on the remote.
public struct PushRejection: Sendable, Hashable {
    public init(reference: String, reason: String) {
        self.reference = reference
        self.reason = reason
    }

    public let reference: String
    public let reason: String
}

extension Repository {
    /// Makes sure remote `name` exists and points at `url` (updating it when it differs).
    public func ensureRemote(_ name: String, url: String) throws(GitError) {
        switch try remoteURL(name) {
        case nil:
            var remote: OpaquePointer?
            try check(git_remote_create(&remote, pointer, name, url), "git_remote_create(\(name))")
            git_remote_free(remote)
        case url?:
            return
        case _?:
            try check(git_remote_set_url(pointer, name, url), "git_remote_set_url(\(name))")
        }
    }

    /// The URL of remote `name`, or nil when there is no such remote.
    public func remoteURL(_ name: String) throws(GitError) -> String? {
        var config: OpaquePointer?
        try check(git_repository_config_snapshot(&config, pointer), "git_repository_config_snapshot")
        defer { git_config_free(config) }
        var value: UnsafePointer<CChar>?
        let code = git_config_get_string(&value, config, "remote.\(name).url")
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "git_config_get_string(remote.\(name).url)")
        return value.map { String(cString: $0) }
    }

    /// An in-memory remote for the URL of remote `name`, for one fetch, ls-remote or push.
    ///
    /// `git_remote_lookup` is not used here: in libgit2 1.5 it applies `url.*.insteadOf` through
    /// a regular expression whose PCRE2 match data is never freed (libgit2 PR #6382), about
    /// 20 KiB per call, which a daemon pushing after every fix cannot afford. The remote's URL
    /// is the one Bulwark itself configured, so there is nothing to rewrite.
    private func detachedRemote(_ name: String) throws(GitError) -> OpaquePointer {
        guard let url = try remoteURL(name) else {
            throw GitError(function: "remote \(name)", code: GIT_ENOTFOUND.rawValue, message: "no remote named \(name)")
        }
        var options = git_remote_create_options()
        try check(git_remote_create_options_init(&options, UInt32(GIT_REMOTE_CREATE_OPTIONS_VERSION)), "git_remote_create_options_init")
        options.repository = pointer
        options.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF.rawValue | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC.rawValue
        var remote: OpaquePointer?
        try check(git_remote_create_with_opts(&remote, url, &options), "git_remote_create_with_opts(\(name))")
        guard let remote else { throw GitError(function: "git_remote_create_with_opts(\(name))", code: -1, message: "libgit2 returned no remote") }
        return remote
    }

    /// Fetches `refspecs` from remote `name` (forced updates, pruning refs deleted upstream).
    public func fetch(remote name: String, refspecs: [String], access: RemoteAccess = RemoteAccess()) throws(GitError) {
        let remote = try detachedRemote(name)
        defer { git_remote_free(remote) }
        var options = git_fetch_options()
        try check(git_fetch_options_init(&options, UInt32(GIT_FETCH_OPTIONS_VERSION)), "git_fetch_options_init")
        options.prune = GIT_FETCH_PRUNE
        options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE
        let box = RemoteCallbacks(access: access)
        box.install(&options.callbacks)
        try box.run { () throws(GitError) in
            try withStrArray(refspecs) { (array) throws(GitError) in
                _ = try check(git_remote_fetch(remote, array, &options, "bulwark: fetch"), "git_remote_fetch(\(name))")
            }
        }
    }

    /// The references remote `name` advertises and where they point (`git ls-remote`), without
    /// fetching anything: cheap enough to ask on every poll.
    public func remoteHeads(_ name: String, access: RemoteAccess = RemoteAccess()) throws(GitError) -> [String: ObjectID] {
        let remote = try detachedRemote(name)
        defer { git_remote_free(remote) }
        var callbacks = git_remote_callbacks()
        try check(git_remote_init_callbacks(&callbacks, UInt32(GIT_REMOTE_CALLBACKS_VERSION)), "git_remote_init_callbacks")
        let box = RemoteCallbacks(access: access)
        box.install(&callbacks)
        return try box.run { () throws(GitError) -> [String: ObjectID] in
            try check(git_remote_connect(remote, GIT_DIRECTION_FETCH, &callbacks, nil, nil), "git_remote_connect(\(name))")
            defer { git_remote_disconnect(remote) }
            var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
            var count = 0
            try check(git_remote_ls(&heads, &count, remote), "git_remote_ls(\(name))")
            var result: [String: ObjectID] = [:]
            for index in 0..<count {
                guard let head = heads?[index]?.pointee, let refName = head.name else { continue }
                result[String(cString: refName)] = ObjectID(head.oid)
            }
            return result
        }
    }

    /// Pushes `refspecs` to remote `name`. Returns the references the remote refused (for
    /// example a non-fast-forward); throws when the remote cannot be reached at all.
    public func push(remote name: String, refspecs: [String], access: RemoteAccess = RemoteAccess()) throws(GitError) -> [PushRejection] {
        let remote = try detachedRemote(name)
        defer { git_remote_free(remote) }
        var options = git_push_options()
        try check(git_push_options_init(&options, UInt32(GIT_PUSH_OPTIONS_VERSION)), "git_push_options_init")
        let box = RemoteCallbacks(access: access)
        options.callbacks.push_update_reference = { reference, status, payload in
            guard let status, let reference, let payload else { return 0 }
            let box = Unmanaged<RemoteCallbacks>.fromOpaque(payload).takeUnretainedValue()
            box.rejections.append(PushRejection(reference: String(cString: reference), reason: String(cString: status)))
            return 0
        }
        box.install(&options.callbacks)
        try box.run { () throws(GitError) in
            try withStrArray(refspecs) { (array) throws(GitError) in
                _ = try check(git_remote_push(remote, array, &options), "git_remote_push(\(name))")
            }
        }
        return box.rejections
    }
}
