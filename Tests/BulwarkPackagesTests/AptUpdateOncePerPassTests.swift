import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

/// `apt-get update` runs once per target root and pass, not once per package resource. The
/// sandbox's repository is served over HTTP on loopback by a small server that logs every path
/// apt asks for, so the test counts the updates as apt made them: each update asks for the
/// flat repository's `InRelease` exactly once.
@Suite(.serialized, .timeLimit(.minutes(20))) struct AptUpdateOncePerPassTests {
    /// Serves `folder` on 127.0.0.1 (a free port), appending each request's path to `log`.
    final class CountingServer {
        let process = Process()
        let port: Int
        let log: String

        static let script = """
            import http.server, os, sys
            folder, port_file, log = sys.argv[1:4]
            class Handler(http.server.SimpleHTTPRequestHandler):
                def __init__(self, *args, **kwargs):
                    super().__init__(*args, directory=folder, **kwargs)
                def log_request(self, code="-", size="-"):
                    with open(log, "a") as out:
                        out.write(self.path.replace("/./", "/") + "\\n")
                def log_message(self, format, *args):
                    pass
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            with open(port_file + ".tmp", "w") as out:
                out.write(str(server.server_address[1]))
            os.rename(port_file + ".tmp", port_file)
            server.serve_forever()
            """

        init(serving folder: String, in base: String) throws {
            log = base + "/requests.log"
            let portFile = base + "/port"
            try write(base + "/serve.py", Self.script)
            try write(log, "")
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [base + "/serve.py", folder, portFile, log]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            var port: Int?
            for _ in 0..<200 where port == nil {
                port = (try? read(portFile)).flatMap { Int($0) }
                if port == nil { usleep(50_000) }
            }
            guard let port else {
                process.terminate()
                throw SupportError("the repository server did not start")
            }
            self.port = port
        }

        var requestLog: String { (try? read(log)) ?? "" }

        /// How many times apt asked for `path`.
        func requests(_ path: String) throws -> Int {
            try read(log).split(separator: "\n").filter { $0 == path }.count
        }

        deinit {
            // SIGKILL: the server may have inherited a mask that blocks SIGTERM from the thread that started it.
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    @Test func twoPackagesOfOneRootShareOneUpdateAndTheNextPassUpdatesAgain() async throws {
        try await withTemporaryDirectory { base in
            let machine = try MachineFingerprint.take()
            let box = try AptSandbox(base)
            for name in ["alpha", "beta"] {
                try box.preinstall(DummyPackage(name: name, version: "1.0"))
                try box.build(DummyPackage(name: name, version: "1.1"))
            }
            try box.publish()
            let server = try CountingServer(serving: box.repository, in: base)
            try write(box.root + "/etc/apt/sources.list", "deb [trusted=yes] http://127.0.0.1:\(server.port)/ ./\n")

            let manifests = package("alpha", "name: alpha, minVersion: \"1.1\"") + package("beta", "name: beta, minVersion: \"1.1\"")
            let (plan, outcome) = try await reconcile(try box.state(manifests))
            #expect(plan.remediations.filter { $0.decision == .applied }.count == 2)
            #expect(outcome.entries.map { $0.record.result } == [.verified, .verified], "\(outcome.entries.map(\.record.notes))")
            #expect(try box.status().installed("alpha")?.version?.text == "1.1")
            #expect(try box.status().installed("beta")?.version?.text == "1.1")
            #expect(try server.requests("/InRelease") == 1, "one apt-get update for the two packages: \(server.requestLog)")
            #expect(try server.requests("/alpha_1.1_all.deb") == 1 && server.requests("/beta_1.1_all.deb") == 1)

            // The next pass refreshes the lists again: the scope is the pass, not the process.
            for name in ["alpha", "beta"] { try box.build(DummyPackage(name: name, version: "1.2")) }
            try box.publish()
            let raised = package("alpha", "name: alpha, minVersion: \"1.2\"") + package("beta", "name: beta, minVersion: \"1.2\"")
            let (_, second) = try await reconcile(try box.state(raised))
            #expect(second.entries.map { $0.record.result } == [.verified, .verified], "\(second.entries.map(\.record.notes))")
            #expect(try server.requests("/InRelease") == 2, "\(server.requestLog)")
            #expect(try box.status().installed("beta")?.version?.text == "1.2")
            #expect(try MachineFingerprint.take() == machine)
        }
    }

    /// A source that cannot be read fails every package of the pass after a single attempt, and
    /// each is recorded failed with the root's database as it was.
    @Test func aBrokenSourceIsTriedOnceAPassAndFailsEveryPackage() async throws {
        try await withTemporaryDirectory { base in
            let box = try AptSandbox(base)
            for name in ["alpha", "beta"] {
                try box.preinstall(DummyPackage(name: name, version: "1.0"))
                try box.build(DummyPackage(name: name, version: "1.1"))
            }
            // Served, but without an index: apt's update fails on it.
            let server = try CountingServer(serving: box.repository, in: base)
            try write(box.root + "/etc/apt/sources.list", "deb [trusted=yes] http://127.0.0.1:\(server.port)/ ./\n")
            let before = try box.statusBytes()

            let manifests = package("alpha", "name: alpha, minVersion: \"1.1\"") + package("beta", "name: beta, minVersion: \"1.1\"")
            let (_, outcome) = try await reconcile(try box.state(manifests))
            #expect(outcome.entries.map { $0.record.result } == [.failed, .failed])
            #expect(outcome.entries.allSatisfy { ($0.record.error ?? "").contains("update") }, "\(outcome.entries.map(\.record.error))")
            #expect(try server.requests("/InRelease") == 1, "\(server.requestLog)")
            #expect(try box.statusBytes() == before)
        }
    }
}
