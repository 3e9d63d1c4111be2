internal import ArgumentParser
internal import BulwarkCore
internal import BulwarkRuntime
internal import BulwarkGit
internal import Foundation

/// "Plan what you apply" (terraform's convention): `bulwark plan --out FILE` saves the plan a
/// person reviews, and `bulwark apply --plan FILE` applies exactly it: the desired state at the
/// plan's commit (never a newer branch head), and only the fixes the file lists with the same
/// observed and desired values. Anything else that would change a system is deferred.
///
/// The file is the JSON `plan --output json` prints (`PlanReport`): sensitive values are redacted
/// in it, so a sensitive property is matched by its name and the pinned revision's desired value.
enum PlanFile {
    /// A plan file larger than this is not one `bulwark plan` wrote.
    static let maxSize = 16 << 20

    /// A plan file that cannot be used (exit 64: it is the caller's mistake, nothing was done).
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What identifies a reviewed fix: the binding, the decision, and each change as shown.
    struct Key: Hashable, Sendable {
        var controller: String
        var target: String
        var resource: String
        var decision: Decision
        var changes: [PlanReport.Change]

        init(controller: String, target: String, resource: String, decision: Decision, changes: [PlanReport.Change]) {
            self.controller = controller
            self.target = target
            self.resource = resource
            self.decision = decision
            self.changes = changes.sorted { $0.property < $1.property }
        }

        init(_ remediation: PlannedRemediation) {
            self.init(controller: remediation.binding.controller, target: remediation.binding.target,
                      resource: remediation.binding.resource.description, decision: remediation.decision,
                      changes: remediation.changes.map(PlanReport.Change.init))
        }
    }

    /// A plan file as read back: its path (as given), its revision and its reviewed fixes.
    struct Reviewed: Sendable {
        var path: String
        var revision: ObjectID
        var fixes: Set<Key>
        /// What each target's exclusive claim was when the plan was made (`Plan.targetIdentities`);
        /// empty for a file that carries none.
        var identities: [String: String] = [:]

        /// A reviewed plan the branch has moved away from: refused (exit 1), nothing changed or recorded.
        struct Stale: Error, CustomStringConvertible {
            var description: String
        }

        /// Refuses (exit 1, nothing changed) when the branch, which moved past the reviewed commit
        /// to `head`, now holds a reviewed fix: its resource protected since, given a stricter
        /// mode (`Brakes`), renamed, removed, or pointed at another object. A brake committed in `desired-state/` counts as one in `controllers/`
        /// (`RevisionPin.check`): a plan loaded at its older commit must not bypass it.
        func checkBrakes(head: ObjectID, reviewed: DesiredState, in repository: PolicyRepository, branch: String) async throws(Stale) {
            let files: [SourceFile]
            do {
                files = try await repository.files(at: head)
            } catch {
                throw Stale(description: "the plan \(path) was made at \(revision.hex), and the branch \(branch) is now at \(head.hex), "
                            + "which cannot be read (\(error)); nothing was changed. Plan again.")
            }
            let now: DesiredState
            do {
                now = try DesiredStateLoader(registry: Bulwark.registry()).load(files, revision: Revision(head))
            } catch {
                throw Stale(description: "the plan \(path) was made at \(revision.hex), and the branch \(branch) is now at \(head.hex), "
                                   + "which is not a valid revision (\(error.errors.first.map { "\($0)" } ?? "invalid")): whether it "
                                   + "holds a reviewed fix back cannot be told; nothing was changed. Fix the branch, then plan again.")
            }
            let before = Brakes(reviewed), after = Brakes(now)
            let keys = Set(fixes.lazy.filter { $0.decision == .applied }.map { [$0.controller, $0.target, $0.resource] })
            // The head may bind the resource to another controller (its labels changed).
            let bound = Dictionary(grouping: now.bindings) { [$0.target, $0.resource.description] }
            var stopped: [String] = []
            for binding in reviewed.bindings where keys.contains([binding.controller, binding.target, binding.resource.description]) {
                guard let mode = before.mode(of: binding), let then = reviewed.resources[binding.resource] else { continue }
                // Renamed or removed since: the fix would change what the head does not manage as
                // reviewed (a rename can carry a brake under the new name). The same for a resource
                // that points at another object now (its protection is judged on that one).
                guard let resource = now.resources[binding.resource] else {
                    stopped.append("\(binding.target) \(binding.resource): no longer in the desired state (renamed or removed)")
                    continue
                }
                if resource.spec.subject != then.spec.subject {
                    stopped.append("\(binding.target) \(binding.resource): it is about \(quotedForMessage(resource.spec.subject)) now, "
                                   + "not \(quotedForMessage(then.spec.subject))")
                } else if let protection = after.protection(of: resource, on: binding.target) {
                    stopped.append("\(binding.target) \(binding.resource): \(protection)")
                } else if let strictest = (bound[[binding.target, binding.resource.description]] ?? []).compactMap(after.mode(of:)).max() {
                    if strictest > mode {
                        stopped.append("\(binding.target) \(binding.resource): its mode is \(strictest.rawValue) now, not \(mode.rawValue)")
                    }
                } else {
                    // Taken off that target (its `targets:` changed): as a resource removed.
                    stopped.append("\(binding.target) \(binding.resource): no longer bound to \(binding.target)")
                }
            }
            guard stopped.isEmpty else {
                let shown = stopped.sorted().prefix(5).joined(separator: "; ") + (stopped.count > 5 ? "; and \(stopped.count - 5) more" : "")
                throw Stale(description: "the plan \(path) was made at \(revision.hex), and since then \(branch) (now at \(head.hex)) holds "
                                   + "reviewed fixes back: \(shown). A brake in force now must not be bypassed by an older plan; "
                                   + "nothing was changed. Plan again.")
            }
        }

