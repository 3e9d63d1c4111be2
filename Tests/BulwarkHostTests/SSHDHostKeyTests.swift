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
        try await withTemporaryDirectory { temporary in
            let dead = try deadPid()
            let gone = temporary + "/bulwark-sshd-key-\(dead)-a1B2c3"
            let alive = temporary + "/bulwark-sshd-key-\(getpid())-d4E5f6"
            let others = temporary + "/bulwark-sshd-key-\(dead)-g7H8i9"
            let unrelated = temporary + "/bulwark-sshd-key-notapid"
            try folder(gone)
            try folder(alive)
            try folder(others)
            try folder(unrelated)
            #expect(chown(others, 65534, 65534) == 0)
            // A link of that naming to a folder elsewhere: neither it nor what it points at is removed.
            try folder(temporary + "/elsewhere")
            #expect(symlink(temporary + "/elsewhere", temporary + "/bulwark-sshd-key-\(dead)-linked") == 0)

            SSHDHostKey.removeLeftovers(in: temporary)

            #expect(!FileManager.default.fileExists(atPath: gone), "a gone process's folder is removed")
            #expect(FileManager.default.fileExists(atPath: alive + "/host_key"), "a live process keeps its folder")
            #expect(FileManager.default.fileExists(atPath: others + "/host_key"), "another user's folder is left")
            #expect(FileManager.default.fileExists(atPath: unrelated + "/host_key"))
            #expect(FileManager.default.fileExists(atPath: temporary + "/elsewhere/host_key"))
            #expect(isSymbolicLink(temporary + "/bulwark-sshd-key-\(dead)-linked"))
        }
    }

    /// The key a probe uses lives in a folder named after this process, so a later Bulwark can
    /// tell whether its maker is gone.
    @Test func theKeysFolderCarriesThePid() throws {
        let key = try SSHDHostKey.path()
        let name = ((key as NSString).deletingLastPathComponent as NSString).lastPathComponent
        #expect(name.hasPrefix("bulwark-sshd-key-\(getpid())-"))
        #expect(FileManager.default.fileExists(atPath: key))
    }
}
