package import BulwarkCore
package import BulwarkGit
package import Foundation
internal import Glibc
internal import CDispatch

/// Bulwark's own bare clone of a policy repository, in its state directory: where desired
/// state is read from (git objects at one commit, never a working tree) and where audit
/// commits are written and pushed from. Owns the libgit2 repository; one per state directory,
/// guarded by a lock file.
package actor PolicyRepository: AuditSink {
    package struct Configuration: Sendable {
        package var url: String
        package var branch: String = "main"
        package var auditBranch: String = "bulwark/audit"
        package var stateDirectory: String
        package var author = Signature(name: "Bulwark", email: "bulwark@localhost")
        /// Credentials and trusted SSH host keys for the origin; in memory only.
        package var access = RemoteAccess()
        /// Signs every audit commit (`--signing-key`); nil: audit commits are unsigned.
        package var signer: (any CommitSigner)?
        /// The other Bulwarks' signing keys (`--audit-signers`, an allowed_signers file): whose
        /// records count besides this one's (`RecordTrust`).
        package var auditSigners: String?
        /// Trailer lines added to a record's commit (a controller replica's `Bulwark-Lease`).
        package var extraTrailers: (@Sendable (AuditRecord) -> String?)? = nil
        /// Whether the end of every pass writes the index of recent fixes to its file (a command
        /// that runs one pass). The daemon, whose every drift is a pass, writes it at most every
        /// `recentFixesInterval` and when it stops (`saveRecentFixesNow`); the index in memory is
        /// current either way.
        package var recentFixesAtEveryPass = true
        /// Whether this process writes audit records (`apply`, the daemon): it is then refused a
        /// state directory that keeps another audit branch, even one it may read (an agent's).
        package var writesRecords = false

        package init(url: String, branch: String = "main", auditBranch: String = "bulwark/audit", stateDirectory: String,
                     author: Signature = Signature(name: "Bulwark", email: "bulwark@localhost"), access: RemoteAccess = RemoteAccess(),
                     signer: (any CommitSigner)? = nil) {
            self.url = url
            self.branch = branch
            self.auditBranch = auditBranch
            self.stateDirectory = stateDirectory
            self.author = author
            self.access = access
            self.signer = signer
        }
    }

    package enum Failure: Error, CustomStringConvertible {
        case locked(String, holder: Int32?)
        case noBranch(String, String)
        case unreachable(String, GitError)
        case otherRemote(String, String)
        /// The state directory's records went to another audit branch (path, that branch, the one asked for).
        case otherAuditBranch(String, String, String)
        /// A local path as the origin, with no git repository there.
        case noRepository(String)
        /// The state directory cannot be made or written (path, why).
        case stateDirectory(String, String)
        /// An audit record could not be written to the state clone: nothing was recorded.
        case notRecorded(record: String, stateDirectory: String, cause: RecordCause)

        package enum RecordCause: Sendable, Equatable {
            /// The file system holding the state directory has no space (or quota) left.
            case full
            /// A lock file is held by a live process.
            case locked(String)
            case failed(String)
        }

        /// Another process holds the state directory: nothing was done, try again later.
        package var isBusy: Bool {
            if case .locked = self { true } else { false }
        }

        /// Arguments that do not fit the state directory or name no repository: the caller's
        /// mistake, nothing to retry.
        package var isUsage: Bool {
            switch self {
            case .otherRemote, .otherAuditBranch, .noRepository: true
            default: false
            }
        }

        package var description: String {
            switch self {
            case .locked(let path, let holder):
                "another bulwark process\(holder.map { " (pid \($0))" } ?? "") is using the state directory \(path); "
                    + "try again when it has finished"
            case .noBranch(let branch, let url): "branch '\(branch)' not found in \(redactedURL(url))"
            case .unreachable(let url, let error): "cannot fetch \(redactedURL(url)): \(error.message)"
            case .otherRemote(let path, let url): "state directory \(path) belongs to another repository (\(redactedURL(url))); use another --state-dir"
            case .otherAuditBranch(let path, let bound, let asked):
                "state directory \(path) records to the audit branch \(bound), not \(asked): check --audit-branch, --self "
                    + "and --target (a state directory keeps one audit branch; use another --state-dir for another branch)"
            case .noRepository(let path): "no git repository at \(path) (check --repo)"
            case .stateDirectory(let path, let why):
                "cannot use the state directory '\(quotedForMessage(path))': \(why) (set --state-dir or BULWARK_STATE_DIR to a folder this user can write)"
            case .notRecorded(let id, let path, .full):
                "cannot record \(id): the state directory \(path) is full; free space there (nothing was recorded)"
            case .notRecorded(let id, let path, .locked(let lock)):
                "cannot record \(id) in the state directory \(path): \(lock) is held by another process; if none is running, remove it"
            case .notRecorded(let id, let path, .failed(let reason)):
                "cannot record \(id) in the state directory \(path): \(reason)"
            }
        }
    }

    /// What a push achieved.
    package enum Publication: Sendable, Equatable {
        case upToDate
        case pushed(commits: Int)
        /// The remote could not be reached; the commits stay on the local audit branch and go
        /// out with the next push.
        /// `pushed`: the commits that went first, when the push went a prefix at a time.
        case keptLocally(commits: Int, reason: String, pushed: Int = 0)

        /// Commits pushed, commits kept locally, and why they were kept.
        package var counts: (pushed: Int, kept: Int, reason: String?) {
            switch self {
            case .upToDate: (0, 0, nil)
            case .pushed(let count): (count, 0, nil)
            case .keptLocally(let count, let reason, let pushed): (pushed, count, reason)
            }
        }
    }

    package let configuration: Configuration
    private let repository: Repository
    private let lock: StateLock
    /// When this process took the state directory's lock: a git lock file older than this was
    /// left by a process that died mid-update (only a Bulwark holding that lock writes here).
    private let lockedAt: Date
    /// What was repaired in the state clone, in words, also printed as warnings.
    package private(set) var repairs: [String] = []
    /// Damaged state clones set aside whose unpushed audit records could not be carried over,
    /// in words (`StateClone.open`): those records are not on the origin, and `apply` exits 3.
    package private(set) var heldAside: [String] = []
    /// How many times the last `publish` tried to move the origin's branch.
    package private(set) var pushAttempts = 0
    /// The append-only index of the ids on the local audit branch (see `AuditIndex`), opened on
    /// first use; nil when there is none that can be trusted (rebuilt when a lookup needs it).
    private var indexFile: AuditIndex?
    private var indexOpened = false
    /// The commits after the index file's head up to `knownHead`, oldest first, with their ids:
    /// what the next `saveIndex` appends (up to the branch's head on disk).
    private var unindexed: [(commit: ObjectID, id: String?)] = []
    private var unindexedIDs: Set<String> = []
    /// Ids `contains(recordID:)` found in a trusted commit (with `\u{1}accepted` when a
    /// condition was met too), until the branch is rewritten; the keys `RecordTrust` found
    /// trusted; the commits whose record was passed over, each warned about once.
    private var trustedRecords: Set<String> = []
    private var recordTrustKeys: [[UInt8]: String] = [:]
    private var ignoredRecords: Set<ObjectID> = []
    /// Commits on the local audit branch warned about as not this instance's (see `ownUnpushed`).
    private var warnedNotOwn: Set<ObjectID> = []
    /// Every id's commits on the local audit branch (see `commitsCarrying`); nil until a lookup
    /// needs it, and again when the branch is rewritten.
    private var carriers: Carriers?
    /// The audit commit that the index file and `unindexed` together are up to date with.
    private var knownHead: ObjectID?
    /// What keeping the index up to date cost in this process.
    private(set) var indexStatistics = AuditIndex.Statistics()
    /// Audit commits read looking for this instance's last sequence number (see `AuditTrail.committed`).
    private(set) var sequenceCommitsRead = 0
    /// The index of recent verified fixes (see `RecentFixIndex`) as last read or written by this
    /// process; the commits this process wrote since, with their entries (nil: not a verified
    /// fix), for `saveRecentFixes`; how far back the flap breaker last looked, in seconds.
    private var fixIndex: RecentFixIndex?
    private var fixPending: [(commit: ObjectID, parent: ObjectID?, entry: RecentFixIndex.Entry?)] = []
    /// The drift episodes (`DriftEpisodeIndex`) as last read or written by this process, and the
    /// records this process committed since, for `saveDriftEpisodes`.
    private var episodeIndex: DriftEpisodeIndex?
    private var cachedTrustDigest: String?
    private var episodePending: [(commit: ObjectID, parent: ObjectID?, record: EpisodeRecord)] = []
    /// Whether `episodeIndex` holds records its file does not.
    private var episodesUnsaved = false
    /// When a flush last wrote the index of recent fixes (see `recentFixesInterval`).
    private var recentFixesSaved: ContinuousClock.Instant?
    /// Whether the index in memory (`fixIndex`) holds fixes its file does not.
    private var recentFixesUnsaved = false
    private var fixWindow: TimeInterval?
    /// What reading recent fixes cost in this process, for tests and diagnostics.
    private(set) var fixIndexStatistics = AuditIndex.Statistics()
    /// Whether audit objects are kept in memory until `flush` (see `beginBuffering`).
    private var buffering = false
    /// The newest audit commit written while buffering, in memory only; the branch moves to it
    /// in `flush`, once its objects are on disk.
    private var pendingHead: ObjectID?
    /// Why the last flush failed: every later write and flush fails the same way until buffering
    /// ends, so that no caller takes records of the lost batch for recorded.
    private var bufferFailure: Failure?

    /// This Bulwark's trail: its instance name, the last audit commit it pushed (see `AuditTrail`).
    private var trail: AuditTrail
    /// Whether the trail (the last commit pushed, the tampering check) is this configuration's
    /// audit branch's: false for an agent's state directory read with the shared branch, or the
    /// reverse, whose last push went to the other branch.
    private var trailIsOurs = true
    /// The sequence number of the last record this instance committed (in memory ones included),
    /// found on first use (`lastNumber`); where it came from, for the error when no number follows it.
    private var sequence: UInt64?
    private var sequenceSource = "this process's last record"
    /// Tampering with the origin's audit branch found by this process and not yet reported, in words.
    private(set) var tampering: [String] = []
    /// Peer replicas' records the flap history left out (unsigned or untrusted), not yet reported; and every one reported.
    private var peerRejections: [PeerRecordVerification.Rejection] = []
    private var rejectedPeerRecords = Set<String>()

    /// The tampering found since the last call, for the daemon's log and metric.
    package func takeTampering() -> [String] {
        defer { tampering = [] }
        return tampering
    }

    /// Commits on the audit branch Bulwark did not write, taken in from the origin since the last
    /// call (one line per run of them), for the daemon's log.
    private(set) var foreignCommits: [String] = []

    /// The foreign commits found since the last call (`foreignCommits`).
    package func takeForeignCommits() -> [String] {
        defer { foreignCommits = [] }
        return foreignCommits
    }

    private var localAudit: String { "refs/heads/\(configuration.auditBranch)" }
    private var remoteAudit: String { "refs/remotes/origin/\(configuration.auditBranch)" }

    package init(_ configuration: Configuration) throws {
        self.configuration = configuration
        let fm = FileManager.default
        let existed = fm.fileExists(atPath: configuration.stateDirectory)
        try Self.makeStateDirectory(configuration.stateDirectory)
        // Tightened where Bulwark made the folder or its clone is there; another folder is said.
        if !existed || fm.fileExists(atPath: configuration.stateDirectory + "/repository.git") {
            let tightened = Self.makePrivate(configuration.stateDirectory)
            if existed { repairs += tightened }
        } else if Self.isOpen(configuration.stateDirectory) {
            repairs.append("the state directory \(configuration.stateDirectory) can be read by other users, and Bulwark's clone "
                           + "(whose configuration keeps the origin's URL) goes there: make it 0700")
        }
        // The lock is taken first and owned by its own object: whatever fails after this
        // point releases it exactly once, when that object goes.
        lock = try StateLock(configuration.stateDirectory + "/lock", directory: configuration.stateDirectory)
        lockedAt = Date()
        let path = configuration.stateDirectory + "/repository.git"
        repairs += Self.removeStaleLocks(in: path, before: lockedAt)
        let (opened, repaired, held) = try StateClone.open(at: path, url: configuration.url, branch: configuration.branch,
                                                     auditBranch: configuration.auditBranch, access: configuration.access,
                                                     signer: configuration.signer)
        repository = opened
        repairs += repaired
        heldAside = held
        var (trail, _) = try AuditTrail.load(stateDirectory: configuration.stateDirectory)
        // A trail written before it kept its branch: the local branch that holds the last commit
        // pushed is the one it was pushed to (the configured one first), and from now on the
        // trail says so.
        if trail.auditBranch == nil, let pushed = trail.lastPushed.flatMap(ObjectID.init(hex:)), try opened.contains(pushed) {
            let configured = "refs/heads/\(configuration.auditBranch)"
            let branches = try opened.references(matching: "refs/heads/bulwark/*")
                .filter { !$0.name.hasPrefix("refs/heads/" + AuditTrail.recoveryPrefix) }
                .sorted { ($0.name != configured ? 1 : 0, $0.name) < ($1.name != configured ? 1 : 0, $1.name) }
            if let holder = try branches.first(where: { try opened.isAncestor(pushed, of: $0.target) }) {
                trail.auditBranch = String(holder.name.dropFirst("refs/heads/".count))
                try? trail.save(stateDirectory: configuration.stateDirectory)
            }
        }
        // A mistyped --audit-branch must not read as the real branch deleted: the check of the
        // trail would record tampering, and the records would go to the new name (their numbers
        // missing from the real one). An agent's own ref and the shared branch may share a state
        // directory (an agent's history read with `log`): the trail is then left alone.
        if let bound = trail.auditBranch, bound != configuration.auditBranch {
            guard !configuration.writesRecords, AuditRef.isPerWriter(bound) || AuditRef.isPerWriter(configuration.auditBranch) else {
                throw Failure.otherAuditBranch(configuration.stateDirectory, bound, configuration.auditBranch)
            }
            trailIsOurs = false
        }
        self.trail = trail
        // An instance that has committed nothing yet: no need to look for its last number.
        if trail.committed == false { sequence = 0 }
        // A clone that never fetched anything (its --repo was mistyped) holds nothing of that
        // origin: it takes the one given now, rather than refusing the corrected command. Its
        // references are read only then, not at every start (a fleet's clone holds many).
        if let existing = try opened.remoteURL("origin"), !Self.sameRepository(existing, configuration.url), try Self.hasFetched(opened) {
            throw Failure.otherRemote(configuration.stateDirectory, existing)
        }
        try repository.ensureRemote("origin", url: configuration.url)
    }

    /// Whether two origin URLs name the same repository: equal but for their credentials (a
    /// token rotated in the URL is the same origin; the clone then keeps the new URL).
    package static func sameRepository(_ a: String, _ b: String) -> Bool {
        a == b || Redaction.withoutUserinfo(a) == Redaction.withoutUserinfo(b)
    }

    /// Makes this user's state directory private (0700): it holds the clone, whose configuration
    /// keeps the origin's URL as given (a token in it included), the index of records and the
    /// intents. A folder another user owns is left alone. Returns what was changed, to say so.
    private static func makePrivate(_ directory: String) -> [String] {
        // Judged and changed through one descriptor of the folder itself (no link followed):
        // a name swapped for a link between a look and a chmod by path would close another folder.
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o077 != 0 else { return [] }
        // A folder others may write in was refused (`untrusted`); a sticky one others cannot
        // write in is still not Bulwark's to close: said, and left as it is.
        if info.st_mode & 0o1000 != 0 {
            return ["the state directory \(directory) is shared (mode \(String(info.st_mode & 0o7777, radix: 8))): other users "
                    + "may read the clone and its configuration; give Bulwark a folder of its own"]
        }
        guard fchmod(fd, 0o700) == 0 else {
            return ["the state directory \(directory) is mode \(String(info.st_mode & 0o777, radix: 8)) and cannot be made private "
                    + "(\(String(cString: strerror(errno)))): other users may read the clone and its configuration"]
        }
        return ["the state directory \(directory) was mode \(String(info.st_mode & 0o777, radix: 8)); it is now 0700 "
                + "(it holds the clone, whose configuration keeps the origin's URL)"]
    }

    /// Whether a state clone holds anything fetched or committed (any branch, any remote branch).
    private static func hasFetched(_ clone: Repository) throws -> Bool {
        try !clone.references(matching: "refs/remotes/*").isEmpty || !clone.references(matching: "refs/heads/*").isEmpty
    }

    /// Creates the state directory (and its parents) if needed, and checks that this user can
    /// write in it; a failure names the folder and the cause, not Foundation's error domain.
    package static func makeStateDirectory(_ path: String) throws {
        guard !path.isEmpty else { throw Failure.stateDirectory(path, "the path is empty") }
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & S_IFMT != S_IFDIR {
            throw Failure.stateDirectory(path, "it is a file, not a folder")
        }
        do {
            // Each folder made is this user's alone (0700), whatever the umask: made 0775 under
            // umask 002, the state directory was then refused as writable by its group.
            var made = path.hasPrefix("/") ? "" : "."
            for component in path.split(separator: "/") {
                made += "/" + component
                if mkdir(made, 0o700) != 0, errno != EEXIST {
                    throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
                }
            }
        } catch {
            // The first folder on the way that is missing, or a file, tells why.
            var parent = (path as NSString).deletingLastPathComponent
            while !parent.isEmpty, parent != "/", stat(parent, &info) != 0 { parent = (parent as NSString).deletingLastPathComponent }
            let cause = stat(parent, &info) == 0 && info.st_mode & S_IFMT != S_IFDIR ? "\(parent) is a file, not a folder"
                : access(parent, W_OK | X_OK) != 0 ? "\(parent) cannot be written by this user" : "\(error.localizedDescription)"
            throw Failure.stateDirectory(path, "it cannot be created: " + cause)
        }
        guard access(path, W_OK | X_OK | R_OK) == 0 else {
            throw Failure.stateDirectory(path, "this user cannot write in it (\(String(cString: strerror(errno))))")
        }
        if let problem = untrusted(path) { throw Failure.stateDirectory(path, problem) }
    }

    /// Why another user could change what is in the state directory, or nil: the folder must be
    /// this user's and writable by no one else, and every folder on the way to it (each one that
    /// holds a link on the way included, where the link is read, not followed) root's or this
    /// user's, writable by others only when sticky (`/tmp`). Group write counts as no one else's
    /// where the group is the owner's own (a user private group: umask 002's folders). Whoever
    /// can write in any of them can swap the intent journal, or repoint a link to a folder of
    /// theirs, and have Bulwark record, sign and push a fix that never happened (outside review:
    /// a folder made in `/tmp` by another user was used without a word; a link in a folder
    /// anyone may write in got past a check of where it led).
    static func untrusted(_ path: String) -> String? {
        let me = geteuid()
        var info = stat()
        func mode() -> String { String(info.st_mode & 0o7777, radix: 8) }
        // Group write is the owner's alone where the group is its private group.
        func othersWrite() -> Bool {
            info.st_mode & 0o002 != 0 || info.st_mode & 0o020 != 0 && !privateGroup(info.st_gid, of: info.st_uid)
        }
        // Every folder on the way, and each folder a link on the way is read from.
        let start = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var pending = ArraySlice(start.split(separator: "/").map(String.init))
        var folder = "/"
        var hops = 0
        while true {
            guard lstat(folder, &info) == 0 else { return "\(folder) cannot be read (\(String(cString: strerror(errno))))" }
            // The state directory itself is judged after the walk, by its own rule.
            let last = !pending.contains { $0 != "." && !$0.isEmpty }
            if !last, (info.st_uid != 0 && info.st_uid != me) || othersWrite() && info.st_mode & 0o1000 == 0 {
                let why = info.st_uid != 0 && info.st_uid != me ? "belongs to uid \(info.st_uid)"
                    : "may be written by group or others without the sticky bit"
                return "\(folder) on the way to it \(why) (mode \(mode())): whoever can write there could move the state directory "
                    + "away, or change where a link leads, and put a folder of their own in its place"
            }
            guard let name = pending.popFirst() else { break }
            if name == "." || name.isEmpty { continue }
            if name == ".." {
                folder = (folder as NSString).deletingLastPathComponent
                continue
            }
            let next = folder == "/" ? "/" + name : folder + "/" + name
            guard lstat(next, &info) == 0 else { return "\(next) cannot be read (\(String(cString: strerror(errno))))" }
            if info.st_mode & S_IFMT == S_IFLNK {
                hops += 1
                guard hops <= 40, let target = try? FileManager.default.destinationOfSymbolicLink(atPath: next) else {
                    return "\(next) cannot be followed (too many links, or unreadable)"
                }
                if target.hasPrefix("/") { folder = "/" }
                pending = ArraySlice(target.split(separator: "/").map(String.init) + pending)
                continue
            }
            guard info.st_mode & S_IFMT == S_IFDIR else { return "\(next) is not a folder" }
            folder = next
        }
        // The state directory itself: this user's alone.
        if info.st_uid != me {
            return "it belongs to uid \(info.st_uid), not to this user (uid \(me)): its owner could replace the intent journal or "
                + "the clone, and have Bulwark record fixes that never happened; give Bulwark a folder of its own"
        }
        if othersWrite() {
            return "group or others may write in it (mode \(mode())): they could replace the intent journal or the clone, and "
                + "have Bulwark record fixes that never happened; give Bulwark a folder of its own (0700)"
        }
        return nil
    }

    /// Whether `gid` is the private group of `uid` (umask 002's convention): its primary group,
    /// named as it, with no other member.
    private static func privateGroup(_ gid: gid_t, of uid: uid_t) -> Bool {
        guard let user = getpwuid(uid), user.pointee.pw_gid == gid, let group = getgrgid(gid),
              String(cString: group.pointee.gr_name) == String(cString: user.pointee.pw_name) else { return false }
        var member = group.pointee.gr_mem
        while let name = member?.pointee {
            if String(cString: name) != String(cString: user.pointee.pw_name) { return false }
            member = member?.successor()
        }
        return true
    }

    /// The path `url` names when it is a local path (`/srv/policy.git`, `./policy`, `file://…`)
    /// with no git repository there: libgit2 would call it an unsupported URL protocol.
    package static func missingLocalOrigin(_ url: String) -> String? {
        let path: String
        if url.hasPrefix("file://localhost/") {
            path = String(url.dropFirst("file://localhost".count))
        } else if url.hasPrefix("file://") {
            path = String(url.dropFirst("file://".count))
        } else if url.hasPrefix("/") || url.hasPrefix("./") || url.hasPrefix("../") || !url.contains(":") {
            path = url
        } else {
            return nil
        }
        let fm = FileManager.default
        let isRepository = fm.fileExists(atPath: path + "/HEAD") || fm.fileExists(atPath: path + "/.git")
        return isRepository ? nil : path
    }

    /// Why a fetch or a push to the origin failed, in words: a local origin moved or removed is
    /// named as such, where libgit2 calls it an unsupported URL protocol.
    private func originFailure(_ error: GitError) -> String {
        Self.missingLocalOrigin(configuration.url).map { "there is no git repository at \($0)" } ?? error.message
    }

    /// Whether others than the owner may read or enter `directory`.
    private static func isOpen(_ directory: String) -> Bool {
        var info = stat()
        return lstat(directory, &info) == 0 && info.st_mode & 0o077 != 0
    }

    // MARK: - Desired state

    /// Fetches the origin and returns the head of the policy branch. When the origin cannot be
    /// reached, the last fetched head is used if there is one (`stale` says so).
    package func sync() throws -> (head: ObjectID, stale: String?) {
        var stale: String?
        do {
            try repository.fetch(remote: "origin", refspecs: AuditRef(shared: configuration.auditBranch).fetchRefspecs(policyBranch: configuration.branch),
                                 access: configuration.access)
        } catch {
            guard try repository.resolve("refs/remotes/origin/\(configuration.branch)") != nil else {
                if let path = Self.missingLocalOrigin(configuration.url) { throw Failure.noRepository(path) }
                throw Failure.unreachable(configuration.url, error)
            }
            // A local origin moved or removed: libgit2 calls that an unsupported URL protocol.
            let why = originFailure(error)
            stale = "cannot fetch \(redactedURL(configuration.url)) (\(why)); using the last fetched revision"
        }
        guard let head = try repository.resolve("refs/remotes/origin/\(configuration.branch)") else {
            throw Failure.noBranch(configuration.branch, configuration.url)
        }
        try reconcileAuditBranch()
        consolidatePacks()
        return (head, stale)
    }

    /// Keeps the state clone's packs (one per flushed pass and per fetch) few, and libgit2's
    /// mappings of them with it (see `Repository.consolidatePacks`). A failure leaves the packs
    /// as they were (every object is still in one of them): a warning.
    private func consolidatePacks(bound: Int = Repository.packBound, sparingUnpushed: Bool = false) {
        do { try repository.consolidatePacks(bound: bound, sparingUnpushed: sparingUnpushed) } catch {
            Console().warn("cannot consolidate the packs of the state clone (they stay as they are): \(error.message)")
        }
    }

    /// After a push, off the path of the next fix: the packs are merged once there are more
    /// than 14, so that the flush before a push (which merges at more than 16) never has to. The
    /// daemon flushes and pushes once per fix; merging in the flush put 10–40 ms on the path of
    /// every 14th fix (write → fix on origin), the merge of the first 16 packs being the slowest.
    /// A merge leaves at most 7 (`Repository.mergeCount`): one about every 8 fixes.
    package func tidyPacks() {
        guard !buffering else { return }
        consolidatePacks(bound: 14)
    }

    /// Whether the origin's policy or audit branch is somewhere other than where the last fetch
    /// left it (asked with ls-remote, nothing fetched). True when that cannot be told, so that
    /// the caller fetches and reports the problem.
    package func remoteMoved() -> Bool {
        guard let heads = try? repository.remoteHeads("origin", access: configuration.access) else { return true }
        for branch in [configuration.branch, configuration.auditBranch] {
            let tracked = try? repository.resolve("refs/remotes/origin/\(branch)")
            if heads["refs/heads/\(branch)"] != tracked { return true }
        }
        return false
    }

    /// The desired state `revision` gave, nil when it cannot be read or loaded (a commit no
    /// longer in the clone, a revision that was refused).
    package func desiredState(at revision: Revision, registry: Registry) -> DesiredState? {
        guard let hex = revision.commitID, let id = ObjectID(hex: hex), let files = try? files(at: id) else { return nil }
        return try? DesiredStateLoader(registry: registry).load(files, revision: revision)
    }

    /// The manifest files of a revision, straight from the object database.
    package func files(at commit: ObjectID) throws -> [SourceFile] {
        try repository.files(at: commit, under: DesiredStateLoader.folders, maxSize: DesiredStateLoader.maxFileSize)
            .map { file in
                SourceFile(path: file.path, kind: file.kind == .symlink ? .symlink : file.kind == .submodule ? .other : .regular,
                           size: file.size, contents: file.contents)
            }
    }

    // MARK: - Audit

    /// Whether a record with `recordID` is on the local audit branch (Bulwark's stable ids: a
    /// decision recorded once, an approval used, a failure, a refusal, the tampering). The branch
    /// takes in whatever the origin holds, and those ids can be computed by anyone: with a
    /// signing key or audit signers (`RecordTrust`), an id counts only when a trusted key signed
    /// a commit carrying it, else a made-up record would hide the real one. An untrusted one is
    /// passed over with a warning naming its commit. Without either, nothing can be checked and
    /// every id counts.
    package func contains(recordID: String) throws -> Bool {
        try contains(recordID: recordID, accepting: nil)
    }

    /// Whether a fix used the approval `approvalID` (its record `AuditID.approved`): a record of
    /// an applied (or pruned) fix with that approval, not any commit carrying the id. With a
    /// signing key or audit signers, a trusted key must have signed it. Without either, anyone
    /// who can push to the audit branch could mark every approval used (no approval would ever
    /// go through, nor `bulwark approve` be given again): the record counts only when the policy
    /// revision it was made at (`Bulwark-Desired-Commit`) is on the policy branch and holds
    /// `approvals/<id>.yaml`, as every fix made under the approval was. That stops a record
    /// forged before the approval was given, not one forged after it (naming the revision that
    /// holds it): without keys, the audit branch's writers are trusted.
    package func usedApproval(_ approvalID: String) throws -> Bool {
        let unchecked = recordTrust == nil
        let policyHead = unchecked ? try repository.resolve("refs/remotes/origin/\(configuration.branch)") : nil
        return try contains(recordID: AuditID.approved(approvalID)) { commit in
            guard let recorded = commit.recorded, recorded.decision == .applied || recorded.decision == .pruned,
                  recorded.approvedBy != nil else { return "it does not record a fix made under the approval" }
            guard unchecked else { return nil }
            guard let revision = recorded.desiredCommit?.commitID.flatMap(ObjectID.init(hex:)), let policyHead,
                  self.isAncestorOrEqual(revision, of: policyHead) else {
                return "the policy revision it names (\(recorded.desiredCommit?.short ?? "none")) is not on the policy branch "
                    + "\(self.configuration.branch), and no key is configured to check who wrote it (--signing-key, --audit-signers)"
            }
            let held = ["approvals/\(approvalID).yaml", "approvals/\(approvalID).yml"].contains {
                (try? self.repository.file(at: revision, path: $0)) != nil
            }
            return held ? nil : "its policy revision \(revision.short) has no approvals/\(approvalID).yaml, so no fix was made under "
                + "the approval there (no key is configured to check who wrote it: --signing-key, --audit-signers)"
        }
    }

    /// `contains(recordID:)`, where a commit carrying the id must also be one `accepting` takes
    /// (it returns why not, or nil), and a trusted one where keys are configured.
    private func contains(recordID: String, accepting: ((CommitInfo) -> String?)?) throws -> Bool {
        guard try indexHolds(recordID) else { return false }
        let trust = recordTrust
        guard trust != nil || accepting != nil else { return true }
        let key = accepting == nil ? recordID : recordID + "\u{1}accepted"
        if trustedRecords.contains(key) { return true }
        guard let head = try pendingHead ?? repository.resolve(localAudit) else { return false }
        var folder: String?
        defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
        for commit in try commitsCarrying(recordID, head: head) {
            // The commits of the id's hash: another id with the same hash is not this one.
            guard let info = try? repository.commitInfo(commit), info.trailer(.id) == recordID else { continue }
            if let accepting, let problem = accepting(info) {
                ignore(recordID, commit, problem)
                continue
            }
            if let trust {
                let signed = try? repository.signature(of: commit)
                if let problem = trust.problem(signed, commit: commit, folder: &folder, trustedKeys: &recordTrustKeys) {
                    ignore(recordID, commit, problem)
                    continue
                }
            }
            trustedRecords.insert(key)
            return true
        }
        return false
    }

    /// The commits on the local audit branch up to `head` that may carry `recordID` (those whose
    /// id has its hash; the caller reads each). The first call walks the branch once and keeps
    /// every id's hash with its commit (a pass asks about hundreds of ids: a walk each was
    /// quadratic; the hashes keep it to about 40 bytes a record); later calls read only the
    /// commits added since.
    private func commitsCarrying(_ recordID: String, head: ObjectID) throws -> [ObjectID] {
        if carriers == nil {
            var found = Carriers(head: head)
            try repository.forEachCommit(from: head, trailer: AuditTrailer.id.rawValue) { commit, id in
                if let id { found.add(id, commit) }
            }
            carriers = found
        } else if let known = carriers?.head, known != head {
            let added = try repository.history(from: head, hiding: known)
            for commit in added {
                if let id = commit.trailer(.id) { carriers?.add(id, commit.id) }
            }
            carriers?.head = head
        }
        return carriers?.commits(of: recordID) ?? []
    }

    /// Every id's commit on the local audit branch up to `head`, by the id's hash: one commit a
    /// hash, and the rare further ones (the same id twice, or two ids of one hash) aside.
    private struct Carriers {
        var head: ObjectID
        var first: [UInt64: ObjectID] = [:]
        var more: [UInt64: [ObjectID]] = [:]

        mutating func add(_ id: String, _ commit: ObjectID) {
            let key = AuditIndex.hash(id.utf8)
            if first[key] == nil { first[key] = commit } else { more[key, default: []].append(commit) }
        }

        func commits(of id: String) -> [ObjectID] {
            let key = AuditIndex.hash(id.utf8)
            return (first[key].map { [$0] } ?? []) + (more[key] ?? [])
        }
    }

    /// Warns, once per commit, that the record `recordID` of `commit` is not taken as recorded.
    private func ignore(_ recordID: String, _ commit: ObjectID, _ problem: String) {
        guard ignoredRecords.insert(commit).inserted else { return }
        Console().warn("the audit record \(recordID) of commit \(commit.short) is not taken as recorded: \(problem)")
    }

    /// Who may write the records `contains(recordID:)` believes: this Bulwark's key, the audit
    /// signers; nil when neither is configured.
    private var recordTrust: RecordTrust? {
        RecordTrust(ownKey: configuration.signer?.publicKeyBlob, auditSigners: configuration.auditSigners, verification: nil)
    }

    /// `recordTrust`'s digest, `none` without one (`DriftEpisodeIndex.trust`); worked out once.
    private var recordTrustDigest: String {
        if let cachedTrustDigest { return cachedTrustDigest }
        let digest = recordTrust?.digest ?? "none"
        cachedTrustDigest = digest
        return digest
    }

    /// Whether the index (its file and the commits after it) holds `recordID`, whoever wrote it.
    private func indexHolds(_ recordID: String) throws -> Bool {
        let head = try pendingHead ?? repository.resolve(localAudit)
        openIndex()
        if indexFile == nil { try rebuildIndex() }
        try catchUp(to: head)
        if indexFile == nil {
            // The file named a commit no longer on the branch: built again, once.
            try rebuildIndex()
            try catchUp(to: head)
        }
        if unindexedIDs.contains(recordID) { return true }
        guard let file = indexFile else { return false }
        do {
            return try file.contains(recordID)
        } catch {
            Console().warn("\(error); rebuilding it from git")
            try rebuildIndex()
            try catchUp(to: head)
            if unindexedIDs.contains(recordID) { return true }
            return try indexFile?.contains(recordID) ?? false
        }
    }

    /// Opens the index file once per process: its header and end only. A missing file is made
    /// at once when the audit branch does not exist yet (it holds nothing); otherwise it is
    /// rebuilt only when a lookup needs it, so a pass that only adds records never walks history.
    private func openIndex() {
        guard !indexOpened else { return }
        indexOpened = true
        if let file = AuditIndex.open(in: configuration.stateDirectory) {
            indexFile = file
            knownHead = file.head
            indexStatistics.loadedFromFile = true
            return
        }
        let path = configuration.stateDirectory + "/" + AuditIndex.fileName
        if !FileManager.default.fileExists(atPath: path), (try? repository.resolve(localAudit)) == .some(nil) {
            indexFile = try? AuditIndex.create(in: configuration.stateDirectory, head: nil, ids: [])
            knownHead = nil
        }
    }

    /// Brings `unindexed` up to `head`: the commits since `knownHead` are read from git (only
    /// those). When `knownHead` is no longer in the branch's history (a rewritten branch, a
    /// clone made again), the file's own head is tried; when that is gone too, the file is
    /// dropped (`indexFile` nil) and the caller rebuilds it.
    private func catchUp(to head: ObjectID?) throws {
        guard let file = indexFile, knownHead != head else { return }
        func descends(from base: ObjectID?) -> Bool {
            guard let base else { return true }
            guard let head else { return false }
            return (try? repository.contains(base)) == true && (try? repository.isAncestor(base, of: head)) == true
        }
        if !descends(from: knownHead) {
            unindexed = []
            unindexedIDs = []
            trustedRecords = []
            carriers = nil
            knownHead = file.head
            guard descends(from: file.head) else {
                indexFile = nil
                try? FileManager.default.removeItem(atPath: file.path)
                return
            }
        }
        guard let head else { return }
        let added = try repository.history(from: head, hiding: knownHead)
        indexStatistics.commitsRead += added.count
        for commit in added.reversed() {
            let id = commit.trailer(.id)
            unindexed.append((commit.id, id))
            if let id { unindexedIDs.insert(id) }
        }
        knownHead = head
    }

    /// Writes the index again from a walk of the whole branch, as of the branch's head on disk
    /// (commits still in memory are caught up like any others).
    private func rebuildIndex() throws {
        let head = try repository.resolve(localAudit)
        indexStatistics.rebuilds += 1
        var ids: [String] = []
        if let head {
            try repository.forEachCommit(from: head, trailer: AuditTrailer.id.rawValue) { _, id in
                indexStatistics.commitsRead += 1
                if let id { ids.append(id) }
            }
        }
        indexFile = try AuditIndex.create(in: configuration.stateDirectory, head: head, ids: ids)
        indexOpened = true
        knownHead = head
        unindexed = []
        unindexedIDs = []
        trustedRecords = []
        carriers = nil
    }

    /// Appends to the index file the ids of the commits up to the audit branch's head on disk
    /// (never a commit only in memory). A failure only costs the next process a few commits
    /// read from git, so it is a warning.
    package func saveIndex() {
        saveIndex(withRecentFixes: configuration.recentFixesAtEveryPass || recentFixesDue)
    }

    /// Writes the index of recent fixes to its file now if it holds more than the file does
    /// (the daemon, as it stops).
    package func saveRecentFixesNow() {
        saveRecentFixes(writeFile: true)
    }

    /// Whether `recentFixesInterval` has passed since the file of recent fixes was last written.
    private var recentFixesDue: Bool {
        recentFixesSaved.map { $0.duration(to: .now) >= Self.recentFixesInterval } ?? true
    }

    /// How often a pass's flushes rewrite the index of recent fixes: it is written whole, so a
    /// 1,000-root pass that wrote it at each of its 47 flushes spent 15 % of its time there, and
    /// a daemon flushing every few fixes 5 %. The rest is written at the end of the pass
    /// (`endBuffering`); a process killed before that only leaves those fixes to be read from git.
    static let recentFixesInterval: Duration = .seconds(10)

    private func saveIndex(withRecentFixes: Bool) {
        saveRecentFixes(writeFile: withRecentFixes)
        saveDriftEpisodes(writeFile: withRecentFixes)
        guard let file = indexFile, !unindexed.isEmpty, let durable = try? repository.resolve(localAudit),
              let last = unindexed.lastIndex(where: { $0.commit == durable }) else { return }
        do {
            try file.append(unindexed[...last].compactMap(\.id), head: durable)
            unindexed.removeFirst(last + 1)
            unindexedIDs = Set(unindexed.compactMap(\.id))
        } catch {
            Console().warn("cannot append to the audit index (the next run reads those commits from git): \(error)")
        }
    }

    /// Commits `record` on the local audit branch. Throws `Failure.notRecorded`, naming the
    /// state directory and the cause, when it cannot: then nothing was recorded.
    package func write(_ record: AuditRecord) throws -> String {
        if let bufferFailure { throw bufferFailure }
        try checkWritable()
        do {
            return try writeOnce(record)
        } catch let error as GitError where error.isLocked {
            // A lock left by a killed process is removed once; a lock still held is an error.
            let removed = Self.removeStaleLocks(in: repository.path, before: lockedAt)
            repairs += removed
            guard !removed.isEmpty else { throw notRecorded(record, error) }
            do { return try writeOnce(record) } catch { throw notRecorded(record, error) }
        } catch {
            throw notRecorded(record, error)
        }
    }

    /// The sequence number of this instance's last record, before the record that follows
    /// `parent`: known in this process; else the state's (`AuditTrail.sequence`), raised past the
    /// records committed after it was saved; else, in a trail file from before it was kept, read
    /// from the branch. The branch takes in whatever the origin holds, and every record names its
    /// instance: with a signing key, only commits it signed count there.
    private func lastNumber(before parent: ObjectID?) throws -> UInt64 {
        if let sequence { return sequence }
        let number: UInt64
        if let saved = trail.sequence {
            let (found, read) = try AuditTrail.lastSequence(saved: saved, of: trail.instance, in: repository, head: parent,
                                                            untrusted: notOwnRecord)
            sequenceCommitsRead += read
            number = found
            sequenceSource = found == saved ? "\(AuditTrail.fileName) in \(configuration.stateDirectory)"
                : "this Bulwark's records on the branch"
        } else {
            let (found, commit, read) = try AuditTrail.lastSequence(of: trail.instance, in: repository, head: parent,
                                                                    untrusted: notOwnRecord)
            sequenceCommitsRead += read
            number = found
            sequenceSource = commit.map { "audit commit \($0.short)" } ?? "none on the branch"
        }
        sequence = number
        return number
    }

    /// Why `commit` is not a record of this instance's own key, or nil when it is, or when there
    /// is no key to tell (no `--signing-key`).
    private func notOwnRecord(_ commit: CommitInfo) -> String? {
        guard let key = configuration.signer?.publicKeyBlob, let trust = RecordTrust(ownKey: key, verification: nil) else { return nil }
        var folder: String?
        var keys: [[UInt8]: String] = [:]
        defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
        return trust.problem(try? repository.signature(of: commit.id), commit: commit.id, folder: &folder, trustedKeys: &keys)
    }

    /// Keeps `number`, the last record's now on disk, in the trail file. Failing to only costs the
    /// next process a look at the branch's newest commits (`AuditTrail.lastSequence(saved:)`): a warning.
    private func rememberSequence(_ number: UInt64) {
        guard trail.sequence != number else { return }
        trail.sequence = number
        do { try trail.save(stateDirectory: configuration.stateDirectory) } catch {
            Console().warn("cannot remember the last audit record's sequence number (\(error)); the next run reads it from "
                           + "this Bulwark's newest records")
        }
    }

    /// Throws when the next `records` audit records cannot be numbered: called before a pass
    /// changes anything, so that no fix is made whose record could not be written.
    package func prepareToWrite(records: Int) async throws {
        if let bufferFailure { throw bufferFailure }
        try checkWritable()
        let parent = try pendingHead ?? repository.resolve(localAudit)
        _ = try AuditTrail.number(after: lastNumber(before: parent), reserving: records, source: sequenceSource)
    }

    private func writeOnce(_ record: AuditRecord) throws -> String {
        let parent = try pendingHead ?? repository.resolve(localAudit)
        // Up to the parent first (nothing to read when this process wrote it), so that the new
        // commit follows the known ones.
        openIndex()
        try catchUp(to: parent)
        var author = configuration.author
        author.time = Date()
        let number = try AuditTrail.number(after: lastNumber(before: parent), source: sequenceSource)
        if trail.committed != true {
            // Saved before the first commit: a trail that says false has none (see `AuditTrail.committed`).
            trail.committed = true
            try trail.save(stateDirectory: configuration.stateDirectory)
        }
        let commit = try repository.writeCommit(adding: [record.path: record.json()], parent: parent,
                                                message: record.commitMessage + AuditTrail.trailers(instance: trail.instance, sequence: number)
                                                    + (configuration.extraTrailers?(record) ?? ""),
                                                author: author, signer: configuration.signer)
        if buffering {
            // In memory: the branch moves in `flush`, once the objects are on disk.
            pendingHead = commit
        } else {
            try repository.updateReference(localAudit, to: commit, expected: parent, message: "bulwark: audit \(record.id)")
            rememberSequence(number)
        }
        sequence = number
        sequenceSource = "this process's last record"
        fixPending.append((commit, parent, RecentFixIndex.Entry(record, commit: commit, committed: author.time)))
        episodePending.append((commit, parent, EpisodeRecord(id: record.id, target: record.target, resource: record.resource,
                                                              decision: record.decision, result: record.result,
                                                              isRevert: record.reverts != nil,
                                                              closes: RemediationReport.Entry.foundAsDesired(record))))
        if indexFile != nil, knownHead == parent {
            unindexed.append((commit, record.id))
            unindexedIDs.insert(record.id)
            knownHead = commit
        }
        return commit.hex
    }

    // MARK: - Buffered records (one pack per pass)

    // These three are `async`, as `AuditSink` declares them: a synchronous one, called on the
    // actor from async code, lost to the protocol extension's async default, which does nothing.

    /// From now on audit commits are written in memory (`Repository.beginObjectBuffer`) and the branch does
    /// not move until `flush` wrote them to disk as one pack: a pass of thousands of records
    /// writes one pack file instead of about nine loose object files per record. The intent
    /// journal keeps every fix that is made before its record is durable (Reconciler.apply
    /// closes intents only after the flush).
    package func beginBuffering() async -> Bool {
        if buffering { return true }
        do {
            try repository.beginObjectBuffer()
        } catch {
            return false
        }
        buffering = true
        bufferFailure = nil
        return true
    }

    /// Writes the buffered audit commits to disk as one pack (indexed before this returns),
    /// then moves the branch to the newest of them by compare-and-swap: no reference ever
    /// points at objects that are not on disk. Buffering goes on.
    package func flush() async throws {
        try flushBuffer()
    }

    private func flushBuffer() throws {
        if let bufferFailure { throw bufferFailure }
        guard buffering else { return }
        guard let head = pendingHead else { return }
        do {
            let base = try repository.resolve(localAudit)
            try repository.flushObjectBuffer(tip: head, base: base)
            try moveAuditBranch(to: head, from: base)
            pendingHead = nil
            if let sequence { rememberSequence(sequence) }
        } catch {
            // The records in memory are lost; their fixes are still open intents.
            repository.discardObjectBuffer()
            pendingHead = nil
            // Their numbers too: the next record follows the newest on disk, so that the lost
            // ones leave no gap that `verify-audit` would read as records removed from the branch.
            sequence = nil
            // What was caught up beyond the branch's head on disk is gone with the buffer.
            unindexed = []
            unindexedIDs = []
            trustedRecords = []
            carriers = nil
            knownHead = indexFile?.head
            fixPending = []
            let failure = notRecorded(id: "the buffered audit records", error)
            bufferFailure = failure
            throw failure
        }
        saveIndex(withRecentFixes: recentFixesDue)
        // This pass's packs stay as they are until pushed (see `Repository.consolidatePacks`).
        consolidatePacks(sparingUnpushed: true)
        // Written straight to disk from here on when memory cannot be used again.
        do { try repository.beginObjectBuffer() } catch { buffering = false }
    }

    /// Moves the local audit branch from `base` to `head` (compare-and-swap); a lock left by a
    /// killed process is removed once, a lock still held is an error.
    private func moveAuditBranch(to head: ObjectID, from base: ObjectID?) throws {
        let failure: GitError
        do {
            try repository.updateReference(localAudit, to: head, expected: base, message: "bulwark: audit records")
            return
        } catch {
            failure = error
        }
        guard failure.isLocked else { throw failure }
        let removed = Self.removeStaleLocks(in: repository.path, before: lockedAt)
        repairs += removed
        guard !removed.isEmpty else { throw failure }
        try repository.updateReference(localAudit, to: head, expected: base, message: "bulwark: audit records")
    }

    /// `flush`, then audit commits are written straight to disk again.
    package func endBuffering() async throws {
        try endBufferingNow()
    }

    private func endBufferingNow() throws {
        defer {
            repository.discardObjectBuffer()
            buffering = false
            pendingHead = nil
            saveIndex()
        }
        try flushBuffer()
    }

    private func notRecorded(_ record: AuditRecord, _ error: any Error) -> Failure {
        notRecorded(id: record.id, error)
    }

    private func notRecorded(id: String, _ error: any Error) -> Failure {
        let directory = configuration.stateDirectory
        let message = (error as? GitError)?.message ?? "\(error)"
        var space = statvfs()
        let full = message.contains(String(cString: strerror(ENOSPC))) || message.contains(String(cString: strerror(EDQUOT)))
            || (statvfs(directory, &space) == 0 && (space.f_bavail == 0 || space.f_favail == 0))
        if full { return .notRecorded(record: id, stateDirectory: directory, cause: .full) }
        if let git = error as? GitError, git.isLocked {
            return .notRecorded(record: id, stateDirectory: directory, cause: .locked(Self.lockFile(in: message) ?? message))
        }
        return .notRecorded(record: id, stateDirectory: directory, cause: .failed(message))
    }

    /// The lock file a libgit2 message names ('…/refs/heads/x.lock'), if any.
    private static func lockFile(in message: String) -> String? {
        message.split(separator: "'").first { $0.hasSuffix(".lock") }.map(String.init)
    }

    /// Removes git lock files (`*.lock`) under `repository` last modified before `date`, which
    /// only a process that died mid-update leaves there, libgit2's temporary pack files
    /// (`objects/pack/pack_git2_*`, renamed once a fetch's pack is indexed), which a process
    /// killed mid-fetch leaves, and Bulwark's own (`tmp_pack_bulwark_*`, renamed once a flush of
    /// records or a replay is written), which a process killed mid-write leaves: under the state
    /// directory's lock no other process writes the clone. Returns what was done, in words.
    package static func removeStaleLocks(in repository: String, before date: Date) -> [String] {
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: repository) else { return [] }
        var removed: [String] = []
        while let relative = walker.nextObject() as? String {
            let temporaryPack = relative.hasPrefix("objects/pack/pack_git2_")
                || relative.hasPrefix("objects/pack/" + Repository.ownTemporaryPackPrefix)
            guard temporaryPack || (relative.hasSuffix(".lock") && !relative.hasPrefix("objects/")) else { continue }
            let path = repository + "/" + relative
            guard let attributes = try? fm.attributesOfItem(atPath: path),
                  attributes[.type] as? FileAttributeType == .typeRegular,
                  let modified = attributes[.modificationDate] as? Date, modified < date else { continue }
            do {
                try fm.removeItem(atPath: path)
                let message = temporaryPack
                    ? "removed the temporary pack file \(path) (left by a process killed while fetching or writing; modified \(Timestamp.format(modified)))"
                    : "removed the stale lock file \(path) (left by a process killed while updating it; modified \(Timestamp.format(modified)))"
                Console().warn(message)
                removed.append(message)
            } catch {
                Console().warn("cannot remove the stale lock file \(path): \(error); remove it by hand")
            }
        }
        return removed
    }

    /// Pushes the audit branch as a compare-and-swap on the remote's audit branch: it moves
    /// only from where Bulwark last fetched it, never forced, so nothing another writer pushed
    /// is lost. When another writer got there first, Bulwark fetches, replays only its own
    /// unpushed commits on top (audit paths are unique, so this always succeeds) and tries
    /// again after a jittered, doubling pause, for as long as `deadline` allows; after it the
    /// commits stay on the local audit branch and go out with the next push.
    ///
    /// After a lost race the records go a prefix at a time (`Outgoing`): half as many after each
    /// lost race, twice as many after each push taken, each prefix replayed onto the origin's head
    /// just before its push, and no more than `replayBudget` allows. Replaying and pushing them all at every attempt, a pass of 200 records
    /// never got out against a writer that moved the branch every 100 ms. The origin's history
    /// stays a line of whole records, in the order they were written; once done (or given up),
    /// the local branch goes on top of where the origin is, holding exactly what was not pushed.
    ///
    /// `stop` (an operator's Ctrl-C to `apply`) ends the retries: once it says so, no other
    /// attempt is made (the first one always is) and the commits stay for the next push.
    package func publish(deadline: Duration = .seconds(30), stop: (@Sendable () -> Bool)? = nil) async throws -> Publication {
        // Anything still in memory goes to disk first: only what is on the branch is pushed.
        if buffering { try endBufferingNow() }
        // The end of a pass: the commits written in it go into the index's file.
        defer { saveIndex() }
        // What pushes killed part-way left in a local origin, once too old to be a push in progress.
        if let origin = Repository.localOriginPath(configuration.url) {
            for message in Repository.removePackLeftovers(in: origin) { Console().warn(message) }
        }
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: deadline)
        var pause = 0.02
        var rejections = 0
        var locked = 0
        pushAttempts = 0
        // The records going a prefix at a time, how many the next prefix holds, how many went.
        var outgoing: Outgoing?
        var batch = Int.max
        var pushed = 0
        // The records not pushed, once the local branch is on top of the origin's again; while a
        // pass writes in memory, the branch is left as it is (see `keep`).
        func kept(settling: Bool = true) throws -> Int {
            if settling { try settle(outgoing) } else if let outgoing { return outgoing.commits.count }
            outgoing = nil
            guard let local = try repository.resolve(localAudit) else { return 0 }
            return try repository.commitCount(from: local, hiding: repository.resolve("refs/remotes/origin/\(pushBranch)"))
        }
        while true {
            // The audit branch, or the recovery branch while the audit branch cannot be trusted.
            let target = pushBranch
            guard let local = try repository.resolve(localAudit) else { return pushed > 0 ? .pushed(commits: pushed) : .upToDate }
            let remote = try repository.resolve("refs/remotes/origin/\(target)")
            if var plan = outgoing {
                // Written meanwhile, or all sent: the branch goes on top of the origin's, and what
                // is left goes whole (a prefix again after the next lost race).
                guard plan.local == local, let remote, !plan.commits.isEmpty else {
                    try settle(plan)
                    outgoing = nil
                    continue
                }
                // Fetched meanwhile: a record the origin took (a push whose answer was lost) is not sent again.
                if remote != plan.base {
                    plan.commits = try withoutRecords(on: remote, since: plan.base, plan.commits)
                    plan.base = remote
                }
                outgoing = plan
                if plan.commits.isEmpty { continue }
            } else if let remote, local != remote, trailIsOurs, try !repository.isAncestor(remote, of: local),
                      let plan = try outgoingRecords(local: local, remote: remote) {
                // Not on top of the origin's head (a push given up part-way, or a pass written meanwhile):
                // replayed a prefix at a time from the first attempt, not pushed whole to be refused.
                outgoing = plan
                continue
            }
            if outgoing == nil, local == remote { return pushed > 0 ? .pushed(commits: pushed) : .upToDate }
            let tip: ObjectID
            let count: Int
            let pending: Int
            var replayed = false
            if let plan = outgoing {
                pending = plan.commits.count
                (tip, count, replayed) = try replay(plan.commits.prefix(batch), onto: plan.base, for: Self.replayBudget)
            } else {
                pending = try repository.commitCount(from: local, hiding: remote)
                (tip, count) = (local, pending)
            }
            let rejection: PushRejection?
            pushAttempts += 1
            do {
                rejection = tip == local
                    ? try repository.push(localAudit, to: "refs/heads/\(target)", expected: remote, remote: "origin",
                                          access: configuration.access)
                    : try repository.push(commit: tip, to: "refs/heads/\(target)", expected: remote, remote: "origin",
                                          access: configuration.access)
            } catch {
                return .keptLocally(commits: try kept(), reason: originFailure(error), pushed: pushed)
            }
            // A push retried against a busy origin replays at each attempt: a pack each.
            if replayed { consolidatePacks(sparingUnpushed: true) }
            guard let rejection else {
                try repository.forceReference("refs/remotes/origin/\(target)", to: tip, message: "bulwark: pushed")
                pushed += count
                guard var plan = outgoing else {
                    try rememberPushed(local)
                    return .pushed(commits: pushed)
                }
                // The rest goes at once, twice as many, with no pause: the origin took the last.
                plan.commits.removeFirst(count)
                plan.base = tip
                plan.pushedTip = tip
                outgoing = plan
                batch = count > Int.max / 2 ? Int.max : count * 2
                pause = 0.02
                continue
            }
            rejections += 1
            if rejection.locked { locked += 1 }
            // Half as many next time: the fewer records, the sooner their replay is pushed.
            batch = max(1, count / 2)
            if stop?() == true { return try Self.stopped(kept(), pushed: pushed, after: rejections, last: rejection) }
            guard clock.now < end, !Task.isCancelled else {
                let left = try kept()
                let sent = pushed > 0 ? "\(pushed) record\(pushed == 1 ? " was" : "s were") pushed; the other \(left) " : "the records "
                // Locked at every attempt: no other writer moved the branch, its lock stayed.
                if locked == rejections {
                    return .keptLocally(commits: left, reason: "the origin's \(target) stayed locked for \(deadline) (\(rejections) "
                                        + "attempts, last: \(rejection.reason)): a git process or another Bulwark is moving it, or "
                                        + "one killed while it moved it left the lock, which is named once it is a minute old; "
                                        + sent + "stay queued locally", pushed: pushed)
                }
                return .keptLocally(commits: left, reason: "another writer kept moving the audit branch (\(rejections) "
                                    + "attempts in \(deadline), last: \(rejection.reason)); " + sent + "stay queued locally",
                                    pushed: pushed)
            }
            // Full jitter: two writers that collided do not collide again in lockstep.
            // (The actor is free meanwhile; every step below starts again from the references.)
            // In slices, so that a stop is seen at once and no other attempt is made after it.
            let wake = clock.now.advanced(by: .seconds(Double.random(in: 0...pause)))
            while clock.now < wake, stop?() != true { try? await Task.sleep(for: min(.milliseconds(50), wake - clock.now)) }
            if stop?() == true { return try Self.stopped(kept(), pushed: pushed, after: rejections, last: rejection) }
            pause = min(pause * 2, 1)
            // A pass began meanwhile and writes its records in memory: replaying onto the
            // origin now would build on commits only memory holds and move the branch on disk
            // to them. What waits goes out with the pass's own push (the records the origin
            // took already are left out of it then, by their ids).
            if buffering {
                return .keptLocally(commits: try kept(settling: false), reason: "a pass began writing records while the push waited; "
                                    + "they go out together with its push", pushed: pushed)
            }
            do {
                try repository.fetch(remote: "origin", refspecs: ["+refs/heads/\(target):refs/remotes/origin/\(target)"],
                                     access: configuration.access)
            } catch {
                return .keptLocally(commits: try kept(), reason: originFailure(error), pushed: pushed)
            }
            let tampering = try checkTrail()
            guard tampering == nil, pushBranch == target, let fetched = try repository.resolve("refs/remotes/origin/\(target)") else {
                // The origin's branch lost what was pushed: the branch goes on top of what the
                // origin has (a recovery branch), as before a push a prefix at a time.
                if var plan = outgoing, let fetched = try repository.resolve("refs/remotes/origin/\(target)") {
                    plan.fetched = fetched
                    outgoing = plan
                }
                try settle(outgoing)
                outgoing = nil
                try followOrigin()
                if let tampering, try !contains(recordID: tampering.id) { _ = try write(tampering) }
                continue
            }
            if var plan = outgoing {
                plan.fetched = fetched
                outgoing = plan
            } else if let current = try repository.resolve(localAudit), trailIsOurs, try !repository.isAncestor(current, of: fetched),
                      let plan = try outgoingRecords(local: current, remote: fetched) {
                outgoing = plan
            } else {
                try followOrigin()
            }
        }
    }

    /// The records of a push that goes a prefix at a time (see `publish`): this instance's
    /// commits the local branch (at `local`) holds over the origin's, oldest first, less those
    /// pushed since; `base`, the origin's head they go onto next; `fetched`, the newest origin
    /// commit fetched (what the branch takes in, see `AuditTrail.followed`); `pushedTip`, the
    /// last prefix the origin took. The local branch is left at `local` until `settle`.
    private struct Outgoing {
        var commits: [CommitInfo]
        let local: ObjectID
        var base: ObjectID
        var fetched: ObjectID
        var pushedTip: ObjectID?
    }

    /// What a push a prefix at a time sends from `local` onto the fetched `remote`; nil when
    /// nothing needs replaying (`followOrigin` moves the branch).
    private func outgoingRecords(local: ObjectID, remote: ObjectID) throws -> Outgoing? {
        guard let own = try ownUnpushed(local: local, remote: remote) else { return nil }
        return Outgoing(commits: own, local: local, base: remote, fetched: remote)
    }

    /// How long the replay of a prefix may take before its push (at least one record is
    /// replayed): the origin's head must not move between the fetch and the push, and a debug
    /// build on loaded cores replayed about 100 records a second on a 5,000-record branch.
    static let replayBudget: Duration = .milliseconds(50)

    /// The first of `commits` written onto `base` in order, as many as `budget` allows (at least
    /// one), in memory, then on disk as one pack, synced once (the push copies that pack as it
    /// is); a commit whose parent is the head so far is taken as it is. Returns the last, how
    /// many, and whether any was replayed.
    private func replay(_ commits: ArraySlice<CommitInfo>, onto base: ObjectID, for budget: Duration)
        throws -> (tip: ObjectID, count: Int, replayed: Bool) {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: budget)
        var head = base
        var count = 0
        var buffered = false
        do {
            for commit in commits {
                if count > 0, clock.now > end { break }
                count += 1
                if commit.parents == [head] {
                    head = commit.id
                    continue
                }
                if !buffered, !repository.isBufferingObjects { buffered = (try? repository.beginObjectBuffer()) != nil }
                head = try repository.replay(commit.id, onto: head, signer: configuration.signer)
            }
            if buffered { _ = try repository.flushObjectBuffer(tip: head, base: base) }
        } catch {
            if buffered { repository.discardObjectBuffer() }
            throw error
        }
        return (head, count, buffered)
    }

    /// Ends a push a prefix at a time: the local branch goes on top of where the origin is as
    /// last pushed or fetched, holding exactly what was not pushed (`followOrigin` leaves out the
    /// records the origin holds), and the last prefix pushed is kept as the trail's once the
    /// branch holds it.
    private func settle(_ plan: Outgoing?) throws {
        guard let plan else { return }
        if trailIsOurs, try repository.resolve(localAudit) == plan.local,
           try repository.resolve("refs/remotes/origin/\(pushBranch)") == plan.base {
            // As the push left them: what is left of the records goes on top of the last prefix
            // pushed (or the last head fetched), with no search for the records already there
            // (on a 20,000-record branch, 1,000 records given up took 17 s past the deadline).
            try noteForeignCommits(from: plan.base, hiding: plan.local)
            let (head, _, replayed) = try replay(plan.commits[...], onto: plan.base, for: .seconds(86_400))
            if replayed { consolidatePacks(sparingUnpushed: true) }
            try repository.updateReference(localAudit, to: head, expected: plan.local, message: "bulwark: replay onto origin")
            try rememberFollowed(plan.fetched)
        } else {
            try followOrigin(taken: plan.fetched)
        }
        if let pushed = plan.pushedTip, let local = try repository.resolve(localAudit),
           try pushed == local || repository.isAncestor(pushed, of: local) {
            try rememberPushed(pushed)
        }
    }

    /// A push whose retries `publish`'s `stop` ended.
    private static func stopped(_ pending: Int, pushed: Int, after rejections: Int, last: PushRejection) -> Publication {
        .keptLocally(commits: pending, reason: "interrupted: the push was stopped after \(rejections) attempt\(rejections == 1 ? "" : "s") "
                     + "(last: \(last.reason)), no other was made", pushed: pushed)
    }

    /// Brings the local audit branch up to the fetched one, keeping local commits that were
    /// never pushed by replaying them on top.
    private func reconcileAuditBranch() throws {
        let tampering = try checkTrail()
        try followOrigin()
        if let tampering, try !contains(recordID: tampering.id) { _ = try write(tampering) }
    }

    /// Moves the local audit branch onto the fetched origin's: a fast-forward, or this
    /// instance's unpushed records replayed on top. `taken`: the newest origin commit the branch
    /// takes in, when the origin's branch as known here ends in this instance's own pushes.
    private func followOrigin(taken: ObjectID? = nil) throws {
        guard let remote = try repository.resolve("refs/remotes/origin/\(pushBranch)") else { return }
        try noteForeignCommits(from: remote, hiding: repository.resolve(localAudit))
        guard let local = try repository.resolve(localAudit) else {
            try repository.updateReference(localAudit, to: remote, expected: nil, message: "bulwark: track audit branch")
            try rememberFollowed(taken ?? remote)
            return
        }
        if try repository.isAncestor(local, of: remote) {
            if local != remote {
                try repository.updateReference(localAudit, to: remote, expected: local, message: "bulwark: fast-forward")
                try rememberFollowed(taken ?? remote)
            }
            return
        }
        // A branch this state directory only reads (not the one it keeps): nothing on it is this
        // directory's own, so it is the origin's as it is, never replayed or signed here.
        guard trailIsOurs else {
            try repository.updateReference(localAudit, to: remote, expected: local, message: "bulwark: follow a branch read only")
            return
        }
        guard let own = try ownUnpushed(local: local, remote: remote) else { return }
        // In memory, then on disk as one pack, synced once (the push copies that pack as it is):
        // written as loose objects, a replay of a pass's records took seconds, and another
        // writer moved the origin's branch again meanwhile.
        let buffered = !repository.isBufferingObjects && (try? repository.beginObjectBuffer()) != nil
        var head = remote
        do {
            for commit in own {
                head = try repository.replay(commit.id, onto: head, signer: configuration.signer)
            }
            if buffered {
                _ = try repository.flushObjectBuffer(tip: head, base: remote)
                // A push retried against a busy origin replays at each attempt: a pack each.
                consolidatePacks(sparingUnpushed: true)
            }
        } catch {
            if buffered { repository.discardObjectBuffer() }
            throw error
        }
        try repository.updateReference(localAudit, to: head, expected: local, message: "bulwark: replay onto origin")
        try rememberFollowed(taken ?? remote)
    }

    /// This instance's commits the local branch (`local`) holds over the origin's (`remote`),
    /// oldest first, to replay onto it: nil when the branch is already on top of it with only
    /// those. Left out: a commit that is not this instance's (warned about, once), and a record
    /// the origin already holds (`withoutRecords`).
    private func ownUnpushed(local: ObjectID, remote: ObjectID) throws -> [CommitInfo]? {
        // Only this instance's own records are carried over. A commit someone else put on the
        // branch (fetched here, then taken off the origin: a forged record an administrator
        // removed) was pushed back, or replayed and signed with Bulwark's key, which made it
        // pass `verify-audit`. A trailer can be forged, so what came from the origin is known
        // by where it is: every commit the last origin commit taken in reaches.
        let unpushed = try repository.history(from: local, hiding: remote).reversed()
        var fetched = Set<ObjectID>()
        if let followed = trail.followed.flatMap({ ObjectID(hex: $0) }), has(followed) {
            fetched = Set(try repository.history(from: followed, hiding: remote).map(\.id))
        }
        func isOwn(_ commit: CommitInfo) -> Bool {
            commit.trailer(AuditTrail.instanceTrailer) == trail.instance && !fetched.contains(commit.id)
        }
        let own = unpushed.filter(isOwn)
        if own.count == unpushed.count, try repository.isAncestor(remote, of: local) { return nil }
        for commit in unpushed where !isOwn(commit) && warnedNotOwn.insert(commit.id).inserted {
            Console().warn("audit commit \(commit.id.short) is not this instance's and is no longer on the origin's "
                           + "\(pushBranch); it is not pushed again")
        }
        return try withoutRecords(on: remote, since: local, own)
    }

    /// `commits` without the records the origin's branch (at `remote`) already holds: one whose
    /// `Bulwark-Id` a commit of `remote` that `since` does not reach carries, with the record's
    /// files in `remote`'s tree as the commit wrote them (a push whose answer was lost, prefixes
    /// pushed before the process was killed). Replayed, each was a second commit of the record
    /// (changing nothing). A commit that carries the id with other content (not the record)
    /// does not stand for it: the record still goes.
    private func withoutRecords(on remote: ObjectID, since base: ObjectID, _ commits: [CommitInfo]) throws -> [CommitInfo] {
        let key = AuditTrailer.id.rawValue
        guard !commits.isEmpty, remote != base else { return commits }
        var onOrigin = Set<String>()
        for commit in try repository.history(from: remote, hiding: base, sorted: false) {
            if let id = commit.trailer(key) { onOrigin.insert(id) }
        }
        guard !onOrigin.isEmpty else { return commits }
        return try commits.filter { commit in
            guard let id = commit.trailer(key), onOrigin.contains(id) else { return true }
            return try !repository.holdsChanges(of: commit.id, at: remote)
        }
    }

    /// Warns, once for each run of them, about the commits the local audit branch is about to take
    /// in from the origin (`remote`, hiding `local`) that Bulwark did not write: no `Bulwark-Id`
    /// (a person's commit, another tool's), or a merge (Bulwark only appends). Records go on top of
    /// them all the same: refusing would stop every fix until someone rewrote the branch, and the
    /// branch itself keeps them for `verify-audit`, which lists every one. Only the newest
    /// `limit` taken in are read (a new state directory takes in the whole branch).
    private func noteForeignCommits(from remote: ObjectID, hiding local: ObjectID?, limit: Int = 2000) throws {
        guard trailIsOurs, remote != local else { return }
        var runs: [[CommitInfo]] = []
        var run: [CommitInfo] = []
        for commit in try repository.history(from: remote, hiding: local, limit: limit, sorted: false) {
            if commit.trailer(AuditTrailer.id.rawValue) == nil || commit.parents.count > 1 {
                run.append(commit)
            } else if !run.isEmpty {
                runs.append(run)
                run = []
            }
        }
        if !run.isEmpty { runs.append(run) }
        for run in runs {
            // Newest first, as the walk gave them.
            guard let newest = run.first, let oldest = run.last else { continue }
            let span = run.count == 1 ? "commit \(newest.id.short)" : "\(run.count) commits \(oldest.id.short)..\(newest.id.short)"
            let text = "the audit branch \(pushBranch) holds \(span) that Bulwark did not write (no Bulwark-Id trailer, or a merge; "
                + "newest \"\(quotedForMessage(newest.summary))\" by \(quotedForMessage(newest.author.name)) "
                + "<\(quotedForMessage(newest.author.email))>); Bulwark's records go on top of \(run.count == 1 ? "it" : "them"): "
                + "check the branch with `bulwark verify-audit`"
            foreignCommits.append(text)
            Console().warn(text)
        }
    }

    /// Records go only to the audit branch the state directory keeps: this instance's numbers on
    /// another branch (an agent's ref written with a central state directory, or the reverse)
    /// would read as records removed from both. Reading another branch is fine.
    private func checkWritable() throws {
        guard !trailIsOurs, let bound = trail.auditBranch else { return }
        throw Failure.otherAuditBranch(configuration.stateDirectory, bound, configuration.auditBranch)
    }

    /// Keeps `commit` as the newest origin commit the local branch took in (`AuditTrail.followed`),
    /// when the trail is this branch's (a read of another branch must not move it: what the
    /// branch took in is never pushed back as this instance's).
    private func rememberFollowed(_ commit: ObjectID) throws {
        guard trailIsOurs, trail.followed != commit.hex else { return }
        trail.followed = commit.hex
        try trail.save(stateDirectory: configuration.stateDirectory)
    }

    /// Audit commits, newest first (the local branch: what was pushed and what waits to be),
    /// merged by time with the fetched refs of every other writer of the fleet (agents' and
    /// replicas' refs, see `AuditRef`), so that readers see one history.
    package func auditHistory(limit: Int = .max) throws -> [CommitInfo] {
        var heads: [ObjectID] = []
        if let head = try repository.resolve(localAudit) { heads.append(head) }
        let own = "refs/remotes/origin/\(configuration.auditBranch)"
        for glob in AuditRef.otherWriterGlobs {
            heads += try repository.references(matching: glob).filter { $0.name != own }.map(\.target)
        }
        return try MergedHistory.merge(heads: heads, limit: limit) { head, limit in try commits(from: head, limit: limit) }
    }

    /// The audit commits of the local branch that the origin does not hold yet (kept locally:
    /// the origin was unreachable, locked or moved, and the next `apply` or `run` pushes them),
    /// as the last fetch saw the branch they are pushed to.
    package func auditCommitsKeptLocally() throws -> Set<ObjectID> {
        guard let local = try repository.resolve(localAudit) else { return [] }
        return Set(try commits(from: local, since: try repository.resolve("refs/remotes/origin/\(pushBranch)")).map(\.id))
    }

    /// The report's entries of `commits`, in their order (`bulwark report`, the daemon's MTTR
    /// history). A recovery's `interrupted` record is also read from its file: its changes tell
    /// whether it was found as desired (`RemediationReport.Entry.foundAsDesired`), which its
    /// trailers do not. Such records are few (one per kill, at most), so the reads are too; a
    /// file that cannot be read leaves the record as its trailers say (open).
    package func reportEntries(_ commits: [CommitInfo]) -> [RemediationReport.Entry] {
        commits.compactMap { commit in
            guard var entry = RemediationReport.Entry(commit) else { return nil }
            guard entry.decision == .applied, entry.result == .interrupted, let recorded = commit.recorded,
                  let detected = commit.trailer(.detectedAt),
                  let file = try? repository.auditRecordFile(at: commit.id, id: recorded.id, detectedAt: detected),
                  let record = try? AuditRecord(json: file.bytes), record.id == recorded.id else { return entry }
            entry.foundAsDesired = RemediationReport.Entry.foundAsDesired(record)
            return entry
        }
    }

    /// Whether `commit` is here, carries the record `id`, and is on the audit branch or another
    /// writer's audit ref (`auditHistory`'s heads).
    package func isAuditRecord(_ commit: ObjectID, id: String) throws -> Bool {
        guard (try? repository.contains(commit)) == true, try repository.commitInfo(commit).trailer(.id) == id else { return false }
        var heads: [ObjectID] = []
        if let head = try repository.resolve(localAudit) { heads.append(head) }
        for glob in AuditRef.otherWriterGlobs { heads += try repository.references(matching: glob).map(\.target) }
        return try heads.contains { try $0 == commit || repository.isAncestor(commit, of: $0) }
    }

    /// Verified fixes recorded since `start`, for the flap breaker: this process's audit branch,
    /// and the fetched refs of the other controller replicas (`fetchPeerReplicas`), so that a
    /// replica that takes a target over counts the fixes its previous lease owner made. With
    /// `peers` (signatures configured), a peer's record counts only when a trusted key signed its
    /// commit; the others are left out and reported once each (`takePeerRejections`).
    package func recentFixes(since start: Date, peers: PeerRecordVerification? = nil) throws -> FixHistory {
        var heads: [(ref: String, head: ObjectID)] = []
        if AuditRef.isPerWriter(configuration.auditBranch) {
            let own = "refs/remotes/origin/\(configuration.auditBranch)"
            heads += try repository.references(matching: "refs/remotes/origin/\(AuditRef.replicasFolder)*")
                .filter { $0.name != own }.map { (String($0.name.dropFirst("refs/remotes/origin/".count)), $0.target) }
        }
        var history = FixHistory()
        var seen = Set<String>()
        fixWindow = max(0, Date().timeIntervalSince(start))
        var folder: String?
        defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
        var trustedKeys: [[UInt8]: String] = [:]
        // This process's branch: from the index of recent fixes, and git after it (see `RecentFixIndex`).
        // The branch takes in what the origin holds: a record someone else pushed there counts
        // only when a trusted key signed it (`RecordTrust`), else made-up fixes would make the
        // breaker escalate a drift instead of fixing it.
        let trust = RecordTrust(ownKey: configuration.signer?.publicKeyBlob, auditSigners: configuration.auditSigners,
                                verification: peers?.source)
        let trustDigest = trust?.digest ?? "none"
        if let head = try repository.resolve(localAudit) {
            let entries = try localFixes(from: head, since: start, trust: trustDigest) { commit in
                guard let trust else { return true }
                let signed = try? self.repository.signature(of: commit.id)
                guard let problem = trust.problem(signed, commit: commit.id, folder: &folder, trustedKeys: &trustedKeys) else { return true }
                if self.rejectedPeerRecords.insert(commit.id.hex).inserted {
                    self.peerRejections.append(.init(ref: self.configuration.auditBranch, record: commit.trailer(.id) ?? "-",
                                                     commit: commit.id, reason: signed == nil ? "unsigned" : "untrusted",
                                                     detail: problem))
                }
                return false
            }
            for entry in entries where seen.insert(entry.id).inserted {
                entry.add(to: &history)
            }
        } else {
            noteEmptyBranch(since: start, trust: trustDigest)
        }
        for (ref, head) in heads {
            for commit in try commits(from: head, since: start) {
                guard let recorded = commit.recorded, recorded.isVerifiedFix, !seen.contains(recorded.id),
                      let detected = commit.trailer(.detectedAt),
                      let file = try repository.auditRecordFile(at: commit.id, id: recorded.id, detectedAt: detected),
                      let record = try? AuditRecord(json: file.bytes) else { continue }
                if let trust, trust.auditSigners != nil {
                    // The fleet's Bulwarks are listed: a peer's record counts only when one of
                    // them signed it, never one of the people of the trusted signers file.
                    let signed = try? repository.signature(of: commit.id)
                    if let problem = trust.problem(signed, commit: commit.id, folder: &folder, trustedKeys: &trustedKeys) {
                        if rejectedPeerRecords.insert(commit.id.hex).inserted {
                            peerRejections.append(.init(ref: ref, record: recorded.id, commit: commit.id,
                                                        reason: signed == nil ? "unsigned" : "untrusted", detail: problem))
                        }
                        continue
                    }
                } else if let peers {
                    if folder == nil { folder = try SourceVerification.privateFolder() }
                    if let rejection = peers.check(commit, record: recorded.id, ref: ref, in: repository, folder: folder ?? "",
                                                   trustedKeys: &trustedKeys) {
                        if rejectedPeerRecords.insert(rejection.commit.hex).inserted { peerRejections.append(rejection) }
                        continue
                    }
                }
                seen.insert(recorded.id)
                history.add(record)
            }
        }
        history.forget(before: start)
        return history
    }

    /// A verified record of the change `intent` announced, written by another Bulwark instance
    /// since the intent's drift was detected: on the local audit branch (which takes in what the
    /// origin holds) and, with per-writer branches, on the other replicas' fetched ones. Every
    /// change of the intent must be in it with the same desired value. With a signing key or
    /// audit signers, only a record a trusted key signed counts (anyone can push one that names
    /// the change). Asked only by recovery, for an open intent found made: the walk goes back
    /// to the detection (a second earlier, commit times being whole seconds), never further.
    package func verifiedElsewhere(_ intent: AuditRecord) throws -> (id: String, instance: String)? {
        var heads: [ObjectID] = []
        if let own = try pendingHead ?? repository.resolve(localAudit) { heads.append(own) }
        if AuditRef.isPerWriter(configuration.auditBranch) {
            let own = "refs/remotes/origin/\(configuration.auditBranch)"
            heads += try repository.references(matching: "refs/remotes/origin/\(AuditRef.replicasFolder)*")
                .filter { $0.name != own }.map(\.target)
        }
        let since = intent.detectedAt.addingTimeInterval(-1)
        let wanted = Dictionary(intent.changes.map { ($0.property, $0.desired) }, uniquingKeysWith: { first, _ in first })
        let trust = recordTrust
        var folder: String?
        defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
        for head in heads {
            for commit in try recentCommits(from: head, since: since) {
                guard let recorded = commit.recorded, recorded.isVerifiedFix, recorded.id != intent.id,
                      commit.trailer(.target) == intent.target, commit.trailer(.resource) == intent.resource,
                      let instance = commit.trailer(AuditTrail.instanceTrailer), instance != trail.instance,
                      let at = recorded.verifiedAt ?? recorded.appliedAt, at >= since,
                      let detected = commit.trailer(.detectedAt) else { continue }
                // Trusted first, and read without throwing: anyone who can push can add a commit
                // whose record cannot be read, and that must not stop recovery (every pass).
                if let trust {
                    let signed = try? repository.signature(of: commit.id)
                    if let problem = trust.problem(signed, commit: commit.id, folder: &folder, trustedKeys: &recordTrustKeys) {
                        ignore(recorded.id, commit.id, problem)
                        continue
                    }
                }
                guard let file = try? repository.auditRecordFile(at: commit.id, id: recorded.id, detectedAt: detected),
                      let record = try? AuditRecord(json: file.bytes) else { continue }
                // A sensitive value is in both records only as "[redacted]": it cannot tell the
                // same change from another one, so a record of one matches no intent.
                let made = Dictionary(record.changes.map { ($0.property, $0.desired) }, uniquingKeysWith: { first, _ in first })
                guard !wanted.isEmpty, !wanted.values.contains(where: { $0.contains("[redacted]") }),
                      wanted.allSatisfy({ made[$0.key] == $0.value }) else { continue }
                return (recorded.id, instance)
            }
        }
        return nil
    }

    /// The commits from `head` back whose committer time is `since` or later, newest first, on
    /// the first-parent line: unlike `commits(from:since:)`, an older commit does not end the
    /// walk (a commit pushed with an old date must not hide the ones below it), only a run of
    /// `olderInARow` of them, or `limit` commits read.
    private func recentCommits(from head: ObjectID, since start: Date, olderInARow: Int = 256, limit: Int = 200_000) throws -> [CommitInfo] {
        var result: [CommitInfo] = []
        var older = 0, read = 0
        var next: ObjectID? = head
        while let id = next, older < olderInARow, read < limit {
            let commit = try repository.commitInfo(id)
            read += 1
            if commit.committer.time < start { older += 1 } else {
                older = 0
                result.append(commit)
            }
            next = commit.parents.first
        }
        return result
    }

    /// The verified fixes on the local audit branch committed since `start`, newest first: the
    /// `RecentFixIndex`'s up to the commit it names, git's after it. The walk goes back from
    /// `head` until it meets that commit or `start`, whichever comes first, so a file naming a
    /// commit not on this branch, or covering less than the window, only costs reading the window
    /// from git, after which the file is written again.
    private func localFixes(from head: ObjectID, since start: Date, trust: String,
                            trusted: (CommitInfo) -> Bool) throws -> [RecentFixIndex.Entry] {
        let directory = configuration.stateDirectory
        // A file built under another trust took in records this one would not: built again.
        let file = (fixIndex ?? RecentFixIndex.read(in: directory)).flatMap { $0.trust == trust ? $0 : nil }
        // Commit times are whole seconds: a file covering from the first whole second at or after
        // `start` holds every commit a walk back to `start` reads.
        let first = RecentFixIndex.seconds(start, up: true)
        let usable = file.flatMap { file in first.flatMap { file.since <= $0 ? file : nil } }
        var collected: [RecentFixIndex.Entry] = []
        var met = false
        var next: ObjectID? = head
        while let id = next {
            if id == usable?.head {
                met = true
                break
            }
            let commit = try repository.commitInfo(id)
            fixIndexStatistics.commitsRead += 1
            if commit.committer.time < start { break }
            guard commit.parents.count <= 1 else {
                // Not a line (never written by Bulwark): every commit of the window from git, no file.
                return try commits(from: head, since: start).compactMap {
                    $0.recorded?.isVerifiedFix == true && trusted($0) ? try fixEntry($0) : nil
                }
            }
            if commit.recorded?.isVerifiedFix == true, trusted(commit), let entry = try fixEntry(commit) { collected.append(entry) }
            next = commit.parents.first
        }
        var kept: [RecentFixIndex.Entry] = []
        if met, let usable {
            kept = usable.entries.filter { Date(timeIntervalSince1970: Double($0.committed)) >= start }
            fixIndexStatistics.loadedFromFile = true
        } else {
            fixIndexStatistics.rebuilds += 1
        }
        let dropped = (met ? usable?.entries.count ?? 0 : 0) - kept.count
        if !met || !collected.isEmpty || dropped > 256 || (dropped > 0 && dropped >= kept.count),
           let since = RecentFixIndex.seconds(start, up: true) {
            let index = RecentFixIndex(head: head, since: since, trust: trust, entries: kept + collected.reversed())
            do {
                try index.write(in: directory)
                fixIndex = index
            } catch {
                fixIndex = nil
                Console().warn("cannot write the index of recent fixes (the next run reads them from git): \(error)")
            }
        } else {
            fixIndex = usable
        }
        return collected + kept.reversed()
    }

    /// No audit branch yet: an index that says so, for this process's first records to be added to.
    private func noteEmptyBranch(since start: Date, trust: String) {
        let file = (fixIndex ?? RecentFixIndex.read(in: configuration.stateDirectory)).flatMap { $0.trust == trust ? $0 : nil }
        guard file == nil || file?.head != nil, let since = RecentFixIndex.seconds(start, up: true) else {
            fixIndex = file
            return
        }
        let index = RecentFixIndex(head: nil, since: since, trust: trust, entries: [])
        store(index)
    }

    /// Writes the index of recent fixes; a failure is a warning (it only costs the next reader a read from git).
    private func store(_ index: RecentFixIndex) {
        do {
            try index.write(in: configuration.stateDirectory)
            fixIndex = index
        } catch {
            fixIndex = nil
            Console().warn("cannot write the index of recent fixes (the next run reads them from git): \(error)")
        }
    }

    /// The index entry of `commit` when it records a verified fix, from its record file.
    private func fixEntry(_ commit: CommitInfo) throws -> RecentFixIndex.Entry? {
        guard let recorded = commit.recorded, recorded.isVerifiedFix, let detected = commit.trailer(.detectedAt),
              let file = try repository.auditRecordFile(at: commit.id, id: recorded.id, detectedAt: detected),
              let record = try? AuditRecord(json: file.bytes) else { return nil }
        return RecentFixIndex.Entry(record, commit: commit.id, committed: commit.committer.time, id: recorded.id)
    }

    /// Adds the verified fixes this process committed, up to the audit branch's head on disk,
    /// to the index of recent fixes when it is up to date with the commit they follow (otherwise
    /// the next reader reads them from git), and with `writeFile` writes the index to its file
    /// when it holds more than the file. A failure is a warning: it only costs that read.
    private func saveRecentFixes(writeFile: Bool) {
        defer {
            if writeFile, recentFixesUnsaved, let index = fixIndex {
                recentFixesSaved = .now
                recentFixesUnsaved = false
                store(index)
            }
        }
        guard !fixPending.isEmpty, let durable = try? repository.resolve(localAudit) else { return }
        guard let last = fixPending.lastIndex(where: { $0.commit == durable }) else {
            // Nothing flushed yet: they wait. Otherwise the branch moved elsewhere (a replay onto
            // the origin gives the commits new ids): they can never be added; the next reader
            // reads them from git.
            if durable != fixPending.first?.parent { fixPending = [] }
            return
        }
        let written = fixPending[...last]
        fixPending.removeFirst(last + 1)
        guard var index = fixIndex ?? RecentFixIndex.read(in: configuration.stateDirectory), let first = written.first,
              index.head == first.parent,
              zip(written.dropFirst(), written).allSatisfy({ $0.parent == $1.commit }) else { return }
        // `index` the only holder of the entries: appended in place, not copied whole at every
        // flush (up to an hour of fixes, 93 KB a copy in the soak).
        fixIndex = nil
        index.entries += written.compactMap(\.entry)
        index.head = durable
        if let fixWindow, let cutoff = RecentFixIndex.seconds(Date().addingTimeInterval(-fixWindow), up: true), cutoff > index.since {
            index.entries.removeAll { $0.committed < cutoff }
            index.since = cutoff
        }
        fixIndex = index
        recentFixesUnsaved = true
    }

    /// The local audit branch's drift episodes (`DriftEpisodes`) up to its head on disk: the
    /// state file's (`DriftEpisodeIndex`) and the records committed after the commit it names,
    /// read from git, or the whole branch's when the file names none of its commits.
    package func driftEpisodes() throws -> DriftEpisodes {
        saveDriftEpisodes(writeFile: false)
        let directory = configuration.stateDirectory
        // A file built under another trust took in records this one would not: built again.
        let trustDigest = recordTrustDigest
        let file = (episodeIndex ?? DriftEpisodeIndex.read(in: directory)).flatMap { $0.trust == trustDigest ? $0 : nil }
        guard let head = try repository.resolve(localAudit) else {
            episodeIndex = DriftEpisodeIndex(head: nil, trust: trustDigest, episodes: DriftEpisodes())
            return DriftEpisodes()
        }
        if let file, file.head == head {
            episodeIndex = file
            return file.episodes
        }
        var newer: [CommitInfo] = []
        var met = false
        var next: ObjectID? = head
        while let id = next {
            if let file, file.head == id {
                met = true
                break
            }
            let commit = try repository.commitInfo(id)
            guard commit.parents.count <= 1 else {
                // Not a line (never written by Bulwark): the whole history, oldest last.
                newer = try repository.history(from: head, limit: .max, since: nil)
                met = false
                break
            }
            newer.append(commit)
            next = commit.parents.first
        }
        var episodes = met ? file?.episodes ?? DriftEpisodes() : DriftEpisodes()
        // The branch takes in whatever the origin holds: with a signing key or audit signers, a
        // record counts only when a trusted key signed it (`RecordTrust`), as for
        // `contains(recordID:)`. A forged resolution would otherwise salt the ids of the drift
        // back (an approval of an earlier occurrence used again, a current one lost), and a
        // forged open record would be vouched for by a resolution of Bulwark's.
        let trust = recordTrust
        var folder: String?
        defer { if let folder { try? FileManager.default.removeItem(atPath: folder) } }
        for commit in newer.reversed() {
            guard let recorded = commit.recorded else { continue }
            if let trust {
                let signed = try? repository.signature(of: commit.id)
                if let problem = trust.problem(signed, commit: commit.id, folder: &folder, trustedKeys: &recordTrustKeys) {
                    ignore(recorded.id, commit.id, problem)
                    continue
                }
            }
            var closes = false
            if recorded.decision == .applied, recorded.result == .interrupted, let detected = commit.trailer(.detectedAt),
               let stored = try? repository.auditRecordFile(at: commit.id, id: recorded.id, detectedAt: detected),
               let record = try? AuditRecord(json: stored.bytes), record.id == recorded.id {
                closes = RemediationReport.Entry.foundAsDesired(record)
            }
            DriftEpisodeIndex.add(recorded, closes: closes, to: &episodes)
        }
        let index = DriftEpisodeIndex(head: head, trust: trustDigest, episodes: episodes)
        episodeIndex = index
        do {
            try index.write(in: directory)
            episodesUnsaved = false
        } catch {
            episodesUnsaved = true
            Console().warn("cannot write the index of drift episodes (the next run reads the audit branch again): \(error)")
        }
        return episodes
    }

    /// Adds the records this process committed, up to the audit branch's head on disk, to the
    /// drift episodes in memory when they follow the commit those are up to date with (else the
    /// next reader reads them from git), and with `writeFile` writes them to their file.
    private func saveDriftEpisodes(writeFile: Bool) {
        defer {
            if writeFile, episodesUnsaved, let index = episodeIndex {
                do {
                    try index.write(in: configuration.stateDirectory)
                    episodesUnsaved = false
                } catch {
                    Console().warn("cannot write the index of drift episodes (the next run reads those records from git): \(error)")
                }
            }
        }
        guard !episodePending.isEmpty, let durable = try? repository.resolve(localAudit) else { return }
        guard let last = episodePending.lastIndex(where: { $0.commit == durable }) else {
            if durable != episodePending.first?.parent { episodePending = [] }
            return
        }
        let written = episodePending[...last]
        episodePending.removeFirst(last + 1)
        guard var index = episodeIndex, let first = written.first, index.head == first.parent,
              zip(written.dropFirst(), written).allSatisfy({ $0.parent == $1.commit }) else { return }
        for item in written {
            let r = item.record
            index.episodes.add(id: r.id, target: r.target, resource: r.resource, decision: r.decision, result: r.result,
                               isRevert: r.isRevert, closes: r.closes)
        }
        index.head = durable
        episodeIndex = index
        episodesUnsaved = true
    }

    /// What `DriftEpisodes.add` takes of a record this process committed.
    struct EpisodeRecord {
        var id: String
        var target: String
        var resource: String
        var decision: Decision
        var result: RemediationResult?
        var isRevert: Bool
        var closes: Bool
    }

    /// Peer records left out of the flap history since the last call (each commit once), for the daemon's log and metric.
    package func takePeerRejections() -> [PeerRecordVerification.Rejection] {
        defer { peerRejections = [] }
        return peerRejections
    }

    /// Fetches the other controller replicas' audit refs (`bulwark/audit-replicas/*` but this
    /// process's own), for the flap breaker's count after a takeover. Replicas are few, so this
    /// is a handful of refs; a replica's regular sync fetches only the policy branch and its own.
    package func fetchPeerReplicas() throws {
        let own = "refs/heads/\(configuration.auditBranch)"
        let peers = try repository.remoteHeads("origin", access: configuration.access).keys
            .filter { $0.hasPrefix("refs/heads/" + AuditRef.replicasFolder) && $0 != own }.sorted()
        guard !peers.isEmpty else { return }
        try repository.fetch(remote: "origin", refspecs: peers.map { "+\($0):refs/remotes/origin/\($0.dropFirst("refs/heads/".count))" },
                             access: configuration.access)
    }

    /// The commits from `head`, newest first, at most `limit`, and with `since` only those
    /// committed since it, as `history(from:limit:since:)` gives them. The audit branch is a line
    /// (Bulwark appends and replays, never merges), so this follows parents one by one and reads
    /// only what it returns, where a revision walk with sorting reads the whole branch first; a
    /// merge commit on the way falls back to that walk.
    private func commits(from head: ObjectID, since start: Date? = nil, limit: Int = .max) throws -> [CommitInfo] {
        var result: [CommitInfo] = []
        var next: ObjectID? = head
        while let id = next, result.count < limit {
            let commit = try repository.commitInfo(id)
            if let start, commit.committer.time < start { break }
            guard commit.parents.count <= 1 else { return try repository.history(from: head, limit: limit, since: start) }
            result.append(commit)
            next = commit.parents.first
        }
        return result
    }

    // MARK: - Append-only trail

    /// Where audit commits are pushed: the audit branch, or the recovery branch while the origin's
    /// audit branch does not contain what this Bulwark pushed to it.
    private var pushBranch: String { trailIsOurs ? trail.recoveryBranch ?? configuration.auditBranch : configuration.auditBranch }

    /// The branch audit commits are pushed to now (`pushBranch`): what a summary names.
    package var pushedBranch: String { pushBranch }

    /// The recovery branch records go to instead of the audit branch, while the origin's audit
    /// branch does not hold what this Bulwark pushed to it; nil while they go to the audit branch.
    /// Kept in the trail file (`AuditTrail.recoveryBranch`), so a restart still knows it.
    package var divertedTo: String? { pushBranch == configuration.auditBranch ? nil : pushBranch }

    /// The name this Bulwark signs its records with (`Bulwark-Instance`).
    package var instance: String { trail.instance }

    /// Remembers `commit` as the last audit commit pushed. Failing to only weakens the next check,
    /// so it is a warning.
    private func rememberPushed(_ commit: ObjectID) throws {
        guard trailIsOurs else { return }
        trail.lastPushed = commit.hex
        trail.auditBranch = configuration.auditBranch
        if trail.recoveryBranch != nil { trail.recoveryPushed = true }
        do { try trail.save(stateDirectory: configuration.stateDirectory) } catch {
            Console().warn("cannot remember the last audit commit pushed (\(error)); a rewrite of the audit branch "
                           + "before the next push may go unnoticed")
        }
    }

    /// Compares the origin's audit branch (as just fetched) with the last audit commit pushed:
    /// when it no longer contains it, returns the record of the tampering (to be committed once)
    /// and sends records to a new recovery branch; when it contains it again (a person put the
    /// records back), returns to it. When this clone does not hold that commit either (it was
    /// made again), nothing here can be recovered: the tampering is recorded on the origin's history.
    private func checkTrail() throws -> AuditRecord? {
        guard trailIsOurs, let pushedHex = trail.lastPushed, let pushed = ObjectID(hex: pushedHex) else { return nil }
        func holds(_ reference: String) throws -> (head: ObjectID?, holds: Bool) {
            guard let head = try repository.resolve(reference), try repository.contains(pushed) else {
                return (try repository.resolve(reference), false)
            }
            return (head, try repository.isAncestor(pushed, of: head))
        }
        var (head, intact) = try holds(remoteAudit)
        var branch = configuration.auditBranch
        if let recovery = trail.recoveryBranch {
            if intact {
                trail.recoveryBranch = nil
                trail.recoveryPushed = nil
                try trail.save(stateDirectory: configuration.stateDirectory)
                Console().warn("the audit branch \(configuration.auditBranch) on the origin contains \(pushed.short) again: "
                               + "records go to it again (remove \(recovery) once you have checked it)")
                return nil
            }
            // The recovery branch, once pushed, must keep what was pushed to it too, and stay:
            // deleted, it would be made again from this clone without a word (one not pushed
            // yet is simply not there).
            let (recovered, held) = try holds("refs/remotes/origin/\(recovery)")
            guard recovered != nil || trail.recoveryPushed == true, !held else { return nil }
            (head, branch) = (recovered, recovery)
        } else if intact {
            return nil
        }
        let local = try repository.resolve(localAudit)
        var held = false
        if let local, try repository.contains(pushed) { held = try repository.isAncestor(pushed, of: local) }
        guard held else {
            trail.lastPushed = nil
            try trail.save(stateDirectory: configuration.stateDirectory)
            let record = AuditTrail.tamperRecord(auditBranch: branch, lastPushed: pushed, remoteHead: head,
                                                 recovery: nil, at: Date())
            let text = (record.reason ?? "") + ". Look for the records in other clones (`git fsck --lost-found`)"
            tampering.append(text)
            Console().warn(text)
            return record
        }
        // A new branch, even when an earlier one was made in the same second.
        let stamp = AuditTrail.recoveryBranch(at: Date(), instance: trail.instance)
        var recovery = stamp
        var suffix = 1
        while try recovery == trail.recoveryBranch || repository.resolve("refs/remotes/origin/\(recovery)") != nil {
            suffix += 1
            recovery = stamp + "-\(suffix)"
        }
        trail.recoveryBranch = recovery
        trail.recoveryPushed = nil
        try trail.save(stateDirectory: configuration.stateDirectory)
        let record = AuditTrail.tamperRecord(auditBranch: branch, lastPushed: pushed, remoteHead: head,
                                             recovery: recovery, at: Date())
        let text = (record.reason ?? "") + ". Find out who changed it; put the records back with "
            + AuditTrail.restoreCommand(recovery: recovery, auditBranch: configuration.auditBranch) + " and Bulwark returns to it"
        tampering.append(text)
        Console().warn(text)
        return record
    }

    // MARK: - Policy commits

    /// Commits `files` on top of the policy branch and pushes them to it. A branch that moved
    /// meanwhile gets the commit replayed on its new head, unless the move changed one of
    /// `files`: replayed, the commit would silently undo that change (a tightening someone
    /// pushed to the file an accepted proposal rewrites, a resume over a pause), so nothing is
    /// committed and the person runs the command again on the new content. A remote that
    /// cannot be reached is an error, since a person is waiting.
    ///
    /// With `verification` (the policy's signatures are verified), a commit no trusted key
    /// signed is not pushed: every verifying Bulwark would refuse the revision, and every one
    /// after it, until someone removes it from the branch; an approval or a pause would halt
    /// enforcement instead.
    package func commitPolicy(_ files: [String: [UInt8]], message: String, author: Signature, signer: (any CommitSigner)? = nil,
                      verification: SourceVerification? = nil, attempts: Int = 5) throws -> ObjectID {
        let scratch = "refs/bulwark/policy-commit"
        let tracking = "refs/remotes/origin/\(configuration.branch)"
        guard let base = try repository.resolve(tracking) else {
            throw Failure.noBranch(configuration.branch, configuration.url)
        }
        var commit = try repository.writeCommit(adding: files, parent: base, message: message, author: author, signer: signer)
        if let verification { try checkTrusted(commit, changing: Array(files.keys), verification: verification) }
        var expected = base
        for _ in 0..<attempts {
            try repository.forceReference(scratch, to: commit, message: "bulwark: policy commit")
            let rejection: PushRejection?
            pushAttempts += 1
            do {
                rejection = try repository.push(scratch, to: "refs/heads/\(configuration.branch)", expected: expected,
                                                remote: "origin", access: configuration.access)
            } catch {
                throw Failure.unreachable(configuration.url, error)
            }
            if rejection == nil {
                try repository.forceReference(tracking, to: commit, message: "bulwark: pushed")
                return commit
            }
            try repository.fetch(remote: "origin", refspecs: ["+refs/heads/\(configuration.branch):\(tracking)"], access: configuration.access)
            guard let head = try repository.resolve(tracking) else { throw Failure.noBranch(configuration.branch, configuration.url) }
            for path in files.keys.sorted() where try repository.file(at: head, path: path) != repository.file(at: base, path: path) {
                throw CommandError("\(path) changed on \(configuration.branch) (now \(head.short)) while this commit was being pushed; "
                                   + "nothing was committed: run the command again to judge the new content")
            }
            commit = try repository.replay(commit, onto: head, signer: signer)
            expected = head
        }
        throw CommandError("the branch \(configuration.branch) kept moving during \(attempts) attempts; try again")
    }

    /// Throws when no key `verification` trusts signed `commit` (a policy commit about to be
    /// pushed), or when its trust policy does not let that signer change `paths`.
    private func checkTrusted(_ commit: ObjectID, changing paths: [String], verification: SourceVerification) throws {
        guard verification.allowedSigners != nil || verification.trustedKeyring != nil else { return }
        let advice = "nothing was committed: a verifying Bulwark would refuse this revision and every one after it. "
            + "Set gpg.format ssh and user.signingkey (git config) to a key the trusted signers file lists"
        guard let signed = try repository.signature(of: commit) else {
            throw CommandError("the commit would be unsigned, and the policy's signatures are verified; " + advice)
        }
        let folder = try SourceVerification.privateFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        switch try verification.verifyAny(signed, commit: commit, folder: folder) {
        case .failure(let untrusted):
            throw CommandError("the commit's signature is not trusted (\(untrusted.description)); " + advice)
        case .success(let principal):
            guard let rules = try verification.trustPolicy.map(TrustPolicy.load) else { return }
            let refused = paths.sorted().compactMap { rules.refusal(of: principal, changing: $0) }
            if !refused.isEmpty {
                throw CommandError("\(principal) may not change what this commit changes under the trust policy ("
                                   + refused.joined(separator: "; ") + "); nothing was committed: a verifying Bulwark would "
                                   + "refuse this revision and every one after it. Ask someone the policy lets change it")
            }
        }
    }

    // MARK: - Proposal branches (see Proposals/)

    /// Where the origin's branch `name` was at the last fetch.
    package func fetchedBranch(_ name: String) throws -> ObjectID? {
        try repository.resolve("refs/remotes/origin/\(name)")
    }

    /// A file of a commit, nil when absent.
    package func file(at commit: ObjectID, path: String) throws -> [UInt8]? {
        try repository.file(at: commit, path: path)
    }

    /// Commits `files` on `parent` and pushes the commit to the origin's branch `name` as a
    /// compare-and-swap from `expected` (nil: the branch must not exist yet). Returns nil when
    /// the origin refused (the branch moved or exists), else the commit.
    package func pushBranch(_ name: String, files: [String: [UInt8]], parent: ObjectID, merging: ObjectID? = nil, expected: ObjectID?,
                            message: String, author: Signature, signer: (any CommitSigner)?) throws -> ObjectID? {
        var stamped = author
        stamped.time = Date()
        let commit = try repository.writeCommit(adding: files, parent: parent, merging: merging, message: message, author: stamped,
                                                signer: signer)
        let scratch = "refs/bulwark/proposal-commit"
        try repository.forceReference(scratch, to: commit, message: "bulwark: proposal")
        let rejection: PushRejection?
        do {
            rejection = try repository.push(scratch, to: "refs/heads/\(name)", expected: expected, remote: "origin", access: configuration.access)
        } catch {
            throw Failure.unreachable(configuration.url, error)
        }
        guard rejection == nil else { return nil }
        // The policy branch's tracking reference moves only with a fetch: the daemon's next sync
        // sees the origin ahead of it and loads (and verifies) the new revision like any other.
        if name != configuration.branch {
            try repository.forceReference("refs/remotes/origin/\(name)", to: commit, message: "bulwark: pushed")
        }
        return commit
    }

    // MARK: - Provenance

    /// Authors of the commits since `base` that changed any of `paths` (see `Repository.authors`).
    package func authors(changing paths: Set<String>, from head: ObjectID, since base: ObjectID?) throws -> [String: [Signature]] {
        try repository.authors(changing: paths, from: head, since: base)
    }

    /// The commits since `base` that changed any of `paths`, per path (see `Repository.commits(changing:)`).
    package func commits(changing paths: Set<String>, from head: ObjectID, since base: ObjectID?, limit: Int = 1000) throws
        -> [String: [CommitInfo]] {
        try repository.commits(changing: paths, from: head, since: base, limit: limit)
    }

    /// The commit that wrote `path` as it is at `head` (see `Repository.commitWriting`).
    package func commitWriting(_ path: String, from head: ObjectID) throws -> CommitInfo? {
        try repository.commitWriting(path, from: head)
    }

    /// Whether `commit` is in the clone (a revision applied before a forced push may be gone).
    package func has(_ commit: ObjectID) -> Bool { (try? repository.contains(commit)) ?? false }

    /// Whether `commit` is in the clone and is `head` or one of its ancestors (false when it cannot be told).
    package func isAncestorOrEqual(_ commit: ObjectID, of head: ObjectID) -> Bool {
        has(commit) && ((try? repository.isAncestor(commit, of: head)) ?? false)
    }

    // MARK: - Signatures

    /// Every commit reachable from `head` and not from `base` (each parent of a merge), newest first.
    package func commits(from head: ObjectID, since base: ObjectID?) throws -> [CommitInfo] {
        try repository.history(from: head, hiding: base)
    }

    /// One commit, with its author and message.
    package func commit(_ id: ObjectID) throws -> CommitInfo { try repository.commitInfo(id) }

    /// Whether `ancestor` is `descendant` or reachable from it.
    package func isAncestor(_ ancestor: ObjectID, of descendant: ObjectID) throws -> Bool {
        try repository.isAncestor(ancestor, of: descendant)
    }

    /// The paths that differ between the trees of `old` and `new`, sorted.
    package func pathsChanged(from old: ObjectID, to new: ObjectID) throws -> [String] { try repository.changedPaths(from: old, to: new) }

    /// The paths `commit` itself changes, sorted: against its parent (the empty tree for a root
    /// commit); for a merge, what it did not take cleanly from a parent, so that a merge keeping
    /// an old commit's files over newer changes counts as changing them (`Repository.pathsChanged`).
    package func pathsChanged(by commit: CommitInfo) throws -> [String] {
        try repository.pathsChanged(by: commit)
    }

    /// A commit's signature and signed bytes, or nil when it is unsigned.
    package func signature(of commit: ObjectID) throws -> CommitSignature? { try repository.signature(of: commit) }

    /// The public key of the key that signs this process's audit commits (`--signing-key`), if any.
    package var auditKey: [UInt8]? { configuration.signer?.publicKeyBlob }

    /// The allowed signers file of the other Bulwarks writing this audit branch, if any.
    package var auditSigners: String? { configuration.auditSigners }

    /// The caller's git signing key, when git's configuration asks for SSH signatures (`gpg.format ssh`, `user.signingkey`).
    package func callerSigner() -> GitConfiguredSigner? {
        GitConfiguredSigner(configuration: { repository.configString($0) })
    }

    /// The caller's git identity: GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, else git's configuration.
    package func callerSignature() -> Signature? {
        let env = ProcessInfo.processInfo.environment
        if let name = env["GIT_AUTHOR_NAME"], let email = env["GIT_AUTHOR_EMAIL"], !name.isEmpty, !email.isEmpty {
            return Signature(name: name, email: email)
        }
        return repository.configuredSignature()
    }
}

