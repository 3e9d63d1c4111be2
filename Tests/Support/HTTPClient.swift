public import Foundation

/// One HTTP/1.1 request to 127.0.0.1 over a plain socket (`Connection: close`), for tests of the
/// daemon's endpoints: what a curl would do, with nothing in between.
public func httpRequest(port: Int, _ method: String, _ path: String, headers: [String: String] = [:],
                        body: [UInt8] = []) throws -> (status: Int, body: String) {
    let fd = try loopbackConnection(port: port, timeout: 30)
    defer { close(fd) }
    var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    let request = Array((head + "\r\n").utf8) + body
    var sent = 0
    while sent < request.count {
        let n = request[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw SupportError("write failed") }
        sent += n
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let statusLine = text.split(separator: "\r\n").first, statusLine.split(separator: " ").count >= 2,
          let status = Int(statusLine.split(separator: " ")[1]) else { throw SupportError("no HTTP answer from port \(port)") }
    var content = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
    if text.lowercased().contains("transfer-encoding: chunked") { content = dechunk(content) }
    return (status, content)
}

private func dechunk(_ text: String) -> String {
    var result = ""
    var rest = Substring(text)
    while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound], radix: 16), size > 0 {
        let start = lineEnd.upperBound
        let bytes = Array(rest[start...].utf8)
        result += String(decoding: bytes.prefix(size), as: UTF8.self)
        rest = Substring(String(decoding: bytes.dropFirst(size + 2), as: UTF8.self))
    }
    return result
}

/// The `bulwark run` daemon as a real process, its output in a file.
public final class DaemonProcess {
    public let process = Process()
    public let logPath: String
    /// Where this daemon's output begins in `logPath`, after what the file held when it started.
    private let logStart: UInt64
    /// Where the daemon logs when its standard error is the journal's stream.
    private let journal: DatagramSink?
    /// The port given, or the one the daemon bound once it said which.
    private var bound: Int?

    /// Starts the daemon on 127.0.0.1:`port`, or without one on port 0: the daemon binds a port
    /// no one holds and says which (`port`), so that no other process can take it between the
    /// choice and the bind. A port is given only to start a daemon again where another one was.
    /// `journal`: the sink the daemon logs to instead of `logPath` (`JOURNAL_STREAM`).
    public init(_ arguments: [String], port: Int? = nil, environment extra: [String: String] = [:], logPath: String,
                journal: DatagramSink? = nil) throws {
        bound = port
        self.logPath = logPath
        self.journal = journal
        process.executableURL = URL(fileURLWithPath: try bulwarkExecutable())
        process.arguments = ["run", "--listen", "127.0.0.1:\(port ?? 0)"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        // A log file the caller made is kept (its inode may matter, as for JOURNAL_STREAM), and
        // so is what it holds (a daemon started again where another one logged): this one's
        // output is appended, and is all that `log` reads, the port among it.
        let fd = open(logPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SupportError("cannot open \(logPath): errno \(errno)") }
        let log = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        logStart = UInt64(lseek(fd, 0, SEEK_END))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try log.close()
    }

    /// The port the daemon listens on: the one given, else the one its HTTP server logs once it
    /// listens (Hummingbird's "Server started and listening on HOST:PORT", at info), waited for
    /// while the daemon runs, up to a minute. Throws when it exited first or took longer.
    public var port: Int {
        get throws {
            if let bound { return bound }
            guard let port = reportedPort(of: process, after: "Server started and listening on ",
                                          in: { journal.map { $0.messages.joined(separator: "\n") } ?? log }) else {
                throw SupportError("the daemon did not say which port it listens on\(process.isRunning ? "" : " (it exited)"): \(log)")
            }
            bound = port
            return port
        }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// What this daemon wrote to `logPath` so far.
    public var log: String {
        guard let file = FileHandle(forReadingAtPath: logPath) else { return "" }
        defer { try? file.close() }
        guard (try? file.seek(toOffset: logStart)) != nil, let data = try? file.readToEnd() else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Waits until `condition` holds, checking every 20 ms; false when `seconds` pass first.
    public func wait(seconds: Double = 20, until condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return try condition()
    }

    public func get(_ path: String) throws -> (status: Int, body: String) { try httpRequest(port: port, "GET", path) }

    /// Sends SIGTERM and waits for the exit; returns the exit status (nil if it did not exit in time).
    public func terminate(timeout: Double = 30) -> Int32? {
        kill(process.processIdentifier, SIGTERM)
        guard wait(seconds: timeout, until: { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }
}

/// A TCP connection to 127.0.0.1:`port` whose reads give up after `timeout` seconds; the caller
/// closes it.
public func loopbackConnection(port: Int, timeout seconds: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SupportError("socket failed") }
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        throw SupportError("cannot connect to 127.0.0.1:\(port)")
    }
    return fd
}
