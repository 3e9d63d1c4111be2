import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

/// Each guard twice: the harmful change blocked (recorded once, the root's dpkg database
/// byte-identical), and a legitimate change that still goes through.
@Suite(.serialized, .timeLimit(.minutes(20))) struct PackageGuardTests {
    /// Plans and applies twice, expecting one blocked remediation recorded once and nothing
    /// changed in the root's database. Returns the reason.
    @discardableResult
    func expectBlocked(_ box: AptSandbox, _ manifests: String, reason: String,
                       sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws -> String {
        let before = try box.statusBytes()
        let state = try box.state(manifests)
        let reconciler = Reconciler(registry: packageRegistry)
        let plan = try await reconciler.plan(state)
        let blocked = plan.remediations.filter { $0.decision == .blocked }
        #expect(blocked.count == 1, "plan: \(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" }) \(plan.failures)",
                sourceLocation: sourceLocation)
        let text = blocked.first?.reason ?? ""
        #expect(text.contains(reason), "reason: \(text)", sourceLocation: sourceLocation)
        let sink = RecordingSink()
        let first = await reconciler.apply(plan, state: state, audit: sink)
        #expect(first.entries.filter { $0.record.decision == .blocked && !$0.alreadyRecorded }.count == 1, sourceLocation: sourceLocation)
        #expect(first.entries.first?.record.commitMessage.contains("Bulwark-Decision: blocked") == true, sourceLocation: sourceLocation)
        let second = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
        #expect(second.entries.allSatisfy { $0.alreadyRecorded }, "recorded once", sourceLocation: sourceLocation)
        #expect(sink.records.count == 1, sourceLocation: sourceLocation)
        #expect(try box.statusBytes() == before, "the root's dpkg database is byte-identical", sourceLocation: sourceLocation)
        return text
    }

    func expectVerified(_ box: AptSandbox, _ manifests: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws {
        let (plan, outcome) = try await reconcile(try box.state(manifests))
        #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })", sourceLocation: sourceLocation)
        #expect(outcome.entries.count == 1 && outcome.entries.allSatisfy { $0.record.result == .verified },
                "\(outcome.entries.map { $0.record.error ?? "" })", sourceLocation: sourceLocation)
    }

    @Test func anEssentialPackageIsNotRemovedButAnOrdinaryOneIs() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "base-thing", version: "1.0", essential: true))
            try box.preinstall(DummyPackage(name: "games", version: "1.0"))
            try box.publish()
            try await expectBlocked(box, package("b", "name: base-thing, state: absent"), reason: "base-thing is Essential: yes")
            #expect(try box.status().installed("base-thing") != nil)
            try await expectVerified(box, package("g", "name: games, state: absent"))
            #expect(try MachineFingerprint.take() == machine)
        }
    }

    @Test func aRequiredPriorityPackageIsNotRemovedButAnOptionalOneIs() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "core-utils-x", version: "1.0", priority: "required"))
            try box.preinstall(DummyPackage(name: "games", version: "1.0", priority: "optional"))
            try box.publish()
            try await expectBlocked(box, package("c", "name: core-utils-x, state: absent"), reason: "Priority: required")
            try await expectVerified(box, package("g", "name: games, state: absent"))
        }
    }

    @Test func whatSshdNeedsIsNotRemovedButWhatNothingNeedsIs() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            // openssh-server needs libcrypt-x through an alternative, libz-x through libwrap-x, and
            // pam-impl-x as the provider of a virtual package.
            try box.preinstall(DummyPackage(name: "libcrypt-x", version: "1.0"))
            try box.preinstall(DummyPackage(name: "libz-x", version: "1.0"))
            try box.preinstall(DummyPackage(name: "libwrap-x", version: "1.0", depends: "libz-x"))
            try box.preinstall(DummyPackage(name: "pam-impl-x", version: "1.0", provides: "pam-virtual-x"))
            try box.preinstall(DummyPackage(name: "openssh-server", version: "1:9.2p1-2",
                                            depends: "libmissing | libcrypt-x, libwrap-x, pam-virtual-x"))
            try box.preinstall(DummyPackage(name: "games", version: "1.0"))
            try box.publish()
            let reason = try await expectBlocked(box, package("l", "name: libcrypt-x, state: absent"), reason: "libcrypt-x is needed by")
            #expect(reason.contains("libcrypt-x is needed by openssh-server (sshd)"), "\(reason)")
            try await expectBlocked(box, package("z", "name: libz-x, state: absent"), reason: "libz-x is needed by libwrap-x, which sshd needs")
            // A virtual package: its installed provider is needed.
            try await expectBlocked(box, package("p", "name: pam-impl-x, state: absent"), reason: "pam-impl-x is needed by openssh-server (sshd)")
            try await expectBlocked(box, package("s", "name: openssh-server, state: absent"), reason: "needed by sshd")
            try await expectVerified(box, package("g", "name: games, state: absent"))
        }
    }

    @Test func whatAptAndTheInitSystemNeedIsNotRemoved() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "libapt-x", version: "1.0"))
            try box.preinstall(DummyPackage(name: "apt", version: "2.6.1", depends: "libapt-x"))
            try box.preinstall(DummyPackage(name: "libinit-x", version: "1.0"))
            try box.preinstall(DummyPackage(name: "systemd-sysv", version: "252", depends: "libinit-x"))
            try box.preinstall(DummyPackage(name: "games", version: "1.0"))
            try box.publish()
            try await expectBlocked(box, package("a", "name: libapt-x, state: absent"), reason: "libapt-x is needed by apt (package management)")
            try await expectBlocked(box, package("i", "name: libinit-x, state: absent"), reason: "libinit-x is needed by systemd-sysv (the init system)")
            try await expectVerified(box, package("g", "name: games, state: absent"))
        }
    }

    @Test func sudoAndWhatItNeedsAreNotRemovedButWhatNothingNeedsIs() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "libaudit-x", version: "1.0"))
            try box.preinstall(DummyPackage(name: "sudo", version: "1.9.13p3-1", depends: "libaudit-x"))
            try box.preinstall(DummyPackage(name: "games", version: "1.0"))
            try box.publish()
            try await expectBlocked(box, package("s", "name: sudo, state: absent"), reason: "sudo is needed by administrators becoming root")
            try await expectBlocked(box, package("l", "name: libaudit-x, state: absent"),
                                    reason: "libaudit-x is needed by sudo (administrators becoming root)")
            #expect(try box.status().installed("sudo") != nil)
            try await expectVerified(box, package("g", "name: games, state: absent"))
        }
    }

    /// What Bulwark itself runs on is needed however Bulwark was installed: here no `bulwark`
    /// package is installed, and nothing else depends on these.
    @Test func whatBulwarkItselfRunsOnIsNotRemovedButWhatNothingNeedsIs() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "openssh-client", version: "1:9.2p1-2"))
            try box.preinstall(DummyPackage(name: "gpgv", version: "2.2.40-1.1"))
            try box.preinstall(DummyPackage(name: "ca-certificates", version: "20230311"))
            try box.preinstall(DummyPackage(name: "libhttp-parser-x", version: "1.0"))
            try box.preinstall(DummyPackage(name: "libgit2-1.5", version: "1.5.1+ds-1", depends: "libhttp-parser-x"))
            try box.preinstall(DummyPackage(name: "libyaml-0-2", version: "0.2.5-1"))
            try box.preinstall(DummyPackage(name: "games", version: "1.0"))
            try box.publish()
            try await expectBlocked(box, package("c", "name: openssh-client, state: absent"),
                                    reason: "openssh-client is needed by Bulwark itself (ssh-keygen verifies signatures)")
            try await expectBlocked(box, package("g", "name: gpgv, state: absent"), reason: "gpgv is needed by Bulwark itself")
            try await expectBlocked(box, package("t", "name: ca-certificates, state: absent"), reason: "ca-certificates is needed by Bulwark itself")
            try await expectBlocked(box, package("l", "name: libgit2-1.5, state: absent"), reason: "libgit2-1.5 is needed by Bulwark itself (libgit2)")
            try await expectBlocked(box, package("h", "name: libhttp-parser-x, state: absent"),
                                    reason: "libhttp-parser-x is needed by libgit2-1.5 (Bulwark itself (libgit2))")
            try await expectBlocked(box, package("y", "name: libyaml-0-2, state: absent"), reason: "libyaml-0-2 is needed by Bulwark itself (libyaml)")
            #expect(try box.status().installed("openssh-client") != nil)
            try await expectVerified(box, package("games", "name: games, state: absent"))
        }
    }

    @Test func aHeldPackageIsNotUpgradedButAnUnheldOneIs() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0"))
            try box.preinstall(DummyPackage(name: "other", version: "1.0"))
            try box.build(DummyPackage(name: "dummy", version: "1.1"))
            try box.build(DummyPackage(name: "other", version: "1.1"))
            try box.publish()
            let hold = try run("/bin/sh", ["-c", "echo 'dummy hold' | dpkg --root='\(box.root)' --set-selections"])
            try #require(hold.status == 0, "\(hold.stderr)")
            try await expectBlocked(box, package("d", "name: dummy, minVersion: \"1.1\""), reason: "dummy is pinned (held in dpkg")
            #expect(try box.status().installed("dummy")?.version?.text == "1.0")
            try await expectVerified(box, package("o", "name: other, minVersion: \"1.1\""))
        }
    }

    @Test func aPackagePinnedInPreferencesIsNotChangedButAnUnpinnedOneIs() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "openssl-x", version: "3.0.11-1~deb12u1"))
            try box.preinstall(DummyPackage(name: "other", version: "1.0"))
            try box.build(DummyPackage(name: "openssl-x", version: "3.0.11-1~deb12u2"))
            try box.build(DummyPackage(name: "openssl-x", version: "3.0.13-1~deb12u1"))
            try box.build(DummyPackage(name: "other", version: "1.1"))
            try box.publish()
            // Someone pinned the security update they tested; the policy's minimum would pass it.
            try write(box.root + "/etc/apt/preferences.d/security-pin", """
                Package: openssl-x
                Pin: version 3.0.11-1~deb12u2
                Pin-Priority: 1001

                """)
            try await expectBlocked(box, package("s", "name: openssl-x, minVersion: \"3.0.13\""), reason: "openssl-x is pinned (")
            try await expectBlocked(box, package("r", "name: openssl-x, state: absent"), reason: "Pin: version 3.0.11-1~deb12u2")
            try await expectVerified(box, package("o", "name: other, minVersion: \"1.1\""))
        }
    }

    /// The priority apt gives `version` of `name` in the box's root, its lists updated: what
    /// shows apt honours a pin the test wrote.
    func aptPriority(_ box: AptSandbox, _ name: String, _ version: String) async throws -> Int? {
        try await Apt(root: box.root).update()
        return try await Apt(root: box.root).policy(name).available.first { $0.version.text == version }?.priority
    }

    /// A pin on the source package (`Package: src:openssh`, which apt honours for every binary
    /// built from it) was not seen: only binary names were matched, and the status file's `Source`
    /// was not read, so openssh-server was upgraded past it by an explicit name=version. It is
    /// blocked and recorded, written plainly or as a glob with an architecture; a package built
    /// from another source is still upgraded.
    @Test func aPackagePinnedThroughItsSourcePackageIsNotChangedButAnotherSourcesIs() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "openssh-server", version: "1:9.2p1-2", source: "openssh (1:9.2p1-2)"))
            try box.preinstall(DummyPackage(name: "ssh-audit-x", version: "1.0", source: "ssh-audit"))
            try box.build(DummyPackage(name: "openssh-server", version: "1:9.2p1-2+deb12u3", source: "openssh (1:9.2p1-2+deb12u3)"))
            try box.build(DummyPackage(name: "ssh-audit-x", version: "1.1", source: "ssh-audit"))
            try box.publish()
            #expect(try box.status().installed("openssh-server")?.source == "openssh")
            #expect(try box.status().installed("ssh-audit-x")?.source == "ssh-audit")
            for pattern in ["src:openssh", "src:open*:any"] {
                try write(box.root + "/etc/apt/preferences.d/hold-openssh", """
                    Package: \(pattern)
                    Pin: version 1:9.2p1-2
                    Pin-Priority: 1001

                    """)
                #expect(try await aptPriority(box, "openssh-server", "1:9.2p1-2") == 1001, "apt honours Package: \(pattern)")
                try await expectBlocked(box, package("s", "name: openssh-server, minVersion: \"1:9.2p1-2+deb12u3\""),
                                        reason: "openssh-server is pinned (\(box.root)/etc/apt/preferences.d/hold-openssh: Package: \(pattern)")
                #expect(try box.status().installed("openssh-server")?.version?.text == "1:9.2p1-2")
            }
            try await expectVerified(box, package("a", "name: ssh-audit-x, minVersion: \"1.1\""))
        }
    }

    /// A pin on the source package of a package not yet installed, built from a source of
    /// another name (`Package: src:openssh` and openssh-server), was not seen: such a package was
    /// judged as built from a source of its own name, since its `Source` is only in the package
    /// lists. The install is blocked and recorded; a package of another source not yet installed
    /// is still installed with the same pin in place.
    @Test func aSourcePinOnAPackageNotYetInstalledIsHonouredButAnotherSourcesInstallGoesThrough() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.build(DummyPackage(name: "openssh-server", version: "1:9.2p1-2", source: "openssh (1:9.2p1-2)"))
            try box.build(DummyPackage(name: "openssh-server", version: "1:9.2p1-2+deb12u3", source: "openssh (1:9.2p1-2+deb12u3)"))
            try box.build(DummyPackage(name: "ssh-audit-x", version: "1.1", source: "ssh-audit"))
            try box.publish()
            try write(box.root + "/etc/apt/preferences.d/hold-openssh", "Package: src:openssh\nPin: version 1:9.2p1-2\nPin-Priority: 1001\n")
            #expect(try await aptPriority(box, "openssh-server", "1:9.2p1-2") == 1001, "apt honours the pin on the source package")
            try await expectBlocked(box, package("s", "name: openssh-server, minVersion: \"1:9.2p1-2+deb12u3\""),
                                    reason: "openssh-server is pinned (\(box.root)/etc/apt/preferences.d/hold-openssh: Package: src:openssh")
            #expect(try box.status().entries("openssh-server").isEmpty)
            try await expectVerified(box, package("a", "name: ssh-audit-x, minVersion: \"1.1\""))
            #expect(try box.status().installed("ssh-audit-x")?.source == "ssh-audit")
        }
    }

    /// A pin on a package not yet installed (`Package: nginx`) was not seen: pins were looked for
    /// among the names in the dpkg database only, and apt installed the version Bulwark named over
    /// the pin. The install is blocked and recorded; an unpinned package not yet installed is
    /// still installed.
    @Test func aPinOnAPackageNotYetInstalledIsHonouredButAnUnpinnedInstallGoesThrough() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.build(DummyPackage(name: "nginx", version: "1.22.1-9"))
            try box.build(DummyPackage(name: "nginx", version: "1.24.0-1"))
            try box.build(DummyPackage(name: "games", version: "1.0"))
            try box.publish()
            try write(box.root + "/etc/apt/preferences.d/nginx", "Package: nginx\nPin: version 1.22.1-9\nPin-Priority: 1001\n")
            #expect(try await aptPriority(box, "nginx", "1.22.1-9") == 1001)
            try await expectBlocked(box, package("n", "name: nginx, minVersion: \"1.24\""), reason: "nginx is pinned (")
            #expect(try box.status().entries("nginx").isEmpty)
            try await expectVerified(box, package("g", "name: games, minVersion: \"1.0\""))
            #expect(try box.status().installed("games") != nil)
        }
    }

    @Test func anApprovedBlockedRemovalIsMade() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "legacy-req", version: "1.0", priority: "required"))
            try box.publish()
            let manifests = package("l", "name: legacy-req, state: absent")
            let reconciler = Reconciler(registry: packageRegistry)
            let blocked = try await reconciler.plan(try box.state(manifests))
            let approval = try approvalFile(try #require(blocked.remediations.first { $0.decision == .blocked }), reason: "replaced by core-utils-y")
            let state = try box.state(manifests, extra: [approval])
            let plan = try await reconciler.plan(state)
            #expect(plan.remediations.first?.decision == .applied)
            let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
            #expect(outcome.verified.count == 1, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(try box.status().installed("legacy-req") == nil)
        }
    }

    @Test func anApprovedEssentialRemovalIsStillRefusedByAptAndRecordedFailed() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "base-thing", version: "1.0", essential: true))
            try box.publish()
            let manifests = package("b", "name: base-thing, state: absent")
            let reconciler = Reconciler(registry: packageRegistry)
            let blocked = try await reconciler.plan(try box.state(manifests))
            let approval = try approvalFile(try #require(blocked.remediations.first { $0.decision == .blocked }), reason: "testing")
            let before = try box.statusBytes()
            let state = try box.state(manifests, extra: [approval])
            let outcome = await reconciler.apply(try await reconciler.plan(state), state: state, audit: RecordingSink())
            let record = try #require(outcome.entries.first?.record)
            #expect(record.decision == .applied && record.result == .failed, "\(record.error ?? "")")
            #expect(record.error?.contains("allow-remove-essential") == true, "\(record.error ?? "")")
            #expect(try box.status().installed("base-thing") != nil)
            #expect(try box.statusBytes() == before)
        }
    }

    @Test func aDatabaseTheGuardCannotReadBlocks() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "games", version: "1.0"))
            let state = try box.state(package("g", "name: games, state: absent"))
            let resource = try #require(state.resources.values.first)
            let target = try #require(state.targets["sandbox"])
            try write(box.root + "/etc/apt/preferences", String(repeating: "x", count: 2 << 20))
            let verdict = await DebianPackageDriver().assess(
                [PropertyDrift(property: "state", desired: "absent", observed: "present")], to: resource, on: target)
            #expect(verdict.blockReason?.contains("cannot judge") == true, "\(verdict)")
            // A file too large is no shortage of the machine's: a block, which a person may approve.
            #expect(!verdict.isUnjudged, "\(verdict)")
            try FileManager.default.removeItem(atPath: box.root + "/etc/apt/preferences")
            let allowed = await DebianPackageDriver().assess(
                [PropertyDrift(property: "state", desired: "absent", observed: "present")], to: resource, on: target)
            #expect(allowed == .allow)
        }
    }

    /// apt's pattern forms as the pin guard reads them: a name in any case, with an architecture,
    /// a glob, and a regex kept as written (`\S` lower-cased would be `\s`, and miss the pin).
    @Test func pinPatternsMatchAsAptReadsThem() {
        #expect(PackageGuards.matches("OpenSSH-Server", "openssh-server"))
        #expect(PackageGuards.matches("openssh-server:amd64", "openssh-server"))
        #expect(PackageGuards.matches("open*", "openssh-server"))
        #expect(PackageGuards.matches("/\\S+ssh-server/", "openssh-server"))
        #expect(PackageGuards.matches("/^OPENSSH/", "openssh-server"))
        #expect(!PackageGuards.matches("nginx", "openssh-server"))
        #expect(!PackageGuards.matches("/\\s+ssh/", "openssh-server"))
    }
}
