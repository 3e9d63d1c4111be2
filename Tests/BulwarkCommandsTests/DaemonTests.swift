@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Crypto
import Foundation
import Testing

/// `bulwark run` as a real process on loopback, on the foundation issue's setup.
@Suite(.serialized)
struct DaemonTests {
    static let secret = "webhook-secret-for-tests"
    static let token = "findings-token-for-tests"

    func start(_ s: Scenario, poll: Int = 3600, stateDir: String? = nil, _ extra: [String] = []) throws -> DaemonProcess {
        try DaemonProcess(["--repo", s.origin, "--state-dir", stateDir ?? s.state, "--poll", String(poll)] + extra,
                          environment: ["BULWARK_WEBHOOK_SECRET": Self.secret, "BULWARK_FINDINGS_TOKEN": Self.token],
                          logPath: s.dir + "/daemon-\(UUID().uuidString.prefix(6)).log")
    }

    /// Posts findings with the bearer token.
    func postFindings(_ daemon: DaemonProcess, _ body: String) throws -> (status: Int, body: String) {
        try httpRequest(port: daemon.port, "POST", "/api/v1/findings", headers: ["Authorization": "Bearer \(Self.token)"], body: Array(body.utf8))
    }

    /// `/api/v1/status` as JSON.
    func status(_ daemon: DaemonProcess) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(daemon.get("/api/v1/status").body.utf8)) as? [String: Any])
    }

    /// Waits until no cycle runs or waits to run.
    func waitIdle(_ daemon: DaemonProcess, seconds: Double = 30) -> Bool {
        daemon.wait(seconds: seconds) { ((try? status(daemon))?["busy"] as? Bool) == false }
    }

    /// Every sample's family has `# HELP` and `# TYPE`; returns the families.
    func checkFamilies(_ text: String) -> Set<String> {
        var help = Set<String>(), type = Set<String>(), sampled = Set<String>()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            if line.hasPrefix("# HELP "), words.count > 3 {
                help.insert(String(words[2]))
            } else if line.hasPrefix("# TYPE "), words.count > 3 {
                type.insert(String(words[2]))
            } else if !line.hasPrefix("#"), let name = words.first?.split(separator: "{").first {
                var family = String(name)
                for suffix in ["_bucket", "_count", "_sum"] where family.hasSuffix(suffix) && !type.contains(family) {
                    family = String(family.dropLast(suffix.count))
                }
                sampled.insert(family)
            }
        }
        #expect(!sampled.isEmpty)
        #expect(sampled.subtracting(help).isEmpty, "families without HELP: \(sampled.subtracting(help).sorted())")
        #expect(sampled.subtracting(type).isEmpty, "families without TYPE: \(sampled.subtracting(type).sorted())")
        return sampled
    }

    func sshdSetting(_ s: Scenario, _ keyword: String) throws -> String? {
        try read(s.host + "/etc/ssh/sshd_config").split(separator: "\n")
            .first { $0.lowercased().hasPrefix(keyword.lowercased() + " ") }.map(String.init)
    }

    /// Edits a file in place, as an editor that keeps the file's mode would.
    func edit(_ path: String, _ old: String, _ new: String) throws {
        let text = try read(path)
        #expect(text.contains(old))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(text.replacingOccurrences(of: old, with: new).utf8))
        try handle.close()
    }

    func signature(_ body: [UInt8]) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(Self.secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// `name value` pairs of the Prometheus text, labels included in the name.
    func metrics(_ daemon: DaemonProcess) throws -> [String: Double] {
        var result: [String: Double] = [:]
        for line in try daemon.get("/metrics").body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }

    @Test func fixesTheInitialDriftThenAWatchedEditWithoutWaitingForTheInterval() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try start(s)
            // From the start, the series dashboards alert on exist at 0, each family with HELP and TYPE.
            #expect(daemon.wait { (try? daemon.get("/healthz").status) == 200 }, "healthz: \(daemon.log)")
            let early = try daemon.get("/metrics").body
            let families = checkFamilies(early)
            for family in ["bulwark_git_push_failures_total", "bulwark_notifications_delivered_total", "bulwark_notification_failures_total",
                           "bulwark_held_remediations", "bulwark_blocked_remediations", "bulwark_last_successful_cycle_timestamp_seconds",
                           "bulwark_decisions_total", "bulwark_remediations_total"] {
                #expect(families.contains(family), "\(family) from the start: \(early)")
            }
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            #expect(try sshdSetting(s, "PermitRootLogin") == "PermitRootLogin no")
            let initial = try s.auditCommits().count
            #expect(initial > 10, "the initial drift is fixed and recorded")

            // A person (or an attacker) edits the file back; the controller's interval is 5 minutes.
            let edited = Date()
            try edit(s.host + "/etc/ssh/sshd_config", "PermitRootLogin no", "PermitRootLogin yes")
            #expect(try daemon.wait(seconds: 60) { try sshdSetting(s, "PermitRootLogin") == "PermitRootLogin no" && s.auditCommits().count == initial + 1 },
                    "fixed and committed: \(daemon.log)")
            let seen = Date()
            let elapsed = seen.timeIntervalSince(edited)
            print("watched edit to verified fix on origin: \(Int(elapsed * 1000)) ms")
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Bulwark-Resource: SSHDConfig/") && record.contains("Bulwark-Result: verified"))
            // Detection is when the watcher saw the write, so MTTR includes the 100 ms debounce.
            let times = ISO8601DateFormatter()
            times.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            func trailer(_ name: String) -> Date? {
                record.split(separator: "\n").first { $0.hasPrefix(name + ": ") }
                    .flatMap { times.date(from: String($0.dropFirst(name.count + 2))) }
            }
            let detected = try #require(trailer("Bulwark-Detected-At"), "\(record)")
            let verifiedAt = try #require(trailer("Bulwark-Verified-At"), "\(record)")
            // Between the edit and the moment the fix was seen, however long that took.
            #expect(detected >= edited.addingTimeInterval(-1) && detected <= seen, "\(detected) vs \(edited)...\(seen)")
            #expect(verifiedAt.timeIntervalSince(detected) >= 0.1, "detected \(detected), verified \(verifiedAt)")

            let values = try metrics(daemon)
            let verified = try s.trailers("Bulwark-Result").filter { $0 == "verified" }.count
            #expect(values["bulwark_remediations_total{result=\"verified\"}"] == Double(verified),
                    "every fix the daemon made, the initial ones included: \(values)")
            #expect(values["bulwark_decisions_total{decision=\"applied\"}"] == Double(verified))
            #expect(values["bulwark_remediations_total{result=\"failed\"}"] == 0)
            let text = try daemon.get("/metrics").body
            _ = checkFamilies(text)
            #expect(!text.contains("result=\"none\""))
            #expect(values.filter { $0.key.hasPrefix("bulwark_source_revision_info{") }.count == 1)
            #expect(values.filter { $0.key.hasPrefix("bulwark_drift_detected_total{") }.values.reduce(0, +) == Double(verified),
                    "each drift counted once: \(values)")
            #expect((values["bulwark_last_successful_cycle_timestamp_seconds"] ?? 0) > edited.timeIntervalSince1970 - 1)
            #expect(values.keys.contains("bulwark_observation_failures_total{controller=\"host-hardening\"}"))
            #expect(values["bulwark_git_push_failures_total"] == 0)
            #expect((values["bulwark_remediation_seconds_count"] ?? 0) >= 1)
            #expect(values.keys.contains { $0.hasPrefix("bulwark_source_revision_info{revision=") })
            #expect(values.keys.contains { $0.hasPrefix("bulwark_reconcile_duration_seconds_count{controller=\"host-hardening\"}") })

            let status = try daemon.get("/api/v1/status")
            #expect(status.status == 200 && status.body.contains("\"ready\" : true"))
            let page = try daemon.get("/")
            #expect(page.status == 200 && page.body.contains("<h2>MTTR</h2>") && !page.body.contains("http://") && !page.body.contains("https://"))
            #expect(daemon.terminate() == 0, "SIGTERM exits 0: \(daemon.log)")
        }
    }

    @Test func aSignedPushWebhookAppliesANewPolicyAndABadOneChangesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let before = try s.auditCommits().count
            try s.commitPolicy("desired-state/hosts/extra.yaml", """
                apiVersion: bulwark/v1
                kind: SSHDConfig
                metadata: {name: no-agent-forwarding, annotations: {severity: medium}}
                spec: {AllowAgentForwarding: "no"}
                """)
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let bad = try httpRequest(port: daemon.port, "POST", "/hooks/git", headers: ["X-Hub-Signature-256": "sha256=" + String(repeating: "0", count: 64)], body: body)
            #expect(bad.status == 401)
            let unsigned = try httpRequest(port: daemon.port, "POST", "/hooks/git", body: body)
            #expect(unsigned.status == 401)
            // Bulwark's own header, with a signature of another body.
            let stamp = String(Int64(Date().timeIntervalSince1970))
            let forged = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                         headers: ["X-Bulwark-Signature-256": signature(Array("\(stamp).{}".utf8)), "X-Bulwark-Timestamp": stamp], body: body)
            #expect(forged.status == 401 && forged.body.contains("X-Bulwark-Signature-256 does not match the timestamp and body"))
            // Bulwark's own header over the body alone (no timestamp): it could be replayed forever.
            let unstamped = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                            headers: ["X-Bulwark-Signature-256": signature(body)], body: body)
            #expect(unstamped.status == 401 && unstamped.body.contains("needs X-Bulwark-Timestamp"))
            try await Task.sleep(for: .milliseconds(500))
            #expect(try s.auditCommits().count == before, "a refused webhook does nothing")
            #expect(try sshdSetting(s, "AllowAgentForwarding") == nil)

            let good = try httpRequest(port: daemon.port, "POST", "/hooks/git", headers: ["X-Hub-Signature-256": signature(body)], body: body)
            #expect(good.status == 202)
            let generic = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                          headers: ["X-Bulwark-Signature-256": signature(Array("\(stamp).".utf8) + body), "X-Bulwark-Timestamp": stamp], body: body)
            #expect(generic.status == 202, "Bulwark's own header, signed over the timestamp and the body as a relay signs")
            #expect(try daemon.wait(seconds: 60) { try sshdSetting(s, "AllowAgentForwarding") == "AllowAgentForwarding no" }, "\(daemon.log)")
            #expect(try daemon.wait(seconds: 60) { try s.trailers("Bulwark-Resource").contains("SSHDConfig/no-agent-forwarding") })
            // One revision series: the old one is gone, not kept at 0.
            let revisions = try metrics(daemon).keys.filter { $0.hasPrefix("bulwark_source_revision_info{") }
            let head = try git("--git-dir", s.origin, "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(revisions == ["bulwark_source_revision_info{revision=\"\(head)\"}"], "\(revisions)")
            #expect(daemon.terminate() == 0)
        }
    }

    @Test func findingsAreCheckedAndReconcileWhatTheyName() async throws {
        let began = Date()
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let before = try s.auditCommits().count
            for bad in ["not json", #"{"resource": "x"}"#, #"{"Findings": [{"SchemaVersion": "2018-10-08", "Resources": []}]}"#,
                        #"{"resource": "SSHDConfig/x", "control": "c", "firstObservedAt": "yesterday"}"#] {
                let answer = try postFindings(daemon, bad)
                #expect(answer.status == 400, "\(bad): \(answer.body)")
                #expect(answer.body.contains("\"error\""), "the reason is given, in JSON")
            }
            #expect(try s.auditCommits().count == before)

            // Drift the file without the watcher seeing it as the cause: a finding names the resource.
            try edit(s.host + "/etc/ssh/sshd_config", "X11Forwarding no", "X11Forwarding yes")
            let asff = """
                {"Findings": [{"SchemaVersion": "2018-10-08", "Id": "f-1", "GeneratorId": "cis-5.1.x11",
                  "Title": "X11 forwarding enabled", "FirstObservedAt": "2026-01-01T00:00:00Z",
                  "Resources": [{"Type": "Other", "Id": "arn:aws:ec2:eu-west-1:123456789012:instance/local"}]}]}
                """
            // Without credentials, a finding is refused and reconciles nothing.
            let unauthenticated = try httpRequest(port: daemon.port, "POST", "/api/v1/findings", body: Array(asff.utf8))
            #expect(unauthenticated.status == 401 && unauthenticated.body.contains("\"error\""), "\(unauthenticated)")
            let answer = try postFindings(daemon, asff)
            #expect(answer.status == 202 && answer.body.contains("\"matched\""))
            #expect(try daemon.wait(seconds: 60) { try sshdSetting(s, "X11Forwarding") == "X11Forwarding no" }, "\(daemon.log)")
            // The finding claims January; the resource was observed in sync since the test began,
            // so that is where the MTTR clock starts at the earliest.
            #expect(try daemon.wait(seconds: 60) {
                try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit").contains("X11")
            })
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            let detected = try #require(record.split(separator: "\n").first { $0.hasPrefix("Bulwark-Detected-At: ") }
                .flatMap { Timestamp.parse(String($0.dropFirst("Bulwark-Detected-At: ".count))) }, "\(record)")
            #expect(detected >= began, "detected \(detected), test began \(began)")
            #expect(daemon.terminate() == 0)
        }
    }

    @Test func sigtermInTheMiddleOfACycleLosesNoRecordAndASecondDaemonRefusesTheStateDirectory() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try start(s)
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let second = try start(s)
            #expect(second.wait(seconds: 20) { !second.process.isRunning })
            #expect(second.process.terminationStatus == 1)
            #expect(second.log.contains("another bulwark process"))
            // A first cycle long enough to stop in the middle: 30 more drifted hosts.
            _ = daemon.terminate()
            var targets: [String] = []
            for index in 0..<30 {
                try DemoHost.create(at: "\(dir)/more/h\(index)")
                targets.append("""
                    apiVersion: bulwark/v1
                    kind: Target
                    metadata: {name: h\(index), labels: {role: baseline}}
                    spec: {adapter: host, root: \(dir)/more/h\(index)}
                    """)
            }
            try s.commitPolicy("controllers/more.yaml", targets.joined(separator: "\n---\n"))
            // A grace long enough for the cycle in flight to finish on a loaded machine (the test
            // is about that cycle's records, not about the grace, which another test covers).
            // In flight: fixes of this daemon begun (their intents durable, after the earlier
            // daemon's). A decision with an audit commit is logged only once that commit is on
            // disk, with the pass's flush, so it cannot tell.
            func begun() -> Int { ((try? read(s.state + "/intents.log")) ?? "").components(separatedBy: "\"begin\"").count }
            let earlier = begun()
            let busy = try start(s, ["--shutdown-grace", "300"])
            #expect(busy.wait(seconds: 60) { begun() > earlier }, "\(busy.log)")
            #expect(busy.terminate(timeout: 320) == 0, "\(busy.log)")
            let lines = busy.log.split(separator: "\n")
            let stop = try #require(lines.firstIndex { $0.contains("shutdown requested") }, "\(busy.log)")
            #expect(lines[stop...].contains { $0.contains("decision=applied") }, "fixes went on after SIGTERM: the cycle was in flight")
            // Every fix that happened has its record, and every record reached origin.
            let local = try git("--git-dir", s.state + "/repository.git", "rev-parse", "refs/heads/bulwark/audit")
            let remote = try git("--git-dir", s.origin, "rev-parse", "refs/heads/bulwark/audit")
            #expect(local == remote, "nothing left unpushed")
            // Every decision the daemons logged with a new audit commit (fixes, and the deferrals
            // beyond the global limit of 100 a pass) is on origin.
            let logged = Set((daemon.log + busy.log).split(separator: "\n").compactMap { line -> String? in
                guard line.contains(" decision="), let range = line.range(of: "audit=") else { return nil }
                let sha = line[range.upperBound...].prefix(40)
                return sha.count == 40 && sha.allSatisfy(\.isHexDigit) ? String(sha) : nil
            })
            let commits = Set(try s.auditCommits())
            #expect(!logged.isEmpty && commits == logged, "\(commits.count) commits, \(logged.count) logged")
            try git("--git-dir", s.origin, "fsck", "--strict")
        }
    }
}
