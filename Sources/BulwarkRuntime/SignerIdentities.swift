package import BulwarkCore
package import BulwarkGit
import Foundation

/// The people of the trusted files: which names and keys belong together (see `SignerIdentity`).
/// A key and each principal the trusted signers file lists it for are one person; so are an
/// OpenPGP key of the trusted keyring and each address its user ids name (a principal pattern,
/// `*@example.org`, is compared with the names it matches: `SignerIdentity.samePerson`).
/// Whatever is joined to one of them is joined to all: an address that is an SSH principal and an OpenPGP user id makes the
/// SSH key and the OpenPGP key one person, however differently each names its signer; so does
/// one ed25519 key used as both (the same 32 bytes in an SSH key and in an OpenPGP key or subkey).
package struct SignerIdentities: Sendable {
    /// Each node (`name:<lowercased>`, `ssh:<base64>`, `openpgp:<FINGERPRINT>`, `ed25519:<base64
    /// of the 32 bytes>`) and its group.
    private var group: [String: Int] = [:]
    private var members: [Int: Set<String>] = [:]

    /// Reads `allowedSigners` and `keyring` (either may be nil); a file that cannot be read adds
    /// nothing, so its keys are then known only as themselves (and cannot be told apart).
    package static func read(allowedSigners: String?, keyring: String?, folder: String) -> SignerIdentities {
        var links: [(String, String)] = []
        var nodes: Set<String> = []
        // The ed25519 keys of the trusted signers file, by `ed25519:` node: linked only to an
        // OpenPGP key holding the same bytes (alone, a node would name an SSH key twice).
        var sshMaterial: [String: [String]] = [:]
        if let allowedSigners, let text = try? String(contentsOfFile: allowedSigners, encoding: .utf8) {
            for line in text.split(whereSeparator: \.isNewline) {
                let fields = Self.fields(of: line.trimmingCharacters(in: .whitespaces))
                guard let first = fields.first, !first.hasPrefix("#") else { continue }
                // The key is a type followed by its base64 blob, whose first string is that type.
                var key: String?
                for index in fields.indices.dropFirst().dropLast() {
                    if let blob = Data(base64Encoded: fields[index + 1]), Self.keyType(of: Array(blob)) == fields[index] {
                        key = "ssh:" + blob.base64EncodedString()
                        break
                    }
                }
                let principals = first.replacingOccurrences(of: "\"", with: "").split(separator: ",")
                    .map { "name:" + $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { $0 != "name:" }
                nodes.formUnion(principals)
                if let key {
                    nodes.insert(key)
                    links += principals.map { (key, $0) }
                    if let material = Self.ed25519(ssh: key) { sshMaterial[material, default: []].append(key) }
                }
            }
        }
        if let keyring {
            let absolute = keyring.hasPrefix("/") ? keyring : FileManager.default.currentDirectoryPath + "/" + keyring
            for parsed in OpenPGPKeyring.read(absolute)?.keys ?? [] {
                let key = "openpgp:" + parsed.fingerprint.uppercased()
                nodes.insert(key)
                for address in Set(parsed.userIDs.compactMap { SourceVerification.email(in: $0)?.lowercased() }) {
                    nodes.insert("name:" + address)
                    links.append((key, "name:" + address))
                }
                // The same ed25519 key as an SSH key of the trusted signers file: one holder.
                for material in parsed.ed25519 {
                    let node = "ed25519:" + Data(material).base64EncodedString()
                    for sshKey in sshMaterial[node] ?? [] {
                        nodes.insert(node)
                        links += [(key, node), (sshKey, node)]
                    }
                }
            }
        }
        var parent = Dictionary(uniqueKeysWithValues: nodes.map { ($0, $0) })
        func root(_ node: String) -> String {
            var node = node
            while let up = parent[node], up != node {
                parent[node] = parent[up]
                node = up
            }
            return node
        }
        for (a, b) in links {
            let (x, y) = (root(a), root(b))
            if x != y { parent[x] = y }
        }
        var result = SignerIdentities()
        var numbers: [String: Int] = [:]
        for node in nodes {
            let top = root(node)
            let number = numbers[top] ?? numbers.count
            numbers[top] = number
            result.group[node] = number
            result.members[number, default: []].insert(node)
        }
        return result
    }

    /// The person of a signer named `shown`, starting from the nodes that name its key.
    package func identity(shown: String, from start: [String]) -> SignerIdentity {
        var all = Set(start)
        for node in start { if let number = group[node] { all.formUnion(members[number] ?? []) } }
        return SignerIdentity(shown: shown, names: Set(all.filter { $0.hasPrefix("name:") }.map { String($0.dropFirst(5)) }),
                              keys: all.filter { !$0.hasPrefix("name:") })
    }

    /// The node of the ed25519 public key inside `ssh:<base64 blob>` (`string "ssh-ed25519",
    /// string key`), as an OpenPGP key holding the same 32 bytes names it; nil for other types.
    static func ed25519(ssh node: String) -> String? {
        guard let blob = Data(base64Encoded: String(node.dropFirst(4))).map(Array.init), keyType(of: blob) == "ssh-ed25519",
              blob.count == 4 + 11 + 4 + 32, Array(blob[15..<19]) == [0, 0, 0, 32] else { return nil }
        return "ed25519:" + Data(blob[19...]).base64EncodedString()
    }

    /// The fields of an allowed_signers line, split at spaces outside double quotes.
    static func fields(of line: String) -> [String] {
        var fields: [String] = []
        var current = ""
        var quoted = false
        for character in line {
            if character == "\"" { quoted.toggle() }
            if !quoted, character == " " || character == "\t" {
                if !current.isEmpty { fields.append(current) }
                current = ""
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty { fields.append(current) }
        return fields
    }

    /// The key type an SSH public key blob starts with (`string type`), nil when it does not.
    static func keyType(of blob: [UInt8]) -> String? {
        guard blob.count >= 4 else { return nil }
        let length = blob.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        guard length > 0, length <= 64, blob.count >= 4 + length else { return nil }
        return String(decoding: blob[4..<(4 + length)], as: UTF8.self)
    }
}

extension SourceVerification {
    /// The people of the trusted signers file and keyring (`SignerIdentities`).
    package func identities() -> SignerIdentities {
        guard let folder = try? Self.privateFolder() else { return SignerIdentities() }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        return SignerIdentities.read(allowedSigners: allowedSigners, keyring: trustedKeyring, folder: folder)
    }

    /// Who signed `commit` as a person, where `signer(of:)` named it `shown`: its SSH key and
    /// that principal, or its OpenPGP primary key, with all `people` join to them. A signature
    /// that cannot be read again is a signer known as nothing (told apart from no one).
    package func identity(of commit: CommitInfo, shown: String, repository: PolicyRepository,
                          people: SignerIdentities) async -> SignerIdentity {
        let unknown = SignerIdentity(shown: shown, names: [], keys: [])
        guard let signed = try? await repository.signature(of: commit.id) else { return unknown }
        if signed.signature.starts(with: Array("-----BEGIN PGP SIGNATURE-----".utf8)) {
            guard let trustedKeyring, let folder = try? Self.privateFolder() else { return unknown }
            defer { try? FileManager.default.removeItem(atPath: folder) }
            guard case .success(let fingerprint)? = try? Self.verifyOpenPGP(signed, commit: commit.id, keyring: trustedKeyring,
                                                                            folder: folder, byFingerprint: true) else { return unknown }
            return people.identity(shown: shown, from: ["openpgp:" + fingerprint.uppercased()])
        }
        let key = SSHSignature(armored: signed.signature).map { "ssh:" + Data($0.publicKey).base64EncodedString() }
        return people.identity(shown: shown, from: [key, "name:" + shown.lowercased()].compactMap { $0 })
    }
}
