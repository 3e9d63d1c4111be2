@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Glibc
import Testing

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
