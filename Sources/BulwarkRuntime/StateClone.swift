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
    /// repaired, in words.
    package static func open(at path: String, url: String, branch: String, auditBranch: String,
                     access: RemoteAccess, signer: (any CommitSigner)? = nil) throws -> (Repository, [String]) {
        let fm = FileManager.default
        guard fm.fileExists(atPath: path) else {
            return (try create(at: path, url: url), [])
        }
        let problem: String
        do {
            let repository = try Repository.open(at: path)
            let damaged = repository.damagedLooseObjects()
            guard damaged.isEmpty else {
                throw CommandError("\(damaged.count) damaged object file(s): " + damaged.prefix(3).joined(separator: ", "))
            }
            try verify(repository, branch: branch, auditBranch: auditBranch)
            return (repository, packLooseObjects(repository, at: path))
        } catch {
            problem = (error as? GitError)?.description ?? "\(error)"
        }
        return try rebuild(at: path, url: url, auditBranch: auditBranch, access: access, problem: problem, signer: signer)
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
    /// an error: records beyond it may be lost.
    package static func salvage(_ repository: Repository, auditBranch: String, known: Set<String>,
                        onOrigin: (ObjectID) -> Bool) throws -> [Salvaged] {
        guard var next = try repository.resolve("refs/heads/\(auditBranch)") else { return [] }
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

    private static func rebuild(at path: String, url: String, auditBranch: String, access: RemoteAccess,
                                problem: String, signer: (any CommitSigner)?) throws -> (Repository, [String]) {
        let fm = FileManager.default
        let stamp = Timestamp.format(Date()).filter { $0.isNumber }
        let aside = path + ".damaged-" + stamp
        do {
            try fm.moveItem(atPath: path, toPath: aside)
        } catch {
            throw CommandError("the state clone \(path) is damaged (\(problem)) and cannot be moved aside (\(error)); "
                               + "move it away by hand and run again: Bulwark fetches a new one")
        }
        var messages = ["the state clone \(path) failed its checks (\(problem)); it was moved to \(aside) and is being cloned again from \(redactedURL(url))"]

        let repository: Repository
        do {
            // Not seeded (`create`): salvage takes an object in the clone for one the origin
            // has, and a seed brings the origin's unreferenced objects too (a push whose
            // reference update lost), which would pass unpushed records for pushed ones.
            repository = try Repository.create(at: path, bare: true)
            try repository.ensureRemote("origin", url: url)
            try repository.fetch(remote: "origin", refspecs: ["+refs/heads/*:refs/remotes/origin/*"], access: access)
        } catch {
            // Without the origin, what was pushed cannot be told from what was not: put the
            // damaged clone back untouched and say so.
            try? fm.removeItem(atPath: path)
            try? fm.moveItem(atPath: aside, toPath: path)
            throw CommandError("the state clone \(path) is damaged (\(problem)) and cannot be repaired now: "
                               + "\(redactedURL(url)) cannot be fetched (\(error.message)). Nothing was changed; run again "
                               + "when the origin answers, and Bulwark re-clones it keeping the records not yet pushed")
        }
        let localAudit = "refs/heads/\(auditBranch)"
        let remote = try repository.resolve("refs/remotes/origin/\(auditBranch)")
        var known = Set<String>()
        if let remote {
            for commit in try repository.history(from: remote) { if let id = commit.trailer(.id) { known.insert(id) } }
        }
        // Read what was never pushed from the damaged clone, with a stand-in configuration
        // when its own cannot be parsed.
        var salvaged: [Salvaged]?
        var salvageProblem = ""
        do {
            let damagedClone = try openForSalvage(aside)
            // Damaged object files are set aside first: libgit2 must see them as missing.
            let damaged = damagedClone.damagedLooseObjects()
            if !damaged.isEmpty {
                let quarantine = aside + "/damaged-objects"
                try fm.createDirectory(atPath: quarantine, withIntermediateDirectories: true)
                for file in damaged {
                    let name = file.split(separator: "/").suffix(2).joined()
                    try fm.moveItem(atPath: file, toPath: quarantine + "/" + name)
                }
            }
            salvaged = try salvage(Repository.open(at: aside), auditBranch: auditBranch, known: known,
                                   onOrigin: { (try? repository.contains($0)) ?? false })
        } catch {
            salvageProblem = (error as? GitError)?.description ?? "\(error)"
        }

        if let salvaged {
            var head = remote
            var kept = 0
            for commit in salvaged where commit.id.map({ !known.contains($0) }) ?? true {
                head = try repository.writeCommit(adding: commit.files, parent: head, message: commit.message,
                                                  author: commit.author, signer: signer)
                kept += 1
            }
            if let head { try repository.updateReference(localAudit, to: head, expected: nil, message: "bulwark: repaired clone") }
            messages.append(kept == 0 ? "no unpushed audit records were in it"
                            : "\(kept) unpushed audit record(s) were read from it and recorded again; they go out with the next push")
            messages.append("nothing was lost; remove \(aside) when you no longer need it")
        } else {
            if let remote { try repository.updateReference(localAudit, to: remote, expected: nil, message: "bulwark: repaired clone") }
            messages.append("audit records written but not yet pushed could not be read from it (\(salvageProblem)): they are not "
                            + "on \(redactedURL(url)) and would be lost. They are still in \(aside): list them with "
                            + "`git --git-dir \(aside) fsck --lost-found` and `git --git-dir \(aside) log \(localAudit)`, "
                            + "and push any you find to \(auditBranch) by hand")
        }
        let text = messages.joined(separator: "; ")
        Console().warn(text)
        return (repository, [text])
    }

    /// Opens a damaged clone for reading what can be read; a configuration libgit2 cannot parse
    /// is set aside (as `config.damaged`) for a minimal one.
    private static func openForSalvage(_ path: String) throws -> Repository {
        do {
            return try Repository.open(at: path)
        } catch {
            let config = path + "/config"
            try FileManager.default.moveItem(atPath: config, toPath: config + ".damaged")
            try Data("[core]\n\trepositoryformatversion = 0\n\tbare = true\n".utf8).write(to: URL(fileURLWithPath: config))
            return try Repository.open(at: path)
        }
    }
}
