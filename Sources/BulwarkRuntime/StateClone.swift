import BulwarkCore
package import BulwarkGit
import Foundation

/// Opening Bulwark's bare state clone, checking it, and rebuilding it from the origin when it
/// fails the checks (objects deleted or truncated, garbage in a reference or in the config).
///
/// A damaged clone is never deleted: it is moved aside next to the new one, the audit commits
/// that were never pushed are read from it when they can be and committed again in the new
/// clone, and every step is reported in words that say what was done and what, if anything,
/// a person must still do.
package enum StateClone {
    /// An unpushed audit commit read back from a damaged clone.
    package struct Salvaged {
        package var id: String?
        package var files: [String: [UInt8]]
        package var message: String
        package var author: Signature
    }

    /// The state clone at `path`, created when missing, repaired when damaged; with what was
    /// repaired, in words, and the damaged clones set aside that still hold audit records
    /// Bulwark could not carry over (in words: where they are and how to get them back). Those
    /// records are not on the origin: a pass that goes on says so and exits 3.
    ///
    /// Every step of a repair can be stopped by a kill without losing a record: the damaged
    /// clone is moved aside (one rename) and kept until its records are in the live clone, the
    /// new clone is built in a sibling folder and renamed into place whole, and each open looks
    /// for damaged clones set aside whose records were not carried over yet (no
    /// `bulwark-carried-over` file in them) and carries them over.
    package static func open(at path: String, url: String, branch: String, auditBranch: String,
                     access: RemoteAccess, signer: (any CommitSigner)? = nil) throws -> (Repository, [String], held: [String]) {
        let fm = FileManager.default
        var repairs = removeUnfinishedRebuilds(of: path)
        var handled: Set<String> = []
        var held: [String] = []
        let repository: Repository
        if !fm.fileExists(atPath: path) {
            guard let aside = pendingAsides(of: path).last else { return (try create(at: path, url: url), repairs, []) }
            // A repair stopped after the damaged clone was moved aside: it is finished now.
            let rebuilt = try rebuild(at: path, aside: aside, moved: false, url: url, auditBranch: auditBranch, access: access,
                                      problem: "a repair of it was stopped before it ended", signer: signer)
            (repository, handled) = (rebuilt.repository, [aside])
            repairs += rebuilt.messages
            held += rebuilt.held
        } else {
            repairs += repairHead(at: path, branch: branch)
            do {
                let opened = try Repository.open(at: path)
                let damaged = opened.damagedLooseObjects()
                guard damaged.isEmpty else {
                    throw CommandError("\(damaged.count) damaged object file(s): " + damaged.prefix(3).joined(separator: ", "))
                }
                try verify(opened, branch: branch, auditBranch: auditBranch)
                repairs += packLooseObjects(opened, at: path)
                repository = opened
            } catch {
                let problem = (error as? GitError)?.description ?? "\(error)"
                let aside = path + ".damaged-" + Timestamp.format(Date()).filter { $0.isNumber }
                let rebuilt = try rebuild(at: path, aside: aside, moved: true, url: url, auditBranch: auditBranch, access: access,
                                          problem: problem, signer: signer)
                (repository, handled) = (rebuilt.repository, [aside])
                repairs += rebuilt.messages
                held += rebuilt.held
            }
        }
        // Damaged clones set aside earlier whose records are not in this one yet: a repair
        // stopped after the new clone was in place, one whose records could not be read then,
        // or one an earlier version set aside.
        for aside in pendingAsides(of: path) where !handled.contains(aside) {
            do {
                let kept = try carryOver(from: aside, into: repository, auditBranch: auditBranch, signer: signer)
                markCarriedOver(aside, into: path)
                if kept > 0 {
                    repairs.append("\(kept) unpushed audit record(s) were read from the damaged state clone \(aside), set aside by an "
                                   + "earlier repair, and recorded again; they go out with the next push. Remove \(aside) when you no "
                                   + "longer need it")
                }
            } catch {
                held.append(heldAside(aside, problem: (error as? GitError)?.description ?? "\(error)", url: url, auditBranch: auditBranch))
            }
        }
        for text in held { Console().warn(text) }
        return (repository, repairs, held)
    }

    /// Packs the loose objects of a clone that passed its checks, under the state directory's
    /// lock (`Repository.packLooseObjects`): a version that wrote the records of a recovery
    /// one by one left about nine loose object files per record, never packed (6,200 files,
    /// 25 MiB, after 148 kill rounds), each inflated again at every open by the check for
    /// damaged ones. What was done, in words; a failure is said and changes nothing (the
    /// objects stay loose, and readable).
    static func packLooseObjects(_ repository: Repository, at path: String) -> [String] {
        do {
            let packed = try repository.packLooseObjects()
            return packed == 0 ? [] : ["packed \(packed) loose object file(s) in the state clone \(path) into one pack"]
        } catch {
            return ["cannot pack the loose objects of the state clone \(path) (\(error.message)); they stay as they are"]
        }
    }

    /// A new bare state clone at `path` whose remote `origin` is `url`, its object database
    /// seeded from the origin's when that is a repository on this machine (see
    /// `Repository.seedObjects(from:)`): its first fetch then writes references only, instead of
    /// libgit2 packing every object of the origin again (more than two minutes at 100,000 audit
    /// records). A seed that fails leaves the clone empty, and the fetch transfers everything.
    package static func create(at path: String, url: String) throws -> Repository {
        let repository = try Repository.create(at: path, bare: true)
        try repository.ensureRemote("origin", url: url)
        _ = repository.seedObjects(from: url)
        return repository
    }

    /// Reads everything Bulwark relies on: the configuration, the references it uses, their
    /// commits and root trees, the whole tree of the policy branch (what a pass reads anyway),
    /// and the records of the audit commits not pushed yet. The audit branch's tree is not
    /// listed: it holds every record ever written, and listing it on every open made each
    /// command slower as history grew (53 % of `plan` at 100,000 records). What the audit
    /// branch needs of its tree, a pass reads (the records it adds, the flap window's), and a
    /// damaged object there fails that read loudly.
    package static func verify(_ repository: Repository, branch: String, auditBranch: String) throws {
        _ = try repository.remoteURL("origin")
        for reference in ["refs/heads/\(auditBranch)", "refs/remotes/origin/\(auditBranch)"] {
            if let head = try repository.resolve(reference) { try repository.verifyCommit(head) }
        }
        if let head = try repository.resolve("refs/remotes/origin/\(branch)") {
            _ = try repository.changedPaths(from: nil, to: head)
        }
        _ = try unpushed(repository, auditBranch: auditBranch)
    }

    /// The audit commits on the local branch and not on the fetched one, oldest first, with
    /// the files each one added.
    package static func unpushed(_ repository: Repository, auditBranch: String) throws -> [Salvaged] {
        guard let local = try repository.resolve("refs/heads/\(auditBranch)") else { return [] }
        let remote = try repository.resolve("refs/remotes/origin/\(auditBranch)")
        // Everything pushed (the usual case): libgit2's walk would still read a few generations
        // of commits, each a lookup in what can be a large pack's index.
        if local == remote { return [] }
        return try repository.history(from: local, hiding: remote).reversed().map { commit in
            var files: [String: [UInt8]] = [:]
            for path in try repository.changedPathsOfChangedFolders(from: commit.parents.first, to: commit.id) {
                if let bytes = try repository.file(at: commit.id, path: path) { files[path] = bytes }
            }
            return Salvaged(id: commit.trailer(.id), files: files, message: commit.message, author: commit.author)
        }
    }

    /// The audit commits of a damaged clone the origin does not have, oldest first: walked
    /// from the local audit head along first parents, up to the first commit the origin has
    /// (by its Bulwark-Id) or the first that cannot be read. Throws when the head itself cannot.
    /// A commit that cannot be read and that the origin does not have either is reported as
    /// an error: records beyond it may be lost. A local audit branch that is missing, garbage or
    /// is found again as the newest commit with a Bulwark-Id
    /// that no other commit has for parent (`newestRecordTip`), as `git fsck --lost-found` would.
    package static func salvage(_ repository: Repository, auditBranch: String, known: Set<String>,
                        onOrigin: (ObjectID) -> Bool) throws -> [Salvaged] {
        let head: ObjectID?
        do {
            head = try repository.resolve("refs/heads/\(auditBranch)")
        } catch {
            guard let tip = try newestRecordTip(repository) else { throw error }
            return try salvage(repository, from: tip, auditBranch: auditBranch, known: known, onOrigin: onOrigin)
        }
        // A head that names a commit that cannot be read is not replaced: the walk below fails
        // loudly on it (another tip found would hide the records it held).
        guard let head = try head ?? newestRecordTip(repository) else { return [] }
        return try salvage(repository, from: head, auditBranch: auditBranch, known: known, onOrigin: onOrigin)
    }

    /// The newest commit (by committer time) that carries a Bulwark-Id and that no other commit
    /// of the object database has for parent: the head of an audit branch whose reference is lost.
    /// Not guessed when objects are damaged (set aside in `damaged-objects`, or a commit that
    /// cannot be read): the newest record may be one of them, and an older tip would hide it.
    static func newestRecordTip(_ repository: Repository) throws -> ObjectID? {
        let quarantine = repository.path + (repository.path.hasSuffix("/") ? "" : "/") + "damaged-objects"
        if let damaged = try? FileManager.default.contentsOfDirectory(atPath: quarantine), !damaged.isEmpty {
            throw CommandError("its audit branch cannot be read and \(damaged.count) of its object file(s) are damaged "
                               + "(now in \(quarantine)): its newest record cannot be told")
        }
        var records: [CommitInfo] = []
        var parents = Set<ObjectID>()
        for id in try repository.commitObjects() {
            let commit = try repository.commitInfo(id)
            parents.formUnion(commit.parents)
            if commit.trailer(.id) != nil { records.append(commit) }
        }
        return records.filter { !parents.contains($0.id) }.max { ($0.committer.time, $0.id) < ($1.committer.time, $1.id) }?.id
    }

    private static func salvage(_ repository: Repository, from head: ObjectID, auditBranch: String, known: Set<String>,
                                onOrigin: (ObjectID) -> Bool) throws -> [Salvaged] {
        var next = head
        let remote = try? repository.resolve("refs/remotes/origin/\(auditBranch)")
        var result: [Salvaged] = []
        var first = true
        while next != remote, !onOrigin(next) {
            let commit: CommitInfo
            do { commit = try repository.commitInfo(next) } catch {
                if first { throw error }
                throw CommandError("commit \(next.short) cannot be read and is not on the origin, so records older "
                                   + "than \(result.count) were not checked (\(error))")
            }
            first = false
            guard let id = commit.trailer(.id) else { break }
            if known.contains(id) { break }
            var files: [String: [UInt8]] = [:]
            let paths = (try? repository.changedPathsOfChangedFolders(from: commit.parents.first, to: commit.id))
                ?? commit.trailer(.detectedAt).map { AuditRecord.paths(id: id, detectedAt: $0) } ?? []
            for path in paths {
                if let bytes = try repository.file(at: commit.id, path: path) { files[path] = bytes }
            }
            guard !files.isEmpty else { throw CommandError("the record \(id) in commit \(commit.id.short) cannot be read") }
            result.append(Salvaged(id: id, files: files, message: commit.message, author: commit.author))
            guard let parent = commit.parents.first else { break }
            next = parent
        }
        return result.reversed()
    }

    /// The name of the file, in a damaged clone set aside, that says its records are in the live clone.
    static let carriedOverFile = "bulwark-carried-over"

    /// `BULWARK_FAULT_SIGNAL_IN_CLONE_REPAIR=STAGE` (or `STAGE:N`): the process sends itself
    /// signal N (9, SIGKILL, when not given) at that stage of a repair of the state clone:
    /// `aside` (the damaged clone moved aside), `fetched` (the new one fetched in its sibling
    /// folder), `carried` (the records written in it), `placed` (renamed into place, the damaged
    /// one not yet marked as carried over). Tests only.
    static func fault(_ stage: String) {
        guard let value = ProcessInfo.processInfo.environment["BULWARK_FAULT_SIGNAL_IN_CLONE_REPAIR"] else { return }
        let parts = value.split(separator: ":", maxSplits: 1)
        guard parts.first.map(String.init) == stage else { return }
        kill(getpid(), parts.count > 1 ? Int32(parts[1]) ?? SIGKILL : SIGKILL)
    }

    /// The damaged clones set aside next to `path` (`<path>.damaged-<time>`) whose records were
    /// not carried over yet, oldest first.
    static func pendingAsides(of path: String) -> [String] {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let prefix = url.lastPathComponent + ".damaged-"
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasPrefix(prefix) }.sorted()
            .map { folder + "/" + $0 }
            .filter { aside in
                var isFolder: ObjCBool = false
                return fm.fileExists(atPath: aside, isDirectory: &isFolder) && isFolder.boolValue
                    && !fm.fileExists(atPath: aside + "/" + carriedOverFile)
            }
    }

    /// Removes the new clones a stopped repair left half built (`<path>.rebuilding-<time>`):
    /// Bulwark's own, holding nothing the damaged clone set aside does not.
    static func removeUnfinishedRebuilds(of path: String) -> [String] {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let prefix = url.lastPathComponent + ".rebuilding-"
        return ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasPrefix(prefix) }.compactMap { name in
            (try? FileManager.default.removeItem(atPath: folder + "/" + name)) == nil ? nil
                : "removed \(folder)/\(name), a new state clone a stopped repair left half built"
        }
    }

    private static func markCarriedOver(_ aside: String, into path: String) {
        let text = "the unpushed audit records of this damaged clone are in \(path) (\(Timestamp.format(Date())))\n"
        try? Data(text.utf8).write(to: URL(fileURLWithPath: aside + "/" + carriedOverFile), options: .atomic)
    }

    /// What to say of a damaged clone set aside whose records could not be carried over.
    static func heldAside(_ aside: String, problem: String, url: String, auditBranch: String) -> String {
        "the damaged state clone \(aside) holds audit records that were never pushed and that Bulwark cannot read (\(problem)): "
            + "they are not on \(redactedURL(url)). List its commits with `git --git-dir \(aside) fsck --lost-found` and "
            + "`git --git-dir \(aside) log --format='%H %(trailers:key=Bulwark-Id,valueonly)' <commit>`; point its branch at the "
            + "newest one with `git --git-dir \(aside) update-ref refs/heads/\(auditBranch) <commit>` and run again: Bulwark "
            + "carries them over. Until then every run says so (`apply` exits 3); remove \(aside) only when they are on \(auditBranch)"
    }

    /// Writes the records of `aside` that `repository` does not have on top of its audit branch
    /// (the local one, else the origin's). Returns how many were written.
    private static func carryOver(from aside: String, into repository: Repository, auditBranch: String,
                                  signer: (any CommitSigner)?) throws -> Int {
        let localAudit = "refs/heads/\(auditBranch)"
        let local = try repository.resolve(localAudit)
        let start = try local ?? repository.resolve("refs/remotes/origin/\(auditBranch)")
        var known = Set<String>()
        if let start {
            for commit in try repository.history(from: start) { if let id = commit.trailer(.id) { known.insert(id) } }
        }
        let salvaged = try salvage(openForSalvage(aside, auditBranch: auditBranch), auditBranch: auditBranch, known: known,
                                   onOrigin: { (try? repository.contains($0)) ?? false })
        var head = start
        var kept = 0
        for commit in salvaged where commit.id.map({ !known.contains($0) }) ?? true {
            head = try repository.writeCommit(adding: commit.files, parent: head, message: commit.message,
                                              author: commit.author, signer: signer)
            kept += 1
        }
        if let head, head != local {
            try repository.updateReference(localAudit, to: head, expected: local, message: "bulwark: records of a damaged clone")
        }
        return kept
    }

    /// Repairs the state clone at `path` (`moved`: it is there, and is first moved to `aside`;
    /// otherwise `aside` is a damaged clone an earlier repair set aside and `path` is free).
    /// The new clone is fetched in a sibling folder, the unpushed records of the damaged one
    /// are written in it, and it is renamed to `path`; then the damaged one is marked as
    /// carried over. A kill at any point leaves either the damaged clone at `path`, or `path`
    /// free and the damaged clone aside unmarked: the next open finishes the repair.
    private static func rebuild(at path: String, aside: String, moved: Bool, url: String, auditBranch: String,
                                access: RemoteAccess, problem: String, signer: (any CommitSigner)?)
        throws -> (repository: Repository, messages: [String], held: [String]) {
        let fm = FileManager.default
        if moved {
            do {
                try fm.moveItem(atPath: path, toPath: aside)
            } catch {
                throw CommandError("the state clone \(path) is damaged (\(problem)) and cannot be moved aside (\(error)); "
                                   + "move it away by hand and run again: Bulwark fetches a new one")
            }
            fault("aside")
        }
        var messages = [moved
            ? "the state clone \(path) failed its checks (\(problem)); it was moved to \(aside) and is being cloned again from \(redactedURL(url))"
            : "a repair of the state clone \(path) was stopped before it ended; the damaged clone is still in \(aside), and \(path) is being cloned again from \(redactedURL(url))"]
        let building = path + ".rebuilding-" + Timestamp.format(Date()).filter { $0.isNumber }
        do {
            // Not seeded (`create`): salvage takes an object in the clone for one the origin
            // has, and a seed brings the origin's unreferenced objects too (a push whose
            // reference update lost), which would pass unpushed records for pushed ones.
            let repository = try Repository.create(at: building, bare: true)
            try repository.ensureRemote("origin", url: url)
            try repository.fetch(remote: "origin", refspecs: ["+refs/heads/*:refs/remotes/origin/*"], access: access)
        } catch {
            // Without the origin, what was pushed cannot be told from what was not: put the
            // damaged clone back untouched and say so.
            try? fm.removeItem(atPath: building)
            try? fm.moveItem(atPath: aside, toPath: path)
            throw CommandError("the state clone \(path) is damaged (\(problem)) and cannot be repaired now: "
                               + "\(redactedURL(url)) cannot be fetched (\(error.message)). Nothing was changed; run again "
                               + "when the origin answers, and Bulwark re-clones it keeping the records not yet pushed")
        }
        fault("fetched")
        var held: [String] = []
        do {
            let repository = try Repository.open(at: building)
            let localAudit = "refs/heads/\(auditBranch)"
            do {
                let kept = try carryOver(from: aside, into: repository, auditBranch: auditBranch, signer: signer)
                messages.append(kept == 0 ? "no unpushed audit records were in it"
                                : "\(kept) unpushed audit record(s) were read from it and recorded again; they go out with the next push")
                messages.append("nothing was lost; remove \(aside) when you no longer need it")
            } catch {
                if let remote = try repository.resolve("refs/remotes/origin/\(auditBranch)"), try repository.resolve(localAudit) == nil {
                    try repository.updateReference(localAudit, to: remote, expected: nil, message: "bulwark: repaired clone")
                }
                held.append(heldAside(aside, problem: (error as? GitError)?.description ?? "\(error)", url: url, auditBranch: auditBranch))
            }
        }
        fault("carried")
        do {
            try fm.moveItem(atPath: building, toPath: path)
        } catch {
            throw CommandError("the state clone \(path) was damaged (\(problem)) and moved to \(aside); its repair, built in "
                               + "\(building), cannot be moved into place (\(error)). Run again: Bulwark repairs it again")
        }
        fault("placed")
        if held.isEmpty { markCarriedOver(aside, into: path) }
        // Said by whoever opened the clone (`PolicyRepository.repairs`): a command on the standard
        // error, the daemon in its log; said here too, it was printed twice.
        let text = messages.joined(separator: "; ")
        return (try Repository.open(at: path), [text], held)
    }

    /// Bulwark's clone is bare and never checks out: its HEAD is a symbolic reference to a
    /// branch, and libgit2 needs one to open the clone (missing) or to fetch (garbage: "corrupted
    /// loose reference file: HEAD", which read as the origin failing, for every run after).
    /// A HEAD that is missing or not a reference is written again, to the policy branch.
    static func repairHead(at path: String, branch: String) -> [String] {
        let fm = FileManager.default
        guard fm.fileExists(atPath: path + "/objects"), fm.fileExists(atPath: path + "/refs") else { return [] }
        let head = path + "/HEAD"
        let text = fm.contents(atPath: head).map { String(decoding: $0, as: UTF8.self) }
        if let text, isHead(text) { return [] }
        let target = "refs/heads/" + branch
        do {
            try Data("ref: \(target)\n".utf8).write(to: URL(fileURLWithPath: head), options: .atomic)
        } catch {
            return ["the HEAD file of the state clone \(path) is \(text == nil ? "missing" : "not a reference") and cannot be "
                    + "written again (\(error)); write `ref: \(target)` into \(head)"]
        }
        return ["the HEAD file of the state clone \(path) was \(text == nil ? "missing" : "not a reference (damaged)"); it was "
                + "written again as `ref: \(target)` (Bulwark's clone never checks out: nothing else changes)"]
    }

    /// Whether `text` is what git accepts in HEAD: `ref: refs/…` or a commit id, on one line.
    private static func isHead(_ text: String) -> Bool {
        let line = text.hasSuffix("\n") ? String(text.dropLast()) : text
        guard !line.contains("\n"), !line.contains("\0") else { return false }
        if line.hasPrefix("ref: refs/") {
            let name = line.dropFirst("ref: ".count)
            return !name.contains(" ") && !name.contains("..") && !name.hasSuffix("/") && !name.hasSuffix(".lock")
                && name.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !"~^:?*[\\".unicodeScalars.contains($0) }
        }
        return ObjectID(hex: line) != nil
    }

    /// Opens a damaged clone for reading what can be read: a missing or garbage HEAD is written
    /// again, a configuration libgit2 cannot parse is set aside (as `config.damaged`) for a
    /// minimal one (a valid one is kept), and damaged loose object files are moved to
    /// `damaged-objects` (libgit2 must see them as missing), and an audit branch's reference
    /// file that cannot be read is moved to `damaged-audit-ref` (git cannot update a broken
    /// reference: `git update-ref` refused to point it at the records found). The git CLI reads
    /// it too after this.
    private static func openForSalvage(_ path: String, auditBranch: String) throws -> Repository {
        let repository = try openDamaged(path)
        let reference = path + "/refs/heads/" + auditBranch
        if (try? repository.resolve("refs/heads/\(auditBranch)")) == nil, FileManager.default.fileExists(atPath: reference) {
            try? FileManager.default.removeItem(atPath: path + "/damaged-audit-ref")
            try FileManager.default.moveItem(atPath: reference, toPath: path + "/damaged-audit-ref")
            return try Repository.open(at: path)
        }
        return repository
    }

    private static func openDamaged(_ path: String) throws -> Repository {
        _ = repairHead(at: path, branch: "master")
        let fm = FileManager.default
        let repository: Repository
        do {
            repository = try Repository.open(at: path)
            _ = try repository.remoteURL("origin")
        } catch {
            let config = path + "/config"
            if fm.fileExists(atPath: config) && !fm.fileExists(atPath: config + ".damaged") {
                try fm.moveItem(atPath: config, toPath: config + ".damaged")
            }
            try Data("[core]\n\trepositoryformatversion = 0\n\tbare = true\n".utf8).write(to: URL(fileURLWithPath: config))
            return try quarantineDamagedObjects(Repository.open(at: path), at: path)
        }
        return try quarantineDamagedObjects(repository, at: path)
    }

    private static func quarantineDamagedObjects(_ clone: Repository, at path: String) throws -> Repository {
        let damaged = clone.damagedLooseObjects()
        guard !damaged.isEmpty else { return clone }
        let quarantine = path + "/damaged-objects"
        try FileManager.default.createDirectory(atPath: quarantine, withIntermediateDirectories: true)
        for file in damaged {
            let name = file.split(separator: "/").suffix(2).joined()
            try FileManager.default.moveItem(atPath: file, toPath: quarantine + "/" + name)
        }
        return try Repository.open(at: path)
    }
}
