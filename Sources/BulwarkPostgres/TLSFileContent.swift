internal import Foundation
internal import NIOSSL

/// What a TLS file PostgreSQL loads holds, judged before a setting names it: the server reads
/// each as PEM (OpenSSL's `PEM_read_*`), and one it cannot use fails its reload ("SSL
/// configuration was not reloaded", while SHOW reports the new file) and its next start. Pure:
/// the bytes are read through the server by the guard (`SettingDriver.tlsFileContent`).
enum TLSFileContent {
    /// A PEM block: its label (`CERTIFICATE`, `X509 CRL`, `DH PARAMETERS`) and its DER bytes;
    /// nil DER: a body that is not base64.
    struct Block {
        var label: String
        var der: [UInt8]?
    }

    /// The most blocks read from one file (a CA bundle has a few hundred), and the most BEGIN
    /// lines without their END looked past: a file of a policy's choosing cannot make the scan
    /// take longer than a few passes over it.
    static let maxBlocks = 10_000
    static let maxUnended = 16
    /// The longest label looked for (`ENCRYPTED PRIVATE KEY` is 21 bytes).
    static let maxLabel = 64

    /// Where `pattern` first occurs in `bytes` at or after `start`, before `limit`; nil if not.
    static func find(_ pattern: [UInt8], in bytes: [UInt8], from start: Int, before limit: Int? = nil) -> Int? {
        let end = min(limit ?? bytes.count, bytes.count) - pattern.count
        guard let first = pattern.first, start <= end else { return nil }
        var index = start
        while index <= end {
            if bytes[index] == first, bytes[index..<index + pattern.count].elementsEqual(pattern) { return index }
            index += 1
        }
        return nil
    }

    /// The PEM blocks of `bytes`, in order, in one pass over them; text outside them is ignored,
    /// and so is a BEGIN line without its END (a comment may hold one), as OpenSSL ignores them.
    static func blocks(_ bytes: [UInt8]) -> [Block] {
        let begin = Array("-----BEGIN ".utf8), dashes = Array("-----".utf8)
        var result: [Block] = []
        var unended = 0
        var index = 0
        while result.count < maxBlocks, unended < maxUnended, let start = find(begin, in: bytes, from: index) {
            let labelStart = start + begin.count
            index = labelStart
            guard let labelEnd = find(dashes, in: bytes, from: labelStart, before: labelStart + maxLabel + dashes.count) else { continue }
            let label = String(decoding: bytes[labelStart..<labelEnd], as: UTF8.self)
            let bodyStart = labelEnd + dashes.count
            guard let end = find(Array("-----END \(label)-----".utf8), in: bytes, from: bodyStart) else {
                unended += 1
                continue
            }
            let body = String(decoding: bytes[bodyStart..<end], as: UTF8.self)
            // Encrypted PEM (a `Proc-Type:` header) is not base64 from its first line: said as not DER.
            result.append(Block(label: label, der: body.contains(":") ? nil
                                : Data(base64Encoded: body, options: .ignoreUnknownCharacters).map { Array($0) }))
            index = end + 1
        }
        return result
    }

    /// The labels OpenSSL reads a certificate under (`X509 CERTIFICATE` is the old one).
    static let certificateLabels = ["CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"]

    /// Whether `block` is a well-formed certificate: one SEQUENCE, or for a `TRUSTED
    /// CERTIFICATE`, one followed by its trust settings (`openssl x509 -trustout`).
    static func isCertificate(_ block: Block) -> Bool {
        guard let der = block.der else { return false }
        if block.label == "TRUSTED CERTIFICATE" { return element(der[...])?.0 == 0x30 }
        return derSequence(der) != nil
    }

    /// The elements of a DER SEQUENCE that is the whole of `der`, as (tag, content) pairs; nil
    /// when `der` is not exactly one well-formed SEQUENCE of well-formed elements.
    static func derSequence(_ der: [UInt8]) -> [(tag: UInt8, content: ArraySlice<UInt8>)]? {
        guard let (tag, content, next) = element(der[...]), tag == 0x30, next == der.endIndex else { return nil }
        var items: [(tag: UInt8, content: ArraySlice<UInt8>)] = []
        var rest = content
        while !rest.isEmpty {
            guard let (tag, content, next) = element(rest) else { return nil }
            items.append((tag, content))
            rest = rest[next...]
        }
        return items
    }

