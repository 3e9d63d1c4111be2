internal import Crypto
internal import Foundation

/// An armored SSH signature (`-----BEGIN SSH SIGNATURE-----`, PROTOCOL.sshsig) taken apart:
/// which key made it, for which namespace, over which hash. Parsing says nothing about trust;
/// who may sign is the allowed signers file's business (`ssh-keygen -Y find-principals`).
public struct SSHSignature: Sendable, Hashable {
    /// The signing public key as SSH encodes it.
    public let publicKey: [UInt8]
    public let namespace: String
    let hashAlgorithm: String
    /// The signature as SSH encodes it (`string type, string bytes`).
    let signature: [UInt8]

    /// Parses `armored`; nil when it is not a version-1 SSHSIG.
    public init?(armored: [UInt8]) {
        let text = String(decoding: armored, as: UTF8.self)
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.firstIndex(of: "-----BEGIN SSH SIGNATURE-----"),
              let end = lines.firstIndex(of: "-----END SSH SIGNATURE-----"), begin < end,
              let blob = Data(base64Encoded: lines[(begin + 1)..<end].joined()) else { return nil }
        var reader = SSHReader(Array(blob))
        guard reader.take(6) == Array("SSHSIG".utf8), reader.uint32() == 1,
              let publicKey = reader.string(), let namespace = reader.string(), reader.string() != nil,
              let hash = reader.string(), let signature = reader.string(), reader.isAtEnd else { return nil }
        self.publicKey = publicKey
        self.namespace = String(decoding: namespace, as: UTF8.self)
        self.hashAlgorithm = String(decoding: hash, as: UTF8.self)
        self.signature = signature
    }

    /// An armored SSHSIG that carries `publicKey` and a signature of zeros: what `ssh-keygen -Y
    /// find-principals` needs to say whether an allowed_signers file lists the key (it reads the
    /// key and never checks the signature). Never a signature of anything.
    public static func carrying(publicKey: [UInt8]) -> String {
        let zeros = SSHWriter.strings([Array("ssh-ed25519".utf8), [UInt8](repeating: 0, count: 64)])
        return SSHSigningKey.armored(Array("SSHSIG".utf8) + SSHWriter.uint32(1)
            + SSHWriter.strings([publicKey, Array("git".utf8), [], Array("sha512".utf8), zeros])) + "\n"
    }

    /// The key as an allowed_signers field (`ssh-ed25519 AAAA…`), when it names its type.
    public var publicKeyLine: String? {
        var reader = SSHReader(publicKey)
        guard let type = reader.string() else { return nil }
        return String(decoding: type, as: UTF8.self) + " " + Data(publicKey).base64EncodedString()
    }

    /// Whether this is an ed25519 signature of `message` in the `git` namespace by its own key:
    /// the arithmetic only, for a key already found trusted. False for any other key type.
    public func isValidEd25519(of message: [UInt8], namespace expected: String = "git") -> Bool {
        var key = SSHReader(publicKey)
        var sig = SSHReader(signature)
        guard namespace == expected, key.string() == Array("ssh-ed25519".utf8), let raw = key.string(), key.isAtEnd,
              sig.string() == Array("ssh-ed25519".utf8), let bytes = sig.string(), sig.isAtEnd,
              let publicKey = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { return false }
        let digest: [UInt8]
        switch hashAlgorithm {
        case "sha512": digest = Array(SHA512.hash(data: message))
        case "sha256": digest = Array(SHA256.hash(data: message))
        default: return false
        }
        let signed = Array("SSHSIG".utf8)
            + SSHWriter.strings([Array(namespace.utf8), [], Array(hashAlgorithm.utf8), digest])
        return publicKey.isValidSignature(bytes, for: signed)
    }
}
