@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A runtime parameter is written in place: never through another name of another file.
@Suite struct InPlaceWriteTests {
    /// In a root whose proc/sys is a plain folder, a parameter's file that is a hard link to a
    /// secret: the fix fails, naming the links, and the secret keeps every byte.
    @Test func aParameterFileThatIsAHardLinkIsNeitherTruncatedNorWritten() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/etc/secret", "root:$6$hash:19700:0:99999:7:::\n", mode: 0o600)
            try FileManager.default.createDirectory(atPath: root + "/proc/sys/net/ipv4", withIntermediateDirectories: true)
            #expect(link(root + "/etc/secret", root + "/proc/sys/net/ipv4/ip_forward") == 0)
            let state = try hostState(root: root, resource("Sysctl", "s", "net.ipv4.ip_forward: \"0\""))
            let (_, outcome) = try await reconcile(state)
            let record = try #require(outcome.entries.first?.record)
            #expect(record.result == .failed && record.error?.contains("has 2 hard links") == true, "\(record.error ?? "")")
            #expect(try read(root + "/etc/secret") == "root:$6$hash:19700:0:99999:7:::\n")
        }
    }

    /// A parameter file with one name is emptied and written as before.
    @Test func aParameterFileWithOneNameIsWrittenWhole() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/proc/sys/net/ipv4/ip_forward", "1\n")
            try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
            try await expectApplied(root, resource("Sysctl", "s", "net.ipv4.ip_forward: \"0\""))
            #expect(try read(root + "/proc/sys/net/ipv4/ip_forward") == "0\n")
        }
    }
}
