import Crypto
import Foundation

/// The keys of an OpenPGP keyring file, read in-process: what `gpg --list-keys` would tell of
/// it, without `gpg` (a host may have `gpgv` alone, which verifies but lists nothing). Reads a
/// keyring of OpenPGP packets (`gpg --export`) and a GnuPG keybox (`.kbx`), the two `gpgv
/// --keyring` takes.
struct OpenPGPKeyring {
    /// One transferable public key: its primary key's fingerprint (upper-case hex), its user ids,
    /// and the ed25519 public keys (32 bytes) of it and its subkeys.
    struct Key {
        var fingerprint: String
        var userIDs: [String] = []
        var ed25519: [[UInt8]] = []
    }

    private(set) var keys: [Key] = []

    /// The keyring at `path`; nil when it cannot be read or is not a keyring.
    static func read(_ path: String) -> OpenPGPKeyring? {
        FileManager.default.contents(atPath: path).flatMap { OpenPGPKeyring(Array($0)) }
    }

    /// Nil when `bytes` is neither a keybox nor a sequence of OpenPGP packets (armored, say).
    init?(_ bytes: [UInt8]) {
        if bytes.count >= 12, Array(bytes[8..<12]) == Array("KBXf".utf8) {
            // Keybox blobs: length (4), type (1; 2 = OpenPGP), version (1), flags (2), then the
            // offset and length (4 each) of the keyblock's packets within the blob.
            var offset = 0
            while offset + 16 <= bytes.count {
                let length = Self.bigEndian(bytes, offset, 4)
                guard length >= 16, offset + length <= bytes.count else { return nil }
                if bytes[offset + 4] == 2 {
                    let start = offset + Self.bigEndian(bytes, offset + 8, 4)
                    let count = Self.bigEndian(bytes, offset + 12, 4)
                    guard start >= offset, start + count <= offset + length,
                          read(Array(bytes[start..<(start + count)])) else { return nil }
                }
                offset += length
            }
        } else if !read(bytes) {
            return nil
        }
    }

    /// Reads `bytes` as OpenPGP packets; false when they are not.
    private mutating func read(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let header = bytes[offset]
            guard header & 0x80 != 0 else { return false }
            let tag: UInt8
            var length: Int
            offset += 1
            if header & 0x40 != 0 {
                tag = header & 0x3F
                guard offset < bytes.count else { return false }
                let first = Int(bytes[offset])
                switch first {
                case ..<192: length = first; offset += 1
                case 192..<224:
                    guard offset + 1 < bytes.count else { return false }
                    length = ((first - 192) << 8) + Int(bytes[offset + 1]) + 192
                    offset += 2
                case 255:
                    guard offset + 5 <= bytes.count else { return false }
                    length = Self.bigEndian(bytes, offset + 1, 4)
                    offset += 5
                default: return false  // partial lengths: never in a key
                }
            } else {
                tag = (header >> 2) & 0x0F
                switch header & 3 {
                case 0: guard offset < bytes.count else { return false }; length = Int(bytes[offset]); offset += 1
                case 1: guard offset + 2 <= bytes.count else { return false }; length = Self.bigEndian(bytes, offset, 2); offset += 2
                case 2: guard offset + 4 <= bytes.count else { return false }; length = Self.bigEndian(bytes, offset, 4); offset += 4
                default: length = bytes.count - offset
                }
            }
            guard length >= 0, offset + length <= bytes.count else { return false }
            let body = Array(bytes[offset..<(offset + length)])
            offset += length
            switch tag {
            case 6:
                guard let fingerprint = Self.fingerprint(body) else { return false }
                keys.append(Key(fingerprint: fingerprint, ed25519: Self.ed25519(body).map { [$0] } ?? []))
            case 14:
                guard !keys.isEmpty else { return false }
                if let key = Self.ed25519(body) { keys[keys.count - 1].ed25519.append(key) }
            case 13:
                guard !keys.isEmpty else { return false }
                keys[keys.count - 1].userIDs.append(String(decoding: body, as: UTF8.self))
            default:
                break
            }
        }
        return true
    }

    /// The fingerprint of a public key packet's `body`: SHA-1 over 0x99, a two-byte length and
    /// the body for a version 4 key; SHA-256 with 0x9A (version 5) or 0x9B (version 6) and a
    /// four-byte length after them.
    static func fingerprint(_ body: [UInt8]) -> String? {
        func hex(_ digest: some Sequence<UInt8>) -> String { digest.map { String(format: "%02X", $0) }.joined() }
        switch body.first {
        case 4:
            guard body.count <= 0xFFFF else { return nil }
            return hex(Insecure.SHA1.hash(data: [0x99, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body))
        case 5, 6:
            let prefix: UInt8 = body[0] == 5 ? 0x9A : 0x9B
            let count = UInt32(body.count)
            return hex(SHA256.hash(data: [prefix] + withUnsafeBytes(of: count.bigEndian, Array.init) + body))
        default:
            return nil
        }
    }

    /// The 32-byte public key of a public key or subkey packet's `body` when it is an ed25519 key:
    /// EdDSA (algorithm 22) on the Ed25519 curve, its point prefixed 0x40 in an MPI; or Ed25519
    /// (algorithm 27), the bare 32 bytes. Versions 5 and 6 put a four-byte length before them.
    static func ed25519(_ body: [UInt8]) -> [UInt8]? {
        guard let version = body.first, [4, 5, 6].contains(version), body.count > 6 else { return nil }
        var offset = version == 4 ? 6 : 10
        switch body[5] {
        case 27:
            guard body.count >= offset + 32 else { return nil }
            return Array(body[offset..<(offset + 32)])
        case 22:
            let ed25519Curve: [UInt8] = [0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01]
            guard body.count > offset, body.count >= offset + 1 + Int(body[offset]),
                  Array(body[(offset + 1)..<(offset + 1 + Int(body[offset]))]) == ed25519Curve else { return nil }
            offset += 1 + ed25519Curve.count
            // An MPI of 263 bits: 0x40, then the point.
            guard body.count >= offset + 2 + 33, bigEndian(body, offset, 2) == 263, body[offset + 2] == 0x40 else { return nil }
            return Array(body[(offset + 3)..<(offset + 35)])
        default:
            return nil
        }
    }

    private static func bigEndian(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> Int {
        bytes[offset..<(offset + count)].reduce(0) { $0 << 8 | Int($1) }
    }
}