        /// `plan` with every fix or prune that the file does not list exactly turned into
        /// `deferred` ("not in the reviewed plan FILE"): drift that appeared or changed after the
        /// review waits for the next plan. Decisions that change nothing are kept as they are.
        func restrict(_ plan: Plan) -> Plan {
            var plan = plan
            // A fix writes only where the reviewed plan looked: a target's network namespace is
            // checked against the identity the file carries, not the one this run's plan found
            // (a name re-bound since the review would pass that check: `PlannedTargets`).
            plan.targetIdentities.merge(identities) { _, reviewed in reviewed }
            for index in plan.remediations.indices {
                let remediation = plan.remediations[index]
                guard remediation.decision == .applied || remediation.decision == .pruned,
                      !fixes.contains(Key(remediation)) else { continue }
                plan.remediations[index].decision = .deferred
                plan.remediations[index].reason = "not in the reviewed plan \(path)"
                // An approval is used once, by the fix it lets through: not by a deferral.
                plan.remediations[index].id = nil
                plan.remediations[index].approver = nil
                plan.remediations[index].approvalID = nil
            }
            return plan
        }
    }

    /// The fields `apply --plan` reads; other fields of the report are ignored.
    private struct Document: Decodable {
        struct Item: Decodable {
            var controller: String
            var target: String
            var resource: String
            var decision: Decision
            var changes: [PlanReport.Change]
        }

        var schemaVersion: Int
        var revision: String
        var drift: [Item]
        var targetIdentities: [String: String]?
    }

    /// Writes `report` to `path` atomically (a temporary file in the same folder, synced, then
    /// renamed over it) with mode 0600: the file holds observed values of the systems.
    static func write(_ report: PlanReport, to path: String) throws {
        let bytes: [UInt8]
        do {
            bytes = Array(try Console.jsonEncoder().encode(report)) + [10]
        } catch {
            throw CommandError("cannot encode the plan: \(error)")
        }
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        var template = Array((folder + "/." + url.lastPathComponent + ".XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.map { mkstemp($0) } ?? -1
        }
        _ = fd >= 0 ? fcntl(fd, F_SETFD, FD_CLOEXEC) : 0
        guard fd >= 0 else { throw CommandError("cannot write the plan to \(path): \(String(cString: strerror(errno)))") }
        let temporary = template.withUnsafeBufferPointer { buffer in
            buffer.baseAddress.map { String(cString: $0) } ?? ""
        }
        func fail(_ what: String) -> CommandError {
            let message = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            return CommandError("cannot write the plan to \(path): \(what): \(message)")
        }
        guard fchmod(fd, 0o600) == 0 else { throw fail("fchmod") }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(fd, buffer.baseAddress.map { $0 + offset }, bytes.count - offset)
            }
            if written > 0 {
                offset += written
            } else if !(written < 0 && errno == EINTR) {
                throw fail("write")
            }
        }
        guard fsync(fd) == 0 else { throw fail("fsync") }
        guard close(fd) == 0 else {
            unlink(temporary)
            throw CommandError("cannot write the plan to \(path): close: \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw CommandError("cannot write the plan to \(path): rename: \(message)")
        }
        // The rename itself is durable once the folder is synced.
        let directory = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }

