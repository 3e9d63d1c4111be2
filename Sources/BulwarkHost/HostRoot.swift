internal import Foundation
internal import BulwarkCore

/// The directory a host target is rooted at (`/` for the machine itself), and the only place
/// the host adapter reads or writes. Paths are resolved component by component: `..`, and
/// symbolic links whose target is absolute or leaves the root, are refused, because the
/// kernel would follow them out of the root.
public struct HostRoot: Sendable, Hashable {
    public let path: String

    public init(_ path: String) throws(HostError) {
        guard path.hasPrefix("/") else { throw HostError("target root must be an absolute path", path: path) }
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        var info = stat()
        guard stat(trimmed, &info) == 0, info.st_mode & FileType.mask == FileType.directory else {
            throw HostError("target root does not exist or is not a directory", path: trimmed)
        }
        self.path = trimmed
    }

    init(target: Target) throws(HostError) {
        guard let root = target.settings["root"] else { throw HostError("target \(target.name) has no root") }
        try self.init(root)
    }

    /// The real path of `relative` (written as in the target, `/etc/shadow` or `etc/shadow`)
    /// inside the root, following in-root relative symlinks. The last component need not exist.
    /// Throws `UnsafeDesiredState` for a path that escapes the root.
    public func resolve(_ relative: String) throws -> String {
        var pending = relative.split(separator: "/").map(String.init)
        var resolved: [String] = []
        var hops = 0
        while !pending.isEmpty {
            let part = pending.removeFirst()
            if part == "." { continue }
            if part == ".." {
                throw UnsafeDesiredState("path \(relative) uses '..'; paths must stay inside the target root \(path)")
            }
            let candidate = full(resolved + [part])
            var info = stat()
            guard lstat(candidate, &info) == 0 else {
                // Missing: the rest is taken literally (nothing there to follow).
                resolved.append(part)
                resolved += pending.filter { $0 != "." }
                if pending.contains("..") {
                    throw UnsafeDesiredState("path \(relative) uses '..'; paths must stay inside the target root \(path)")
                }
                return full(resolved)
            }
            if info.st_mode & FileType.mask == FileType.symlink {
                hops += 1
                guard hops <= 40 else { throw HostError("too many levels of symbolic links", path: candidate) }
                let link = try readLink(candidate)
                if link.hasPrefix("/") {
                    throw UnsafeDesiredState(
                        "\(full(resolved + [part])) is a symbolic link to the absolute path \(link), which would leave the target root \(path)")
                }
                var base = resolved
                for component in link.split(separator: "/").map(String.init) {
                    if component == "." || component.isEmpty { continue }
                    if component == ".." {
                        guard !base.isEmpty else {
                            throw UnsafeDesiredState(
                                "\(candidate) is a symbolic link to \(link), which leaves the target root \(path)")
                        }
                        base.removeLast()
                    } else {
                        base.append(component)
                    }
                }
                // Re-walk the link's target so links inside it are checked too.
                pending = base + pending
                resolved = []
                continue
            }
            resolved.append(part)
        }
        return full(resolved)
    }

    private func full(_ components: [String]) -> String {
        components.isEmpty ? path : (path == "/" ? "" : path) + "/" + components.joined(separator: "/")
    }

    private func readLink(_ path: String) throws(HostError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { throw HostError("cannot read symbolic link: \(errnoText())", path: path) }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

enum FileType {
    static let mask: mode_t = 0o170000
    static let symlink: mode_t = 0o120000
    static let directory: mode_t = 0o040000
    static let regular: mode_t = 0o100000
}

func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }
