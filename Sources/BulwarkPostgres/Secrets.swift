internal import Foundation

/// The folders a Target's `passwordFile` may be read from, and the one way to read it.
///
/// The operator names them: `BULWARK_SECRETS_DIR` (one folder), or else `/run/secrets` and
/// systemd's `$CREDENTIALS_DIRECTORY`. A relative `passwordFile` is looked up in each in turn; an
/// absolute one must lie inside one of them. The path is resolved beneath the folder one
/// component at a time (`openat` with `O_NOFOLLOW`): a symbolic link is followed only while it
/// stays inside (relative, never above the folder), as the links of a Kubernetes secret volume
/// do; anything that leads out, any absolute link, and anything but a regular file is refused.
/// Without this a policy commit could name `/etc/shadow`, or any file root can read, and have
/// Bulwark send it to a server of the committer's choosing.
struct SecretsDirectories: Sendable {
    /// Set by the command line (`--secrets-dir`) or a test; nil reads the environment when a
    /// secret is read.
    var explicit: [String]?

    static let environmentVariable = "BULWARK_SECRETS_DIR"
    static let maximumSize = 64 * 1024

    func roots(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        let folders: [String]
        if let explicit {
            folders = explicit
        } else if let named = environment[Self.environmentVariable], !named.isEmpty {
            folders = [named]
        } else {
            folders = ["/run/secrets"] + (environment["CREDENTIALS_DIRECTORY"].map { $0.isEmpty ? [] : [$0] } ?? [])
        }
        return folders.map { $0.count > 1 && $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    /// The secret in `path` (surrounding newlines trimmed); `what` names it in errors.
    func read(_ path: String, what: String) throws -> String {
        let roots = roots()
        let hint = "put it in \(roots.joined(separator: " or ")) or name its folder with \(Self.environmentVariable)"
        var candidates: [(root: String, relative: String)] = []
        if path.hasPrefix("/") {
            for root in roots where path.hasPrefix(root == "/" ? "/" : root + "/") {
                candidates.append((root, String(path.dropFirst(root == "/" ? 1 : root.count + 1))))
            }
            guard !candidates.isEmpty else {
                throw PostgresAdapterError("\(what) \(path) is outside the secrets directories: \(hint)")
            }
        } else {
            candidates = roots.map { ($0, path) }
        }
        var missing: [String] = []
        for (root, relative) in candidates {
            do {
                let text = try Self.readBeneath(root, relative)
                let value = text.trimmingCharacters(in: .newlines)
                guard !value.isEmpty else { throw PostgresAdapterError("is empty") }
                return value
            } catch let error as Missing {
                missing.append("\(root)/\(relative) (\(error.reason))")
            } catch {
                throw PostgresAdapterError("\(what) \(path) in \(root): \(error)")
            }
        }
        throw PostgresAdapterError("\(what) \(path) not found: \(missing.joined(separator: ", ")); \(hint)")
    }

    private struct Missing: Error { var reason: String }

    /// Reads `relative` beneath the folder `root` without leaving it.
    private static func readBeneath(_ root: String, _ relative: String) throws -> String {
        let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw Missing(reason: "the folder cannot be opened: \(String(cString: strerror(errno)))") }
        var stack: [Int32] = [rootFD]
        defer { for fd in stack { close(fd) } }
        var pending = relative.split(separator: "/").map(String.init)
        var links = 0
        while !pending.isEmpty {
            let name = pending.removeFirst()
            if name == "." { continue }
            if name == ".." {
                guard stack.count > 1, let fd = stack.popLast() else { throw PostgresAdapterError("the path leads out of the folder") }
                close(fd)
                continue
            }
            let folder = stack[stack.count - 1]
            var status = stat()
            guard fstatat(folder, name, &status, AT_SYMLINK_NOFOLLOW) == 0 else {
                if errno == ENOENT { throw Missing(reason: "no such file") }
                throw PostgresAdapterError("\(name): \(String(cString: strerror(errno)))")
            }
            if status.st_mode & S_IFMT == S_IFLNK {
                links += 1
                guard links <= 40 else { throw PostgresAdapterError("too many symbolic links") }
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let length = readlinkat(folder, name, &buffer, buffer.count - 1)
                guard length >= 0 else { throw PostgresAdapterError("\(name): \(String(cString: strerror(errno)))") }
                let target = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                guard !target.hasPrefix("/") else {
                    throw PostgresAdapterError("\(name) is a symbolic link to \(target), out of the folder")
                }
                pending = target.split(separator: "/").map(String.init) + pending
                continue
            }
            if pending.isEmpty {
                let fd = openat(folder, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
                guard fd >= 0 else { throw PostgresAdapterError("\(name): \(String(cString: strerror(errno)))") }
                stack.append(fd)
                guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
                    throw PostgresAdapterError("\(name) is not a regular file")
                }
                var data = [UInt8]()
                var chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = Foundation.read(fd, &chunk, chunk.count)
                    guard count >= 0 else { throw PostgresAdapterError("\(name): \(String(cString: strerror(errno)))") }
                    if count == 0 { break }
                    data += chunk.prefix(count)
                    guard data.count <= maximumSize else { throw PostgresAdapterError("\(name) is larger than \(maximumSize) bytes") }
                }
                return String(decoding: data, as: UTF8.self)
            }
            let fd = openat(folder, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw PostgresAdapterError("\(name): \(String(cString: strerror(errno)))") }
            stack.append(fd)
        }
        throw PostgresAdapterError("names a folder, not a file")
    }
}