/// An exclusive `flock` on a state directory's lock file, held while this object lives. The one
/// owner of the descriptor: it is closed once, in `deinit`, and never anywhere else.
package final class StateLock: Sendable {
    private let descriptor: Int32

    package init(_ path: String, directory: String) throws {
        // Never through a link: a lock file replaced by a link would be opened (and created)
        // wherever it points.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw CommandError("cannot open \(path): \(String(cString: strerror(errno)))") }
        // Tried again for a moment when found held: a child another thread is spawning holds
        // the descriptor of a lock this process has just let go until it execs.
        let code = FileLock.exclusive(fd)
        guard code == 0 else {
            let holder = Self.holder(of: fd)
            close(fd)
            guard code == EWOULDBLOCK else { throw CommandError("cannot lock \(path): \(String(cString: strerror(code)))") }
            throw PolicyRepository.Failure.locked(directory, holder: holder)
        }
        descriptor = fd
    }

    /// The pid the kernel names as the holder of the `flock` on the file open as `fd`
    /// (/proc/locks: `FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode>`), never what a file
    /// says; nil when it cannot tell.
    private static func holder(of fd: Int32) -> Int32? {
        var info = stat()
        guard fstat(fd, &info) == 0, let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return nil }
        let device = UInt64(info.st_dev)
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
        let minor = (device & 0xff) | ((device >> 12) & ~0xff)
        let file = String(format: "%02x:%02x:%lu", major, minor, UInt64(info.st_ino))
        for line in locks.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[1] == "FLOCK", fields[5] == file, let pid = Int32(fields[4]), pid > 0 else { continue }
            return pid
        }
        return nil
    }

    deinit { close(descriptor) }
}
