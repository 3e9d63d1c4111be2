import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

/// The package kind on real packaging tools: .debs built with dpkg-deb, a flat repository from
/// dpkg-scanpackages, apt and dpkg confined to a sandbox root. Every test shows the machine's
/// own dpkg database byte-identical afterwards.
@Suite(.serialized, .timeLimit(.minutes(20))) struct PackageApplyTests {
    @Test func anOldVersionIsUpgradedVerifiedAndRecordedWithItsSource() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0", service: true))
            try box.build(DummyPackage(name: "dummy", version: "1.0", service: true))
            try box.build(DummyPackage(name: "dummy", version: "1.1", service: true))
            try box.build(DummyPackage(name: "dummy", version: "1.2~rc1", service: true))
            try box.publish()
            let state = try box.state(package("dummy", "name: dummy, minVersion: \"1.1\""))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.map(\.decision) == [.applied])
            #expect(plan.remediations.first?.changes.map(\.property) == ["version"])
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .verified, "\(record.error ?? "")")
            // The newest candidate that satisfies the minimum: 1.2~rc1 sorts after 1.1.
            #expect(try box.status().installed("dummy")?.version?.text == "1.2~rc1")
            #expect(record.changes.first?.observedBefore == "1.0")
            #expect(record.changes.first?.observedAfter == ">= 1.1")
            #expect(record.notes == ["dummy 1.0 → 1.2~rc1 from file:\(box.repository) ./"], "\(record.notes ?? [])")
            // The upgrade leaves the package's service to restart: recorded, and not restarted.
            #expect(record.needsRestart == "dummy")
            #expect(record.commitMessage.contains("\nBulwark-Needs-Restart: dummy\n"))
            #expect(record.commitMessage.contains("\nNote: dummy 1.0 → 1.2~rc1 from file:"))
            #expect(!FileManager.default.fileExists(atPath: box.root + "/var/tmp/dummy.restarts"))
            // Readers of the audit branch get it back typed.
            var trailers: [String: String] = [:]
            for line in record.commitMessage.split(separator: "\n") {
                guard let separator = line.range(of: ": ") else { continue }
                trailers[String(line[..<separator.lowerBound])] = String(line[separator.upperBound...])
            }
            #expect(RecordedDecision { trailers[$0.rawValue] }?.needsRestart == "dummy")
            // In sync now: a second pass does nothing.
            let (again, _) = try await reconcile(state)
            #expect(again.remediations.isEmpty && again.inSync.count == 1)
            #expect(try MachineFingerprint.take() == machine, "the machine's dpkg database and apt state are untouched")
        }
    }

    @Test func theServiceTheResourceNamesIsRestartedAndNoOther() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0", service: true))
            // The new version's postinst asks for a reboot, as Debian's kernel packages do.
            try box.build(DummyPackage(name: "dummy", version: "1.1", postinst: ": > /run/reboot-required", service: true))
            try box.publish()
            let state = try box.state(package("dummy", "name: dummy, minVersion: \"1.1\", restart: dummy"))
            let (_, outcome) = try await reconcile(state)
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .verified, "\(record.error ?? "")")
            // The init script ran once, chrooted into the root, as the new version.
            #expect(try read(box.root + "/var/tmp/dummy.restarts") == "restart 1.1\n")
            #expect(record.notes?.contains("restarted dummy (the resource allows it)") == true, "\(record.notes ?? [])")
            // The reboot is recorded; Bulwark never reboots.
            #expect(record.needsRestart == "reboot")
            #expect(record.commitMessage.contains("\nBulwark-Needs-Restart: reboot\n"))
            #expect(try MachineFingerprint.take() == machine)
        }
    }

    @Test func aRequiredPackageThatIsAbsentIsInstalled() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.build(DummyPackage(name: "auditd-lite", version: "2.0", postinst: "echo configured > /var/tmp/auditd-lite.configured"))
            try box.publish()
            let state = try box.state(package("auditd-lite", "name: auditd-lite, state: present"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.first?.changes.map(\.property) == ["state"])
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .verified, "\(record.error ?? "")")
            #expect(try box.status().installed("auditd-lite")?.version?.text == "2.0")
            // Its postinst ran inside the root.
            #expect(try read(box.root + "/var/tmp/auditd-lite.configured") == "configured\n")
            #expect(record.notes == ["auditd-lite not installed → 2.0 from file:\(box.repository) ./"], "\(record.notes ?? [])")
            // A fresh install restarts nothing and needs no restart.
            #expect(record.needsRestart == nil)
            #expect(try MachineFingerprint.take() == machine)
        }
    }

    @Test func aPackageMarkedAbsentIsRemoved() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "telnetd", version: "0.17-1"))
            try box.publish()
            let state = try box.state(package("telnetd", "name: telnetd, state: absent"))
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.map(\.decision) == [.applied])
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .verified, "\(record.error ?? "")")
            #expect(try box.status().installed("telnetd") == nil)
            #expect(!FileManager.default.fileExists(atPath: box.root + "/usr/share/doc/telnetd/version"))
            #expect(record.changes.first?.observedBefore == "present" && record.changes.first?.observedAfter == "absent")
            #expect(record.notes?.first?.hasPrefix("telnetd 0.17-1 → removed") == true, "\(record.notes ?? [])")
            #expect(try MachineFingerprint.take() == machine)
        }
    }

    @Test func aRemovalThatWouldTakeOtherPackagesWithItIsNotMade() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "rsh-client", version: "1.0"))
            try box.preinstall(DummyPackage(name: "backup-tool", version: "3.0", depends: "rsh-client"))
            try box.publish()
            let before = try box.statusBytes()
            let (_, outcome) = try await reconcile(try box.state(package("rsh", "name: rsh-client, state: absent")))
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            #expect(record.error?.contains("would also remove backup-tool") == true, "\(record.error ?? "")")
            #expect(try box.statusBytes() == before)
            // Once nothing depends on it, it goes.
            _ = try run("/usr/bin/dpkg", ["--root=" + box.root, "--remove", "backup-tool"])
            let (_, second) = try await reconcile(try box.state(package("rsh", "name: rsh-client, state: absent")))
            #expect(second.entries.first?.record.result == .verified, "\(second.entries.first?.record.error ?? "")")
        }
    }

    @Test func aFailingPostinstLeavesTheDatabaseConsistentAndIsRecordedFailed() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "agent", version: "1.0"))
            try box.build(DummyPackage(name: "agent", version: "1.1", postinst: "echo 'agent: cannot start' >&2\nexit 1"))
            try box.publish()
            let (_, outcome) = try await reconcile(try box.state(package("agent", "name: agent, minVersion: \"1.1\"")))
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            // The script ran and failed as written (exit 1), not for want of a shell.
            #expect(record.error?.contains("post-installation script subprocess returned error exit status 1") == true, "\(record.error ?? "")")
            // dpkg recorded what happened: unpacked, not configured; the database reads, and
            // dpkg's own audit names the package.
            let entry = try #require(try box.status().entries("agent").first)
            #expect(entry.version?.text == "1.1" && entry.state == "half-configured", "\(entry)")
            let audit = try run("/usr/bin/dpkg", ["--root=" + box.root, "--audit"])
            #expect(audit.stdout.contains("agent"), "\(audit.stdout)")
            #expect(record.notes?.first?.contains("agent 1.1 install ok half-configured") == true, "\(record.notes ?? [])")
            // The next pass sees the half-configured package as drift, not as present.
            let plan = try await Reconciler(registry: packageRegistry).plan(try box.state(package("agent", "name: agent, minVersion: \"1.1\"")))
            #expect(plan.remediations.first?.changes.first { $0.property == "state" }?.observed == "half-configured")
            #expect(try MachineFingerprint.take() == machine)
        }
    }

    @Test func aBrokenRepositoryChangesNothingAndIsRecordedFailed() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0"))
            try box.build(DummyPackage(name: "dummy", version: "1.1"))
            try box.publish()
            // The index promises a .deb whose bytes no longer match it.
            let deb = box.repository + "/dummy_1.1_all.deb"
            try write(deb, "not a package\n")
            let before = try box.statusBytes()
            let state = try box.state(package("dummy", "name: dummy, minVersion: \"1.1\""))
            let (_, outcome) = try await reconcile(state)
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            #expect(record.error?.contains("apt-get") == true, "\(record.error ?? "")")
            #expect(try box.statusBytes() == before, "the root's dpkg database is byte-identical")

            // A source that cannot be read at all fails the update; nothing is installed.
            try write(box.root + "/etc/apt/sources.list", "deb [trusted=yes] file:\(base)/no-such-repo ./\n")
            let (_, second) = try await reconcile(state)
            let failed = try #require(second.entries.first?.record)
            #expect(failed.result == .failed)
            #expect(failed.error?.contains("update") == true, "\(failed.error ?? "")")
            #expect(try box.statusBytes() == before)
            #expect(try MachineFingerprint.take() == machine)
        }
    }

    @Test func aMinimumNoSourceOffersIsRecordedFailed() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0"))
            try box.build(DummyPackage(name: "dummy", version: "1.1"))
            try box.publish()
            let before = try box.statusBytes()
            let (_, outcome) = try await reconcile(try box.state(package("dummy", "name: dummy, minVersion: \"2.0\"")))
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            #expect(record.error?.contains("no version of dummy >= 2.0") == true && record.error?.contains("1.1") == true, "\(record.error ?? "")")
            #expect(try box.statusBytes() == before)
        }
    }
}

