import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

/// The package kind through the real `bulwark` binary (BULWARK_BIN): the command's registry knows
/// it on host targets, `apply` upgrades the sandbox root through apt, and the audit commit on the
/// origin carries the versions, the source and `Bulwark-Needs-Restart`, as the git CLI reads them.
@Suite(.serialized, .timeLimit(.minutes(20))) struct PackageEndToEndTests {
    @Test func applyUpgradesAPackageAndTheAuditCommitSaysFromWhereAndWhatToRestart() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0", service: true))
            try box.build(DummyPackage(name: "dummy", version: "1.1", service: true))
            try box.publish()

            let (origin, seed) = try box.policyOrigin(
                in: base, files: ["desired-state/dummy.yaml": package("dummy-fixed", "name: dummy, minVersion: \"1.1\"")],
                message: "patch dummy")

            let validate = try run(try bulwarkExecutable(), ["validate", seed])
            #expect(validate.status == 0, "\(validate.stdout) \(validate.stderr)")
            let apply = try run(try bulwarkExecutable(), ["apply", "--repo", origin, "--state-dir", base + "/state"])
            #expect(apply.status == 0, "\(apply.stdout) \(apply.stderr)")
            #expect(try box.status().installed("dummy")?.version?.text == "1.1")

            func trailer(_ key: String) throws -> [String] {
                try git("--git-dir", origin, "log", "--format=%(trailers:key=\(key),valueonly)", "bulwark/audit")
                    .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            }
            #expect(try trailer("Bulwark-Result") == ["verified"])
            #expect(try trailer("Bulwark-Needs-Restart") == ["dummy"])
            let body = try git("--git-dir", origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(body.contains("Note: dummy 1.0 → 1.1 from file:\(box.repository) ./"), "\(body)")
            #expect(!FileManager.default.fileExists(atPath: box.root + "/var/tmp/dummy.restarts"))
            #expect(try MachineFingerprint.take() == machine, "the machine's dpkg database and apt state are untouched")
        }
    }

    /// The package guard out of file descriptors (`BULWARK_FAULT_NO_DESCRIPTORS_IN_GUARD=package`):
    /// it cannot open the root's dpkg database, so it judged nothing. The package is not
    /// observed this pass (exit 1, recorded `unobserved` with the guard's error), never
    /// `blocked` with an approval offered for a change no guard looked at; the root's packages
    /// are as they were. The twin: the next pass, with descriptors, judges the same upgrade and
    /// makes it.
    @Test func aPackageGuardOutOfDescriptorsFailsThePassAndOffersNoApproval() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            try box.preinstall(DummyPackage(name: "dummy", version: "1.0"))
            try box.build(DummyPackage(name: "dummy", version: "1.1"))
            try box.publish()
            let (origin, _) = try box.policyOrigin(
                in: base, files: ["desired-state/dummy.yaml": package("dummy-fixed", "name: dummy, minVersion: \"1.1\"")],
                message: "patch dummy")
            let before = try box.statusBytes()
            let arguments = ["apply", "--repo", origin, "--state-dir", base + "/state"]
            let short = try run(try bulwarkExecutable(), arguments, environment: ["BULWARK_FAULT_NO_DESCRIPTORS_IN_GUARD": "package"])
            #expect(short.status == 1, "a failed pass: \(short.stdout) \(short.stderr)")
            #expect(short.stderr.contains("the package guard cannot judge this change"), "\(short.stderr)")
            #expect(!short.stdout.contains("BLOCKED") && !short.stdout.contains("bulwark approve"), "\(short.stdout)")
            #expect(try box.statusBytes() == before, "nothing installed")
            func records() throws -> [String] {
                try git("--git-dir", origin, "log", "--format=%B%x1e", "bulwark/audit").components(separatedBy: "\u{1e}")
                    .filter { $0.contains("Bulwark-Resource: DebianPackage/dummy-fixed") }
            }
            let recorded = try records()
            #expect(!recorded.isEmpty && recorded.allSatisfy {
                $0.contains("Bulwark-Decision: unobserved") && $0.contains("Too many open files")
            }, "\(recorded)")

            let next = try run(try bulwarkExecutable(), arguments)
            #expect(next.status == 0, "\(next.stdout) \(next.stderr)")
            #expect(try box.status().installed("dummy")?.version?.text == "1.1")
            let after = try records()
            #expect(after.contains { $0.contains("Bulwark-Result: verified") }, "\(after)")
        }
    }
}