    /// One DER element at the start of `bytes`: its tag, its content, and where the next begins.
    /// Definite lengths only (DER has no other), of at most four bytes.
    static func element(_ bytes: ArraySlice<UInt8>) -> (UInt8, ArraySlice<UInt8>, Int)? {
        var index = bytes.startIndex
        guard index < bytes.endIndex else { return nil }
        let tag = bytes[index]
        index += 1
        guard index < bytes.endIndex else { return nil }
        var length = Int(bytes[index])
        index += 1
        if length & 0x80 != 0 {
            let count = length & 0x7f
            guard (1...4).contains(count), bytes.endIndex - index >= count else { return nil }
            length = 0
            for byte in bytes[index..<index + count] { length = length << 8 | Int(byte) }
            index += count
        }
        guard bytes.endIndex - index >= length else { return nil }
        return (tag, bytes[index..<index + length], index + length)
    }

    /// Why `ssl_ca_file` could not be loaded from `bytes`, if it could not: it must hold at least
    /// one PEM certificate, each of them one OpenSSL reads.
    static func caProblem(_ bytes: [UInt8]) -> String? {
        let certificates = blocks(bytes).filter { certificateLabels.contains($0.label) }
        guard !certificates.isEmpty else { return "holds no PEM certificate" }
        guard certificates.allSatisfy(isCertificate) else { return "holds a PEM certificate that cannot be read" }
        return nil
    }

    /// Why `ssl_crl_file` could not be loaded from `bytes`, if it could not: OpenSSL takes PEM
    /// revocation lists (`X509 CRL`, a SEQUENCE of the list, its algorithm and its signature) and
    /// certificates from it, at least one, each well formed.
    static func crlProblem(_ bytes: [UInt8]) -> String? {
        let all = blocks(bytes)
        guard all.contains(where: { $0.label == "X509 CRL" }) else { return "holds no PEM revocation list (X509 CRL)" }
        for object in all where certificateLabels.contains(object.label) {
            guard isCertificate(object) else { return "holds a PEM \(object.label) that cannot be read" }
        }
        for object in all where object.label == "X509 CRL" {
            guard let der = object.der, let items = derSequence(der), items.count == 3, items[0].tag == 0x30, items[1].tag == 0x30,
                  items[2].tag == 0x03 else {
                return "holds a PEM \(object.label) that cannot be read"
            }
        }
        return nil
    }

    /// Why `ssl_dh_params_file` could not be loaded from `bytes`, if it could not: a PEM
    /// `DH PARAMETERS` (or `X9.42 DH PARAMETERS`) block, a SEQUENCE of integers (the prime, the
    /// generator, ...). Whether the prime is one is left to the server, at its reload.
    static func dhProblem(_ bytes: [UInt8]) -> String? {
        guard let block = blocks(bytes).first(where: { $0.label == "DH PARAMETERS" || $0.label == "X9.42 DH PARAMETERS" }) else {
            return "holds no PEM DH PARAMETERS"
        }
        guard let der = block.der, let items = derSequence(der), items.count >= 2, items.prefix(2).allSatisfy({ $0.tag == 0x02 }) else {
            return "holds PEM \(block.label) that cannot be read"
        }
        return nil
    }

    /// Why the private key in `key` would not be loaded with the certificate chain in
    /// `certificate`, if it would not: no PEM certificate, a key encrypted with a passphrase
    /// (whether it matches cannot be told here), no PEM private key, or a key whose public half
    /// is not the certificate's (BoringSSL's own comparison, as `SSL_CTX_use_PrivateKey` makes it).
    /// The key's bytes are used here only, never put in a message.
    static func keyProblem(certificate: [UInt8], key: [UInt8]) -> KeyProblem? {
        guard let chain = try? NIOSSLCertificate.fromPEMBytes(certificate), !chain.isEmpty else { return .noCertificate }
        let labels = blocks(key).map(\.label)
        if labels.contains("ENCRYPTED PRIVATE KEY") || String(decoding: key, as: UTF8.self).contains("Proc-Type: 4,ENCRYPTED") {
            return .encrypted
        }
        // BoringSSL reads fewer key types than the server's OpenSSL (DSA, brainpool and other
        // curves, Ed448, RSA-PSS, explicit curve parameters): one it cannot read, or whose
        // certificate's key it cannot read, cannot be compared here, which is not a mismatch.
        guard let privateKey = try? NIOSSLPrivateKey(bytes: key, format: .pem) else {
            return labels.contains { $0.hasSuffix("PRIVATE KEY") } ? .unreadable : .noKey
        }
        guard (try? chain[0].extractPublicKey()) != nil, !labels.contains("DSA PRIVATE KEY") else { return .unreadable }
        let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                      privateKey: .privateKey(privateKey))
        guard (try? NIOSSLContext(configuration: configuration)) != nil else { return .mismatch }
        return nil
    }

    enum KeyProblem: Equatable {
        case noCertificate, encrypted, noKey, unreadable, mismatch
    }
}