/// A root whose folders link out of it: apt and dpkg run on the host and would follow the link.
@Suite(.serialized, .timeLimit(.minutes(20))) struct PackageRootLayoutTests {
    @Test func aFolderLinkedOutOfTheRootIsRefusedAndALinkInsideItIsFollowed() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0"))
            try box.build(DummyPackage(name: "dummy", version: "1.1"))
            try box.publish()
            // apt's archive cache is a link to a folder outside the root (standing in for the host's).
            let outside = base + "/outside-cache"
            try FileManager.default.createDirectory(atPath: outside + "/partial", withIntermediateDirectories: true)
            try FileManager.default.removeItem(atPath: box.root + "/var/cache/apt/archives")
            try FileManager.default.createSymbolicLink(atPath: box.root + "/var/cache/apt/archives", withDestinationPath: outside)
            let before = try box.statusBytes()
            let state = try box.state(package("dummy", "name: dummy, minVersion: \"1.1\""))
            let (plan, _) = try await reconcile(state)
            #expect(plan.remediations.isEmpty)
            let failure = try #require(plan.failures.first?.message)
            #expect(failure.contains("which apt and dpkg would follow out of the target root"), "\(failure)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == ["partial"])
            #expect(try box.statusBytes() == before)

            // The same folder as a relative link that stays inside the root is fine.
            try FileManager.default.removeItem(atPath: box.root + "/var/cache/apt/archives")
            try FileManager.default.createDirectory(atPath: box.root + "/var/cache/apt/real-archives/partial", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: box.root + "/var/cache/apt/archives", withDestinationPath: "real-archives")
            let (_, outcome) = try await reconcile(state)
            #expect(outcome.entries.first?.record.result == .verified, "\(outcome.entries.first?.record.error ?? "")")
            #expect(try box.status().installed("dummy")?.version?.text == "1.1")

            // A link out of the root hidden in a link's target behind a prepend mark: `\u{600}/`
            // is one `Character`, so read by `Character` the target `x\u{600}/cache` was one name
            // inside the root, and the kernel followed `x\u{600}` (a link to outside) itself.
            let hidden = base + "/outside-hidden"
            try FileManager.default.createDirectory(atPath: hidden + "/cache/partial", withIntermediateDirectories: true)
            try FileManager.default.removeItem(atPath: box.root + "/var/cache/apt/archives")
            try FileManager.default.createSymbolicLink(atPath: box.root + "/var/cache/apt/x\u{600}", withDestinationPath: hidden)
            try FileManager.default.createSymbolicLink(atPath: box.root + "/var/cache/apt/archives", withDestinationPath: "x\u{600}/cache")
            let (refused, _) = try await reconcile(state)
            let hiddenFailure = try #require(refused.failures.first?.message, "the link out of the root was followed")
            #expect(hiddenFailure.contains("which apt and dpkg would follow out of the target root"), "\(hiddenFailure)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: hidden + "/cache") == ["partial"])

            // A link whose target is not UTF-8: decoded, it named another (missing) file, and the
            // walk stopped as if nothing were there, while dpkg follows the bytes out of the root.
            try FileManager.default.removeItem(atPath: box.root + "/var/cache/apt/archives")
            let raw: [CChar] = [CChar(bitPattern: 0xFF), 0]
            try #require(symlink(raw, box.root + "/var/cache/apt/archives") == 0)
            // `var/cache/apt/\xff` (those very bytes) is a link out of the root; decoded, the name
            // looked for was U+FFFD, which is not there.
            let apt = open(box.root + "/var/cache/apt", O_RDONLY | O_DIRECTORY)
            try #require(apt >= 0)
            defer { close(apt) }
            try #require(symlinkat(hidden, apt, raw) == 0)
            let (notUTF8, _) = try await reconcile(state)
            let notUTF8Failure = try #require(notUTF8.failures.first?.message, "a link that is not UTF-8 was let through")
            #expect(notUTF8Failure.contains("is a link to a name that is not UTF-8"), "\(notUTF8Failure)")
        }
    }
}

