@testable import BulwarkPostgres
import BulwarkTestSupport
import Foundation
import Testing

/// What the TLS file guard reads, against files the real `openssl` makes (outside review): a
/// comment with a stray BEGIN line, the old `X509 CERTIFICATE` label and a `TRUSTED
/// CERTIFICATE` with trust settings are certificates OpenSSL loads; a key type BoringSSL does
/// not read (Ed448, brainpool) cannot be compared, which is not a mismatch; a file of a policy's
/// choosing cannot make the scan read more than `maxBlocks` blocks.
@Suite struct TLSFileContentTests {
    func openssl(_ arguments: [String], in dir: String) throws {
        let result = try run("/usr/bin/openssl", arguments, in: dir)
        #expect(result.status == 0, "openssl \(arguments.joined(separator: " ")): \(result.stderr)")
    }

    /// A self-signed certificate and its key, of `algorithm` (`genpkey` arguments): their bytes.
    func pair(_ name: String, _ algorithm: [String], in dir: String) throws -> (certificate: [UInt8], key: [UInt8]) {
        try openssl(["genpkey"] + algorithm + ["-out", "\(name).key"], in: dir)
        try openssl(["req", "-x509", "-key", "\(name).key", "-out", "\(name).crt", "-days", "2", "-subj", "/CN=\(name)"], in: dir)
        return (Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name).crt"))),
                Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name).key"))))
    }

    @Test func certificatesOpenSSLLoadsAreCertificates() async throws {
        try await withTemporaryDirectory { dir in
            let (certificate, _) = try pair("ca", ["-algorithm", "ed25519"], in: dir)
            let text = String(decoding: certificate, as: UTF8.self)
            // A comment naming a BEGIN line, before the bundle.
            #expect(TLSFileContent.caProblem(Array("# paste after -----BEGIN here\n\(text)".utf8)) == nil)
            // The old label.
            let old = text.replacingOccurrences(of: "BEGIN CERTIFICATE", with: "BEGIN X509 CERTIFICATE")
                .replacingOccurrences(of: "END CERTIFICATE", with: "END X509 CERTIFICATE")
            #expect(TLSFileContent.caProblem(Array(old.utf8)) == nil)
            // With trust settings.
            try openssl(["x509", "-in", "ca.crt", "-trustout", "-addtrust", "serverAuth", "-out", "trusted.crt"], in: dir)
            let trusted = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/trusted.crt")))
            #expect(String(decoding: trusted, as: UTF8.self).contains("BEGIN TRUSTED CERTIFICATE"))
            #expect(TLSFileContent.caProblem(trusted) == nil)
            // The harmful twin: no certificate at all.
            #expect(TLSFileContent.caProblem(Array("# nothing here\n".utf8)) == "holds no PEM certificate")
        }
    }

    @Test func aKeyTypeBoringSSLDoesNotReadCannotBeToldAndIsNoMismatch() async throws {
        try await withTemporaryDirectory { dir in
            let ed448 = try pair("ed448", ["-algorithm", "ed448"], in: dir)
            #expect(TLSFileContent.keyProblem(certificate: ed448.certificate, key: ed448.key) == .unreadable)
            let brainpool = try pair("bp", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:brainpoolP256r1"], in: dir)
            #expect(TLSFileContent.keyProblem(certificate: brainpool.certificate, key: brainpool.key) == .unreadable)
            // Twins: a pair it reads matches; another key it reads is a mismatch.
            let ed25519 = try pair("ed25519", ["-algorithm", "ed25519"], in: dir)
            #expect(TLSFileContent.keyProblem(certificate: ed25519.certificate, key: ed25519.key) == nil)
            let other = try pair("other", ["-algorithm", "ed25519"], in: dir)
            #expect(TLSFileContent.keyProblem(certificate: ed25519.certificate, key: other.key) == .mismatch)
        }
    }

    @Test func theScanReadsAtMostItsLimitOfBlocks() {
        let block = "-----BEGIN A-----\nAAAA\n-----END A-----\n"
        let bytes = Array(String(repeating: block, count: TLSFileContent.maxBlocks + 500).utf8)
        #expect(TLSFileContent.blocks(bytes).count == TLSFileContent.maxBlocks)
        #expect(TLSFileContent.caProblem(bytes) == "holds no PEM certificate")
    }
}
