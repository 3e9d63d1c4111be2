@testable import BulwarkRuntime
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// `ListedKeys`, the check that spares an ssh-keygen run for each signature by a key the
/// allowed_signers file does not list: it says "unlisted" only when ssh-keygen could not find
/// the key either, with real keys signed by ssh-keygen.
@Suite struct UnlistedKeyTests {
    /// A key of `type` made by ssh-keygen, a signature it made (namespace git), and the file of that signature.
    func key(_ dir: String, _ name: String, type: String = "ed25519") throws -> (line: String, signature: SSHSignature, file: String) {
        let path = dir + "/" + name
        var arguments = ["-q", "-t", type, "-N", "", "-C", name, "-f", path]
        if type == "rsa" { arguments += ["-b", "2048"] }
        let made = try run("/usr/bin/ssh-keygen", arguments)
        #expect(made.status == 0, "\(made.stderr)")
        try write(path + ".data", "signed\n")
        let signed = try run("/usr/bin/ssh-keygen", ["-Y", "sign", "-q", "-f", path, "-n", "git", path + ".data"])
        #expect(signed.status == 0, "\(signed.stderr)")
        let armored = try read(path + ".data.sig")
        let fields = try read(path + ".pub").split(separator: " ")
        return ("\(fields[0]) \(fields[1])", try #require(SSHSignature(armored: Array(armored.utf8))), path + ".data.sig")
    }

    /// ssh-keygen's own answer: whether `find-principals` finds the key of the signature in `file` in `allowed`.
    func found(_ file: String, in allowed: String) throws -> Bool {
        try run("/usr/bin/ssh-keygen", ["-Y", "find-principals", "-s", file, "-f", allowed]).status == 0
    }

    /// However a line is written (odd bytes in or after the key, a mark after a separator, a
    /// comment), `ListedKeys` agrees with ssh-keygen on the real signature, because it asks
    /// ssh-keygen: the listed key is listed, a stranger's is not.
    @Test func aKeyIsListedExactlyWhenSshKeygenFindsIt() async throws {
        try await withTemporaryDirectory { dir in
            let listed = try key(dir, "listed")
            let stranger = try key(dir, "stranger")
            let rsa = try key(dir, "rsa", type: "rsa")
            let base64 = String(listed.line.split(separator: " ")[1])
            let middle = base64.index(base64.startIndex, offsetBy: 20)
            let lines = [
                "a@x \(listed.line)\n", "a@x namespaces=\"git,file\" \(listed.line) comment\r\n",
                "a@x \(listed.line) \u{200D}zwj\n", "a@x\t\(listed.line) \u{0301}mark\n", "# c\n\na@x \(listed.line)\n",
                "a@x ssh-ed25519 \(base64[..<middle])\u{0B}\(base64[middle...])\n", "a@x \(listed.line)\u{0C}\n",
                "a@x \(listed.line)\u{0}junk\n", "a@x cert-authority \(listed.line)\n", "a@x \(rsa.line)\n",
            ]
            for (index, text) in lines.enumerated() {
                let file = dir + "/allowed-\(index)"
                try write(file, text)
                for signer in [listed, stranger, rsa] {
                    let asked = try ListedKeys.listed(signer.signature.publicKey, in: file, folder: dir)
                    #expect(asked == (try found(signer.file, in: file)), "\(signer.line.prefix(20)) in \(text.debugDescription)")
                    // Asked again: the same answer (kept for the minute).
                    #expect(try ListedKeys.listed(signer.signature.publicKey, in: file, folder: dir) == asked)
                }
                if index < 5 { #expect(try ListedKeys.listed(listed.signature.publicKey, in: file, folder: dir), "\(text.debugDescription)") }
            }
            // A file changed since: asked again, not the kept answer.
            let file = dir + "/allowed-changed"
            try write(file, "a@x \(listed.line)\n")
            #expect(try !ListedKeys.listed(stranger.signature.publicKey, in: file, folder: dir))
            try write(file, "a@x \(listed.line)\nb@x \(stranger.line)\n")
            #expect(try ListedKeys.listed(stranger.signature.publicKey, in: file, folder: dir))
        }
    }

    /// A key whose valid-after passes within the minute an answer is kept: "not listed" before it,
    /// listed right after it, not a minute later (the answer was kept for the minute before).
    /// And a key listed until a valid-before: not listed once it has passed.
    @Test func aKeyBecomesListedWhenItsValidAfterPassesNotAMinuteLater() async throws {
        try await withTemporaryDirectory { dir in
            let key = try key(dir, "soon")
            let validAfter = Date(timeIntervalSince1970: 1_900_000_000)
            let file = dir + "/allowed"
            try write(file, "a@x valid-after=\"\(ListedKeys.verifyTime(validAfter))\" \(key.line)\n")
            #expect(try !ListedKeys.listed(key.signature.publicKey, in: file, folder: dir, at: validAfter.addingTimeInterval(-30)))
            #expect(try ListedKeys.listed(key.signature.publicKey, in: file, folder: dir, at: validAfter.addingTimeInterval(1)))
            // Long before it, "not listed" holds for the minute and is kept.
            let other = dir + "/allowed-other"
            try write(other, "a@x valid-after=\"\(ListedKeys.verifyTime(validAfter))\" \(key.line)\n")
            #expect(try !ListedKeys.listed(key.signature.publicKey, in: other, folder: dir, at: validAfter.addingTimeInterval(-3600)))
        }
    }
}
