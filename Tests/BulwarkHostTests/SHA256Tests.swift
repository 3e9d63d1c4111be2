@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// The SHA-256 that names kept sshd answers, against coreutils' `sha256sum` over lengths around
/// each padding boundary and random bytes.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/sha256sum"), "needs sha256sum (coreutils)"))
struct SHA256Tests {
    @Test func digestsAreSha256sums() async throws {
        #expect(SHA256.hash(Array("abc".utf8)).map { String(format: "%02x", $0) }.joined()
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var generator = SystemRandomNumberGenerator()
        try await withTemporaryDirectory { dir in
            for length in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 65_537] {
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let path = dir + "/input-\(length)"
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                let sum = try run("/usr/bin/sha256sum", [path]).stdout.prefix(64)
                #expect(SHA256.hash(bytes).map { String(format: "%02x", $0) }.joined() == sum, "length \(length)")
            }
        }
    }
}
