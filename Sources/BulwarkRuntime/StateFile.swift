import Foundation

/// Files Bulwark keeps beside its clone in the state directory (the audit index, the audit
/// trail): replaced atomically, never through a symbolic link, readable by the owner only.
package enum StateFile {
    /// Writes `bytes` to a temporary file (`O_NOFOLLOW`, mode 0600) and renames it over `path`.
    /// After a crash the file is the old one or the new one; with `synced`, also after a power
    /// loss (the bytes reach the disk before the rename), for files whose loss would weaken a
    /// check rather than cost a rebuild.
    package static func replace(_ path: String, with bytes: [UInt8], synced: Bool = false) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw CommandError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { buffer in
                buffer.baseAddress.map { Foundation.write(fd, $0 + written, buffer.count - written) } ?? -1
            }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw CommandError("cannot write \(temporary): \(reason)")
            }
            written += n
        }
        if synced, fsync(fd) != 0 {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw CommandError("cannot sync \(temporary): \(reason)")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw CommandError("cannot replace \(path): \(reason)")
        }
    }
}
