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
    public let port: Int
    public let process = Process()
    public let logPath: String

    public init(_ arguments: [String], environment extra: [String: String] = [:], logPath: String) throws {
        port = try freeLoopbackPort()
        self.logPath = logPath
        process.executableURL = URL(fileURLWithPath: try bulwarkExecutable())
        process.arguments = ["run", "--listen", "127.0.0.1:\(port)"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        // A log file the caller made is kept (its inode may matter, as for JOURNAL_STREAM).
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try log.close()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    public var log: String { (try? read(logPath)) ?? "" }

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
