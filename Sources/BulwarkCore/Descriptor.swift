import Foundation

/// Plain writes to an open file descriptor.
public enum Descriptor {
    /// Writes all of `bytes` to `fd`, again after an interrupted or short write; false when a
    /// write fails (errno says why) or writes nothing.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }
}
