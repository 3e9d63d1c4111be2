internal import Foundation

/// moto's server (the AWS APIs, in memory) on a loopback port it binds, for one test. `python3`
/// with boto3 is the independent client that seeds and reads back what Bulwark changed.
public final class MotoServer {
    public static var available: Bool {
        (try? run("/usr/bin/env", ["python3", "-c", "import moto.server, boto3"]).status) == 0
    }

    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }
    /// Credentials moto accepts, the same for every server of the process (tests that run at
    /// once share the environment); the secret is a marker the tests look for in the history.
    public static let accessKeyID = "AKIDBULWARKTEST"
    public static let secretAccessKey = "secret-" + UUID().uuidString
    public var accessKeyID: String { Self.accessKeyID }
    public var secretAccessKey: String { Self.secretAccessKey }
    /// Also keeps boto3, in moto and in the seeding scripts, from ever asking an instance
    /// metadata service: nothing but loopback is reached.
    public static var environment: [String: String] {
        ["AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secretAccessKey, "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"]
    }
    public var environment: [String: String] { Self.environment }
    private let process: Process
    /// What the server writes (werkzeug's log: the port it bound, each request).
    private let outputPath = NSTemporaryDirectory() + "/bulwark-moto-\(UUID().uuidString).log"

    /// Starts moto's server on port 0 and reads the port it bound from its log. `patch` is Python
    /// run in the server's process before it serves, to seed what no API can (moto dates every
    /// access key now; AWS's clock cannot be set).
    public init(patch: String = "") throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let serve = ["-H", "127.0.0.1", "-p", "0"]
        process.arguments = patch.isEmpty ? ["python3", "-m", "moto.server"] + serve
            : ["python3", "-c", patch + "\nimport sys\nfrom moto.server import main\nmain(sys.argv[1:])\n"] + serve
        process.environment = ProcessInfo.processInfo.environment.merging(Self.environment) { $1 }
        let outputPath = self.outputPath
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try output.close()
        // Importing moto takes seconds, many more on a loaded machine: wait up to a minute, but
        // not for a server that already exited. werkzeug logs the port once it listens.
        guard let port = reportedPort(of: process, after: "Running on ", in: { (try? read(outputPath)) ?? "" }) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw SupportError("moto's server did not start: \((try? read(outputPath)) ?? "")")
        }
        self.port = port
    }

    /// moto's server ignores SIGTERM while it serves; it holds nothing worth a clean stop.
    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: outputPath)
    }

    /// Runs a Python snippet with `aws` bound to a function making boto3 clients for this server;
    /// returns what it printed.
    @discardableResult
    public func boto(_ code: String) throws -> String {
        let prelude = """
            import boto3, json, sys
            def aws(service, region="us-east-1"):
                return boto3.client(service, endpoint_url="\(endpoint)", region_name=region,
                                    aws_access_key_id="\(accessKeyID)", aws_secret_access_key="\(secretAccessKey)")

            """
        let result = try run("/usr/bin/env", ["python3", "-c", prelude + code], environment: environment)
        guard result.status == 0 else { throw SupportError("boto3: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A small HTTP stand-in written in Python for one test (a metadata service, an API's odd
/// answers moto does not give, git's HTTP backend): it serves on a loopback port it binds, and
/// is waited for until it says which; killed by its process id when released.
public final class PythonStandIn {
    public let port: Int
    private let process = Process()
    /// What the script writes: the port, and anything it prints or raises.
    private let outputPath = NSTemporaryDirectory() + "/bulwark-stand-in-\(UUID().uuidString).log"

    /// How every stand-in serves the `Handler` its script defines: a threading server on port 0,
    /// which prints the port it bound.
    private static let serve = """

        import http.server
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()

        """

    /// Runs `script`, which defines `Handler` (a `BaseHTTPRequestHandler`), with `arguments`
    /// (`sys.argv[1:]`), and serves it; `name` is for the error.
    public init(_ script: String, arguments: [String], name: String) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script + Self.serve] + arguments
        let outputPath = self.outputPath
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try output.close()
        guard let port = reportedPort(of: process, after: "listening on ", seconds: 30, in: { (try? read(outputPath)) ?? "" }) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw SupportError("the \(name) did not start: \((try? read(outputPath)) ?? "")")
        }
        self.port = port
    }

    /// Kills the stand-in by its process id and waits for it to end; once ended, does nothing.
    /// SIGKILL: the child inherits the test runner's blocked signals, SIGTERM among them.
    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: outputPath)
    }
}
