internal import Crypto
internal import Foundation

/// An ed25519 key in OpenSSH's private key format that signs commits the way
/// `git commit -S` with `gpg.format ssh` does (`ssh-keygen -Y sign -n git`): an armored SSHSIG
/// over the commit, here computed in this process, so that signing costs microseconds rather
/// than a process per commit.
///
/// Only unencrypted keys are read: the key is a service's credential, protected by the file's
/// permissions and the secrets folder, as its other secret files are.
public struct SSHSigningKey: CommitSigner {
    private let key: Curve25519.Signing.PrivateKey
    /// The public key as SSH encodes it (`string "ssh-ed25519", string key`).
    private let publicBlob: [UInt8]

    /// Reads an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    /// - Throws: `GitError` (function `signing key`, never quoting key material) when it is not an unencrypted ed25519 key in that format.
    public init(openSSH text: String) throws(GitError) {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.firstIndex(of: "-----BEGIN OPENSSH PRIVATE KEY-----"),
              let end = lines.firstIndex(of: "-----END OPENSSH PRIVATE KEY-----"), begin < end else {
            throw GitError(function: "signing key", code: -1, message: "not an OpenSSH private key (create one with ssh-keygen -t ed25519)")
        }
        guard let decoded = Data(base64Encoded: lines[(begin + 1)..<end].joined()) else {
            throw GitError(function: "signing key", code: -1, message: "the OpenSSH private key is not valid base64")
        }
        var reader = SSHReader(Array(decoded))
        let magic = Array("openssh-key-v1".utf8) + [0]
        guard reader.take(magic.count) == magic else { throw GitError(function: "signing key", code: -1, message: "not an openssh-key-v1 private key") }
        let cipher = reader.string(), kdf = reader.string()
        _ = reader.string()
        guard let cipher, let kdf else { throw GitError(function: "signing key", code: -1, message: "the OpenSSH private key is truncated") }
        guard cipher == Array("none".utf8), kdf == Array("none".utf8) else {
            throw GitError(function: "signing key", code: -1, message: "the key is protected by a passphrase; Bulwark reads only unprotected signing keys "
                          + "(protect it by the file's permissions and the secrets folder instead)")
        }
        guard reader.uint32() == 1 else { throw GitError(function: "signing key", code: -1, message: "the OpenSSH key file must hold exactly one key") }
        guard let publicBlob = reader.string(), let privateSection = reader.string() else {
            throw GitError(function: "signing key", code: -1, message: "the OpenSSH private key is truncated")
        }
        var section = SSHReader(privateSection)
        guard let check1 = section.uint32(), let check2 = section.uint32(), check1 == check2 else {
            throw GitError(function: "signing key", code: -1, message: "the OpenSSH private key is damaged (its check numbers differ)")
        }
        guard let type = section.string(), type == Array("ssh-ed25519".utf8) else {
            throw GitError(function: "signing key", code: -1, message: "the signing key must be ed25519 (ssh-keygen -t ed25519)")
        }
        guard let publicKey = section.string(), publicKey.count == 32,
              let secret = section.string(), secret.count == 64, Array(secret[32...]) == publicKey else {
            throw GitError(function: "signing key", code: -1, message: "the ed25519 key in the OpenSSH private key is malformed")
        }
        let key: Curve25519.Signing.PrivateKey
        do { key = try Curve25519.Signing.PrivateKey(rawRepresentation: secret[..<32]) } catch {
            throw GitError(function: "signing key", code: -1, message: "the ed25519 key in the OpenSSH private key is malformed")
        }
        guard Array(key.publicKey.rawRepresentation) == publicKey,
              publicBlob == SSHWriter.strings([Array("ssh-ed25519".utf8), publicKey]) else {
            throw GitError(function: "signing key", code: -1, message: "the OpenSSH private key's public half does not match its private half")
        }
        self.key = key
        self.publicBlob = publicBlob
    }

    public var publicKeyBlob: [UInt8]? { publicBlob }

    /// The public key as an `authorized_keys` / `allowed_signers` field: `ssh-ed25519 AAAA…`.
    public var publicKeyLine: String { "ssh-ed25519 " + Data(publicBlob).base64EncodedString() }

    /// The key's SHA256 fingerprint as `ssh-keygen -l` shows it (`SHA256:…`).
    public var fingerprint: String {
        "SHA256:" + Data(SHA256.hash(data: publicBlob)).base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    public func signature(of commit: [UInt8]) throws -> String {
        try Self.armored(sign(commit, namespace: "git"))
    }

    /// The SSHSIG blob of `message` in `namespace` (PROTOCOL.sshsig), with a SHA-512 message hash.
    func sign(_ message: [UInt8], namespace: String) throws(GitError) -> [UInt8] {
        let hash = Array(SHA512.hash(data: message))
        let magic = Array("SSHSIG".utf8)
        let toSign = magic + SSHWriter.strings([Array(namespace.utf8), [], Array("sha512".utf8), hash])
        let raw: Data
        do { raw = try key.signature(for: toSign) } catch {
            throw GitError(function: "SSHSigningKey.sign", code: -1, message: "ed25519 signing failed: \(error)")
        }
        let signature = SSHWriter.strings([Array("ssh-ed25519".utf8), Array(raw)])
        return magic + SSHWriter.uint32(1)
            + SSHWriter.strings([publicBlob, Array(namespace.utf8), [], Array("sha512".utf8), signature])
    }

    /// The blob armored as `ssh-keygen -Y sign` writes it: base64 in lines of 70.
    static func armored(_ blob: [UInt8]) -> String {
        let base64 = Array(Data(blob).base64EncodedString())
        var lines = ["-----BEGIN SSH SIGNATURE-----"]
        var start = 0
        while start < base64.count {
            let end = min(start + 70, base64.count)
            lines.append(String(base64[start..<end]))
            start = end
        }
        lines.append("-----END SSH SIGNATURE-----")
        return lines.joined(separator: "\n")
    }
}

/// Reads SSH wire-format fields (RFC 4251): big-endian uint32 and length-prefixed strings,
/// returning nil past the end instead of trapping.
struct SSHReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func take(_ count: Int) -> [UInt8]? {
        guard count >= 0, count <= bytes.count - offset else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    mutating func uint32() -> UInt32? {
        guard let four = take(4) else { return nil }
        return four.reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func string() -> [UInt8]? {
        guard let length = uint32(), let count = Int(exactly: length) else { return nil }
        return take(count)
    }
}

/// Writes SSH wire-format fields.
enum SSHWriter {
    static func uint32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    static func strings(_ values: [[UInt8]]) -> [UInt8] {
        // Every field here is a key, a hash, a signature or a short name: far below 4 GiB.
        values.flatMap { uint32(UInt32(truncatingIfNeeded: $0.count)) + $0 }
    }
}
