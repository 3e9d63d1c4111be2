import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// An authorized_keys file read as OpenSSH reads it: a line is a key only where its key is whole
/// (`HostAccounts.KeyFile`), checked against OpenSSH's own reading (`ssh-keygen -l`) of the same
/// file; and the sshd guard that relies on it.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen"), "needs ssh-keygen (openssh-client)"))
struct KeyFileTests {
    /// A new key's public line (`type blob comment`).
    func publicKey(_ type: String, bits: Int? = nil, in folder: String) throws -> String {
        let path = folder + "/key-" + type
        let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", type, "-N", "", "-C", "someone@laptop", "-f", path]
                           + (bits.map { ["-b", String($0)] } ?? []))
        try #require(made.status == 0, "\(made.stderr)")
        return try read(path + ".pub").trimmingCharacters(in: .newlines)
    }

    @Test func aLineIsAKeyExactlyWhereOpenSSHReadsOne() async throws {
        try await withTemporaryDirectory { dir in
            let ed = try publicKey("ed25519", in: dir), ec = try publicKey("ecdsa", in: dir), rsa = try publicKey("rsa", in: dir)
            let edFields = ed.split(separator: " ").map(String.init)
            let blob = edFields[1]
            // An RSA key of 768 bits (ssh-keygen makes none under 1,024): the type, e, and n.
            func sshString(_ bytes: [UInt8]) -> [UInt8] { withUnsafeBytes(of: UInt32(bytes.count).bigEndian, Array.init) + bytes }
            let small = Data(sshString(Array("ssh-rsa".utf8)) + sshString([1, 0, 1]) + sshString([0, 0xc3] + [UInt8](repeating: 0x5b, count: 94) + [0x07]))
                .base64EncodedString()
            // 2,048 bits with the top bit set and no zero byte before it: a negative number to sshd.
            let negative = Data(sshString(Array("ssh-rsa".utf8)) + sshString([1, 0, 1]) + sshString([0xc3] + [UInt8](repeating: 0x5b, count: 254) + [0x07]))
                .base64EncodedString()
            let cases: [(String, String, Set<String>)] = [
                ("a key", ed + "\n", ["ssh-ed25519"]),
                ("line ends with carriage returns, after a comment", "# laptop\r\n" + ed + "\r\n", ["ssh-ed25519"]),
                ("no comment, a carriage return right after the key", "ssh-ed25519 " + blob + "\r\n", ["ssh-ed25519"]),
                ("options first, two types", "from=\"10.0.0.1\",no-pty " + ec + "\n" + rsa + "\n", ["ecdsa-sha2-nistp256", "ssh-rsa"]),
                ("a key pasted over two lines", "ssh-ed25519 " + blob.prefix(40) + "\n" + blob.dropFirst(40) + " someone@laptop\n", []),
                ("a key cut short", "ssh-ed25519 " + blob.dropLast(4) + " someone@laptop\n", []),
                ("another type's name on an ed25519 key", "ssh-rsa " + blob + "\n", []),
                ("a word, not a key", "disabled\n", []),
                ("only carriage returns", "\r\n\r\n", []),
                ("a type and no key", "ssh-ed25519\n", []),
                ("an RSA key of 768 bits", "ssh-rsa " + small + " small\n", []),
                ("an RSA key whose modulus reads as negative", "ssh-rsa " + negative + " negative\n", []),
                ("an RSA key of 2,048 bits", rsa + "\n", ["ssh-rsa"]),
            ]
            for (name, text, types) in cases {
                let path = dir + "/authorized_keys"
                try write(path, text, mode: 0o600)
                let openssh = try run("/usr/bin/ssh-keygen", ["-l", "-f", path]).status == 0
                let file = HostAccounts.KeyFile(text)
                #expect(file.hasKey == openssh, "\(name): OpenSSH reads \(openssh ? "a key" : "no key")")
                #expect(file.hasKey == !types.isEmpty && file.types == types, "\(name): \(file.types)")
            }
        }
    }

    /// Each line against a real sshd: whether the key in it logs in (`Tests/Support/SSHServer`),
    /// and whether `KeyFile` says the file holds a key.
    @Test(.enabled(if: SSHServer.available, "needs sshd, ssh-keygen and git")) func aLineIsAKeyExactlyWhereSshdLetsItsKeyIn() async throws {
        let server = try SSHServer()
        try await withTemporaryDirectory { dir in
            let ed = try read(server.clientKey + ".pub").trimmingCharacters(in: .newlines)
            let blob = ed.split(separator: " ")[1]
            let rsaKey = dir + "/key-rsa"
            let made = try run("/usr/bin/ssh-keygen", ["-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "rsa", "-f", rsaKey])
            try #require(made.status == 0, "\(made.stderr)")
            let rsaBlob = try read(rsaKey + ".pub").split(separator: " ")[1]
            let cases: [(name: String, line: String, key: String, type: String?)] = [
                ("the key", ed + "\n", server.clientKey, "ssh-ed25519"),
                ("CR LF, after a comment", "# laptop\r\n" + ed + "\r\n", server.clientKey, "ssh-ed25519"),
                ("a tab after the type", "ssh-ed25519\t" + blob + "\n", server.clientKey, "ssh-ed25519"),
                ("a quoted option with spaces and a type's name", "command=\"echo ssh-backup run\" " + ed + "\n", server.clientKey, "ssh-ed25519"),
                ("options", "no-pty,from=\"127.0.0.1\" " + ed + "\n", server.clientKey, "ssh-ed25519"),
                ("options in capitals", "Restrict,PTY " + ed + "\n", server.clientKey, "ssh-ed25519"),
                ("an RSA key under a signature's name", "rsa-sha2-512 " + rsaBlob + "\n", rsaKey, "ssh-rsa"),
                ("an unknown option", "DISABLED " + ed + "\n", server.clientKey, nil),
                ("a no-break space first", "\u{A0}" + ed + "\n", server.clientKey, nil),
                ("a known_hosts marker", "@cert-authority " + ed + "\n", server.clientKey, nil),
                ("an unterminated quote", "from=\"127.0.0.1 " + ed + "\n", server.clientKey, nil),
                ("pasted over two lines", "ssh-ed25519 " + blob.prefix(40) + "\n" + blob.dropFirst(40) + " laptop\n", server.clientKey, nil),
                ("cut short", "ssh-ed25519 " + blob.dropLast(4) + " laptop\n", server.clientKey, nil),
                ("under another type's name", "ssh-rsa " + blob + "\n", server.clientKey, nil),
                ("a key for certificates", "cert-authority " + ed + "\n", server.clientKey, nil),
                ("principals on a plain key", "principals=\"admin\" " + ed + "\n", server.clientKey, nil),
                ("an expiry past", "expiry-time=\"20200101\" " + ed + "\n", server.clientKey, nil),
                ("an expiry to come", "expiry-time=\"29991231\" " + ed + "\n", server.clientKey, "ssh-ed25519"),
                ("an expiry sshd cannot read", "expiry-time=\"tomorrow\" " + ed + "\n", server.clientKey, nil),
                ("an empty from", "from=\"\" " + ed + "\n", server.clientKey, nil),
                ("an environment without a value", "environment=\"FOO\" " + ed + "\n", server.clientKey, nil),
                ("an environment", "environment=\"A_1=b c\" " + ed + "\n", server.clientKey, "ssh-ed25519"),
                ("a trailing comma", "no-pty, " + ed + "\n", server.clientKey, "ssh-ed25519"),
                ("a leading and a doubled comma", ",no-pty,,restrict " + ed + "\n", server.clientKey, "ssh-ed25519"),
                ("a permitopen without a port", "permitopen=\"nohost\" " + ed + "\n", server.clientKey, nil),
                ("a permitopen", "permitopen=\"localhost:8080\" " + ed + "\n", server.clientKey, "ssh-ed25519"),
                ("a tunnel sshd cannot read", "tunnel=\"abc\" " + ed + "\n", server.clientKey, nil),
                ("two commands", "command=\"true\",command=\"true\" " + ed + "\n", server.clientKey, nil),
            ]
            let keys = server.directory + "/authorized_keys"
            for (name, line, key, type) in cases {
                try write(keys, line, mode: 0o644)
                try server.own(keys)
                let login = try run("/usr/bin/ssh", ["-i", key, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                                                     "-o", "UserKnownHostsFile=\(server.knownHosts)", "-o", "StrictHostKeyChecking=yes",
                                                     "-o", "PreferredAuthentications=publickey", "-p", "\(server.port)",
                                                     "\(server.user)@127.0.0.1", "true"])
                let file = HostAccounts.KeyFile(line)
                #expect((login.status == 0) == (type != nil), "\(name): sshd \(login.status == 0 ? "let it in" : "refused: \(login.stderr)")")
                #expect(file.hasKey == (type != nil) && file.types == Set(type.map { [$0] } ?? []), "\(name): \(file.types)")
            }
        }
    }

    let root0 = FixtureAccount(name: "root", uid: 0)
    let admin = FixtureAccount(name: "admin", uid: 1000, hash: "$y$j9T$adminhash", groups: ["sudo"])

    /// The administrator has a password, and a key pasted over two lines that sshd cannot read:
    /// turning passwords off would lock everyone out, so it is blocked (and recorded); with the
    /// key whole (lines ending in CR LF), it goes through.
    @Test(.enabled(if: sshdInstalled)) func aKeyPastedOverTwoLinesIsNoWayInAndAWholeKeyIs() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin])
            try write(root + "/etc/ssh/sshd_config", "PermitRootLogin yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM yes\n# \(UUID().uuidString)\n")
            let keys = root + "/home/admin/.ssh/authorized_keys"
            let key = sampleKey.split(separator: " ")
            try write(keys, "\(key[0]) \(key[1].prefix(30))\n\(key[1].dropFirst(30)) \(key[2])", mode: 0o600)
            let passwordsOff = resource("SSHDConfig", "s", "PasswordAuthentication: \"no\"")
            let reason = try await expectBlocked(root, passwordsOff, reason: "no account could log in over SSH")
            #expect(reason.contains("admin"), "\(reason)")
            try write(keys, "# admin's laptop\r\n" + sampleKey.replacingOccurrences(of: "\n", with: "\r\n"), mode: 0o600)
            try await expectApplied(root, passwordsOff)
            #expect(try read(root + "/etc/ssh/sshd_config").contains("\nPasswordAuthentication no\n"))
        }
    }

    /// The administrator's only key is RSA of 2,048 bits, and a drop-in someone wrote asks for
    /// 3,072 (RequiredRSASize): sshd refuses the key, so turning passwords off would leave no way
    /// in and is blocked; with an ed25519 key beside it, it goes through.
    @Test(.enabled(if: sshdInstalled)) func anRSAKeySmallerThanRequiredRSASizeIsNoWayIn() async throws {
        try await withTemporaryDirectory { root in
            try makeHost(root, [root0, admin])
            try write(root + "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nPasswordAuthentication yes\n"
                      + "KbdInteractiveAuthentication no\nUsePAM yes\n# \(UUID().uuidString)\n")
            try write(root + "/etc/ssh/sshd_config.d/50-rsa.conf", "RequiredRSASize 3072\n")
            let rsa = try publicKey("rsa", bits: 2048, in: root)
            let keys = root + "/home/admin/.ssh/authorized_keys"
            try write(keys, rsa + "\n", mode: 0o600)
            let passwordsOff = resource("SSHDConfig", "s", "PasswordAuthentication: \"no\"")
            let reason = try await expectBlocked(root, passwordsOff, reason: "no account could log in over SSH")
            #expect(reason.contains("RequiredRSASize 3072"), "\(reason)")
            try write(keys, rsa + "\n" + sampleKey, mode: 0o600)
            try await expectApplied(root, passwordsOff)
        }
    }
}
