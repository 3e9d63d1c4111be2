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

    /// A parameter file with one name is written as before.
    @Test func aParameterFileWithOneNameIsWrittenWhole() async throws {
        try await withTemporaryDirectory { root in
            try write(root + "/proc/sys/net/ipv4/ip_forward", "1\n")
            try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
            try await expectApplied(root, resource("Sysctl", "s", "net.ipv4.ip_forward: \"0\""))
            #expect(try read(root + "/proc/sys/net/ipv4/ip_forward") == "0\n")
        }
    }
    /// A parameter file that is there but holds no value (emptied, or torn into two lines by a
    /// process killed between truncating and writing it) read as a parameter the kernel does not
    /// have: the persisted value was taken for it, and the plan said in sync for good. It is
    /// drift now, shown as what it holds, and the fix writes the value and is verified.
    @Test func aParameterFileLeftEmptyOrTornIsDriftAndIsFixed() async throws {
        for torn in ["", "0\n768 60999\n"] {
            try await withTemporaryDirectory { root in
                try write(root + "/etc/sysctl.d/zz-bulwark.conf", "net.ipv4.ip_forward = 0\n")
                try write(root + "/proc/sys/net/ipv4/ip_forward", torn)
                let state = try hostState(root: root, resource("Sysctl", "s", "net.ipv4.ip_forward: \"0\""))
                let (plan, outcome) = try await reconcile(state)
                let drift = plan.remediations.first?.changes.first
                #expect(drift?.observed == (torn.isEmpty ? "(empty)" : "0 768 60999") && drift?.desired == "0",
                        "\(torn.debugDescription): \(plan.remediations.map(\.changes))")
                #expect(outcome.entries.map(\.record.result) == [.verified], "\(outcome.entries.map { $0.record.error ?? "" })")
                #expect(try read(root + "/proc/sys/net/ipv4/ip_forward") == "0\n")
            }
        }
    }

    /// A parameter file of a root that is a folder tree is replaced whole by a rename (a kill
    /// leaves the old value or the new one, never an empty file), keeping its mode, with no
    /// temporary file left beside it: neither its own nor one a killed replace left.
    @Test func aPlainParameterFileIsReplacedWholeKeepingItsMode() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/proc/sys/net/ipv4/ip_forward"
            try write(path, "1\n", mode: 0o640)
            let before = inode(path)
            try write(root + "/proc/sys/net/ipv4/.ip_forward.bulwark-Ab12Cd", "1")
            try FileManager.default.createDirectory(atPath: root + "/etc/sysctl.d", withIntermediateDirectories: true)
            try await expectApplied(root, resource("Sysctl", "s", "net.ipv4.ip_forward: \"0\""))
            #expect(try read(path) == "0\n")
            #expect(inode(path) != before, "replaced by a rename, not emptied and written in place")
            #expect(modeAndOwner(path).mode == 0o640)
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/proc/sys/net/ipv4") == ["ip_forward"])
        }
    }
}
