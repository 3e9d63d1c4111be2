@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// The daemon's queue follows finding priority through a running daemon (`bulwark run`, a real
/// process, real files): under a limit of one change a cycle, the drift the higher-priority
/// finding names is fixed and the other deferred, though risk (severity) and name would both put
/// the other first. `FindingQueueTests` shows the same on the planner alone.
@Suite struct FindingPriorityDaemonTests {
    static let token = "findings-token-for-priority"

    func mode(_ path: String) throws -> Int {
        try #require((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue)
    }

    @Test func theHigherPriorityFindingsResourceIsFixedFirstByARunningDaemon() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            // The file modes under their own controller: one change a cycle, an interval of an hour
            // (so nothing else runs meanwhile), and no fix of its own yet within it (the fixes
            // `apply` made are the host-hardening controller's).
            let controller = try read(s.policy + "/controllers/host-hardening.yaml")
            #expect(controller.contains("kinds: [SSHDConfig, Sysctl, FileMode, LoginDefs, UserAccount]"))
            try s.commitPolicy("controllers/host-hardening.yaml", controller.replacingOccurrences(of: "FileMode, ", with: ""), message: "file modes apart")
            try s.commitPolicy("controllers/file-modes.yaml", """
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: file-modes}
                spec:
                  kinds: [FileMode]
                  targets: {selector: {role: baseline}}
                  interval: 1h
                  mode: enforce
                  maxChangesPerCycle: 1

                """, message: "one file mode a cycle")
            // The watcher's debounce is a minute: the findings, not the file events, start the cycle.
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600", "--debounce", "60000"],
                                           environment: ["BULWARK_FINDINGS_TOKEN": Self.token], logPath: dir + "/daemon.log")
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let before = try s.auditCommits().count

            // Both files drift. By risk, /etc/shadow (critical) goes first, and by name too
            // (cis-7.1.5 < cis-7.1.7); /etc/gshadow (high) is the one a scanner rates urgent.
            let shadow = s.host + "/etc/shadow", gshadow = s.host + "/etc/gshadow"
            let shadowMode = try mode(shadow), gshadowMode = try mode(gshadow)
            #expect(chmod(shadow, 0o666) == 0 && chmod(gshadow, 0o666) == 0)
            let findings = """
                [{"resource": "FileMode/cis-7.1.5-shadow-perms", "control": "shadow-mode", "severity": "low", "id": "low-one"},
                 {"resource": "FileMode/cis-7.1.7-gshadow-perms", "control": "gshadow-mode", "severity": "critical", "id": "urgent-one"}]
                """
            let posted = try httpRequest(port: daemon.port, "POST", "/api/v1/findings",
                                         headers: ["Authorization": "Bearer \(Self.token)", "Content-Type": "application/json"],
                                         body: Array(findings.utf8))
            #expect(posted.status == 202, "\(posted.body)")
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(posted.body.utf8)) as? [String: Any])
            let priorities = Dictionary(uniqueKeysWithValues: ((answer["items"] as? [[String: Any]]) ?? []).compactMap { item in
                (item["id"] as? String).map { ($0, item["priority"] as? String ?? "-") }
            })
            // The demo target is labelled internal: critical × 1 × 1 is P3, low × 1 × 1 is P4.
            #expect(priorities == ["low-one": "P4", "urgent-one": "P3"], "\(posted.body)")

            // The urgent finding's file is fixed; the riskier one waits for the next interval.
            #expect(try daemon.wait(seconds: 30) { try mode(gshadow) == gshadowMode }, "\(daemon.log)")
            #expect(try daemon.wait(seconds: 30) { try s.auditCommits().count >= before + 2 }, "\(daemon.log)")
            #expect(try mode(shadow) == 0o666, "deferred, not fixed, in this cycle")
            let records = try git("--git-dir", s.origin, "log", "--reverse", "--format=%(trailers:key=Bulwark-Resource,valueonly,separator=)|%(trailers:key=Bulwark-Decision,valueonly,separator=)",
                                  "-n", String(try s.auditCommits().count - before), "bulwark/audit")
                .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            #expect(records.first == "FileMode/cis-7.1.7-gshadow-perms|applied", "\(records)")
            #expect(records.contains("FileMode/cis-7.1.5-shadow-perms|deferred"), "\(records)")
            let deferral = try git("--git-dir", s.origin, "log", "--format=%B", "bulwark/audit")
            #expect(deferral.contains("Reason: maxChangesPerCycle 1 of controller file-modes reached"), "\(deferral.prefix(2000))")
            #expect(!records.contains("FileMode/cis-7.1.5-shadow-perms|applied"), "\(records)")
            #expect(shadowMode != 0o666)
            #expect(daemon.terminate() == 0)
        }
    }
}
