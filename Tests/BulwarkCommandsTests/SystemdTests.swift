@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do (without it, a build failed now and then with
// "missing import of defining module 'CDispatch'" as files were added).
internal import CDispatch
import Foundation
import Testing

/// `bulwark run` under systemd's protocols, spoken to real sockets the test binds: service
/// notifications (Type=notify, the watchdog), the journal's native protocol, and credentials.
@Suite(.serialized)
struct SystemdTests {
    let daemonTests = DaemonTests()

    func start(_ s: Scenario, environment: [String: String], _ extra: [String] = [], logPath: String? = nil,
               journal: DatagramSink? = nil) throws -> DaemonProcess {
        try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"] + extra,
                          environment: environment, logPath: logPath ?? s.dir + "/daemon-\(UUID().uuidString.prefix(6)).log", journal: journal)
    }

    @Test func readinessStatusWatchdogAndStoppingReachSystemd() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let sink = try DatagramSink(path: dir + "/notify.sock")
            let daemon = try start(s, environment: ["NOTIFY_SOCKET": sink.path, "WATCHDOG_USEC": "400000",
                                                    "BULWARK_WEBHOOK_SECRET": DaemonTests.secret])
            let pid = daemon.process.processIdentifier
            #expect(sink.wait { $0.contains { $0.contains("READY=1") } }, "READY=1: \(sink.messages) \(daemon.log)")
            let ready = try #require(sink.messages.first { $0.contains("READY=1") })
            #expect(ready.contains("MAINPID=\(pid)\n"), "\(ready)")
            #expect(ready.contains("STATUS="), "\(ready)")
            // The server listens when READY=1 is sent: systemd may start what depends on it.
            #expect((try? daemon.get("/healthz").status) == 200)
            // Half of WatchdogSec=: several pings within a few seconds, each with the readiness.
            #expect(sink.wait { $0.filter { $0.contains("WATCHDOG=1") }.count >= 3 }, "\(sink.messages)")
            #expect(daemonTests.waitIdle(daemon), "\(daemon.log)")
            #expect(sink.wait { $0.last?.contains("STATUS=ready: revision") == true }, "\(sink.messages.suffix(3))")
            #expect(daemon.terminate() == 0, "\(daemon.log)")
            #expect(sink.messages.contains { $0.contains("STOPPING=1") }, "\(sink.messages.suffix(3))")
            // One assignment per line: nothing a status text holds can forge another.
            for message in sink.messages {
                for line in message.split(separator: "\n") {
                    #expect(["READY", "MAINPID", "STATUS", "WATCHDOG", "STOPPING"].contains(line.split(separator: "=").first.map(String.init) ?? ""), "\(line)")
                }
            }
        }
    }

    @Test func aWatchdogMeantForAnotherProcessIsNotFedButReadinessStillIs() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let sink = try DatagramSink(path: dir + "/notify.sock")
            // WATCHDOG_PID names someone else (systemd sets it for the main process only).
            let daemon = try start(s, environment: ["NOTIFY_SOCKET": sink.path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"])
            #expect(sink.wait { $0.contains { $0.contains("READY=1") } }, "\(sink.messages) \(daemon.log)")
            #expect(daemonTests.waitIdle(daemon), "\(daemon.log)")
            #expect(daemon.terminate() == 0, "\(daemon.log)")
            #expect(!sink.messages.contains { $0.contains("WATCHDOG=1") }, "\(sink.messages)")
            #expect(sink.messages.contains { $0.contains("STOPPING=1") })
        }
    }

    @Test func withoutNotifySocketNothingIsSentAndAnInvalidOneIsAWarningNotAFailure() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let daemon = try start(s, environment: ["NOTIFY_SOCKET": "relative/path"])
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            #expect(daemon.log.contains("not notifying systemd: NOTIFY_SOCKET"), "\(daemon.log)")
            #expect(daemon.terminate() == 0)
        }
    }

    @Test func logsGoToTheJournalAsFieldsWhenStandardErrorIsTheJournalStream() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let journal = try DatagramSink(path: dir + "/journal.sock")
            // systemd sets JOURNAL_STREAM to the device:inode of the stderr it gave the service.
            let logPath = dir + "/stderr.log"
            let fd = open(logPath, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
            try #require(fd >= 0)
            close(fd)
            var info = stat()
            try #require(stat(logPath, &info) == 0)
            let daemon = try start(s, environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino)", "BULWARK_JOURNAL_SOCKET": journal.path,
                                                    "BULWARK_WEBHOOK_SECRET": DaemonTests.secret],
                                   logPath: logPath, journal: journal)
            #expect(daemonTests.waitIdle(daemon), "\(daemon.log)")
            #expect(daemon.terminate() == 0)
            let entries = journal.datagrams.compactMap(DatagramSink.journalFields)
            #expect(entries.count == journal.datagrams.count, "every datagram parses")
            let started = try #require(entries.first { $0["MESSAGE"] == "bulwark run" }, "\(entries.prefix(3))")
            #expect(started["PRIORITY"] == "6")
            #expect(started["SYSLOG_IDENTIFIER"] == "bulwark")
            #expect(started["BULWARK_REPO"]?.hasSuffix("/origin.git") == true, "\(started)")
            #expect(started["BULWARK_STATEDIR"]?.hasSuffix("/state") == true, "\(started)")
            let decisions = entries.filter { $0["MESSAGE"] == "decision" }
            #expect(!decisions.isEmpty, "\(entries.map { $0["MESSAGE"] ?? "" })")
            #expect(decisions.allSatisfy { $0["BULWARK_TARGET"] != nil && $0["BULWARK_DECISION"] != nil && $0["BULWARK_ID"] != nil })
            // Nothing went to stderr as text, and no secret went anywhere.
            #expect(!daemon.log.contains("bulwark run"), "\(daemon.log)")
            #expect(!journal.messages.joined().contains(DaemonTests.secret))
        }
    }

    @Test func aStandardErrorThatIsNotTheJournalStreamKeepsTextLogs() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let journal = try DatagramSink(path: dir + "/journal.sock")
            // Another stream's identity (a terminal, a pipe to a file): JOURNAL_STREAM was inherited.
            let daemon = try start(s, environment: ["JOURNAL_STREAM": "1:1", "BULWARK_JOURNAL_SOCKET": journal.path])
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            #expect(daemon.terminate() == 0)
            #expect(daemon.log.contains("bulwark run"), "\(daemon.log)")
            #expect(journal.datagrams.isEmpty)
        }
    }

    @Test func journalEntriesCarryMultiLineValuesInTheBinaryForm() throws {
        let encoded = JournalLogHandler.encode([("MESSAGE", "first line\nsecond line"), ("BULWARK_TARGET", "web-1")])
        let fields = try #require(DatagramSink.journalFields(encoded))
        #expect(fields == ["MESSAGE": "first line\nsecond line", "BULWARK_TARGET": "web-1"])
        #expect(JournalLogHandler.fieldName("stateDir") == "BULWARK_STATEDIR")
        #expect(JournalLogHandler.fieldName("_PID") == "BULWARK__PID", "a caller cannot set a trusted field")
        #expect(JournalLogHandler.fieldName("a-b.c") == "BULWARK_A_B_C")
    }

    @Test func aSystemdCredentialSuppliesTheWebhookSecretWhenNoFlagOrVariableDoes() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let credentials = dir + "/credentials"
            try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
            try Data(DaemonTests.secret.utf8).write(to: URL(fileURLWithPath: credentials + "/bulwark_webhook-secret"))
            let daemon = try start(s, environment: ["CREDENTIALS_DIRECTORY": credentials, "BULWARK_WEBHOOK_SECRET": ""])
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let signed = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                         headers: ["X-Hub-Signature-256": daemonTests.signature(body)], body: body)
            #expect(signed.status == 202, "\(signed)")
            let forged = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                         headers: ["X-Hub-Signature-256": "sha256=" + String(repeating: "0", count: 64)], body: body)
            #expect(forged.status == 401, "\(forged)")
            #expect(daemon.terminate() == 0)
        }
    }

    @Test func withoutTheCredentialTheWebhookStaysClosed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let credentials = dir + "/credentials"
            try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: false)
            let daemon = try start(s, environment: ["CREDENTIALS_DIRECTORY": credentials, "BULWARK_WEBHOOK_SECRET": ""])
            #expect(daemon.wait { (try? daemon.get("/readyz").status) == 200 }, "\(daemon.log)")
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let answer = try httpRequest(port: daemon.port, "POST", "/hooks/git",
                                         headers: ["X-Hub-Signature-256": daemonTests.signature(body)], body: body)
            #expect(answer.status == 401, "\(answer)")
            #expect(daemon.terminate() == 0)
        }
    }
}
