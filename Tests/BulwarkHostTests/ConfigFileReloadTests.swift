import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// A `ConfigFile`'s reload is owed from the moment its file is renamed into place until the
/// reload command succeeds (`OwedReloads`). A reload that failed, or was cut short by a kill,
/// left the file holding its values and the service on the old ones, and every later plan said
/// the resource was in sync: the reload never ran again (a gateway kept running without its
/// guardrails). Each test runs real commands on real files in a temporary root.
@Suite struct ConfigFileReloadTests {
    /// The gateway's file, a reload script that notes each run in `reloads` and fails while
    /// `fail` exists, a second one (`reload2.sh`, and the same as `a-reload.sh`, which sorts
    /// before it; each run noted in `reloads-b`) that never fails, and
    /// the desired state that sets `a` (and `b`) to 2 with a reload.
    struct Gateway {
        let root: String
        var file: String { root + "/etc/gw/config.yaml" }
        var failSwitch: String { root + "/fail" }
        var marker: String { root + "/run/bulwark/reload-owed/" + OwedReloads.name("/etc/gw/config.yaml") }

        init(_ root: String, failing: Bool) throws {
            self.root = root
            try write(root + "/etc/gw/config.yaml", "a: 1\nb: 1\n")
            try write(root + "/reload.sh", """
                #!/bin/sh
                echo ran >> \(root)/reloads
                if [ -e \(root)/fail ]; then echo "Job for litellm.service failed" >&2; exit 1; fi

                """, mode: 0o755)
            for name in ["reload2.sh", "a-reload.sh"] {
                try write(root + "/" + name, "#!/bin/sh\necho ran >> \(root)/reloads-b\n", mode: 0o755)
            }
            if failing { try write(root + "/fail", "") }
        }

        var reloads: Int { ((try? read(root + "/reloads")) ?? "").split(separator: "\n").count }
        var reloadsB: Int { ((try? read(root + "/reloads-b")) ?? "").split(separator: "\n").count }
        var command: [String] { [root + "/reload.sh"] }

        /// One resource per name, setting `a`, `b`, … to 2; each reloads with `scripts` (by
        /// index; `reload.sh` for every one by default).
        func state(_ names: [String] = ["gw"], scripts: [String]? = nil) throws -> DesiredState {
            let keys = ["a", "b"]
            return try configState(root: root, names.enumerated().map { index, name in
                resource("ConfigFile", name, """
                    path: etc/gw/config.yaml
                    properties: {\(keys[index]): 2}
                    reload: [\(root)/\(scripts?[index] ?? "reload.sh")]
                    """)
            }.joined())
        }
    }

