internal import Foundation

// A port chosen here and handed to a process started later can be taken by another test in
// between (the suite runs in parallel). A server that can bind port 0 does, and says which port
// it got (`reportedPort`); one that cannot is started again on another port when the one chosen
// was taken (`startOnFreePort`). An address that must refuse connections is a socket kept bound
// and not listening for as long as the test needs it (`TestHTTPServer(listening: false)`).

/// Waits for the port that `process`, started on port 0, says it bound: the number after
/// `127.0.0.1:` on the first whole line of `output()` holding `marker` after it. Read every
/// 20 ms until it is there, the process exited (its output read once more), or `seconds` passed:
/// nil then.
func reportedPort(of process: Process, after marker: String, seconds: Double = 60, in output: () -> String) -> Int? {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        let running = process.isRunning
        // The last piece is a line still being written, or empty.
        for line in output().split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            guard let said = line.range(of: marker), let address = line[said.upperBound...].range(of: "127.0.0.1:"),
                  let port = Int(line[address.upperBound...].prefix(while: \.isNumber)) else { continue }
            return port
        }
        guard running, Date() < deadline else { return nil }
        Thread.sleep(forTimeInterval: 0.02)
    }
}

/// Starts a server that cannot bind port 0 and say which port it got (PostgreSQL, sshd): `start`
/// with a port nothing listened on a moment ago, and again with another while it fails because
/// something took that port meanwhile (what it throws, the server's log among it, says the
/// address is in use), `attempts` times in all. Any other failure is thrown at once.
func startOnFreePort<T>(attempts: Int = 5, _ start: (Int) throws -> T) throws -> T {
    var attempt = 1
    while true {
        do {
            return try start(try freeLoopbackPort())
        } catch let error where attempt < attempts && addressInUse(error) {
            attempt += 1
        }
    }
}

/// Whether a server's failure to start was a port someone else holds: its message (Linux's
/// EADDRINUSE text; PostgreSQL's "could not bind").
func addressInUse(_ error: any Error) -> Bool {
    let text = "\(error)".lowercased()
    return text.contains("address already in use") || text.contains("could not bind")
}

/// A TCP socket bound to a port of 127.0.0.1 the kernel chose, not listening, and that port;
/// the caller closes it (or listens on it).
public func boundLoopbackSocket() throws -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SupportError("socket: \(String(cString: strerror(errno)))") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else {
        close(fd)
        throw SupportError("cannot bind a loopback port: \(String(cString: strerror(errno)))")
    }
    return (fd, UInt16(bigEndian: address.sin_port))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (only for `startOnFreePort`: by the
/// time another process binds it, someone else may have).
func freeLoopbackPort() throws -> Int {
    let (fd, port) = try boundLoopbackSocket()
    close(fd)
    return Int(port)
}
