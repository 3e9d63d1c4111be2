import BulwarkCore
package import BulwarkGit
internal import BulwarkProcess
internal import Synchronization
internal import Glibc
internal import CDispatch
package import Foundation

/// Trusted source: before a revision is applied, every policy commit since the last applied
/// revision must carry an SSH signature that `ssh-keygen -Y verify` accepts against an
/// allowed_signers file. The signer is whoever that file says owns the key, never the name a
/// commit claims. Off unless `--trusted-signers` (or `$BULWARK_TRUSTED_SIGNERS`) names the file.
package struct SourceVerification: Sendable {
    /// The `ssh-keygen -Y` allowed_signers file (`principal namespaces="git" key` lines); nil:
    /// SSH signatures are not trusted.
    package let allowedSigners: String?
    /// An OpenPGP keyring (`gpg --export … > FILE`) for OpenPGP-signed commits, checked with
    /// `gpgv` (`--trusted-keyring`); nil: OpenPGP signatures are not trusted.
    package var trustedKeyring: String?
    /// Which principals may change which paths (`--trust-policy`); nil: any trusted signer may change any path.
    package var trustPolicy: String?
    /// `--initial-revision`: where a state directory with no applied revision starts trusting
    /// the branch (the head must be it or descend from it, every commit after it verified).
    package var initialRevision: ObjectID?

    package init(allowedSigners: String?, trustedKeyring: String? = nil, trustPolicy: String? = nil) {
        self.allowedSigners = allowedSigners
        self.trustedKeyring = trustedKeyring
        self.trustPolicy = trustPolicy
    }

    /// What a verification checked, for the operator.
    package struct Outcome: Sendable, Equatable {
        package var verified: [ObjectID] = []
        /// Said when the check was narrower than the range (no applied revision yet).
        package var note: String?
    }

    /// A revision whose source cannot be trusted: nothing may act on it.
    package struct Refusal: Error, CustomStringConvertible {
        package var problems: [String]
        package var description: String { problems.joined(separator: "\n") }
    }

    /// Longest a single `ssh-keygen` may take; it finishes in milliseconds.
    package static let timeout: TimeInterval = 30

    /// Verifies every commit from the last applied revision (exclusive) to `head`, every parent
    /// of every merge included. Throws `Refusal` naming each commit that fails and why.
    package func verify(head: ObjectID, repository: PolicyRepository, stateDirectory: String) async throws -> Outcome {
        var outcome = Outcome()
        let range: [CommitInfo]
        let last = await Provenance.lastApplied(repository: repository, stateDirectory: stateDirectory, verification: self)
        if let last, let baseline = last.id {
            guard await repository.has(baseline), try await repository.isAncestor(baseline, of: head) else {
                throw Refusal(problems: ["the policy branch was rewritten: \(baseline.short) is not an ancestor of \(head.short)"])
            }
            var commits = try await repository.commits(from: head, since: baseline)
            // A baseline read from the audit branch is only as trustworthy as whoever pushed that
            // record, so it is verified too; the state directory's own file is trusted.
            if last.fromAuditBranch { commits.append(try await repository.commit(baseline)) }
            range = commits
        } else if let anchor = initialRevision {
            guard await repository.has(anchor), try await repository.isAncestor(anchor, of: head) || anchor == head else {
                throw Refusal(problems: ["the policy branch is at \(head.short), which does not descend from --initial-revision "
                                         + "\(anchor.short): an older revision pushed back over it, or another repository"])
            }
            range = try await repository.commits(from: head, since: anchor) + [try await repository.commit(anchor)]
        } else {
            range = [try await repository.commit(head)]
            outcome.note = "no applied revision found in this state directory or on the audit branch (a new repository, "
                + "or the branch was deleted or rewritten): only the signature of \(head.short) is verified (an older signed revision pushed back over the branch "
                + "cannot be told from the current one: give --initial-revision)"
        }
        if let last, !last.untrusted.isEmpty {
            outcome.note = [outcome.note, "\(last.untrusted.count) applied record(s) on the audit branch were not used as "
                            + "the last applied revision: " + last.untrusted.prefix(3).joined(separator: "; ")]
                .compactMap { $0 }.joined(separator: "; ")
        }
        for (file, what) in [(allowedSigners, "trusted signers file"), (trustedKeyring, "trusted keyring"), (trustPolicy, "trust policy")] {
            if let file, !FileManager.default.isReadableFile(atPath: file) {
                throw Refusal(problems: ["cannot read the \(what) \(file): no commit can be verified"])
            }
            if let file, let problem = Self.writableByOthers(file) {
                throw Refusal(problems: ["the \(what) \(file) \(problem): whoever can write it chooses whose signatures are "
                                         + "trusted; no commit is verified against it (chmod go-w, and keep it out of the policy checkout)"])
            }
        }
        let rules: TrustPolicy?
        do { rules = try trustPolicy.map(TrustPolicy.load) } catch {
            throw Refusal(problems: ["\(error)"])
        }
        let folder = try Self.privateFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var problems: [String] = []
        for commit in range {
            if let problem = try await check(commit, repository: repository, folder: folder, rules: rules) {
                problems.append("commit \(commit.id.short) (\(quotedForMessage(commit.author.name)) <\(quotedForMessage(commit.author.email))>, "
                                + "\"\(quotedForMessage(commit.summary))\"): \(problem)")
            } else {
                outcome.verified.append(commit.id)
            }
        }
        // A proposal is signed by Bulwark's key, which the signers file trusts (`accept` checks
        // proposals with it): pushed to the policy branch as it is, it would go live without
        // the person's review and every check `accept` makes, and so would one someone later
        // committed on top of without looking. Merged, it is a second parent of a merge commit a
        // person signed, or `accept` made a commit of its own; Bulwark's own merges say
        // `auto-merged`. So no proposal may be on the branch's own line (first parents).
        let byID = Dictionary(range.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var line: CommitInfo? = byID[head]
        if line == nil { line = try await repository.commit(head) }
        while let commit = line {
            if let proposal = commit.trailer(AuditTrailer.proposal.rawValue), proposal == "proposed" || proposal == "closed" {
                problems.append("commit \(commit.id.short) is a proposal Bulwark wrote for review (\(AuditTrailer.proposal.rawValue): "
                                + "\(proposal)), put on the policy branch as it is: merge a proposal with `bulwark accept` or a "
                                + "merge commit (`git merge --no-ff`) a trusted person signs")
            }
            line = commit.parents.first.flatMap { byID[$0] }
        }
        guard problems.isEmpty else { throw Refusal(problems: problems) }
        return outcome
    }

    /// Why a file that decides whom Bulwark trusts could be changed by someone other than its
    /// owner and root, or nil (`StrictModes`): it belongs to another user or group and others
    /// may write it, or a folder above it fails `StrictModes.folderDoubt`.
    static func writableByOthers(_ path: String) -> String? {
        var current = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        var info = stat()
        guard stat(current, &info) == 0 else { return nil }
        guard StrictModes.trusted(info.st_uid) else { return "belongs to another user (uid \(info.st_uid))" }
        if info.st_mode & 0o022 != 0 { return "is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8)))" }
        while current != "/" {
            current = (current as NSString).deletingLastPathComponent
            if current.isEmpty { current = "/" }
            guard stat(current, &info) == 0 else { return nil }
            if let doubt = StrictModes.folderDoubt(info) { return "is in \(current), which \(doubt)" }
        }
        return nil
    }

    /// Why `commit` on its own is not trusted (its signature, and the trust policy for what it
    /// changes), or nil when it is.
    package func problem(with commit: CommitInfo, repository: PolicyRepository) async -> String? {
        do {
            let rules = try trustPolicy.map(TrustPolicy.load)
            let folder = try Self.privateFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            return try await check(commit, repository: repository, folder: folder, rules: rules)
        } catch {
            return "its signature cannot be checked: \(error)"
        }
    }

    /// Why `commit`'s signature is not trusted, or nil when it is.
    private func check(_ commit: CommitInfo, repository: PolicyRepository, folder: String, rules: TrustPolicy?) async throws -> String? {
        guard let signed = try await repository.signature(of: commit.id) else { return "the commit is not signed" }
        switch try verifyAny(signed, commit: commit.id, folder: folder) {
        case .success(let principal):
            guard let rules else { return nil }
            let refused = try await repository.pathsChanged(by: commit).compactMap { rules.refusal(of: principal, changing: $0) }
            return refused.isEmpty ? nil : "signed by \(quotedForMessage(principal)), who may not change what it changes: "
                + refused.prefix(10).joined(separator: "; ") + (refused.count > 10 ? "; … and \(refused.count - 10) more" : "")
        case .failure(let problem): return problem.description
        }
    }

    /// The principal whose trusted key signed `commit`, or why there is none. With `proposer`,
    /// only that signer counts: for SSH, a principal the trusted signers file lists for the key
    /// (`ssh-keygen -Y verify -I proposer`, compared exactly); for OpenPGP, the full fingerprint
    /// of the signing key or of its primary key (never a user id, which its holder chooses).
    package func signer(of commit: CommitInfo, repository: PolicyRepository, proposer: String? = nil) async -> Result<String, Untrusted> {
        do {
            guard let signed = try await repository.signature(of: commit.id) else {
                return .failure(Untrusted(description: "the commit is not signed"))
            }
            let folder = try Self.privateFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            return try verifyAny(signed, commit: commit.id, folder: folder, proposer: proposer)
        } catch {
            return .failure(Untrusted(description: "its signature cannot be checked: \(error)"))
        }
    }

    /// Whether a principal pattern of the allowed_signers file (`a@x,*@y` in its first field)
    /// matches `address`, case aside. An unreadable file matches: the name is then not used.
    static func sshPrincipalsMatch(_ address: String, allowedSigners: String) -> Bool {
        guard let text = try? String(contentsOfFile: allowedSigners, encoding: .utf8) else { return true }
        let wanted = address.lowercased()
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#"), let first = trimmed.split(separator: " ").first else { continue }
            let patterns = first.replacingOccurrences(of: "\"", with: "").lowercased().split(separator: ",")
            if patterns.contains(where: { fnmatch(String($0), wanted, 0) == 0 }) { return true }
        }
        return false
    }

    /// An SSH signature against the trusted signers, an OpenPGP one against the trusted keyring.
    package func verifyAny(_ signed: CommitSignature, commit: ObjectID, folder: String, proposer: String? = nil) throws
        -> Result<String, Untrusted> {
        if signed.signature.starts(with: Array("-----BEGIN PGP SIGNATURE-----".utf8)) {
            guard let trustedKeyring else {
                return .failure(Untrusted(description: "the commit is signed with OpenPGP, and no --trusted-keyring is given"))
            }
            let named = try Self.verifyOpenPGP(signed, commit: commit, keyring: trustedKeyring, folder: folder, fingerprint: proposer)
            // An address that is also a principal of the trusted signers file names that person's
            // SSH key: a user id (whatever its holder wrote) must not take her name. The key is
            // then named by its fingerprint.
            if proposer == nil, case .success(let address) = named, address.contains("@"), let allowedSigners,
               Self.sshPrincipalsMatch(address, allowedSigners: allowedSigners) {
                return try Self.verifyOpenPGP(signed, commit: commit, keyring: trustedKeyring, folder: folder, byFingerprint: true)
            }
            return named
        }
        guard let allowedSigners else {
            return .failure(Untrusted(description: signed.signature.starts(with: Array("-----BEGIN SSH SIGNATURE-----".utf8))
                ? "the commit is signed with SSH, and no --trusted-signers is given"
                : "the commit is not signed with OpenPGP (set gpg.format to openpgp)"))
        }
        return try Self.verifySSH(signed, commit: commit, allowedSigners: allowedSigners, folder: folder, principal: proposer)
    }

    /// Why a signature is not trusted, in words.
    package struct Untrusted: Error, CustomStringConvertible {
        package var description: String

        package init(description: String) { self.description = description }
    }

    /// The principal of `allowedSigners` whose key made `signed`, checked by `ssh-keygen -Y verify`
    /// (namespace `git`, the file's validity options), or why not; with `principal`, whether
    /// the file lists the key that made it for exactly that principal. Throws only when the check
    /// itself cannot run (files cannot be written, ssh-keygen cannot be started).
    package static func verifySSH(_ signed: CommitSignature, commit: ObjectID, allowedSigners: String, folder: String,
                                  principal required: String? = nil) throws -> Result<String, Untrusted> {
        guard signed.signature.starts(with: Array("-----BEGIN SSH SIGNATURE-----".utf8)) else {
            return .failure(Untrusted(description: "the commit is not signed with an SSH key (set gpg.format to ssh)"))
        }
        let notListed = Untrusted(description: "it is signed by a key that is not in the trusted signers file \(allowedSigners) "
                                  + "(or whose valid-after/valid-before there does not include now)")
        // Whether the file lists the key is asked once per key (`ListedKeys`): commits signed by a
        // made-up key (anyone with push access can sign any number) must not cost a process each.
        if let parsed = SSHSignature(armored: signed.signature) {
            guard try ListedKeys.listed(parsed.publicKey, in: allowedSigners, folder: folder) else { return .failure(notListed) }
            // Nor a listed key's signature copied onto other commits: for ed25519 the arithmetic
            // says it was not made over this commit, which ssh-keygen would say a process each.
            if parsed.publicKeyLine?.hasPrefix("ssh-ed25519 ") == true, !parsed.isValidEd25519(of: signed.signedData) {
                return .failure(Untrusted(description: "its signature, by a key of \(allowedSigners), does not verify: it was not "
                                          + "made over this commit (copied from another)"))
            }
        } else if !UnparsedSignatures.mayCheck() {
            // Nor may garbage: ssh-keygen reads a little more than Bulwark does (it is the judge of
            // what it accepts), so it gets a few a minute, never thousands.
            return .failure(Untrusted(description: "its signature is not one Bulwark can read, and more than "
                                      + "\(UnparsedSignatures.perMinute) such signatures came within a minute: the rest are "
                                      + "refused without asking ssh-keygen"))
        }
        let signatureFile = folder + "/commit.sig"
        let dataFile = folder + "/commit.data"
        for (path, bytes) in [(signatureFile, signed.signature), (dataFile, signed.signedData)] {
            unlink(path)
            guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
                throw CommandError("cannot write \(path) to verify commit \(commit.short)")
            }
        }
        let found = try Self.sshKeygen(["-Y", "find-principals", "-s", signatureFile, "-f", allowedSigners], folder: folder)
        let principals = found.output.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        guard found.status == 0, let first = principals.first else { return .failure(notListed) }
        if let required, !principals.contains(required) {
            return .failure(Untrusted(description: "it is signed by \(principals.map { "'\(quotedForMessage($0))'" }.joined(separator: ", ")), "
                                      + "not by the proposer '\(quotedForMessage(required))'"))
        }
        let principal = required ?? first
        let verified = try Self.sshKeygen(["-Y", "verify", "-f", allowedSigners, "-I", principal, "-n", "git", "-s", signatureFile],
                                          input: dataFile, folder: folder)
        guard verified.status == 0 else {
            let reason = verified.errors.split(whereSeparator: \.isNewline).last.map(String.init) ?? "exit \(verified.status)"
            return .failure(Untrusted(description: "the signature of \(quotedForMessage(principal)) does not verify: "
                                      + quotedForMessage(reason, limit: 200)))
        }
        return .success(principal)
    }

    /// A folder only this user can read, for the signature and the signed bytes.
    package static func privateFolder() throws -> String {
        var template = Array((NSTemporaryDirectory() + "/bulwark-verify-XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else { throw CommandError("cannot create a temporary folder to verify signatures") }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The `ssh-keygen` on the PATH, else the usual place.
    package static var executable: String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(folder)/ssh-keygen") {
            return "\(folder)/ssh-keygen"
        }
        return "/usr/bin/ssh-keygen"
    }

    /// Runs ssh-keygen with output captured in files (no pipe to fill), killed after `timeout`.
    private static func sshKeygen(_ arguments: [String], input: String? = nil, folder: String) throws
        -> (status: Int32, output: String, errors: String) {
        try runTool(executable, arguments, input: input, folder: folder)
    }

    /// Runs a verifying tool through the one bounded runner (output in files, killed after `timeout`).
    package static func runTool(_ executable: String, _ arguments: [String], input: String? = nil, folder: String) throws
        -> (status: Int32, output: String, errors: String) {
        do {
            let result = try BoundedProcess.run(executable, arguments, input: input, folder: folder, timeout: .seconds(timeout))
            return (result.status, result.output, result.errors)
        } catch {
            switch error.reason {
            case .cannotCreateOutput: throw CommandError("cannot create output files in \(folder) to verify signatures")
            case .cannotStart: throw CommandError("\(error.description) to verify signatures")
            case .timedOut: throw CommandError(error.description)
            }
        }
    }
}