    /// A reload that fails the same way but says the time and its pid each time (as systemctl
    /// and many scripts do) is recorded once, not once a retry: the record's id reads the error
    /// with its digits made `#`. A failure that says something else is recorded again.
    @Test func aReloadFailingTheSameWayWithADifferentTimeIsRecordedOnce() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            try write(root + "/reload.sh", """
                #!/bin/sh
                echo ran >> \(root)/reloads
                echo "reload failed at $(date +%H:%M:%S.%N) pid $$: $(cat \(root)/fail)" >&2; exit 1

                """, mode: 0o755)
            let state = try gw.state()
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let sink = RecordingSink()
            func pass() async throws -> CycleOutcome {
                await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
            }
            _ = try await pass()            // written, reload failed
            let second = try await pass()   // the owed reload fails
            #expect(second.entries.first?.alreadyRecorded == false)
            let third = try await pass()    // the same failure, another time and pid
            #expect(gw.reloads == 3)
            #expect(third.entries.first?.record.result == .failed)
            #expect(third.entries.first?.alreadyRecorded == true, "\(sink.records.map { $0.error ?? "" })")
            try write(gw.failSwitch, "the unit is masked")
            let fourth = try await pass()   // another cause
            #expect(fourth.entries.first?.alreadyRecorded == false)
            #expect(sink.records.filter { $0.result == .failed }.count == 3)
        }
    }

    /// Harmful: the reload fails. The record says what the file holds (not "(unset)"); the next
    /// plan shows the reload owed instead of in sync; the next apply runs the reload again and
    /// records it; once it succeeds nothing is owed and the plan is in sync. Against the old code
    /// the second plan found nothing to do and the reload ran once.
    @Test func aReloadThatFailsStaysOwedUntilAnApplyRunsItAgain() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            let state = try gw.state()

            let (_, first) = try await reconcile(state)
            let failed = try #require(first.failed.first?.record)
            #expect(failed.error?.contains("written, but the reload command \(root)/reload.sh failed (exit status 1") == true,
                    "\(failed.error ?? "")")
            #expect(failed.error?.contains("the reload is owed and runs again on the next pass") == true, "\(failed.error ?? "")")
            let a = try #require(failed.changes.first { $0.property == "a" })
            #expect(a.observedAfter == "2", "the file holds the value written: \(failed.commitMessage)")
            #expect(try read(gw.file) == "a: 2\nb: 1\n")
            #expect(gw.reloads == 1)
            #expect(FileManager.default.fileExists(atPath: gw.marker))

            // The next plan: not in sync, the reload owed.
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(state)
            #expect(plan.inSync.isEmpty)
            let owed = try #require(plan.remediations.first?.changes)
            #expect(owed.map(\.property) == ["[reload of ConfigFile/gw]"])
            #expect(owed.first?.observed == "owed (the file was written but its reload did not complete)")
            #expect(owed.first?.desired == "done")

            // Failing again: a failed fix of the owed reload, which runs; the file is not written.
            let (_, second) = try await reconcile(state)
            let again = try #require(second.failed.first?.record)
            #expect(again.error?.contains("the reload command \(root)/reload.sh failed") == true, "\(again.error ?? "")")
            #expect(again.error?.contains("written, but") == false, "nothing was written this time: \(again.error ?? "")")
            #expect(again.changes.first?.observedAfter == "owed (the file was written but its reload did not complete)")
            #expect(gw.reloads == 2)

            // The service comes back: the owed reload runs, is verified and recorded.
            try FileManager.default.removeItem(atPath: gw.failSwitch)
            let (_, third) = try await reconcile(state)
            let done = try #require(third.verified.first?.record)
            #expect(done.changes.map(\.property) == ["[reload of ConfigFile/gw]"])
            #expect(done.changes.first?.observedAfter == "done")
            #expect(gw.reloads == 3)
            #expect(!FileManager.default.fileExists(atPath: gw.marker), "nothing owed any more")
            #expect(try await reconciler.plan(state).remediations.isEmpty, "in sync")
            #expect(try read(gw.file) == "a: 2\nb: 1\n")
        }
    }

    /// Legitimate: a reload that succeeds leaves nothing owed. The fix is verified, the next plan
    /// is in sync and the next apply runs no reload.
    @Test func aReloadThatSucceedsLeavesNothingOwed() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: false)
            let state = try gw.state()
            let (plan, first) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.map(\.property) == ["a"], "no reload owed before anything was written")
            #expect(first.verified.count == 1 && first.failed.isEmpty)
            #expect(gw.reloads == 1)
            #expect(!FileManager.default.fileExists(atPath: gw.marker))
            let (again, second) = try await reconcile(state)
            #expect(again.remediations.isEmpty && again.inSync.count == 1, "in sync")
            #expect(second.entries.isEmpty)
            #expect(gw.reloads == 1, "no reload without a write")
        }
    }

    /// Harmful, two resources on one file (one write, one reload): the reload fails, and each
    /// resource's reload is owed; the next apply runs the shared command once and both are done.
    /// Against the old code, each resource retried alone after the failed write found its value
    /// in place and was counted in sync: no record of the change at all.
    ///
    /// And the failing command runs once a pass, not once for the write and again for each
    /// resource retried alone (1 + N: 3 runs here, against a service that is failing); each
    /// resource still gets its own record of the one outcome. Legitimately, the next pass runs
    /// it again (once), and the one after that, with the service back, completes both.
    @Test func aFailedReloadOfOneWriteIsOwedToEveryResourceOfIt() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            let state = try gw.state(["gw", "gw-b"])
            let (_, first) = try await reconcile(state)
            #expect(first.failed.map(\.record.resource).sorted() == ["ConfigFile/gw", "ConfigFile/gw-b"], "\(first.entries.map(\.record))")
            #expect(first.failed.allSatisfy { $0.record.changes.first?.observedAfter == "2" })
            #expect(try read(gw.file) == "a: 2\nb: 2\n")
            #expect(gw.reloads == 1, "one run of the shared command in the pass")
            let errors = Set(first.failed.compactMap(\.record.error))
            #expect(errors.count == 1, "the same outcome for both: \(errors)")
            #expect(errors.first?.contains("the reload command \(root)/reload.sh failed (exit status 1") == true, "\(errors)")
            #expect(errors.first?.contains("when it ran earlier in this pass") == true, "not run again for each: \(errors)")
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            #expect(plan.remediations.flatMap { $0.changes.map(\.property) }.sorted() == ["[reload of ConfigFile/gw-b]", "[reload of ConfigFile/gw]"])

            let (_, again) = try await reconcile(state)
            #expect(again.failed.map(\.record.resource).sorted() == ["ConfigFile/gw", "ConfigFile/gw-b"], "\(again.entries.map(\.record))")
            #expect(gw.reloads == 2, "a new pass runs the owed reload again, once")

            try FileManager.default.removeItem(atPath: gw.failSwitch)
            let before = gw.reloads
            let (_, second) = try await reconcile(state)
            #expect(second.verified.count == 2 && second.failed.isEmpty)
            #expect(gw.reloads == before + 1, "one command, run once for both")
            #expect(!FileManager.default.fileExists(atPath: gw.marker))
        }
    }

    /// An intent whose fix wrote the file and was killed before its reload completed (the marker
    /// still names the resource, the value holds, the intent tried): recorded `interrupted`
    /// saying the reload did not complete, not `verified`; the next pass runs the reload and
    /// records it. Legitimate (`owed: false`): the same intent with its reload done is recorded
    /// verified, as any fix that holds.
    @Test(arguments: [true, false])
    func anInterruptedFixWhoseReloadDidNotCompleteIsNotRecordedVerified(owed: Bool) async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: false)
            let state = try gw.state()
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(state)
            let remediation = try #require(plan.remediations.first)
            // What the killed process had done: its intent begun and tried, the marker written,
            // the file renamed into place; the reload never completed (or, legitimately, it did).
            let journal = MemoryJournal()
            let intent = AuditRecord(
                id: AuditID.ulid(at: Date()), controller: remediation.binding.controller, target: remediation.binding.target,
                resource: remediation.binding.resource.description, kind: "ConfigFile", name: "gw", severity: remediation.severity,
                risk: remediation.risk, mode: .enforce, decision: .applied, result: nil, reason: nil,
                changes: [.init(property: "a", desired: "2", observedBefore: "1", observedAfter: nil)],
                detectedAt: Date(), appliedAt: nil, verifiedAt: nil, desiredCommit: state.revision, approver: nil, error: nil)
            try await journal.begin([intent])
            await journal.trying([intent.id])
            if owed {
                try OwedReloads.record([.init(command: OwedReloads.key(gw.command), resource: "ConfigFile/gw")], for: "/etc/gw/config.yaml",
                                       in: try HostRoot(root))
            }
            try write(gw.file, "a: 2\nb: 1\n")

            let sink = RecordingSink()
            let recovered = try await reconciler.recover(journal: journal, state: state, audit: sink)
            let record = try #require(recovered.first?.record)
            #expect(await journal.openIntents().isEmpty)
            if owed {
                #expect(record.result == .interrupted, "\(record.commitMessage)")
                #expect(record.error?.contains("the fix did not complete: [reload of ConfigFile/gw]: the file was written but its reload did not complete") == true,
                        "\(record.error ?? "")")
                #expect(record.changes.first?.observedAfter == "2")
                // The next pass: the owed reload, run and recorded.
                let next = try await reconciler.plan(state)
                #expect(next.remediations.first?.changes.map(\.property) == ["[reload of ConfigFile/gw]"])
                let outcome = await reconciler.apply(next, state: state, audit: sink, journal: journal)
                #expect(outcome.verified.map { $0.record.changes.map(\.property) } == [["[reload of ConfigFile/gw]"]])
                #expect(gw.reloads == 1)
                #expect(!FileManager.default.fileExists(atPath: gw.marker))
            } else {
                #expect(record.result == .verified, "\(record.commitMessage)")
                #expect(try await reconciler.plan(state).remediations.isEmpty, "in sync: nothing owed")
                #expect(gw.reloads == 0)
            }
        }
    }

    /// Harmful: the reload fails, then the policy renames the resource (same file, same
    /// command). The reload is still owed, to the resource by its new name: the plan shows it,
    /// the next apply runs it, and only then is the plan in sync. Against the old code (the
    /// marker kept resource names) the renamed resource read as in sync and the reload never
    /// ran: the service kept its old configuration while Bulwark reported no drift.
    @Test func aRenamedResourceStillOwesTheReloadItsOldNameLeftOwed() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            let (_, first) = try await reconcile(try gw.state(["gw"]))
            #expect(first.failed.count == 1)
            #expect(gw.reloads == 1)

            let renamed = try gw.state(["gateway"])
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(renamed)
            #expect(plan.inSync.isEmpty, "the renamed resource owes the reload")
            let owed = try #require(plan.remediations.first?.changes)
            #expect(owed.map(\.property) == ["[reload of ConfigFile/gateway]"])
            #expect(owed.first?.observed == ConfigFileDriver.reloadOwed)

            try FileManager.default.removeItem(atPath: gw.failSwitch)
            let (_, second) = try await reconcile(renamed)
            #expect(second.verified.map(\.record.resource) == ["ConfigFile/gateway"], "\(second.entries.map(\.record))")
            #expect(gw.reloads == 2)
            #expect(!FileManager.default.fileExists(atPath: gw.marker))
            #expect(try await reconciler.plan(renamed).remediations.isEmpty, "in sync")
        }
    }

    /// Harmful: the reload fails, and the policy changes the resource's reload command (what
    /// one does when the command was wrong), keeping its name. The reload is still owed, and the
    /// next apply runs the new command. Kept by command alone, the change dropped it: the plan
    /// was in sync and the service never read the file.
    @Test func aResourceGivenAnotherReloadCommandStillOwesTheReload() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            let (_, first) = try await reconcile(try gw.state(["gw"]))
            #expect(first.failed.count == 1)

            let changed = try gw.state(["gw"], scripts: ["reload2.sh"])
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(changed)
            #expect(plan.remediations.first?.changes.map(\.property) == ["[reload of ConfigFile/gw]"], "\(plan.inSync)")
            let (_, second) = try await reconcile(changed)
            #expect(second.verified.map(\.record.resource) == ["ConfigFile/gw"], "\(second.entries.map(\.record))")
            #expect(gw.reloadsB == 1 && gw.reloads == 1, "the new command ran, the old one not again")
            #expect(!FileManager.default.fileExists(atPath: gw.marker))
            #expect(try await reconciler.plan(changed).remediations.isEmpty, "in sync")
        }
    }

    /// Harmful: the reload fails, then one commit renames the resource and gives it another
    /// command (the failing one was wrong). The reload left owed is asked for by no resource of
    /// the file any more, by name or by command: it is owed by every resource of the file that
    /// reloads it, so the plan shows it and the next apply runs the new command. Keyed by name
    /// or command alone, the renamed resource read as in sync: the service kept the values it
    /// read before the write while Bulwark reported no drift.
    @Test func aReloadNoResourceAsksForAnyMoreIsOwedByTheResourcesOfItsFile() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            let (_, first) = try await reconcile(try gw.state(["gw"]))
            #expect(first.failed.count == 1)
            #expect(gw.reloads == 1)

            let moved = try gw.state(["gateway"], scripts: ["reload2.sh"])
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(moved)
            #expect(plan.inSync.isEmpty, "the renamed resource owes the reload no one else asks for")
            let owed = try #require(plan.remediations.first?.changes)
            #expect(owed.map(\.property) == ["[reload of ConfigFile/gateway]"])
            #expect(owed.first?.observed == ConfigFileDriver.reloadOwed)

            let (_, second) = try await reconcile(moved)
            #expect(second.verified.map(\.record.resource) == ["ConfigFile/gateway"], "\(second.entries.map(\.record))")
            #expect(gw.reloadsB == 1 && gw.reloads == 1, "the new command ran, the old one not again")
            #expect(!FileManager.default.fileExists(atPath: gw.marker))
            #expect(try await reconciler.plan(moved).remediations.isEmpty, "in sync")
        }
    }

    /// Legitimate, beside it: a reload owed that a resource of the file still asks for (gw,
    /// whose command keeps failing) is not taken over by the file's other resource (gw-b,
    /// another command, which completed): gw-b stays in sync and its command does not run on
    /// every pass while gw's fails.
    @Test func aReloadAResourceStillAsksForIsNotOwedByTheOthersOfItsFile() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            let state = try gw.state(["gw", "gw-b"], scripts: ["reload.sh", "reload2.sh"])
            _ = try await reconcile(state)
            #expect(gw.reloadsB == 1)
            let (_, again) = try await reconcile(state)
            #expect(again.failed.map(\.record.resource) == ["ConfigFile/gw"], "\(again.entries.map(\.record))")
            #expect(gw.reloadsB == 1, "gw-b's command did not run again")
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            #expect(plan.inSync.map(\.resource.name) == ["gw-b"])
        }
    }

    /// Legitimate: two resources of one file with different reload commands. The failed one is
    /// owed; the other, which succeeded, is not owed again (the key is the command, not only the
    /// file), and the next apply runs only the failed command. Each command runs once.
    ///
    /// Harmful, with the other command sorted first (`a-reload.sh`): it ran and succeeded in the
    /// coalesced write before reload.sh failed; gw-b, retried alone, found its value in place and
    /// its reload done and was counted in sync, with no record of the change the write made. It
    /// is recorded verified now; with reload2.sh (run only once gw-b is retried alone) it always was.
    @Test(arguments: ["reload2.sh", "a-reload.sh"])
    func aReloadOwedIsOwedOnlyByResourcesWithItsCommand(other: String) async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            let state = try gw.state(["gw", "gw-b"], scripts: ["reload.sh", other])
            let (_, first) = try await reconcile(state)
            #expect(first.failed.map(\.record.resource) == ["ConfigFile/gw"], "\(first.entries.map(\.record))")
            #expect(first.verified.map(\.record.resource) == ["ConfigFile/gw-b"], "\(first.entries.map(\.record))")
            #expect(gw.reloads == 1 && gw.reloadsB == 1, "each distinct command once in the pass")
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            #expect(plan.remediations.flatMap { $0.changes.map(\.property) } == ["[reload of ConfigFile/gw]"])
            #expect(plan.inSync.map(\.resource.name) == ["gw-b"])

            try FileManager.default.removeItem(atPath: gw.failSwitch)
            let before = gw.reloads
            let (_, second) = try await reconcile(state)
            #expect(second.verified.map(\.record.resource) == ["ConfigFile/gw"])
            #expect(gw.reloads == before + 1 && gw.reloadsB == 1, "only the owed command ran")
            #expect(!FileManager.default.fileExists(atPath: gw.marker))
        }
    }

    /// A marker as Bulwark wrote it before the keys were commands names resources; the name it
    /// holds may be one the policy no longer has. Read conservatively: every reload of the file
    /// is owed, so the next apply runs it, and writes the marker in the new form (here: removes
    /// it, nothing being owed). Against the old reading of names, a renamed resource found
    /// nothing owed.
    @Test func aMarkerThatNamesResourcesOwesEveryReloadOfItsFile() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: false)
            try write(gw.file, "a: 2\nb: 1\n")
            try FileManager.default.createDirectory(atPath: root + "/run/bulwark/reload-owed", withIntermediateDirectories: true)
            chmod(root + "/run/bulwark/reload-owed", 0o700)
            try write(gw.marker, #"{"file": "/etc/gw/config.yaml", "owed": ["ConfigFile/old-name"]}"#, mode: 0o600)
            let state = try gw.state()
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.first?.changes.map(\.property) == ["[reload of ConfigFile/gw]"], "\(plan.failures.map(\.message))")
            let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
            #expect(outcome.verified.count == 1 && outcome.failed.isEmpty)
            #expect(gw.reloads == 1)
            #expect(!FileManager.default.fileExists(atPath: gw.marker))
            #expect(try await reconciler.plan(state).remediations.isEmpty, "in sync")
        }
    }

    /// Harmful: a folder above the marker's (`run`, `run/bulwark`) that another user owns or
    /// may write in, or that is a link: whoever that is could take the marker away (and the
    /// owed reload with it) or swap in their own. The observation fails, naming the folder, and
    /// nothing is written. Against the old code only `run/bulwark/reload-owed` was judged: the
    /// plan went ahead and wrote the file.
    @Test(arguments: ["run owned by another user", "run/bulwark writable by all", "run a link"])
    func aMarkerBelowAFolderAnotherUserControlsFailsTheObservation(_ case: String) async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: false)
            let state = try gw.state()
            try FileManager.default.createDirectory(atPath: root + "/run/bulwark/reload-owed", withIntermediateDirectories: true)
            for folder in ["run", "run/bulwark", "run/bulwark/reload-owed"] { chmod(root + "/" + folder, 0o700) }
            let named: String
            switch `case` {
            case "run owned by another user":
                named = root + "/run"
                #expect(chown(named, 65534, 65534) == 0)
            case "run/bulwark writable by all":
                named = root + "/run/bulwark"
                chmod(named, 0o777)
            default:
                named = root + "/run"
                try FileManager.default.moveItem(atPath: root + "/run", toPath: root + "/elsewhere")
                try FileManager.default.createSymbolicLink(atPath: root + "/run", withDestinationPath: root + "/elsewhere")
            }
            let (plan, outcome) = try await reconcile(state)
            let message = plan.failures.first?.message ?? ""
            #expect(message.contains(named), "\(plan.failures.map(\.message))")
            #expect(message.contains("belongs to uid 65534") || message.contains("lets another user change") || message.contains("link"),
                    "\(message)")
            #expect(outcome.entries.map(\.record.decision) == [.unobserved], "only the record that it could not be observed")
            #expect(try read(gw.file) == "a: 1\nb: 1\n", "nothing written")
            #expect(gw.reloads == 0)
        }
    }

    /// Legitimate: folders above the marker's as a host has them (`/run` root's, mode 0755) or
    /// writable by all with the sticky bit as `/tmp` is (only an entry's owner may take it away):
    /// the reload that fails is owed, and the plan shows it.
    @Test(arguments: [0o755, 0o1777])
    func aMarkerBelowFoldersOnlyRootControlsIsKept(runMode: Int) async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: true)
            let state = try gw.state()
            try FileManager.default.createDirectory(atPath: root + "/run/bulwark", withIntermediateDirectories: true)
            chmod(root + "/run", mode_t(runMode))
            chmod(root + "/run/bulwark", 0o755)
            let (_, first) = try await reconcile(state)
            #expect(first.failed.count == 1, "\(first.entries.map(\.record))")
            #expect(FileManager.default.fileExists(atPath: gw.marker))
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            #expect(plan.failures.isEmpty, "\(plan.failures.map(\.message))")
            #expect(plan.remediations.first?.changes.map(\.property) == ["[reload of ConfigFile/gw]"])
        }
    }

    /// A marker Bulwark did not write as it writes one (a link, another user's folder, other
    /// content) fails the resource's observation, naming it: it is never taken as "nothing owed".
    @Test func aMarkerThatIsNotBulwarksFailsTheObservation() async throws {
        try await withTemporaryDirectory { root in
            let gw = try Gateway(root, failing: false)
            let state = try gw.state()
            try FileManager.default.createDirectory(atPath: root + "/run/bulwark/reload-owed", withIntermediateDirectories: true)
            chmod(root + "/run/bulwark/reload-owed", 0o700)
            try write(root + "/elsewhere", "{}")
            try FileManager.default.createSymbolicLink(atPath: gw.marker, withDestinationPath: root + "/elsewhere")
            let plan = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            #expect(plan.failures.first?.message.contains(gw.marker) == true, "\(plan.failures.map(\.message))")

            try FileManager.default.removeItem(atPath: gw.marker)
            try write(gw.marker, #"{"file": "/etc/other.yaml", "owed": ["ConfigFile/gw"]}"#, mode: 0o600)
            let other = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            #expect(other.failures.first?.message.contains("is not a marker of an owed reload") == true, "\(other.failures.map(\.message))")

            try write(gw.marker, #"{"file": "/etc/gw/config.yaml", "owed": ["ConfigFile/gw"]}"#, mode: 0o600)
            chmod(root + "/run/bulwark/reload-owed", 0o777)
            let open = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            #expect(open.failures.first?.message.contains("lets another user change what Bulwark keeps below it") == true, "\(open.failures.map(\.message))")
        }
    }

    /// An intent journal that notes, at each `trying`, what `snapshot` says then.
    actor SnapshotJournal: IntentJournal {
        let base = MemoryJournal()
        let snapshot: @Sendable () -> String
        var tries: [String] = []
        init(_ snapshot: @escaping @Sendable () -> String) { self.snapshot = snapshot }
        func begin(_ record: AuditRecord) async throws { try await base.begin([record]) }
        func end(_ id: String) async throws { await base.end(id) }
        func openIntents() async throws -> [AuditRecord] { await base.openIntents() }
        func untriedIntents() async throws -> Set<String> { await base.untriedIntents() }
        func trying(_ ids: [String]) async throws {
            tries.append(snapshot())
            await base.trying(ids)
        }
    }

    /// A `ConfigFile` fix is marked tried after its validation command accepted the candidate
    /// and before the file is renamed into place or its reload owed: a kill while the command
    /// runs leaves an intent never tried, which recovery closes without a record. Before, the
    /// line was written before the command ran.
    @Test func aConfigFileFixIsMarkedTriedAfterItsValidationAndBeforeTheRename() async throws {
        try await withTemporaryDirectory { root in
            let gateway = try Gateway(root, failing: false)
            try write(root + "/validate.sh", "#!/bin/sh\necho ran >> \(root)/validations\n", mode: 0o755)
            let state = try configState(root: root, resource("ConfigFile", "gw", """
                path: etc/gw/config.yaml
                properties: {a: 2}
                validate: [\(root)/validate.sh]
                reload: [\(root)/reload.sh]
                """))
            let journal = SnapshotJournal {
                let validated = FileManager.default.fileExists(atPath: root + "/validations")
                let owed = FileManager.default.fileExists(atPath: gateway.marker)
                return "validated \(validated), owed \(owed): " + ((try? read(gateway.file)) ?? "")
            }
            let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
            let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: RecordingSink(), journal: journal)
            #expect(outcome.verified.count == 1, "\(outcome.entries.map(\.record.error))")
            #expect(await journal.tries == ["validated true, owed false: a: 1\nb: 1\n"])
            #expect(try read(gateway.file) == "a: 2\nb: 1\n" && gateway.reloads == 1)
        }
    }
}
