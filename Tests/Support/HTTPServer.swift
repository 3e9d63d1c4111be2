public import Foundation
internal import Synchronization

/// A real HTTP/1.1 listener on 127.0.0.1 that records what it receives, for tests of outgoing
/// webhooks. One connection at a time; it answers with the queued statuses, then 200.
public final class TestHTTPServer: Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        /// Header names lower-cased.
        public var headers: [String: String]
        public var body: Data
    }

    private struct State {
        var requests: [Request] = []
        var statuses: [Int]
        var stopped = false
        /// Answers wait until `release` (a slow peer, for as long as the test needs).
        var holding: Bool
        /// Listening, with a thread accepting connections.
        var serving = false
    }

    public let port: UInt16
    private let socket: Int32
    private let state: Mutex<State>

    /// Listens on `port` (0: any free port) and answers `statuses` first. `holding`: each answer
    /// waits, once the request is read and recorded, until `release` or `stop` (a slow peer).
    /// Without `listening`, the port is only bound until `listen`: a receiver that is down
    /// (connections are refused) on a port that nothing else can take meanwhile.
    public init(port: UInt16 = 0, statuses: [Int] = [], holding: Bool = false, listening: Bool = true) throws {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SupportError("socket failed") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, !listening || Glibc.listen(fd, 16) == 0 else {
            close(fd)
            throw SupportError("cannot listen on 127.0.0.1:\(port)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = UInt16(bigEndian: actual.sin_port)
        self.socket = fd
        self.state = Mutex(State(statuses: statuses, holding: holding, serving: listening))
        if listening { Thread { [self] in serve() }.start() }
    }

    /// Starts listening (a server made without `listening`). Does nothing once stopped or listening.
    public func listen() throws {
        let (start, failed) = state.withLock { state -> (Bool, Bool) in
            guard !state.stopped, !state.serving else { return (false, false) }
            guard Glibc.listen(socket, 16) == 0 else { return (false, true) }
            state.serving = true
            return (true, false)
        }
        if failed { throw SupportError("cannot listen on 127.0.0.1:\(port)") }
        if start { Thread { [self] in serve() }.start() }
    }

    public var url: String { "http://127.0.0.1:\(port)/hook" }
    public var requests: [Request] { state.withLock { $0.requests } }

    /// Lets the answers held (`holding`) go, and every later one at once.
    public func release() {
        state.withLock { $0.holding = false }
    }

    /// Stops listening: wakes the accepting thread, which closes the socket as it leaves. Safe to
    /// call more than once. Only that thread ever closes the socket (here, a socket that never
    /// listened), so a descriptor number that another part of the process reuses is never
    /// closed by mistake.
    public func stop() {
        let (first, serving) = state.withLock { state -> (Bool, Bool) in
            defer { state.stopped = true }
            return (!state.stopped, state.serving)
        }
        guard first else { return }
        if serving { shutdown(socket, Int32(SHUT_RDWR)) } else { close(socket) }
    }

    deinit { stop() }

    private func serve() {
        defer { close(socket) }
        while true {
            let client = accept(socket, nil, nil)
            guard client >= 0 else { return }
            handle(client)
            close(client)
            if state.withLock({ $0.stopped }) { return }
        }
    }

    private func handle(_ client: Int32) {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Range<Data.Index>?
        var expected = Int.max
        while data.count < expected {
            let n = read(client, &buffer, buffer.count)
            guard n > 0 else { break }
            data.append(contentsOf: buffer[0..<n])
            if headerEnd == nil, let end = data.range(of: Data("\r\n\r\n".utf8)) {
                headerEnd = end
                let head = String(decoding: data[..<end.lowerBound], as: UTF8.self)
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                expected = end.upperBound + length
            }
        }
        guard let end = headerEnd else { return }
        let lines = String(decoding: data[..<end.lowerBound], as: UTF8.self).split(separator: "\r\n")
        let requestLine = lines.first?.split(separator: " ") ?? []
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let request = Request(method: requestLine.first.map(String.init) ?? "", path: requestLine.dropFirst().first.map(String.init) ?? "",
                              headers: headers, body: data[end.upperBound...])
        let status = state.withLock { state -> Int in
            state.requests.append(request)
            return state.statuses.isEmpty ? 200 : state.statuses.removeFirst()
        }
        while state.withLock({ $0.holding && !$0.stopped }) { usleep(10_000) }
        let response = "HTTP/1.1 \(status) \(status == 200 ? "OK" : "Error")\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        _ = response.withCString { write(client, $0, strlen($0)) }
    }
}
