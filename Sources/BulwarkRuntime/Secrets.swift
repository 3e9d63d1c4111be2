package import BulwarkCore
import Foundation
internal import Glibc
internal import CDispatch

/// Where secret files may be read from: `--secrets-dir` (exported to the process as
/// `BULWARK_SECRETS_DIR` so adapters read the same), else `/run/secrets`, and systemd's
/// `$CREDENTIALS_DIRECTORY`. A secret file anywhere else, or a symbolic link that leads out of
/// these folders, is refused: a policy commit cannot make Bulwark read and send `/etc/shadow`.
package enum SecretFiles {
    package static let variable = "BULWARK_SECRETS_DIR"
    package static let defaultDirectory = "/run/secrets"

    /// The folders secret files may be under, as given (not resolved).
    package static func directories(environment: [String: String]) -> [String] {
        var result = [environment[variable].flatMap { $0.isEmpty ? nil : $0 } ?? defaultDirectory]
        if let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty { result.append(credentials) }
        return result
    }

    /// Reads the secret file at `path` (relative paths are taken under the first folder). A
    /// `privateKey` must moreover be private to the user Bulwark runs as (`privateKeyDoubt`).
    /// - Throws: `CommandError` naming the allowed folders when the file resolves outside them,
    ///   when it is not a readable regular file, or why a `privateKey` is not private.
    package static func read(_ path: String, environment: [String: String], privateKey: Bool = false) throws -> String {
        let folders = directories(environment: environment)
        let wanted = path.hasPrefix("/") ? path : folders[0] + "/" + path
        let refused = CommandError("secret file \(path) is not under the secrets folder (\(folders.joined(separator: " or "))); "
                                   + "put it there or pass --secrets-dir")
        // Symbolic links inside a folder are followed (Kubernetes mounts secrets that way), but
        // the file they lead to must still be inside it.
        guard let resolved = realPath(wanted) else { throw CommandError("cannot read secret file \(path)") }
        let inside = folders.compactMap(realPath).contains { root in
            root == "/" || resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/")
        }
        guard inside else { throw refused }
        // The resolved path, without following a link that appeared since.
        let fd = open(resolved, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw CommandError("cannot read secret file \(path)") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size <= 1 << 20 else {
            throw CommandError("secret file \(path) is not a regular file of at most 1 MiB")
        }
        if privateKey, let doubt = privateKeyDoubt(fd: fd, info: info, resolved: resolved) {
            let shown = quotedForMessage(path, limit: 256)
            throw CommandError("the key \(shown) \(doubt): whoever can read it can sign as this Bulwark. Make it private: "
                               + "chmod 600 \(shown) (and chown it to the user Bulwark runs as); in Kubernetes give the secret "
                               + "volume defaultMode: 0400 (with fsGroup when not running as root)")
        }
        guard let data = try? handle.readToEnd() else { throw CommandError("cannot read secret file \(path)") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Why the private key open as `fd` (`info`, its `fstat`; `resolved`, its path without
    /// links) is not private to the user Bulwark runs as, or nil. It must belong to root or to
    /// that user (its owner can always read it), and group and others may have no access to it
    /// (`mode & 077`, ssh's rule), unless no other user can reach it:
    /// - a folder on its path belongs to the user Bulwark runs as and group and others may not
    ///   enter it (no `x` for them; with an ACL, the group bits are its mask, which bounds every
    ///   named entry), and the file has no other name (one link);
    /// - or it is readable by its group only, belongs to root, lies on a read-only mount and
    ///   Bulwark does not run as root: what Kubernetes makes of a secret with `defaultMode: 0400`
    ///   and `fsGroup` (it adds group read to every file of the volume), which neither Bulwark
    ///   nor its operator can make any narrower. Readable by others, it is refused there too.
    private static func privateKeyDoubt(fd: Int32, info: stat, resolved: String) -> String? {
        let mode = "mode " + String(format: "%04o", UInt32(info.st_mode & 0o7777))
        guard StrictModes.trusted(info.st_uid) else {
            return "belongs to uid \(info.st_uid), neither root nor the user Bulwark runs as (uid \(geteuid())), who can read it"
        }
        guard info.st_mode & 0o077 != 0 else { return nil }
        if info.st_nlink == 1, onlyOwnerEnters(resolved) { return nil }
        if info.st_mode & 0o037 == 0, info.st_uid == 0, geteuid() != 0 {
            var space = statvfs()
            if fstatvfs(fd, &space) == 0, space.f_flag & UInt(ST_RDONLY) != 0 { return nil }
        }
        return "is open to group or others (\(mode))"
    }

    /// Whether a folder above `resolved` belongs to the user Bulwark runs as and nobody else may
    /// enter it.
    private static func onlyOwnerEnters(_ resolved: String) -> Bool {
        var folder = (resolved as NSString).deletingLastPathComponent
        while !folder.isEmpty {
            var info = stat()
            if lstat(folder, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == geteuid(), info.st_mode & 0o011 == 0 {
                return true
            }
            if folder == "/" { break }
            folder = (folder as NSString).deletingLastPathComponent
        }
        return false
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

extension NotifierConfig.Secret {
    /// The secret's value: inline, from an environment variable (which must be set), or from a
    /// file under the secrets folder (surrounding whitespace trimmed, so a trailing newline is not
    /// part of it; see `SecretFiles`).
    package func value(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        switch self {
        case .inline(let value):
            return value
        case .environment(let name):
            guard let value = environment[name], !value.isEmpty else { throw CommandError("environment variable \(name) is not set") }
            return value
        case .file(let path):
            return try SecretFiles.read(path, environment: environment)
        }
    }

    /// A secret a command takes as `--…-file PATH` or else an environment variable: the file's
    /// content (outside the secrets folder, unreadable or empty is an error naming `what`), the
    /// variable's value, or nil when the variable is unset or empty.
    package static func commandLine(file: String?, environment name: String, what: String) throws -> String? {
        guard let file else {
            return try? Self.environment(name).value()
        }
        let value: String
        do {
            // On the command line a relative path is the shell's: relative to the working directory.
            let path = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
            value = try Self.file(path).value()
        } catch {
            throw CommandError("cannot use the \(what) file: \(error)")
        }
        guard !value.isEmpty else { throw CommandError("the \(what) file \(file) is empty") }
        // A second line (a note, a second token, CRLF) would be sent as part of the credential.
        guard !value.contains(where: \.isNewline) else {
            throw CommandError("the \(what) file \(file) holds more than one line; it must hold the \(what) alone, on one line")
        }
        return value
    }
}