    /// Reads and checks a plan file: a regular file of at most `maxSize` bytes, JSON with this
    /// build's `schemaVersion`, a full commit id, and its drift.
    static func read(_ path: String) throws(Failure) -> Reviewed {
        let bytes: [UInt8]
        do {
            bytes = try NamedFile.read(path, maxSize: maxSize)
        } catch {
            switch error {
            case .cannotOpen(let code), .cannotRead(let code):
                throw Failure(description: "cannot read the plan file \(path): \(String(cString: strerror(code)))")
            case .notRegularFile:
                throw Failure(description: "the plan file \(path) is not a regular file")
            case .tooLarge:
                throw Failure(description: "the plan file \(path) is larger than \(maxSize >> 20) MiB: not a plan `bulwark plan --out` wrote")
            }
        }
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(bytes))
        } catch {
            throw Failure(description: "\(path) is not a plan file written by `bulwark plan --out`: \(describe(error))")
        }
        guard document.schemaVersion == JSONSchema.version else {
            throw Failure(description: "\(path) has schemaVersion \(document.schemaVersion); this bulwark reads "
                          + "schemaVersion \(JSONSchema.version): plan again with this version")
        }
        guard let revision = ObjectID(hex: document.revision) else {
            throw Failure(description: "\(path): revision '\(quotedForMessage(document.revision))' is not a full commit id")
        }
        let fixes = document.drift.map {
            Key(controller: $0.controller, target: $0.target, resource: $0.resource, decision: $0.decision, changes: $0.changes)
        }
        return Reviewed(path: path, revision: revision, fixes: Set(fixes), identities: document.targetIdentities ?? [:])
    }

    /// A decoding error in a line: where in the document, and what was wrong.
    static func describe(_ error: any Error) -> String {
        func named(_ path: [any CodingKey]) -> String {
            let parts: [String] = path.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }
            let joined: String = parts.joined()
            return joined.hasPrefix(".") ? String(joined.dropFirst()) : joined
        }
        func at(_ context: DecodingError.Context) -> String {
            let path = named(context.codingPath)
            return (path.isEmpty ? "" : path + ": ") + context.debugDescription
        }
        switch error as? DecodingError {
        case .dataCorrupted(let context)?, .typeMismatch(_, let context)?: return at(context)
        // Said in plain words, not as Swift's `No value associated with key CodingKeys(…)`.
        case .valueNotFound(_, let context)?: return "the field '\(quotedForMessage(named(context.codingPath)))' is null"
        case .keyNotFound(let key, let context)?: return "the field '\(quotedForMessage(named(context.codingPath + [key])))' is missing"
        default: return "\(error)"
        }
    }
}

/// The revision `apply` is pinned to.
enum RevisionPin: Sendable {
    /// `--revision SHA`: the branch head must be exactly this commit.
    case head(ObjectID)
    /// `--plan FILE`: the plan's commit, which must be the branch head or one of its ancestors.
    case reviewed(ObjectID, file: String)

