@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Glibc
import Testing
import Crypto

/// The probes' throwaway host key folders that killed processes left in the temporary folder.
@Suite struct SSHDHostKeyTests {
    /// A pid no process has now: a child that has exited and been reaped.
    func deadPid() throws -> pid_t {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        return child.processIdentifier
    }

    func folder(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try write(path + "/host_key", "not a key\n", mode: 0o600)
    }

    @Test func removesOnlyItsOwnUsersFoldersOfProcessesThatAreGone() async throws {
        guard isRoot else { return } // another user's folder is made with chown
        try await withTemporaryDirectory { temporary in
            let dead = try deadPid()
            let namespace = try #require(SSHDHostKey.pidNamespace())
            let gone = temporary + "/bulwark-sshd-key-\(namespace)-\(dead)-a1B2c3"
            let alive = temporary + "/bulwark-sshd-key-\(namespace)-\(getpid())-d4E5f6"
            let others = temporary + "/bulwark-sshd-key-\(namespace)-\(dead)-g7H8i9"
            // Another pid namespace's (a container sharing the folder): its pids are not ours to judge.
            let elsewhere = temporary + "/bulwark-sshd-key-1\(namespace)-\(dead)-j1K2l3"
            let unrelated = temporary + "/bulwark-sshd-key-\(namespace)-notapid-m4N5o6"
            try folder(gone)
            try folder(alive)
            try folder(others)
            try folder(elsewhere)
            try folder(unrelated)
            #expect(chown(others, 65534, 65534) == 0)
            // A link of that naming to a folder elsewhere: neither it nor what it points at is removed.
            try folder(temporary + "/elsewhere")
            #expect(symlink(temporary + "/elsewhere", temporary + "/bulwark-sshd-key-\(namespace)-\(dead)-linked") == 0)

            SSHDHostKey.removeLeftovers(in: temporary, namespace: namespace)

            #expect(!FileManager.default.fileExists(atPath: gone), "a gone process's folder is removed")
            #expect(FileManager.default.fileExists(atPath: alive + "/host_key"), "a live process keeps its folder")
            #expect(FileManager.default.fileExists(atPath: others + "/host_key"), "another user's folder is left")
            #expect(FileManager.default.fileExists(atPath: elsewhere + "/host_key"), "another pid namespace's folder is left")
            #expect(FileManager.default.fileExists(atPath: unrelated + "/host_key"))
            #expect(FileManager.default.fileExists(atPath: temporary + "/elsewhere/host_key"))
            #expect(isSymbolicLink(temporary + "/bulwark-sshd-key-\(namespace)-\(dead)-linked"))
        }
    }

    /// The key a probe uses lives in a folder named after this process and its pid namespace, so
    /// a later Bulwark there can tell whether its maker is gone.
    @Test func theKeysFolderCarriesThePid() throws {
        let key = try SSHDHostKey.path()
        let name = ((key as NSString).deletingLastPathComponent as NSString).lastPathComponent
        let namespace = try #require(SSHDHostKey.pidNamespace())
        #expect(name.hasPrefix("bulwark-sshd-key-\(namespace)-\(getpid())-"))
        #expect(FileManager.default.fileExists(atPath: key))
    }
}

/// The probes' host key, written by Bulwark in OpenSSH's format, is one OpenSSH reads.
@Suite struct SSHDHostKeyFormatTests {
    /// ssh-keygen derives from a written key the very public key it was made from, and reads
    /// the key the probes use. (sshd starts with that key in every sshd guard test.)
    @Test func sshKeygenReadsTheWrittenKey() async throws {
        let keygen = "/usr/bin/ssh-keygen"
        guard FileManager.default.isExecutableFile(atPath: keygen) else { return }
        try await withTemporaryDirectory { folder in
            // Comments of every length modulo 8: each pads the private section differently.
            for comment in (1...8).map({ String(repeating: "c", count: $0) }) {
                let key = Curve25519.Signing.PrivateKey()
                try write(folder + "/key", SSHDHostKey.openSSHPrivateKey(key, comment: comment), mode: 0o600)
                let derived = try run(keygen, ["-y", "-f", folder + "/key"])
                #expect(derived.status == 0, "\(derived.stderr)")
                let expected = "ssh-ed25519 " + Data([0, 0, 0, 11] + Array("ssh-ed25519".utf8) + [0, 0, 0, 32] + key.publicKey.rawRepresentation)
                    .base64EncodedString()
                #expect(derived.stdout == expected + " " + comment + "\n", "\(derived.stdout)")
            }
            // The probes' own key (shared with nobody's group, which ssh-keygen refuses: copied).
            try write(folder + "/probes", try read(try SSHDHostKey.path()), mode: 0o600)
            let probes = try run(keygen, ["-y", "-f", folder + "/probes"])
            #expect(probes.status == 0 && probes.stdout.hasPrefix("ssh-ed25519 "), "\(probes.stderr)")
        }
    }

    /// Each key is new: two keys written in turn differ.
    @Test func everyKeyIsNew() {
        let first = SSHDHostKey.openSSHPrivateKey(Curve25519.Signing.PrivateKey(), comment: "a")
        let second = SSHDHostKey.openSSHPrivateKey(Curve25519.Signing.PrivateKey(), comment: "a")
        #expect(first != second)
        #expect(first.hasPrefix("-----BEGIN OPENSSH PRIVATE KEY-----\n") && first.hasSuffix("\n-----END OPENSSH PRIVATE KEY-----\n"))
    }
}
