/// Who a verified signer is, as a person: every name and key the trusted files tie to the key
/// that signed. An SSH key is every principal the trusted signers file lists it for; an OpenPGP
/// key is its fingerprint and every address its user ids name; and each of those brings in
/// whatever else names it (an address that is also an SSH principal brings that key, a key's
/// other user ids their addresses). Two signers are the same person when their identities share
/// a name or a key, however each signature was made.
public struct SignerIdentity: Sendable, Hashable {
    /// The signer as messages and records name it (the principal, address or fingerprint).
    public var shown: String
    /// Principals and addresses (principal patterns as written), lowercased.
    public var names: Set<String>
    /// The keys: `ssh:<base64 public key>`, `openpgp:<primary key fingerprint>`, `ed25519:<base64
    /// of the 32 bytes>` (one ed25519 key used as both).
    public var keys: Set<String>

    public init(shown: String, names: Set<String>, keys: Set<String>) {
        self.shown = shown
        self.names = names
        self.keys = keys
    }

    /// Whether any name ties the key to a person: a key known only as itself (an OpenPGP key
    /// whose user ids name no address, or a signer whose identity could not be read) may be
    /// anyone's, another signer's included.
    public var isTiedDown: Bool { !names.isEmpty }

    /// Why `self` and `other` may be one person, in words; nil when they are told apart: each
    /// is tied to a name, and they share no name and no key.
    public func samePerson(as other: SignerIdentity) -> String? {
        if let name = names.intersection(other.names).min() ?? Self.matched(names, other.names) ?? Self.matched(other.names, names) {
            return "\(other.quoted) and \(quoted) are one person: both are '\(quotedForMessage(name))' "
                + "(the trusted signers file and the trusted keyring tie them to the same name)"
        }
        if let key = keys.intersection(other.keys).min() {
            return "\(other.quoted) and \(quoted) are one person: both hold the \(Self.describe(key))"
        }
        for (one, two) in [(self, other), (other, self)] where !one.isTiedDown {
            return "\(one.quoted) is known only by its key (\(one.keys.sorted().first.map(Self.describe) ?? "unread")), which no principal "
                + "or user id address ties to a person, so it cannot be told apart from \(two.quoted): give the key a user id "
                + "with its holder's address"
        }
        return nil
    }

    /// A principal pattern of `patterns` (`*@example.org`) that matches a name of `names`: a key
    /// listed for the pattern may sign as that name. Compared here, not joined in the trusted
    /// files' people: two people the pattern matches are not one another.
    static func matched(_ patterns: Set<String>, _ names: Set<String>) -> String? {
        patterns.filter { $0.contains("*") || $0.contains("?") }.sorted().first { pattern in
            names.contains { $0 != pattern && globMatches(Array(pattern), Array($0)) }
        }
    }

    /// Whether `text` matches `pattern`, where `*` is any run of characters and `?` any one.
    static func globMatches(_ pattern: [Character], _ text: [Character]) -> Bool {
        var (p, t, star, mark) = (0, 0, -1, 0)
        while t < text.count {
            if p < pattern.count, pattern[p] == "?" || pattern[p] == text[t] {
                p += 1
                t += 1
            } else if p < pattern.count, pattern[p] == "*" {
                (star, mark) = (p, t)
                p += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }

    /// The signer's name, quoted for a message.
    var quoted: String { "'\(quotedForMessage(shown))'" }

    /// A key as messages show it: an SSH key by its type and the end of its base64, an OpenPGP
    /// key by its fingerprint.
    static func describe(_ key: String) -> String {
        if key.hasPrefix("openpgp:") { return "OpenPGP key " + key.dropFirst(8) }
        if key.hasPrefix("ssh:") { return "SSH key …" + key.suffix(12) }
        if key.hasPrefix("ed25519:") { return "ed25519 key …" + key.suffix(12) + " (as an SSH key and in an OpenPGP key)" }
        return key
    }
}
