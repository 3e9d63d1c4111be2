import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

/// A source the operator pinned to a negative priority (`Package: *`, `Pin: release
/// l=untrusted-thirdparty`, `Pin-Priority: -1`) is never installed from, although apt installs
/// from it when asked for `name=version`: with the lists showing it the guard blocks the upgrade
/// (recorded in the audit branch, the dpkg database byte-identical), with lists too old to show
/// it the upgrade refuses after its update; without the pin the same upgrade goes through.
@Suite(.serialized, .timeLimit(.minutes(20))) struct PackagePinPriorityTests {
    static let pin = """
        Package: *
        Pin: release l=untrusted-thirdparty
        Pin-Priority: -1

        """

    /// A sandbox whose root has dummy 1.0 installed, its own source offering 1.0, and a second
    /// flat source labelled `untrusted-thirdparty` offering 1.1; pinned to -1 when `pinned`.
    func sandbox(_ base: String, pinned: Bool) throws -> AptSandbox {
        let box = try AptSandbox(base)
        try box.preinstall(DummyPackage(name: "dummy", version: "1.0"))
        try box.build(DummyPackage(name: "dummy", version: "1.0"))
        try box.publish()
        let third = base + "/thirdparty"
        try FileManager.default.createDirectory(atPath: third, withIntermediateDirectories: true)
        try box.build(DummyPackage(name: "dummy", version: "1.1"), into: third)
        let scan = try run("/usr/bin/dpkg-scanpackages", ["-m", "."], in: third)
        try #require(scan.status == 0, "dpkg-scanpackages: \(scan.stderr)")
        try write(third + "/Packages", scan.stdout)
        let sum = try run("/usr/bin/sha256sum", [third + "/Packages"])
        let hash = try #require(sum.stdout.split(separator: " ").first)
        try write(third + "/Release", "Label: untrusted-thirdparty\nSuite: thirdparty\nSHA256:\n \(hash) \(scan.stdout.utf8.count) Packages\n")
        try write(box.root + "/etc/apt/sources.list",
                  "deb [trusted=yes] file:\(box.repository) ./\ndeb [trusted=yes] file:\(third) ./\n")
        if pinned { try write(box.root + "/etc/apt/preferences.d/block-thirdparty", Self.pin) }
        return box
    }

    func trailer(_ origin: String, _ key: String) throws -> [String] {
        try git("--git-dir", origin, "log", "--format=%(trailers:key=\(key),valueonly)", "bulwark/audit")
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    @Test func anUpgradeOnlyANegativelyPinnedSourceOffersIsBlockedAndRecordedInGit() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try sandbox(base, pinned: true)
            // The root's lists are current, as on a host that runs apt: the guard reads them.
            try await Apt(root: box.root).update()
            let before = try box.statusBytes()
            let (origin, _) = try box.policyOrigin(
                in: base, files: ["desired-state/dummy.yaml": package("dummy-fixed", "name: dummy, minVersion: \"1.1\"")], message: "patch dummy")
            let apply = try run(try bulwarkExecutable(), ["apply", "--repo", origin, "--state-dir", base + "/state"])
            #expect(try trailer(origin, "Bulwark-Decision") == ["blocked"], "\(apply.stdout) \(apply.stderr)")
            let body = try git("--git-dir", origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(body.contains("the only version of dummy >= 1.1 (1.1) comes from a source pinned to -1"), "\(body)")
            #expect(try box.statusBytes() == before, "the root's dpkg database is byte-identical")
            #expect(try box.status().installed("dummy")?.version?.text == "1.0")
            // Again: recorded once, still not installed.
            _ = try run(try bulwarkExecutable(), ["apply", "--repo", origin, "--state-dir", base + "/state"])
            #expect(try trailer(origin, "Bulwark-Decision") == ["blocked"])
            #expect(try box.statusBytes() == before)

            // The operator lifts the pin: the same upgrade goes through, from that source.
            try FileManager.default.removeItem(atPath: box.root + "/etc/apt/preferences.d/block-thirdparty")
            let lifted = try run(try bulwarkExecutable(), ["apply", "--repo", origin, "--state-dir", base + "/state"])
            #expect(lifted.status == 0, "\(lifted.stdout) \(lifted.stderr)")
            #expect(try box.status().installed("dummy")?.version?.text == "1.1")
            #expect(try trailer(origin, "Bulwark-Result") == ["verified"])
            #expect(try MachineFingerprint.take() == machine, "the machine's dpkg database and apt state are untouched")
        }
    }

    @Test func withListsTooOldToShowThePinTheUpgradeRefusesAfterItsUpdate() async throws {
        try await withTemporaryDirectory { base in
            let box = try sandbox(base, pinned: true)
            let before = try box.statusBytes()
            // No lists yet: the guard sees no version at all and lets the upgrade try.
            let (plan, outcome) = try await reconcile(try box.state(package("d", "name: dummy, minVersion: \"1.1\"")))
            #expect(plan.remediations.map(\.decision) == [.applied])
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed)
            #expect(record.error?.contains("comes from a source pinned to -1") == true, "\(record.error ?? "")")
            #expect(try box.statusBytes() == before)
        }
    }

    @Test func withoutThePinTheSameUpgradeGoesThrough() async throws {
        try await withTemporaryDirectory { base in
            let box = try sandbox(base, pinned: false)
            try await Apt(root: box.root).update()
            let (plan, outcome) = try await reconcile(try box.state(package("d", "name: dummy, minVersion: \"1.1\"")))
            #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })")
            #expect(outcome.entries.first?.record.result == .verified, "\(outcome.entries.first?.record.error ?? "")")
            #expect(try box.status().installed("dummy")?.version?.text == "1.1")
        }
    }
}