    /// The commit to load, or an error (exit 1, nothing done) when the branch is not where the pin
    /// allows: a plan made on a history that was rewritten, or a head that moved past `--revision`.
    ///
    /// A plan whose commit is behind the head is refused when it would undo what came since:
    /// - `controllers/`, `waivers/` or `approvals/` changed since its commit: a pause, a waiver
    ///   (`revert`'s too), a revoked approval, a controller turned to dry-run or a target taken
    ///   out now in force would be bypassed by desired state loaded at the older commit;
    /// - a later revision was applied from `stateDirectory` since: the baseline weakenings are
    ///   judged against would move backwards.
    /// A brake committed in `desired-state/` on a fix the plan lists is `Reviewed.checkBrakes`.
    func check(head: ObjectID, in repository: PolicyRepository, branch: String, stateDirectory: String? = nil) async throws -> ObjectID {
        switch self {
        case .head(let revision):
            guard revision == head else {
                throw CommandError("the branch \(branch) is at \(head.hex), not \(revision.hex); nothing was changed")
            }
            return revision
        case .reviewed(let revision, let file):
            guard await repository.isAncestorOrEqual(revision, of: head) else {
                throw CommandError("the plan \(file) was made at \(revision.hex), which is not on the branch \(branch) "
                                   + "(now at \(head.hex)): its history was rewritten, or the plan is from another "
                                   + "repository; nothing was changed. Plan again.")
            }
            guard revision != head else { return revision }
            let brakes = try await repository.pathsChanged(from: revision, to: head)
                .filter { $0.hasPrefix("controllers/") || $0.hasPrefix("waivers/") || $0.hasPrefix("approvals/") }
            if !brakes.isEmpty {
                let shown = brakes.prefix(5).joined(separator: ", ") + (brakes.count > 5 ? " and \(brakes.count - 5) more" : "")
                throw CommandError("the plan \(file) was made at \(revision.hex), and since then \(shown) changed on \(branch) "
                                   + "(now at \(head.hex)): a pause, waiver, approval or controller in force now must not be bypassed by "
                                   + "an older plan; nothing was changed. Plan again.")
            }
            if let stateDirectory,
               let applied = (try? String(contentsOfFile: Provenance.baselineFile(stateDirectory), encoding: .utf8))
                .flatMap({ ObjectID(hex: $0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
               applied != revision, (try? await repository.isAncestor(revision, of: applied)) == true {
                throw CommandError("the plan \(file) was made at \(revision.hex), before \(applied.hex), which was applied "
                                   + "since: applying it would take the desired state back; nothing was changed. Plan again.")
            }
            return revision
        }
    }
}

/// `apply --plan FILE` and `apply --revision SHA`.
struct ReviewOptions: ParsableArguments {
    @Option(name: .customLong("plan"),
            help: ArgumentHelp("Apply exactly the plan `bulwark plan --out` saved: the desired state at its commit, and only its fixes (anything else is deferred).",
                               valueName: "file"))
    var planFile: String?

    @Option(help: ArgumentHelp("Apply only if the branch is at this commit (a full commit id); otherwise change nothing and exit 1.",
                               valueName: "sha"))
    var revision: String?

    func validate() throws {
        if planFile != nil, revision != nil {
            throw ValidationError("--plan and --revision cannot be used together: the plan file names its revision")
        }
        if let planFile, planFile.isEmpty { throw ValidationError("--plan must not be empty") }
        if let revision, ObjectID(hex: revision.lowercased()) == nil {
            throw ValidationError("--revision '\(quotedForMessage(revision))' is not a full commit id (40 hex digits)")
        }
    }

    /// What the options ask for, with the plan file read; exits 64 when the file cannot be used.
    func review(_ console: Console) throws -> Review? {
        if let revision, let id = ObjectID(hex: revision.lowercased()) {
            return Review(pin: .head(id), plan: nil)
        }
        guard let planFile else { return nil }
        do {
            let plan = try PlanFile.read(planFile)
            return Review(pin: .reviewed(plan.revision, file: planFile), plan: plan)
        } catch {
            console.error(error.description)
            throw ExitCode.validationFailure
        }
    }
}

/// A pinned revision, and for `--plan` the fixes that were reviewed.
struct Review: Sendable {
    var pin: RevisionPin
    var plan: PlanFile.Reviewed?

    func restrict(_ plan: Plan) -> Plan { self.plan?.restrict(plan) ?? plan }
}
