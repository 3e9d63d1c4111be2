import BulwarkCore
import BulwarkGit
import Crypto
import Foundation

/// An OpenSSH `known_hosts` file: which host keys Bulwark trusts for SSH remotes.
///
/// Understands what `ssh-keyscan` and `ssh` write: host lists with commas, `[host]:port` for
/// other ports than 22, hashed names (`|1|salt|hash`, HMAC-SHA1), `*`/`?` patterns, negated
/// patterns (`!host`), and the `@revoked` marker. `@cert-authority` lines are skipped: Bulwark
/// does not verify host certificates.
package struct KnownHosts: Sendable {
    package struct Entry: Sendable {
        package var line: Int
        package var hosts: String
        package var revoked: Bool
        package var keyType: String
        package var key: [UInt8]
    }

    package struct Failure: Error, CustomStringConvertible {
        package var description: String
    }

    package let path: String
    package let entries: [Entry]

    package init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(description: "cannot read known_hosts file \(path)")
        }
        guard data.count <= 4 << 20, let text = String(data: data, encoding: .utf8) else {
            throw Failure(description: "known_hosts file \(path) is over 4 MiB or not UTF-8")
        }
        self.init(path: path, text: text)
    }

    package init(path: String, text: String) {
        self.path = path
        var entries: [Entry] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var fields = raw.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = fields.first, !first.hasPrefix("#") else { continue }
            var revoked = false
            if first.hasPrefix("@") {
                guard first == "@revoked" else { continue }
                revoked = true
                fields.removeFirst()
            }
            guard fields.count >= 3, let key = Data(base64Encoded: fields[2]) else { continue }
            entries.append(Entry(line: index + 1, hosts: fields[0], revoked: revoked, keyType: fields[1], key: [UInt8](key)))
        }
        self.entries = entries
    }

    /// The name `known_hosts` files use for `host` on `port`.
    package static func name(_ host: String, port: Int) -> String {
        port == 22 ? host : "[\(host)]:\(port)"
    }

    /// Nil when `key` is a trusted key of `host` on `port`; otherwise why not, and what to do.
    package func check(host: String, port: Int, key: [UInt8]) -> String? {
        let name = Self.name(host.lowercased(), port: port)
        let matching = entries.filter { Self.matches($0.hosts, name: name) }
        if let revoked = matching.first(where: { $0.revoked && $0.key == key }) {
            return "the SSH host key of \(name) is marked @revoked in \(path) line \(revoked.line)"
        }
        if matching.contains(where: { !$0.revoked && $0.key == key }) { return nil }
        let fingerprint = "SHA256:" + Data(SHA256.hash(data: key)).base64EncodedString().replacingOccurrences(of: "=", with: "")
        if let other = matching.first(where: { !$0.revoked }) {
            return "the SSH host key of \(name) (\(fingerprint)) does not match \(path) line \(other.line): "
                + "the server may be an impostor, or its key changed; refusing to connect"
        }
        return "\(name) is not in \(path) (its host key is \(fingerprint)); after checking that fingerprint, add it with "
            + "ssh-keyscan \(port == 22 ? "" : "-p \(port) ")\(host) >> \(path)"
    }

    /// Whether a `known_hosts` host field names `name`: a hashed name, or a list of patterns
    /// where a matching negated pattern wins (`*` and `?` wildcards, as OpenSSH's match_pattern).
    package static func matches(_ field: String, name: String) -> Bool {
        if field.hasPrefix("|1|") {
            let parts = field.split(separator: "|", omittingEmptySubsequences: false)
            guard parts.count == 4, let salt = Data(base64Encoded: String(parts[2])),
                  let hash = Data(base64Encoded: String(parts[3])) else { return false }
            let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(name.utf8), using: SymmetricKey(data: salt))
            return Data(mac) == hash
        }
        var matched = false
        for pattern in field.lowercased().split(separator: ",") {
            if pattern.hasPrefix("!") {
                if Glob.matches(String(pattern.dropFirst()), name) { return false }
            } else if Glob.matches(String(pattern), name) {
                matched = true
            }
        }
        return matched
    }
}

/// Host and port of an SSH remote URL (`ssh://[user@]host[:port]/path` or `user@host:path`),
/// nil for any other kind of URL.
package func sshEndpoint(_ url: String) -> (host: String, port: Int)? {
    if url.hasPrefix("ssh://") || url.hasPrefix("git+ssh://") || url.hasPrefix("ssh+git://") {
        guard let components = URLComponents(string: url.replacingOccurrences(of: "git+ssh://", with: "ssh://")
            .replacingOccurrences(of: "ssh+git://", with: "ssh://")), let host = components.host else { return nil }
        return (host, components.port ?? 22)
    }
    guard !url.contains("://"), !url.hasPrefix("/"), let colon = url.firstIndex(of: ":") else { return nil }
    let authority = url[..<colon]
    guard !authority.contains("/") else { return nil }
    let host = authority.split(separator: "@").last.map(String.init) ?? String(authority)
    return host.isEmpty ? nil : (host, 22)
}
