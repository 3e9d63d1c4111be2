import CSSHInit
import Foundation
import Testing

/// libssh2's crypto initialisation is deferred only for its OpenSSL backend (CSSHInit.c): the
/// backend is read from the libraries libssh2's own object needs. Read against the real loaded
/// libraries of this process (libgit2, libssh2, libyaml).
@Suite struct SSHCryptoInitTests {
    static let openssl: [String] = ["libcrypto.so.3", "libcrypto.so.1.1"]

    func needs(_ symbol: String, _ names: [String]) -> Bool {
        let cNames = names.map { strdup($0) } + [nil]
        defer { cNames.forEach { free($0) } }
        return cNames.map { UnsafePointer($0) }.withUnsafeBufferPointer { list in
            bulwark_object_needs(dlsym(UnsafeMutableRawPointer(bitPattern: 0), symbol), list.baseAddress) == 1
        }
    }

    @Test(.enabled(if: dlsym(UnsafeMutableRawPointer(bitPattern: 0), "libssh2_init") != nil, "libgit2 without libssh2"))
    func libssh2WithOpenSSLIsDeferredAndAnotherLibraryIsNotTakenForOpenSSL() {
        // Debian 12's libssh2 is built on OpenSSL 3: its object needs libcrypto.so.3.
        #expect(needs("libssh2_init", Self.openssl))
        #expect(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "yaml_parser_initialize") != nil, "libyaml is loaded")
        // libyaml needs no OpenSSL: a library like it (libssh2 on mbedTLS or libgcrypt) is not
        // taken for OpenSSL, so its crypto initialisation would not be skipped.
        #expect(!needs("yaml_parser_initialize", Self.openssl))
        // The same reading on another object: libgit2 needs libssh2, not libcrypto.
        #expect(needs("git_libgit2_init", ["libssh2.so.1"]))
        #expect(!needs("git_libgit2_init", Self.openssl))
        // No symbol, no object: not deferred.
        #expect(!needs("bulwark_no_such_symbol", Self.openssl))
    }
}