/// Whether an allowed_signers file lists a key, as `ssh-keygen -Y find-principals` answers it for
/// a signature that carries only that key: find-principals reads the key out of the signature and
/// never checks the signature's bytes, so its answer is the file's, for that key, now. Asked once
/// per key, version of the file (its identity, size and times) and minute (a line's valid-after
/// and valid-before move with the clock), not once per commit: thousands of records signed by one
/// made-up key cost two runs (a "not listed" is kept only when it holds a minute later too).
/// ssh-keygen reads the file, so every way it can be written counts.
enum ListedKeys {
    private static let answers = Mutex<[String: (listed: Bool, at: ContinuousClock.Instant)]>([:])
    /// How long an answer holds.
    static let lifetime: Duration = .seconds(60)
    /// Answers kept at most (all are dropped when full).
    static let capacity = 4096

    /// `time`: when the file is read for (its valid-after and valid-before); now unless a test says.
    static func listed(_ key: [UInt8], in file: String, folder: String, at time: Date = Date()) throws -> Bool {
        var info = stat()
        guard stat(file, &info) == 0 else { return true }  // ssh-keygen says why
        let cacheKey = [file, "\(info.st_dev) \(info.st_ino) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec) "
                        + "\(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)", Data(key).base64EncodedString()].joined(separator: "\u{0}")
        let now = ContinuousClock.now
        if let known = answers.withLock({ $0[cacheKey] }), now - known.at < lifetime { return known.listed }
        let path = folder + "/key.sig"
        unlink(path)
        guard FileManager.default.createFile(atPath: path, contents: Data(SSHSignature.carrying(publicKey: key).utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw CommandError("cannot write \(path) to look the signing key up")
        }
        func ask(at time: Date) throws -> Bool {
            let found = try SourceVerification.runTool(SourceVerification.executable,
                                                       ["-Y", "find-principals", "-s", path, "-f", file, "-O", "verify-time=" + verifyTime(time)],
                                                       folder: folder)
            return found.status == 0 && !found.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
        let listed = try ask(at: time)
        // "Listed" is checked again by `-Y verify`, at its own time. "Not listed" is kept only if it
        // still holds when it expires: a valid-after that passes within the minute is not waited out.
        let holds = try listed || !ask(at: time.addingTimeInterval(Double(lifetime.components.seconds)))
        if holds {
            answers.withLock { answers in
                if answers.count >= capacity { answers.removeAll() }
                answers[cacheKey] = (listed, now)
            }
        }
        return listed
    }

    /// `time` as ssh-keygen's `verify-time` takes it, in UTC.
    static func verifyTime(_ time: Date) -> String {
        var seconds = time_t(time.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d%02d%02d%02d%02d%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec)
    }
}

/// Signatures Bulwark cannot read (not an armored SSHSIG it parses) are still handed to
/// ssh-keygen, whose reading is the one that counts, but at most `perMinute` a minute in a
/// process: a branch of garbage-signed commits costs a few processes, not one each.
enum UnparsedSignatures {
    static let perMinute = 16
    private static let window = Mutex<(start: ContinuousClock.Instant, used: Int)>((.now, 0))

    /// Whether one more may go to ssh-keygen now (counted when it may).
    static func mayCheck(now: ContinuousClock.Instant = .now) -> Bool {
        window.withLock { window in
            if now - window.start >= .seconds(60) { window = (now, 0) }
            guard window.used < perMinute else { return false }
            window.used += 1
            return true
        }
    }
}
