internal import Foundation

/// A file's bytes, mapped read-only. Its pages are the file's: the kernel reads them as they
/// are touched and may drop them any time, and they are not the process's heap. A pack read
/// whole into memory to be merged was the daemon's largest allocation, of a size that grew
/// with its history, and the freed buffers stayed in malloc's arena: anonymous memory grew
/// by 4-7 KiB with every fix (heaptrack on the daemon soak; `DaemonSoakTests`).
///
/// Only for files nothing rewrites in place (packs and their indexes are written once,
/// renamed into place and later unlinked, never truncated), which a mapping would turn into a
/// SIGBUS. nil when the file cannot be opened, is a symbolic link or anything but a regular
/// file (opened without blocking, so that a FIFO put in a pack folder cannot hang the merge),
/// or cannot be mapped.
final class MappedFile {
    /// The file's bytes; valid while this object lives (see `withBytes`).
    private let bytes: UnsafeRawBufferPointer

    init?(_ path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size >= 0 else { return nil }
        let size = Int(info.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { return nil }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    /// Calls `body` with the bytes, the mapping kept for as long as it runs (Swift may release
    /// an object after its last use, which a bare pointer into its mapping is not).
    func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        defer { withExtendedLifetime(self) {} }
        return try body(bytes)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}