/// The flat repository served over real HTTP (python3's http.server on a free loopback port),
/// from a source whose URL carries a password: the fix goes through, and the password is in no
/// note, error or commit message.
@Suite(.serialized, .timeLimit(.minutes(20))) struct PackageHTTPSourceTests {
    @Test func anUpgradeFromAnHTTPSourceRecordsItsURLWithoutThePassword() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0"))
            try box.build(DummyPackage(name: "dummy", version: "1.1"))
            try box.publish()
            let server = try StaticHTTPServer(directory: box.repository)
            defer { server.stop() }
            try write(box.root + "/etc/apt/sources.list", "deb [trusted=yes] http://deploy:s3cr3t-pw@127.0.0.1:\(server.port)/ ./\n")
            let (_, outcome) = try await reconcile(try box.state(package("dummy", "name: dummy, minVersion: \"1.1\"")))
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .verified, "\(record.error ?? "")")
            #expect(try box.status().installed("dummy")?.version?.text == "1.1")
            #expect(record.notes?.first?.hasPrefix("dummy 1.0 → 1.1 from http://") == true, "\(record.notes ?? [])")
            #expect(!record.commitMessage.contains("s3cr3t-pw"))
            #expect(!String(decoding: record.json(), as: UTF8.self).contains("s3cr3t-pw"))

            // A failure that quotes the source does not carry the password either.
            try write(box.root + "/etc/apt/sources.list", "deb [trusted=yes] http://deploy:s3cr3t-pw@127.0.0.1:\(server.port)/missing/ ./\n")
            let (_, failed) = try await reconcile(try box.state(package("dummy", "name: dummy, minVersion: \"1.2\"")))
            let failure = try #require(failed.entries.first?.record)
            #expect(failure.result == .failed)
            #expect(failure.error?.contains("127.0.0.1") == true, "\(failure.error ?? "")")
            #expect(!failure.commitMessage.contains("s3cr3t-pw"), "\(failure.commitMessage)")
            #expect(try MachineFingerprint.take() == machine)
        }
    }
}

/// python3's http.server serving one folder on a free loopback port, stopped by its process id.
final class StaticHTTPServer: Sendable {
    let process: Process
    let port: Int

    init(directory: String) throws {
        let script = """
            import functools, http.server, sys
            class Quiet(http.server.SimpleHTTPRequestHandler):
                def log_message(self, *args): pass
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=sys.argv[1]))
            print(server.server_address[1], flush=True)
            server.serve_forever()
            """
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script, directory]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw SupportError("python3 http.server did not start")
        }
        self.port = port
    }

    /// SIGKILL: a child of the test process inherits its blocked signals, SIGTERM among them.
    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
