internal import Foundation

/// moto's server (the AWS APIs, in memory) on a free loopback port, for one test. `python3`
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
    public var environment: [String: String] {
        ["AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secretAccessKey, "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"]
    }
    private let process: Process

    /// Starts moto's server. `patch` is Python run in the server's process before it serves, to
    /// seed what no API can (moto dates every access key now; AWS's clock cannot be set).
    public init(patch: String = "") throws {
        port = try freeLoopbackPort()
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let serve = ["-H", "127.0.0.1", "-p", String(port)]
        process.arguments = patch.isEmpty ? ["python3", "-m", "moto.server"] + serve
            : ["python3", "-c", patch + "\nimport sys\nfrom moto.server import main\nmain(sys.argv[1:])\n"] + serve
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Importing moto takes seconds, many more on a loaded machine: wait up to a minute,
        // but not for a server that already exited.
        for _ in 0..<1200 where process.isRunning {
            if connects(port: port) { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        kill(process.processIdentifier, SIGKILL)
        throw SupportError("moto's server did not start on port \(port)")
    }

    /// moto's server ignores SIGTERM while it serves; it holds nothing worth a clean stop.
    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
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

/// A TCP port on 127.0.0.1 that nothing listens on right now.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SupportError("socket failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else { throw SupportError("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
public func connects(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A small HTTP stand-in written in Python for one test (a metadata service, an API's odd
/// answers moto does not give): started on a free loopback port, waited for until it listens,
/// killed by its process id when released.
public final class PythonStandIn {
    public let port: Int
    private let process = Process()

    /// Runs `script` with the port and `arguments` after it; `name` is for the error.
    public init(_ script: String, arguments: [String], name: String) throws {
        port = try freeLoopbackPort()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, String(port)] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        for _ in 0..<200 {
            if connects(port: port) { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw SupportError("the \(name) did not start on port \(port)")
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
