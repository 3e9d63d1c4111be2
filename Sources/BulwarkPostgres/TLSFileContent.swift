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

    /// The PEM blocks of `bytes`, in order; text outside them is ignored, as OpenSSL ignores it.
    static func blocks(_ bytes: [UInt8]) -> [Block] {
        let text = String(decoding: bytes, as: UTF8.self)
        var result: [Block] = []
        var rest = Substring(text)
        while let begin = rest.range(of: "-----BEGIN ") {
            guard let labelEnd = rest[begin.upperBound...].range(of: "-----") else { break }
            let label = String(rest[begin.upperBound..<labelEnd.lowerBound])
            guard let end = rest[labelEnd.upperBound...].range(of: "-----END \(label)-----") else {
                result.append(Block(label: label, der: nil))
                break
            }
            let body = rest[labelEnd.upperBound..<end.lowerBound]
            // Encrypted PEM (a `Proc-Type:` header) is not base64 from its first line: said as not DER.
            result.append(Block(label: label, der: body.contains(":") ? nil
                                : Data(base64Encoded: String(body), options: .ignoreUnknownCharacters).map { Array($0) }))
            rest = rest[end.upperBound...]
        }
        return result
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
        let certificates = blocks(bytes).filter { $0.label == "CERTIFICATE" || $0.label == "TRUSTED CERTIFICATE" }
        guard !certificates.isEmpty else { return "holds no PEM certificate" }
        guard certificates.allSatisfy({ $0.der.flatMap(derSequence) != nil }), (try? NIOSSLCertificate.fromPEMBytes(bytes)) != nil else {
            return "holds a PEM certificate that cannot be read"
        }
        return nil
    }

    /// Why `ssl_crl_file` could not be loaded from `bytes`, if it could not: OpenSSL takes PEM
    /// revocation lists (`X509 CRL`, a SEQUENCE of the list, its algorithm and its signature) and
    /// certificates from it, at least one, each well formed.
    static func crlProblem(_ bytes: [UInt8]) -> String? {
        let objects = blocks(bytes).filter { ["X509 CRL", "CERTIFICATE", "TRUSTED CERTIFICATE"].contains($0.label) }
        guard !objects.isEmpty else { return "holds no PEM revocation list (X509 CRL)" }
        for object in objects {
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
        guard let privateKey = try? NIOSSLPrivateKey(bytes: key, format: .pem) else { return .noKey }
        let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                      privateKey: .privateKey(privateKey))
        guard (try? NIOSSLContext(configuration: configuration)) != nil else { return .mismatch }
        return nil
    }

    enum KeyProblem: Equatable {
        case noCertificate, encrypted, noKey, mismatch
    }
}
