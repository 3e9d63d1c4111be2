internal import BulwarkHost
internal import Foundation

/// A file a person names on the command line (`apply --plan FILE`, `ingest FILE`), read whole:
/// opened without blocking and refused unless it is a regular file, so that a FIFO or a device
/// never holds the command up, and read to at most `maxSize` bytes (one more to tell).
enum NamedFile {
    /// Why the file was not read.
    enum Problem: Error {
        /// `open` failed with this `errno` (`ENOENT`: it does not exist).
        case cannotOpen(Int32)
        /// It is not a regular file: what it is, in words ("a folder", "a FIFO").
        case notRegularFile(String)
        /// It holds more than `maxSize` bytes.
        case tooLarge
        /// `read` failed with this `errno`.
        case cannotRead(Int32)

        /// The cause in words, after the file's name: "does not exist", "is a folder".
        var cause: String {
            switch self {
            case .cannotOpen(ENOENT): "does not exist"
            case .cannotOpen(let code), .cannotRead(let code): "cannot be read: \(String(cString: strerror(code)))"
            case .notRegularFile(let what): "is \(what), not a regular file"
            case .tooLarge: "is too large"
            }
        }
    }

    static func read(_ path: String, maxSize: Int) throws(Problem) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw .cannotOpen(errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .cannotRead(errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegularFile(FileType.name(info.st_mode)) }
        guard info.st_size <= maxSize else { throw .tooLarge }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= maxSize {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                bytes += chunk[0..<count]
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw .cannotRead(errno)
            }
        }
        guard bytes.count <= maxSize else { throw .tooLarge }
        return bytes
    }
}
