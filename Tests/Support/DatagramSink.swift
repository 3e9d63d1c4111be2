internal import Foundation
internal import Glibc
internal import Synchronization
internal import BulwarkProcess

/// A Unix datagram socket the test binds, standing in for systemd's notification socket or
/// the journal's: it keeps every datagram it receives, in order, as raw bytes.
public final class DatagramSink: Sendable {
    public let path: String
    private let fd: Int32
    private final class Shared: Sendable {
        let received = Mutex<[[UInt8]]>([])
        let stopped = Atomic<Bool>(false)
    }
    private let shared: Shared
    /// The receiving thread, joined before the socket is closed.
    private let receiver: OwnThread

    public init(path: String) throws {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SupportError("socket: errno \(errno)") }
        self.fd = fd
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { close(fd); throw SupportError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { close(fd); throw SupportError("bind \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let shared = Shared()
        self.shared = shared
        // A thread that can be joined (Foundation's `Thread` cannot), whose failure to start is seen.
        guard let thread = OwnThread.start({ [fd] in
            var buffer = [UInt8](repeating: 0, count: 256 * 1024)
            while !shared.stopped.load(ordering: .relaxed) {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count > 0 { shared.received.withLock { $0.append(Array(buffer[0..<count])) } }
            }
        }) else {
            close(fd)
            unlink(path)
            throw SupportError("cannot start a thread")
        }
        receiver = thread
    }

    deinit {
        // The receiving thread wakes (the shutdown, else its 100 ms timeout), sees the flag and
        // ends; the socket is closed only after it has, so it never reads a reused descriptor.
        shared.stopped.store(true, ordering: .relaxed)
        shutdown(fd, Int32(SHUT_RDWR))
        receiver.join()
        close(fd)
        unlink(path)
    }

    public var datagrams: [[UInt8]] { shared.received.withLock { $0 } }

    /// Each datagram as text.
    public var messages: [String] { datagrams.map { String(decoding: $0, as: UTF8.self) } }

    /// Waits until `condition` holds for what has arrived, checking every 20 ms.
    public func wait(seconds: Double = 20, until condition: ([String]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition(messages) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return condition(messages)
    }

    /// A journal native-protocol datagram as fields: `NAME=value` lines, and `NAME\n` + 64-bit
    /// little-endian length + bytes + `\n` for values that hold newlines.
    public static func journalFields(_ datagram: [UInt8]) -> [String: String]? {
        var fields: [String: String] = [:]
        var index = 0
        while index < datagram.count {
            guard let end = datagram[index...].firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "=") }) else { return nil }
            let name = String(decoding: datagram[index..<end], as: UTF8.self)
            if datagram[end] == UInt8(ascii: "=") {
                guard let newline = datagram[end...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
                fields[name] = String(decoding: datagram[(end + 1)..<newline], as: UTF8.self)
                index = newline + 1
            } else {
                guard end + 9 <= datagram.count else { return nil }
                var length: UInt64 = 0
                for (shift, byte) in datagram[(end + 1)..<(end + 9)].enumerated() { length |= UInt64(byte) << (8 * UInt64(shift)) }
                let start = end + 9
                guard length <= UInt64(datagram.count - start), start + Int(length) < datagram.count,
                      datagram[start + Int(length)] == UInt8(ascii: "\n") else { return nil }
                fields[name] = String(decoding: datagram[start..<(start + Int(length))], as: UTF8.self)
                index = start + Int(length) + 1
            }
        }
        return fields
    }
}
