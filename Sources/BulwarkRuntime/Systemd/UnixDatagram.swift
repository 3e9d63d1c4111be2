internal import Glibc

/// One datagram to a Unix socket, for the two systemd protocols Bulwark speaks (service
/// notifications and the journal's native protocol), which are both "one message, one
/// datagram, no answer".
enum UnixDatagram {
    struct Failure: Error {
        let code: Int32
    }

    /// Sends `payload` to `address`: a path, or `@name` for the abstract namespace.
    static func send(_ payload: [UInt8], to address: String) throws(Failure) {
        var bytes = Array(address.utf8)
        var socketAddress = sockaddr_un()
        guard bytes.count < MemoryLayout.size(ofValue: socketAddress.sun_path) else { throw Failure(code: ENAMETOOLONG) }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(code: errno) }
        defer { close(fd) }
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        // An abstract address starts with a NUL byte instead of the '@', and its length counts
        // exactly its bytes; a path's counts its terminating NUL.
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: bytes) }
        let offset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? MemoryLayout<sa_family_t>.size
        let length = socklen_t(offset + bytes.count + (abstract ? 0 : 1))
        let sent = payload.withUnsafeBytes { data in
            withUnsafePointer(to: &socketAddress) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, data.baseAddress, data.count, Int32(MSG_NOSIGNAL), $0, length)
                }
            }
        }
        guard sent >= 0 else { throw Failure(code: errno) }
    }
}
