@testable import BulwarkRuntime
import BulwarkGit
import BulwarkTestSupport
import Foundation
import Testing

/// `SourceVerification.certainlyUnlisted`, the check that spares an ssh-keygen run for a
/// signature by a key the allowed_signers file does not list: it says "unlisted" only when
/// ssh-keygen could not find the key either, with real keys signed by ssh-keygen.
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

    @Test func onlyAKeyNoLineCouldMatchIsUnlisted() async throws {
        try await withTemporaryDirectory { dir in
            let listed = try key(dir, "listed")
            let stranger = try key(dir, "stranger")
            let rsa = try key(dir, "rsa", type: "rsa")
            let otherRSA = try key(dir, "other-rsa", type: "rsa")
            let file = dir + "/allowed_signers"
            func unlisted(_ signature: SSHSignature, _ text: String) throws -> Bool {
                try write(file, text)
                return SourceVerification.certainlyUnlisted(signature, in: file)
            }
            // The listed key is never called unlisted, however its line is written.
            for text in ["a@x \(listed.line)\n", "a@x namespaces=\"git,file\" \(listed.line) comment\r\n",
                         "a@x \(listed.line) \u{200D}zwj\n", "a@x\t\(listed.line) \u{0301}mark\n", "# c\n\na@x \(listed.line)\n"] {
                #expect(try !unlisted(listed.signature, text), "\(text.debugDescription)")
                #expect(try found(listed.file, in: file), "ssh-keygen reads the line: \(text.debugDescription)")
            }
            #expect(try unlisted(stranger.signature, "a@x \(listed.line) \u{200D}zwj\n"))
            #expect(try !found(stranger.file, in: file))
            // RSA keys have other encodings ssh-keygen reads as the same key: with an RSA key
            // listed, ssh-keygen decides; with none, an RSA signature is unlisted.
            #expect(try !unlisted(rsa.signature, "a@x \(otherRSA.line)\n"))
            #expect(try unlisted(rsa.signature, "a@x \(listed.line)\n"))
            // A certificate authority, or a file that cannot be read: ssh-keygen decides.
            #expect(try !unlisted(stranger.signature, "a@x cert-authority \(listed.line)\n"))
            #expect(!SourceVerification.certainlyUnlisted(stranger.signature, in: dir + "/missing"))
        }
    }
}
